"""Arithmetic floor of the batched linear probe: time of its matrix products alone vs the trainers.

Runs `train_batched` once on bench_probe's synthetic task to get the real schedule (which lr columns are
alive each epoch), then replays only the matmuls that schedule needs (forward baddbmm, weight-gradient
bmm, validation addmm) and times them next to `train_batched` and `train_sequential` (best of --repeats,
interleaved). The sequential reference performs the same number of FLOPs, so sequential / floor bounds
the speed ratio any batched trainer can reach on this machine.

    python scripts/bench_probe_floor.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_probe import synthetic_task  # noqa: E402
from hf_fusion.evaluation import lr_grid, standardise, train_batched, train_sequential  # noqa: E402
from hf_fusion.protocol import SPLITS  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--per-decade", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    task = synthetic_task(args.n, args.dim, args.classes, 8.0)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = (task.splits[k] for k in SPLITS)
    Xtr, Xva, Xte = standardise(Xtr, Xva, Xte)
    C, lrs, seeds, B = args.classes, lr_grid(per_decade=args.per_decade), tuple(range(args.seeds)), args.batch_size
    (n, D), S = Xtr.shape, len(seeds)
    kw = dict(num_classes=C, lrs=lrs, seeds=seeds, batch_size=B)
    out = train_batched(Xtr, ytr, Xva, yva, Xte, yte, **kw)
    col_epochs = out.epochs_run.max(1)  # epochs each lr column stays in the stacked tensors
    live = [int((col_epochs >= e).sum()) for e in range(1, int(col_epochs.max()) + 1)]
    gflop = sum(4 * S * n * D * lc * C + 2 * len(yva) * D * S * lc * C for lc in live) / 1e9
    Ws = {lc: torch.randn(S, lc * C, D) for lc in set(live)}
    perm = torch.randperm(n)

    def floor():
        for lc in live:
            W, b = Ws[lc], torch.zeros(S, 1, lc * C)
            for s in range(0, n, B):
                xb = Xtr[perm[s:s + B]].expand(S, -1, -1)
                torch.bmm(torch.baddbmm(b, xb, W.transpose(1, 2)).transpose(1, 2), xb)
            torch.addmm(b.view(-1), Xva, W.reshape(-1, D).t())

    runs = {"matmul_floor": floor, "batched": lambda: train_batched(Xtr, ytr, Xva, yva, Xte, yte, **kw),
            "sequential": lambda: train_sequential(Xtr, ytr, Xva, yva, Xte, yte, **kw)}
    best = {k: float("inf") for k in runs}
    for _ in range(args.repeats):
        for k, f in runs.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    print(f"threads {torch.get_num_threads()}; {sum(live)} column-epochs, {int(out.epochs_run.sum())} member-epochs, "
          f"{gflop:.1f} GFLOP of matmuls")
    print("best wall s: " + ", ".join(f"{k} {v:.3f}" for k, v in best.items()))
    print(f"matmul share of batched {best['matmul_floor'] / best['batched']:.0%}; sequential / batched "
          f"{best['sequential'] / best['batched']:.2f}x; ceiling sequential / floor "
          f"{best['sequential'] / best['matmul_floor']:.2f}x; floor {gflop / best['matmul_floor']:.0f} GFLOP/s")
    return best


if __name__ == "__main__":
    main()
