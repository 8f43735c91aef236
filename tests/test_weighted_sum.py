"""Learned weighted layer sum (transformers' use_weighted_layer_sum, s3prl's Featurizer) as a study baseline row."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_fusion.evaluation import (WEIGHTED_SUM_LAYER, LayerwiseStudy, ProbeConfig, TaskFeatures, choose_layers,
                                  init_linear, linear_probe, run_layerwise_study, stack_layers, train_weighted_sum,
                                  weighted_sum_probe, write_study)

FAST = dict(lrs=(1e-3, 1e-2), max_epochs=100, patience=20)


def _layers(n, D, C, L, signal, noise, seed=0, all_signal=False):
    """{layer: TaskFeatures} of one task: 60/20/20 splits; layer ``signal`` (or every layer when
    ``all_signal``) is class centres + noise, the others pure noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    centres = rng.normal(size=(C, D))
    a, b = int(0.6 * n), int(0.8 * n)
    out = {}
    for layer in range(1, L + 1):
        carries = all_signal or layer == signal
        X = centres[y] + noise * rng.normal(size=(n, D)) if carries else rng.normal(size=(n, D))
        out[layer] = TaskFeatures.from_splits((X[:a], y[:a]), (X[a:b], y[a:b]), (X[b:], y[b:]), C, name="syn")
    return out


def test_weights_concentrate_on_the_layer_that_carries_the_signal():
    layers = _layers(3000, 8, 3, 4, signal=2, noise=1.5)
    res = weighted_sum_probe(layers, **FAST)
    probe = linear_probe(layers[2], **FAST)
    w = res.weights_by_layer()
    assert res.layers == [1, 2, 3, 4] and math.isclose(sum(res.layer_weights), 1.0, rel_tol=1e-6)
    assert max(w, key=w.get) == 2 and w[2] > 0.6 and all(w[l] < 0.15 for l in (1, 3, 4))
    assert all(max(range(4), key=lambda i: ws[i]) == 1 for ws in res.layer_weights_per_seed)  # every seed
    # the single layer is the sum's limit (w -> one-hot, never reached with the probe's lr grid and early
    # stopping): over data seeds the two differ by -1.3..+1.1 points on 600 test clips (one standard error
    # is 1.8 points), far above the noise layers (chance = 1/3)
    assert res.accuracy >= probe.accuracy - 0.02 and res.accuracy > 0.6
    assert res.dim == 8 and res.method == "weighted-sum" and res.lr in FAST["lrs"]
    assert 0 < res.valid_mean <= 1 and len(res.per_seed) == 3


def test_summing_layers_with_independent_noise_beats_every_single_layer():
    layers = _layers(1500, 8, 3, 4, signal=None, noise=2.5, all_signal=True)
    res = weighted_sum_probe(layers, **FAST)
    best_single = max(linear_probe(t, **FAST).accuracy for t in layers.values())
    assert res.accuracy > best_single + 0.05
    assert all(0.1 < w < 0.4 for w in res.layer_weights)  # no layer is preferred


def test_one_layer_is_exactly_the_linear_probe():
    """Same initial weights, minibatch order, Adam and early stopping: softmax of one logit is 1."""
    layers = _layers(400, 6, 3, 1, signal=1, noise=1.0)
    cfg = ProbeConfig(lrs=(1e-4, 1e-3, 1e-2), max_epochs=40, patience=5, dtype=torch.float64)
    res, probe = weighted_sum_probe(layers, cfg), linear_probe(layers[1], cfg)
    assert res.valid_accuracy == probe.valid_accuracy and res.test_accuracy == probe.test_accuracy
    assert res.best_epoch == probe.best_epoch and res.lr == probe.lr and res.layer_weights == [1.0]


def _reference(Xtr, ytr, Xva, yva, C, L, lr, seed, max_epochs, patience):
    """Plain PyTorch: softmax-weighted sum parameter + nn.Linear + torch.optim.Adam + autograd, one member."""
    n, D = Xtr.shape[0], Xtr.shape[1] // L
    Xtr, Xva = Xtr.view(n, L, D), Xva.view(-1, L, D)
    logits_w = torch.zeros(L, dtype=torch.float64, requires_grad=True)
    lin = torch.nn.Linear(D, C, dtype=torch.float64)
    W0, b0, g = init_linear(D, C, seed, torch.float64)
    with torch.no_grad():
        lin.weight.copy_(W0.t())
        lin.bias.copy_(b0)
    opt = torch.optim.Adam([logits_w, *lin.parameters()], lr=lr)
    forward = lambda X: lin(torch.einsum("l,nld->nd", torch.softmax(logits_w, 0), X))  # noqa: E731
    best, wait, state = -1, 0, None
    for epoch in range(1, max_epochs + 1):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, 50):
            idx = perm[s:s + 50]
            opt.zero_grad()
            F.cross_entropy(forward(Xtr[idx]), ytr[idx]).backward()
            opt.step()
        with torch.no_grad():
            correct = int((forward(Xva).argmax(-1) == yva).sum())
        if correct > best:
            best, wait, state = correct, 0, (epoch, torch.softmax(logits_w, 0).detach().clone(), lin.weight.detach().clone())
        else:
            wait += 1
            if wait >= patience:
                break
    return best, state


def test_batched_trainer_matches_a_plain_pytorch_reference():
    """Closed-form gradients + BatchedAdam + EarlyStopping vs autograd + torch.optim.Adam, member by member."""
    rng = np.random.default_rng(3)
    n, D, C, L = 300, 5, 3, 3
    y = torch.as_tensor(rng.integers(0, C, n))
    X = torch.as_tensor(rng.normal(size=(n, L * D)))
    X[:, D:2 * D] += 2 * torch.as_tensor(rng.normal(size=(C, D)))[y]  # layer 2 carries the labels
    Xtr, ytr, Xva, yva = X[:200], y[:200], X[200:], y[200:]
    lrs, seeds = (1e-3, 3e-2), (0, 4)
    out = train_weighted_sum(Xtr, ytr, Xva, yva, Xva, yva, C, lrs, seeds, batch_size=50, max_epochs=30, patience=6,
                             dtype=torch.float64, num_layers=L)
    for li, lr in enumerate(lrs):
        for si, seed in enumerate(seeds):
            best, (epoch, w, W) = _reference(Xtr, ytr, Xva, yva, C, L, lr, seed, 30, 6)
            assert out.valid_correct[li, si] == best and out.best_epoch[li, si] == epoch
            torch.testing.assert_close(torch.as_tensor(out.layer_weights[li, si]), w, rtol=1e-9, atol=1e-10)
            torch.testing.assert_close(out.weight[li, si], W.t(), rtol=1e-9, atol=1e-10)
    assert out.layer_weights[1].mean(0).argmax() == 1  # the faster lr has found layer 2


def test_unequal_widths_are_refused_before_any_probe():
    layers = _layers(60, 4, 2, 2, signal=1, noise=1.0)
    rng = np.random.default_rng(0)
    y = {s: layers[1].splits[s][1] for s in ("train", "valid", "test")}
    layers[3] = TaskFeatures(2, splits={s: (rng.normal(size=(len(y[s]), 6)), y[s]) for s in y}, name="syn")
    calls = []
    with pytest.raises(ValueError, match=r"task 'syn'.*equal width.*\{1: 4, 2: 4, 3: 6\}"):
        run_layerwise_study({"syn": layers}, ProbeConfig(max_epochs=2), progress=False, weighted_sum=True,
                            callback=lambda *a: calls.append(a))
    assert calls == []
    with pytest.raises(ValueError, match="equal width"):
        weighted_sum_probe(layers)
    other = _layers(60, 4, 2, 1, signal=1, noise=1.0, seed=5)[1]  # same widths, other labels
    with pytest.raises(ValueError, match="does not hold the same clips"):
        stack_layers({1: layers[1], 2: other})


def test_study_row_round_trips_and_is_never_chosen(tmp_path):
    split_task = _layers(300, 4, 3, 3, signal=3, noise=0.8)
    rng = np.random.default_rng(1)
    yf, fold = rng.integers(0, 2, 120), np.repeat([1, 2, 3], 40)
    centres = rng.normal(size=(2, 4))
    fold_task = {l: TaskFeatures(2, folds=(centres[yf] * (l == 1) + rng.normal(size=(120, 4)), yf, fold),
                                 train_X=rng.normal(size=(120, 4)) if l == 2 else None, name="f")
                 for l in (1, 2, 3)}
    cfg = ProbeConfig(lrs=(1e-2,), seeds=(0,), max_epochs=30, patience=5)
    study = run_layerwise_study({"s": split_task, "f": fold_task}, cfg, progress=False, weighted_sum=True)
    assert study.layers == [1, 2, 3, WEIGHTED_SUM_LAYER]
    assert [r["layer"] for r in study.rows] == [1, 2, 3, "wsum", 1, 2, 3, "wsum"]
    assert [r["fold"] for r in study.fold_rows if r["layer"] == "wsum"] == ["1", "2", "3"]
    wsum = study.results[("s", "wsum")]
    assert study.layer_weights["s"] == wsum.weights_by_layer() and list(study.layer_weights["f"]) == [1, 2, 3]
    assert max(study.layer_weights["s"], key=study.layer_weights["s"].get) == 3

    paths = write_study(study, tmp_path)
    back = LayerwiseStudy.from_csv(paths["csv"])
    assert back.rows == [{k: r[k] for k in back.rows[i]} for i, r in enumerate(study.rows)]
    assert [r["layer"] for r in back.fold_rows] == [r["layer"] for r in study.fold_rows]
    js = LayerwiseStudy.from_json(paths["json"])
    assert js.layer_weights == study.layer_weights and js.layers == study.layers
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a baseline row that beats every layer on every task still never becomes M or L
    for table in (back, {t: {**per, "wsum": 1.0} for t, per in back.matrix("valid").items()}):
        choice = choose_layers(table, use_paper_groups=False)
        assert "wsum" not in choice.layers and {choice.middle, choice.late} <= {1, 2, 3}
        assert "wsum" not in choice.middle_average and "wsum" not in choice.best_layer_per_task.values()
    from hf_fusion.hub.cards import read_layerwise

    assert {r["layer"] for r in read_layerwise(paths["csv"])} == {1, 2, 3}  # the card's table: layers only
    assert json.loads(paths["json"].read_text())["layer_weights"]["s"][0][0] == 1


def test_a_layer_may_not_be_called_wsum():
    layers = _layers(60, 4, 2, 1, signal=1, noise=1.0)
    with pytest.raises(ValueError, match="baseline row"):
        run_layerwise_study({"t": {**layers, "wsum": layers[1]}}, progress=False)


@pytest.mark.slow
def test_cli_layerwise_weighted_sum_on_a_tiny_ast(tmp_path, tiny_ast_model, capsys):
    """``hf-fusion layerwise --weighted-sum`` on a saved random tiny AST (12 layers of width 16), then
    ``select --study`` on its CSV; CREPE's layers differ in width and are refused before extraction."""
    from hf_fusion import FusedAudioFeatureExtractor
    from hf_fusion.app.cli import main
    from hf_fusion.tasks import build_synthetic_suite

    folder = tmp_path / "tiny-ast"
    tiny_ast_model.save_pretrained(folder)
    FusedAudioFeatureExtractor.from_fusion_config(tiny_ast_model.config).save_pretrained(folder)
    task = build_synthetic_suite(tmp_path / "tasks", seed=0, n_per_class=5, tasks=["synth_pitch"])[0]
    common = ["--task-dir", str(task), "--cache-dir", str(tmp_path / "cache")]
    fast = ["--lrs", "1e-2", "--seeds", "0", "--max-epochs", "20", "--patience", "5"]
    out = tmp_path / "study"
    assert main(["layerwise", "--model", str(folder), *common, "--out", str(out), "--weighted-sum", *fast]) == 0
    printed = capsys.readouterr().out
    study = LayerwiseStudy.from_csv(out / "layerwise.csv")
    assert study.layers == [*range(1, 13), "wsum"]
    row = next(r for r in study.rows if r["layer"] == "wsum")
    assert row["dim"] == 16 and 0 <= row["accuracy"] <= 1 and 0 <= row["valid_accuracy"] <= 1
    weights = LayerwiseStudy.from_json(out / "layerwise.json").layer_weights["synth_pitch"]
    assert list(weights) == list(range(1, 13)) and math.isclose(sum(weights.values()), 1.0, rel_tol=1e-6)
    assert " wsum " in printed and "wsum weights synth_pitch: 1:" in printed
    assert main(["select", "--study", str(out / "layerwise.csv"), "--out", str(tmp_path / "sel")]) == 0
    choice = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert {choice["middle"], choice["late"]} <= set(range(1, 13)) and "wsum" not in choice["layers"]

    assert main(["layerwise", "--model", "crepe-tiny", *common, "--out", str(tmp_path / "c"), "--weighted-sum"]) == 2
    err = capsys.readouterr()
    assert "differ in width" in err.err and "extracting" not in err.out
