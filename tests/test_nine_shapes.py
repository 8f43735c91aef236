"""The paper's nine task shapes end to end: tiny EVAR folders with the paper's names, fold/split layouts
and clip lengths (label counts scaled down), through scripts/reproduce_paper.py and the CLI subcommands."""

import csv
import json
import runpy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from hf_fusion.app.cli import main
from hf_fusion.tasks import get_task

from .conftest import TINY_AST

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce_paper.py"
SR = 16000
#: name -> (layout, number of folds or None); clip lengths come from the registry (1.0 ... 30 s)
SHAPES = {"esc50": ("fold", 5), "us8k": ("fold", 10), "spcv2": ("split", None), "vc1": ("split", None),
          "voxforge": ("split", None), "cremad": ("split", None), "gtzan": ("split", None),
          "nsynth": ("split", None), "surge": ("split", None)}
FAST = ["--max-epochs", "5", "--seeds", "0"]
CLI_FAST = ["--lrs", "1e-3", "1e-2", "--seeds", "0", "--max-epochs", "5", "--patience", "3"]


def _tone(f0, seconds, rng):
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.3 * np.sin(2 * np.pi * f0 * rng.uniform(0.95, 1.05) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def build_nine_tasks(root: Path, seed: int = 0) -> dict:
    """Nine EVAR folders; clips vary around the task's length (some cut, some padded). Returns {name: clip s}."""
    rng = np.random.default_rng(seed)
    lengths = {}
    for name, (layout, n_folds) in SHAPES.items():
        clip = get_task(name).clip_seconds
        lengths[name] = clip
        folder = root / name
        folder.mkdir(parents=True)
        rows = []
        groups = [(f, 1 if name == "us8k" else 2) for f in range(1, n_folds + 1)] if layout == "fold" else \
            [("train", 3), ("valid", 1), ("test", 1)]
        classes = (2 if name == "us8k" else 3)
        for group, per_class in groups:
            for c in range(classes):
                for i in range(per_class):
                    seconds = clip * rng.uniform(0.8, 1.2)
                    file = f"{group}_{c}_{i}.wav"
                    sf.write(folder / file, _tone((250, 800, 2500)[c], seconds, rng), SR)
                    rows.append((file, f"class{c}", group))
        with open(folder / "metadata.csv", "w", newline="") as f:
            csv.writer(f).writerows([("file_name", "label", "fold" if layout == "fold" else "split"), *rows])
    return lengths


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_nine_shapes_through_reproduce_paper_and_the_cli(tmp_path, monkeypatch, capsys):
    warnings.filterwarnings("ignore", message=".*classes, the paper's task has.*")
    root = tmp_path / "evar"
    lengths = build_nine_tasks(root)
    assert sorted(lengths.values()) == [1.0, 2.5, 4.0, 4.0, 4.0, 5.0, 5.8, 8.2, 30.0]
    ckpt = tmp_path / "ast"
    ASTForAudioClassification(ASTConfig(**TINY_AST)).save_pretrained(ckpt)
    ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(ckpt)
    out, cache = tmp_path / "paper", tmp_path / "cache"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--data-root", str(root), "--backbones", "ast",
                                      "--ast-checkpoint", str(ckpt), "--out", str(out), "--cache-dir", str(cache),
                                      "--layerwise", *FAST])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    printed = capsys.readouterr()
    assert exit_info.value.code == 0, printed.err
    assert "fold tasks hold out each fold in turn" in printed.out and "layer choice on valid accuracy" in printed.out
    assert "protocol (ast): input each task's clip length, normalised with the task statistics" in printed.out
    for task, frames in (("spcv2", 98), ("cremad", 248), ("esc50", 498), ("voxforge", 578), ("vc1", 818),
                         ("gtzan", 2998)):
        assert f"  {task}: ast input {frames} frames" in printed.out
    comparison = json.loads((out / "paper_comparison.json").read_text())["ast-fusion-5-12"]
    assert list(comparison) == list(SHAPES)
    assert comparison["esc50"]["paper"] == 94.2 and all(0 <= v["ours"] <= 100 for v in comparison.values())
    results = _rows(out / "ast-fusion-5-12" / "evaluation" / "results.csv")
    fusion = [r for r in results if r["model"] == "ast-fusion-5-12"]
    assert [r["fold"] for r in fusion if r["task"] == "esc50"] == ["mean", "1", "2", "3", "4", "5"]
    assert [r["fold"] for r in fusion if r["task"] == "us8k"] == ["mean"] + [str(f) for f in range(1, 11)]
    assert all(r["fold"] == "" for r in fusion if r["task"] not in ("esc50", "us8k"))
    assert all(0 <= float(r["valid_accuracy"]) <= 1 for r in fusion)
    layerwise = _rows(out / "ast-fusion-5-12" / "layerwise" / "layerwise.csv")
    assert {r["task"] for r in layerwise} == set(SHAPES) and {int(r["layer"]) for r in layerwise} == set(range(1, 13))
    selection = json.loads((out / "ast-fusion-5-12" / "selection.json").read_text())
    assert selection["selected_on"] == "valid" and selection["group_source"] == "paper"

    # the CLI on the same folders (registered names, registered clip lengths), reusing the cache
    model = str(out / "ast-fusion-5-12")
    tasks = [a for name in SHAPES for a in ("--task", name)] + ["--task-root", str(root)]
    common = ["--model", model, *tasks, "--cache-dir", str(cache)]
    assert main(["extract", *common]) == 0
    printed = capsys.readouterr().out
    assert "esc50: fold task, folds [1, 2, 3, 4, 5]" in printed and "us8k: fold task, folds [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" in printed
    # each clip is cached once; a clip longer than the clip length adds its training crop (never a copy per fold)
    assert "esc50            all_train_crops" in printed
    study = tmp_path / "study"
    assert main(["layerwise", *common, "--folds", "1,3", "--out", str(study), *CLI_FAST]) == 0
    rows = _rows(study / "layerwise.csv")
    assert {r["fold"] for r in rows if r["task"] == "us8k"} == {"mean", "1", "3"}
    sel = tmp_path / "select"
    assert main(["select", "--study", str(study / "layerwise.csv"), *common, "--rule", "pairs", "--pairs-top-k", "2",
                 "--folds", "1,3", "--out", str(sel), *CLI_FAST]) == 0
    printed = capsys.readouterr().out
    assert "pairs rule:" in printed and " probes in " in printed
    choice = json.loads((sel / "selection.json").read_text())
    assert choice["rule_name"] == "pairs" and choice["pairs_cost"]["probes"] == 9 * choice["pairs_cost"]["candidates"]
    first, second = sorted([choice["middle"], choice["late"]])
    folder = sel / f"ast-fusion-{first}-{second}"
    assert folder.is_dir()
    ev = tmp_path / "eval"
    assert main(["evaluate", "--model", str(folder), *tasks, "--cache-dir", str(cache), "--folds", "1,3",
                 "--out", str(ev), *CLI_FAST]) == 0
    assert {r["fold"] for r in _rows(ev / "results.csv") if r["task"] == "esc50"} == {"mean", "1", "3"}
    assert main(["leaderboard", str(ev / "leaderboard.jsonl")]) == 0
    assert "esc50" in capsys.readouterr().out
