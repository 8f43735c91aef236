"""Where hf-fusion keeps what it computes, and how a JSON file is written so that a crash never leaves half of it."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any


def default_cache_root() -> Path:
    """``$HF_FUSION_CACHE`` or ``~/.cache/hf_fusion``."""
    env = os.environ.get("HF_FUSION_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hf_fusion"


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or None when missing or unreadable (a corrupt marker = not complete)."""
    try:
        with open(path) as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None
