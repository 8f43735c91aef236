"""``hf-fusion prepare``: an official download -> a task folder (``metadata.csv`` + ``task.json``) with EVAR's split.

:func:`prepare_task` reads the download under the task's rule (:mod:`.downloads`), with its split files
(:mod:`.split_definitions`), checks every split or fold against the official counts and writes
``OUT/<task>/metadata.csv`` (``file_name,label,split`` or ``file_name,label,fold``) and ``task.json``
(the registry's clip length, classes, counts, source, split provenance, gaps). The audio stays where it is
(``task.json``'s ``audio_root``) unless ``audio_copies=16000`` writes mono copies at that rate, resumably.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Optional

from ..data.storage import atomic_write_json
from ..protocol import SPLITS
from .downloads import Listing, read_download
from .registry import PAPER_TASK_SPECS, TaskSpec, get_task
from .sources import INFO_NAME, METADATA_NAME, sorted_label_names
from .split_definitions import resolve_split_files

#: names shown per problem in an error message
EXAMPLES = 5


class IncompleteDownloadError(ValueError):
    """A download that does not match the official counts; one line per split or fold with what is missing."""


def _key_label(kind: str, key) -> str:
    return f"fold {key}" if kind == "fold" else f"split {key}"


def _key_name(kind: str) -> str:
    return "fold" if kind == "fold" else "split"


def _rows_per_key(rows: list[dict], kind: str) -> dict:
    """{split or fold: rows}, in first-seen order."""
    key_name, found = _key_name(kind), {}
    for row in rows:
        found[row[key_name]] = found.get(row[key_name], 0) + 1
    return found


def download_gaps(spec: TaskSpec, listing: Listing) -> list[dict]:
    """One record per split or fold whose files differ from the official count or listing, plus one for files
    no listing knows (``"extra"``) and one for the class count; empty for a complete download."""
    key_name = _key_name(listing.kind)
    found = _rows_per_key(listing.rows, listing.kind)
    keys = list(spec.counts) + [k for k in {*found, *listing.missing} if k not in spec.counts]
    gaps = []
    for key in keys:
        expected, have, absent = spec.counts.get(key), found.get(key, 0), listing.missing.get(key, [])
        if (expected is not None and have != expected) or absent:
            gaps.append({key_name: key, "expected": expected if expected is not None else have + len(absent),
                         "found": have, "missing": len(absent) if absent else max(0, (expected or 0) - have),
                         "missing_examples": absent[:EXAMPLES]})
    if listing.extra:
        gaps.append({key_name: "extra", "found": len(listing.extra), "extra_examples": listing.extra[:EXAMPLES]})
    classes = len({row["label"] for row in listing.rows})
    if classes != spec.n_classes:
        gaps.append({key_name: "classes", "expected": spec.n_classes, "found": classes})
    return gaps


def describe_gap(gap: dict, kind: str, examples: bool = True) -> str:
    """One line of the incomplete-download error (``examples=False``: without the first file names)."""
    key = gap.get("fold", gap.get("split"))
    if key == "extra":
        line = f"{gap['found']} file(s) match the download's layout but no listing of the task"
        if not examples:
            return line
        return f"{line}: {', '.join(gap['extra_examples'])}{' ...' if gap['found'] > EXAMPLES else ''}"
    if key == "classes":
        return f"classes: {gap['expected']} expected, {gap['found']} found"
    line = f"{_key_label(kind, key)}: {gap['expected']:,} expected, {gap['found']:,} found"
    if gap["missing"]:
        line += f", {gap['missing']:,} missing"
        if examples and gap["missing_examples"]:
            line += f" (first: {', '.join(gap['missing_examples'])})"
    elif gap["found"] > gap["expected"]:
        line += f", {gap['found'] - gap['expected']:,} more than the official count"
    return line


def gaps_summary(gaps: list[dict]) -> str:
    """One line for results tables and model cards: each gap of ``task.json`` without file names ("" if none)."""
    return "; ".join(describe_gap(g, "fold" if "fold" in g else "split", examples=False) for g in gaps)


def _blocking(spec: TaskSpec, listing: Listing, allow_partial: bool) -> tuple[list[dict], list[str], bool]:
    """(gaps, lines, fatal): the download's gaps, what stops preparing it (one line each; empty: it prepares),
    and whether ``allow_partial`` could not help (no file at all, or a split with none)."""
    gaps = download_gaps(spec, listing)
    found = _rows_per_key(listing.rows, listing.kind)
    empty = [s for s in SPLITS if listing.kind == "split" and s not in found]
    fatal = ["no file of the task is present"] if not listing.rows else \
        [f"no file of split(s) {empty} is present: the task cannot be evaluated"] if empty else []
    lines = ([] if allow_partial else [describe_gap(g, listing.kind) for g in gaps]) + fatal
    return gaps, lines, bool(fatal)


def download_problems(task: str, download: os.PathLike, *, splits: Optional[os.PathLike] = None,
                      allow_partial: bool = False, fetch: bool = True) -> list[str]:
    """What would stop :func:`prepare_task` on this download, as lines (empty: it would prepare); nothing is
    written. For checking every task before a long run starts (``scripts/reproduce_paper.py --downloads``)."""
    from .downloads import DownloadLayoutError
    from .split_definitions import MissingSplitDefinition

    spec = get_task(task)
    try:
        split_files, _ = resolve_split_files(spec.name, splits, download, fetch=fetch)
        listing = read_download(spec.name, download, split_files)
    except (MissingSplitDefinition, DownloadLayoutError, ValueError) as err:
        return [str(err)]
    return [f"{spec.name}: {line}" for line in _blocking(spec, listing, allow_partial)[1]]


def prepare_task(task: str, download: os.PathLike, out: os.PathLike, *, splits: Optional[os.PathLike] = None,
                 allow_partial: bool = False, fetch: bool = True, audio_copies: Optional[int] = None,
                 progress: bool = True) -> Path:
    """Prepare one of the paper's tasks from its official download; returns ``out/<task>``.

    Args:
        task: a paper task (``esc50`` ... ``surge``).
        download: the download folder (the archive's top folder, or the folder holding it).
        out: the task root; ``out/<task>/metadata.csv`` and ``task.json`` are written there.
        splits: a local copy of the task's split file (or the folder holding its files as published).
        allow_partial: prepare what is there when the download misses files (the gap is recorded in
            ``task.json``, and from there in results and cards); otherwise one error names every gap.
        fetch: fetch a missing split file from where it is published (checked against its hash).
        audio_copies: a sampling rate: also write mono copies at that rate under ``out/<task>/audio/``
            (resumable; EVAR works on 16 kHz copies); None keeps the audio where it is.
    Raises:
        IncompleteDownloadError: the download differs from the official counts (without ``allow_partial``).
        MissingSplitDefinition, DownloadLayoutError: a split file or the download's layout is missing.
    """
    spec = get_task(task)
    if spec.name not in PAPER_TASK_SPECS:
        raise ValueError(f"prepare reads the official downloads of the paper's tasks ({', '.join(PAPER_TASK_SPECS)}); "
                         f"{spec.name!r} is not one")
    split_files, provenance = resolve_split_files(spec.name, splits, download, fetch=fetch)
    listing = read_download(spec.name, download, split_files)
    gaps, lines, fatal = _blocking(spec, listing, allow_partial)
    if lines:
        hint = "" if allow_partial or fatal else "; --allow-partial (allow_partial=True) prepares what is there"
        raise IncompleteDownloadError(f"{spec.name}: the download at {download} does not match the official "
                                      f"task{hint}:\n  " + "\n  ".join(lines))
    folder = Path(out).expanduser() / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    rows = listing.rows
    audio_root: Optional[Path] = listing.audio_root.resolve()
    if audio_copies:
        rows = write_audio_copies(listing, folder / "audio", int(audio_copies), progress=progress)
        audio_root = None
    _write_metadata(folder / METADATA_NAME, rows, listing.kind)
    found = _rows_per_key(rows, listing.kind)
    order = [k for k in spec.counts if k in found] + sorted((k for k in found if k not in spec.counts), key=str)
    counts = {str(k): found[k] for k in order}
    info = {
        "task": spec.name,
        "clip_seconds": spec.clip_seconds,
        "n_classes": spec.n_classes,
        "classes": sorted_label_names(r["label"] for r in rows),
        "split_kind": listing.kind,
        "counts": counts,
        "official_counts": {str(k): v for k, v in spec.counts.items()},
        "complete": not gaps,
        "gaps": gaps,
        "left_out": listing.left_out,
        "source": {"download": str(Path(download).expanduser().resolve()), "layout": listing.layout},
        "split_definition": provenance or f"the download's own metadata ({listing.layout})",
        "audio_root": str(audio_root) if audio_root is not None else None,
        "audio_copies": {"sampling_rate": int(audio_copies), "channels": 1} if audio_copies else None,
    }
    atomic_write_json(folder / INFO_NAME, info)
    return folder


def _write_metadata(path: Path, rows: list[dict], kind: str) -> None:
    key = _key_name(kind)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file_name", "label", key])
    writer.writerows([r["file_name"], r["label"], r[key]] for r in rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def write_audio_copies(listing: Listing, out: Path, sampling_rate: int, progress: bool = True) -> list[dict]:
    """Mono ``sampling_rate`` WAV copies of the listed files under ``out`` (same relative paths, ``.wav``);
    a copy already there is kept (each is written whole or not at all), so an interrupted run resumes.
    Returns the rows with ``file_name`` relative to ``out.parent``."""
    import soundfile as sf
    from datasets import Audio
    from tqdm.auto import tqdm

    from ..data.decoding import decode_audio

    decoder = Audio(sampling_rate=sampling_rate)
    rows = []
    for row in tqdm(listing.rows, desc=f"{listing.task}: {sampling_rate} Hz copies", disable=not progress):
        target = out / Path(row["file_name"]).with_suffix(".wav")
        if not target.is_file():
            samples = decode_audio({"path": str(listing.audio_root / row["file_name"]), "bytes": None}, 0, decoder)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            sf.write(tmp, samples, sampling_rate, format="WAV", subtype="PCM_16")
            os.replace(tmp, target)
        rows.append({**row, "file_name": target.relative_to(out.parent).as_posix()})
    return rows
