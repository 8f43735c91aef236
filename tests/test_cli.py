"""The hf-fusion CLI on small synthetic tasks with the real CREPE-tiny weights (the documented contract, docs/cli.md)."""

import csv
import json

import pytest

from hf_fusion.app.cli import main
from hf_fusion.tasks import build_synthetic_suite

FAST_PROBE = ["--lrs", "1e-3", "1e-2", "--seeds", "0", "--max-epochs", "40", "--patience", "10"]


@pytest.fixture(scope="module")
def task_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    return [str(d) for d in build_synthetic_suite(root, seed=0, n_per_class=5, tasks=["synth_pitch", "synth_events"])]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _task_args(task_dirs):
    return [arg for d in task_dirs for arg in ("--task-dir", d)]


@pytest.mark.slow
def test_layerwise_select_evaluate_leaderboard(tmp_path, task_dirs, cache_dir, capsys):
    common = ["--model", "crepe-tiny", *_task_args(task_dirs), "--cache-dir", cache_dir]
    out = tmp_path / "study"
    assert main(["layerwise", *common, "--out", str(out), *FAST_PROBE]) == 0
    rows = _read_csv(out / "layerwise.csv")
    assert list(rows[0])[:4] == ["layer", "task", "accuracy", "std"]
    assert {(int(r["layer"]), r["task"]) for r in rows} == {(l, t) for l in range(1, 8) for t in ("synth_pitch", "synth_events")}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    # pitch is easy for a pitch tracker: its best layer is far above chance (1/12)
    assert max(float(r["accuracy"]) for r in rows if r["task"] == "synth_pitch") > 0.5
    png = (out / "layerwise.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    sel = tmp_path / "select"
    assert main(["select", "--study", str(out / "layerwise.csv"), "--model", "crepe-tiny", "--out", str(sel)]) == 0
    choice = json.loads((sel / "selection.json").read_text())
    m, l = choice["middle"], choice["late"]
    assert m != l and {m, l} <= set(range(1, 8))
    folder = sel / f"crepe-fusion-{m}-{l}"
    assert json.loads((folder / "config.json").read_text())["fusion_layers"] == [m, l]
    assert "M = " in capsys.readouterr().out

    ev = tmp_path / "eval"
    assert main(["evaluate", "--model", str(folder), *_task_args(task_dirs), "--cache-dir", cache_dir,
                 "--out", str(ev), *FAST_PROBE]) == 0
    results = _read_csv(ev / "results.csv")
    assert list(results[0])[:4] == ["model", "task", "accuracy", "std"]
    models = {r["model"] for r in results}
    assert {f"crepe-fusion-{m}-{l}", "crepe-layer-7", f"crepe-layer-{m}", f"crepe-layer-{l}"} <= models
    table = (ev / "table.md").read_text()
    assert "difference" in table and f"crepe-fusion-{m}-{l}" in table
    # single-layer results in evaluate reproduce the layer-wise study (same cached features, same probe)
    study = {(int(r["layer"]), r["task"]): float(r["accuracy"]) for r in rows}
    for r in results:
        if r["model"] == f"crepe-layer-{m}":
            assert float(r["accuracy"]) == pytest.approx(study[(m, r["task"])], abs=1e-6)

    assert main(["leaderboard", str(ev / "leaderboard.jsonl"), "--out", str(tmp_path / "lb")]) == 0
    board = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert f"crepe-fusion-{m}-{l}" in board and "synth_pitch" in board


def test_layerwise_screening_and_probe_dtype_flags_reach_the_study(tmp_path, task_dirs, cache_dir, capsys):
    out = tmp_path / "screened"
    assert main(["layerwise", "--model", "crepe-tiny", *_task_args(task_dirs), "--cache-dir", cache_dir, "--out", str(out),
                 *FAST_PROBE, "--probe-dtype", "bf16", "--stack-layers", "7", "--screen-halving", "5",
                 "--screen-max-train", "30"]) == 0
    printed = capsys.readouterr().out
    assert "layer-wise screening (approximate): lr halving every 5 epochs, at most 30 training clips" in printed
    study = json.loads((out / "layerwise.json").read_text())
    assert study["screening"] == {"seeds": None, "halving_epochs": 5, "max_train": 30, "seed": 0}
    assert {(r["layer"], r["task"]) for r in study["rows"]} == {(l, t) for l in range(1, 8)
                                                                for t in ("synth_pitch", "synth_events")}


@pytest.mark.slow
def test_evaluate_reuses_the_cache_without_a_model_pass(tmp_path, task_dirs, cache_dir, monkeypatch):
    """After extraction, evaluating another fusion of the same backbone never runs the model."""
    assert main(["extract", "--model", "crepe-tiny", *_task_args(task_dirs), "--cache-dir", cache_dir]) == 0
    import hf_fusion.models.modeling_fusion as modeling

    def forbidden(*args, **kwargs):
        raise AssertionError("the model ran although every layer is cached")

    monkeypatch.setattr(modeling.AudioFusionModel, "tap", forbidden)
    assert main(["evaluate", "--model", "crepe-tiny", "--layers", "1", "4", *_task_args(task_dirs),
                 "--cache-dir", cache_dir, "--out", str(tmp_path), *FAST_PROBE]) == 0
    assert {r["model"] for r in _read_csv(tmp_path / "results.csv")} >= {"crepe-fusion-1-4", "crepe-layer-7"}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["extract", "--model", "crepe-tiny", "--task", "nope"], "unknown task 'nope'"),
        (["extract", "--model", "crepe-tiny", "--task-dir", "/no/such/dir"], "no metadata.csv"),
        (["extract", "--model", "crepe-tiny", "--layers", "3", "9", "--task", "synth_pitch"], r"layer\(s\) \[9\]"),
        (["extract", "--model", "resnet", "--task", "synth_pitch"], "unknown backbone 'resnet'"),
        (["extract", "--model", "crepe-tiny"], "no task given"),
        (["select", "--out", "x"], "needs --study"),
    ],
)
def test_helpful_errors(argv, message, capsys, tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err, re.IGNORECASE), err
