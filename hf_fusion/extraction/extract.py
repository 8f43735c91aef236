"""All-layer feature extraction with ``datasets.map(batched=True)`` into the resumable cache.

One forward pass per batch yields every requested layer, pooled on its own (Eq.1, then Eq.3 over each
clip's valid frames) and stored as a column; a clip's vector does not depend on ``batch_size``. Work is
written in shards with markers, so a restarted run resumes; concurrent runs share shards under file
locks (:mod:`.locks`), and the processes of an ``accelerate launch`` share them round-robin. Speed
options: ``decode_workers`` (:mod:`.decoding`), ``bucket_by_length`` (:mod:`.bucketing`), ``dtype``
(:mod:`.precision`). Behaviour in full: docs/extraction.md and docs/design.md.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, List, Value
from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from tqdm.auto import tqdm

from ..data.bucketing import bucketed_batches, contiguous_batches
from ..data.columns import SOURCE_ROW, skipped_at_load
from ..data.decoding import AudioDecodeError, ClipFeeder, DecodeFailure, check_on_error, check_workers, decode_audio
from ..data.fingerprints import dataset_fingerprint
from ..data.storage import atomic_write_json, default_cache_root, read_json
from ..models.fusion import temporal_pool
from .cache import META, PLAN, SHARDS, FeatureCache, group_name, layer_column
from .identity import model_key
from .precision import backbone_autocast, resolve_dtype
from .windows import can_window, default_context, windowed_embedding
from .integrity import remember_moved, shard_checksum, shard_problem
from .locks import FileLock, barrier, clean_temporaries, locked, work_dir

logger = logging.getLogger(__name__)


@contextmanager
def _quiet_datasets_bars():
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _resolve_layers(model, layers) -> list[int]:
    config = model.config
    return sorted(config.backbone_class.resolve_layers(config.backbone_config, layers, config.fusion_layers))


def pool_one(model, aligned: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq.3 of one Eq.1-aligned layer [B, D, T_o] -> [B, D], exactly as ``model.pool([aligned], mask)[1]``
    (no copy); ``mask`` [B, T_o] bool: each clip's valid frames (``model.frame_mask``)."""
    return temporal_pool(aligned, model.config.embedding_pooling, mask=mask)


def _row_name(ds: Dataset, row: int, audio_column: str) -> str:
    """The file behind row ``row`` of ``ds`` (its audio path or ``file_name``), else "row N"."""
    try:
        if isinstance(ds.features.get(audio_column), Audio):
            path = ds.select_columns([audio_column]).cast_column(audio_column, Audio(decode=False))[row][audio_column]
            if path.get("path"):
                return str(path["path"])
        if "file_name" in ds.column_names:
            return str(ds[row]["file_name"])
    except Exception:  # a name is a courtesy: never hide the real problem behind a lookup error
        pass
    return f"row {row}"


def _finite_clip(values, ds: Dataset, row: int, audio_column: str) -> np.ndarray:
    """A pre-cropped clip float32 [samples]; AudioDecodeError naming its file when it holds NaN/inf."""
    clip = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(clip)):
        bad = int(np.count_nonzero(~np.isfinite(clip)))
        raise AudioDecodeError(_row_name(ds, row, audio_column), f"{bad} of {clip.size} samples are NaN or infinite")
    return clip


def _plan(folder: Path, n_rows: int, shard_rows: int, key: dict) -> int:
    """Rows per shard, fixed by the first run on ``folder`` (a resumed run keeps it)."""
    plan = read_json(folder / PLAN)
    if plan is not None and plan.get("num_rows") == n_rows and plan.get("shard_rows"):
        return int(plan["shard_rows"])
    atomic_write_json(folder / PLAN, {"num_rows": n_rows, "shard_rows": shard_rows, "key": key})
    return shard_rows


def _shard_done(shards_dir: Path, name: str, rows: tuple[int, int]) -> dict | None:
    """The shard's marker when the shard is complete and its file matches the marker's checksum, else None."""
    marker = read_json(shards_dir / f"{name}.json")
    if marker is None or tuple(marker.get("rows", ())) != tuple(rows):
        return None
    if shard_problem(shards_dir / f"{name}.arrow", marker) is not None:
        return None
    return marker


def _invalidate_bad_shards(folder: Path) -> list[str]:
    """Verify every shard of a complete group; drop meta.json and the bad shards' markers -> their problems."""
    meta = read_json(folder / META) or {}
    shards_dir = folder / SHARDS
    problems = []
    for name in meta.get("shards", []):
        problem = shard_problem(shards_dir / f"{name}.arrow", read_json(shards_dir / f"{name}.json"))
        if problem is not None:
            problems.append(f"{shards_dir / name}.arrow: {problem}")
    if problems:
        (folder / META).unlink(missing_ok=True)  # the split is no longer complete: nobody reads it now
        for name in meta.get("shards", []):
            marker = shards_dir / f"{name}.json"
            if shard_problem(shards_dir / f"{name}.arrow", read_json(marker)) is not None:
                marker.unlink(missing_ok=True)
    return problems


def extract_features(
    model,
    feature_extractor,
    data: DatasetDict | Dataset,
    task_name: str,
    layers: str | int | Sequence[int] | None = "all",
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None = None,
    on_error: str = "raise",
    batches_per_shard: int = 16,
    accelerator=None,
    progress: bool = True,
    audio_column: str = "audio",
    input_column: str = "input_values",
    splits: Sequence[str] | None = None,
    long_clip_seconds: float | None = 120.0,
    window_seconds: float = 60.0,
    model_name: str | None = None,
    decode_workers: int = 0,
    bucket_by_length: bool = False,
    dtype: str = "fp32",
) -> FeatureCache:
    """Extract (or reuse) the Eq.1+Eq.3 vector of every requested layer for every split of ``data``.

    Args:
        model: an ``AudioFusionModel`` (any backbone). It runs only for splits not yet cached.
        feature_extractor: its ``FusedAudioFeatureExtractor``.
        data: DatasetDict (train/valid/test, or one split with an int ``fold`` column), or a Dataset
            (cached as split ``"all"``). Needs an integer/ClassLabel ``label`` column and either a
            fixed-length float column ``input_column`` (clips already cut, e.g. by the task loader's
            ``clip_seconds``) or an ``Audio`` column (decoded here, resampled to the front end's rate).
        task_name: the task's name (part of the cache path; the data content is hashed too).
        layers: ``"all"`` tappable layers (default), ``None``/``"fusion"`` = the model's fusion
            layers, or a list of layer numbers.
        batch_size: clips per forward pass (speed and memory only: vectors do not depend on it).
            batches_per_shard: batches per resumable shard.
        cache_dir: cache root (default ``$HF_FUSION_CACHE`` or ``~/.cache/hf_fusion``).
        on_error: ``"raise"`` stops at the first undecodable audio file naming it; ``"skip"`` drops it
            (the names are kept: ``FeatureCache.skipped(split)``, which also lists the files the task
            loader skipped, ``hf_fusion.tasks.validate.skipped_at_load(data)``).
        accelerator: an ``accelerate.Accelerator`` (default: a new one; it picks the device and,
            under ``accelerate launch``, the process's share of the shards).
        long_clip_seconds: a clip longer than this (None: never) runs alone in windows (below).
        window_seconds: the window of a long clip, run with exact context (:mod:`.windows`; CREPE, VGGish,
            CNN14 with per-frame Eq.1), so peak memory follows the window, not the clip (a 1-hour file
            needs the memory of a minute); the vector equals the whole-clip one to ~1e-6 relative.
        model_name: what the progress bars call the model (default: its backbone, e.g. ``crepe-tiny``).
        decode_workers: processes decoding + resampling an ``Audio`` column ahead of the model, in order
            (:mod:`.decoding`; 0 = in the calling process). Same clips bit for bit, same cache.
        bucket_by_length: group an ``Audio`` column's clips of similar length (header durations) into
            batches within each shard (:mod:`.bucketing`): less padding; rows are written back in
            order; vectors equal the plain run's bit for bit where extraction is batch-invariant (CREPE,
            VGGish's conv layers, AST), else to float rounding (batch-size level, ~1e-7 relative).
        dtype: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: the backbone under autocast, the front end
            and Eq.3 in float32 (:mod:`.precision`); a low precision is part of the cache key.
    Returns:
        A :class:`FeatureCache` of the task (``.load(layer_or_layers, split) -> (X, y)``).
    """
    check_on_error(on_error)
    if batch_size < 1 or batches_per_shard < 1:
        raise ValueError(f"batch_size and batches_per_shard must be >= 1, got {batch_size}, {batches_per_shard}")
    check_workers(decode_workers)  # before any work
    resolve_dtype(dtype)  # a clear error for an unknown name, before any work
    load_skipped = skipped_at_load(data)
    if isinstance(data, Dataset):
        data = DatasetDict({"all": data})
    if not isinstance(data, DatasetDict):
        raise TypeError(f"data must be a datasets DatasetDict or Dataset, got {type(data).__name__}")
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator()
    layers = _resolve_layers(model, layers)
    dims = {layer: model.config.layer_dims[layer] for layer in layers}
    settings = ExtractionSettings(
        model, feature_extractor, layers, dims, batch_size, batches_per_shard, on_error, accelerator, progress,
        audio_column, input_column, long_clip_seconds, window_seconds, model_name or _model_label(model),
        decode_workers, bool(bucket_by_length), dtype)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    mkey, mdesc = model_key(model, feature_extractor, dtype)
    model_dir = root / "features" / mkey
    model_info = {
        "model_key": mkey,
        "fusion_layers": list(model.config.fusion_layers),
        "pooling": model.config.pooling,
        "backbone": model.config.backbone,
    }
    if accelerator.is_main_process and read_json(model_dir / "model.json") is None:
        atomic_write_json(model_dir / "model.json", {**model_info, **mdesc})
    task_slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(task_name)) or "task"
    folders = {}
    for split in splits if splits is not None else list(data):
        ds = data[split]
        split_dir = _split_folder(model_dir / task_slug, split, ds, audio_column, input_column)
        for group in _complete_groups(split_dir, []) if accelerator.is_main_process else []:
            problems = _invalidate_bad_shards(group)  # the group is then incomplete: rebuilt below when requested
            if problems:
                logger.warning(f"{task_name}/{split}: {len(problems)} bad feature-cache shard(s), rebuilding them: "
                               f"{problems}")
        barrier(accelerator, split_dir)
        covering = _complete_groups(split_dir, layers)
        if covering:  # an earlier run (e.g. all layers) already holds every requested layer
            folders[split] = covering
            continue
        folder = split_dir / group_name(layers)
        SplitJob(settings, ds, split, task_name, folder).run()
        folders[split] = [folder] + [g for g in _complete_groups(split_dir, []) if g != folder]
    return FeatureCache(task_name, folders, model_info,
                        {split: names for split, names in load_skipped.items() if split in folders})


def _complete_groups(split_dir: Path, layers: Sequence[int]) -> list[Path]:
    """Complete layer groups of a split holding all ``layers``, largest first."""
    found = []
    for folder in split_dir.glob("layers-*") if split_dir.is_dir() else []:
        meta = read_json(folder / META)
        if meta is not None and set(layers) <= set(meta.get("layers", [])):
            found.append((-len(meta["layers"]), folder.name, folder))
    return [folder for *_, folder in sorted(found)]


def _split_folder(task_dir: Path, split: str, ds: Dataset, audio_column: str, input_column: str) -> Path:
    extra = tuple(c for c in ("fold", SOURCE_ROW, input_column) if c in ds.column_names)
    return task_dir / f"{split}-{dataset_fingerprint(ds, audio_column, extra)}"


def _model_label(model) -> str:
    """``crepe-tiny``, ``ast``, ...: the backbone (and its CREPE capacity) of the model being extracted."""
    capacity = dict(model.config.backbone_config or {}).get("capacity")
    return f"{model.config.backbone}-{capacity}" if capacity else str(model.config.backbone)


@dataclass
class ExtractionSettings:
    """What every split of one ``extract_features`` call shares (see its arguments)."""

    model: Any
    feature_extractor: Any
    layers: list[int]
    dims: dict[int, int]
    batch_size: int
    batches_per_shard: int
    on_error: str
    accelerator: Any
    progress: bool
    audio_column: str
    input_column: str
    long_clip_seconds: float | None = None
    window_seconds: float = 60.0
    model_name: str = ""
    decode_workers: int = 0
    bucket_by_length: bool = False
    dtype: str = "fp32"


@dataclass
class _ShardPlan:
    """The split's shards: row ranges ``bounds``, file stems ``names``, this process's ``mine`` and the
    ones of them still to compute ``todo``."""

    bounds: list[tuple[int, int]]
    names: list[str]
    mine: list[int]
    todo: list[int]


class SplitJob:
    """One split's extraction into ``folder``: plan the shards, compute this process's unfinished ones
    (each one ``Dataset.map`` into its own file, under a file lock, then a marker), and let the main
    process mark the split complete (``meta.json``) once every shard is there."""

    def __init__(self, settings: ExtractionSettings, ds: Dataset, split: str, task_name: str, folder: Path):
        self.s, self.ds, self.split, self.task_name, self.folder = settings, ds, split, task_name, folder
        self.where = f"{task_name}/{split}"
        if "label" not in ds.column_names:
            raise ValueError(f"{self.where}: the data has no 'label' column (columns {ds.column_names})")
        self.sr = int(settings.feature_extractor.sampling_rate)
        self.use_input = settings.input_column in ds.column_names
        if not self.use_input and not isinstance(ds.features.get(settings.audio_column), Audio):
            raise ValueError(
                f"{self.where}: needs an Audio column {settings.audio_column!r} or a clip column "
                f"{settings.input_column!r}; columns are {ds.column_names}"
            )
        # integer columns copied to the cache as they are: the fold, and a training crop's row in "all"
        self.carried = [c for c in ("fold", SOURCE_ROW) if c in ds.column_names]
        source = [settings.input_column] if self.use_input else [settings.audio_column]
        work = ds.select_columns(source + ["label"] + self.carried)
        self.work = (work.with_format("numpy", columns=[settings.input_column], output_all_columns=True)
                     if self.use_input else work.cast_column(settings.audio_column, Audio(decode=False)))
        self.decoder = Audio(sampling_rate=self.sr)
        self.out_features = Features(
            {"row": Value("int64"), "label": Value("int64"), **{c: Value("int64") for c in self.carried},
             **{layer_column(layer): List(Value("float32"), length=settings.dims[layer]) for layer in settings.layers}}
        )
        self.shards_dir = folder / SHARDS
        self.device = settings.accelerator.device
        self.windowed = settings.long_clip_seconds is not None and can_window(settings.model)
        self.long_samples = int(round((settings.long_clip_seconds or 0) * self.sr))
        self.window_samples = int(round(settings.window_seconds * self.sr))
        self.context = default_context(settings.model, settings.feature_extractor) if self.windowed else 0
        self.skipped: list[str] = []
        # speed hooks (decoding.py, bucketing.py): None = the plain in-process path
        self.feeder = None
        self.stream = self.precomputed = None
        self.bar = None

    # ---------------------------------------------------------------- the job
    def run(self) -> None:
        accelerator = self.s.accelerator
        plan = self.plan_shards()
        self.s.model.to(self.device).eval()
        done = sum(plan.bounds[j][1] - plan.bounds[j][0] for j in plan.mine if j not in plan.todo)
        self.bar = tqdm(
            total=sum(plan.bounds[j][1] - plan.bounds[j][0] for j in plan.mine), initial=done,
            desc=f"{self.s.model_name + ' ' if self.s.model_name else ''}{self.where}: {len(self.s.layers)} layer(s)",
            unit="clip", disable=not self.s.progress or not accelerator.is_local_main_process,
        )
        if not self.use_input and (self.s.decode_workers or self.s.bucket_by_length):
            self.feeder = ClipFeeder(self.work, self.s.audio_column, self.sr, self.s.decode_workers)
        try:
            with _quiet_datasets_bars(), backbone_autocast(self.s.model, self.s.dtype, self.device.type):
                self.compute_pending(plan)
        finally:
            self.bar.close()
            if self.feeder is not None:
                self.feeder.close()
            shutil.rmtree(work_dir(self.shards_dir), ignore_errors=True)  # our temporaries only
        barrier(accelerator, self.folder)
        if accelerator.is_main_process:
            self.write_meta(plan)
        barrier(accelerator, self.folder)

    def plan_shards(self) -> _ShardPlan:
        accelerator, n = self.s.accelerator, len(self.ds)
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        with locked(self.folder / ".lock"):  # another extraction of this cache may be running (see locks.py)
            if accelerator.is_main_process:
                clean_temporaries(self.shards_dir)  # only temporaries whose process is gone
            # every process derives the same plan (or reads the one a first, interrupted run fixed)
            shard_rows = _plan(self.folder, n, self.s.batch_size * self.s.batches_per_shard,
                               {"task": self.task_name, "split": self.split})
        barrier(accelerator, self.folder)
        bounds = [(a, min(a + shard_rows, n)) for a in range(0, n, shard_rows)]
        names = [f"shard-{j:05d}" for j in range(len(bounds))]
        mine = [j for j in range(len(bounds)) if j % accelerator.num_processes == accelerator.process_index]
        todo = [j for j in mine if _shard_done(self.shards_dir, names[j], bounds[j]) is None]
        logger.info(f"{self.where}: process {accelerator.process_index} of {accelerator.num_processes} computes "
                    f"shards {todo} of {len(bounds)} ({len(mine) - len(todo)} of its share already done)")
        return _ShardPlan(bounds, names, mine, todo)

    def compute_pending(self, plan: _ShardPlan) -> None:
        """First pass: the shards nobody else holds; second pass: wait for the others' locks."""
        pending, wait = list(plan.todo), False
        while pending:
            held_elsewhere = []
            for j in pending:
                lock = FileLock(self.shards_dir / f"{plan.names[j]}.lock")
                if not lock.acquire(blocking=wait):
                    held_elsewhere.append(j)
                    continue
                try:
                    if _shard_done(self.shards_dir, plan.names[j], plan.bounds[j]) is None:
                        self.compute_shard(plan.names[j], *plan.bounds[j], j)
                    else:  # another process finished it meanwhile
                        self.bar.update(plan.bounds[j][1] - plan.bounds[j][0])
                finally:
                    lock.release()
            pending, wait = held_elsewhere, True

    def compute_shard(self, name: str, a: int, b: int, j: int) -> None:
        accelerator = self.s.accelerator
        before = len(self.skipped)
        part = self.work.select(range(a, b))
        self.prepare_shard(a, b)
        # datasets writes its tmp* file beside cache_file_name: in our own work folder, never touched by
        # another process; the finished file is then moved into place and the marker written
        scratch = work_dir(self.shards_dir) / f"{name}.arrow"
        part.map(
            self.run_batch, with_indices=True, batched=True, batch_size=self.s.batch_size, fn_kwargs={"offset": a},
            remove_columns=part.column_names, features=self.out_features,
            cache_file_name=str(scratch), load_from_cache_file=False,
            writer_batch_size=self.s.batch_size, new_fingerprint=f"hf_fusion_{self.folder.parent.name[-16:]}_{j}",
        )
        checksum = shard_checksum(scratch)  # the marker vouches for exactly these bytes
        os.replace(scratch, self.shards_dir / f"{name}.arrow")
        remember_moved(scratch, self.shards_dir / f"{name}.arrow")
        atomic_write_json(self.shards_dir / f"{name}.json",
                          {"rows": [a, b], "skipped": self.skipped[before:], "layers": self.s.layers, **checksum,
                           "process_index": accelerator.process_index, "num_processes": accelerator.num_processes})

    def write_meta(self, plan: _ShardPlan) -> None:
        """Main process: check every shard and mark the split complete."""
        ds, n = self.ds, len(self.ds)
        markers = [_shard_done(self.shards_dir, plan.names[j], plan.bounds[j]) for j in range(len(plan.bounds))]
        missing = [plan.names[j] for j, m in enumerate(markers) if m is None]
        if missing:
            raise RuntimeError(f"{self.folder}: shards {missing} are incomplete after extraction")
        all_skipped = [name for m in markers for name in m.get("skipped", [])]
        if all_skipped:
            logger.warning(f"{self.where}: skipped {len(all_skipped)} unreadable audio file(s): {all_skipped[:5]}")
        label_feature = ds.features["label"]
        atomic_write_json(self.folder / META, {
            "task": self.task_name, "split": self.split, "layers": self.s.layers,
            "layer_dims": {str(k): v for k, v in self.s.dims.items()},
            "num_rows": n - len(all_skipped), "num_skipped": len(all_skipped), "skipped": all_skipped,
            "shards": plan.names, "has_fold": "fold" in ds.column_names,
            "num_classes": int(label_feature.num_classes) if isinstance(label_feature, ClassLabel) else
            int(max(np.max(ds["label"]) + 1, 0)) if n else 0,
            "label_names": list(label_feature.names) if isinstance(label_feature, ClassLabel) else None,
            "clip_samples": (ds.features[self.s.input_column].length if self.use_input else None),
            "sampling_rate": self.sr,
        })

    # ---------------------------------------------------------------- batches
    def load_inline(self, batch: dict[str, Any], rows: list[int]) -> list:
        clips = []
        for k, row in enumerate(rows):
            try:
                if self.use_input:
                    clips.append(_finite_clip(batch[self.s.input_column][k], self.ds, row, self.s.audio_column))
                else:
                    clips.append(decode_audio(batch[self.s.audio_column][k], row, self.decoder))
            except AudioDecodeError as err:
                clips.append(DecodeFailure(err.name, err.reason))
        return clips

    def compute(self, rows: list[int], clips: list) -> list:
        """Per row: {layer: vector [D_l]} or its DecodeFailure (on_error="raise": raised here)."""
        model, layers, dims = self.s.model, self.s.layers, self.s.dims
        for row, clip in zip(rows, clips):
            if isinstance(clip, DecodeFailure) and self.s.on_error == "raise":
                raise AudioDecodeError(clip.name, f"{clip.reason} (task {self.task_name}, split {self.split}, row "
                                       f"{row}); pass on_error='skip' to skip unreadable files")
        good = [k for k, clip in enumerate(clips) if not isinstance(clip, DecodeFailure)]
        clips_ok = [clips[k] for k in good]
        vectors = {layer: np.zeros((len(clips_ok), dims[layer]), dtype=np.float32) for layer in layers}
        long = [i for i, clip in enumerate(clips_ok) if len(clip) > self.long_samples] if self.windowed else []
        short = sorted(set(range(len(clips_ok))) - set(long))
        if short:
            features = self.s.feature_extractor([clips_ok[i] for i in short], sampling_rate=self.sr,
                                                return_tensors="pt", device=self.device)
            inputs, mask = features["input_values"], features.get("attention_mask")
            with torch.inference_mode():
                # ONE forward pass for every layer; the mask keeps each clip's vector independent of its batch
                taps = model.tap(inputs, layers, attention_mask=mask)
                frame_mask = None if mask is None else model.frame_mask(mask)
                for layer in layers:  # Eq.3 in float32 (taps are bf16/fp16 under dtype=...)
                    vectors[layer][short] = pool_one(model, taps[layer].float(), frame_mask).float().cpu().numpy()
        for i in long:  # alone, window by window: bounded memory whatever the clip's length
            pooled = windowed_embedding(model, self.s.feature_extractor, clips_ok[i], layers, self.window_samples,
                                        self.context)
            for layer in layers:
                vectors[layer][i] = pooled[layer].float().cpu().numpy()
        results: list = list(clips)
        for i, k in enumerate(good):
            results[k] = {layer: vectors[layer][i] for layer in layers}
        return results

    def run_batch(self, batch: dict[str, Any], indices: list[int], offset: int) -> dict[str, Any]:
        """The ``Dataset.map`` function: one batch of rows -> the cache's columns."""
        rows = [offset + i for i in indices]
        if self.precomputed is not None:  # bucketed: computed in prepare_shard, written here in row order
            results = [self.precomputed.pop(row) for row in rows]
        else:
            if self.stream is not None:  # decoded by the workers, the same batches in the same order
                fed_rows, clips = next(self.stream)
                if fed_rows != rows:
                    raise RuntimeError(f"decode workers delivered rows {fed_rows[:3]}... for batch {rows[:3]}...")
            else:
                clips = self.load_inline(batch, rows)
            results = self.compute(rows, clips)
            self.bar.update(len(rows))
        keep = [k for k, r in enumerate(results) if not isinstance(r, DecodeFailure)]
        self.skipped.extend(r.name for r in results if isinstance(r, DecodeFailure))
        out = {"row": [rows[k] for k in keep], "label": [int(batch["label"][k]) for k in keep]}
        for column in self.carried:
            out[column] = [int(batch[column][k]) for k in keep]
        for layer in self.s.layers:
            out[layer_column(layer)] = (np.stack([results[k][layer] for k in keep]) if keep
                                        else np.zeros((0, self.s.dims[layer]), dtype=np.float32))
        return out

    def prepare_shard(self, a: int, b: int) -> None:
        """Hook of the speed options: feed the shard's batches from the workers, or compute them bucketed."""
        self.stream = self.precomputed = None
        if self.feeder is None:
            return
        if not self.s.bucket_by_length:
            plan = contiguous_batches(range(a, b), self.s.batch_size)  # exactly the batches datasets.map cuts
            self.stream = zip(plan, self.feeder.batches(plan))
            return
        plan = bucketed_batches(range(a, b), self.feeder.lengths(range(a, b)), self.s.batch_size)
        self.precomputed = {}
        for rows, clips in zip(plan, self.feeder.batches(plan)):
            self.precomputed.update(zip(rows, self.compute(rows, clips)))
            self.bar.update(len(rows))
