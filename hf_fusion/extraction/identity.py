"""Cache keys: what identifies a model (config + weights), a front end, and a task split's data.

Every key is a blake2b hex digest of a canonical JSON / byte stream, so the same model, front end and
data give the same key across processes and sessions, and any change (one weight, one setting, one
file) gives another.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import torch

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


def _digest(*parts: bytes, size: int = 16) -> str:
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part)
    return h.hexdigest()


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()


def json_digest(obj: Any) -> str:
    """Digest (32 hex characters) of ``obj`` as canonical JSON (sorted keys; non-JSON values as str)."""
    return _digest(_canonical_json(obj))


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
    return _digest(_canonical_json(desc)), desc


def dataset_fingerprint(ds, audio_column: str = "audio", extra_columns: tuple[str, ...] = ()) -> str:
    """Digest of a split's content, streamed in arrow batches (no audio decoding).

    Audio stored as file paths counts by path + size + modification time; embedded audio bytes are
    hashed. Labels and ``extra_columns`` (e.g. fold, a pre-cropped ``input_values``) are hashed raw.
    Memory: 64 rows at a time, numeric values hashed in place (no copy of a memory-mapped column).
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"rows={len(ds)}|".encode())
    columns = [c for c in (audio_column, "label", *extra_columns) if c in ds.column_names]
    for batch in ds.select_columns(columns).with_format("arrow").iter(batch_size=64):
        for name in columns:
            col = batch.column(name)
            if name == audio_column and str(col.type).startswith("struct"):
                for value in col.to_pylist():
                    value = value or {}
                    if value.get("bytes") is not None:
                        h.update(hashlib.blake2b(value["bytes"], digest_size=16).digest())
                    path = value.get("path")
                    if path is not None:
                        h.update(path.encode())
                        if value.get("bytes") is None and os.path.exists(path):
                            st = os.stat(path)
                            h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
                    h.update(b";")
            else:
                for chunk in col.chunks if hasattr(col, "chunks") else [col]:
                    arr = chunk.flatten() if hasattr(chunk, "flatten") and str(chunk.type).startswith(("list", "fixed_size_list")) else chunk
                    values = arr.to_numpy(zero_copy_only=False)
                    if values.dtype == object:  # strings, nested values: hash their JSON, not pointers
                        h.update(_canonical_json(arr.to_pylist()))
                    else:
                        h.update(memoryview(np.ascontiguousarray(values)).cast("B"))
    return h.hexdigest()
