"""Content digests: of JSON-able settings, and of a dataset split's content (without decoding its audio).

Every digest is blake2b hex of a canonical byte stream, so the same settings and data give the same key
in every process, and any change (one file, one label, one setting) gives another.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np


def content_digest(*parts: bytes, size: int = 16) -> str:
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part)
    return h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()


def json_digest(obj: Any) -> str:
    """Digest (32 hex characters) of ``obj`` as canonical JSON (sorted keys; non-JSON values as str)."""
    return content_digest(canonical_json(obj))


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
                        h.update(canonical_json(arr.to_pylist()))
                    else:
                        h.update(memoryview(np.ascontiguousarray(values)).cast("B"))
    return h.hexdigest()
