"""``FusedAudioFeatureExtractor``: mono waveforms -> the backbone's front-end ``input_values`` (batched torch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import logging

from .backbones import backbone_for_frontend, get_backbone_class

logger = logging.get_logger(__name__)

#: front-end keys that only record provenance (how AST's mean/std were obtained: which statistics, over how
#: many training clips, drawn in which seeded order); not passed to the function
FRONTEND_INFO_KEYS = ("name", "normalization", "normalization_clips", "normalization_seed")


class FusedAudioFeatureExtractor(SequenceFeatureExtractor):
    """One feature extractor for every backbone; its saved config names the backbone's front end.

    Args:
        backbone: backbone name; selects the front end and its defaults.
        frontend: settings overriding the defaults (e.g. ``{"max_length": 512}`` for AST).
        sampling_rate: shortcut for ``frontend["sampling_rate"]``.
        clip_samples: None (default) = clips as given; an int = every clip is first cut to its first
            ``clip_samples`` samples or zero-padded at the end to that many (the evaluation's test crop, which
            a classifier built from a linear probe needs, see ``hf_fusion.evaluation.export``).

    ``fe(audio, sampling_rate=16000, return_tensors="pt")`` takes one mono clip (1-D) or a batch
    (list of 1-D arrays/tensors, or a 2-D [B, N] array) of float audio and returns ``input_values``
    (AST: [B, max_length, num_mel_bins]; VGGish: [B, n_examples, 96, 64]; CNN14: [B, 1, T, mel_bins]).
    Every backbone with a per-clip time axis also returns ``attention_mask`` (int; 1 = the clip's own
    step, 0 = padding up to the batch's longest clip): VGGish [B, n_examples], CNN14 [B, T] log-mel
    frames, CREPE [B, T] 1024-sample frames, ``hf`` [B, N] samples (wav2vec2-family) or [B, T] mel
    frames (Whisper, whose input is always padded to its chunk). Pass it on to the model so that a
    clip's embedding does not depend on its batch. AST (fixed-length input) returns none.
    """

    model_input_names = ["input_values"]

    def __init__(
        self,
        backbone: str = "ast",
        frontend: dict[str, Any] | None = None,
        sampling_rate: int | None = None,
        feature_size: int = 1,
        padding_value: float = 0.0,
        clip_samples: int | None = None,
        **kwargs,
    ):
        backbone_cls = get_backbone_class(backbone)
        if clip_samples is not None and (isinstance(clip_samples, bool) or not isinstance(clip_samples, int)
                                         or clip_samples < 1):
            raise ValueError(f"clip_samples must be None or a positive int (samples), got {clip_samples!r}")
        overrides = dict(frontend or {})
        if sampling_rate is not None:
            overrides["sampling_rate"] = int(sampling_rate)
        merged = backbone_cls.resolve_frontend(backbone_cls.normalize_backbone_config(None), overrides)
        if merged["name"] != backbone_cls.frontend_spec.name:
            backbone_for_frontend(merged["name"])  # an unknown name: the error lists the known front ends
            raise ValueError(f"backbone {backbone!r} needs front end {backbone_cls.frontend_spec.name!r}, got {merged['name']!r}")
        super().__init__(
            feature_size=feature_size,
            sampling_rate=int(merged["sampling_rate"]),
            padding_value=padding_value,
            **kwargs,
        )
        self.backbone = backbone
        self.frontend = merged
        self.clip_samples = clip_samples

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if out.get("clip_samples") is None:  # unchanged saved configs (and feature-cache keys) without a crop
            out.pop("clip_samples", None)
        return out

    @classmethod
    def from_fusion_config(cls, config) -> "FusedAudioFeatureExtractor":
        """The extractor matching an :class:`AudioFusionConfig` (same backbone and front-end settings)."""
        return cls(backbone=config.backbone, frontend=dict(config.frontend))

    def __call__(
        self,
        raw_audio,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        device: str | torch.device | None = None,
        return_attention_mask: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Mono float audio at ``self.sampling_rate`` -> BatchFeature(input_values=...).

        ``device`` runs the front end there (e.g. ``"cuda"``); the result stays on it with ``return_tensors="pt"``.
        """
        if sampling_rate is None:
            logger.warning(
                f"FusedAudioFeatureExtractor: pass sampling_rate= (expected {self.sampling_rate} Hz) to catch "
                "audio at the wrong rate; assuming it is already correct."
            )
        elif int(sampling_rate) != self.sampling_rate:
            raise ValueError(
                f"audio is at {sampling_rate} Hz but the {self.backbone} front end expects {self.sampling_rate} Hz; "
                f"resample it first (e.g. datasets' cast_column('audio', Audio(sampling_rate={self.sampling_rate})))"
            )
        clips = _as_mono_clips(raw_audio)
        if self.clip_samples is not None:  # the test crop: from sample 0, zero-padded at the end
            clips = [torch.nn.functional.pad(c[: self.clip_samples], (0, max(0, self.clip_samples - c.numel())))
                     for c in clips]
        lengths = torch.tensor([c.numel() for c in clips], dtype=torch.long)
        waveforms = torch.zeros(len(clips), int(lengths.max()), dtype=torch.float32)
        for i, clip in enumerate(clips):
            waveforms[i, : clip.numel()] = clip
        if device is not None:
            waveforms, lengths = waveforms.to(device), lengths.to(device)
        settings = {k: v for k, v in self.frontend.items() if k not in FRONTEND_INFO_KEYS}
        backbone_cls = get_backbone_class(self.backbone)
        with torch.no_grad():
            features = backbone_cls.frontend_spec.function(waveforms, lengths=lengths, **settings)
        data = {"input_values": features}
        valid_steps = backbone_cls.frontend_spec.valid_steps
        if valid_steps is not None and return_attention_mask is not False:
            count, axis = valid_steps
            valid = count(lengths, **settings)
            if valid is not None:
                steps = torch.arange(features.shape[axis], device=features.device)
                data["attention_mask"] = (steps[None, :] < valid.to(features.device)[:, None]).to(torch.long)
        if return_tensors in ("pt", "torch"):
            return BatchFeature(data)
        return BatchFeature({k: v.cpu().numpy() for k, v in data.items()}, tensor_type=return_tensors)


#: a 2-D array [N, C] with C <= this and N > C is channel-last multichannel audio, never a batch of C-sample clips
MAX_CHANNELS = 8


def _as_mono_clips(raw_audio) -> list[torch.Tensor]:
    """Validate audio and return 1-D float32 CPU tensors; errors say what was received and what is expected."""
    if isinstance(raw_audio, (np.ndarray, torch.Tensor)):
        if raw_audio.ndim == 1:
            items = [raw_audio]
        elif raw_audio.ndim == 2:
            rows, cols = raw_audio.shape
            if rows == 0 or cols == 0:
                raise ValueError(f"got an empty [{rows}, {cols}] array: no clips or no samples")
            if cols <= MAX_CHANNELS < rows:
                raise ValueError(
                    f"got a [{rows}, {cols}] array: that is {cols}-channel audio laid out [samples, channels], "
                    "not a batch of clips; down-mix it first (audio.mean(axis=1)) or pass a [batch, samples] array"
                )
            items = list(raw_audio)  # a batch [B, N] of mono clips, as in transformers
        else:
            raise ValueError(
                f"expected mono audio: one 1-D clip, a list of 1-D clips or a [batch, samples] array; "
                f"got an array of shape {tuple(raw_audio.shape)}"
            )
    elif isinstance(raw_audio, (list, tuple)):
        if len(raw_audio) == 0:
            raise ValueError("expected one or more audio clips, got an empty list")
        is_scalar_list = all(isinstance(x, (int, float, np.floating)) for x in raw_audio)
        items = [raw_audio] if is_scalar_list else list(raw_audio)
    else:
        raise TypeError(
            f"expected mono float audio (numpy array, torch tensor or list of them), got {type(raw_audio).__name__}"
        )
    clips = []
    for i, item in enumerate(items):
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu()
            is_float = item.is_floating_point()
        else:
            item = np.asarray(item)
            is_float = np.issubdtype(item.dtype, np.floating)
        if item.ndim != 1:
            hint = " (multi-channel? average the channels first, e.g. audio.mean(axis=0))" if item.ndim == 2 else ""
            raise ValueError(f"clip {i}: expected mono 1-D audio, got shape {tuple(item.shape)}{hint}")
        if not is_float:
            raise ValueError(
                f"clip {i}: expected float audio in [-1, 1], got dtype {item.dtype}; "
                "convert integer PCM first (e.g. int16 / 32768)"
            )
        if item.shape[0] == 0:
            raise ValueError(f"clip {i}: audio is empty (0 samples)")
        clip = torch.as_tensor(item, dtype=torch.float32)
        bad = int((~torch.isfinite(clip)).sum())
        if bad:
            raise ValueError(f"clip {i}: {bad} of {clip.numel()} samples are NaN or infinite")
        clips.append(clip)
    return clips
