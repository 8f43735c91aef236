"""Benchmark: the batched linear probe's exact speed-ups, side by side with the trainers they replace.

On bench_probe's synthetic task (Gaussian blobs; every trainer sees the same standardised data, seeds and
protocol), best wall seconds of --repeats interleaved runs of:

  sequential     the reference: one nn.Linear + torch.optim.Adam per (lr, seed) member
  baseline       the batched trainer of git revision --baseline (the one this code replaced), when the
                 checkout has that revision
  foreach-adam   today's batched trainer with its _foreach Adam (fused_adam=False)
  batched        today's batched trainer (torch's fused Adam kernel)
  stacked        --layers feature sets of one task in one program, against --layers separate runs
  matmul floor   the matrix products of the batched trainer's schedule alone (bench_probe_floor.py)

and whether each gives the baseline's results (same validation counts, test predictions and epochs).

    python scripts/bench_probe.py --threads 2 --repeats 3 [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time
import types

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hf_fusion.evaluation import TaskFeatures, lr_grid, standardise, train_batched, train_sequential  # noqa: E402
from hf_fusion.protocol import SPLITS  # noqa: E402

#: the batched trainer before the fused-Adam / transposed-logits / stacked rewrite
DEFAULT_BASELINE = "20dfef8"


def synthetic_task(n: int, dim: int, classes: int, sep: float, seed: int = 0) -> TaskFeatures:
    """Train/valid/test = 70/15/15% of n samples from overlapping Gaussian blobs [n, dim]."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * sep / np.sqrt(dim)
    y = rng.integers(0, classes, n)
    X = (centers[y] + rng.normal(size=(n, dim)) / np.sqrt(dim) * 4).astype(np.float32)
    a, b = int(0.7 * n), int(0.85 * n)
    return TaskFeatures.from_splits((X[:a], y[:a]), (X[a:b], y[a:b]), (X[b:], y[b:]), num_classes=classes,
                                    name="synthetic")


def baseline_trainer(rev: str):
    """``train_batched`` of hf_fusion/evaluation/probe.py at git revision ``rev``, or None if unavailable."""
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:hf_fusion/evaluation/probe.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType("hf_fusion.evaluation._baseline_probe")
    mod.__package__ = "hf_fusion.evaluation"
    sys.modules[mod.__name__] = mod
    exec(compile(src, f"{rev}:probe.py", "exec"), mod.__dict__)
    return mod.train_batched


def same(a, b) -> bool:
    return (np.array_equal(a.valid_correct, b.valid_correct) and np.array_equal(a.test_pred, b.test_pred)
            and np.array_equal(a.epochs_run, b.epochs_run))


def main(argv=None):
    from bench_probe_floor import matmul_floor

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--sep", type=float, default=8.0, help="class-centre spread (higher = easier)")
    p.add_argument("--per-decade", type=int, default=2, help="lr grid points per decade in [1e-5, 1e-2]")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--layers", type=int, default=4, help="feature sets of the task for the stacked comparison")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = leave torch's default)")
    p.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the batched trainer to compare with")
    p.add_argument("--no-sequential", action="store_true", help="skip the (slow) sequential reference")
    p.add_argument("--json", type=pathlib.Path, help="also write the numbers here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    tasks = [synthetic_task(args.n, args.dim, args.classes, args.sep, seed=g) for g in range(max(1, args.layers))]
    for t in tasks[1:]:  # one task seen through several feature sets: the first one's labels
        for k in SPLITS:
            t.splits[k] = (t.splits[k][0], tasks[0].splits[k][1])
    data = [standardise(*(t.splits[k][0] for k in SPLITS), device=device) for t in tasks]
    ytr, yva, yte = (tasks[0].splits[k][1] for k in SPLITS)
    kw = dict(num_classes=args.classes, lrs=lr_grid(per_decade=args.per_decade), seeds=tuple(range(args.seeds)),
              max_epochs=args.max_epochs, patience=args.patience, device=device)
    (Xtr, Xva, Xte) = data[0]
    one = lambda f, **extra: f(Xtr, ytr, Xva, yva, Xte, yte, **kw, **extra)  # noqa: E731
    runs = {"batched": lambda: one(train_batched), "foreach-adam": lambda: one(train_batched, fused_adam=False)}
    base = baseline_trainer(args.baseline)
    if base is not None:
        runs["baseline"] = lambda: one(base)
    if not args.no_sequential:
        runs["sequential"] = lambda: one(train_sequential)
    if args.layers > 1:
        stacked_X = [torch.stack([d[k] for d in data]) for k in range(3)]
        runs["stacked"] = lambda: train_batched(stacked_X[0], ytr, stacked_X[1], yva, stacked_X[2], yte, **kw)
        runs["separate"] = lambda: [train_batched(*d[:1], ytr, d[1], yva, d[2], yte, **kw) for d in data]
    first = one(train_batched)  # warm-up, and the schedule the floor replays
    if device.type == "cpu":
        floor, gflop = matmul_floor(first, Xtr.shape[0], Xtr.shape[1], args.classes, len(yva), 200)
        runs["matmul_floor"] = floor
    best, outs = {k: float("inf") for k in runs}, {}
    for _ in range(args.repeats):
        for k, f in runs.items():
            sync()
            t = time.perf_counter()
            outs[k] = f()
            sync()
            best[k] = min(best[k], time.perf_counter() - t)

    ref = outs.get("baseline", outs.get("sequential"))
    ref_name = "baseline" if "baseline" in outs else "sequential"
    out = {"device": str(device), "torch_threads": torch.get_num_threads(), "baseline": args.baseline if base else None,
           "task": {"n": args.n, "dim": args.dim, "classes": args.classes, "layers": args.layers},
           "grid": {"lrs": list(kw["lrs"]), "seeds": list(kw["seeds"])},
           "member_epochs": int(first.epochs_run.sum()), "wall_s": {k: round(v, 3) for k, v in best.items()}}
    same_as = {k: same(outs[k], ref) for k in ("batched", "foreach-adam", "baseline", "sequential") if k in outs}
    if "stacked" in outs:
        same_as["stacked"] = all(same(a, b) for a, b in zip(outs["stacked"], outs["separate"]))
    out["same_results_as_" + ref_name] = same_as
    out["max_weight_diff_vs_" + ref_name] = {k: float((outs[k].weight - ref.weight).abs().max())
                                             for k in ("batched", "foreach-adam", "sequential") if k in outs}
    ratio = lambda a, b: round(best[a] / best[b], 2) if a in best and b in best else None  # noqa: E731
    out["ratios"] = {"sequential/batched": ratio("sequential", "batched"), "baseline/batched": ratio("baseline", "batched"),
                     "sequential/baseline": ratio("sequential", "baseline"),
                     "foreach-adam/batched (fused Adam)": ratio("foreach-adam", "batched"),
                     "baseline/foreach-adam (layout, buffers)": ratio("baseline", "foreach-adam"),
                     "separate/stacked": ratio("separate", "stacked")}
    if "matmul_floor" in best:
        out["floor_gflop"] = round(gflop, 1)
        out["matmul_share_of_batched"] = round(best["matmul_floor"] / best["batched"], 3)
        out["ceiling sequential/floor"] = ratio("sequential", "matmul_floor")
    print(json.dumps(out, indent=1))
    r = out["ratios"]
    print(f"\nspeed ratios: sequential/batched {r['sequential/batched']}x, baseline/batched {r['baseline/batched']}x, "
          f"fused Adam {r['foreach-adam/batched (fused Adam)']}x, stacked {args.layers} layers "
          f"{r['separate/stacked']}x; same results as {ref_name}: {same_as}")
    if "matmul_share_of_batched" in out:
        print(f"batched reaches {out['matmul_share_of_batched']:.0%} of the floor ceiling (its matrix products' share "
              f"of its time; ceiling sequential/floor {out['ceiling sequential/floor']}x)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    main()
