"""Any transformers audio encoder with ``output_hidden_states`` (Wav2Vec2, HuBERT, WavLM, Whisper's encoder, ...).

``backbone_config = {"model_config": config.to_dict(), "feature_extractor": fe.to_dict()}``; an
encoder-decoder keeps its encoder. Layers 1..N = ``hidden_states[1..N]`` (the embeddings are not a
tap), each ``[B, D, T]`` with time last. ``mask_strategy`` (``"fixed"``, ``"attention_mask"`` or
``"groups"``) keeps padding out of every clip's valid frames, so a clip's output equals its output
alone; which models get which strategy and why: docs/backbones.md, "Masks", and docs/design.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from .backbone_base import FrontEnd, TappedBackbone, proportional_fusion_layers
from .frontend_hf import hf_feature_extractor, hf_valid_steps, load_wrapped_feature_extractor, pads_to_fixed_length
from .fusion import align_layer, align_valid, valid_frame_mask

_DROP_KEYS = ("transformers_version", "_name_or_path")
#: model types whose encoder is exact under an attention mask when the conv front end uses LayerNorm
MASK_EXACT_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")


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


def mask_strategy(config, feature_extractor: dict[str, Any] | None) -> str:
    """How clips of different lengths are run: "fixed", "attention_mask" or "groups" (docs/design.md)."""
    if feature_extractor is not None and pads_to_fixed_length(load_wrapped_feature_extractor(feature_extractor)):
        return "fixed"
    if config.model_type in MASK_EXACT_MODEL_TYPES and getattr(config, "feat_extract_norm", None) == "layer":
        return "attention_mask"
    return "groups"


class HFEncoderBackbone(TappedBackbone):
    """Hidden states 1..N of a transformers audio encoder, aligned along its frame axis."""

    name = "hf"
    has_time_axis = True
    supports_attention_mask = True
    # samples of [B, N] (wav2vec2-family) or mel frames of [B, M, T] (Whisper)
    frontend_spec = FrontEnd("hf", hf_feature_extractor, (hf_valid_steps, -1))
    tap_template = "hidden_states[{layer}] (encoder block {layer})"

    @classmethod
    def frame_centres(cls, backbone_config: dict[str, Any], frontend: dict[str, Any], num_frames: int) -> torch.Tensor:
        """Conv feature encoders (wav2vec2 family): stride S and receptive field R of the conv stack -> frame k
        centred on S*k + R/2; Whisper: conv2 (stride 2) frame k centred on mel frame 2k = sample 2k * hop."""
        wrapped = wrapped_config(backbone_config)
        k = torch.arange(num_frames, dtype=torch.float64)
        if hasattr(wrapped, "conv_kernel") and hasattr(wrapped, "conv_stride"):
            stride, field = 1, 1
            for kernel, step in zip(wrapped.conv_kernel, wrapped.conv_stride):
                field += (int(kernel) - 1) * stride
                stride *= int(step)
            return stride * k + field / 2
        if wrapped.model_type == "whisper":
            hop = int((backbone_config.get("feature_extractor") or {}).get("hop_length", 160))
            return 2 * hop * k
        raise ValueError(f"hf backbone: no frame geometry for model_type {wrapped.model_type!r} (conv feature "
                         "encoders and Whisper are known); timestamps cannot be placed")

    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        return {"model_config": None, "feature_extractor": None}

    @classmethod
    def normalize_backbone_config(cls, backbone_config: Any) -> dict[str, Any]:
        merged = super().normalize_backbone_config(backbone_config)
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
        return {"name": cls.frontend_spec.name, "sampling_rate": int(rate), "feature_extractor": fe}

    @classmethod
    def default_fusion_layers(cls, backbone_config: dict[str, Any]) -> list[int]:
        return proportional_fusion_layers(num_encoder_layers(wrapped_config(backbone_config)))

    def __init__(self, backbone_config: dict[str, Any], frontend: dict[str, Any], attn_implementation=None):
        super().__init__(backbone_config, frontend)
        config = wrapped_config(backbone_config)
        config = type(config).from_dict(config.to_dict())  # a private copy (the cached one is shared)
        if attn_implementation is not None:
            config._attn_implementation = attn_implementation
        try:
            self.encoder = build_encoder(config)
        except ValueError as err:  # e.g. WavLM has no SDPA attention: fall back to its eager one
            if attn_implementation in (None, "eager") or "attention implementation" not in str(err):
                raise
            config._attn_implementation = "eager"
            self.encoder = build_encoder(config)
        self.num_layers = num_encoder_layers(config)
        self.mask_strategy = mask_strategy(config, frontend.get("feature_extractor"))

    def forward(self, input_values: torch.Tensor, layers: Sequence[int], num_frames: int | None = None,
                attention_mask: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """input_values: the wrapped extractor's input ([B, N] samples or [B, mels, frames]) -> {layer: [B, D, T_o]}.

        ``attention_mask``: the feature extractor's valid steps along the last axis of ``input_values``;
        handled by ``self.mask_strategy`` (docs/design.md). Padded output frames are zeros (groups)
        or whatever the encoder gives there (masked out of Eq.3 by ``frame_mask``); with a forced
        ``num_frames`` each clip is max-pooled over its own valid frames.
        """
        layers = self.check_layers(layers)
        if input_values.dim() not in (2, 3):
            raise ValueError("hf: input_values must be [B, N] samples or [B, mels, frames] (from the wrapped model's "
                             f"feature extractor), got shape {tuple(input_values.shape)}")
        lengths = self._lengths(attention_mask, input_values)
        if lengths is not None and self.mask_strategy == "groups" and not bool((lengths == input_values.shape[-1]).all()):
            hidden_states = self._run_groups(input_values, lengths)
        elif lengths is not None and self.mask_strategy == "attention_mask":
            hidden_states = self._run(input_values, attention_mask=attention_mask.to(torch.long))
        else:
            hidden_states = self._run(input_values)
        t = hidden_states[-1].shape[1]
        frames = None if lengths is None else self.output_lengths(lengths).clamp(max=t)
        result = {}
        for layer in layers:
            z, name = hidden_states[layer].transpose(1, 2), f"hf layer {layer}"
            result[layer] = align_layer(z, t, name=name) if num_frames is None else align_valid(z, num_frames, frames, name)
        return result

    def _run(self, input_values: torch.Tensor, **kwargs) -> tuple[torch.Tensor, ...]:
        """The encoder's hidden states (embeddings + every layer), each [B, T, D]."""
        name = self.encoder.main_input_name
        out = self.encoder(**{name: input_values}, output_hidden_states=True, return_dict=True, **kwargs)
        hidden_states = out.hidden_states
        if len(hidden_states) != self.num_layers + 1:
            raise RuntimeError(
                f"hf backbone: {type(self.encoder).__name__} returned {len(hidden_states)} hidden states, "
                f"expected {self.num_layers + 1} (embeddings + {self.num_layers} layers)"
            )
        return hidden_states

    def _run_groups(self, input_values: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Run clips of equal valid length together, cut to that length (no padding); zero-padded outputs."""
        total = int(self.output_lengths(torch.tensor([input_values.shape[-1]]))[0])
        merged: list[torch.Tensor] | None = None
        for length in torch.unique(lengths).tolist():
            rows = torch.nonzero(lengths == length).flatten()
            states = self._run(input_values[rows][..., :length])
            if merged is None:
                merged = [h.new_zeros((input_values.shape[0], total) + tuple(h.shape[2:])) for h in states]
            for full, h in zip(merged, states):
                full[rows, : h.shape[1]] = h
        return merged

    def _lengths(self, attention_mask: torch.Tensor | None, input_values: torch.Tensor) -> torch.Tensor | None:
        if attention_mask is None:
            return None
        expected = (input_values.shape[0], input_values.shape[-1])
        if tuple(attention_mask.shape) != expected:
            raise ValueError(
                f"hf backbone: attention_mask must be [B, steps] = {expected} (valid steps along the last axis "
                f"of input_values, from FusedAudioFeatureExtractor), got shape {tuple(attention_mask.shape)}"
            )
        return attention_mask.to(torch.long).sum(dim=1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid input steps [B] -> valid encoder frames [B] (the encoder's ``_get_feat_extract_output_lengths``)."""
        convert = getattr(self.encoder, "_get_feat_extract_output_lengths", None)
        if convert is None:
            raise ValueError(
                f"hf backbone: {type(self.encoder).__name__} has no _get_feat_extract_output_lengths, so valid "
                "output frames of clips of different lengths are unknown; pass clips of one length without attention_mask"
            )
        return torch.as_tensor(convert(lengths)).to(torch.long)

    def frame_mask(self, attention_mask: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Valid input steps [B, N] -> valid output frames [B, T_o] bool (a forced T_o: all, each clip pooled alone)."""
        batch, steps = attention_mask.shape
        if num_frames is not None:
            return torch.ones(batch, num_frames, dtype=torch.bool, device=attention_mask.device)
        total = int(self.output_lengths(torch.tensor([steps]))[0])
        frames = self.output_lengths(attention_mask.to(torch.long).sum(dim=1).cpu()).clamp(max=total)
        return valid_frame_mask(frames.to(attention_mask.device), total)

    def init_weights(self, module: nn.Module) -> None:
        self.encoder._init_weights(module)
