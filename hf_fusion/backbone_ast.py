"""AST backbone through transformers' ``ASTModel(output_hidden_states=True)``.

Paper token rule (DESIGN.md section 2): layer l's feature is the model's final LayerNorm applied to
``hidden_states[l]`` (block l's output; ``hidden_states[0]`` is the embeddings), then the mean of the
[CLS] (token 0) and distillation (token 1) vectors: [B, hidden_size], no time axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import ASTConfig, ASTModel

from .backbone_base import TappedBackbone
from .fusion import align_layer

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974


class ASTBackbone(TappedBackbone):
    """Taps transformer blocks 1..num_hidden_layers of an Audio Spectrogram Transformer."""

    name = "ast"
    has_time_axis = False

    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        return ASTConfig().to_dict()

    @classmethod
    def normalize_backbone_config(cls, backbone_config: Any) -> dict[str, Any]:
        merged = super().normalize_backbone_config(backbone_config)
        # Keep AST's own fields only (not PretrainedConfig's generic ones), and round-trip through
        # ASTConfig so invalid values fail here with transformers' message.
        fields = {k: v for k, v in merged.items() if k in ASTConfig.__annotations__}
        checked = ASTConfig(**fields).to_dict()
        return {k: checked[k] for k in fields}

    @classmethod
    def tappable_layers(cls, backbone_config: dict[str, Any]) -> tuple[int, ...]:
        return tuple(range(1, int(backbone_config["num_hidden_layers"]) + 1))

    @classmethod
    def layer_dims(cls, backbone_config: dict[str, Any], frontend: dict[str, Any]) -> dict[int, int]:
        return {layer: int(backbone_config["hidden_size"]) for layer in cls.tappable_layers(backbone_config)}

    @classmethod
    def default_frontend(cls, backbone_config: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": "ast_fbank",
            "sampling_rate": 16000,
            "num_mel_bins": int(backbone_config["num_mel_bins"]),
            "max_length": int(backbone_config["max_length"]),
            "mean": AUDIOSET_MEAN,
            "std": AUDIOSET_STD,
            "do_normalize": True,
        }

    @classmethod
    def default_fusion_layers(cls, backbone_config: dict[str, Any]) -> list[int]:
        n = int(backbone_config["num_hidden_layers"])
        middle = max(1, round(5 * n / 12))  # the paper's 5 of 12
        return [middle, n] if middle != n else [n]

    def __init__(self, backbone_config: dict[str, Any], frontend: dict[str, Any], attn_implementation=None):
        super().__init__(backbone_config, frontend)
        ast_config = ASTConfig(**backbone_config)
        if attn_implementation is not None:
            ast_config._attn_implementation = attn_implementation
        self.ast = ASTModel(ast_config)

    def forward(
        self, input_values: torch.Tensor, layers: Sequence[int], num_frames: int | None = None
    ) -> dict[int, torch.Tensor]:
        """input_values: [B, max_length, num_mel_bins] AST fbank -> {layer: [B, hidden, T_o (=1)]}."""
        layers = self.check_layers(layers)
        expected = (self.backbone_config["max_length"], self.backbone_config["num_mel_bins"])
        if input_values.dim() != 3 or tuple(input_values.shape[1:]) != tuple(expected):
            raise ValueError(
                f"ast: input_values must be [B, {expected[0]}, {expected[1]}] (frames x mel bins, from "
                f"FusedAudioFeatureExtractor(backbone='ast')), got shape {tuple(input_values.shape)}"
            )
        hidden_states = self.ast(input_values, output_hidden_states=True).hidden_states
        out = {}
        for layer in layers:
            tokens = self.ast.layernorm(hidden_states[layer][:, :2])
            out[layer] = align_layer(tokens.mean(dim=1), num_frames or 1, name=f"ast layer {layer}")
        return out

    def init_weights(self, module: nn.Module) -> None:
        self.ast._init_weights(module)
