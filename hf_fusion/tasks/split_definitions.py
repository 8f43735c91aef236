"""Where each paper task's split comes from: the download itself, shipped here, or fetched from a pinned source.

GTZAN's fault-filtered lists (MIT) are shipped in ``split_files/``; EVAR's stored random draws (CREMA-D
speakers, VoxForge sessions, Surge presets; an evaluation-only license, no redistribution) are fetched from
a pinned commit and checked against their git blob hash; VoxCeleb1's ``iden_split.txt`` is fetched from the
dataset's site, its line count checked. ``--splits PATH`` gives a local copy (offline); its hashes are
recorded, and whether it equals the published file. The choice per file: docs/downloads.md.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..data.storage import default_cache_root

SHIPPED_DIR = Path(__file__).with_name("split_files")
EVAR_REPO = "nttcslab/eval-audio-repr"
EVAR_COMMIT = "88ba7728896484b22e02187dedbb86fc61fc8177"
EVAR_LICENSE = "NTT Software License Agreement for Evaluation (evaluation only, no redistribution)"
GTZAN_REPO = "jongpillee/music_dataset_split"
GTZAN_COMMIT = "07e855758f180ac8bdc0e3abebbde19277094681"


@dataclass(frozen=True)
class PublishedFile:
    """One published split file: its name, where it is published and how to recognise it."""

    name: str
    url: Optional[str] = None
    repo: Optional[str] = None
    commit: Optional[str] = None
    path: Optional[str] = None
    git_blob_sha1: Optional[str] = None
    lines: Optional[int] = None  # the published line count, header included (checked where no hash is known)


@dataclass(frozen=True)
class SplitDefinition:
    """The split files of one task and how the package obtains them (``where``: shipped | download | fetch)."""

    task: str
    files: tuple[PublishedFile, ...]
    where: str
    license: str
    why: str = ""
    extra: dict = field(default_factory=dict, hash=False)


def _github(repo: str, commit: str, path: str, blob: str, name: Optional[str] = None) -> PublishedFile:
    return PublishedFile(name or Path(path).name, f"https://raw.githubusercontent.com/{repo}/{commit}/{path}",
                         repo, commit, path, blob)


DEFINITIONS: dict[str, SplitDefinition] = {d.task: d for d in [
    SplitDefinition("spcv2", (PublishedFile("validation_list.txt", lines=9981),
                              PublishedFile("testing_list.txt", lines=11005)),
                    "download", "CC BY 4.0 (Speech Commands)", "part of the official archive"),
    SplitDefinition("vc1", (PublishedFile("iden_split.txt", "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/iden_split.txt",
                                          lines=153516),),
                    "fetch", "VoxCeleb1 terms of use (CC BY-SA 4.0 metadata; audio from YouTube, no redistribution)",
                    "the dataset's own metadata file, published beside the archives; fetched, not shipped"),
    SplitDefinition("voxforge", (_github(EVAR_REPO, EVAR_COMMIT, "evar/metadata/voxforge.csv",
                                         "24104f97e3f9b5f412cef59ab31fa8c07f0bcbf9"),),
                    "fetch", EVAR_LICENSE, "EVAR's random 70/15/15 draw of sessions (unseeded: this file is its "
                    "only definition); large, and EVAR's license allows no redistribution"),
    SplitDefinition("cremad", (_github(EVAR_REPO, EVAR_COMMIT, "evar/metadata/cremad.csv",
                                       "d3c977da32c57e663b7b8ae2a8261c3decfe29f5"),),
                    "fetch", EVAR_LICENSE, "EVAR's random draw of speakers (unseeded: this file is its only "
                    "definition); EVAR's license allows no redistribution"),
    SplitDefinition("gtzan", tuple(_github(GTZAN_REPO, GTZAN_COMMIT, f"GTZAN_split/{s}_filtered.txt", blob)
                                   for s, blob in (("train", "a79e19d3ec0433e90c8ed65e7ae7fe75597c5e9f"),
                                                   ("valid", "6ebc11b3e4eb37117127618ba3469b92329475dc"),
                                                   ("test", "5708b74bfead28a0ebf12b4fdb339f67d1490d4a"))),
                    "shipped", "MIT (Copyright (c) 2017 Jongpil Lee)", "930 lines under MIT: shipped with its notice"),
    SplitDefinition("surge", (_github(EVAR_REPO, EVAR_COMMIT, "evar/predefined/dataset_surge_tone_splits.csv",
                                      "b400f12801d2ae430eaa61db19d57cd71c72b92e"),),
                    "fetch", EVAR_LICENSE, "EVAR's draw of presets; EVAR's license allows no redistribution"),
]}


class MissingSplitDefinition(FileNotFoundError):
    """A split file could not be found locally nor fetched; the message names it and where it is published."""


def git_blob_sha1(data: bytes) -> str:
    """The hash git gives a file's content (``git hash-object``): checkable against a pinned commit."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def describe_file(path: Path, published: PublishedFile) -> dict:
    """Provenance of a split file: where it was read, its hashes, and whether it is the published one."""
    data = Path(path).read_bytes()
    blob = git_blob_sha1(data)
    record = {"file": published.name, "path": str(Path(path).resolve()), "sha256": hashlib.sha256(data).hexdigest(),
              "git_blob_sha1": blob}
    for key in ("url", "repo", "commit"):
        if getattr(published, key):
            record[key] = getattr(published, key)
    if published.path:
        record["published_path"] = published.path
    if published.git_blob_sha1:
        record["matches_published"] = blob == published.git_blob_sha1
    elif published.lines is not None:
        record["matches_published"] = data.count(b"\n") + (not data.endswith(b"\n") and bool(data)) == published.lines
    return record


def default_fetch_dir() -> Path:
    """Where fetched split files are kept: ``$HF_FUSION_CACHE/split_files`` (default ~/.cache/hf_fusion)."""
    return default_cache_root() / "split_files"


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes") for v in ("HF_FUSION_OFFLINE", "HF_HUB_OFFLINE"))


def _fetch(published: PublishedFile, dest: Path, timeout: float) -> Path:
    """Download ``published`` to ``dest`` (written whole or not at all); a hash mismatch is an error."""
    with urllib.request.urlopen(published.url, timeout=timeout) as response:
        data = response.read()
    if published.git_blob_sha1 and git_blob_sha1(data) != published.git_blob_sha1:
        raise ValueError(f"{published.url}: the downloaded file is not the pinned one (git blob "
                         f"{git_blob_sha1(data)}, expected {published.git_blob_sha1})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, dest)
    return dest


def _candidates(name: str, splits: Optional[Path], download: Optional[Path]) -> list[Path]:
    out = []
    if splits is not None:
        out += [splits] if splits.is_file() else [splits / name]
    if download is not None:
        out += [download / name, download / "meta" / name]
    return out


def resolve_split_files(task: str, splits: Optional[os.PathLike] = None, download: Optional[os.PathLike] = None,
                        fetch: bool = True, fetch_dir: Optional[os.PathLike] = None,
                        timeout: float = 60.0) -> tuple[dict[str, Path], list[dict]]:
    """({file name: local path}, [provenance per file]) of ``task``'s split files; ({}, []) for a task whose
    download holds its split in its own metadata.

    Looked for in order: ``splits`` (a file when the task has one split file, else a folder holding them as
    published), the package's shipped copy, the download folder (and its ``meta/``), the fetch folder, then
    fetched (unless ``fetch=False`` or ``HF_FUSION_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``).

    Raises:
        MissingSplitDefinition: one file could not be had; the message names it and where it is published.
        ValueError: a fetched file is not the pinned one (hash), or ``splits`` is a file for a task with several.
    """
    definition = DEFINITIONS.get(task)
    if definition is None:
        return {}, []
    splits = Path(splits).expanduser() if splits is not None else None
    download = Path(download).expanduser() if download is not None else None
    if splits is not None and splits.is_file() and len(definition.files) > 1:
        names = ", ".join(f.name for f in definition.files)
        raise ValueError(f"--splits {splits}: {task} has {len(definition.files)} split files ({names}); give the "
                         "folder holding them")
    if splits is not None and not splits.exists():
        raise MissingSplitDefinition(f"--splits {splits}: no such file or folder")
    fetch_dir = Path(fetch_dir) if fetch_dir is not None else default_fetch_dir() / task
    paths, records = {}, []
    for published in definition.files:
        local = [p for p in _candidates(published.name, splits, download) if p.is_file()]
        shipped = SHIPPED_DIR / task / published.name
        if not local and definition.where == "shipped" and shipped.is_file():
            local = [shipped]
        cached = fetch_dir / published.name
        if not local and cached.is_file():
            local = [cached]
        how = "local"
        if not local and definition.where == "fetch" and fetch and not _offline():
            try:
                local = [_fetch(published, cached, timeout)]
                how = "fetched"
            except OSError as err:
                raise MissingSplitDefinition(_missing_message(task, published, splits, download, err)) from err
        if not local:
            raise MissingSplitDefinition(_missing_message(task, published, splits, download))
        path = local[0]
        record = describe_file(path, published)
        record["obtained"] = "shipped" if path == shipped else how
        paths[published.name] = path
        records.append(record)
    return paths, records


def _missing_message(task: str, published: PublishedFile, splits, download, err: Optional[Exception] = None) -> str:
    where = published.url or "the official download"
    if published.repo:
        where = f"{published.url} ({published.repo} at {published.commit[:7]}, {published.path})"
    looked = [str(p) for p in _candidates(published.name, splits, download)]
    why = f"; fetching failed: {type(err).__name__}: {err}" if err is not None else ""
    return (f"{task}: split file {published.name} not found (looked in {', '.join(looked) or 'no local folder'}"
            f"{why}); it is published at {where}: download it and pass --splits PATH (splits= in Python)")
