"""scripts/reproduce_paper.py: fails early listing what is missing; runs end to end on a tiny local setup."""

import csv
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from .conftest import TINY_AST

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce_paper.py"


def _run(argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    return exit_info.value.code


def test_fails_early_with_everything_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = _run(["--data-root", str(tmp_path), "--tasks", "esc50", "surge", "--out", str(tmp_path / "o")], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2
    for expected in ("task esc50: no EVAR folder", "task surge: no EVAR folder", "vggish checkpoint",
                     "cnn14 checkpoint", "AST checkpoint MIT/ast-finetuned-audioset-10-10-0.4593"):
        assert expected in err, err
    assert not (tmp_path / "o").exists()  # nothing ran


@pytest.mark.slow
def test_end_to_end_tiny_ast_on_a_local_spcv2_folder(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    task = tmp_path / "data" / "spcv2"
    (task / "wav").mkdir(parents=True)
    rows = []
    for i in range(36):
        label = ["yes", "no", "up"][i % 3]
        f0 = {"yes": 300, "no": 600, "up": 1200}[label] * rng.uniform(0.95, 1.05)
        t = np.arange(16000) / 16000
        sf.write(task / "wav" / f"{i}.wav", (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 16000)
        rows.append((f"wav/{i}.wav", label, ["train", "train", "valid", "test"][i % 4 if i % 4 else 0]))
    with open(task / "metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file_name", "label", "split"), *rows])
    ckpt = tmp_path / "ast"
    ASTForAudioClassification(ASTConfig(**TINY_AST)).save_pretrained(ckpt)
    ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(ckpt)
    out = tmp_path / "out"
    code = _run(["--data-root", str(tmp_path / "data"), "--tasks", "spcv2", "--backbones", "ast",
                 "--ast-checkpoint", str(ckpt), "--out", str(out), "--cache-dir", str(tmp_path / "cache")], monkeypatch)
    assert code == 0, capsys.readouterr().err
    comparison = json.loads((out / "paper_comparison.json").read_text())
    assert comparison["ast-fusion-5-12"]["spcv2"]["paper"] == 80.4
    assert 0 <= comparison["ast-fusion-5-12"]["spcv2"]["ours"] <= 100
    results = list(csv.DictReader(open(out / "ast-fusion-5-12" / "evaluation" / "results.csv")))
    assert {r["model"] for r in results} >= {"ast-fusion-5-12", "ast-layer-12", "ast-layer-5"}
