"""Benchmark: batched linear probe (whole lr-grid x seeds at once) vs the sequential reference.

Synthetic Gaussian-blob task; both trainers see identical data, seeds and protocol. Prints wall
and CPU seconds (best of --repeats, runs interleaved), the speed ratio and both accuracies.

    python scripts/bench_probe.py --n 4000 --dim 1024 --classes 20 --per-decade 2 --device cpu
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from hf_fusion.evaluation import ProbeConfig, TaskFeatures, linear_probe, lr_grid  # noqa: E402


def synthetic_task(n: int, dim: int, classes: int, sep: float, seed: int = 0) -> TaskFeatures:
    """Train/valid/test = 70/15/15% of n samples from overlapping Gaussian blobs [n, dim]."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * sep / np.sqrt(dim)
    y = rng.integers(0, classes, n)
    X = (centers[y] + rng.normal(size=(n, dim)) / np.sqrt(dim) * 4).astype(np.float32)
    a, b = int(0.7 * n), int(0.85 * n)
    return TaskFeatures.from_splits((X[:a], y[:a]), (X[a:b], y[a:b]), (X[b:], y[b:]), num_classes=classes,
                                    name="synthetic")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--sep", type=float, default=8.0, help="class-centre spread (higher = easier)")
    p.add_argument("--per-decade", type=int, default=2, help="lr grid points per decade in [1e-5, 1e-2]")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = leave torch's default)")
    p.add_argument("--json", type=pathlib.Path, help="also write the numbers here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    task = synthetic_task(args.n, args.dim, args.classes, args.sep)
    cfg = ProbeConfig(lrs=lr_grid(per_decade=args.per_decade), seeds=range(args.seeds), max_epochs=args.max_epochs,
                      patience=args.patience, device=args.device, metric="torch")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    linear_probe(task, cfg, method="batched", max_epochs=1)  # warm-up (allocator, kernels)
    times = {"batched": [], "sequential": []}
    results = {}
    for _ in range(args.repeats):
        for method in ("batched", "sequential"):
            sync()
            w0, c0 = time.perf_counter(), time.process_time()
            results[method] = linear_probe(task, cfg, method=method)
            sync()
            times[method].append((time.perf_counter() - w0, time.process_time() - c0))
    best = {m: (min(t[0] for t in ts), min(t[1] for t in ts)) for m, ts in times.items()}
    out = {
        "device": args.device, "torch_threads": torch.get_num_threads(),
        "task": {"n": args.n, "dim": args.dim, "classes": args.classes},
        "grid": {"lrs": list(cfg.lrs), "seeds": list(cfg.seeds), "members": len(cfg.lrs) * len(cfg.seeds)},
        "max_epochs": args.max_epochs,
        "wall_s": {m: round(v[0], 3) for m, v in best.items()},
        "cpu_s": {m: round(v[1], 3) for m, v in best.items()},
        "speedup_wall": round(best["sequential"][0] / best["batched"][0], 2),
        "speedup_cpu": round(best["sequential"][1] / best["batched"][1], 2),
        "accuracy": {m: round(r.accuracy, 4) for m, r in results.items()},
        "std": {m: round(r.std, 4) for m, r in results.items()},
        "lr": {m: r.lr for m, r in results.items()},
        "max_abs_valid_grid_diff": float(np.max(np.abs(np.array(results["batched"].valid_accuracy)
                                                       - np.array(results["sequential"].valid_accuracy)))),
    }
    print(json.dumps(out, indent=1))
    print(f"speed ratio (sequential / batched): wall {out['speedup_wall']}x, cpu {out['speedup_cpu']}x; "
          f"test accuracy batched {out['accuracy']['batched']:.4f} vs sequential {out['accuracy']['sequential']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
