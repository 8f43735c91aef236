"""PANNs CNN14 backbone (Kong et al. 2020), tapped at the outputs of its 6 conv blocks.

Same module names as ``panns_inference.models.Cnn14`` (its state dict loads unchanged), evaluated up to
``conv_block6``; the AudioSet head is not kept. Input: log-mel ``[B, 1, T, M]``. Block k's tap is
``[B, C_k, T_k, F_k]``; Eq.1 uses ``T_o = floor(T / 32)`` with the fixed time kernels 16, 8, 4, 2, 1, 1,
so the frames of all blocks line up. Dims with 64 mel bins: blocks 1-5 2048, block 6 4096
(shapes per block: docs/backbones.md, "CNN14").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbone_base import FrontEnd, TappedBackbone, WindowRule
from .frontends import PANNS_PRESETS, panns_log_mel, panns_num_frames
from .fusion import align_layer, align_valid, valid_frame_mask

#: PANNs' channel widths of conv blocks 1..6.
CNN14_CHANNELS = (64, 128, 256, 512, 1024, 2048)
#: Input log-mel frames per output frame (five 2x2 avg-pools).
FRAMES_PER_OUTPUT = 32
#: seconds of context either side that make windowed frames exact (the conv receptive field; 1.7e-7 relative)
WINDOW_CONTEXT_SECONDS = 2


def panns_min_samples(hop_size: int) -> int:
    """Fewest samples giving CNN14 one output frame: 1 + N // hop >= 32, i.e. 31 hops (0.31 s)."""
    return (FRAMES_PER_OUTPUT - 1) * int(hop_size)


def panns_log_mel_padded(waveforms: torch.Tensor, lengths: torch.Tensor | None = None, sampling_rate: int = 16000,
                         window_size: int = 512, hop_size: int = 160, mel_bins: int = 64, fmin: float = 50.0,
                         fmax: float = 8000.0):
    """PANNs log-mel [B, 1, T, mel_bins] (T = 1 + N // hop_size); clips shorter than
    ``panns_min_samples(hop_size)`` (0.31 s) are zero-padded (digital silence) to that length."""
    minimum = panns_min_samples(hop_size)
    if waveforms.shape[-1] < minimum:
        waveforms = F.pad(waveforms, (0, minimum - waveforms.shape[-1]))
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=waveforms.device).clamp_min(minimum)
    return panns_log_mel(waveforms, sampling_rate=sampling_rate, window_size=window_size, hop_size=hop_size,
                         mel_bins=mel_bins, fmin=fmin, fmax=fmax, lengths=lengths)


def panns_valid_frames(lengths: torch.Tensor, hop_size: int = 160, **settings) -> torch.Tensor:
    """Log-mel frames per clip [B] from clip lengths [B] (samples)."""
    return panns_num_frames(lengths.clamp_min(panns_min_samples(hop_size)), int(hop_size))


def _zero_past(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Zero time steps t >= lengths[b] of x [B, C, T, F] (what a conv's zero padding sees for a lone clip)."""
    if lengths is None or bool((lengths >= x.shape[2]).all()):
        return x
    valid = torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]
    return x * valid[:, None, :, None].to(x.dtype)


class ConvBlock(nn.Module):
    """PANNs ConvBlock: 2 x (conv3x3 no bias - BN - ReLU), then average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int], lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, T, F] -> [B, C_out, T // p, F // p]; ``lengths`` [B] valid time steps of x."""
        x = F.relu(self.bn1(self.conv1(_zero_past(x, lengths))))
        x = F.relu(self.bn2(self.conv2(_zero_past(x, lengths))))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14Backbone(TappedBackbone):
    """PANNs CNN14 with conv blocks 1..6 tappable."""

    name = "cnn14"
    supports_attention_mask = True
    frontend_spec = FrontEnd("panns_log_mel", panns_log_mel_padded, (panns_valid_frames, 2))  # frames of [B, 1, T, M]
    default_layers = (3, 6)
    tap_template = "conv_block{layer}"

    @classmethod
    def window_rule(cls, frontend: dict[str, Any]) -> WindowRule:
        """One output frame per 32 STFT hops (five 2x2 pools), on that grid; 2 s of context."""
        hop = int(frontend.get("hop_size", 160)) * FRAMES_PER_OUTPUT
        return WindowRule(hop=hop, grid=hop, context=WINDOW_CONTEXT_SECONDS * int(frontend["sampling_rate"]))

    @classmethod
    def frame_centres(cls, backbone_config: dict[str, Any], frontend: dict[str, Any], num_frames: int) -> torch.Tensor:
        """Frame k covers log-mel frames 32k .. 32k + 31 (STFT frames centred on multiples of the hop)."""
        k = torch.arange(num_frames, dtype=torch.float64)
        return int(frontend["hop_size"]) * (FRAMES_PER_OUTPUT * k + (FRAMES_PER_OUTPUT - 1) / 2)

    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        return {"mel_bins": 64, "channels": list(CNN14_CHANNELS)}

    @classmethod
    def normalize_backbone_config(cls, backbone_config: Any) -> dict[str, Any]:
        merged = super().normalize_backbone_config(backbone_config)
        merged["mel_bins"] = int(merged["mel_bins"])
        merged["channels"] = [int(c) for c in merged["channels"]]
        if len(merged["channels"]) != 6 or min(merged["channels"]) < 1:
            raise ValueError(f"cnn14: channels must be 6 positive widths (blocks 1..6), got {merged['channels']}")
        if merged["mel_bins"] < FRAMES_PER_OUTPUT:
            raise ValueError(f"cnn14: mel_bins must be >= 32 (five 2x2 pools), got {merged['mel_bins']}")
        return merged

    @classmethod
    def tappable_layers(cls, backbone_config: dict[str, Any]) -> tuple[int, ...]:
        return (1, 2, 3, 4, 5, 6)

    @classmethod
    def layer_dims(cls, backbone_config: dict[str, Any], frontend: dict[str, Any]) -> dict[int, int]:
        mels, channels = int(backbone_config["mel_bins"]), backbone_config["channels"]
        return {k: int(channels[k - 1]) * (mels // 2 ** min(k, 5)) for k in cls.tappable_layers(backbone_config)}

    @classmethod
    def default_frontend(cls, backbone_config: dict[str, Any]) -> dict[str, Any]:
        return cls.resolve_frontend(backbone_config, None)

    @classmethod
    def resolve_frontend(cls, backbone_config: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
        """16 kHz preset by default; ``{"sampling_rate": 32000}`` alone selects the 32 kHz preset."""
        overrides = dict(overrides or {})
        rate = int(overrides.get("sampling_rate", 16000))
        preset = PANNS_PRESETS.get(rate, {})
        settings = {"name": cls.frontend_spec.name, "sampling_rate": rate, "mel_bins": int(backbone_config["mel_bins"])}
        settings.update(preset)
        settings.update(overrides)
        missing = [k for k in ("window_size", "hop_size", "fmin", "fmax") if k not in settings]
        if missing:
            raise ValueError(
                f"cnn14: no front-end preset for sampling_rate={rate} (presets: {sorted(PANNS_PRESETS)} Hz); "
                f"give {missing} in frontend"
            )
        return settings

    def __init__(self, backbone_config: dict[str, Any], frontend: dict[str, Any], attn_implementation=None):
        super().__init__(backbone_config, frontend)
        mels = int(backbone_config["mel_bins"])
        if int(frontend.get("mel_bins", mels)) != mels:
            raise ValueError(f"cnn14: front end has mel_bins={frontend['mel_bins']} but bn0 expects {mels}")
        self.bn0 = nn.BatchNorm2d(mels)
        widths = [1] + list(backbone_config["channels"])
        for k in range(1, 7):
            self.add_module(f"conv_block{k}", ConvBlock(widths[k - 1], widths[k]))

    def tap_module(self, layer: int) -> nn.Module:
        return getattr(self, f"conv_block{layer}")

    def _check_input(self, input_values: torch.Tensor) -> torch.Tensor:
        mels = int(self.backbone_config["mel_bins"])
        if input_values.dim() == 3:
            input_values = input_values[:, None]
        if input_values.dim() != 4 or input_values.shape[1] != 1 or input_values.shape[3] != mels:
            raise ValueError(
                f"cnn14: input_values must be log-mel [B, 1, T, {mels}] (from FusedAudioFeatureExtractor("
                f"backbone='cnn14')), got shape {tuple(input_values.shape)}"
            )
        if input_values.shape[2] < FRAMES_PER_OUTPUT:
            hop, rate = self.frontend.get("hop_size"), self.frontend.get("sampling_rate")
            samples = f" (= {(FRAMES_PER_OUTPUT - 1) * hop} samples at {rate} Hz)" if hop and rate else ""
            raise ValueError(
                f"cnn14: input has {input_values.shape[2]} log-mel frames; at least {FRAMES_PER_OUTPUT} are "
                f"needed{samples} for one output frame after five 2x2 pools (the feature extractor pads short clips)"
            )
        return input_values

    def run_taps(
        self, input_values: torch.Tensor, layers: Sequence[int], lengths: torch.Tensor | None = None
    ) -> dict[int, torch.Tensor]:
        """Raw block outputs {k: [B, C_k, T_k, F_k]} for log-mel [B, 1, T, M], one pass up to the last block
        asked for, caught by forward hooks on ``conv_block{k}``. ``lengths`` [B]: valid frames per clip;
        every conv then sees zeros past a clip's end, as it does for the clip alone."""
        with self.capture_taps(layers) as captured:
            x = self.bn0(input_values.transpose(1, 3)).transpose(1, 3)
            for k in range(1, max(layers) + 1):
                x = self.tap_module(k)(x, (2, 2) if k <= 5 else (1, 1), lengths)
                if lengths is not None and k <= 5:
                    lengths = lengths // 2
        return captured

    def forward(self, input_values: torch.Tensor, layers: Sequence[int], num_frames: int | None = None,
                attention_mask: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """log-mel [B, 1, T, M] -> {block: [B, C_k * F_k, T_o]}, T_o = floor(T / 32) unless ``num_frames``.

        ``attention_mask`` [B, T] marks each clip's real frames (clips of different lengths): convs see
        zeros past a clip's end, as alone. With a forced ``num_frames`` Eq.1 uses kernel T_k // num_frames
        per block instead, T_k being the clip's own frames of block k when a mask is given.
        """
        layers = self.check_layers(layers)
        input_values = self._check_input(input_values)
        batch, _, frames, _ = input_values.shape
        lengths = self.mask_lengths(attention_mask, batch, frames, unit="log-mel frames")
        raw = self.run_taps(input_values, layers, lengths)
        t_o = frames // FRAMES_PER_OUTPUT
        out = {}
        for layer in layers:
            z = raw[layer].permute(0, 1, 3, 2)  # [B, C, F, T]: time last for Eq.1
            if num_frames is None:
                z = z[..., : t_o * 2 ** (5 - min(layer, 5))]  # kernel 16, 8, 4, 2, 1, 1
                out[layer] = align_layer(z, t_o, name=f"cnn14 block {layer}")
            else:  # each clip max-pooled over its own frames of the block (kernel T_k,b // num_frames)
                valid = None if lengths is None else torch.div(lengths, 2 ** min(layer, 5), rounding_mode="floor")
                out[layer] = align_valid(z, num_frames, valid, name=f"cnn14 block {layer}")
        return out

    def frame_mask(self, attention_mask: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Input frame mask [B, T] -> output frame mask [B, T_o]: clip b has floor(T_b / 32) frames
        (a forced T_o: all T_o frames, each clip being pooled over its own frames)."""
        if num_frames is not None:
            return torch.ones(attention_mask.shape[0], num_frames, dtype=torch.bool, device=attention_mask.device)
        t_o = attention_mask.shape[1] // FRAMES_PER_OUTPUT
        valid = attention_mask.to(torch.long).sum(dim=1) // FRAMES_PER_OUTPUT
        return valid_frame_mask(valid, t_o)

    def init_weights(self, module: nn.Module) -> None:
        # PANNs' init: xavier-uniform convs, BN weight 1 / bias 0 (running stats: mean 0, var 1)
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.reset_running_stats()
