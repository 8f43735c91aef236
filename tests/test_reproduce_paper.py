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
    for expected in ("task esc50: neither a prepared folder nor a download", "task surge: neither a prepared folder",
                     "vggish checkpoint",
                     "cnn14 checkpoint", "ast checkpoint MIT/ast-finetuned-audioset-10-10-0.4593: not a local file or folder "
                     "and the Hub cannot serve it"):
        assert expected in err, err
    assert not (tmp_path / "o").exists()  # nothing ran


def test_downloads_are_checked_with_the_checkpoints_before_anything_runs(tmp_path, monkeypatch, capsys):
    """One message lists every missing task, split file, incomplete download and checkpoint; a GTZAN folder as
    EVAR writes it (empty split for the files outside the filtered lists) is accepted."""
    from . import official_downloads as official

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    downloads = tmp_path / "downloads"
    official.build("cremad", downloads)  # its split file (EVAR's cremad.csv) is not there and cannot be fetched
    official.build("spcv2", downloads)  # a partial download
    gtzan = tmp_path / "tasks" / "gtzan"
    gtzan.mkdir(parents=True)
    official.write(gtzan / "blues" / "a.wav", 0)
    (gtzan / "metadata.csv").write_text("file_name,label,split\nblues/a.wav,blues,train\nblues/a.wav,blues,valid\n"
                                        "blues/a.wav,blues,test\nblues/b.wav,blues,\n")
    code = _run(["--downloads", str(downloads), "--data-root", str(tmp_path / "tasks"), "--tasks", "cremad", "spcv2",
                 "gtzan", "surge", "--backbones", "cnn14", "--out", str(tmp_path / "o")], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2
    for expected in ("cremad: split file cremad.csv not found", "spcv2: split train: 84,843 expected, 6 found",
                     "task surge: neither a prepared folder nor a download", "cnn14 checkpoint"):
        assert expected in err, err
    assert "gtzan" not in err
    assert not (tmp_path / "tasks" / "spcv2").exists()  # nothing prepared before everything is there


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


@pytest.mark.slow
def test_end_to_end_from_an_official_download(tmp_path, monkeypatch, capsys):
    """--downloads: the tiny Speech Commands download is prepared into --data-root, then evaluated."""
    from . import official_downloads as official

    official.build("spcv2", tmp_path / "downloads")
    ckpt = tmp_path / "ast"
    ASTForAudioClassification(ASTConfig(**TINY_AST)).save_pretrained(ckpt)
    ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(ckpt)
    out = tmp_path / "out"
    code = _run(["--downloads", str(tmp_path / "downloads"), "--allow-partial", "--tasks", "spcv2", "--backbones", "ast",
                 "--ast-checkpoint", str(ckpt), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--seeds", "0", "--max-epochs", "5"], monkeypatch)
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "tasks" / "spcv2" / "task.json").read_text())
    assert info["counts"] == {"train": 6, "valid": 3, "test": 3} and info["complete"] is False
    assert "spcv2" in json.loads((out / "paper_comparison.json").read_text())["ast-fusion-5-12"]
    results = json.loads((out / "ast-fusion-5-12" / "evaluation" / "results.json").read_text())
    gaps = results["ast-fusion-5-12"]["tasks"]["spcv2"]["partial"]  # the gap recorded by prepare, in the results
    assert {g["split"] for g in gaps} == {"train", "valid", "test", "classes"}
    assert "spcv2: a partial download (4 gap(s) against the official task" in capsys.readouterr().out

    # ... in results.csv, and from there on the model card that `push --results` writes
    from hf_fusion.app.cli import main

    rows = list(csv.DictReader(open(out / "ast-fusion-5-12" / "evaluation" / "results.csv")))
    assert rows and all(r["partial"].startswith("split train: 84,843 expected, 6 found") for r in rows)
    repo = tmp_path / "repo"
    assert main(["push", "--preset", "ast-fusion-5-12", "--checkpoint", str(ckpt), "--repo-id", "org/ast-fusion-5-12",
                 "--results", str(out / "ast-fusion-5-12" / "evaluation" / "results.csv"), "--dry-run",
                 "--out", str(repo)]) == 0
    card = (repo / "README.md").read_text()
    assert "| Speech Commands V2 † |" in card and "- Speech Commands V2: split train: 84,843 expected, 6 found" in card
    from huggingface_hub import ModelCard

    names = [r.dataset_name for r in ModelCard(card).data.eval_results]
    assert names == ["Speech Commands V2 (partial download)"]
