"""Load a classification task as a ``datasets.DatasetDict`` from one of three sources.

Sources: an EVAR-style folder (:func:`load_task_dir`, a ``metadata.csv`` with
``file_name,label,split`` or ``file_name,label,fold``), ``audiofolder`` folders
(:func:`load_audiofolder_task`), or a Hub dataset id / ``save_to_disk`` folder with a column mapping
(:func:`load_hub_task`). Every split has an ``audio`` column (``Audio(sampling_rate=sr)``, mono) and a
``label`` column (``ClassLabel``, names sorted, numerically when all are integers). Split data gives
``train/valid/test``; fold data gives ``all`` with a ``fold`` column, or train/valid/test with
``test_fold``. Formats: docs/tasks.md.
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from datasets import (
    Audio,
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    Value,
    concatenate_datasets,
    load_dataset,
    load_from_disk,
)

from ..data.columns import ALL_SPLIT, PARTIAL_ATTR, SKIPPED_ATTR, SOURCE_ROW, TRAIN_CROPS_SPLIT
from ..protocol import SPLITS, VALID_FRACTION
from .clips import crop_clips, crop_fold_clips, with_row_column
from .folds import fold_splits, stratified_valid_indices
from .registry import SYNTHETIC_TASKS, TaskSpec, get_task
from .synthetic import SR as SYNTH_RATE
from .synthetic import build_synthetic_task, default_synthetic_dir

PathLike = Union[str, os.PathLike]
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "valid": "valid", "validation": "valid", "val": "valid", "dev": "valid",
    "test": "test", "testing": "test",
}
METADATA_NAME = "metadata.csv"
INFO_NAME = "task.json"
_INT_RE = re.compile(r"^[+-]?\d+$")


# ----------------------------------------------------------------------------- labels


def sorted_label_names(values: Iterable) -> list[str]:
    """Distinct labels as strings (each distinct text is its own class: "7" and "007" are two), sorted
    numerically (then by text) if all are integers, else lexically."""
    strs = {_label_key(v) for v in values}
    if strs and all(_INT_RE.match(s) for s in strs):
        return sorted(strs, key=lambda s: (int(s), s))
    return sorted(strs)


def _label_key(v) -> str:
    return str(int(v)) if isinstance(v, (int, np.integer)) else str(v).strip()


def _warn_split_problems(rows: list[dict], where) -> None:
    """Warn about a split layout that makes the probe's numbers meaningless or leaky."""
    by_split: dict[str, set] = {}
    files: dict[str, set] = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(_label_key(r["label"]))
        files.setdefault(os.path.normpath(r["file_name"]), set()).add(r["split"])
    train = by_split.get("train", set())
    if len(train) == 1:
        warnings.warn(f"{where}: the train split has a single class ({sorted(train)[0]!r}); a classifier "
                      "cannot learn anything from it")
    unseen = sorted((by_split.get("valid", set()) | by_split.get("test", set())) - train)
    if unseen:
        warnings.warn(f"{where}: label(s) {unseen[:10]} occur in valid/test but never in train; those "
                      "examples can only be misclassified")
    shared = sorted(f for f, splits in files.items() if len(splits) > 1)
    if shared:
        warnings.warn(f"{where}: {len(shared)} file(s) are in more than one split (test leakage), e.g. {shared[:5]}")


# ----------------------------------------------------------------------------- (a) EVAR folder


def read_metadata(csv_path: PathLike) -> tuple[list[dict], str]:
    """Read an EVAR metadata CSV; returns (rows, kind) with kind "split" or "fold".

    Raises ValueError naming the file and its columns when ``file_name``/``label`` or the
    ``split``/``fold`` column is missing, or a split/fold value is invalid.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"no metadata file {csv_path}")
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items() if k} for r in reader]
    missing = [c for c in ("file_name", "label") if c not in columns]
    has_split, has_fold = "split" in columns, "fold" in columns
    if missing or has_split == has_fold:
        need = "file_name,label and exactly one of split/fold"
        problem = f"missing {missing}" if missing else ("both split and fold" if has_split else "no split or fold column")
        raise ValueError(f"{csv_path}: bad columns {columns} ({problem}); expected {need}")
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    kind = "split" if has_split else "fold"
    if kind == "split":
        unsplit = [i + 2 for i, r in enumerate(rows) if not r["split"]]
        if unsplit:  # EVAR's convention (GTZAN: the files outside the fault-filtered lists)
            warnings.warn(f"{csv_path}: {len(unsplit)} row(s) with an empty split are not in the task (lines "
                          f"{unsplit[:10]}{' ...' if len(unsplit) > 10 else ''})")
            rows = [r for r in rows if r["split"]]
            if not rows:
                raise ValueError(f"{csv_path}: every row has an empty split")
    bad = []
    for i, r in enumerate(rows):
        if kind == "split":
            s = SPLIT_ALIASES.get(str(r["split"]).lower())
            if s is None:
                bad.append((i + 2, r["split"]))
            r["split"] = s
        else:
            if not _INT_RE.match(str(r["fold"])):
                bad.append((i + 2, r["fold"]))
            else:
                r["fold"] = int(r["fold"])
    if bad:
        what = "split values must be train/valid/test" if kind == "split" else "fold values must be integers"
        raise ValueError(f"{csv_path}: {what}; bad (line, value): {bad[:10]}{' ...' if len(bad) > 10 else ''}")
    return rows, kind


def load_task_dir(
    task_dir: PathLike,
    sampling_rate: Optional[int] = None,
    clip_seconds: Optional[float] = None,
    *,
    root: Optional[PathLike] = None,
    metadata: Optional[PathLike] = None,
    test_fold: Optional[int] = None,
    valid_fraction: float = VALID_FRACTION,
    seed: int = 0,
    check_files: bool = True,
    allow_outside_root: bool = False,
    on_error: str = "raise",
    crop_cache_dir: Optional[PathLike] = None,
    decode_workers: int = 0,
) -> DatasetDict:
    """Load an EVAR-style task folder (``metadata.csv`` + audio files).

    Args:
        task_dir: folder holding ``metadata.csv`` (and the audio unless ``root`` is given).
        sampling_rate: decode/resample to this rate (Hz); None keeps each file's native rate.
        clip_seconds: None (default) = no cropping, clips keep their lengths. Given: adds a fixed
            length ``input_values`` column via :func:`hf_fusion.tasks.clips.crop_clips`
            (random crops for train/valid, start 0 for test, zero padding); needs ``sampling_rate``
            and, for fold data, ``test_fold``.
        root: folder the ``file_name`` paths are relative to (default: ``task.json``'s ``audio_root`` for a
            prepared task, else ``task_dir``; with ``metadata``, the CSV's folder).
        metadata: explicit CSV path (default ``task_dir/metadata.csv``), e.g. EVAR's ``evar/metadata/<task>.csv``
            with ``root`` its audio folder (``work/16k/<task>``).
        test_fold: for fold data, return train/valid/test with this fold held out.
        valid_fraction: the validation share carved from fold data (see ``fold_splits``).
        seed: the seed of that carving.
        check_files: raise FileNotFoundError naming missing audio files (default True).
        allow_outside_root: accept ``file_name`` paths that resolve outside ``root`` (``..``, absolute
            paths, symlinks); refused by default so a metadata file cannot open arbitrary files.
        on_error: with ``clip_seconds`` every file is decoded here: ``"raise"`` names every unreadable
            file in one ValueError, ``"skip"`` drops them (see ``_finish``; ``skipped_at_load``).
        crop_cache_dir: folder of the memory-mapped crop files (default ``$HF_FUSION_CACHE/clips``).
        decode_workers: processes decoding + resampling for the crops (the same crops bit for bit).
    Returns:
        DatasetDict (train/valid/test, or ``all`` for fold data without ``test_fold``) with
        columns ``file_name`` (str), ``audio`` (Audio), ``label`` (ClassLabel), ``fold`` (int,
        fold data only) and any extra CSV columns (str).
    """
    task_dir = Path(task_dir)
    csv_path = Path(metadata) if metadata is not None else task_dir / METADATA_NAME
    rows, kind = read_metadata(csv_path)
    info = read_task_info(task_dir) if metadata is None else {}
    if root is None:
        root = info.get("audio_root")  # a prepared task: the audio stays in the download
    root = Path(root) if root is not None else (task_dir if metadata is None else csv_path.parent)
    paths = [str((root / r["file_name"]).resolve()) for r in rows]
    if not allow_outside_root:
        inside = root.resolve()
        outside = [r["file_name"] for r, p in zip(rows, paths) if not Path(p).is_relative_to(inside)]
        if outside:
            raise ValueError(
                f"{csv_path}: {len(outside)} file_name(s) point outside {root} (after '..', absolute paths or "
                f"symlinks): {outside[:5]}; keep the audio under the task folder, give root= the folder that "
                "holds it, or pass allow_outside_root=True (CLI --allow-outside-task-dir) if that is intended"
            )
    if check_files:
        missing = [r["file_name"] for r, p in zip(rows, paths) if not os.path.isfile(p)]
        if missing:
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise FileNotFoundError(
                f"{len(missing)} audio file(s) listed in {csv_path} not found under {root}: "
                f"{', '.join(missing[:10])}{more}"
            )
    names = sorted_label_names(r["label"] for r in rows)
    index = {n: i for i, n in enumerate(names)}
    extras = [c for c in rows[0] if c not in ("file_name", "label", "split", "fold")]
    feats = {"file_name": Value("string"), "audio": Audio(sampling_rate=sampling_rate),
             "label": ClassLabel(names=names)}
    if kind == "fold":
        feats["fold"] = Value("int64")
    feats.update({c: Value("string") for c in extras})
    features = Features(feats)

    def build(sel: Sequence[int]) -> Dataset:
        d = {"file_name": [rows[i]["file_name"] for i in sel], "audio": [paths[i] for i in sel],
             "label": [index[_label_key(rows[i]["label"])] for i in sel]}
        if kind == "fold":
            d["fold"] = [rows[i]["fold"] for i in sel]
        for c in extras:
            d[c] = [rows[i].get(c) for i in sel]
        return Dataset.from_dict(d, features=features)

    if kind == "split":
        _warn_split_problems(rows, csv_path)
        parts = {s: [i for i, r in enumerate(rows) if r["split"] == s] for s in SPLITS}
        empty = [s for s, sel in parts.items() if not sel]
        if empty:
            raise ValueError(f"{csv_path}: split(s) {empty} have no rows; need train, valid and test")
        data = DatasetDict({s: build(sel) for s, sel in parts.items()})
    else:
        data = DatasetDict({ALL_SPLIT: build(range(len(rows)))})
    data = _finish(data, clip_seconds, test_fold, valid_fraction, seed, on_error, crop_cache_dir, decode_workers)
    if info.get("gaps"):
        setattr(data, PARTIAL_ATTR, info["gaps"])
    return data


# ----------------------------------------------------------------------------- shared normalisation


def _finish(data: DatasetDict, clip_seconds, test_fold, valid_fraction, seed, on_error: str = "raise",
            crop_cache_dir=None, decode_workers: int = 0) -> DatasetDict:
    """Apply the fold choice and the optional crop to a normalised DatasetDict.

    Fold data (split ``all`` with a ``fold`` column) with ``clip_seconds``: every clip is decoded
    once (:func:`crop_fold_clips`). With ``test_fold``: train/valid/test where train/valid hold the
    random training crops and test the crops from sample 0. Without: ``all`` (crops from sample 0,
    every clip once) plus, when some clips are longer than the clip length, ``all_train_crops``
    (those clips' random training crops, column ``source_row`` = their row in ``all``); the probe
    uses the right crop for each fold (``hf_fusion.evaluation.TaskFeatures.train_X``).

    Cropping decodes every clip: an unreadable one raises naming every bad file (``on_error="raise"``)
    or is dropped from every split it would feed (``"skip"``: from ``all`` and ``all_train_crops`` alike)
    and recorded, ``skipped_at_load(result)`` -> ``{split: [files]}`` (fold data: under ``all``, or with
    ``test_fold`` under ``test`` / ``train`` by the file's fold).
    The crops are memory-mapped arrow files under ``crop_cache_dir`` (default ``$HF_FUSION_CACHE/clips``).
    """
    is_fold = ALL_SPLIT in data
    if test_fold is not None and not is_fold:
        raise ValueError(f"test_fold={test_fold} given but the data has fixed splits {list(data)}, no folds")
    if clip_seconds is None:
        return data if test_fold is None else fold_splits(data[ALL_SPLIT], test_fold, valid_fraction, seed)
    if not is_fold:
        return crop_clips(data, clip_seconds, seed=seed, on_error=on_error, cache_dir=crop_cache_dir,
                          decode_workers=decode_workers)
    test_crops, train_crops, long_rows, skipped = crop_fold_clips(data[ALL_SPLIT], clip_seconds, seed=seed,
                                                                  on_error=on_error, cache_dir=crop_cache_dir,
                                                                  decode_workers=decode_workers)
    if test_fold is not None:
        out = fold_splits(test_crops, test_fold, valid_fraction, seed, train_dataset=train_crops)
        if skipped:
            by_name = _folds_by_name(data[ALL_SPLIT])
            record = {}
            for name in skipped:
                record.setdefault("test" if by_name.get(name) == test_fold else "train", []).append(name)
            setattr(out, SKIPPED_ATTR, record)
        return out
    out = {ALL_SPLIT: test_crops}
    if long_rows:
        out[TRAIN_CROPS_SPLIT] = with_row_column(train_crops, SOURCE_ROW).select(long_rows)
    out = DatasetDict(out)
    setattr(out, SKIPPED_ATTR, {ALL_SPLIT: skipped} if skipped else {})
    return out


def _folds_by_name(ds: Dataset) -> dict[str, int]:
    """{audio path: fold} of fold data (the names ``decode_audio`` reports)."""
    values = ds.select_columns(["audio"]).cast_column("audio", Audio(decode=False))["audio"]
    return {v.get("path"): int(f) for v, f in zip(values, ds["fold"]) if v.get("path")}


def _as_dict(obj: Union[Dataset, DatasetDict]) -> DatasetDict:
    if isinstance(obj, Dataset):
        return DatasetDict({ALL_SPLIT: obj})
    if isinstance(obj, DatasetDict):
        return obj
    raise TypeError(f"expected a Dataset or DatasetDict, got {type(obj).__name__}")


def _concat(data: DatasetDict) -> Dataset:
    parts = list(data.values())
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def _rename(ds: Dataset, src: str, dst: str) -> Dataset:
    if src == dst:
        return ds
    if dst in ds.column_names:
        ds = ds.remove_columns(dst)
    return ds.rename_column(src, dst)


def normalize_task_data(
    obj: Union[Dataset, DatasetDict],
    *,
    sampling_rate: Optional[int] = None,
    audio_column: str = "audio",
    label_column: str = "label",
    split_column: Optional[str] = None,
    fold_column: Optional[str] = None,
    split_map: Optional[Mapping[str, str]] = None,
    drop_labels: Sequence[str] = (),
    valid_fraction: float = VALID_FRACTION,
    seed: int = 0,
    source: str = "dataset",
) -> DatasetDict:
    """Rename/cast any audio classification dataset to the task layout of this module.

    * ``split_column``: all rows are pooled and split by this column's values (mapped by
      ``split_map``, then the usual aliases, e.g. validation -> valid).
    * ``fold_column``: all rows are pooled into ``all`` with an int ``fold`` column.
    * otherwise the dataset's own splits are used (train/validation/test aliases); when there is
      train and test but no validation split, a stratified ``valid_fraction`` of train becomes
      valid (see ``stratified_valid_indices``).
    Columns are renamed to ``audio``/``label``/``fold`` (an existing column with the target name
    is dropped first). Rows whose label is in ``drop_labels`` are removed.
    """
    data = _as_dict(obj)
    for split, ds in data.items():
        needed = [c for c in (audio_column, label_column, split_column, fold_column) if c]
        missing = [c for c in needed if c not in ds.column_names]
        if missing:
            raise ValueError(f"{source}: split {split!r} lacks column(s) {missing}; columns are {ds.column_names}")
    aliases = dict(SPLIT_ALIASES)
    if split_map:
        aliases.update({str(k).lower(): v for k, v in split_map.items()})

    if fold_column:
        ds = _rename(_concat(data), fold_column, "fold")
        if ds.features["fold"] != Value("int64"):
            ds = ds.cast_column("fold", Value("int64"))
        data = DatasetDict({ALL_SPLIT: ds})
    elif split_column:
        ds = _concat(data)
        values = [str(v).lower() for v in ds[split_column]]
        unknown = sorted({v for v in values if aliases.get(v) not in SPLITS})
        if unknown:
            raise ValueError(f"{source}: column {split_column!r} has values {unknown} not mapped to train/valid/test; "
                             "pass split_map={value: 'train'|'valid'|'test'}")
        target = np.array([aliases[v] for v in values])
        ds = ds.remove_columns(split_column)
        data = DatasetDict({s: ds.select(np.flatnonzero(target == s)) for s in SPLITS if (target == s).any()})
    else:
        renamed = {}
        for split, ds in data.items():
            s = aliases.get(split.lower())
            if s not in SPLITS:
                raise ValueError(f"{source}: cannot tell train/valid/test from split names {list(data)}; "
                                 "give split_column=, fold_column= or split_map=")
            if s in renamed:
                raise ValueError(f"{source}: splits {list(data)} map twice to {s!r}")
            renamed[s] = ds
        data = DatasetDict(renamed)
    if ALL_SPLIT not in data:
        if "valid" not in data and "train" in data and "test" in data:
            pos = stratified_valid_indices(data["train"][label_column], valid_fraction, seed)
            keep = np.setdiff1d(np.arange(len(data["train"])), pos)
            data = DatasetDict(train=data["train"].select(keep), valid=data["train"].select(pos), test=data["test"])
        missing = [s for s in SPLITS if s not in data]
        if missing:
            raise ValueError(f"{source}: split(s) {missing} missing (have {list(data)})")
        data = DatasetDict({s: data[s] for s in SPLITS})

    data = DatasetDict({k: _rename(_rename(ds, audio_column, "audio"), label_column, "label") for k, ds in data.items()})
    data = _relabel(data, drop_labels, source)
    return DatasetDict({k: ds.cast_column("audio", Audio(sampling_rate=sampling_rate)) for k, ds in data.items()})


def _relabel(data: DatasetDict, drop_labels: Sequence[str], source: str) -> DatasetDict:
    """Make ``label`` a ClassLabel shared by all splits; drop rows whose label is in drop_labels."""
    feats = [ds.features["label"] for ds in data.values()]
    drop = {str(d) for d in drop_labels}
    if all(isinstance(f, ClassLabel) for f in feats) and all(f.names == feats[0].names for f in feats):
        old = feats[0].names
        if not drop:
            return data
        unknown = drop - set(old)
        if unknown:
            raise ValueError(f"{source}: drop_labels {sorted(unknown)} are not label names")
        names = [n for n in old if n not in drop]
        lut = np.array([names.index(n) if n in names else -1 for n in old])
    else:
        if any(isinstance(f, ClassLabel) for f in feats):
            raise ValueError(f"{source}: splits have different label features {feats}")
        if any(not isinstance(f, Value) for f in feats):
            raise ValueError(f"{source}: label column must hold strings or integers, got {feats[0]}")
        values = set()
        for ds in data.values():
            values.update(_label_key(v) for v in ds.unique("label"))
        names = [n for n in sorted_label_names(values) if n not in drop]
        lut = {n: i for i, n in enumerate(names)}
    out = {}
    for split, ds in data.items():
        def to_id(batch, _lut=lut):
            if isinstance(_lut, dict):
                return {"label": [_lut.get(_label_key(v), -1) for v in batch]}
            return {"label": _lut[np.asarray(batch, dtype=np.int64)].tolist()}

        feats_new = ds.features.copy()
        feats_new["label"] = Value("int64")
        ds = ds.map(to_id, input_columns="label", batched=True, features=feats_new, desc=f"labels {split}")
        if drop:
            ds = ds.filter(lambda b: [v >= 0 for v in b], input_columns="label", batched=True)
        out[split] = ds.cast_column("label", ClassLabel(names=names))
    return DatasetDict(out)


# ----------------------------------------------------------------------------- (b) audiofolder


#: keyword options every loader shares, with their defaults: the fold held out as test (fold tasks), the
#: validation fraction and seed of a train/valid split (and of the training crops), what an unreadable file
#: does (``"raise"`` | ``"skip"``) and where crops are cached; see :func:`load_task`
SPLIT_OPTIONS = {"test_fold": None, "valid_fraction": VALID_FRACTION, "seed": 0, "on_error": "raise",
                 "crop_cache_dir": None, "decode_workers": 0}


#: normalize_task_data's column-mapping arguments (a Hub dataset's layout -> the task layout)
COLUMN_MAPPING = ("audio_column", "label_column", "split_column", "fold_column", "split_map", "drop_labels")


def _split_options(kwargs: dict) -> tuple[dict, dict]:
    """Separate :data:`SPLIT_OPTIONS` (defaults filled in) from the loader's other keyword arguments."""
    rest = dict(kwargs)
    return {name: rest.pop(name, default) for name, default in SPLIT_OPTIONS.items()}, rest


def _normalize_and_finish(raw, clip_seconds, split: dict, **mapping) -> DatasetDict:
    data = normalize_task_data(raw, valid_fraction=split["valid_fraction"], seed=split["seed"], **mapping)
    return _finish(data, clip_seconds, split["test_fold"], split["valid_fraction"], split["seed"], split["on_error"],
                   split["crop_cache_dir"], split["decode_workers"])


def load_audiofolder_task(
    data_dir: PathLike,
    sampling_rate: Optional[int] = None,
    clip_seconds: Optional[float] = None,
    *,
    label_column: str = "label",
    cache_dir: Optional[PathLike] = None,
    **options,
) -> DatasetDict:
    """Load a ``datasets`` ``audiofolder`` directory as a task.

    Labels come from sub-folder names (audiofolder's default) or a metadata file column
    ``label_column``. Splits come from split sub-folders (train/validation/test), or from a
    ``split`` or ``fold`` column of the metadata file when everything lands in one split.
    ``options``: :data:`SPLIT_OPTIONS`; the rest go to ``datasets.load_dataset``.
    """
    split, load_kwargs = _split_options(options)
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"no audiofolder directory {data_dir}")
    raw = load_dataset("audiofolder", data_dir=str(data_dir), cache_dir=str(cache_dir) if cache_dir else None,
                       **load_kwargs)
    first = next(iter(raw.values()))
    if label_column not in first.column_names:
        raise ValueError(f"audiofolder {data_dir}: no {label_column!r} column (columns {first.column_names}); "
                         "put files in one sub-folder per class or give a metadata file with a label column")
    split_col = fold_col = None
    if len(raw) == 1:
        if "split" in first.column_names:
            split_col = "split"
        elif "fold" in first.column_names:
            fold_col = "fold"
    return _normalize_and_finish(raw, clip_seconds, split, sampling_rate=sampling_rate, label_column=label_column,
                                 split_column=split_col, fold_column=fold_col, source=f"audiofolder {data_dir}")


# ----------------------------------------------------------------------------- (c) Hub / save_to_disk


def is_saved_dataset(path: PathLike) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    p = Path(path)
    return p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file())


def load_hub_task(
    source: PathLike,
    sampling_rate: Optional[int] = None,
    clip_seconds: Optional[float] = None,
    *,
    config: Optional[str] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    **options,
) -> DatasetDict:
    """Load a Hub dataset id (``datasets.load_dataset``) or a local ``save_to_disk`` folder
    (``datasets.load_from_disk``) and map its columns to the task layout.

    ``options``: the column mapping of :func:`normalize_task_data` (:data:`COLUMN_MAPPING`: audio_column,
    label_column, split_column, fold_column, split_map, drop_labels), :data:`SPLIT_OPTIONS`; the rest go
    to ``datasets.load_dataset``."""
    split, rest = _split_options(options)
    mapping = {name: rest.pop(name) for name in COLUMN_MAPPING if name in rest}
    load_kwargs = rest
    if is_saved_dataset(source):
        raw = load_from_disk(str(source))
        desc = f"saved dataset {source}"
    else:
        raw = load_dataset(str(source), name=config, revision=revision,
                           cache_dir=str(cache_dir) if cache_dir else None, **load_kwargs)
        desc = f"dataset {source}"
    parts = raw if isinstance(raw, DatasetDict) else {ALL_SPLIT: raw}
    columns = next(iter(parts.values())).column_names
    for key, plain in (("audio_column", "audio"), ("label_column", "label")):
        if mapping.get(key) and mapping[key] not in columns and plain in columns:
            mapping[key] = plain  # a copy in the task layout (hf-fusion prepare --push) under a registered name
    if not ({"split_column", "fold_column"} & {k for k, v in mapping.items() if v}) and len(parts) == 1 and \
            "fold" in columns:
        mapping["fold_column"] = "fold"  # one split with a fold column: a fold task (hf-fusion prepare --push)
    return _normalize_and_finish(raw, clip_seconds, split, sampling_rate=sampling_rate, source=desc, **mapping)


# ----------------------------------------------------------------------------- dispatcher


def read_task_info(folder: PathLike) -> dict:
    """A task folder's ``task.json`` (written by ``hf-fusion prepare``; {} when there is none)."""
    path = Path(folder) / INFO_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _looks_evar(task_dir: Path) -> bool:
    csv_path = task_dir / METADATA_NAME
    if not csv_path.is_file():
        return False
    with open(csv_path, newline="", encoding="utf-8") as f:
        header = [c.strip() for c in next(csv.reader(f), [])]
    return "file_name" in header and "label" in header and ("split" in header or "fold" in header)


def load_task(
    task: Union[str, PathLike, TaskSpec],
    sampling_rate: Optional[int] = None,
    *,
    root: Optional[PathLike] = None,
    source: Optional[PathLike] = None,
    crop: bool = False,
    clip_seconds: Optional[float] = None,
    test_fold: Optional[int] = None,
    valid_fraction: float = VALID_FRACTION,
    seed: int = 0,
    on_error: str = "raise",
    crop_cache_dir: Optional[PathLike] = None,
    decode_workers: int = 0,
    **kwargs,
) -> DatasetDict:
    """Load a registered task by name, or any task folder by path.

    * registered name + ``root``: an EVAR folder (``root/metadata.csv``, or
      ``root/<name>/metadata.csv``);
    * registered name + ``source``: a Hub id or ``save_to_disk`` folder read with the task's
      documented column mapping (``source`` defaults to the registry's Hub id);
    * a folder path (a ``Path``, or a string that is not a registered name): EVAR folder if its
      ``metadata.csv`` has file_name/label/split-or-fold, a ``save_to_disk`` folder, otherwise
      an ``audiofolder``.
    ``crop=True`` crops/pads to the registered clip length (``clip_seconds`` overrides it).
    Cropping decodes every file: ``on_error="raise"`` names every unreadable one in one ValueError,
    ``"skip"`` drops them and records them (``hf_fusion.tasks.validate.skipped_at_load(data)``).
    The crops are memory-mapped arrow files under ``crop_cache_dir`` (default ``$HF_FUSION_CACHE/clips``).
    Extra keyword arguments go to the underlying loader.
    """
    spec: Optional[TaskSpec] = task if isinstance(task, TaskSpec) else None
    if isinstance(task, str):
        try:
            spec = get_task(task)  # a registered name wins over a same-named folder (use ./name)
        except KeyError:
            if not (os.path.sep in task or task.startswith(".") or Path(task).exists()):
                raise  # neither a known task nor a folder: the message lists known names
    if crop and clip_seconds is None:
        clip_seconds = spec.clip_seconds if spec is not None else None
        if clip_seconds is None:
            raise ValueError(f"crop=True but no clip length is known for {task!r}; pass clip_seconds=")
    common = dict(test_fold=test_fold, valid_fraction=valid_fraction, seed=seed, on_error=on_error,
                  crop_cache_dir=crop_cache_dir, decode_workers=decode_workers)
    if spec is None:
        path = Path(task)
        if not path.is_dir():
            raise FileNotFoundError(f"task folder {path} does not exist")
        if _looks_evar(path):
            return load_task_dir(path, sampling_rate, clip_seconds, **common, **kwargs)
        if is_saved_dataset(path):
            return load_hub_task(path, sampling_rate, clip_seconds, **common, **kwargs)
        return load_audiofolder_task(path, sampling_rate, clip_seconds, **common, **kwargs)

    if spec.name in SYNTHETIC_TASKS and root is None and source is None:
        # ``seed`` is the crop seed; the audio uses build seed 0 (out_dir=, n_per_class= pass through
        # kwargs); call load_synthetic_task directly for another build seed.
        return load_synthetic_task(spec.name, sampling_rate=sampling_rate, clip_seconds=clip_seconds,
                                   crop_seed=seed, test_fold=test_fold, valid_fraction=valid_fraction, on_error=on_error,
                                   crop_cache_dir=crop_cache_dir, decode_workers=decode_workers, **kwargs)
    if root is not None and kwargs.get("metadata") is not None:
        metadata = Path(kwargs.pop("metadata"))  # EVAR's own CSV, its audio under root (honoured, not ignored)
        data = load_task_dir(metadata.parent, sampling_rate, clip_seconds, root=root, metadata=metadata, **common,
                             **kwargs)
    elif root is not None:
        root = Path(root)
        task_dir = root / spec.name if not (root / METADATA_NAME).is_file() else root
        data = load_task_dir(task_dir, sampling_rate, clip_seconds, **common, **kwargs)
    else:
        hub = spec.hub
        if source is None and hub is None:
            raise ValueError(f"task {spec.name!r} has no Hub copy that follows the paper's split: prepare the official "
                             f"download (hf-fusion prepare {spec.name} DOWNLOAD_DIR --out ROOT, or "
                             "hf_fusion.tasks.prepare_task) and load ROOT (root=ROOT; on the command line --task-root "
                             "ROOT), or give a Hub id / save_to_disk folder (source=; --task-dir for a folder)")
        mapping = hub.mapping_kwargs() if hub is not None else {}
        mapping.update(kwargs)
        data = load_hub_task(source if source is not None else hub.dataset_id, sampling_rate, clip_seconds,
                             **common, **mapping)
    n = data[next(iter(data))].features["label"].num_classes
    if n != spec.n_classes:
        warnings.warn(f"task {spec.name!r}: loaded data has {n} classes, the paper's task has {spec.n_classes}")
    return data


def load_synthetic_task(
    name: str,
    out_dir: Union[None, str, os.PathLike] = None,
    seed: int = 0,
    n_per_class: Optional[int] = None,
    sampling_rate: Optional[int] = None,
    clip_seconds: Optional[float] = None,
    crop_seed: int = 0,
    **kwargs,
):
    """Build (if needed) and load a synthetic task as a DatasetDict(train, valid, test).

    ``seed`` is the build seed (the audio itself); ``crop_seed`` only matters when
    ``clip_seconds`` is shorter than the 1.0 s clips. ``sampling_rate`` defaults to the native
    16 kHz; other keyword arguments go to :func:`load_task_dir`.
    """
    task_dir = build_synthetic_task(out_dir if out_dir is not None else default_synthetic_dir(), name, seed,
                                    n_per_class)
    if kwargs.get("test_fold") is not None:
        raise ValueError(f"{name} has fixed train/valid/test splits, no folds")
    kwargs.pop("test_fold", None)
    return load_task_dir(task_dir, sampling_rate or SYNTH_RATE, clip_seconds, seed=crop_seed, **kwargs)
