"""``feature-extraction`` pipeline of fused audio models: clip(s) -> the fused embedding (and frames on request).

Remote code, copied into every saved model (``config.custom_pipelines``), so
``pipeline("feature-extraction", model=repo, trust_remote_code=True)`` works without hf_fusion; with
``import hf_fusion`` it is also the task ``fused-audio-feature-extraction``. Input: one clip (1-D
array, tensor, list, or a ``datasets`` audio dict) or a list of clips of any lengths (padded batches
with ``attention_mask``). Output per clip: ``{"pooler_output": [D]}``, plus ``"last_hidden_state":
[T_o, D]`` with ``return_frames=True``; one clip -> one dict, a list -> a list of dicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import Pipeline

#: the task the cards' ``pipeline_tag`` declares
TASK = "feature-extraction"
#: the task name registered in transformers' PIPELINE_REGISTRY by ``import hf_fusion``
REGISTERED_TASK = "fused-audio-feature-extraction"
DEFAULT_BATCH_SIZE = 8


class _Clips:
    """Several clips that go through ``Pipeline.__call__`` as ONE item (one padded forward pass)."""

    def __init__(self, clips):
        self.clips = list(clips)


def _is_one_clip(inputs) -> bool:
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        return inputs.ndim <= 1 or (inputs.ndim == 2 and 1 in inputs.shape)
    if isinstance(inputs, dict):
        return True
    return isinstance(inputs, (list, tuple)) and (not inputs or isinstance(inputs[0], (int, float, np.number)))


class FusedAudioFeaturePipeline(Pipeline):
    """Audio clip(s) -> ``AudioFusionModel`` ``pooler_output`` (and ``last_hidden_state`` with ``return_frames``)."""

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __call__(self, inputs, *args, batch_size: int | None = None, **kwargs):
        if isinstance(inputs, (list, tuple)) and not _is_one_clip(inputs):
            size = int(batch_size or self._batch_size or DEFAULT_BATCH_SIZE)
            if size < 1:
                raise ValueError(f"batch_size must be at least 1, got {size}")
            out: list[dict[str, Any]] = []
            for start in range(0, len(inputs), size):
                out.extend(super().__call__(_Clips(inputs[start : start + size]), *args, **kwargs))
            return out
        return super().__call__(inputs, *args, batch_size=batch_size, **kwargs)

    def _sanitize_parameters(self, sampling_rate=None, return_frames=None, return_tensors=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unknown arguments {sorted(kwargs)}; it takes "
                            "sampling_rate, return_frames, return_tensors and batch_size")
        preprocess = {} if sampling_rate is None else {"sampling_rate": sampling_rate}
        postprocess = {}
        if return_frames is not None:
            postprocess["return_frames"] = bool(return_frames)
        if return_tensors is not None:
            if return_tensors not in ("pt", "np"):
                raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
            postprocess["return_tensors"] = return_tensors
        return preprocess, {}, postprocess

    def preprocess(self, inputs, sampling_rate: int | None = None):
        batched = isinstance(inputs, _Clips)
        arrays, rates = [], set()
        for clip in inputs.clips if batched else [inputs]:
            if isinstance(clip, dict):
                if "array" not in clip and "raw" not in clip:
                    raise ValueError("an audio dict needs 'array' (or 'raw') and 'sampling_rate', like datasets' Audio")
                rates.add(clip.get("sampling_rate"))
                clip = clip["array"] if "array" in clip else clip["raw"]
            elif isinstance(clip, (str, bytes)):
                raise ValueError("pass decoded audio (a float array, or a datasets audio dict), not a file name")
            arrays.append(np.asarray(clip.detach().cpu() if isinstance(clip, torch.Tensor) else clip,
                                     dtype=np.float32).reshape(-1))
        rates.discard(None)
        if sampling_rate is not None:
            rates.add(int(sampling_rate))
        if len(rates) > 1:
            raise ValueError(f"clips at different sampling rates {sorted(rates)}: resample them to "
                             f"{self.feature_extractor.sampling_rate} Hz first")
        # no rate given: the audio is taken to be at the front end's rate, as transformers' audio pipelines do
        rate = rates.pop() if rates else self.feature_extractor.sampling_rate
        features = self.feature_extractor(arrays, sampling_rate=rate, return_tensors="pt", return_attention_mask=True)
        model_inputs = {"input_values": features["input_values"]}
        if features.get("attention_mask") is not None:
            model_inputs["attention_mask"] = features["attention_mask"]
        return {"model_inputs": model_inputs, "batched": batched}

    def _forward(self, inputs):
        out = self.model(**inputs["model_inputs"], return_dict=True)
        return {"pooler_output": out.pooler_output, "last_hidden_state": out.last_hidden_state,
                "frame_mask": out.frame_mask, "batched": inputs["batched"]}

    def postprocess(self, outputs, return_frames: bool = False, return_tensors: str = "pt"):
        convert = (lambda t: t.float().numpy()) if return_tensors == "np" else (lambda t: t)
        results = []
        for i in range(outputs["pooler_output"].shape[0]):
            result = {"pooler_output": convert(outputs["pooler_output"][i])}
            if return_frames:
                frames = outputs["last_hidden_state"][i]
                if outputs["frame_mask"] is not None:
                    frames = frames[outputs["frame_mask"][i].bool()]
                result["last_hidden_state"] = convert(frames)
            results.append(result)
        return results if outputs["batched"] else results[0]


def register_pipeline() -> None:
    """Register :class:`FusedAudioFeaturePipeline` as the task ``fused-audio-feature-extraction``
    (``feature-extraction`` itself stays transformers' text pipeline for every other model)."""
    from transformers import AutoModel
    from transformers.pipelines import PIPELINE_REGISTRY

    if REGISTERED_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(REGISTERED_TASK, pipeline_class=FusedAudioFeaturePipeline,
                                            pt_model=AutoModel, type="audio")
