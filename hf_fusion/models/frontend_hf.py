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


def _pad_to(x: torch.Tensor, shape: tuple[int, ...], value: float) -> torch.Tensor:
    """Pad x at the end of every axis to ``shape``."""
    pads = []
    for have, want in zip(reversed(x.shape), reversed(shape)):
        pads += [0, want - have]
    return torch.nn.functional.pad(x, pads, value=value) if any(pads) else x


def hf_feature_extractor(
    waveforms: torch.Tensor,
    lengths: torch.Tensor | None = None,
    sampling_rate: int = 16000,
    feature_extractor: dict[str, Any] | None = None,
    **unused,
) -> torch.Tensor:
    """waveforms [B, N] (+ lengths [B]) -> the wrapped extractor's first model input, float32 on the same device.

    Wav2Vec2 / HuBERT / WavLM: [B, N] normalised samples; Whisper: [B, n_mels, frames] log-mel (every
    clip padded or cut to its chunk). The wrapped extractor runs on each clip ALONE (its valid samples
    only), so per-clip statistics (wav2vec2's ``do_normalize`` mean / variance) never see the batch's
    padding; the results are then padded at the end with the extractor's ``padding_value`` (0.0) to
    the batch's largest shape. ``hf_valid_steps`` gives each clip's valid steps along the last axis.
    """
    fe = load_wrapped_feature_extractor(feature_extractor)
    if lengths is None:
        lengths = torch.full((waveforms.shape[0],), waveforms.shape[1])
    clips = [w[: int(n)].detach().cpu().numpy() for w, n in zip(waveforms, lengths)]
    kwargs = {}
    padding_default = inspect.signature(fe.__call__).parameters.get("padding")
    if padding_default is not None and padding_default.default in (False, None, "do_not_pad"):
        kwargs["padding"] = "longest"  # tensors need it for wav2vec2-style extractors; Whisper keeps "max_length"
    name = fe.model_input_names[0]
    outs = [fe([clip], sampling_rate=int(sampling_rate), return_tensors="pt", **kwargs)[name][0].float() for clip in clips]
    shape = tuple(max(sizes) for sizes in zip(*(o.shape for o in outs)))
    value = float(getattr(fe, "padding_value", 0.0) or 0.0)
    return torch.stack([_pad_to(o, shape, value) for o in outs]).to(waveforms.device)


def pads_to_fixed_length(fe) -> bool:
    """True when the wrapped extractor pads every clip to one fixed size (Whisper's 30 s chunk)."""
    padding = inspect.signature(fe.__call__).parameters.get("padding")
    return padding is not None and padding.default == "max_length"


def hf_valid_steps(
    lengths: torch.Tensor, feature_extractor: dict[str, Any] | None = None, **unused
) -> torch.Tensor | None:
    """Valid steps [B] of each clip along the last axis of ``hf_feature_extractor``'s output.

    Waveform inputs (``input_values`` of a ``Wav2Vec2FeatureExtractor``: wav2vec2, HuBERT, WavLM,
    data2vec-audio, ...): its samples, ``lengths``. Chunked log-mel (``input_features``
    with ``hop_length`` and ``nb_max_frames``, Whisper): ceil(N / hop) frames (the frames the wrapped
    extractor's own attention mask marks), at most the chunk's frames. Other layouts: ``None`` (no mask).
    """
    fe = load_wrapped_feature_extractor(feature_extractor)
    from transformers import Wav2Vec2FeatureExtractor

    name = fe.model_input_names[0]
    if name == "input_values" and isinstance(fe, Wav2Vec2FeatureExtractor):
        return lengths
    hop, max_frames = getattr(fe, "hop_length", None), getattr(fe, "nb_max_frames", None)
    if name == "input_features" and hop and max_frames:
        return torch.div(lengths + int(hop) - 1, int(hop), rounding_mode="floor").clamp(1, int(max_frames))
    return None
