"""The ``hf`` front end: delegates to a wrapped transformers feature extractor saved as a dict.

The dict is the wrapped extractor's ``to_dict()`` (it names its class in ``feature_extractor_type``,
e.g. ``Wav2Vec2FeatureExtractor`` or ``WhisperFeatureExtractor``); the class is found through
transformers' feature-extractor registry and rebuilt with ``from_dict``.
"""

from __future__ import annotations

import inspect
import json
from functools import lru_cache
from typing import Any

import torch


@lru_cache(maxsize=8)
def _feature_extractor(serialized: str):
    from transformers.models.auto.feature_extraction_auto import feature_extractor_class_from_name

    settings = json.loads(serialized)
    name = settings.get("feature_extractor_type")
    cls = feature_extractor_class_from_name(name) if name else None
    if cls is None:
        raise ValueError(
            f"hf front end: cannot find the transformers feature extractor class {name!r} "
            "(frontend['feature_extractor']['feature_extractor_type'] must name one, e.g. 'Wav2Vec2FeatureExtractor')"
        )
    return cls.from_dict(settings)


def load_wrapped_feature_extractor(settings: dict[str, Any]):
    """The transformers feature extractor described by ``settings`` (its ``to_dict()``), cached."""
    if not isinstance(settings, dict):
        raise ValueError(
            "hf front end: frontend['feature_extractor'] must be the wrapped feature extractor's to_dict(), "
            f"got {type(settings).__name__}; build the model with hf_fusion.conversion.convert_hf_encoder"
        )
    return _feature_extractor(json.dumps(settings, sort_keys=True, default=str))


def hf_feature_extractor(
    waveforms: torch.Tensor,
    lengths: torch.Tensor | None = None,
    sampling_rate: int = 16000,
    feature_extractor: dict[str, Any] | None = None,
    **unused,
) -> torch.Tensor:
    """waveforms [B, N] (+ lengths [B]) -> the wrapped extractor's first model input, float32 on the same device.

    Wav2Vec2 / HuBERT / WavLM: [B, N'] normalised samples (a batch of unequal clips is padded to the
    longest, without an attention mask); Whisper: [B, n_mels, frames] log-mel (padded to its chunk).
    """
    fe = load_wrapped_feature_extractor(feature_extractor)
    if lengths is None:
        lengths = torch.full((waveforms.shape[0],), waveforms.shape[1])
    clips = [w[: int(n)].detach().cpu().numpy() for w, n in zip(waveforms, lengths)]
    kwargs = {}
    padding_default = inspect.signature(fe.__call__).parameters.get("padding")
    if padding_default is not None and padding_default.default in (False, None, "do_not_pad"):
        kwargs["padding"] = "longest"  # needed for tensors of unequal clips; Whisper keeps its "max_length"
    out = fe(clips, sampling_rate=int(sampling_rate), return_tensors="pt", **kwargs)
    return out[fe.model_input_names[0]].float().to(waveforms.device)
