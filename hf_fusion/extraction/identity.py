"""Cache keys: what identifies a model (config + weights), a front end, and a task split's data.

Every key is a blake2b hex digest of a canonical JSON / byte stream, so the same model, front end and
data give the same key across processes and sessions, and any change (one weight, one setting, one
file) gives another.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ..data.fingerprints import canonical_json, content_digest

# Config keys that do not change what a model computes.
_VOLATILE_CONFIG_KEYS = {
    "transformers_version", "_name_or_path", "architectures", "auto_map", "dtype", "torch_dtype", "_commit_hash",
    "output_hidden_states", "return_dict", "output_attentions", "use_cache",
    # The fusion choice does not change any per-layer vector: every fusion of one backbone shares a cache.
    "fusion_layers",
}
_VOLATILE_FE_KEYS = {"processor_class", "auto_map", "transformers_version"}

#: How Eq.1/Eq.3 treat clips of different lengths; part of the key of every backbone with a per-clip
#: time axis, so vectors cached before masks (which depended on the batch, and for Whisper pooled its
#: padded chunk) are never reused. Version 1: masks everywhere (each clip's vector = the clip alone).
#: ``batch_size`` is NOT in the key: with masks no vector depends on it (tests/test_batch_independence.py).
VALID_FRAMES_VERSION = 1


def weights_fingerprint(model: torch.nn.Module) -> str:
    """Digest of every parameter and buffer (name, dtype, shape, bytes); never runs the model."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def config_identity(config) -> dict[str, Any]:
    """The config as a dict without keys that do not change the computation."""
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {k: v for k, v in d.items() if k not in _VOLATILE_CONFIG_KEYS and not k.startswith("_attn")}


def frontend_identity(feature_extractor) -> dict[str, Any]:
    """The feature extractor's settings (front-end name, rate, ...) as a dict."""
    d = feature_extractor.to_dict() if hasattr(feature_extractor, "to_dict") else dict(feature_extractor)
    return {k: v for k, v in d.items() if k not in _VOLATILE_FE_KEYS}


def model_key(model, feature_extractor, dtype=None) -> tuple[str, dict[str, Any]]:
    """(digest, description) of model config + weights + front-end settings (+ the masking version for
    backbones with a per-clip time axis, + the compute dtype when it is not fp32: bf16/fp16 vectors
    differ from fp32 ones beyond rounding, :mod:`.precision`). Batch size, decode workers, length
    bucketing and device are not part of it: they do not change a clip's vectors (beyond float rounding)."""
    desc = {
        "config": config_identity(model.config),
        "weights": weights_fingerprint(model),
        "frontend": frontend_identity(feature_extractor),
    }
    if getattr(getattr(model, "backbone", None), "supports_attention_mask", False):
        desc["valid_frames"] = VALID_FRAMES_VERSION
    if dtype is not None:
        from .precision import dtype_name

        if dtype_name(dtype) != "fp32":  # fp32 keeps the key it always had
            desc["compute_dtype"] = dtype_name(dtype)
    return content_digest(canonical_json(desc)), desc
