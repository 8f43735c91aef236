"""VGGish backbone (torchvggish's VGG without the PCA post-processing), tapped by forward hooks.

Layer numbers are the paper's Table I (1-based): ``features[i]`` is layer ``i + 1`` (1..16) and
``embeddings[j]`` layer ``17 + j`` (17..22), with torchvggish's module names, so its state dict loads
unchanged. Tappable: the ReLU outputs 2, 5, 8, 10, 13, 15 (conv) and 18, 20, 22 (FC). Input: log-mel
examples ``[B, n_examples, 96, 64]`` (0.96 s each); each example runs alone, Eq.1 gives 6 frames per
example, and the examples' frames are concatenated: ``[B, D_l, 6 * n_examples]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .backbone_base import FrontEnd, TappedBackbone, WindowRule
from .frontends import VGGISH_FRAME as VGGISH_WINDOW
from .frontends import VGGISH_HOP
from .frontends import vggish_log_mel_examples, vggish_num_examples
from .fusion import align_layer

EXAMPLE_FRAMES = 96
MEL_BINS = 64
FRAMES_PER_EXAMPLE = 6  # T_o per example: time length after the last max-pool (layer 16)
_CONV_PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")  # torchvggish's make_layers
CONV_TAPS = (2, 5, 8, 10, 13, 15)
FC_TAPS = (18, 20, 22)
#: Table I output shape per tappable layer for one example: conv (C, T, F), FC (D,).
TAP_SHAPES = {
    2: (64, 96, 64),
    5: (128, 48, 32),
    8: (256, 24, 16),
    10: (256, 24, 16),
    13: (512, 12, 8),
    15: (512, 12, 8),
    18: (4096,),
    20: (4096,),
    22: (128,),
}


#: samples of one 0.96 s example at 16 kHz (96 hops of 160): VGGish frames lie on this grid
EXAMPLE_SAMPLES = 15360
#: samples past an example's end that its last 25 ms STFT window reads
STFT_OVERHANG = 240


def vggish_log_mel(waveforms: torch.Tensor, lengths: torch.Tensor | None = None, sampling_rate: int = 16000):
    """VGGish examples [B, n_examples, 96, 64] (16 kHz); a clip shorter than one example (0.98 s) is
    zero-padded to one example by the front end, never rejected."""
    return vggish_log_mel_examples(waveforms, lengths=lengths, sampling_rate=sampling_rate)


def vggish_valid_examples(lengths: torch.Tensor, **settings) -> torch.Tensor:
    """Whole examples per clip [B] from clip lengths [B] (samples)."""
    return vggish_num_examples(lengths)


def _make_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 1
    for v in _CONV_PLAN:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            # not in-place: a hooked ReLU output must not be overwritten later
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = v
    return nn.Sequential(*layers)


class VGGishBackbone(TappedBackbone):
    """VGGish (Hershey et al. 2017) with Table I layer taps 2..22."""

    name = "vggish"
    supports_attention_mask = True
    frontend_spec = FrontEnd("vggish_log_mel", vggish_log_mel, (vggish_valid_examples, 1))  # examples of [B, n, 96, 64]
    default_layers = (10, 15)

    @classmethod
    def window_rule(cls, frontend: dict[str, Any]) -> WindowRule:
        """Examples are independent and start at the input's start: windows start on an example boundary;
        6 frames per example = one frame per 2560 samples; context: the STFT overhang (one example)."""
        return WindowRule(hop=EXAMPLE_SAMPLES // FRAMES_PER_EXAMPLE, grid=EXAMPLE_SAMPLES, context=STFT_OVERHANG,
                          min_context=STFT_OVERHANG)

    @classmethod
    def frame_centres(cls, backbone_config: dict[str, Any], frontend: dict[str, Any], num_frames: int) -> torch.Tensor:
        """Frame k covers log-mel frames 16k .. 16k + 15 (25 ms windows every 10 ms): its centre sample."""
        per = EXAMPLE_FRAMES // FRAMES_PER_EXAMPLE  # log-mel frames per output frame (16)
        k = torch.arange(num_frames, dtype=torch.float64)
        return VGGISH_HOP * per * k + (VGGISH_HOP * (per - 1) + VGGISH_WINDOW) / 2

    @classmethod
    def tap_description(cls, backbone_config: dict[str, Any], layer: int) -> str:
        return f"features.{layer - 1}" if layer <= 16 else f"embeddings.{layer - 17}"

    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        return {}  # the architecture is fixed (Table I)

    @classmethod
    def tappable_layers(cls, backbone_config: dict[str, Any]) -> tuple[int, ...]:
        return CONV_TAPS + FC_TAPS

    @classmethod
    def layer_dims(cls, backbone_config: dict[str, Any], frontend: dict[str, Any]) -> dict[int, int]:
        return {layer: (s[0] * s[2] if len(s) == 3 else s[0]) for layer, s in TAP_SHAPES.items()}

    @classmethod
    def default_frontend(cls, backbone_config: dict[str, Any]) -> dict[str, Any]:
        return {"name": cls.frontend_spec.name, "sampling_rate": 16000}

    def __init__(self, backbone_config: dict[str, Any], frontend: dict[str, Any], attn_implementation=None):
        super().__init__(backbone_config, frontend)
        self.features = _make_features()
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 128), nn.ReLU()
        )

    def tap_module(self, layer: int) -> nn.Module:
        """The named module whose output is Table I layer ``layer`` (1-based)."""
        if 1 <= layer <= 16:
            return self.features[layer - 1]
        if 17 <= layer <= 22:
            return self.embeddings[layer - 17]
        raise ValueError(f"vggish: layer {layer} does not exist; Table I has layers 1..22")

    def _check_input(self, input_values: torch.Tensor) -> torch.Tensor:
        if input_values.dim() == 3 and tuple(input_values.shape[1:]) == (EXAMPLE_FRAMES, MEL_BINS):
            input_values = input_values[:, None]  # one example per clip
        if input_values.dim() != 4 or tuple(input_values.shape[2:]) != (EXAMPLE_FRAMES, MEL_BINS):
            raise ValueError(
                f"vggish: input_values must be log-mel examples [B, n_examples, {EXAMPLE_FRAMES}, {MEL_BINS}] "
                f"(from FusedAudioFeatureExtractor(backbone='vggish')), got shape {tuple(input_values.shape)}"
            )
        if input_values.shape[1] == 0:
            raise ValueError("vggish: input_values holds no example (n_examples = 0)")
        return input_values

    def run_taps(self, examples: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """Raw tap outputs for examples [N, 1, 96, 64]: conv layers [N, C, T, F], FC layers [N, D].

        One pass through the net, stopping after the last requested layer; outputs are caught by
        forward hooks on the tapped ReLU modules.
        """
        with self.capture_taps(layers) as captured:
            last = max(layers)
            x = examples
            for module in list(self.features)[: min(last, 16)]:
                x = module(x)
            if last > 16:
                # torchvggish flattens [N, C, T, F] in (T, F, C) order before the FC layers
                x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
                for module in list(self.embeddings)[: last - 16]:
                    x = module(x)
        return captured

    def forward(self, input_values: torch.Tensor, layers: Sequence[int], num_frames: int | None = None,
                attention_mask: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """input_values [B, n, 96, 64] -> {layer: [B, D_l, T_o * n]}; T_o = ``num_frames`` or 6 per example.

        ``attention_mask`` [B, n] marks real examples; padded examples are not computed (their frames are
        zeros, masked out of Eq.3 by ``frame_mask``).
        """
        layers = self.check_layers(layers)
        input_values = self._check_input(input_values)
        batch, n = input_values.shape[:2]
        t_o = num_frames or FRAMES_PER_EXAMPLE
        examples = input_values.reshape(batch * n, 1, EXAMPLE_FRAMES, MEL_BINS)
        keep = None
        if attention_mask is not None:
            keep = self._example_mask(attention_mask, batch, n).reshape(-1)
            if bool(keep.all()):
                keep = None
            else:
                examples = examples[keep]
        raw = self.run_taps(examples, layers)
        out = {}
        for layer in layers:
            z = raw[layer]
            if z.dim() == 4:  # [N, C, T, F] -> time last for Eq.1
                z = z.permute(0, 1, 3, 2)
            aligned = align_layer(z, t_o, name=f"vggish layer {layer}")  # [N, D, t_o]
            if keep is not None:
                full = aligned.new_zeros((batch * n,) + tuple(aligned.shape[1:]))
                full[keep] = aligned
                aligned = full
            d = aligned.shape[1]
            out[layer] = aligned.reshape(batch, n, d, t_o).permute(0, 2, 1, 3).reshape(batch, d, n * t_o)
        return out

    @staticmethod
    def _example_mask(attention_mask: torch.Tensor, batch: int, n: int) -> torch.Tensor:
        if tuple(attention_mask.shape) != (batch, n):
            raise ValueError(
                f"vggish: attention_mask must be [B, n_examples] = {(batch, n)} (valid examples), "
                f"got shape {tuple(attention_mask.shape)}"
            )
        return attention_mask.to(torch.bool)

    def frame_mask(self, attention_mask: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Example mask [B, n] -> frame mask [B, n * T_o] (each example's T_o frames share its flag)."""
        return attention_mask.to(torch.bool).repeat_interleave(num_frames or FRAMES_PER_EXAMPLE, dim=1)

    def init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=5**0.5)  # torch's default
            if module.bias is not None:
                nn.init.zeros_(module.bias)
