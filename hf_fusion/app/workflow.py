"""The paper's workflow as functions the CLI calls: load model + tasks, extract, study, select, evaluate.

Data flow: tasks (datasets) -> ``extract_features`` (all layers, one pass, on-disk cache) ->
``TaskFeatures`` per layer / fusion -> linear probe -> layer-wise table, layer choice, Table III.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ..data.columns import PARTIAL_ATTR
from ..models.configuration_fusion import fusion_model_name
from ..protocol import TASK_STATS_BATCH_SIZE, TASK_STATS_MAX_CLIPS, TASK_STATS_SEED


@dataclass
class LoadedModel:
    """A fused model, its feature extractor and the names used in tables."""

    model: object
    feature_extractor: object
    source: str
    from_backbone: bool = False  # built from a backbone name (crepe-tiny, hf:<id>), not a saved fused model

    @property
    def config(self):
        return self.model.config

    @property
    def label(self) -> str:
        """What progress lines call the model: the backbone name given (``crepe-tiny``), or the fused
        model's name and where it came from (``crepe-fusion-1-6 (out/fused)``), never a default fusion name."""
        return self.source if self.from_backbone else f"{self.name} ({self.source})"

    @property
    def name(self) -> str:
        return self.config.fusion_name

    @property
    def tappable_layers(self) -> list[int]:
        return list(self.config.backbone_class.tappable_layers(self.config.backbone_config))

    @property
    def last_layer(self) -> int:
        return self.tappable_layers[-1]

    def layer_name(self, layer: int) -> str:
        """Name of a single-layer feature set, e.g. ``crepe-layer-7``."""
        return f"{self.config.backbone}-layer-{layer}"


def load_model(spec: str, fusion_layers: Sequence[int] | None = None) -> LoadedModel:
    """``spec``: a saved fused-model folder, a backbone name (``crepe-tiny``, ``hf:<id>``, ``ast[:id]``)
    or a Hub repo id of a fused model. ``fusion_layers`` overrides the fusion layers.

    A path that does not exist fails at once with its name (never a Hub lookup for a mistyped folder);
    a Hub id that cannot be served fails with one line."""
    import hf_fusion  # noqa: F401  (Auto registration)
    from transformers import AutoFeatureExtractor, AutoModel

    from ..catalog.cli_names import build_from_spec, resolve_backbone_spec

    path = Path(spec).expanduser()
    from_backbone = False
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"--model {spec}: folder has no config.json (not a saved fused model)")
        model = AutoModel.from_pretrained(path)
        fe = AutoFeatureExtractor.from_pretrained(path)
    else:
        try:
            backbone = resolve_backbone_spec(spec)
        except ValueError as err:
            if _looks_local(spec):
                raise FileNotFoundError(f"--model {spec}: no such folder") from None
            if spec.count("/") != 1:
                raise ValueError(f"--model {spec!r}: not a folder, a backbone name or an org/name repo id ({err})") from None
            model = _from_hub(AutoModel, spec)  # a fused model on the Hub (or in the HF cache)
            fe = _from_hub(AutoFeatureExtractor, spec)
        else:
            if backbone.source is not None and _looks_local(backbone.source) and not Path(backbone.source).expanduser().exists():
                raise FileNotFoundError(f"--model {spec}: checkpoint {backbone.source} does not exist")
            model, fe = build_from_spec(backbone, fusion_layers=fusion_layers)
            fusion_layers = None
            from_backbone = True
    if fusion_layers is not None and list(fusion_layers) != list(model.config.fusion_layers):
        model = with_fusion_layers(model, fusion_layers)
    return LoadedModel(model.eval(), fe, spec, from_backbone)


def _looks_local(spec: str) -> bool:
    """A path rather than a Hub id: starts with / . ~, or its parent folder exists here (``out/model``)."""
    text = str(spec)
    if text.startswith(("/", ".", "~")) or text.count("/") > 1:
        return True
    parent = Path(text).expanduser().parent
    return str(parent) not in ("", ".") and parent.is_dir()


def _from_hub(auto_class, repo_id: str):
    """``auto_class.from_pretrained(repo_id)``: the local HF cache first, then the Hub; one clear error."""
    try:
        return auto_class.from_pretrained(repo_id, local_files_only=True)
    except OSError:
        pass
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(f"--model {repo_id}: not a local folder and not in the HF cache (HF_HUB_OFFLINE=1)")
    missing = _hub_lookup_failure(repo_id)  # one request, so a mistyped folder never waits on retries
    if missing:
        raise FileNotFoundError(f"--model {repo_id}: no such folder here, and {missing}")
    try:
        return auto_class.from_pretrained(repo_id)
    except OSError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(f"--model {repo_id}: not a local folder, and the Hub could not serve it ({first})") from None


def _hub_lookup_failure(repo_id: str, timeout: float = 10.0) -> str | None:
    """Why the Hub cannot serve ``repo_id`` after ONE request without retries (None: it has the repo, or
    answered something else, then ``from_pretrained`` reports)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session

    try:
        response = get_session().get(f"{constants.ENDPOINT}/api/models/{repo_id}", headers=build_hf_headers(),
                                     timeout=timeout)
    except Exception as err:  # no network, DNS, timeout: the error's class and first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"the Hub cannot be reached to look for a repo of that name ({type(err).__name__}: {first})"
    if response.status_code in (401, 404):
        return "the Hub has no model repo of that name (or it is private: log in with `hf auth login`)"
    return None


def with_fusion_layers(model, fusion_layers: Sequence[int]):
    """The same weights with other fusion layers (validated by the config)."""
    config = type(model.config)(**{**model.config.to_dict(), "fusion_layers": [int(x) for x in fusion_layers]})
    other = type(model)(config)
    other.load_state_dict(model.state_dict())
    return other.eval()


def task_clip_seconds(task_dir: Path) -> tuple[float, str]:
    """Clip length of a task folder and where it comes from: a registered task's length from the registry
    (named by ``task.json``'s ``task``, or by the folder's name), else ``task.json``'s ``clip_seconds``, else
    the median duration of its audio files (EVAR cuts or pads every clip of a task to one length)."""
    from ..tasks import PAPER_TASK_SPECS, SYNTHETIC_TASKS, read_metadata, read_task_info

    info = read_task_info(task_dir)
    registered = {**PAPER_TASK_SPECS, **SYNTHETIC_TASKS}
    for name, why in ((info.get("task"), "its task.json"), (task_dir.name.lower(), "the folder's name")):
        if name in registered and registered[name].clip_seconds:
            return float(registered[name].clip_seconds), f"the registered length of {name} ({why})"
    if info.get("clip_seconds"):
        return float(info["clip_seconds"]), "task.json"
    rows, _ = read_metadata(task_dir / "metadata.csv")
    root = Path(info["audio_root"]) if info.get("audio_root") else task_dir
    durations = []
    for name in (row["file_name"] for row in rows):
        try:
            durations.append(sf.info(str(root / name)).duration)
        except Exception:  # unreadable files are reported by the loader / extraction with their names
            continue
    if not durations:
        raise ValueError(f"{task_dir}: no readable audio to infer a clip length from; pass --clip-seconds")
    return round(statistics.median(durations), 3), "the median duration of its files"


def load_tasks(names: Sequence[str], dirs: Sequence[str], sampling_rate: int, root: str | None = None,
               clip_seconds: float | None = None, seed: int = 0, allow_outside: bool = False,
               on_error: str = "raise", cache_dir=None, decode_workers: int = 0, log=print) -> dict:
    """{task name: DatasetDict with a fixed-length ``input_values`` column} for registered names and folders.

    A registered task's clip length is the registry's on every path (``--task NAME``, and a ``--task-dir`` whose
    ``task.json`` or folder name names it; :func:`task_clip_seconds`) unless ``clip_seconds`` is given.

    The cropped clips are memory-mapped arrow files under ``cache_dir/clips`` (the feature-cache root,
    default ``$HF_FUSION_CACHE``), reused by a later run on the same files: memory does not grow with
    the number of clips.

    Fold tasks give ``all`` (+ ``all_train_crops``), see ``hf_fusion.tasks.sources``; ``allow_outside``
    accepts EVAR file names resolving outside their folder. Cropping decodes every file: ``on_error``
    "raise" names every unreadable one in one ValueError, "skip" drops and records them
    (``hf_fusion.tasks.validate.skipped_at_load``; the feature cache's ``skipped(split)`` lists them).
    ``decode_workers``: processes decoding + resampling for the crops (same crops bit for bit;
    ``hf_fusion.tasks.load_task(decode_workers=...)``).

    Under a multi-process launch (:func:`hf_fusion.app.launch.launched_processes`) the main process crops first and the others then read its crop files
    (``Accelerator.main_process_first``): every clip is decoded once, not once per process."""
    import contextlib

    from .launch import launched_processes
    from ..tasks import get_task, load_task

    from ..data.storage import default_cache_root

    outside = {"allow_outside_root": True} if allow_outside else {}
    crops = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()) / "clips"
    tasks = {}
    first = contextlib.nullcontext()
    if launched_processes() > 1:  # a multi-process launch (accelerate launch / torchrun, mpirun)
        from accelerate import Accelerator

        # Accelerator() (not a bare PartialState(), which ignores ACCELERATE_USE_CPU) sets up the process
        # group that extraction uses next; a single process never builds one here (its own Accelerator(...)
        # options stay free)
        first = Accelerator().main_process_first()
    with first:
        for name in names:
            spec = get_task(name)  # KeyError lists the known names
            tasks[spec.name] = load_task(spec.name, sampling_rate, root=root, crop=True, clip_seconds=clip_seconds,
                                         seed=seed, on_error=on_error, crop_cache_dir=crops, decode_workers=decode_workers,
                                         **(outside if root is not None else {}))
        for d in dirs:
            path = Path(d).expanduser()
            if not (path / "metadata.csv").is_file():
                raise FileNotFoundError(f"--task-dir {d}: no metadata.csv there (columns file_name,label,split|fold)")
            seconds, why = (clip_seconds, "--clip-seconds") if clip_seconds else task_clip_seconds(path)
            log(f"  {path.name}: clips cut or padded to {seconds:g} s ({why})")
            name = path.name
            if name in tasks:
                raise ValueError(f"two tasks are named {name!r}; give the folders distinct names")
            tasks[name] = load_task(path, sampling_rate, crop=True, clip_seconds=seconds, seed=seed,
                                    on_error=on_error, crop_cache_dir=crops, decode_workers=decode_workers, **outside)
    if not tasks:
        raise ValueError("no task given: use --task NAME and/or --task-dir DIR")
    for name, gaps in partial_tasks(tasks).items():
        log(f"  {name}: a partial download ({len(gaps)} gap(s) against the official task, in its task.json): "
            "its numbers are not comparable with the paper's")
    return tasks


def partial_tasks(tasks: dict) -> dict[str, list[dict]]:
    """{task: gaps} of the tasks prepared from partial downloads (``hf-fusion prepare --allow-partial``; the
    loader keeps ``task.json``'s gaps on the data it returns)."""
    return {name: getattr(data, PARTIAL_ATTR) for name, data in tasks.items() if getattr(data, PARTIAL_ATTR, None)}


def extract_tasks(loaded: LoadedModel, tasks: dict, layers="all", cache_dir=None, batch_size: int = 16,
                  on_error: str = "raise", input_frames: str | int = "task", normalization: str = "task",
                  layer_norm_eps: float | None = None, log=print, task_models: dict | None = None,
                  decode_workers: int = 0, bucket_by_length: bool = False, dtype: str = "fp32",
                  stats_seed: int | None = TASK_STATS_SEED) -> dict:
    """{task: FeatureCache}; every requested layer comes from one forward pass per batch (or the cache).

    Backbones with a variable input length (AST) follow the authors' protocol per task
    (:func:`task_model`): ``input_frames`` "task" (the task's clip length) or a frame count, and
    ``normalization`` "task" (the task's fbank statistics, its training clips drawn in the order seeded by
    ``stats_seed``), "audioset" or "model" (as saved: the way to use statistics published elsewhere).
    ``task_models``: a dict filled with {task: the LoadedModel its features came from}.
    ``decode_workers`` / ``bucket_by_length`` / ``dtype``: :func:`extract_features`'s speed options
    (they act on tasks with an Audio column; cropped tasks were decoded by :func:`load_tasks`)."""
    from ..extraction import extract_features

    caches = {}
    for name, data in tasks.items():
        task_loaded = task_model(loaded, data, input_frames, normalization, layer_norm_eps, log=log, task=name,
                                 cache_dir=cache_dir, stats_seed=stats_seed)
        if task_models is not None:
            task_models[name] = task_loaded
        caches[name] = extract_features(task_loaded.model, task_loaded.feature_extractor, data, name, layers=layers,
                                        batch_size=batch_size, cache_dir=cache_dir, on_error=on_error,
                                        model_name=loaded.label, decode_workers=decode_workers,
                                        bucket_by_length=bucket_by_length, dtype=dtype)
    return caches


def skipped_files(caches: dict) -> dict[str, dict[str, list[str]]]:
    """{task: {split: [files]}} of the unreadable files skipped (at load or extraction), only splits with some."""
    out = {}
    for task, cache in caches.items():
        per_split = {split: cache.skipped(split) for split in cache.splits}
        out[task] = {split: names for split, names in per_split.items() if names}
    return out


def task_clip_samples(data) -> int:
    """Samples per clip of a cropped task (its fixed-length ``input_values`` column)."""
    split = next(iter(data))
    feature = data[split].features.get("input_values")
    if feature is None or getattr(feature, "length", -1) in (None, -1):
        raise ValueError("the task has no fixed-length input_values column (load it with a clip length)")
    return int(feature.length)


def _clip_names(ds, rows) -> list[tuple[str, str]]:
    """A sort key per row that does not depend on the row's position: the name its crop is drawn from
    (:func:`hf_fusion.tasks.clips.clip_key`: ``file_name`` as the task lists it, else the file's base name),
    then its full path; for embedded bytes without a path, a digest of its crop."""
    import hashlib

    import numpy as np
    from datasets import Audio

    from ..tasks.clips import clip_key

    listed = ds["file_name"] if "file_name" in ds.column_names else None
    every = None
    if "audio" in ds.column_names and isinstance(ds.features["audio"], Audio):
        column = ds.select_columns(["audio"]).with_format("arrow")["audio"]  # struct {bytes, path}: no decoding
        every = [p for chunk in getattr(column, "chunks", [column]) for p in chunk.field("path").to_pylist()]
    crops = ds.with_format("numpy")
    names = []
    for r in map(int, rows):
        path = every[r] if every is not None else None
        key = clip_key({"file_name": listed[r] if listed is not None else None, "audio": {"path": path}}, "audio", r)
        if isinstance(key, int):  # no name at all: the clip's own samples
            key = hashlib.blake2b(np.ascontiguousarray(crops[r]["input_values"]).tobytes(), digest_size=16).hexdigest()
        names.append((str(key), path or ""))
    return names


def train_clips(data, limit: int | None = None, seed: int | None = TASK_STATS_SEED):
    """The training clips of a cropped task as float32 arrays (at most ``limit``), each the very crop that is
    embedded: the ``train`` split, or for fold data the training rows of the first fold (their training
    crops), as EVAR computes its statistics once, on fold 1.

    Order: the clips sorted by their files' names (so metadata.csv's row order does not matter), then
    shuffled by a permutation seeded with ``seed``, as EVAR draws them from its shuffled training loader;
    ``seed=None`` keeps the rows' own order."""
    import numpy as np

    from ..data.columns import ALL_SPLIT, SOURCE_ROW, TRAIN_CROPS_SPLIT
    from ..tasks.folds import fold_split_indices

    crops, extra = {}, None  # fold data: row in "all" -> row of its training crop in all_train_crops
    if "train" in data:
        rows, named = list(range(len(data["train"]))), data["train"]
    else:
        named = data[ALL_SPLIT]
        folds = np.asarray(named["fold"])
        rows = [int(r) for r in fold_split_indices(folds, named["label"], int(folds.min()))[0]]
        if TRAIN_CROPS_SPLIT in data:
            extra = data[TRAIN_CROPS_SPLIT].with_format("numpy")
            crops = {int(r): k for k, r in enumerate(data[TRAIN_CROPS_SPLIT][SOURCE_ROW])}
    if seed is not None:
        names = _clip_names(named, rows)
        canonical = [rows[k] for k in sorted(range(len(rows)), key=names.__getitem__)]
        rows = [canonical[k] for k in np.random.default_rng(int(seed)).permutation(len(canonical))]
    source = named.with_format("numpy")
    for row in rows[:limit] if limit is not None else rows:
        yield np.asarray((extra[crops[row]] if row in crops else source[row])["input_values"], dtype=np.float32)


#: bump when the statistics computed for a key change (invalidates every kept ``ast_stats/*.json``)
TASK_STATS_VERSION = 2


def task_input_statistics(data, feature_extractor, cache_dir=None, seed: int | None = TASK_STATS_SEED) -> tuple[dict, bool]:
    """A task's input statistics (:func:`hf_fusion.app.task_model.input_statistics`, EVAR's: batches of 128
    training clips in :func:`train_clips`'s seeded order until >= 5000) -> (stats + ``seed``, reused). Kept
    in ``<cache root>/ast_stats/<key>.json``: the key is the fingerprints of the training crops read (their
    crop files are named by content, file and crop settings), the raw front-end settings, the sample size
    and the seed, so a second run on the same task reuses them instead of computing the input of 5000 clips
    again. Tasks not backed by files are computed every time."""
    from ..data.columns import ALL_SPLIT, TRAIN_CROPS_SPLIT
    from ..data.fingerprints import json_digest
    from ..data.storage import atomic_write_json, default_cache_root
    from ..models.backbones import get_backbone_class
    from .task_model import input_statistics, raw_frontend_settings

    names = ["train"] if "train" in data else [ALL_SPLIT] + ([TRAIN_CROPS_SPLIT] if TRAIN_CROPS_SPLIT in data else [])
    path = None
    if all(data[name].cache_files for name in names):
        settings = raw_frontend_settings(get_backbone_class(feature_extractor.backbone), feature_extractor.frontend)
        key = {"version": TASK_STATS_VERSION, "data": [data[name]._fingerprint for name in names],
               "fbank": settings, "max_clips": TASK_STATS_MAX_CLIPS, "batch_size": TASK_STATS_BATCH_SIZE,
               "seed": seed}
        path = Path(cache_dir or default_cache_root()) / "ast_stats" / f"{json_digest(key)}.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))["stats"], True
            except (ValueError, KeyError):  # unreadable: compute it again (and replace it)
                pass
    batches = -(-TASK_STATS_MAX_CLIPS // TASK_STATS_BATCH_SIZE)  # EVAR's last batch is a full one: 40 x 128
    clips = train_clips(data, batches * TASK_STATS_BATCH_SIZE, seed=seed)
    stats = {**input_statistics(clips, feature_extractor, max_clips=TASK_STATS_MAX_CLIPS,
                                batch_size=TASK_STATS_BATCH_SIZE), "seed": seed}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"key": key, "stats": stats})
    return stats, False


def task_model(loaded: LoadedModel, data, input_frames: str | int = "task", normalization: str = "task",
               layer_norm_eps: float | None = None, log=print, task: str = "task", cache_dir=None,
               stats_seed: int | None = TASK_STATS_SEED) -> LoadedModel:
    """The model one task is extracted with (:func:`hf_fusion.app.task_model.prepare_task_model` for the
    task's clip length): ``loaded`` itself unless the backbone has a ``resizable_input``; the task's input
    statistics (``normalization="task"``, drawn in the order seeded by ``stats_seed``) are kept under
    ``cache_dir`` (:func:`task_input_statistics`)."""
    from .task_model import prepare_task_model

    if not loaded.config.backbone_class.resizable_input:
        return loaded
    seconds = task_clip_samples(data) / loaded.feature_extractor.sampling_rate
    reused = []

    def statistics(fe):
        stats, kept = task_input_statistics(data, fe, cache_dir, seed=stats_seed)
        reused.append(kept)
        return stats

    model, fe, _ = prepare_task_model(loaded.model, seconds, input_frames=input_frames, normalization=normalization,
                                      statistics=statistics, layer_norm_eps=layer_norm_eps)
    frontend, cls = model.config.frontend, model.config.backbone_class
    frames = cls.input_length(model.config.backbone_config)
    log(f"  {task}: {loaded.config.backbone} input {frames} frames ({seconds:g} s clips"
        f"{', the task length' if input_frames == 'task' else ''}), input normalisation "
        f"{frontend.get('normalization', 'as saved')} (mean {frontend[cls.mean_key]:.4f}, "
        f"std {frontend[cls.std_key]:.4f}"
        + (f", {frontend['normalization_clips']} training clips" if "normalization_clips" in frontend else "")
        + (f", order seed {frontend['normalization_seed']}" if "normalization_seed" in frontend else "")
        + f"{', kept from an earlier run' if any(reused) else ''})")
    return LoadedModel(model, fe, loaded.source, loaded.from_backbone)


def task_features(cache, layers, folds: Sequence[int] | None = None):
    """TaskFeatures of one layer (int) or a fusion (list of layers) from a FeatureCache.

    ``folds``: for fold tasks, the folds held out in turn (default every fold); split tasks ignore it."""
    from ..evaluation import TaskFeatures

    kwargs = cache.task_features(layers)
    if folds is not None and "folds" in kwargs:
        kwargs["test_folds"] = tuple(folds)
    return TaskFeatures(**kwargs)


def layerwise_study(caches: dict, layers: Sequence[int], probe_config=None, progress: bool = True,
                    folds: Sequence[int] | None = None, weighted_sum: bool = False, screening=None):
    """Probe every layer on every task -> LayerwiseStudy (fold tasks: every fold, or ``folds``).

    ``weighted_sum``: add the learned weighted layer sum row ("wsum"; layers of equal width only);
    ``screening``: the approximate layer-wise options (:class:`~hf_fusion.evaluation.Screening`)."""
    from ..evaluation import run_layerwise_study

    features = {task: {layer: task_features(cache, layer, folds) for layer in layers} for task, cache in caches.items()}
    return run_layerwise_study(features, probe_config, progress=progress, weighted_sum=weighted_sum,
                               screening=screening)


def check_weighted_sum(loaded: LoadedModel) -> None:
    """Refuse ``--weighted-sum`` up front (before extraction) when the model's layers differ in width."""
    dims = {layer: loaded.config.layer_dims[layer] for layer in loaded.tappable_layers}
    if len(set(dims.values())) > 1:
        raise ValueError(f"--weighted-sum: the layers of {loaded.config.backbone} differ in width ({dims}); the learned "
                         "weighted layer sum needs layers of equal width (AST, hf: encoders)")


def probe_layers(caches: dict, layers: Sequence[int], probe_config=None, folds: Sequence[int] | None = None) -> dict:
    """{task: ProbeResult} of one feature set (a layer list is concatenated) on every task, from the cache."""
    from ..evaluation import linear_probe

    layers = list(layers)
    return {task: linear_probe(task_features(cache, layers if len(layers) > 1 else layers[0], folds), probe_config)
            for task, cache in caches.items()}


def evaluate_fusion(loaded: LoadedModel, caches: dict, probe_config=None, single_layers: bool = True,
                    progress: bool = True, folds: Sequence[int] | None = None,
                    keep_weights: bool = False) -> dict[str, tuple[list[int], dict]]:
    """Probe the fusion, the last-layer baseline and (optionally) each fused layer alone.

    Returns {model name: (layers, {task: ProbeResult})}; the fusion vectors are the cached layers concatenated
    (Eq.3 acts per dimension, so this equals the model's ``pooler_output``). ``folds`` limits the held-out
    folds of fold tasks. ``keep_weights``: the fusion's results keep their trained probes (``ProbeResult.runs``,
    for :func:`save_task_classifier`).
    """
    from tqdm.auto import tqdm

    from ..evaluation import linear_probe

    fusion = list(loaded.config.fusion_layers)
    sets = {loaded.name: fusion, loaded.layer_name(loaded.last_layer): [loaded.last_layer]}
    if single_layers:
        for layer in fusion:
            sets.setdefault(loaded.layer_name(layer), [layer])
    results = {name: (layers, {}) for name, layers in sets.items()}
    jobs = [(name, task) for name in sets for task in caches]
    for name, task in tqdm(jobs, desc="evaluate", disable=not progress):
        layers = sets[name]
        results[name][1][task] = linear_probe(
            task_features(caches[task], layers if len(layers) > 1 else layers[0], folds), probe_config,
            keep_weights=keep_weights and name == loaded.name)
    return results


def save_task_classifier(task_loaded: LoadedModel, data, result, folder: Path, fold: int | None = None) -> Path:
    """Save the audio classifier of one task's fusion probe (``result``, kept weights) to ``folder``: the task's
    model (``task_models`` of :func:`extract_tasks`), the task's class names and clip length (the test crop);
    a task prepared from an incomplete download records its gaps as ``probe["partial"]``."""
    from ..evaluation import classifier_from_probe, save_classifier
    from ..tasks.prepare import gaps_summary

    split = next(iter(data))
    labels = getattr(data[split].features["label"], "names", None)
    if not labels:
        raise ValueError(f"{result.task}: the label column has no class names (a ClassLabel), needed for id2label")
    classifier = classifier_from_probe(task_loaded.model, result, labels, fold=fold,
                                       clip_samples=task_clip_samples(data))
    gaps = getattr(data, PARTIAL_ATTR, None)
    if gaps:  # the card says the number is not the official task's
        classifier.config.probe["partial"] = gaps_summary(gaps)
    return save_classifier(classifier, folder)


RESULTS_COLUMNS = ["model", "task", "accuracy", "std", "lr", "layers", "valid_accuracy", "fold", "partial"]


def write_results(loaded: LoadedModel, results: dict, out: Path, leaderboard: Path | None = None,
                  skipped: dict[str, dict[str, list[str]]] | None = None, partial: dict | None = None) -> dict:
    """results.csv, results.json, the Table III files, and leaderboard rows.

    results.csv: model,task,accuracy,std,lr,layers,valid_accuracy,fold,partial (fractions in [0, 1]); a fold
    task has its fold-averaged row (fold = "mean") followed by one row per held-out fold (fold = its number;
    std over seeds); ``partial`` is empty, or the gaps of a task prepared from an incomplete download.
    results.json: every ProbeResult in full (grids, per-seed and per-fold numbers).
    ``results`` is :func:`evaluate_fusion`'s {model name: (layers, {task: ProbeResult})}; ``skipped``
    ({task: {split: [files]}}, :func:`skipped_files`) goes into each task's entry of results.json as
    ``"skipped"`` (unreadable files left out of that task's numbers); ``partial`` ({task: gaps},
    :func:`partial_tasks`) as ``"partial"`` (a task prepared from an incomplete download)."""
    import csv

    import numpy as np

    from ..evaluation import LeaderboardEntry, append_entries, fused_table
    from ..tasks.prepare import gaps_summary

    gap_lines = {task: gaps_summary(gaps) for task, gaps in (partial or {}).items() if gaps}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RESULTS_COLUMNS)
        for model_name, (layers, per_task) in results.items():
            names = " ".join(map(str, layers))
            for task, res in per_task.items():
                gaps = gap_lines.get(task, "")
                writer.writerow([model_name, task, f"{res.accuracy:.6f}", f"{res.std:.6f}", res.lr, names,
                                 f"{res.valid_mean:.6f}", "" if res.per_fold is None else "mean", gaps])
                for fold, test in (res.per_fold or {}).items():
                    writer.writerow([model_name, task, f"{np.mean(test):.6f}", f"{np.std(test):.6f}", res.lr, names,
                                     f"{np.mean(res.per_fold_valid[fold]):.6f}", fold, gaps])
    (out / "results.json").write_text(json.dumps(
        {model_name: {"layers": list(layers), "tasks": {task: {**res.to_dict(), "skipped": (skipped or {}).get(task, {}),
                                                              "partial": (partial or {}).get(task, [])}
                                                        for task, res in per_task.items()}}
         for model_name, (layers, per_task) in results.items()}, indent=1, default=float))
    baseline_name = loaded.layer_name(loaded.last_layer)
    table = fused_table(results[baseline_name][1], results[loaded.name][1], baseline_name=baseline_name,
                        fusion_name=loaded.name)
    (out / "table.md").write_text(table.to_markdown() + "\n")
    table.to_csv(out / "table.csv")
    table.to_json(out / "table.json")
    if leaderboard is not None:
        entries = [
            LeaderboardEntry.from_probe(model_name, layers, res, source=loaded.source,
                                        **({"partial": gap_lines[res.task]} if res.task in gap_lines else {}))
            for model_name, (layers, per_task) in results.items() for res in per_task.values()
        ]
        append_entries(leaderboard, entries)
    return {"results": out / "results.csv", "table": out / "table.md", "json": out / "results.json"}


def save_fused_model(loaded: LoadedModel, middle: int, late: int, out: Path, folder: Path | None = None) -> Path:
    """Save the chosen fusion (same weights) with its feature extractor to ``folder`` (default
    ``out/<backbone>-fusion-A-B``), its layers in depth order (A < B) whichever of M and L is deeper."""
    layers = sorted([int(middle), int(late)])
    model = with_fusion_layers(loaded.model, layers)
    folder = Path(folder) if folder is not None else out / fusion_model_name(model.config.backbone, layers)
    model.save_pretrained(folder)
    loaded.feature_extractor.save_pretrained(folder)
    return folder
