"""Tests for hf_fusion.evaluation: probe (batched vs sequential), study, selection, metric, tables."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_fusion.evaluation import (LayerwiseStudy, LeaderboardEntry, ProbeConfig, TaskFeatures, append_entries,
                                  choose_layers, compute_accuracy, fused_table, init_linear, leaderboard_table,
                                  linear_probe, load_leaderboard, lr_grid, plot_heatmap, run_layerwise_study,
                                  standardise, stratified_valid_split, train_batched, train_sequential, write_study)
from hf_fusion.evaluation import leaderboard as lb_mod
from hf_fusion.evaluation.metrics import ACCURACY_PATH

REPO = Path(__file__).resolve().parents[1]


def blobs(n, C=4, D=8, sep=4.0, seed=0, centers=None):
    rng = np.random.default_rng(seed)
    if centers is None:
        centers = np.random.default_rng(1234).normal(size=(C, D)) * sep
    y = rng.integers(0, C, n)
    X = centers[y] + rng.normal(size=(n, D))
    return X.astype(np.float32), y.astype(np.int64)


def split_task(C=4, D=8, sep=4.0, n=(400, 100, 100), name="blobs"):
    return TaskFeatures.from_splits(blobs(n[0], C, D, sep, 1), blobs(n[1], C, D, sep, 2), blobs(n[2], C, D, sep, 3),
                                    num_classes=C, name=name)


FAST = dict(lrs=(1e-4, 1e-2), seeds=(0, 1), max_epochs=15, patience=5, metric="torch")


# ---------------------------------------------------------------- probe

def test_defaults_are_papers_protocol():
    c = ProbeConfig()
    assert (c.batch_size, c.max_epochs, c.patience, len(c.seeds)) == (200, 200, 20, 3)
    assert min(c.lrs) == 1e-5 and max(c.lrs) == 1e-2
    assert lr_grid(per_decade=2) == (1e-5, 3.16e-5, 1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2)
    with pytest.raises(ValueError, match="lrs"):
        ProbeConfig(lrs=(0.0,))
    with pytest.raises(ValueError, match="unknown"):
        linear_probe(split_task(), max_epoch=3)


def test_easy_blobs_high_accuracy():
    r = linear_probe(split_task(), **FAST)
    assert r.accuracy > 0.95
    assert r.lr == 1e-2 and len(r.per_seed) == 2 and r.std >= 0


def test_shuffled_labels_near_chance():
    C = 5
    X, y = blobs(1500, C=C, D=8, seed=5)
    y = np.random.default_rng(0).permutation(y)  # labels carry no information
    t = TaskFeatures.from_splits((X[:1000], y[:1000]), (X[1000:1250], y[1000:1250]), (X[1250:], y[1250:]), num_classes=C)
    r = linear_probe(t, **FAST)
    assert abs(r.accuracy - 1 / C) < 0.08


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_equals_sequential(dtype):
    C, D = 6, 16
    t = split_task(C=C, D=D, sep=0.6, n=(300, 100, 100))  # overlapping classes: non-trivial curves
    cfg = dict(lrs=(1e-4, 1e-3, 1e-2), seeds=(0, 3), max_epochs=15, patience=4, metric="torch", dtype=dtype,
               batch_size=64)
    b = linear_probe(t, method="batched", **cfg)
    s = linear_probe(t, method="sequential", **cfg)
    assert b.lr == s.lr
    if dtype == torch.float64:  # same arithmetic up to rounding -> identical decisions
        assert b.valid_accuracy == s.valid_accuracy and b.test_accuracy == s.test_accuracy
        assert b.best_epoch == s.best_epoch and b.accuracy == s.accuracy
    else:
        np.testing.assert_allclose(b.valid_accuracy, s.valid_accuracy, atol=0.02)
        np.testing.assert_allclose(b.test_accuracy, s.test_accuracy, atol=0.02)
        assert abs(b.accuracy - s.accuracy) < 0.02


def test_batched_weights_match_sequential_and_seed_semantics():
    (Xtr, ytr), (Xva, yva), (Xte, yte) = blobs(300, 3, 6, 1.0, 1), blobs(80, 3, 6, 1.0, 2), blobs(80, 3, 6, 1.0, 3)
    Xtr, Xva, Xte = standardise(Xtr, Xva, Xte, dtype=torch.float64)
    kw = dict(num_classes=3, lrs=(1e-3, 1e-2), seeds=(0, 1), max_epochs=6, patience=100, dtype=torch.float64)
    b = train_batched(Xtr, ytr, Xva, yva, Xte, yte, **kw)
    s = train_sequential(Xtr, ytr, Xva, yva, Xte, yte, **kw)
    torch.testing.assert_close(b.weight, s.weight, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(b.bias, s.bias, rtol=1e-9, atol=1e-12)
    # deterministic by seed; different seeds give different models
    b2 = train_batched(Xtr, ytr, Xva, yva, Xte, yte, **kw)
    assert torch.equal(b.weight, b2.weight)
    assert not torch.allclose(b.weight[:, 0], b.weight[:, 1])
    # member (lr, seed) trained alone equals the same member inside the grid
    alone = train_batched(Xtr, ytr, Xva, yva, Xte, yte, **{**kw, "lrs": (1e-2,), "seeds": (1,)})
    torch.testing.assert_close(alone.weight[0, 0], b.weight[1, 1], rtol=1e-9, atol=1e-12)
    # with early stopping, lr columns finish at different epochs (the batched trainer drops them)
    kw.update(lrs=(1e-5, 1e-3, 3e-2), max_epochs=40, patience=2)
    b = train_batched(Xtr, ytr, Xva, yva, Xte, yte, **kw)
    s = train_sequential(Xtr, ytr, Xva, yva, Xte, yte, **kw)
    assert len(set(b.epochs_run.max(1).tolist())) > 1
    assert np.array_equal(b.epochs_run, s.epochs_run) and np.array_equal(b.best_epoch, s.best_epoch)
    torch.testing.assert_close(b.weight, s.weight, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("trainer", [train_batched, train_sequential])
def test_early_stopping_restores_best_weights(trainer):
    """Validation labels = the initial model's predictions, training labels disagree with them:
    validation accuracy starts near 1 and falls as training proceeds, so the best epoch is early
    and the restored weights must be the early ones, not the final ones."""
    C, D, seed = 3, 6, 0
    rng = np.random.default_rng(0)
    W0, b0, _ = init_linear(D, C, seed, torch.float64)
    Xtr = torch.as_tensor(rng.normal(size=(600, D)))
    Xva = torch.as_tensor(rng.normal(size=(200, D)))
    init_pred = lambda X: (X @ W0 + b0).argmax(-1)  # noqa: E731
    ytr = (init_pred(Xtr) + 1) % C
    yva = init_pred(Xva)
    out = trainer(Xtr, ytr, Xva, yva, Xva, yva, C, lrs=(3e-3,), seeds=(seed,), max_epochs=200, patience=10,
                  dtype=torch.float64, record_history=True)
    hist = np.array([h[0, 0] for h in out.valid_history])
    best_epoch, run = int(out.best_epoch[0, 0]), int(out.epochs_run[0, 0])
    assert run == best_epoch + 10 < 200  # stopped by patience
    assert hist[best_epoch - 1] == hist.max() > hist[-1] + 0.1  # a real decline after the best epoch
    restored = (Xva @ out.weight[0, 0] + out.bias[0, 0]).argmax(-1)
    assert (restored == yva).double().mean().item() == pytest.approx(hist.max())
    assert out.valid_acc[0, 0] == pytest.approx(hist.max())
    assert out.test_acc[0, 0] == pytest.approx(hist.max())  # test set = valid set here


def test_lr_is_chosen_on_validation_not_test():
    """Test labels are permuted: the lr that learns (best on validation) is worst on test."""
    C = 4
    tr, va, te = blobs(400, C, 8, 4.0, 1), blobs(100, C, 8, 4.0, 2), blobs(100, C, 8, 4.0, 3)
    te = (te[0], (te[1] + 1) % C)
    t = TaskFeatures.from_splits(tr, va, te, num_classes=C)
    r = linear_probe(t, lrs=(1e-5, 1e-2), seeds=(0,), max_epochs=10, patience=5, metric="torch")
    valid, test = np.array(r.valid_accuracy)[:, 0], np.array(r.test_accuracy)[:, 0]
    assert valid[1] > valid[0] and test[0] > test[1]  # validation and test disagree
    assert r.lr == 1e-2 and r.accuracy == test[1]


def test_fold_task_averages_folds():
    C, D = 3, 8
    X, y = blobs(600, C, D, 4.0, 7)
    fold = np.arange(600) % 3
    bad = fold == 0
    y = y.copy()
    y[bad] = np.random.default_rng(1).permutation(y[bad])  # fold 0 has uninformative labels
    t = TaskFeatures.from_folds(X, y, fold, num_classes=C)
    r = linear_probe(t, **FAST)
    assert set(r.per_fold) == {"0", "1", "2"}
    per_fold = np.array([r.per_fold[k] for k in ("0", "1", "2")])  # [F, S]
    np.testing.assert_allclose(per_fold.mean(0), r.per_seed)
    assert r.accuracy == pytest.approx(per_fold.mean())
    assert per_fold[0].mean() < 0.5 and per_fold[1:].min() > 0.75  # training folds include fold 0's noise


def test_stratified_validation_split_has_every_class():
    y = np.array([0] * 50 + [1] * 7 + [2] * 2 + [3] * 1)
    m = stratified_valid_split(y, 0.1, seed=0)
    assert set(y[m]) == {0, 1, 2} and m[y == 0].sum() == 5
    assert set(y[~m]) == {0, 1, 2, 3}
    assert np.array_equal(m, stratified_valid_split(y, 0.1, seed=0))


def test_bad_input_errors():
    X, y = blobs(10)
    with pytest.raises(ValueError, match="labels must lie in"):
        TaskFeatures.from_splits((X, y), (X, y), (X, y), num_classes=2)
    with pytest.raises(ValueError, match="2-D"):
        TaskFeatures.from_splits((X[0], y), (X, y), (X, y), num_classes=4)
    with pytest.raises(ValueError, match="dimension differs"):
        TaskFeatures.from_splits((X, y), (X[:, :3], y), (X, y), num_classes=4)
    with pytest.raises(ValueError, match="exactly one"):
        TaskFeatures(num_classes=4)


# ---------------------------------------------------------------- metric

def test_metric_offline_matches_direct(tmp_path):
    code = (
        "import sys, json, numpy as np, evaluate\n"
        f"m = evaluate.load({str(ACCURACY_PATH)!r})\n"
        "rng = np.random.default_rng(0); p = rng.integers(0, 5, 300); r = rng.integers(0, 5, 300)\n"
        "print(json.dumps([m.compute(predictions=p, references=r)['accuracy'], float((p == r).mean())]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got, ref = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == ref and 0.1 < got < 0.3
    p = np.array([0, 1, 2, 2, 1])
    assert compute_accuracy(p, np.array([0, 1, 1, 2, 0])) == 0.6


def test_probe_metric_backends_agree():
    t = split_task(sep=0.8)
    a = linear_probe(t, **{**FAST, "metric": "evaluate"})
    b = linear_probe(t, **FAST)
    assert a.per_seed == b.per_seed


# ---------------------------------------------------------------- study

def test_study_csv_json_and_heatmap(tmp_path):
    feats = {}
    for task, C in (("taskA", 3), ("taskB", 4)):
        feats[task] = {layer: split_task(C=C, D=6, sep=0.5 * layer, n=(120, 40, 40), name=task) for layer in (1, 2, 3)}
    study = run_layerwise_study(feats, ProbeConfig(lrs=(1e-2,), seeds=(0,), max_epochs=4, metric="torch"),
                                progress=False)
    paths = write_study(study, tmp_path, groups={"middle": ["taskA"], "late": ["taskB"]})
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert header[:4] == ["layer", "task", "accuracy", "std"] and "lr" in header
    back = LayerwiseStudy.from_csv(paths["csv"])
    assert len(back.rows) == 6 and back.layers == [1, 2, 3] and back.tasks == ["taskA", "taskB"]
    assert all(0 <= r["accuracy"] <= 1 for r in back.rows)
    assert back.matrix()["taskB"][3] == pytest.approx(study.matrix()["taskB"][3])
    assert LayerwiseStudy.from_json(paths["json"]).matrix() == study.matrix()
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(png) < 2_000_000
    import matplotlib.image as mpimg

    h, w = mpimg.imread(paths["png"]).shape[:2]
    assert 200 < h < 3000 and 300 < w < 4000
    plot_heatmap(study, tmp_path / "t.png", layers_as_rows=False)
    assert (tmp_path / "t.png").stat().st_size > 5_000


# ---------------------------------------------------------------- selection

PAPER_LIKE = {
    # late tasks peak at 15, middle tasks at 10 (VGGish-like numbers)
    "esc50": {8: 0.60, 10: 0.70, 13: 0.75, 15: 0.80, 18: 0.78},
    "us8k": {8: 0.65, 10: 0.72, 13: 0.76, 15: 0.79, 18: 0.77},
    "gtzan": {8: 0.55, 10: 0.60, 13: 0.66, 15: 0.70, 18: 0.69},
    "spcv2": {8: 0.85, 10: 0.90, 13: 0.86, 15: 0.70, 18: 0.50},
    "cremad": {8: 0.55, 10: 0.58, 13: 0.57, 15: 0.54, 18: 0.50},
}


def test_selection_paper_rule():
    c = choose_layers(PAPER_LIKE)
    assert (c.middle, c.late, c.group_source, c.m_equals_l) == (10, 15, "paper", False)
    assert c.groups["late"] == ["esc50", "us8k", "gtzan"]
    assert c.late_average[15] == pytest.approx((0.80 + 0.79 + 0.70) / 3)
    assert c.middle_average[10] == pytest.approx((0.90 + 0.58) / 2)
    d = json.loads(c.to_json())
    assert d["middle"] == 10 and d["late_average"]["15"] == pytest.approx(0.7633333, abs=1e-6)
    assert c.name_suffix == "10-15"


def test_selection_m_equals_l_takes_second_best():
    table = {t: dict(v) for t, v in PAPER_LIKE.items()}
    table["spcv2"] = {8: 0.80, 10: 0.85, 13: 0.86, 15: 0.95, 18: 0.50}  # middle best at 15 too
    table["cremad"] = {8: 0.55, 10: 0.58, 13: 0.59, 15: 0.60, 18: 0.50}
    c = choose_layers(table)
    assert c.late == 15 and c.m_equals_l and c.middle == 13  # middle avgs: 15 -> .775, 13 -> .725, 10 -> .715


def test_selection_derived_groups_for_user_tasks():
    table = {
        "birds": {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.9},   # best at position 3
        "cars": {1: 0.4, 2: 0.5, 3: 0.8, 4: 0.85},   # 3
        "pitch": {1: 0.7, 2: 0.9, 3: 0.6, 4: 0.4},   # 1
        "speech": {1: 0.9, 2: 0.8, 3: 0.5, 4: 0.3},  # 0
    }
    c = choose_layers(table)
    assert c.group_source == "derived"  # span of best positions [0, 3], midpoint 1.5
    assert sorted(c.groups["late"]) == ["birds", "cars"] and sorted(c.groups["middle"]) == ["pitch", "speech"]
    assert c.late == 4 and c.middle == 2  # late avg at 4: .875; middle avgs: 1 -> .80, 2 -> .85
    assert c.middle_average[2] == pytest.approx(0.85) and c.middle_average[1] == pytest.approx(0.8)


def test_selection_user_groups_and_single_peak():
    c = choose_layers(PAPER_LIKE, late_tasks=["spcv2"])
    assert c.group_source == "user" and c.late == 10
    same = {"a": {1: 0.5, 2: 0.9, 3: 0.7}, "b": {1: 0.6, 2: 0.8, 3: 0.7}}
    c = choose_layers(same)
    assert c.group_source == "derived-single" and c.late == 2 and c.m_equals_l and c.middle == 3
    with pytest.raises(ValueError, match="not in the table"):
        choose_layers(PAPER_LIKE, late_tasks=["nope"])


def test_selection_derived_middle_choice_numbers():
    table = {"x": {1: 0.9, 2: 0.8, 3: 0.2, 4: 0.1}, "y": {1: 0.2, 2: 0.3, 3: 0.4, 4: 0.9},
             "z": {1: 0.6, 2: 0.9, 3: 0.3, 4: 0.2}}
    c = choose_layers(table)
    # best positions x:0 y:3 z:1 -> midpoint 1.5 -> late {y}, middle {x, z}
    assert c.groups == {"middle": ["x", "z"], "late": ["y"]}
    assert c.late == 4 and c.middle == 2  # middle avgs: 1 -> 0.75, 2 -> 0.85


# ---------------------------------------------------------------- tables and leaderboard

def test_fused_table_numbers():
    base = {"esc50": 0.80, "us8k": 0.70, "spcv2": 0.90}
    fus = {"esc50": 0.85, "us8k": 0.72, "spcv2": 0.88}
    t = fused_table(base, fus, "VGGish", "VGGish-Fusion#10#15")
    (_, b, ba), (_, f, fa), (name, d, da) = t.rows
    assert name == "difference"
    np.testing.assert_allclose(d, [0.05, 0.02, -0.02])
    assert ba == pytest.approx(0.8) and fa == pytest.approx(0.8166667, abs=1e-6) and da == pytest.approx(fa - ba)
    md = t.to_markdown()
    assert "| VGGish | 80.0 | 70.0 | 90.0 | 80.0 |" in md and "| difference | +5.0 | +2.0 | -2.0 | +1.7 |" in md
    rows = t.to_csv().splitlines()
    assert rows[0] == "name,esc50,us8k,spcv2,average" and rows[3].startswith("difference,")
    np.testing.assert_allclose([float(v) for v in rows[3].split(",")[1:]], [0.05, 0.02, -0.02, da])
    assert json.loads(t.to_json())["rows"][2]["average"] == pytest.approx(da)
    with pytest.raises(ValueError, match="without results"):
        fused_table(base, fus, tasks=["esc50", "gtzan"])


def _entry(model, task, acc, date="2026-01-01T00:00:00+00:00"):
    return LeaderboardEntry(model=model, task=task, accuracy=acc, std=0.01, lr=1e-3, seeds=[0, 1, 2],
                            layers=[10, 15], date=date)


def test_leaderboard_append_roundtrip_and_table(tmp_path):
    path = tmp_path / "lb" / "leaderboard.jsonl"
    append_entries(path, [_entry("vggish", "esc50", 0.80), _entry("vggish", "us8k", 0.70)])
    append_entries(path, _entry("fusion", "esc50", 0.86))
    append_entries(path, _entry("fusion", "esc50", 0.87, date="2026-02-01T00:00:00+00:00"))  # newer run wins
    rows = load_leaderboard(path)
    assert [r.accuracy for r in rows] == [0.80, 0.70, 0.86, 0.87]
    from importlib.metadata import version

    assert rows[0].versions["torch"] == version("torch") and rows[0].date == "2026-01-01T00:00:00+00:00"
    assert rows[0] == _entry("vggish", "esc50", 0.80).__class__(**rows[0].to_dict())
    t = leaderboard_table(path)
    assert t.columns == ["esc50", "us8k"]
    assert t.rows[0] == ("vggish", [0.80, 0.70], pytest.approx(0.75))
    assert t.rows[1][1] == [0.87, None] and t.incomplete == ["fusion"]
    md = t.to_markdown()
    assert "| fusion | 87.0 | - | 87.0* |" in md
    assert t.to_csv().splitlines()[2] == "fusion,0.87,,0.87"


def test_leaderboard_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "leaderboard.jsonl"
    append_entries(path, _entry("a", "esc50", 0.5))
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(lb_mod.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        append_entries(path, [_entry("b", "esc50", 0.6)] * 100)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.jsonl"]  # no lock file left behind
    # a corrupt file is reported with its line and never overwritten
    path.write_text(before.decode() + '{"model": "x", "task": "t", "accur\n')
    broken = path.read_bytes()
    with pytest.raises(ValueError, match=r"leaderboard.jsonl:2"):
        append_entries(path, _entry("c", "esc50", 0.7))
    assert path.read_bytes() == broken
    with pytest.raises(ValueError, match="fraction"):
        _entry("d", "esc50", 87.0)


def test_leaderboard_from_probe_has_provenance(tmp_path):
    r = linear_probe(split_task(), **FAST)
    e = LeaderboardEntry.from_probe("blob-model", [10, 15], r)
    assert e.accuracy == r.accuracy and e.seeds == [0, 1] and e.lr == r.lr
    assert {"torch", "transformers", "evaluate", "numpy"} <= set(e.versions) and e.date.endswith("+00:00")
    assert e.extra["protocol"]["max_epochs"] == 15
    append_entries(tmp_path / "x.jsonl", e)
    assert load_leaderboard(tmp_path / "x.jsonl")[0].to_dict() == e.to_dict()
