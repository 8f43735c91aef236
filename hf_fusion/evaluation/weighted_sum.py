"""Learned weighted layer sum: the baseline of transformers' ``use_weighted_layer_sum`` and s3prl's Featurizer.

Model: ``logits = (sum_l softmax(a)_l * x_l) @ W + b`` over the standardised Eq.3 vectors ``x_l [D]`` of
L layers of equal width, with L logits ``a`` (initialised to 0) and one linear layer, trained jointly
under exactly the linear probe's protocol (:func:`.probe.run_protocol`). With one layer it is the
linear probe. See docs/evaluation.md, "Baseline row".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..protocol import PROBE_BATCH_SIZE, PROBE_MAX_EPOCHS, PROBE_PATIENCE
from .features import SPLITS, TaskFeatures
from .probe import (BatchedAdam, EarlyStopping, ProbeConfig, ProbeResult, TrainOutput, init_linear,
                    probe_config, run_protocol)


@dataclass
class WeightedSumOutput(TrainOutput):
    """TrainOutput of :func:`train_weighted_sum`; ``weight`` [lr, S, D, C] is the Linear layer and
    ``layer_weights`` [lr, S, L] the softmax-normalised layer weights of the restored members."""

    layer_weights: np.ndarray | None = None


@dataclass
class WeightedSumResult(ProbeResult):
    """:class:`.probe.ProbeResult` of the weighted layer sum (``dim`` = the per-layer width D).

    layers: the summed layers, in order; layer_weights: ``[L]`` softmax weights at the chosen lr, mean over
    seeds (and folds; sums to 1); layer_weights_per_seed: ``[S][L]`` (fold-averaged).
    """

    layers: list = field(default_factory=list)
    layer_weights: list = field(default_factory=list)
    layer_weights_per_seed: list = field(default_factory=list)

    def weights_by_layer(self) -> dict:
        """{layer: mean softmax weight}."""
        return dict(zip(self.layers, self.layer_weights))


def layer_widths(per_layer: Mapping[object, TaskFeatures]) -> dict:
    """{layer: feature width D} of each feature set."""
    return {layer: feats.dim for layer, feats in per_layer.items()}


def check_equal_widths(per_layer: Mapping[object, TaskFeatures], where: str = "task") -> int:
    """The common width D of the layers; ValueError naming each width when they differ."""
    widths = layer_widths(per_layer)
    if not widths:
        raise ValueError(f"{where}: the weighted layer sum needs at least one layer")
    if len(set(widths.values())) != 1:
        raise ValueError(f"{where}: the weighted layer sum needs layers of equal width, got widths {widths} "
                         "(e.g. CREPE's, VGGish's and CNN14's layers differ; AST and hf: encoder layers are equal)")
    return next(iter(widths.values()))


def stack_layers(per_layer: Mapping[object, TaskFeatures]) -> TaskFeatures:
    """One TaskFeatures whose rows are the L layers' vectors concatenated in the given order, [n, L*D]
    (viewed [n, L, D] by the trainer). Every layer must hold the same task: widths, labels, splits or folds."""
    layers = list(per_layer)
    first = per_layer[layers[0]]
    D = check_equal_widths(per_layer, first.name)
    for layer in layers[1:]:
        other = per_layer[layer]
        same = other.num_classes == first.num_classes and other.is_fold_task == first.is_fold_task
        if same and first.splits is not None:
            same = all(np.array_equal(other.splits[s][1], first.splits[s][1]) for s in SPLITS)
        elif same:
            same = (np.array_equal(other.folds[1], first.folds[1]) and np.array_equal(other.folds[2], first.folds[2])
                    and other.test_folds == first.test_folds)
        if not same:
            raise ValueError(f"{first.name}: layer {layer!r} does not hold the same clips, labels and splits/folds as "
                             f"layer {layers[0]!r}; the weighted layer sum stacks the layers of one task")
    cat = lambda arrays: np.concatenate(arrays, axis=1)  # noqa: E731
    meta = {**first.meta, "layers": layers, "layer_width": D}
    if first.splits is not None:
        splits = {s: (cat([per_layer[l].splits[s][0] for l in layers]), first.splits[s][1]) for s in SPLITS}
        return TaskFeatures(num_classes=first.num_classes, splits=splits, name=first.name, meta=meta)
    X = cat([per_layer[l].folds[0] for l in layers])
    train_X = None
    if any(per_layer[l].train_X is not None for l in layers):
        train_X = cat([per_layer[l].folds[0] if per_layer[l].train_X is None else per_layer[l].train_X for l in layers])
    return TaskFeatures(num_classes=first.num_classes, folds=(X, first.folds[1], first.folds[2]), name=first.name,
                        meta=meta, train_X=train_X, test_folds=first.test_folds)


def _member_logits(X: torch.Tensor, w: torch.Tensor, W: torch.Tensor, b: torch.Tensor, chunk_elems: int = 1 << 24):
    """Yield (rows, logits [S, Lc, r, C]) of X [n, L, D] for layer weights w [S, Lc, L], W [S, Lc, C, D], b [S, Lc, C]."""
    S, Lc, C, D = W.shape
    rows = max(1, chunk_elems // (S * Lc * D))
    for start in range(0, X.shape[0], rows):
        sl = slice(start, min(X.shape[0], start + rows))
        z = torch.einsum("srl,nld->srnd", w, X[sl])
        yield sl, torch.matmul(z, W.transpose(-1, -2)).add_(b.unsqueeze(2))


def train_weighted_sum(Xtr, ytr, Xva, yva, Xte, yte, num_classes: int, lrs: Sequence[float], seeds: Sequence[int],
                       batch_size: int = PROBE_BATCH_SIZE, max_epochs: int = PROBE_MAX_EPOCHS, patience: int = PROBE_PATIENCE, device="cpu",
                       dtype=torch.float32, record_history: bool = False, num_layers: int = 1) -> WeightedSumOutput:
    """Train len(lrs) x len(seeds) weighted-sum probes as one tensor program (the probe's trainer signature).

    X [n, L*D] are the standardised stacked layers (:func:`stack_layers`), viewed [n, L, D]; members are
    stacked [S, Lc, ...] as in :func:`.probe.train_batched` (layer logits [S, Lc, L], W^T [S, Lc, C, D],
    b [S, Lc, C]); gradients are closed-form: with g = (softmax(logits) - onehot) / B,
    dW = g^T z, db = sum g, and for the layer weights w = softmax(a): dw_l = <g W, x_l>, da = w * (dw - <w, dw>).
    """
    device = torch.device(device)
    L = int(num_layers)
    Xtr, Xva, Xte = (torch.as_tensor(x).to(device=device, dtype=dtype) for x in (Xtr, Xva, Xte))
    ytr, yva, yte = (torch.as_tensor(y).to(device=device, dtype=torch.long) for y in (ytr, yva, yte))
    n, LD = Xtr.shape
    if L < 1 or LD % L:
        raise ValueError(f"train_weighted_sum: feature width {LD} is not num_layers={L} layers of equal width")
    D = LD // L
    Xtr, Xva, Xte = (x.view(x.shape[0], L, D) for x in (Xtr, Xva, Xte))
    C, S, R = int(num_classes), len(seeds), len(lrs)

    A = torch.zeros(S, R, L, dtype=dtype, device=device)  # layer logits: equal weights at the start
    W = torch.empty(S, R, C, D, dtype=dtype, device=device)
    b = torch.empty(S, R, C, dtype=dtype, device=device)
    gens = []
    for si, seed in enumerate(seeds):
        W0, b0, g = init_linear(D, C, seed, dtype)  # the linear probe's initial weights and minibatch order
        W[si] = W0.t().to(device)[None]
        b[si] = b0.to(device)[None, :]
        gens.append(g)
    adam = BatchedAdam([A, W, b], torch.tensor(lrs, dtype=torch.float64, device=device))
    stopper = EarlyStopping([A, W, b], patience, yva.shape[0])
    history = []
    for epoch in range(1, max_epochs + 1):
        A, W, b = adam.params
        Rc = W.shape[1]
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # [S, n]
        onehot = F.one_hot(ytr[perms], C).to(dtype).unsqueeze(1)  # [S, 1, n, C]
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            idx = perms[:, sl]
            B = idx.shape[1]
            xb = Xtr.index_select(0, idx.reshape(-1)).view(S, B, L, D)
            w = torch.softmax(A, dim=-1)  # [S, Rc, L]
            z = torch.einsum("srl,sbld->srbd", w, xb)  # [S, Rc, B, D]
            logits = torch.matmul(z, W.transpose(-1, -2)).add_(b.unsqueeze(2))  # [S, Rc, B, C]
            grad = torch.softmax(logits, dim=-1).sub_(onehot[:, :, sl]).div_(B)
            gW = torch.matmul(grad.transpose(-1, -2), z)  # [S, Rc, C, D]
            gb = grad.sum(2)
            gw = torch.einsum("srbd,sbld->srl", torch.matmul(grad, W), xb)
            gA = w * (gw - (w * gw).sum(-1, keepdim=True))
            adam.step([gA, gW, gb])
        correct_c = torch.zeros(S, Rc, dtype=torch.long, device=device)
        w = torch.softmax(A, dim=-1)
        for vs, lg in _member_logits(Xva, w, W, b):
            correct_c += (lg.argmax(-1) == yva[vs]).sum(-1)
        if stopper.end_epoch(epoch, correct_c, adam, history if record_history else None):
            break
    best_A, best_W, best_b = stopper.finish()
    best_w = torch.softmax(best_A, dim=-1)
    test_pred = torch.empty(S, R, Xte.shape[0], dtype=torch.long, device=device)
    for sl, lg in _member_logits(Xte, best_w, best_W, best_b):
        test_pred[:, :, sl] = lg.argmax(-1)
    tr = lambda t: t.transpose(0, 1).cpu().numpy()  # noqa: E731  [S, R, ...] -> [R, S, ...]
    return WeightedSumOutput(
        valid_correct=tr(stopper.best_correct), test_correct=tr((test_pred == yte).sum(-1)),
        n_valid=int(yva.shape[0]), n_test=int(yte.shape[0]),
        best_epoch=tr(stopper.best_epoch), epochs_run=tr(stopper.epochs_run), test_pred=tr(test_pred),
        weight=best_W.permute(1, 0, 3, 2).contiguous().cpu(), bias=best_b.transpose(0, 1).cpu(),
        valid_history=history, layer_weights=tr(best_w.double()),
    )


def weighted_sum_probe(per_layer: Mapping[object, TaskFeatures], config: ProbeConfig | None = None,
                       **overrides) -> WeightedSumResult:
    """Probe the learned weighted sum of the layers in ``per_layer`` ({layer: TaskFeatures of one task},
    equal widths) under the linear probe's protocol. Keyword overrides replace config fields."""
    layers = list(per_layer)
    task = stack_layers(per_layer)
    trainer = partial(train_weighted_sum, num_layers=len(layers))
    result, outputs, li = run_protocol(task, probe_config(config, **overrides), trainer, "weighted-sum")
    per_seed = np.mean([o.layer_weights[li] for o in outputs], axis=0)  # [S, L], folds averaged
    fields = {k: getattr(result, k) for k in ProbeResult.__dataclass_fields__}
    fields["dim"] = task.meta["layer_width"]
    return WeightedSumResult(**fields, layers=layers, layer_weights=per_seed.mean(axis=0).tolist(),
                             layer_weights_per_seed=per_seed.tolist())
