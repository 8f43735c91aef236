"""Mixed precision for extraction (``extract_features(dtype="bf16" | "fp16")``; default fp32, unchanged).

Only the backbone runs under ``torch.autocast`` (its convolutions and matrix products in the low
precision); the front end runs before it in float32, and the taps are cast back to float32 before
Eq.3 (mean + max over time). Eq.1 is a max-pool / reshape (exact in any dtype; AST's per-layer
LayerNorm and token mean run inside the backbone, under autocast's own rules). The compute dtype
is part of the feature-cache key whenever it is not float32 (:func:`.identity.model_key`), so
bf16 and fp32 caches never mix, and fp32 keys are those of before.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import wraps
from typing import Iterator

import torch

from ..protocol import DTYPES as DTYPE_NAMES

#: accepted names -> torch dtype
_BY_NAME = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16)))
DTYPES = {**_BY_NAME, **{str(dtype).removeprefix("torch."): dtype for dtype in _BY_NAME.values()}}


def resolve_dtype(dtype) -> torch.dtype:
    """``"fp32" | "bf16" | "fp16"`` (or their long names, or a torch dtype, or None = fp32) -> torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
    elif str(dtype).lower() in DTYPES:
        return DTYPES[str(dtype).lower()]
    raise ValueError(f"dtype must be one of fp32, bf16, fp16 (or float32, bfloat16, float16), got {dtype!r}")


def dtype_name(dtype) -> str:
    """Canonical short name: ``"fp32"``, ``"bf16"`` or ``"fp16"``."""
    return {torch_dtype: name for name, torch_dtype in _BY_NAME.items()}[resolve_dtype(dtype)]


@contextmanager
def backbone_autocast(model, dtype, device_type: str) -> Iterator[None]:
    """Within the block, ``model.backbone`` runs under ``torch.autocast(device_type, dtype)``; nothing
    else does (the front end and Eq.3 stay float32). fp32: no change at all."""
    dtype = resolve_dtype(dtype)
    if dtype == torch.float32:
        yield
        return
    if not torch.amp.is_autocast_available(device_type):
        raise ValueError(f"dtype {dtype_name(dtype)}: torch has no autocast for device {device_type!r}")
    backbone = model.backbone
    forward = backbone.forward
    patched = backbone.__dict__.get("forward")  # an instance-level forward someone set: put it back after

    @wraps(forward)
    def autocast_forward(*args, **kwargs):
        with torch.autocast(device_type=device_type, dtype=dtype):
            return forward(*args, **kwargs)

    backbone.forward = autocast_forward
    try:
        yield
    finally:
        if patched is None:
            del backbone.forward  # back to the class's forward
        else:
            backbone.forward = patched
