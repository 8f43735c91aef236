"""Cache shard integrity: a checksum per shard, verified before its vectors are trusted.

Each shard's marker records ``blake2b`` (16-byte BLAKE2b of the arrow file, hex) and ``bytes``.
:func:`shard_problem` verifies a shard: reads raise :class:`CacheIntegrityError` for a missing,
truncated or changed shard, naming it; ``extract_features`` rebuilds only the bad shards of a reused
split. A file is hashed at most once per process while unchanged (details: docs/design.md).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20
_verified: dict[str, tuple[tuple[int, int, int], str]] = {}


class CacheIntegrityError(ValueError):
    """A feature-cache shard is missing, truncated or changed since it was written."""


def file_digest(path: Path) -> str:
    """BLAKE2b (16 bytes, hex) of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def shard_checksum(path: Path) -> dict:
    """``{"blake2b", "bytes"}`` of a freshly written shard, for its marker (also memoised as verified)."""
    digest = file_digest(path)
    st = os.stat(path)
    _verified[str(path)] = (_stat_key(st), digest)
    return {"blake2b": digest, "bytes": st.st_size}


def remember_moved(old: Path, new: Path) -> None:
    """Keep the memo of a file moved with ``os.replace`` (same inode, size and mtime)."""
    if str(old) in _verified:
        _verified[str(new)] = _verified.pop(str(old))


def shard_problem(arrow: Path, marker: dict | None) -> str | None:
    """None when the shard file matches its marker, else what is wrong (one phrase)."""
    if marker is None:
        return "its marker (.json) is missing or unreadable"
    expected, size = marker.get("blake2b"), marker.get("bytes")
    if not expected or size is None:
        return "its marker has no checksum (written by an older version)"
    try:
        st = os.stat(arrow)
    except FileNotFoundError:
        return "the file is missing"
    if st.st_size != size:
        return f"it has {st.st_size} bytes, {size} when written (truncated or replaced)"
    key = _stat_key(st)
    if _verified.get(str(arrow)) == (key, expected):
        return None
    if file_digest(arrow) != expected:
        return "its bytes changed since it was written (checksum mismatch)"
    _verified[str(arrow)] = (key, expected)
    return None


def check_shard(arrow: Path, marker: dict | None) -> None:
    """Raise :class:`CacheIntegrityError` naming ``arrow`` unless it matches its marker."""
    problem = shard_problem(arrow, marker)
    if problem is not None:
        raise CacheIntegrityError(
            f"feature cache shard {arrow}: {problem}; re-run extraction (extract_features, or hf-fusion extract "
            "with the same model and task) to rebuild it"
        )
