"""Layer-wise study: linear-probe every layer on every task; tidy table, CSV/JSON and a heatmap.

Input: ``{task: {layer: TaskFeatures}}`` with 1-based layer numbers (or any labels). Rows: layer, task,
fold, accuracy (test, a fraction in [0, 1]), valid_accuracy (at the chosen lr), std, lr; fold tasks get
their ``fold = "mean"`` row, then one row per held-out fold. ``weighted_sum=True`` adds a ``"wsum"``
baseline row per task (:mod:`.weighted_sum`), which the layer choice never reads
(:data:`BASELINE_LAYERS`). File formats: docs/evaluation.md, "Layer-wise study".
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .features import TaskFeatures
from .probe import ProbeConfig, ProbeResult, linear_probe, linear_probe_stacked, probe_config
from .screening import Screening
from .weighted_sum import check_equal_widths, weighted_sum_probe

#: accuracy = test accuracy (the heatmap's number); new columns go last so readers by position keep working
CSV_COLUMNS = ("layer", "task", "accuracy", "std", "lr", "num_seeds", "dim", "valid_accuracy", "fold")
#: ``fold`` value of a fold task's averaged row
FOLD_MEAN = "mean"
METRICS = {"test": "accuracy", "valid": "valid_accuracy"}
#: layer label of the learned weighted layer sum row
WEIGHTED_SUM_LAYER = "wsum"
#: rows that are baselines, not layers: shown in the table and heatmap, never chosen as M or L
BASELINE_LAYERS = frozenset({WEIGHTED_SUM_LAYER})


def layer_sort_key(layer):
    """Sort key: ints numerically first, then strings, then the baseline rows."""
    if isinstance(layer, (int, np.integer)):
        return (0, layer, "")
    return (2 if layer in BASELINE_LAYERS else 1, 0, str(layer))


def _parse_layer(value: str):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


@dataclass
class LayerwiseStudy:
    """Tidy results: one row per (layer, task) in ``rows`` (fold tasks: averaged over folds) and one
    per (layer, task, fold) in ``fold_rows``. Accuracies are fractions in [0, 1]."""

    rows: list[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)  # {(task, layer): ProbeResult}, not serialised
    fold_rows: list[dict] = field(default_factory=list)
    layer_weights: dict = field(default_factory=dict)  # {task: {layer: weight}} of the weighted-sum row
    screening: dict | None = None  # the approximate screening options of the layer probes (None: full protocol)

    def add(self, task: str, layer, res: ProbeResult) -> None:
        """Append the rows of one probe result (fold tasks: the mean row and one row per fold)."""
        common = {"layer": layer, "task": task, "lr": res.lr, "num_seeds": len(res.seeds), "dim": res.dim}
        self.rows.append({**common, "fold": "" if res.per_fold is None else FOLD_MEAN, "accuracy": res.accuracy,
                          "valid_accuracy": res.valid_mean, "std": res.std})
        for fold, test in (res.per_fold or {}).items():
            valid = res.per_fold_valid[fold]
            self.fold_rows.append({**common, "fold": fold, "accuracy": float(np.mean(test)),
                                   "valid_accuracy": float(np.mean(valid)), "std": float(np.std(test))})
        self.results[(task, layer)] = res

    @property
    def tasks(self) -> list[str]:
        seen = []
        for r in self.rows:
            if r["task"] not in seen:
                seen.append(r["task"])
        return seen

    @property
    def layers(self) -> list:
        return sorted({r["layer"] for r in self.rows}, key=layer_sort_key)

    def matrix(self, metric: str = "test") -> dict[str, dict]:
        """{task: {layer: accuracy}} view of the table; ``metric`` "test" (default) or "valid"."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
        key = METRICS[metric]
        out: dict[str, dict] = {}
        for r in self.rows:
            out.setdefault(r["task"], {})[r["layer"]] = r.get(key, float("nan"))
        return out

    def has_metric(self, metric: str) -> bool:
        """True when every row has a finite value of ``metric`` ("test" or "valid")."""
        key = METRICS[metric]
        return bool(self.rows) and all(isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) for r in self.rows)

    def _ordered_rows(self) -> list[dict]:
        """Averaged rows, each followed by its per-fold rows."""
        folds: dict = {}
        for r in self.fold_rows:
            folds.setdefault((r["task"], r["layer"]), []).append(r)
        out = []
        for r in self.rows:
            out.append(r)
            out.extend(folds.get((r["task"], r["layer"]), []))
        return out

    def to_csv(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
            w.writeheader()
            for r in self._ordered_rows():
                w.writerow({"fold": "", **r})
        return path

    def to_json(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in {"fold": "", **r}.items()}
                for r in self._ordered_rows()]
        data = {"columns": list(CSV_COLUMNS), "rows": rows}
        if self.screening:
            data["screening"] = self.screening
        if self.layer_weights:
            data["layer_weights"] = {t: [[layer, w] for layer, w in per.items()] for t, per in self.layer_weights.items()}
        path.write_text(json.dumps(data, indent=1))
        return path

    @classmethod
    def _from_rows(cls, rows: list[dict], where) -> "LayerwiseStudy":
        """Split averaged and per-fold rows and check every accuracy (finite fraction in [0, 1])."""
        study = cls()
        for i, r in enumerate(rows):
            for key in ("accuracy", "valid_accuracy"):
                value = r.get(key, float("nan"))
                if key == "accuracy" and not math.isfinite(value):
                    raise ValueError(f"{where}: row {i + 1} ({r['task']}, layer {r['layer']}): accuracy {value} is not a number")
                if math.isfinite(value) and not 0.0 <= value <= 1.0:
                    hint = " (percent? accuracies are fractions in [0, 1])" if 1.0 < value <= 100.0 else ""
                    raise ValueError(f"{where}: row {i + 1} ({r['task']}, layer {r['layer']}): {key} {value} is "
                                     f"outside [0, 1]{hint}")
                if key == "valid_accuracy" and math.isinf(value):
                    raise ValueError(f"{where}: row {i + 1} ({r['task']}, layer {r['layer']}): valid_accuracy is infinite")
            fold = str(r.get("fold", "") or "")
            (study.rows if fold in ("", FOLD_MEAN) else study.fold_rows).append(r)
        seen = set()
        for r in study.rows:
            if (r["task"], r["layer"]) in seen:
                raise ValueError(f"{where}: two rows for task {r['task']!r}, layer {r['layer']!r}")
            seen.add((r["task"], r["layer"]))
        return study

    @classmethod
    def from_csv(cls, path) -> "LayerwiseStudy":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"layer", "task", "accuracy"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {CSV_COLUMNS}")
            rows = []
            for line, r in enumerate(reader, start=2):
                try:
                    row = {"layer": _parse_layer(r["layer"]), "task": r["task"], "fold": r.get("fold") or "",
                           "accuracy": float(r["accuracy"])}
                    for k in ("valid_accuracy", "std", "lr"):
                        row[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
                    for k in ("num_seeds", "dim"):
                        if r.get(k) not in (None, ""):
                            row[k] = int(r[k])
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{path}: line {line} is not a valid study row ({err}); "
                                     "a truncated or hand-edited layerwise.csv?") from None
                rows.append(row)
        return cls._from_rows(rows, path)

    @classmethod
    def from_json(cls, path) -> "LayerwiseStudy":
        data = json.loads(Path(path).read_text())
        rows = [{k: (float("nan") if v is None else v) for k, v in r.items()} for r in data["rows"]]
        study = cls._from_rows(rows, path)
        study.layer_weights = {t: {layer: float(w) for layer, w in pairs}
                               for t, pairs in data.get("layer_weights", {}).items()}
        study.screening = data.get("screening")
        return study

    @classmethod
    def from_matrix(cls, matrix: Mapping[str, Mapping]) -> "LayerwiseStudy":
        """Build from {task: {layer: accuracy}} (std and lr unknown)."""
        rows = [{"layer": layer, "task": task, "accuracy": float(acc), "std": float("nan"), "lr": float("nan")}
                for task, per in matrix.items() for layer, acc in per.items()]
        return cls(rows=rows)


def run_layerwise_study(features: Mapping[str, Mapping[object, TaskFeatures]], config: ProbeConfig | None = None,
                        method: str = "batched", progress: bool = True,
                        callback: Callable[[str, object, ProbeResult], None] | None = None,
                        weighted_sum: bool = False, screening: Screening | None = None) -> LayerwiseStudy:
    """Probe every (task, layer) feature set. `callback(task, layer, result)` runs after each probe.

    ``weighted_sum``: also probe each task's learned weighted sum of all its layers (row
    ``WEIGHTED_SUM_LAYER``, after the layers); refused up front when a task's layers differ in width.
    ``config.stack_layers``: consecutive equal-width layers of a task train as one program (exact).
    ``screening``: cheaper approximate probes for the layers (:mod:`.screening`; recorded in
    ``study.screening``); the weighted-sum row always runs the full protocol."""
    from tqdm.auto import tqdm

    if not features:
        raise ValueError("run_layerwise_study: no tasks given")
    jobs = []
    for task, per_layer in features.items():
        if not per_layer:
            raise ValueError(f"run_layerwise_study: task {task!r} has no layers")
        for layer in sorted(per_layer, key=layer_sort_key):
            if not isinstance(per_layer[layer], TaskFeatures):
                raise TypeError(f"features[{task!r}][{layer!r}] must be TaskFeatures, got {type(per_layer[layer]).__name__}")
            if layer in BASELINE_LAYERS:
                raise ValueError(f"features[{task!r}]: {layer!r} is the label of a baseline row, not a layer")
            jobs.append((task, layer))
        if weighted_sum:
            check_equal_widths(per_layer, f"task {task!r}")
            jobs.append((task, WEIGHTED_SUM_LAYER))
    cfg = probe_config(config)
    screening = screening if screening is not None and screening.active else None
    if screening is not None and method != "batched":
        raise ValueError(f"run_layerwise_study: screening runs on the batched trainer, not method {method!r}")
    probe_cfg = cfg if screening is None else screening.config(cfg)
    stack = 1 if method != "batched" else cfg.stack_layers
    study = LayerwiseStudy(screening=None if screening is None else screening.to_dict())
    with tqdm(total=len(jobs), desc="layer-wise probe", disable=not progress) as bar:
        for task, layers in _stacks(features, jobs, stack):
            if layers == [WEIGHTED_SUM_LAYER]:  # a baseline row: the full protocol
                per_layer = features[task]
                res = weighted_sum_probe({l: per_layer[l] for l in sorted(per_layer, key=layer_sort_key)}, cfg)
                study.layer_weights[task] = res.weights_by_layer()
                results = [res]
            elif method != "batched":
                results = [linear_probe(features[task][layers[0]], probe_cfg, method=method)]
            else:  # one layer or a stack of them, one program
                results = linear_probe_stacked([features[task][l] for l in layers], probe_cfg, screening=screening)
            for layer, res in zip(layers, results):
                study.add(task, layer, res)
                if callback is not None:
                    callback(task, layer, res)
            bar.update(len(layers))
    return study


def _stacks(features, jobs, size: int):
    """Yield (task, [layers]) in job order: runs of consecutive layers of one task and one width, at most
    ``size`` long (the weighted-sum row alone)."""
    run: list = []
    for task, layer in jobs + [(None, None)]:
        fits = (run and task == run[0][0] and layer != WEIGHTED_SUM_LAYER and run[0][1] != WEIGHTED_SUM_LAYER
                and len(run) < size and features[task][layer].dim == features[task][run[0][1]].dim)
        if run and not fits:
            yield run[0][0], [l for _, l in run]
            run = []
        if task is not None:
            run.append((task, layer))


def plot_heatmap(study: LayerwiseStudy, path, groups: Mapping[str, Sequence[str]] | None = None,
                 title: str | None = None, layers_as_rows: bool = True, dpi: int = 120,
                 model: str | None = None, marks: Mapping[object, str] | None = None) -> Path:
    """Heatmap PNG in the style of the paper's Fig. 2-4: accuracy (%) written in every cell.

    Colours are normalised per task column (each task's best layer is darkest), so that the layer
    trend is visible for tasks of different difficulty; the title says so. `groups` ({"middle": [...],
    "late": [...]}, e.g. `LayerChoice.groups`) adds one average column per group; an "all" average is
    always added. `model` names the studied model in the title; `marks` ({layer: "M", layer: "L"})
    labels and outlines the chosen layers.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.patches
    import matplotlib.pyplot as plt

    mat = study.matrix()
    tasks, layers = study.tasks, study.layers
    if not tasks or not layers:
        raise ValueError("plot_heatmap: the study has no rows")
    A = np.array([[mat[t].get(l, np.nan) for t in tasks] for l in layers], dtype=float) * 100  # [layers, tasks]
    cols, colnames = [A], list(tasks)
    for gname, gtasks in (groups or {}).items():
        idx = [tasks.index(t) for t in gtasks if t in tasks]
        if idx:
            cols.append(np.nanmean(A[:, idx], axis=1, keepdims=True))
            colnames.append(f"avg {gname}")
    cols.append(np.nanmean(A, axis=1, keepdims=True))
    colnames.append("avg all")
    M = np.concatenate(cols, axis=1)
    lo, hi = np.nanmin(M, axis=0, keepdims=True), np.nanmax(M, axis=0, keepdims=True)
    norm = np.where(hi > lo, (M - lo) / np.where(hi > lo, hi - lo, 1), 1.0)
    marks = {str(k): v for k, v in (marks or {}).items()}
    rowlab = [f"{l} ({marks[str(l)]})" if str(l) in marks else str(l) for l in layers]
    if not layers_as_rows:
        M, norm = M.T, norm.T
    nr, nc = M.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * nc + 1.5), max(3.0, 0.45 * nr + 1.2)))
    ax.imshow(norm, cmap="Blues", aspect="auto", vmin=0, vmax=1.25)
    for i in range(nr):
        for j in range(nc):
            if not math.isnan(M[i, j]):
                ax.text(j, i, f"{M[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.75 else "black")
    xl, yl = (colnames, rowlab) if layers_as_rows else (rowlab, colnames)
    ax.set_xticks(range(nc), xl, rotation=45, ha="right")
    ax.set_yticks(range(nr), yl)
    ax.set_ylabel("layer" if layers_as_rows else "task")
    ax.set_xlabel("task" if layers_as_rows else "layer")
    n_tasks = len(tasks)
    n_layers = sum(l not in BASELINE_LAYERS for l in layers)  # baseline rows sort last
    if layers_as_rows:
        ax.axvline(n_tasks - 0.5, color="black", lw=1.5)
        if n_layers < len(layers):
            ax.axhline(n_layers - 0.5, color="black", lw=1.0, ls="--")
    else:
        ax.axhline(n_tasks - 0.5, color="black", lw=1.5)
        if n_layers < len(layers):
            ax.axvline(n_layers - 0.5, color="black", lw=1.0, ls="--")
    for k, layer in enumerate(layers):  # outline the chosen layers' row (column) and embolden their label
        if str(layer) in marks:
            x, y, w, h = (-0.5, k - 0.5, nc, 1) if layers_as_rows else (k - 0.5, -0.5, 1, nr)
            ax.add_patch(matplotlib.patches.Rectangle((x, y), w, h, fill=False, edgecolor="#d62728", lw=2))
            (ax.get_yticklabels() if layers_as_rows else ax.get_xticklabels())[k].set_fontweight("bold")
    if title is None:
        title = (f"{model}: " if model else "") + "linear evaluation test accuracy (%) per layer"
        title += "\ncolours scaled per column (darkest = the column's best)"
        if marks:
            title += "; " + ", ".join(f"{v} = layer {k}" for k, v in marks.items())
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def write_study(study: LayerwiseStudy, out_dir, groups=None, title=None, model=None, marks=None) -> dict[str, Path]:
    """Write layerwise.csv, layerwise.json and layerwise.png into `out_dir`; returns the paths
    (`model`, `marks`: see :func:`plot_heatmap`)."""
    out = Path(out_dir)
    return {"csv": study.to_csv(out / "layerwise.csv"), "json": study.to_json(out / "layerwise.json"),
            "png": plot_heatmap(study, out / "layerwise.png", groups=groups, title=title, model=model, marks=marks)}
