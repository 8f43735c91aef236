"""What each paper task's official download holds, read the way EVAR reads it (``evar/utils/make_metadata.py``).

One reader per task turns a download folder (the archive's top folder or the folder holding it) and the
task's split files (:mod:`.split_definitions`) into a :class:`Listing`: the task's rows for the files
present, the listed files that are absent, the files present that no listing knows, and what EVAR's rule
leaves out on purpose. :mod:`.prepare` checks it against the official counts and writes the task folder.
The rules, task by task, are in docs/downloads.md.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..protocol import SPLITS

#: Speech Commands v0.02's 35 words (the folders EVAR's ``[a-z]*/*.wav`` glob finds in the official archive)
SPCV2_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go", "happy",
    "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop",
    "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)
#: audio extensions a GTZAN copy may have (the official archive holds .au; EVAR's converted copies .wav)
GTZAN_EXTENSIONS = (".au", ".wav")
#: VoxCeleb1's iden_split.txt codes
VC1_SPLIT_CODES = {"1": "train", "2": "valid", "3": "test"}


class DownloadLayoutError(FileNotFoundError):
    """The folder does not hold the download's layout; the message says what was looked for and where."""


@dataclass
class Listing:
    """A download read under a task's rule.

    ``rows``: {"file_name" (relative to ``audio_root``), "label", "split" | "fold"} of the files present,
    in EVAR's order. ``missing``: {split or fold: [file names]} the task's listing names but the folder lacks.
    ``extra``: files that match the layout but that no listing knows (a wrong or mixed download).
    ``left_out``: {why: count} of files EVAR's rule leaves out on purpose.
    """

    task: str
    audio_root: Path
    kind: str
    rows: list[dict] = field(default_factory=list)
    missing: dict = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)
    layout: str = ""


def locate(download: Path, marker: str, what: str) -> Path:
    """The folder holding ``marker`` (a relative path): ``download`` itself or one of its sub-folders (the
    archive's top folder, e.g. ``ESC-50-master``)."""
    download = Path(download).expanduser()
    if not download.is_dir():
        raise DownloadLayoutError(f"download folder {download} does not exist")
    if (download / marker).exists():
        return download
    found = sorted(child for child in download.iterdir() if child.is_dir() and (child / marker).exists())
    if len(found) > 1:
        raise DownloadLayoutError(f"{download}: several folders hold {marker} ({[f.name for f in found]}); "
                                  f"point at the one {what} is in")
    if not found:
        raise DownloadLayoutError(f"{download}: no {marker} here or one folder below; expected {what}")
    return found[0]


def find_with(download: Path, pattern: str, what: str) -> Path:
    """The folder (``download`` or one of its sub-folders) where the glob ``pattern`` matches something."""
    download = Path(download).expanduser()
    if not download.is_dir():
        raise DownloadLayoutError(f"download folder {download} does not exist")
    for folder in [download, *sorted(c for c in download.iterdir() if c.is_dir())]:
        if next(folder.glob(pattern), None) is not None:
            return folder
    raise DownloadLayoutError(f"{download}: nothing matches {pattern} here or one folder below; expected {what}")


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]


def _need_columns(rows: list[dict], path: Path, columns: Iterable[str]) -> None:
    have = list(rows[0]) if rows else []
    missing = [c for c in columns if c not in have]
    if not rows or missing:
        raise ValueError(f"{path}: expected columns {list(columns)}, found {have or 'no rows'}")


def _files(root: Path, pattern: str) -> list[str]:
    """Sorted relative posix paths under ``root`` matching the glob ``pattern``."""
    return sorted(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file())


def _split_present(listing: Listing, listed: list[dict], key: str) -> None:
    """Rows of ``listed`` whose file exists go to ``rows``; the others to ``missing`` under their ``key``."""
    for row in listed:
        if (listing.audio_root / row["file_name"]).is_file():
            listing.rows.append(row)
        else:
            listing.missing.setdefault(row[key], []).append(row["file_name"])


def _extra(listing: Listing, on_disk: Iterable[str], exclude: Iterable[str] = ()) -> None:
    known = {r["file_name"] for r in listing.rows} | set(exclude)
    listing.extra = [f for f in on_disk if f not in known]


# ----------------------------------------------------------------------------- the nine readers


def read_esc50(download: Path, split_files: dict) -> Listing:
    root = locate(download, "meta/esc50.csv", "ESC-50-master/ (audio/, meta/esc50.csv)")
    meta = root / "meta" / "esc50.csv"
    rows = _read_csv(meta)
    _need_columns(rows, meta, ("filename", "fold", "category"))
    listing = Listing("esc50", root, "fold", layout="audio/{fold}-{src}-{take}-{target}.wav, meta/esc50.csv")
    _split_present(listing, [{"file_name": f"audio/{r['filename']}", "label": r["category"], "fold": int(r["fold"])}
                             for r in rows], "fold")
    _extra(listing, _files(root, "audio/*.wav"))
    return listing


def read_us8k(download: Path, split_files: dict) -> Listing:
    root = locate(download, "metadata/UrbanSound8K.csv", "UrbanSound8K/ (audio/fold1..10/, metadata/UrbanSound8K.csv)")
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = _read_csv(meta)
    _need_columns(rows, meta, ("slice_file_name", "fold", "class"))
    listing = Listing("us8k", root, "fold", layout="audio/fold{1..10}/{fsID}-{classID}-{occurrence}-{slice}.wav, "
                                                   "metadata/UrbanSound8K.csv")
    _split_present(listing, [{"file_name": f"audio/fold{r['fold']}/{r['slice_file_name']}", "label": r["class"],
                              "fold": int(r["fold"])} for r in rows], "fold")
    _extra(listing, _files(root, "audio/fold*/*.wav"))
    return listing


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_spcv2(download: Path, split_files: dict) -> Listing:
    what = "the Speech Commands v0.02 archive (<word>/*.wav, _background_noise_/, validation_list.txt, testing_list.txt)"
    try:
        root = locate(download, "testing_list.txt", what)
    except DownloadLayoutError:
        root = locate(download, "_background_noise_", what)
    valid = set(_lines(split_files["validation_list.txt"]))
    test = set(_lines(split_files["testing_list.txt"]))
    listing = Listing("spcv2", root, "split", layout="<word>/<speaker>_nohash_<n>.wav; validation_list.txt, "
                                                     "testing_list.txt")
    words = set(SPCV2_WORDS)
    present = set()
    for name in _files(root, "[a-z]*/*.wav"):  # EVAR's glob: _background_noise_ and top-level files excluded
        if name.split("/")[0] not in words:
            listing.extra.append(name)
            continue
        present.add(name)
        split = "test" if name in test else "valid" if name in valid else "train"  # the test list wins, as in EVAR
        listing.rows.append({"file_name": name, "label": name.split("/")[0], "split": split})
    for split, names in (("valid", valid - test), ("test", test)):
        absent = sorted(names - present)
        if absent:
            listing.missing[split] = absent
    noise = _files(root, "_background_noise_/*.wav")
    if noise:
        listing.left_out["_background_noise_/ (not a word)"] = len(noise)
    return listing


def read_vc1(download: Path, split_files: dict) -> Listing:
    root = locate(download, "wav", "VoxCeleb1's wav/idXXXXX/<video>/NNNNN.wav (dev and test archives merged)")
    listing = Listing("vc1", root, "split", layout="wav/idXXXXX/<video>/NNNNN.wav; iden_split.txt (1 train, "
                                                   "2 valid, 3 test)")
    listed = []
    for number, line in enumerate(_lines(split_files["iden_split.txt"]), 1):
        code, _, path = line.partition(" ")
        if code not in VC1_SPLIT_CODES or not path:
            raise ValueError(f"{split_files['iden_split.txt']}:{number}: expected '<1|2|3> idXXXXX/<video>/NNNNN.wav', "
                             f"got {line!r}")
        listed.append({"file_name": f"wav/{path.strip()}", "label": path.split("/")[0], "split": VC1_SPLIT_CODES[code]})
    _split_present(listing, listed, "split")
    _extra(listing, _files(root, "wav/*/*/*.wav"))
    return listing


def _evar_csv(path: Path, columns=("file_name", "label", "split")) -> list[dict]:
    rows = _read_csv(path)
    _need_columns(rows, path, columns)
    return rows


def read_voxforge(download: Path, split_files: dict) -> Listing:
    root = find_with(download, "*/wav/*.wav", "VoxForge session folders <user>-<date>-<tag>/wav/*.wav (the layout "
                     "EVAR's downloader writes)")
    listing = Listing("voxforge", root, "split", layout="<user>-<date>-<tag>/wav/*.wav; EVAR's voxforge.csv "
                                                        "(language label, split by session)")
    listed = []
    for r in _evar_csv(split_files["voxforge.csv"]):
        if not r["split"]:
            continue
        parts = r["file_name"].replace("\\", "/").split("/")
        listed.append({"file_name": "/".join(parts[-3:]), "label": r["label"], "split": r["split"]})
    _split_present(listing, listed, "split")
    _extra(listing, _files(root, "*/wav/*.wav"))
    return listing


def read_cremad(download: Path, split_files: dict) -> Listing:
    root = locate(download, "AudioWAV", "CREMA-D's AudioWAV/{actor}_{sentence}_{emotion}_{level}.wav")
    listing = Listing("cremad", root, "split", layout="AudioWAV/{actor}_{sentence}_{emotion}_{level}.wav; EVAR's "
                                                      "cremad.csv (split by speaker)")
    listed = []
    for r in _evar_csv(split_files["cremad.csv"]):
        name = Path(r["file_name"]).name
        emotion = name.split("_")[2] if name.count("_") >= 3 else None
        if emotion != r["label"]:
            raise ValueError(f"{split_files['cremad.csv']}: {name}: label {r['label']!r} is not the emotion code of "
                             f"its file name ({emotion!r})")
        listed.append({"file_name": f"AudioWAV/{name}", "label": emotion, "split": r["split"]})
    _split_present(listing, listed, "split")
    known = {r["file_name"] for r in listed}
    unlisted = [f for f in _files(root, "AudioWAV/*.wav") if f not in known]
    if unlisted:
        listing.left_out["not in EVAR's list (the release's known bad files)"] = len(unlisted)
    return listing


def read_gtzan(download: Path, split_files: dict) -> Listing:
    root = locate(download, "genres", "GTZAN's genres/<genre>/<genre>.000NN.au")
    listing = Listing("gtzan", root, "split", layout="genres/<genre>/<genre>.000NN.au; the fault-filtered "
                                                     "{train,valid,test}_filtered.txt")
    on_disk = {}
    for ext in GTZAN_EXTENSIONS:
        for name in _files(root, f"genres/*/*{ext}"):
            on_disk.setdefault(name[len("genres/"):-len(ext)], name)
    seen = set()
    for split in SPLITS:
        for entry in _lines(split_files[f"{split}_filtered.txt"]):
            stem = entry.rsplit(".", 1)[0] if entry.endswith(GTZAN_EXTENSIONS) else entry
            seen.add(stem)
            if stem in on_disk:
                listing.rows.append({"file_name": on_disk[stem], "label": stem.split("/")[0], "split": split})
            else:
                listing.missing.setdefault(split, []).append(f"genres/{stem}{GTZAN_EXTENSIONS[0]}")
    outside = [s for s in on_disk if s not in seen]
    if outside:
        listing.left_out["outside the fault-filtered lists"] = len(outside)
    return listing


def read_nsynth(download: Path, split_files: dict) -> Listing:
    root = find_with(download, "nsynth-*/examples.json", "nsynth-{train,valid,test}/examples.json + audio/")
    listing = Listing("nsynth", root, "split", layout="nsynth-{train,valid,test}/examples.json + audio/<note_str>.wav")
    for split in SPLITS:
        meta = root / f"nsynth-{split}" / "examples.json"
        if not meta.is_file():
            listing.missing[split] = [f"nsynth-{split}/ (the whole archive: examples.json not found)"]
            continue
        examples = json.loads(meta.read_text(encoding="utf-8"))
        _split_present(listing, [{"file_name": f"nsynth-{split}/audio/{key}.wav",
                                  "label": value["instrument_family_str"], "split": split}
                                 for key, value in examples.items()], "split")
    _extra(listing, [f for s in SPLITS for f in _files(root, f"nsynth-{s}/audio/*.wav")])
    return listing


def read_surge(download: Path, split_files: dict) -> Listing:
    tones = {r["tone"]: r["split"] for r in _evar_csv(split_files["dataset_surge_tone_splits.csv"], ("tone", "split"))}
    root = find_with(download, "*/*.ogg", "the Surge dataset's <preset>/<note>.ogg files")
    listing = Listing("surge", root, "split", layout="<preset>/<note>.ogg; EVAR's tone split (label = note)")
    present = set()
    for name in _files(root, "*/*.ogg"):
        tone = name.split("/")[0]
        if tone not in tones:
            listing.extra.append(name)
            continue
        present.add(tone)
        listing.rows.append({"file_name": name, "label": Path(name).stem, "split": tones[tone]})
    for tone, split in tones.items():
        if tone not in present:
            listing.missing.setdefault(split, []).append(f"{tone}/ (preset folder)")
    return listing


READERS: dict[str, Callable[[Path, dict], Listing]] = {
    "esc50": read_esc50, "us8k": read_us8k, "spcv2": read_spcv2, "vc1": read_vc1, "voxforge": read_voxforge,
    "cremad": read_cremad, "gtzan": read_gtzan, "nsynth": read_nsynth, "surge": read_surge,
}


def read_download(task: str, download: os.PathLike, split_files: Optional[dict] = None) -> Listing:
    """The :class:`Listing` of ``task``'s download folder (``split_files``: {name: path} of its split files)."""
    if task not in READERS:
        raise KeyError(f"no download reader for {task!r}; the paper's tasks: {', '.join(READERS)}")
    return READERS[task](Path(download).expanduser(), split_files or {})
