"""Arithmetic floor of the batched linear probe: its matrix products alone, replayed on its real schedule.

`train_batched` runs once on bench_probe's synthetic task to get the schedule (which lr columns are alive
each epoch); the floor then replays only the matrix products that schedule needs, in the trainer's own
shapes and calls (logits^T = W x^T, weight gradient g x with alpha = 1/B, the validation addmm), on a
minibatch gathered once (no gather, softmax, Adam or bookkeeping). The sequential reference performs the
same FLOPs, so sequential / floor bounds the speed ratio any batched trainer can reach on this machine,
and floor / batched is the share of the trainer's time spent in its matrix products.

    python scripts/bench_probe_floor.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from hf_fusion.evaluation import TrainOutput, lr_grid, standardise, train_batched, train_sequential  # noqa: E402
from hf_fusion.protocol import SPLITS  # noqa: E402


def matmul_floor(out: TrainOutput, n: int, D: int, C: int, n_valid: int, batch_size: int):
    """(replay function, GFLOP) of the matrix products of ``out``'s schedule (one feature set, S seeds)."""
    L, S = out.epochs_run.shape
    col_epochs = out.epochs_run.max(1)  # epochs each lr column stays in the stacked tensors
    live = [int((col_epochs >= e).sum()) for e in range(1, int(col_epochs.max()) + 1)]
    gflop = sum(4 * S * n * D * lc * C + 2 * n_valid * D * S * lc * C for lc in live) / 1e9
    g = torch.Generator().manual_seed(0)
    xb = torch.randn(S, batch_size, D, generator=g)
    tail = n % batch_size
    xt = xb[:, :tail].contiguous() if tail else None
    Xva = torch.randn(n_valid, D, generator=g)
    Ws = {lc: torch.randn(S, lc * C, D, generator=g) for lc in set(live)}
    bufs = {lc: (torch.empty(S, lc * C, batch_size), torch.empty(S, lc * C, D),
                 torch.empty(S, lc * C, tail) if tail else None) for lc in set(live)}

    def replay():
        for lc in live:
            W, b = Ws[lc], torch.zeros(S, lc * C, 1)
            logits, gW, logits_tail = bufs[lc]
            for start in range(0, n, batch_size):
                x, lg = (xb, logits) if start + batch_size <= n else (xt, logits_tail)
                torch.baddbmm(b, W, x.transpose(1, 2), out=lg)
                torch.baddbmm(gW, lg, x, beta=0, alpha=1 / x.shape[1], out=gW)
            torch.addmm(b.view(-1), Xva, W.reshape(-1, D).t())

    return replay, gflop


def main(argv=None):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from bench_probe import synthetic_task

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
    kw = dict(num_classes=args.classes, lrs=lr_grid(per_decade=args.per_decade), seeds=tuple(range(args.seeds)),
              batch_size=args.batch_size)
    out = train_batched(Xtr, ytr, Xva, yva, Xte, yte, **kw)
    floor, gflop = matmul_floor(out, Xtr.shape[0], Xtr.shape[1], args.classes, len(yva), args.batch_size)
    runs = {"matmul_floor": floor, "batched": lambda: train_batched(Xtr, ytr, Xva, yva, Xte, yte, **kw),
            "sequential": lambda: train_sequential(Xtr, ytr, Xva, yva, Xte, yte, **kw)}
    best = {k: float("inf") for k in runs}
    for _ in range(args.repeats):
        for k, f in runs.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    print(f"threads {torch.get_num_threads()}; {int(out.epochs_run.max(1).sum())} column-epochs, "
          f"{int(out.epochs_run.sum())} member-epochs, {gflop:.1f} GFLOP of matmuls")
    print("best wall s: " + ", ".join(f"{k} {v:.3f}" for k, v in best.items()))
    print(f"matmul share of batched {best['matmul_floor'] / best['batched']:.0%}; sequential / batched "
          f"{best['sequential'] / best['batched']:.2f}x; ceiling sequential / floor "
          f"{best['sequential'] / best['matmul_floor']:.2f}x; floor {gflop / best['matmul_floor']:.0f} GFLOP/s")
    return best


if __name__ == "__main__":
    main()
