"""The probe's exact speed-ups (fused Adam, stacked feature sets) and its approximate options
(matmul precision, screening): exact ones equal the reference, approximate ones do what they say."""

import numpy as np
import pytest
import torch

from hf_fusion.evaluation import (BatchedAdam, EarlyStopping, LayerwiseStudy, ProbeConfig, Screening, TaskFeatures,
                                  linear_probe, linear_probe_stacked, round_to_tf32, run_layerwise_study,
                                  standardise, train_batched, train_sequential)
from hf_fusion.protocol import PROBE_PRECISIONS


def blobs(n, C, D, sep, seed, centers_seed=7):
    centers = np.random.default_rng(centers_seed).normal(size=(C, D)) * sep
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    return (centers[y] + rng.normal(size=(n, D))).astype(np.float32), y.astype(np.int64)


def layers_of_one_task(G=3, C=5, D=12, n=(240, 80, 80)):
    """G feature sets of the same clips (same labels), each with its own class signal."""
    out = []
    for g in range(G):
        splits = [blobs(k, C, D, 0.4 + 0.3 * g, seed, centers_seed=10 + g) for k, seed in zip(n, (1, 2, 3))]
        out.append(TaskFeatures.from_splits(*splits, num_classes=C, name="task"))
    return out


FAST = dict(lrs=(1e-4, 1e-3, 1e-2), seeds=(0, 1), max_epochs=12, patience=3, metric="torch", batch_size=64)


def test_fused_adam_matches_foreach_and_torch_adam():
    torch.manual_seed(0)
    W0, b0 = torch.randn(2, 3, 4, 5, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    lrs = torch.tensor([1e-3, 1e-2, 3e-2], dtype=torch.float64)
    grads = [(torch.randn_like(W0), torch.randn_like(b0)) for _ in range(25)]
    fused, foreach = BatchedAdam([W0.clone(), b0.clone()], lrs, fused=True), BatchedAdam([W0.clone(), b0.clone()], lrs, fused=False)
    for gW, gb in grads:
        fused.step([gW, gb])
        foreach.step([gW, gb])
    assert fused.fused and not foreach.fused
    for a, b in zip(fused.params, foreach.params):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # member (seed 1, lr column 2) against torch.optim.Adam alone
    p = torch.nn.Parameter(W0[1, 2].clone())
    opt = torch.optim.Adam([p], lr=3e-2)
    for gW, _ in grads:
        p.grad = gW[1, 2].clone()
        opt.step()
    torch.testing.assert_close(fused.params[0][1, 2], p.detach(), rtol=1e-12, atol=1e-12)
    # dropping lr columns keeps the survivors' state: both keep stepping identically
    fused.keep(torch.tensor([0, 2]))
    foreach.keep(torch.tensor([0, 2]))
    for gW, gb in grads[:5]:
        fused.step([gW[:, [0, 2]].contiguous(), gb[:, [0, 2]].contiguous()])
        foreach.step([gW[:, [0, 2]].contiguous(), gb[:, [0, 2]].contiguous()])
    torch.testing.assert_close(fused.params[0], foreach.params[0], rtol=1e-12, atol=1e-12)


def test_stacked_feature_sets_equal_each_alone():
    tasks = layers_of_one_task()
    probs = [standardise(t.splits["train"][0], t.splits["valid"][0], t.splits["test"][0], dtype=torch.float64) for t in tasks]
    (_, ytr), (_, yva), (_, yte) = (tasks[0].splits[k] for k in ("train", "valid", "test"))
    kw = dict(num_classes=5, lrs=(1e-4, 1e-3, 3e-2), seeds=(0, 1), max_epochs=30, patience=3, dtype=torch.float64,
              batch_size=64, record_history=True)
    X = [torch.stack([p[k] for p in probs]) for k in range(3)]
    stacked = train_batched(X[0], ytr, X[1], yva, X[2], yte, **kw)
    assert isinstance(stacked, list) and len(stacked) == 3
    stop_epochs = set()
    for g, p in enumerate(probs):
        alone = train_batched(p[0], ytr, p[1], yva, p[2], yte, **kw)
        s = stacked[g]
        assert np.array_equal(s.valid_correct, alone.valid_correct) and np.array_equal(s.test_pred, alone.test_pred)
        assert np.array_equal(s.best_epoch, alone.best_epoch) and np.array_equal(s.epochs_run, alone.epochs_run)
        torch.testing.assert_close(s.weight, alone.weight, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(np.array(s.valid_history), np.array(alone.valid_history))
        stop_epochs |= set(alone.epochs_run.max(1).tolist())
    assert len(stop_epochs) > 1  # the feature sets stop at different epochs inside one program


def test_stacked_study_equals_layer_by_layer_and_refuses_mixed_labels():
    tasks = layers_of_one_task()
    features = {"task": {l + 1: t for l, t in enumerate(tasks)}}
    one = run_layerwise_study(features, ProbeConfig(**FAST), progress=False)
    three = run_layerwise_study(features, ProbeConfig(**FAST, stack_layers=3), progress=False)
    assert one.rows == three.rows
    other = TaskFeatures.from_splits(blobs(240, 5, 12, 1.0, 9), tasks[0].splits["valid"], tasks[0].splits["test"],
                                     num_classes=5, name="task")
    with pytest.raises(ValueError, match="disagree on the labels"):
        linear_probe_stacked([tasks[0], other], ProbeConfig(**FAST))


def test_round_to_tf32_is_nearest_even_on_10_mantissa_bits():
    x = torch.tensor([1.0, 1 + 2 ** -10, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, -3.14159, 1e-30])
    r = round_to_tf32(x)
    assert r[0] == 1.0 and r[1] == 1 + 2 ** -10  # representable: unchanged
    assert r[2] == 1.0  # a tie rounds to the even mantissa
    assert r[3] == 1 + 2 ** -9  # a tie above an odd mantissa rounds up
    assert r[4] == 1 + 2 ** -10  # just above a tie rounds up
    bits = r.view(torch.int32)
    assert torch.all(bits & 0x1FFF == 0)  # 13 low mantissa bits cleared
    assert torch.equal(round_to_tf32(r), r)
    assert torch.all((r - x).abs() <= x.abs() * 2 ** -11)


@pytest.mark.parametrize("precision", [p for p in PROBE_PRECISIONS if p != "fp32"])
def test_low_precision_probe_close_to_fp32(precision):
    t = TaskFeatures.from_splits(blobs(400, 6, 16, 0.8, 1), blobs(120, 6, 16, 0.8, 2), blobs(120, 6, 16, 0.8, 3),
                                 num_classes=6)
    ref = linear_probe(t, **FAST)
    low = linear_probe(t, **FAST, precision=precision)
    assert low.config["precision"] == precision
    assert abs(low.accuracy - ref.accuracy) < 0.03
    np.testing.assert_allclose(low.valid_accuracy, ref.valid_accuracy, atol=0.03)
    assert low.valid_accuracy != ref.valid_accuracy or low.test_accuracy != ref.test_accuracy or precision == "tf32"


def test_probe_options_refuse_bad_values():
    with pytest.raises(ValueError, match="precision must be one of"):
        ProbeConfig(precision="fp8")
    with pytest.raises(ValueError, match="float32 weights"):
        ProbeConfig(precision="bf16", dtype=torch.float64)
    with pytest.raises(ValueError, match="sequential reference trainer runs in fp32"):
        linear_probe(layers_of_one_task(G=1)[0], method="sequential", precision="bf16", **FAST)
    with pytest.raises(ValueError, match="stack_layers"):
        ProbeConfig(stack_layers=0)
    with pytest.raises(ValueError, match="Screening.seeds"):
        Screening(seeds=0)
    with pytest.raises(ValueError, match="screening runs on the batched trainer"):
        run_layerwise_study({"task": {1: layers_of_one_task(G=1)[0]}}, ProbeConfig(**FAST), method="sequential",
                            progress=False, screening=Screening(seeds=1))


def test_screening_subsample_is_stratified_and_seeded():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    s = Screening(max_train=40)
    rows = s.train_rows(y)
    assert len(rows) == 40 and np.all(np.diff(rows) > 0)
    counts = np.bincount(y[rows], minlength=4)
    assert counts.tolist() == [20, 12, 6, 2]  # 40% of every class
    assert np.array_equal(rows, Screening(max_train=40).train_rows(y))
    assert not np.array_equal(rows, Screening(max_train=40, seed=1).train_rows(y))
    assert Screening(max_train=100).train_rows(y) is None  # nothing to drop
    assert np.bincount(y[Screening(max_train=7).train_rows(y)], minlength=4).min() == 1  # every class kept


def test_screening_seeds_and_halving_schedule():
    t = layers_of_one_task(G=1)[0]
    cfg = ProbeConfig(**{**FAST, "lrs": (1e-5, 1e-4, 1e-3, 1e-2), "max_epochs": 40, "patience": 40})
    full = linear_probe(t, cfg)
    study = run_layerwise_study({"task": {1: t}}, cfg, progress=False, screening=Screening(seeds=1, halving_epochs=5))
    res = study.results[("task", 1)]
    assert res.seeds == [0] and res.screening == {"seeds": 1, "halving_epochs": 5, "max_train": None, "seed": 0}
    # halving: 4 lrs -> 2 after epoch 5 -> 1 after epoch 10; the survivor trains on, as in the full grid
    S, L = 1, 4
    W = torch.zeros(S, L, 2)
    stop = EarlyStopping([W], patience=100, n_valid=10, halving_epochs=5)
    params = [W]
    for epoch in range(1, 13):
        correct = torch.tensor([[1, 2, 4, 3]])[:, stop.cols.tolist()]  # column 2 best, then 3
        keep = stop.observe(epoch, correct, params)
        if keep is not None:
            params = [p[:, keep] for p in params]
        live = stop.cols.tolist()
        assert live == ([0, 1, 2, 3] if epoch < 5 else [2, 3] if epoch < 10 else [2])
    assert stop.epochs_run.tolist() == [[5, 5, 12, 10]]
    # the screened probe's surviving lr column equals the full protocol's member for member
    halved = run_layerwise_study({"task": {1: t}}, cfg, progress=False, screening=Screening(halving_epochs=5))
    r = halved.results[("task", 1)]
    li = r.lrs.index(r.lr)
    assert r.valid_accuracy[li] == full.valid_accuracy[li] and r.test_accuracy[li] == full.test_accuracy[li]
    assert r.epochs_run < full.epochs_run


def test_screening_recorded_in_study_json(tmp_path):
    t = layers_of_one_task(G=2)
    study = run_layerwise_study({"task": {1: t[0], 2: t[1]}}, ProbeConfig(**FAST), progress=False,
                                screening=Screening(max_train=100))
    assert study.screening["max_train"] == 100
    back = LayerwiseStudy.from_json(study.to_json(tmp_path / "layerwise.json"))
    assert back.screening == study.screening and back.rows == study.rows
    full = run_layerwise_study({"task": {1: t[0]}}, ProbeConfig(**FAST), progress=False, screening=Screening())
    assert full.screening is None  # no option on = the full protocol


def test_sequential_unchanged_reference_for_the_batched_trainer():
    """The batched trainer (fused Adam, transposed logits, buffers) against the plain reference, float32."""
    t = layers_of_one_task(G=1)[0]
    (Xtr, ytr), (Xva, yva), (Xte, yte) = (t.splits[k] for k in ("train", "valid", "test"))
    Xtr, Xva, Xte = standardise(Xtr, Xva, Xte)
    kw = dict(num_classes=5, lrs=(1e-4, 1e-2), seeds=(0, 1), max_epochs=10, patience=100, batch_size=64)
    b, s = train_batched(Xtr, ytr, Xva, yva, Xte, yte, **kw), train_sequential(Xtr, ytr, Xva, yva, Xte, yte, **kw)
    torch.testing.assert_close(b.weight, s.weight, rtol=1e-4, atol=1e-5)
    assert np.array_equal(b.epochs_run, s.epochs_run)


def test_cuda_tf32_context_restores_the_matmul_precision():
    from hf_fusion.evaluation.probe import MatmulPrecision

    before = torch.get_float32_matmul_precision()
    cuda = MatmulPrecision("tf32", torch.device("cuda"), torch.float32)  # built without a GPU: only the switch
    assert not cuda.emulate_tf32 and cuda.features(torch.ones(2)).dtype == torch.float32
    with cuda.context():
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before
    assert MatmulPrecision("tf32", torch.device("cpu"), torch.float32).emulate_tf32
