"""Place a saved model folder into a Hugging Face cache so ``from_pretrained("org/name")`` works offline."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def install_in_hf_cache(folder: str | Path, repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """Copy ``folder`` to ``<cache>/models--org--name/snapshots/<sha>/`` and point ``refs/main`` at it.

    ``cache_dir`` defaults to ``$HF_HUB_CACHE`` (or huggingface_hub's default). The snapshot id is a
    content hash, so re-installing the same folder is idempotent. Returns the snapshot path. Load with
    ``HF_HUB_OFFLINE=1`` and ``from_pretrained(repo_id, cache_dir=...)`` (or the same HF_HUB_CACHE).
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: save a model there first")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    if cache_dir is None:
        from huggingface_hub import constants

        cache_dir = constants.HF_HUB_CACHE
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha1()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    sha = digest.hexdigest()
    repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / sha
    if not snapshot.exists():
        tmp = snapshot.with_name(sha + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(folder, tmp)
        os.replace(tmp, snapshot)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(sha)
    return snapshot
