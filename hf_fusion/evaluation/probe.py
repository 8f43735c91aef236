"""Linear evaluation (the paper's / EVAR protocol) with the whole lr-grid x seeds trained at once.

Protocol: docs/evaluation.md, "Linear probe". Two trainers implement the same computation:
:func:`train_batched` (every (lr, seed) member in one stacked weight tensor, with :class:`BatchedAdam`
and :class:`EarlyStopping`, also used by the weighted layer sum) and :func:`train_sequential` (the
plain reference, one ``nn.Linear`` + ``torch.optim.Adam`` per member). :func:`linear_probe` runs the
protocol and returns a :class:`ProbeResult` (design: docs/design.md).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..protocol import (PAPER_LRS, PAPER_SEEDS, PROBE_BATCH_SIZE, PROBE_MAX_EPOCHS, PROBE_PATIENCE, PROBE_PRECISIONS,
                        VALID_FRACTION)
from .features import TaskFeatures, fold_problems

DEFAULT_LRS = PAPER_LRS
DEFAULT_SEEDS = PAPER_SEEDS


@dataclass
class ProbeConfig:
    """Linear-probe settings; defaults are the paper's protocol.

    lrs: learning-rate grid (each in [1e-5, 1e-2] for the paper's range; any positive value accepted).
    seeds: training seeds; each fixes the initial weights and the minibatch order.
    batch_size: minibatch size (the paper: at most 200).
    max_epochs / patience: early stopping on validation accuracy, best weights restored.
    valid_fraction / split_seed: fold tasks only, stratified validation carved from the training folds.
    device: torch device string; dtype: torch.float32 (default) or torch.float64.
    metric: "evaluate" computes reported test accuracies with the packaged `evaluate` metric,
        "torch" with a direct tensor comparison (same numbers, faster).
    precision: how the matrix products run (:class:`MatmulPrecision`): "fp32" (default, exact), or
        "tf32" / "bf16", an approximate option (docs/performance.md, "Probe precision").
    stack_layers: the layer-wise study trains up to this many equal-width feature sets of one task as
        one program (:func:`train_batched` on [G, n, D]); exact, more parallel work per step.
    """

    lrs: Sequence[float] = DEFAULT_LRS
    seeds: Sequence[int] = DEFAULT_SEEDS
    batch_size: int = PROBE_BATCH_SIZE
    max_epochs: int = PROBE_MAX_EPOCHS
    patience: int = PROBE_PATIENCE
    valid_fraction: float = VALID_FRACTION
    split_seed: int = 0
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    metric: str = "evaluate"
    precision: str = "fp32"
    stack_layers: int = 1

    def __post_init__(self):
        self.lrs = tuple(float(lr) for lr in self.lrs)
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in self.lrs):
            raise ValueError(f"ProbeConfig.lrs must be a non-empty list of positive learning rates, got {self.lrs}")
        if len(set(self.lrs)) != len(self.lrs):
            raise ValueError(f"ProbeConfig.lrs contains duplicates: {self.lrs}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"ProbeConfig.seeds must be non-empty and distinct, got {self.seeds}")
        for name in ("batch_size", "max_epochs", "patience", "stack_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ProbeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.metric not in ("evaluate", "torch"):
            raise ValueError(f"ProbeConfig.metric must be 'evaluate' or 'torch', got {self.metric!r}")
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"ProbeConfig.dtype must be torch.float32 or torch.float64, got {self.dtype}")
        MatmulPrecision.check(self.precision, self.dtype)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lrs"], d["seeds"], d["dtype"] = list(self.lrs), list(self.seeds), str(self.dtype).replace("torch.", "")
        return d


def lr_grid(low: float = 1e-5, high: float = 1e-2, per_decade: int = 1) -> tuple[float, ...]:
    """Log-spaced learning rates from `low` to `high` with `per_decade` points per decade (inclusive)."""
    n = int(round(math.log10(high / low) * per_decade)) + 1
    return tuple(float(f"{v:.3g}") for v in np.logspace(math.log10(low), math.log10(high), n))


@dataclass
class TrainOutput:
    """Result of training all (lr, seed) members on one train/valid/test problem.

    Arrays are indexed [lr index, seed index].
    valid_correct / test_correct: number of correct predictions at the best (restored) weights.
    best_epoch: 1-based epoch of the best validation accuracy; epochs_run: epochs actually trained.
    test_pred: [L, S, n_test] int64 predictions of the restored weights.
    """

    valid_correct: np.ndarray
    test_correct: np.ndarray
    n_valid: int
    n_test: int
    best_epoch: np.ndarray
    epochs_run: np.ndarray
    test_pred: np.ndarray
    weight: torch.Tensor  # [L, S, D, C] restored weights (in standardised feature space)
    bias: torch.Tensor  # [L, S, C]
    valid_history: list = field(default_factory=list)  # per epoch [L, S] validation accuracy

    @property
    def valid_acc(self) -> np.ndarray:
        return self.valid_correct / self.n_valid

    @property
    def test_acc(self) -> np.ndarray:
        return self.test_correct / self.n_test


def standardisation(train: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [D], std [D]) float64 of the training features (population std; a constant feature gets std 1)."""
    Xtr = torch.as_tensor(train, dtype=torch.float64)
    mean = Xtr.mean(0)
    std = Xtr.std(0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def standardise(train: np.ndarray, *others: np.ndarray, device="cpu", dtype=torch.float32):
    """(x - mean_train) / std_train for every array (see :func:`standardisation`). Returns tensors."""
    mean, std = standardisation(train)
    out = [((torch.as_tensor(x, dtype=torch.float64) - mean) / std).to(device=device, dtype=dtype) for x in (train, *others)]
    return out


def init_linear(dim: int, num_classes: int, seed: int, dtype=torch.float32):
    """Seeded initial weights W[D, C], b[C] (nn.Linear's default U(-1/sqrt(D), 1/sqrt(D))) and the
    CPU generator that then yields the per-epoch minibatch permutations of this seed."""
    g = torch.Generator().manual_seed(int(seed))
    bound = 1.0 / math.sqrt(dim)
    W = (torch.rand(num_classes, dim, generator=g, dtype=torch.float64) * 2 - 1) * bound
    b = (torch.rand(num_classes, generator=g, dtype=torch.float64) * 2 - 1) * bound
    return W.t().contiguous().to(dtype), b.to(dtype), g


def _count_correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).sum()


def _chunks(n: int, rows: int):
    for s in range(0, n, rows):
        yield slice(s, min(n, s + rows))


def _batched_logits(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor, chunk_elems: int = 1 << 25):
    """Yield (rows, logits [r, S, L, C]) for X [n, D] and stacked transposed weights W [S, L, C, D],
    b [S, L, C]."""
    S, L, C, D = W.shape
    Wflat = W.reshape(S * L * C, D).t()
    bflat = b.reshape(S * L * C)
    rows = max(1, chunk_elems // (S * L * C))
    for sl in _chunks(X.shape[0], rows):
        yield sl, torch.addmm(bflat, X[sl], Wflat).view(-1, S, L, C)


def _fused_adam_available(device: torch.device, dtype: torch.dtype) -> bool:
    """True where torch's fused Adam kernel (one pass over parameter, gradient and state) runs."""
    return hasattr(torch, "_fused_adam_") and device.type in ("cpu", "cuda") and dtype in (torch.float32, torch.float64)


class BatchedAdam:
    """torch.optim.Adam's update for stacked member parameters, one learning rate per lr column.

    params: contiguous tensors [S, Lc, ...] (seed axis, then the live lr columns); lrs: [Lc] float64, the
    learning rate of each column. ``fused=None`` (default) uses torch's fused Adam kernel where it runs
    (CPU and CUDA, float32/float64): one pass per lr column over the [S, ...] blocks of every parameter,
    torch.optim.Adam(fused=True)'s arithmetic. ``fused=False``: the same update with _foreach ops,
    ``p -= (lr*sqrt(bc2)/bc1) * m / (sqrt(v) + eps*sqrt(bc2))`` with the lr broadcast over [1, Lc, 1, ...]
    (seven passes; equal up to float rounding). ``keep(idx)`` drops lr columns from parameters and state.
    """

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, betas=(0.9, 0.999), eps: float = 1e-8,
                 fused: bool | None = None):
        self.params = [p.contiguous() for p in params]
        self.lrs = lrs
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        self.steps = 0
        p0 = self.params[0]
        self.fused = _fused_adam_available(p0.device, p0.dtype) if fused is None else bool(fused)
        self._step = torch.zeros((), dtype=torch.float32, device=p0.device)
        self._blocks()

    @staticmethod
    def _columns(ts: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Per lr column, the contiguous [...] block of every member of every tensor [S, Lc, ...]."""
        return [[t[s, c] for t in ts for s in range(t.shape[0])] for c in range(ts[0].shape[1])]

    def _blocks(self) -> None:
        """The fused kernel's per-column blocks of the parameters and their state."""
        self._grad_key, self._g = None, None
        if self.fused:
            self._p, self._m, self._v = (self._columns(ts) for ts in (self.params, self.exp_avgs, self.exp_avg_sqs))

    def step(self, grads: list[torch.Tensor]) -> None:
        """One Adam step of every parameter with its gradient (same shapes as ``params``)."""
        self.steps += 1
        if self.fused:
            self._step.fill_(self.steps)
            key = [(t.data_ptr(), t.shape) for t in grads]
            if key != self._grad_key:  # the trainer reuses its gradient buffers: their blocks are kept
                self._grad_key, self._g = key, self._columns(grads)
            steps = [self._step] * len(self._g[0])
            for c, lr in enumerate(self.lrs.tolist()):
                torch._fused_adam_(self._p[c], self._g[c], self._m[c], self._v[c], [], steps, lr=lr,
                                   beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps,
                                   amsgrad=False, maximize=False)
            return
        beta1, beta2 = self.beta1, self.beta2
        bc1, bc2_sqrt = 1 - beta1 ** self.steps, math.sqrt(1 - beta2 ** self.steps)
        torch._foreach_lerp_(self.exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sqs, beta2)
        torch._foreach_addcmul_(self.exp_avg_sqs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sqs)
        torch._foreach_add_(denom, self.eps * bc2_sqrt)
        scale = (self.lrs * (bc2_sqrt / bc1)).to(self.params[0].dtype)
        Lc = scale.numel()
        upd = torch._foreach_mul(self.exp_avgs, [scale.view(1, Lc, *[1] * (p.dim() - 2)) for p in self.params])
        torch._foreach_addcdiv_(self.params, upd, denom, value=-1.0)

    def keep(self, idx: torch.Tensor) -> None:
        """Keep only the lr columns ``idx`` (indices into the live columns) of parameters and state."""
        pick = lambda ts: [t[:, idx].contiguous() for t in ts]  # noqa: E731
        self.params, self.exp_avgs, self.exp_avg_sqs = pick(self.params), pick(self.exp_avgs), pick(self.exp_avg_sqs)
        self.lrs = self.lrs[idx]
        self._blocks()


class EarlyStopping:
    """Per-member early stopping on validation accuracy with best-weight snapshots.

    Members are [S, L] (seeds x lr columns). ``observe(epoch, correct, params)`` takes the correct
    validation predictions [S, Lc] of the live columns ``cols`` after an epoch and the live parameters
    [S, Lc, ...]; a member improves on a strictly higher count, its snapshot is then updated, and it
    stops after ``patience`` epochs without improvement. An lr column whose every seed has stopped has
    its snapshots made final (``best``: [S, L, ...] per parameter) and is returned for dropping.
    Counters ([S, L] int64): best_correct (-1 before the first epoch), best_epoch (1-based), epochs_run;
    n_valid: the validation set size (for the accuracy history).
    ``halving_epochs`` (approximate screening, :mod:`.screening`): every that many epochs, each of the
    ``groups`` blocks of S / groups member rows (a feature set's seeds) keeps only the better half (rounded
    up) of its still-training lr columns, ranked by mean best validation count; the rest stop.
    """

    def __init__(self, params: list[torch.Tensor], patience: int, n_valid: int, halving_epochs: int | None = None,
                 groups: int = 1):
        S, L = params[0].shape[:2]
        device = params[0].device
        self.patience, self.n_valid = int(patience), int(n_valid)
        self.halving_epochs, self.groups = halving_epochs, int(groups)
        self.best = [p.clone() for p in params]  # final snapshots [S, L, ...]
        self.running = [p.clone() for p in params]  # snapshots of the live columns [S, Lc, ...]
        self.best_correct = torch.full((S, L), -1, dtype=torch.long, device=device)
        self.best_epoch = torch.zeros(S, L, dtype=torch.long, device=device)
        self.wait = torch.zeros(S, L, dtype=torch.long, device=device)
        self.active = torch.ones(S, L, dtype=torch.bool, device=device)
        self.epochs_run = torch.zeros(S, L, dtype=torch.long, device=device)
        self.cols = torch.arange(L, device=device)  # lr columns still being trained
        self.correct = self.best_correct  # [S, L] of the last epoch, -1 for dropped columns
        self.done = False

    def observe(self, epoch: int, correct_c: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor | None:
        """Record one epoch. Returns the live-column indices to keep when columns stopped, else None
        (``done`` is set once no column is left)."""
        S, L = self.best_correct.shape
        cols = self.cols
        self.epochs_run += self.active.long()
        correct = torch.full((S, L), -1, dtype=torch.long, device=correct_c.device)
        correct[:, cols] = correct_c
        self.correct = correct
        improved = self.active & (correct > self.best_correct)
        self.best_correct = torch.where(improved, correct, self.best_correct)
        self.best_epoch = torch.where(improved, torch.full_like(self.best_epoch, epoch), self.best_epoch)
        imp_c = improved[:, cols]
        for snap, p in zip(self.running, params):
            torch.where(imp_c.view(*imp_c.shape, *[1] * (p.dim() - 2)), p, snap, out=snap)
        self.wait = torch.where(improved, torch.zeros_like(self.wait), self.wait + 1)
        self.active &= self.wait < self.patience
        if self.halving_epochs and epoch % self.halving_epochs == 0:
            self._halve()
        alive = self.active[:, cols].any(0).cpu()  # [Lc]; the one host sync of the epoch
        if bool(alive.all()):
            return None
        dead = (~alive).nonzero().squeeze(1).to(cols.device)  # their snapshots are final
        for final, snap in zip(self.best, self.running):
            final[:, cols[dead]] = snap[:, dead]
        if not bool(alive.any()):
            self.done = True
            return None
        keep = alive.nonzero().squeeze(1).to(cols.device)
        self.cols = cols[keep]
        self.running = [t[:, keep].contiguous() for t in self.running]
        return keep

    def _halve(self) -> None:
        """Successive halving: per group, stop the worse half of the lr columns that still train."""
        S, L = self.active.shape
        rows = S // self.groups
        for g in range(self.groups):
            block = slice(g * rows, (g + 1) * rows)
            training = self.active[block].any(0).nonzero().squeeze(1)  # [k] columns with a live member
            k = int(training.numel())
            if k < 2:
                continue
            score = self.best_correct[block][:, training].double().mean(0)
            order = torch.sort(-score, stable=True).indices  # best first; ties keep the grid order
            self.active[block, training[order[(k + 1) // 2:]]] = False

    def end_epoch(self, epoch: int, correct_c: torch.Tensor, adam: BatchedAdam, history: list | None = None) -> bool:
        """:meth:`observe` with ``adam``'s live parameters, append the epoch's [L, S] validation accuracies
        to ``history`` (when given) and drop stopped columns from ``adam``; True once every member stopped."""
        keep = self.observe(epoch, correct_c, adam.params)
        if history is not None:
            history.append(_valid_history(self.correct, self.n_valid))
        if keep is not None:
            adam.keep(keep)
        return self.done

    def finish(self) -> list[torch.Tensor]:
        """Make the live columns' snapshots final (max_epochs reached); returns ``best``."""
        if not self.done:
            for final, snap in zip(self.best, self.running):
                final[:, self.cols] = snap
            self.done = True
        return self.best


def _valid_history(correct: torch.Tensor, n_valid: int) -> np.ndarray:
    """[S, L] correct counts (-1 = dropped column) -> [L, S] accuracies with NaN for dropped columns."""
    h = (correct.double() / n_valid).t().cpu().numpy()
    h[h < 0] = np.nan
    return h


def round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 values rounded to TF32's 10 mantissa bits (round to nearest even), still as float32:
    what a TF32 tensor core reads of an fp32 operand (the CPU emulation of ``precision="tf32"``)."""
    bits = x.contiguous().view(torch.int32)
    bits = (bits + (0x0FFF + ((bits >> 13) & 1))) & ~0x1FFF
    return bits.view(torch.float32)


class MatmulPrecision:
    """How the probe's matrix products run; weights, Adam and the softmax stay in the master dtype.

    "fp32" (default): in the master dtype (float32 or float64), exact.
    "bf16": features stored in bfloat16, weights cast to bfloat16 per step, products accumulate in float32
        and return bfloat16 (autocast's rule); gradients reach Adam in float32.
    "tf32": on CUDA, TF32 tensor-core GEMMs (``torch.set_float32_matmul_precision("high")``); on the
        CPU emulated: both operands rounded to TF32 (:func:`round_to_tf32`), float32 accumulation. The
        emulation measures the accuracy effect, not the speed.
    """

    def __init__(self, name: str, device: torch.device, master: torch.dtype):
        self.check(name, master)
        self.name, self.master = name, master
        self.emulate_tf32 = name == "tf32" and device.type != "cuda"
        self.store = torch.bfloat16 if name == "bf16" else master  # dtype of features and cast weights

    @staticmethod
    def check(name: str, master: torch.dtype) -> None:
        """Refuse an unknown precision, or a low precision on other than float32 master weights."""
        if name not in PROBE_PRECISIONS:
            raise ValueError(f"probe precision must be one of {list(PROBE_PRECISIONS)}, got {name!r}")
        if name != "fp32" and master != torch.float32:
            raise ValueError(f"probe precision {name!r} runs on float32 weights, not {master}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features [n, D] (master dtype) as the products read them."""
        return round_to_tf32(x) if self.emulate_tf32 else x.to(self.store)

    def operand(self, t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """A per-step operand (weights, gradient of the logits) as the products read it."""
        if self.emulate_tf32:
            return round_to_tf32(t)
        if self.store == t.dtype:
            return t
        return t.to(self.store) if out is None else out.copy_(t)

    def context(self):
        """Where the products run with this precision (CUDA TF32: the cuBLAS switch, restored after)."""
        return _cuda_tf32() if self.name == "tf32" and not self.emulate_tf32 else contextlib.nullcontext()


@contextlib.contextmanager
def _cuda_tf32():
    """float32 products on TF32 tensor cores ("high" matmul precision), the previous setting restored after."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def train_batched(Xtr, ytr, Xva, yva, Xte, yte, num_classes: int, lrs: Sequence[float], seeds: Sequence[int],
                  batch_size: int = PROBE_BATCH_SIZE, max_epochs: int = PROBE_MAX_EPOCHS, patience: int = PROBE_PATIENCE,
                  device="cpu", dtype=torch.float32, record_history: bool = False, precision: str = "fp32",
                  halving_epochs: int | None = None, fused_adam: bool | None = None):
    """Train len(lrs) x len(seeds) linear classifiers as one tensor program.

    Inputs are standardised features X [n, D] and int labels y [n], or a stack X [G, n, D] of G feature
    sets of one task (same labels, same width: e.g. the layers of a model) trained together; the result
    is then a list of G :class:`TrainOutput`, each equal to training that feature set alone.
    Weights are stacked as [G*S, L, C, D] (transposed, W^T per member) so that one bmm of the per-member
    minibatch [G*S, B, D] with W viewed [G*S, L*C, D] gives every member's logits and the weight
    gradient is one bmm grad^T @ x; :class:`BatchedAdam` (torch's fused kernel where it runs) updates
    every member with its column's lr; the minibatch gather is one index_select; the gather and the
    step's products write into buffers allocated once per (live columns, batch size) instead of fresh
    memory. :class:`EarlyStopping` keeps the per-member state; an lr
    column is dropped once every member of it stopped. ``precision``: :class:`MatmulPrecision`;
    ``halving_epochs``: successive halving over the lr grid (:class:`EarlyStopping`; approximate).
    """
    device = torch.device(device)
    mp = MatmulPrecision(precision, device, dtype)
    stacked = torch.as_tensor(Xtr).dim() == 3
    Xtr, Xva, Xte = (torch.as_tensor(x).to(device=device, dtype=dtype) for x in (Xtr, Xva, Xte))
    if not stacked:
        Xtr, Xva, Xte = Xtr[None], Xva[None], Xte[None]
    ytr, yva, yte = (torch.as_tensor(y).to(device=device, dtype=torch.long) for y in (ytr, yva, yte))
    G, n, D = Xtr.shape
    if Xva.shape[:1] != (G,) or Xte.shape[:1] != (G,) or Xva.shape[2] != D or Xte.shape[2] != D:
        raise ValueError(f"train_batched: stacked feature sets disagree: train {tuple(Xtr.shape)}, valid "
                         f"{tuple(Xva.shape)}, test {tuple(Xte.shape)} (expected [G, n, D] with one G and D)")
    Xtr, Xva, Xte = (mp.features(x) for x in (Xtr, Xva, Xte))
    C, S, L = int(num_classes), len(seeds), len(lrs)
    M = G * S  # members per lr column: feature set major, seed minor

    W = torch.empty(M, L, C, D, dtype=dtype, device=device)
    b = torch.empty(M, L, C, dtype=dtype, device=device)
    gens = []
    for si, seed in enumerate(seeds):
        W0, b0, g = init_linear(D, C, seed, dtype)
        W[si::S] = W0.t().to(device)[None, None]
        b[si::S] = b0.to(device)[None, None]
        gens.append(g)
    adam = BatchedAdam([W, b], torch.tensor(lrs, dtype=torch.float64, device=device), fused=fused_adam)
    stopper = EarlyStopping([W, b], patience, yva.shape[0], halving_epochs=halving_epochs, groups=G)
    Xflat = Xtr.reshape(G * n, D)
    offsets = (torch.arange(G, device=device) * n).view(G, 1, 1)
    history, buffers = [], {}
    minus_one = torch.full((1, 1, 1, 1, 1), -1.0, dtype=dtype, device=device)
    with mp.context():
        for epoch in range(1, max_epochs + 1):
            W, b = adam.params
            Lc = W.shape[1]
            perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # [S, n]
            rows_of = (perms[None] + offsets).view(M, n)  # member m's epoch order as rows of Xflat
            targets = ytr[perms]  # [S, n] the epoch's labels in each seed's order
            for start in range(0, n, batch_size):
                idx = rows_of[:, start:start + batch_size].reshape(-1)  # [G*S*B]
                B = idx.shape[0] // M
                if buffers.get("key") != (Lc, B):  # the step's outputs, allocated once per shape
                    buffers = {"key": (Lc, B), "x": torch.empty(M * B, D, dtype=Xtr.dtype, device=device),
                               "logits": torch.empty(M, Lc * C, B, dtype=mp.store, device=device),
                               "gW": torch.empty(M, Lc * C, D, dtype=mp.store, device=device),
                               "gb": torch.empty(M, Lc, C, dtype=dtype, device=device),
                               "W": torch.empty(M, Lc * C, D, dtype=mp.store, device=device) if mp.store != dtype else None,
                               # the weight gradient in the master dtype for Adam (bf16 products only)
                               "gW_master": torch.empty(M, Lc, C, D, dtype=dtype, device=device) if mp.store != dtype else None}
                xb = torch.index_select(Xflat, 0, idx, out=buffers["x"]).view(M, B, D)  # one gather, every member
                Wm = mp.operand(W.view(M, Lc * C, D), buffers["W"])
                # logits transposed, [M, Lc*C, B]: the softmax over classes then runs along B-long rows
                logits = torch.baddbmm(b.view(M, Lc * C, 1).to(mp.store), Wm, xb.transpose(1, 2), out=buffers["logits"])
                # d(mean cross-entropy)/d logits = (softmax - onehot) / B for every member at once; the 1/B is
                # applied by the weight-gradient GEMM (alpha) and to the small bias gradient
                grad = torch.softmax(logits.view(M, Lc, C, B), dim=2, dtype=dtype)
                # minus the one-hot targets: -1 at each clip's class (no [n, C] one-hot matrix is built)
                ys = targets[:, start:start + batch_size].view(1, S, 1, 1, B).expand(G, S, Lc, 1, B)
                grad.view(G, S, Lc, C, B).scatter_add_(3, ys, minus_one.expand(G, S, Lc, 1, B))
                gW = torch.baddbmm(buffers["gW"], mp.operand(grad.view(M, Lc * C, B)), xb, beta=0, alpha=1 / B,
                                   out=buffers["gW"])  # [M, Lc*C, D]
                gb = torch.sum(grad, -1, out=buffers["gb"]).div_(B)  # [M, Lc, C]
                gW = gW.view(M, Lc, C, D)
                if buffers["gW_master"] is not None:  # bf16 products: Adam reads a float32 copy, same buffer each step
                    gW = buffers["gW_master"].copy_(gW)
                adam.step([gW, gb])  # updates W and b in place
            correct_c = _correct_counts(Xva, yva, W, b, mp)
            if stopper.end_epoch(epoch, correct_c, adam, history if record_history else None):
                break
        best_W, best_b = stopper.finish()
        test_pred = _predictions(Xte, best_W, best_b, mp)  # [M, L, n_test]
    test_correct = (test_pred == yte).sum(-1)
    outputs = []
    for g in range(G):
        ms = slice(g * S, (g + 1) * S)
        tr = lambda t: t[ms].t().cpu().numpy()  # noqa: E731  [S, L] of this feature set -> [L, S]
        outputs.append(TrainOutput(
            valid_correct=tr(stopper.best_correct), test_correct=tr(test_correct),
            n_valid=int(yva.shape[0]), n_test=int(yte.shape[0]),
            best_epoch=tr(stopper.best_epoch), epochs_run=tr(stopper.epochs_run),
            test_pred=test_pred[ms].transpose(0, 1).cpu().numpy(),
            weight=best_W[ms].permute(1, 0, 3, 2).contiguous().cpu(), bias=best_b[ms].transpose(0, 1).cpu(),
            valid_history=_group_history(history, stopper.epochs_run[ms], ms),
        ))
    return outputs if stacked else outputs[0]


def _group_history(history: list, epochs_run: torch.Tensor, ms: slice) -> list:
    """One feature set's [L, S] validation history out of a stacked program's [L, G*S] one: as if trained
    alone, an lr column reads NaN after its last member stopped and the history ends with its last column."""
    last = epochs_run.max(0).values.cpu().numpy()  # [L] epochs each lr column trained for this feature set
    return [np.where(e < last[:, None], h[:, ms], np.nan) for e, h in enumerate(history[:int(last.max())])]


def _member_logits(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor, mp: MatmulPrecision):
    """Yield (feature set g, rows, logits [r, S, L, C]) of stacked features X [G, n, D] under the
    weights W [G*S, L, C, D], b [G*S, L, C] of their members."""
    G = X.shape[0]
    S = W.shape[0] // G
    for g in range(G):
        ms = slice(g * S, (g + 1) * S)
        for sl, lg in _batched_logits(X[g], mp.operand(W[ms]), b[ms].to(mp.store)):
            yield g, sl, lg


def _correct_counts(X, y, W, b, mp) -> torch.Tensor:
    """[G*S, L] correct predictions of every member on its feature set."""
    M, L = W.shape[:2]
    S = M // X.shape[0]
    correct = torch.zeros(M, L, dtype=torch.long, device=W.device)
    for g, sl, lg in _member_logits(X, W, b, mp):
        correct[g * S:(g + 1) * S] += (lg.argmax(-1) == y[sl, None, None]).sum(0)
    return correct


def _predictions(X, W, b, mp) -> torch.Tensor:
    """[G*S, L, n] argmax predictions of every member on its feature set."""
    M, L = W.shape[:2]
    S = M // X.shape[0]
    pred = torch.empty(M, L, X.shape[1], dtype=torch.long, device=W.device)
    for g, sl, lg in _member_logits(X, W, b, mp):
        pred[g * S:(g + 1) * S, :, sl] = lg.argmax(-1).permute(1, 2, 0)
    return pred


def train_sequential(Xtr, ytr, Xva, yva, Xte, yte, num_classes: int, lrs: Sequence[float], seeds: Sequence[int],
                     batch_size: int = PROBE_BATCH_SIZE, max_epochs: int = PROBE_MAX_EPOCHS, patience: int = PROBE_PATIENCE,
                     device="cpu", dtype=torch.float32, record_history: bool = False) -> TrainOutput:
    """Reference trainer: one `nn.Linear` + `torch.optim.Adam` per (lr, seed), run one after another.

    Same initial weights (`init_linear`) and minibatch order per seed as `train_batched`.
    """
    device = torch.device(device)
    Xtr, Xva, Xte = (torch.as_tensor(x).to(device=device, dtype=dtype) for x in (Xtr, Xva, Xte))
    ytr, yva, yte = (torch.as_tensor(y).to(device=device, dtype=torch.long) for y in (ytr, yva, yte))
    n, D = Xtr.shape
    C, S, L = int(num_classes), len(seeds), len(lrs)
    valid_correct = np.zeros((L, S), dtype=np.int64)
    test_correct = np.zeros((L, S), dtype=np.int64)
    best_epochs = np.zeros((L, S), dtype=np.int64)
    epochs_run = np.zeros((L, S), dtype=np.int64)
    test_pred = np.zeros((L, S, Xte.shape[0]), dtype=np.int64)
    weights = torch.zeros(L, S, D, C, dtype=dtype)
    biases = torch.zeros(L, S, C, dtype=dtype)
    history = np.full((max_epochs, L, S), np.nan) if record_history else None
    for li, lr in enumerate(lrs):
        for si, seed in enumerate(seeds):
            model = torch.nn.Linear(D, C, device=device, dtype=dtype)
            W0, b0, g = init_linear(D, C, seed, dtype)
            with torch.no_grad():
                model.weight.copy_(W0.t())
                model.bias.copy_(b0)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            best, best_state, wait = -1, None, 0
            for epoch in range(1, max_epochs + 1):
                model.train()
                perm = torch.randperm(n, generator=g).to(device)
                for start in range(0, n, batch_size):
                    idx = perm[start:start + batch_size]
                    loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                model.eval()
                with torch.no_grad():
                    correct = int(_count_correct(model(Xva), yva))
                epochs_run[li, si] = epoch
                if record_history:
                    history[epoch - 1, li, si] = correct / yva.shape[0]
                if correct > best:
                    best, wait, best_epochs[li, si] = correct, 0, epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    wait += 1
                    if wait >= patience:
                        break
            model.load_state_dict(best_state)
            with torch.no_grad():
                pred = model(Xte).argmax(-1)
            valid_correct[li, si] = best
            test_correct[li, si] = int((pred == yte).sum())
            test_pred[li, si] = pred.cpu().numpy()
            weights[li, si] = model.weight.detach().t().cpu()
            biases[li, si] = model.bias.detach().cpu()
    hist_list = []
    if record_history:
        last = int(epochs_run.max())
        hist_list = [history[e] for e in range(last)]
    return TrainOutput(valid_correct, test_correct, int(yva.shape[0]), int(yte.shape[0]), best_epochs,
                       epochs_run, test_pred, weights, biases, hist_list)


TRAINERS: dict[str, Callable[..., TrainOutput]] = {"batched": train_batched, "sequential": train_sequential}


@dataclass
class ProbeRun:
    """One trained member of a probe, as exported: ``logits = ((x - mean) / std) @ weight + bias``.

    weight [D, C], bias [C]: the restored (best-validation) weights in standardised feature space;
    mean / std [D] float64: the training statistics of its fold (or of the train split).
    valid_accuracy / test_accuracy: fractions in [0, 1] of this member (one seed, one fold);
    fold: the held-out fold (None for split tasks); best_epoch: 1-based epoch of the restored weights.
    """

    fold: int | None
    seed: int
    lr: float
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    valid_accuracy: float
    test_accuracy: float
    n_test: int
    best_epoch: int


@dataclass
class ProbeResult:
    """Outcome of a linear probe on one task / feature set. Accuracies are fractions in [0, 1].

    accuracy / std: test accuracy mean and population std (ddof=0) over seeds at the chosen lr
        (fold tasks: each seed's accuracy is first averaged over folds).
    lr: the chosen learning rate (best mean validation accuracy over seeds and folds).
    valid_accuracy / test_accuracy: ``[len(lrs)][len(seeds)]`` grids (fold-averaged); the test grid is
        for transparency only, it never influences the choice.
    per_seed: test accuracy per seed at the chosen lr.
    per_fold: {fold id: [test accuracy per seed]} at the chosen lr (fold tasks only).
    valid_mean: mean validation accuracy over seeds (and folds) at the chosen lr: the number a layer
        choice may read without touching the test sets.
    per_fold_valid: {fold id: [validation accuracy per seed]} at the chosen lr (fold tasks only).
    runs: with ``linear_probe(..., keep_weights=True)``, every trained member at the chosen lr
        (one :class:`ProbeRun` per fold x seed); not part of :meth:`to_dict`. See :meth:`export_run`.
    epochs_run: mean epochs trained per member (early stopping), over lrs, seeds and folds.
    screening: the approximate screening options this probe ran with (None: the full protocol).
    """

    task: str
    accuracy: float
    std: float
    lr: float
    lrs: list
    seeds: list
    per_seed: list
    valid_accuracy: list
    test_accuracy: list
    per_fold: dict | None
    best_epoch: list
    num_classes: int
    dim: int
    method: str
    seconds: float
    config: dict
    valid_mean: float = float("nan")
    per_fold_valid: dict | None = None
    runs: list | None = field(default=None, repr=False, compare=False)
    epochs_run: float = float("nan")
    screening: dict | None = None

    def to_dict(self) -> dict:
        """Every field but ``runs`` (the weights), JSON-ready."""
        d = asdict(replace(self, runs=None))
        d.pop("runs")
        return d

    def export_run(self, fold: int | None = None, seed: int | None = None) -> ProbeRun:
        """The member a classifier is built from: at the chosen lr, of ``fold`` (fold tasks: required when
        several folds were held out) and ``seed`` (default: the seed with the best validation accuracy,
        ties to the earliest in ``seeds``; the test accuracy never takes part in the choice)."""
        if not self.runs:
            raise ValueError(f"{self.task}: this probe kept no weights; run linear_probe(..., keep_weights=True)")
        folds = list(dict.fromkeys(r.fold for r in self.runs))
        if fold is None:
            if len(folds) > 1:
                raise ValueError(f"{self.task}: the probe held out folds {folds} in turn, one classifier each; "
                                 "pick one with fold=N (CLI: --folds N)")
            fold = folds[0]
        elif int(fold) not in folds:
            raise ValueError(f"{self.task}: fold {fold} was not held out by this probe; its folds are {folds}"
                             if folds != [None] else f"{self.task}: a split task has no folds (fold={fold})")
        runs = [r for r in self.runs if r.fold == (None if fold is None else int(fold))]
        if seed is None:
            return max(runs, key=lambda r: r.valid_accuracy)  # max keeps the first of equal ones
        chosen = [r for r in runs if r.seed == int(seed)]
        if not chosen:
            raise ValueError(f"{self.task}: seed {seed} was not trained; the seeds are {[r.seed for r in runs]}")
        return chosen[0]


def _metric_accuracy(pred: np.ndarray, ref: np.ndarray, backend: str) -> float:
    if backend == "torch":
        return float((pred == ref).mean())
    from .metrics import compute_accuracy

    return compute_accuracy(pred, ref)


def probe_config(config: ProbeConfig | None = None, **overrides) -> ProbeConfig:
    """``config`` (default: the paper's protocol) with keyword overrides of its fields."""
    cfg = config or ProbeConfig()
    if overrides:
        unknown = set(overrides) - set(ProbeConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ProbeConfig fields {sorted(unknown)}")
        cfg = ProbeConfig(**{**{k: getattr(cfg, k) for k in ProbeConfig.__dataclass_fields__}, **overrides})
    return cfg


def linear_probe(task: TaskFeatures, config: ProbeConfig | None = None, method: str = "batched",
                 keep_weights: bool = False, **overrides) -> ProbeResult:
    """Run the linear evaluation protocol on `task` and return the test accuracy at the chosen lr.

    `method` is "batched" (default, all lr x seed members in one program) or "sequential"
    (reference). `keep_weights` keeps every member at the chosen lr (weights and standardisation) in
    ``result.runs`` for export as a classifier. Keyword overrides replace config fields, e.g.
    `linear_probe(t, max_epochs=20)`.
    """
    cfg = _trainer_config(method, config, overrides)
    result, _, _ = run_protocol(task, cfg, TRAINERS[method], method, keep_weights)
    return result


def linear_probe_stacked(tasks: Sequence[TaskFeatures], config: ProbeConfig | None = None, screening=None,
                         **overrides) -> list[ProbeResult]:
    """:func:`linear_probe` of several feature sets of one task (same clips and labels, equal widths, e.g.
    a model's layers) trained as one batched program; each result equals that feature set's probe alone
    (up to float rounding). ``screening``: a :class:`.screening.Screening` (approximate options)."""
    cfg = _trainer_config("batched", config, overrides)
    return [r for r, _, _ in run_protocol_stacked(list(tasks), cfg, train_batched, "batched", screening=screening)]


def _trainer_config(method: str, config: ProbeConfig | None, overrides: dict) -> ProbeConfig:
    if method not in TRAINERS:
        raise ValueError(f"method must be one of {sorted(TRAINERS)}, got {method!r}")
    cfg = probe_config(config, **overrides)
    if method == "sequential" and cfg.precision != "fp32":
        raise ValueError(f"the sequential reference trainer runs in fp32 only, not precision {cfg.precision!r}")
    return cfg


def run_protocol(task: TaskFeatures, cfg: ProbeConfig, trainer: Callable[..., TrainOutput], method: str,
                 keep_weights: bool = False, screening=None) -> tuple[ProbeResult, list[TrainOutput], int]:
    """The protocol around one trainer: standardise each fold problem with its training statistics,
    train every (lr, seed) member, choose the lr on mean validation accuracy, report test accuracy.

    ``trainer`` has :func:`train_batched`'s signature; ``screening``: a :class:`.screening.Screening`
    (approximate, layer-wise study only). Returns (result, one TrainOutput per fold, index of the chosen
    lr) so that a caller can read more from the outputs at the chosen lr.
    """
    return run_protocol_stacked([task], cfg, trainer, method, keep_weights, screening)[0]


def run_protocol_stacked(tasks: Sequence[TaskFeatures], cfg: ProbeConfig, trainer: Callable[..., TrainOutput],
                         method: str, keep_weights: bool = False, screening=None) -> list[tuple[ProbeResult, list, int]]:
    """:func:`run_protocol` for several feature sets of one task (the same clips, labels, splits or folds,
    e.g. its layers), trained as one stacked program when there are several (their widths must agree);
    each result equals its feature set's :func:`run_protocol` alone."""
    t0 = time.perf_counter()
    G = len(tasks)
    if G > 1 and len({t.dim for t in tasks}) > 1:
        raise ValueError(f"{tasks[0].name}: stacked feature sets must have one width, got {[t.dim for t in tasks]}")
    extra = {}
    if cfg.precision != "fp32":
        extra["precision"] = cfg.precision
    if screening is not None and screening.halving_epochs:
        extra["halving_epochs"] = screening.halving_epochs
    outputs, stats = [[] for _ in tasks], [[] for _ in tasks]
    fold_ids, tests = [], []
    for problems in zip(*(fold_problems(t, cfg.valid_fraction, cfg.split_seed) for t in tasks)):
        fold_id, (_, ytr), (_, yva), (_, yte) = problems[0]
        for other in problems[1:]:
            if not all(np.array_equal(a[1], b[1]) for a, b in zip(problems[0][1:], other[1:])):
                raise ValueError(f"{tasks[0].name}: stacked feature sets disagree on the labels of fold {fold_id}; "
                                 "only feature sets of the same clips can be trained together")
        if len(yva) == 0:
            raise ValueError(f"{tasks[0].name}: empty validation set for fold {fold_id}")
        rows = None if screening is None else screening.train_rows(ytr)
        sets = []
        for g, (_, (Xtr, _), (Xva, _), (Xte, _)) in enumerate(problems):
            Xtr = Xtr if rows is None else Xtr[rows]
            sets.append(standardise(Xtr, Xva, Xte, device=cfg.device, dtype=cfg.dtype))
            if keep_weights:
                stats[g].append(standardisation(Xtr))
        ytr = ytr if rows is None else ytr[rows]
        kwargs = dict(batch_size=cfg.batch_size, max_epochs=cfg.max_epochs, patience=cfg.patience,
                      device=cfg.device, dtype=cfg.dtype, **extra)
        if G == 1:
            (Xtr, Xva, Xte), = sets
            outs = [trainer(Xtr, ytr, Xva, yva, Xte, yte, tasks[0].num_classes, cfg.lrs, cfg.seeds, **kwargs)]
        else:
            Xtr, Xva, Xte = (torch.stack([s[k] for s in sets]) for k in range(3))
            del sets
            outs = trainer(Xtr, ytr, Xva, yva, Xte, yte, tasks[0].num_classes, cfg.lrs, cfg.seeds, **kwargs)
        for g, o in enumerate(outs):
            outputs[g].append(o)
        fold_ids.append(fold_id)
        tests.append(yte)
    seconds = (time.perf_counter() - t0) / G
    screened = None if screening is None else screening.to_dict()
    return [_protocol_result(t, cfg, outputs[g], fold_ids, tests, stats[g] if keep_weights else None, method, seconds,
                             screened) for g, t in enumerate(tasks)]


def _protocol_result(task: TaskFeatures, cfg: ProbeConfig, outputs: list, fold_ids: list, tests: list,
                     stats: list | None, method: str, seconds: float, screening: dict | None = None
                     ) -> tuple[ProbeResult, list, int]:
    """Choose the lr on mean validation accuracy over seeds (and folds) and report the test accuracy."""
    valid = np.mean([o.valid_acc for o in outputs], axis=0)  # [L, S], folds averaged
    test = np.mean([o.test_acc for o in outputs], axis=0)
    li = int(np.argmax(valid.mean(axis=1)))  # ties -> the smaller index (grid order)
    # reported numbers: recomputed from the stored predictions with the chosen metric backend
    fold_seed = np.array([[_metric_accuracy(o.test_pred[li, si], y, cfg.metric) for si in range(len(cfg.seeds))]
                          for o, y in zip(outputs, tests)])  # [F, S]
    per_seed = fold_seed.mean(axis=0)
    per_fold = None if fold_ids[0] is None else {str(f): fold_seed[k].tolist() for k, f in enumerate(fold_ids)}
    per_fold_valid = None if fold_ids[0] is None else {str(f): o.valid_acc[li].tolist()
                                                       for f, o in zip(fold_ids, outputs)}
    runs = None
    if stats is not None:
        runs = [ProbeRun(fold=f, seed=seed, lr=cfg.lrs[li], weight=o.weight[li, si].clone(), bias=o.bias[li, si].clone(),
                         mean=mean, std=std, valid_accuracy=float(o.valid_acc[li, si]),
                         test_accuracy=float(fold_seed[k, si]), n_test=o.n_test, best_epoch=int(o.best_epoch[li, si]))
                for k, (f, o, (mean, std)) in enumerate(zip(fold_ids, outputs, stats))
                for si, seed in enumerate(cfg.seeds)]
    result = ProbeResult(
        task=task.name, accuracy=float(per_seed.mean()), std=float(per_seed.std()), lr=cfg.lrs[li],
        lrs=list(cfg.lrs), seeds=list(cfg.seeds), per_seed=per_seed.tolist(),
        valid_accuracy=valid.tolist(), test_accuracy=test.tolist(), per_fold=per_fold,
        best_epoch=np.mean([o.best_epoch for o in outputs], axis=0)[li].tolist(),
        num_classes=task.num_classes, dim=task.dim, method=method,
        seconds=seconds, config=cfg.to_dict(),
        valid_mean=float(valid.mean(axis=1)[li]), per_fold_valid=per_fold_valid, runs=runs,
        epochs_run=float(np.mean([o.epochs_run.mean() for o in outputs])), screening=screening,
    )
    return result, outputs, li
