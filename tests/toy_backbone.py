"""A toy backbone registered at run time by the tests: three per-frame linear layers over 10 ms frames.

It proves that a backbone declared outside the package goes through everything (the contract in
tests/test_backbone_contract.py, extraction, the study, a dry-run push) with no edit to hf_fusion: its
module is this file, its registry entry :data:`TOY_ENTRY` (``hf_fusion.catalog.register_entry``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hf_fusion.catalog import BackboneEntry, TinyVariant
from hf_fusion.models.backbone_base import FrontEnd, TappedBackbone, WindowRule
from hf_fusion.models.fusion import align_layer

HOP = 160


def toy_frames(waveforms: torch.Tensor, lengths: torch.Tensor | None = None, sampling_rate: int = 16000):
    """[B, N] -> [B, T, HOP] non-overlapping frames (T = N // HOP, at least one)."""
    t = max(1, waveforms.shape[-1] // HOP)
    padded = torch.nn.functional.pad(waveforms, (0, max(0, t * HOP - waveforms.shape[-1])))
    return padded[:, : t * HOP].reshape(waveforms.shape[0], t, HOP)


def toy_valid_frames(lengths: torch.Tensor, **settings) -> torch.Tensor:
    return (lengths // HOP).clamp_min(1)


class ToyBackbone(TappedBackbone):
    """Three per-frame linear layers (8, 8, 4 dims) over 10 ms frames."""

    name = "toy"
    supports_attention_mask = True
    frontend_spec = FrontEnd("toy_frames", toy_frames, (toy_valid_frames, 1))
    default_layers = (1, 3)

    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        return {"width": 8}

    @classmethod
    def tappable_layers(cls, backbone_config):
        return (1, 2, 3)

    @classmethod
    def layer_dims(cls, backbone_config, frontend):
        return {1: backbone_config["width"], 2: backbone_config["width"], 3: 4}

    @classmethod
    def default_frontend(cls, backbone_config):
        return {"name": cls.frontend_spec.name, "sampling_rate": 16000}

    @classmethod
    def window_rule(cls, frontend):
        return WindowRule(hop=HOP, grid=HOP, context=0)

    def __init__(self, backbone_config, frontend, attn_implementation=None):
        super().__init__(backbone_config, frontend)
        width = backbone_config["width"]
        self.layers = nn.ModuleList([nn.Linear(HOP, width), nn.Linear(width, width), nn.Linear(width, 4)])

    def forward(self, input_values, layers, num_frames=None, attention_mask=None):
        layers = self.check_layers(layers)
        if input_values.dim() != 3 or input_values.shape[2] != HOP:
            raise ValueError(f"toy: input_values must be [B, T, {HOP}] frames, got shape {tuple(input_values.shape)}")
        self.mask_lengths(attention_mask, input_values.shape[0], input_values.shape[1])  # checks its shape
        x, out = input_values, {}
        for k, layer in enumerate(self.layers, start=1):
            x = torch.tanh(layer(x))
            if k in layers:
                out[k] = align_layer(x.transpose(1, 2), num_frames or x.shape[1], name=f"toy layer {k}")
        return out

    def frame_mask(self, attention_mask, num_frames=None):
        return attention_mask.to(torch.bool)

    def init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.reset_parameters()


#: the toy's registry entry: a preset, a license for its card, one tiny variant for the registry-wide tests
TOY_ENTRY = BackboneEntry(ToyBackbone, preset_layers=(1, 3), license="mit", repo_words=("toy",),
                          tiny=(TinyVariant("toy", exact="all"),))
