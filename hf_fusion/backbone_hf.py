"""Any transformers audio encoder with ``output_hidden_states`` (Wav2Vec2, HuBERT, WavLM, Whisper's encoder, ...).

backbone_config = {"model_config": the wrapped model's ``config.to_dict()`` (with ``model_type``),
"feature_extractor": its feature extractor's ``to_dict()``}. Encoder-decoder models (Whisper) keep
their encoder only.

Taps: layers 1..N = ``hidden_states[1..N]`` (transformer block outputs; ``hidden_states[0]``, the
embeddings / feature projection, is not a tap, as for AST). A layer's [B, T, D] sequence is
[B, D, T] with time last; Eq.1 max-pools it to T_o frames (default: the last layer's frame count,
so nothing is pooled for these models, whose layers all share one frame rate).
AST through this path treats its patch tokens as the time axis; use ``backbone="ast"`` for the paper's rule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from .backbone_base import TappedBackbone
from .fusion import align_layer

_DROP_KEYS = ("transformers_version", "_name_or_path")


@lru_cache(maxsize=16)
def _config_from_json(serialized: str):
    from transformers import CONFIG_MAPPING

    settings = json.loads(serialized)
    model_type = settings.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"hf backbone: model_config['model_type']={model_type!r} is not a transformers model type"
        )
    return CONFIG_MAPPING[model_type].from_dict({k: v for k, v in settings.items() if k != "model_type"})


def wrapped_config(backbone_config: dict[str, Any]):
    """The wrapped model's transformers config object (cached)."""
    model_config = backbone_config.get("model_config")
    if not isinstance(model_config, dict):
        raise ValueError(
            "backbone 'hf' needs backbone_config={'model_config': <the encoder's config.to_dict()>, "
            "'feature_extractor': <its feature extractor's to_dict()>}; build it with "
            "hf_fusion.conversion.convert_hf_encoder('hf:<model id or path>')"
        )
    return _config_from_json(json.dumps(model_config, sort_keys=True, default=str))


def num_encoder_layers(config) -> int:
    """Transformer blocks of the (encoder of the) wrapped model."""
    if getattr(config, "is_encoder_decoder", False) and hasattr(config, "encoder_layers"):
        return int(config.encoder_layers)
    return int(config.num_hidden_layers)


def build_encoder(config) -> nn.Module:
    """A randomly initialised encoder for ``config`` (Whisper: ``WhisperEncoder``; others: ``AutoModel``)."""
    from transformers import AutoModel

    if getattr(config, "is_encoder_decoder", False):
        if config.model_type == "whisper":
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            return WhisperEncoder(config)
        return AutoModel.from_config(config).get_encoder()
    return AutoModel.from_config(config)


class HFEncoderBackbone(TappedBackbone):
    """Hidden states 1..N of a transformers audio encoder, aligned along its frame axis."""

    name = "hf"
    has_time_axis = True

    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        return {"model_config": None, "feature_extractor": None}

    @classmethod
    def normalize_backbone_config(cls, backbone_config: Any) -> dict[str, Any]:
        merged = super().normalize_backbone_config(backbone_config)
        unknown = sorted(set(merged) - {"model_config", "feature_extractor"})
        if unknown:
            raise ValueError(f"hf backbone: unknown backbone_config key(s) {unknown}; use model_config, feature_extractor")
        model_config, fe = merged["model_config"], merged["feature_extractor"]
        if model_config is None:  # unconfigured (only the feature extractor's defaults look at it)
            return merged
        if hasattr(model_config, "to_dict"):
            model_config = model_config.to_dict()
        if not isinstance(model_config, dict) or "model_type" not in model_config:
            raise ValueError("hf backbone: model_config must be a transformers config (or its to_dict()) with model_type")
        checked = wrapped_config({"model_config": model_config}).to_dict()
        merged["model_config"] = {k: v for k, v in checked.items() if k not in _DROP_KEYS}
        if fe is not None and hasattr(fe, "to_dict"):
            fe = fe.to_dict()
        if fe is not None and (not isinstance(fe, dict) or "feature_extractor_type" not in fe):
            raise ValueError("hf backbone: feature_extractor must be a transformers feature extractor's to_dict()")
        merged["feature_extractor"] = fe
        return merged

    @classmethod
    def tappable_layers(cls, backbone_config: dict[str, Any]) -> tuple[int, ...]:
        return tuple(range(1, num_encoder_layers(wrapped_config(backbone_config)) + 1))

    @classmethod
    def layer_dims(cls, backbone_config: dict[str, Any], frontend: dict[str, Any]) -> dict[int, int]:
        hidden = int(wrapped_config(backbone_config).hidden_size)
        return {layer: hidden for layer in cls.tappable_layers(backbone_config)}

    @classmethod
    def default_frontend(cls, backbone_config: dict[str, Any]) -> dict[str, Any]:
        fe = backbone_config.get("feature_extractor")
        rate = (fe or {}).get("sampling_rate") or 16000
        return {"name": "hf", "sampling_rate": int(rate), "feature_extractor": fe}

    @classmethod
    def default_fusion_layers(cls, backbone_config: dict[str, Any]) -> list[int]:
        n = num_encoder_layers(wrapped_config(backbone_config))
        middle = max(1, round(5 * n / 12))  # AST-Fusion#5#12's proportion
        return [middle, n] if middle != n else [n]

    def __init__(self, backbone_config: dict[str, Any], frontend: dict[str, Any], attn_implementation=None):
        super().__init__(backbone_config, frontend)
        config = wrapped_config(backbone_config)
        config = type(config).from_dict(config.to_dict())  # a private copy (the cached one is shared)
        if attn_implementation is not None:
            config._attn_implementation = attn_implementation
        self.encoder = build_encoder(config)
        self.num_layers = num_encoder_layers(config)

    def forward(
        self, input_values: torch.Tensor, layers: Sequence[int], num_frames: int | None = None
    ) -> dict[int, torch.Tensor]:
        """input_values: the wrapped extractor's input ([B, N] samples or [B, mels, frames]) -> {layer: [B, D, T_o]}."""
        layers = self.check_layers(layers)
        name = self.encoder.main_input_name
        out = self.encoder(**{name: input_values}, output_hidden_states=True, return_dict=True)
        hidden_states = out.hidden_states
        if len(hidden_states) != self.num_layers + 1:
            raise RuntimeError(
                f"hf backbone: {type(self.encoder).__name__} returned {len(hidden_states)} hidden states, "
                f"expected {self.num_layers + 1} (embeddings + {self.num_layers} layers)"
            )
        t_o = num_frames or hidden_states[-1].shape[1]
        return {
            layer: align_layer(hidden_states[layer].transpose(1, 2), t_o, name=f"hf layer {layer}") for layer in layers
        }

    def init_weights(self, module: nn.Module) -> None:
        self.encoder._init_weights(module)
