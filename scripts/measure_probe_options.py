"""Measure the approximate probe options against the full fp32 protocol: accuracy, layer choice, work.

    python scripts/measure_probe_options.py [--cache-dir DIR] [--json out.json] [--classes 1000]

Feature sets:
  demo        the demo's features (CREPE-tiny, real weights, every layer, the synthetic suite at its default
              size): extracted into the feature cache the first time, as ``hf-fusion demo`` does;
  many-class  a synthetic task with ``--classes`` classes (Gaussian blobs, ``--per-class`` training clips per
              class) seen through three "layers" of decreasing class signal, at ``--dim`` dimensions;
  large       the same construction with 100 classes and ``--large-per-class`` training clips per class
              (a task where the training set, not the class count, is the cost: the subsample's target).

Each option runs the layer-wise study of every feature set and is compared with the fp32 full protocol:
test accuracy difference per (task, layer) in points (mean, mean |d|, worst), whether the demo's M/L choice
(derived groups on validation accuracy, the demo's rule) and each task's best layer stay, the probe work
(member-epochs x training clips, what the GEMMs and Adam scale with) as a share of the full protocol's,
the mean epochs a member trained (early stopping), and wall seconds (2 CPU cores: indicative only).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from hf_fusion.evaluation import (ProbeConfig, Screening, TaskFeatures, choose_layers,  # noqa: E402
                                  run_layerwise_study)

#: option name -> (probe precision, screening); "fp32" is the reference
OPTIONS = {
    "fp32": ("fp32", None),
    "tf32": ("tf32", None),
    "bf16": ("bf16", None),
    "screen-seeds-1": ("fp32", Screening(seeds=1)),
    "screen-halving-10": ("fp32", Screening(halving_epochs=10)),
    "screen-max-train": ("fp32", "max-train"),  # demo: half its smallest training split; large: a quarter
    "combined": ("bf16", "combined"),  # bf16 + 1 seed + halving every 10 epochs (+ the large set's subsample)
}
#: training-clip cap of the subsample option per feature set (None: not applied, e.g. 6 clips per class)
MAX_TRAIN = {"demo": 90, "many-class": None, "large": 5000}


def demo_features(cache_dir: str | None, work: pathlib.Path) -> dict:
    """{task: {layer: TaskFeatures}} of the demo: CREPE-tiny on the default synthetic suite (cached)."""
    from hf_fusion.app import workflow
    from hf_fusion.tasks import build_synthetic_suite

    dirs = build_synthetic_suite(work / "data", seed=0)
    loaded = workflow.load_model("crepe-tiny")
    tasks = workflow.load_tasks([], [str(d) for d in dirs], loaded.feature_extractor.sampling_rate, cache_dir=cache_dir)
    caches = workflow.extract_tasks(loaded, tasks, "all", cache_dir=cache_dir)
    return {task: {layer: workflow.task_features(cache, layer) for layer in loaded.tappable_layers}
            for task, cache in caches.items()}


def many_class_features(classes: int, per_class: int, dim: int, seed: int = 0, name: str = "many_class") -> dict:
    """{name: {1: ..., 2: ..., 3: ...}}: one task, three feature sets of decreasing class signal."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)).astype(np.float32)
    sizes = {"train": per_class * classes, "valid": 2 * classes, "test": 2 * classes}
    labels = {k: rng.integers(0, classes, n) for k, n in sizes.items()}
    noise = {k: rng.normal(size=(n, dim)).astype(np.float32) for k, n in sizes.items()}
    out = {}
    for layer, signal in zip((1, 2, 3), (0.9, 0.7, 0.5)):
        splits = {k: (signal * centers[labels[k]] + noise[k], labels[k]) for k in sizes}
        out[layer] = TaskFeatures.from_splits(splits["train"], splits["valid"], splits["test"], num_classes=classes,
                                              name=name)
    return {name: out}


def screening_for(spec, set_name: str) -> Screening | None | str:
    """The option's Screening on a feature set ("skip" where it does not apply)."""
    cap = MAX_TRAIN[set_name]
    if spec == "max-train":
        return Screening(max_train=cap) if cap else "skip"
    if spec == "combined":
        return Screening(seeds=1, halving_epochs=10, max_train=cap if set_name == "large" else None)
    return spec


def run(features: dict, precision: str, screening, stack: int) -> tuple[dict, float]:
    cfg = ProbeConfig(metric="torch", precision=precision, stack_layers=stack)
    t = time.perf_counter()
    study = run_layerwise_study(features, cfg, progress=False, screening=screening)
    return study, time.perf_counter() - t


def work_of(study, features: dict) -> float:
    """Member-epochs x training clips over every (task, layer) probe."""
    total = 0.0
    for (task, layer), res in study.results.items():
        t = features[task][layer]
        n = t.splits["train"][1].shape[0] if t.splits else len(t.folds[1])
        screened = (res.screening or {}).get("max_train")
        n = min(n, screened) if screened else n
        total += res.epochs_run * len(res.lrs) * len(res.seeds) * n
    return total


def compare(name: str, ref, study, features: dict, seconds: float, ref_work: float, demo: bool) -> dict:
    a, b = ref.matrix("test"), study.matrix("test")
    diffs = np.array([100 * (b[t][l] - a[t][l]) for t in a for l in a[t]])
    row = {"option": name, "mean_pp": float(diffs.mean()), "mean_abs_pp": float(np.abs(diffs).mean()),
           "worst_pp": float(diffs[np.argmax(np.abs(diffs))]), "pairs": int(diffs.size),
           "work_share": work_of(study, features) / ref_work, "seconds": round(seconds, 1),
           "epochs_per_member": float(np.mean([r.epochs_run for r in study.results.values()]))}
    va, vb = ref.matrix("valid"), study.matrix("valid")
    row["best_layer_same"] = all(max(va[t], key=va[t].get) == max(vb[t], key=vb[t].get) for t in va)
    if demo:
        c_ref, c = choose_layers(ref, select_on="valid"), choose_layers(study, select_on="valid")
        row["choice"] = f"{c.middle}-{c.late}"
        row["choice_same"] = (c.middle, c.late) == (c_ref.middle, c_ref.late)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache-dir", help="feature cache (default: the package's, shared with the demo)")
    p.add_argument("--work", type=pathlib.Path, default=pathlib.Path("hf_fusion_out/measure_probe_options"))
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=5)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--stack-layers", type=int, default=1, help="exact: equal-width layers trained as one program")
    p.add_argument("--large-per-class", type=int, default=200)
    p.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    p.add_argument("--sets", nargs="+", default=["demo", "many-class", "large"], choices=["demo", "many-class", "large"])
    p.add_argument("--json", type=pathlib.Path)
    args = p.parse_args(argv)

    sets = {}
    if "demo" in args.sets:
        sets["demo"] = demo_features(args.cache_dir, args.work)
    if "many-class" in args.sets:
        sets["many-class"] = many_class_features(args.classes, args.per_class, args.dim)
    if "large" in args.sets:
        sets["large"] = many_class_features(100, args.large_per_class, args.dim, name="large")
    out = {}
    for set_name, features in sets.items():
        ref, ref_s = run(features, "fp32", None, args.stack_layers)
        ref_work = work_of(ref, features)
        rows = []
        for name in args.options:
            precision, spec = OPTIONS[name]
            screening = screening_for(spec, set_name)
            if screening == "skip":
                continue
            study, seconds = (ref, ref_s) if name == "fp32" else run(features, precision, screening, args.stack_layers)
            rows.append(compare(name, ref, study, features, seconds, ref_work, set_name == "demo"))
            print(f"{set_name} {name}: {json.dumps(rows[-1])}", flush=True)
        out[set_name] = rows
    print()
    for set_name, rows in out.items():
        print(f"### {set_name}\n")
        print("| option | test acc. diff, mean / mean abs / worst (pp) | best layer per task | M/L | work | epochs/member | s |")
        print("|---|---|---|---|---:|---:|---:|")
        for r in rows:
            ml = f"{r['choice']} ({'same' if r['choice_same'] else 'CHANGED'})" if "choice" in r else "-"
            print(f"| {r['option']} | {r['mean_pp']:+.2f} / {r['mean_abs_pp']:.2f} / {r['worst_pp']:+.2f} ({r['pairs']} pairs) "
                  f"| {'same' if r['best_layer_same'] else 'CHANGED'} | {ml} | {r['work_share']:.0%} | "
                  f"{r['epochs_per_member']:.0f} | {r['seconds']:.0f} |")
        print()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
