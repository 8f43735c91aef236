"""The paper's protocol on fold tasks and the layer choice: one fold carving everywhere, the right crop per
role, per-fold and validation numbers in every output, choice on validation, depth-ordered names."""

import csv
import json
import math
import types

import numpy as np
import pytest
import soundfile as sf
import torch

import hf_fusion
from hf_fusion.app.cli import main
from hf_fusion.evaluation import LayerwiseStudy, TaskFeatures, choose_layers, fold_problems, refine_with_pairs
from hf_fusion.extraction import extract_features
from hf_fusion.tasks import load_task_dir

from .conftest import TINY_AST

SR = 16000
CLIP = 0.6  # seconds; the folder's clips are 0.4-0.9 s, so some are cut (random crops) and some padded
FAST = ["--lrs", "1e-3", "1e-2", "--seeds", "0", "--max-epochs", "8", "--patience", "3"]


def _write_fold_task(folder, n_folds=3, classes=("low", "mid", "high"), per_class_per_fold=3, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for fold in range(1, n_folds + 1):
        for c, label in enumerate(classes):
            for i in range(per_class_per_fold):
                seconds = rng.uniform(0.4, 0.9)
                t = np.arange(int(seconds * SR)) / SR
                f0 = (200, 700, 2000)[c % 3] * rng.uniform(0.9, 1.1)
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
                name = f"f{fold}_{label}_{i}.wav"
                sf.write(folder / name, wave.astype(np.float32), SR)
                rows.append((name, label, fold))
    with open(folder / "metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file_name", "label", "fold"), *rows])
    return folder


@pytest.fixture(scope="module")
def fold_task(tmp_path_factory):
    return _write_fold_task(tmp_path_factory.mktemp("protocol") / "foldtask")


@pytest.fixture(scope="module")
def ast_model():
    torch.manual_seed(0)
    config = hf_fusion.AudioFusionConfig(backbone="ast", backbone_config=dict(TINY_AST), fusion_layers=[5, 12])
    return hf_fusion.AudioFusionModel(config).eval(), hf_fusion.FusedAudioFeatureExtractor.from_fusion_config(config)


@pytest.fixture(scope="module")
def ast_folder(ast_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny-ast"
    ast_model[0].save_pretrained(folder)
    ast_model[1].save_pretrained(folder)
    return folder


def _embed(model, fe, clips):
    with torch.no_grad():
        return model(fe(list(clips), sampling_rate=SR, return_tensors="pt")["input_values"]).pooler_output.numpy()


def test_fold_cache_equals_the_held_out_loader_for_every_fold(fold_task, ast_model, tmp_path):
    """Cached fold features (each clip once + training crops of long clips) give, fold by fold, exactly the
    train/valid/test sets and features of ``load_task_dir(test_fold=k)``: one carving, the same crops."""
    model, fe = ast_model
    data = load_task_dir(fold_task, SR, clip_seconds=CLIP, seed=3)
    assert list(data) == ["all", "all_train_crops"]
    n_long = len(data["all_train_crops"])
    assert 0 < n_long < len(data["all"])  # both crop cases occur
    cache = extract_features(model, fe, data, "foldtask", layers=[5, 12], cache_dir=tmp_path, progress=False)
    task = TaskFeatures(**cache.task_features("fusion"))
    X, _, _ = task.folds
    assert task.train_X is not None and (np.abs(task.train_X - X).max(axis=1) > 1e-4).sum() == n_long
    problems = list(fold_problems(task, valid_fraction=0.1, split_seed=3))
    assert [p[0] for p in problems] == [1, 2, 3]
    for fold, train, valid, test in problems:
        held = load_task_dir(fold_task, SR, clip_seconds=CLIP, seed=3, test_fold=fold)
        for split, (Xs, ys) in zip(("train", "valid", "test"), (train, valid, test)):
            np.testing.assert_array_equal(ys, held[split]["label"])
            expected = _embed(model, fe, held[split].with_format("numpy")["input_values"])
            np.testing.assert_allclose(Xs, expected, rtol=1e-5, atol=1e-5, err_msg=f"fold {fold} {split}")


def test_fold_selection_and_errors():
    X = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    y, fold = np.arange(30) % 3, np.repeat([1, 2, 3], 10)
    task = TaskFeatures.from_folds(X, y, fold, num_classes=3)
    limited = TaskFeatures(num_classes=3, folds=(X, y, fold), test_folds=(3, 1))
    assert [p[0] for p in fold_problems(limited)] == [1, 3]
    assert [p[0] for p in fold_problems(task)] == [1, 2, 3]
    with pytest.raises(ValueError, match=r"folds \[7\] are not in the data; its folds are \[1, 2, 3\]"):
        TaskFeatures(num_classes=3, folds=(X, y, fold), test_folds=(7,))
    with pytest.raises(ValueError, match="fold tasks only"):
        TaskFeatures(num_classes=3, splits={"train": (X, y), "valid": (X, y), "test": (X, y)}, test_folds=(1,))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_cli_runs_a_fold_task_with_per_fold_rows(fold_task, ast_folder, tmp_path, capsys):
    common = ["--model", str(ast_folder), "--task-dir", str(fold_task), "--clip-seconds", str(CLIP),
              "--cache-dir", str(tmp_path / "cache"), *FAST]
    out = tmp_path / "study"
    assert main(["layerwise", *common, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "foldtask: fold task, folds [1, 2, 3] held out in turn" in printed
    # AST per task (the authors' protocol): sized for the 0.6 s clips, normalised with the task's statistics
    assert "foldtask: ast input 58 frames (0.6 s clips, the task length), input normalisation task" in printed
    rows = _rows(out / "layerwise.csv")
    assert {r["fold"] for r in rows} == {"mean", "1", "2", "3"}
    for layer in range(1, 13):
        per = {r["fold"]: r for r in rows if int(r["layer"]) == layer}
        folds = [float(per[k]["accuracy"]) for k in ("1", "2", "3")]
        assert float(per["mean"]["accuracy"]) == pytest.approx(np.mean(folds), abs=1e-9)
        valid = [float(per[k]["valid_accuracy"]) for k in ("1", "2", "3")]
        assert float(per["mean"]["valid_accuracy"]) == pytest.approx(np.mean(valid), abs=1e-9)
    study = LayerwiseStudy.from_csv(out / "layerwise.csv")
    assert len(study.rows) == 12 and len(study.fold_rows) == 36 and study.has_metric("valid")

    limited = tmp_path / "limited"
    assert main(["layerwise", *common, "--folds", "1,3", "--out", str(limited)]) == 0
    again = capsys.readouterr().out
    assert "extracting" in again
    # the task statistics of the first run are kept (same crops, same fbank): same numbers, not recomputed
    first_stats = printed.split("input normalisation task (", 1)[1].split(")", 1)[0]
    assert f"input normalisation task ({first_stats}, kept from an earlier run)" in again
    assert len(list((tmp_path / "cache" / "ast_stats").glob("*.json"))) == 1
    assert {r["fold"] for r in _rows(limited / "layerwise.csv")} == {"mean", "1", "3"}
    assert main(["layerwise", *common, "--folds", "1,9", "--out", str(limited)]) == 2
    assert "--folds 1,9: task foldtask has folds [1, 2, 3]" in capsys.readouterr().err

    sel = tmp_path / "select"
    assert main(["select", "--study", str(out / "layerwise.csv"), "--model", str(ast_folder), "--out", str(sel)]) == 0
    choice = json.loads((sel / "selection.json").read_text())
    assert choice["selected_on"] == "valid" and "test sets were not read" in choice["rule"]
    assert "on validation accuracy" in capsys.readouterr().out
    assert main(["select", "--study", str(out / "layerwise.csv"), "--select-on", "test", "--out", str(sel)]) == 0
    choice = json.loads((sel / "selection.json").read_text())
    assert choice["selected_on"] == "test" and "as in the paper" in choice["rule"]

    ev = tmp_path / "eval"
    assert main(["evaluate", *common, "--out", str(ev)]) == 0
    results = _rows(ev / "results.csv")
    fusion = [r for r in results if r["model"] == "ast-fusion-5-12"]
    assert [r["fold"] for r in fusion] == ["mean", "1", "2", "3"]
    assert float(fusion[0]["accuracy"]) == pytest.approx(np.mean([float(r["accuracy"]) for r in fusion[1:]]), abs=1e-6)
    full = json.loads((ev / "results.json").read_text())["ast-fusion-5-12"]["tasks"]["foldtask"]
    assert set(full["per_fold"]) == {"1", "2", "3"} and set(full["per_fold_valid"]) == {"1", "2", "3"}
    board = [json.loads(line) for line in open(ev / "leaderboard.jsonl")]
    assert any(e["model"] == "ast-fusion-5-12" and e["task"] == "foldtask" for e in board)


# ---------------------------------------------------------------- the layer choice


def _study(valid, test):
    """A LayerwiseStudy from {task: {layer: acc}} validation and test matrices."""
    rows = [{"layer": layer, "task": task, "fold": "", "accuracy": test[task][layer],
             "valid_accuracy": valid[task][layer], "std": 0.0, "lr": 1e-3} for task in test for layer in test[task]]
    return LayerwiseStudy(rows=rows)


LATE_SHALLOW = {  # the "late" tasks peak at layer 1, the "middle" ones at layer 7: the premise fails
    "esc50": {1: 0.8, 4: 0.6, 7: 0.5}, "us8k": {1: 0.7, 4: 0.6, 7: 0.4}, "gtzan": {1: 0.6, 4: 0.5, 7: 0.4},
    "spcv2": {1: 0.3, 4: 0.5, 7: 0.9}, "cremad": {1: 0.3, 4: 0.4, 7: 0.6},
}


def test_choice_reads_validation_by_default_and_test_on_request():
    valid = {"esc50": {1: 0.5, 2: 0.9}, "spcv2": {1: 0.9, 2: 0.5}, "gtzan": {1: 0.5, 2: 0.9}}
    test = {"esc50": {1: 0.9, 2: 0.5}, "spcv2": {1: 0.5, 2: 0.9}, "gtzan": {1: 0.9, 2: 0.5}}
    study = _study(valid, test)
    on_valid, on_test = choose_layers(study), choose_layers(study, select_on="test")
    assert (on_valid.middle, on_valid.late, on_valid.selected_on) == (1, 2, "valid")
    assert (on_test.middle, on_test.late, on_test.selected_on) == (2, 1, "test")
    no_valid = LayerwiseStudy.from_matrix(test)
    with pytest.raises(ValueError, match="no validation accuracy.*select_on='test'"):
        choose_layers(no_valid)
    assert choose_layers(no_valid, select_on="test").late == 1


def test_reversed_pair_is_named_by_depth_and_explained():
    choice = choose_layers(_study(LATE_SHALLOW, LATE_SHALLOW))
    assert (choice.middle, choice.late) == (7, 1) and choice.late_not_deeper
    assert choice.fusion_layers == [1, 7] and choice.name_suffix == "1-7"
    assert "shallower than M = layer 7" in choice.warning and "does not hold" in choice.warning
    saved = json.loads(choice.to_json())
    assert saved["late_not_deeper"] and saved["warning"] == choice.warning
    normal = choose_layers(_study(LATE_SHALLOW, LATE_SHALLOW), late_tasks=["spcv2", "cremad"])
    assert (normal.middle, normal.late, normal.late_not_deeper, normal.warning) == (1, 7, False, "")


@pytest.mark.slow
def test_cli_select_reversed_pair_saves_a_depth_ordered_model(ast_folder, tmp_path, capsys):
    csv_path = _study(LATE_SHALLOW, LATE_SHALLOW).to_csv(tmp_path / "layerwise.csv")
    out = tmp_path / "sel"
    assert main(["select", "--study", str(csv_path), "--model", str(ast_folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warning: L = layer 1" in printed and "does not hold" in printed
    folder = out / "ast-fusion-1-7"
    assert json.loads((folder / "config.json").read_text())["fusion_layers"] == [1, 7]
    assert not (out / "ast-fusion-7-1").exists()


def test_study_files_with_bad_numbers_are_refused(tmp_path):
    header = "layer,task,accuracy,std,lr,num_seeds,dim,valid_accuracy,fold\n"
    cases = {
        "nan": ("1,a,nan,0,0.001,1,4,0.5,\n", "accuracy nan is not a number"),
        "inf": ("1,a,0.5,0,0.001,1,4,inf,\n", "valid_accuracy is infinite"),
        "percent": ("1,a,85.0,0,0.001,1,4,0.5,\n", r"accuracy 85.0 is outside \[0, 1\] \(percent\?"),
        "truncated": ("1,a,0.5,0,0.0\n2,a,", "line 3 is not a valid study row"),
        "duplicate": ("1,a,0.5,0,0.001,1,4,0.5,\n1,a,0.6,0,0.001,1,4,0.5,\n", "two rows for task 'a', layer 1"),
    }
    for name, (body, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(header + body)
        with pytest.raises(ValueError, match=message):
            LayerwiseStudy.from_csv(path)
    with pytest.raises(ValueError, match="not a finite fraction"):
        choose_layers({"a": {1: math.inf, 2: 0.5}, "b": {1: 0.5, 2: 0.4}})


def test_pairs_rule_probes_candidates_and_keeps_the_best_validation_mean():
    study = _study(LATE_SHALLOW, LATE_SHALLOW)
    base = choose_layers(study, late_tasks=["esc50", "us8k", "gtzan"])
    calls = []

    def probe_pair(layers):
        calls.append(tuple(layers))
        # validation prefers (4, 7); test would prefer (1, 4): the rule must read validation only
        valid = {(4, 7): 0.9, (1, 4): 0.5}.get(tuple(layers), 0.6)
        test = {(4, 7): 0.1, (1, 4): 0.99}.get(tuple(layers), 0.5)
        return {t: types.SimpleNamespace(valid_mean=valid, accuracy=test) for t in LATE_SHALLOW}

    refined = refine_with_pairs(base, probe_pair, top_k=2)
    assert calls[0] == (1, 7)  # the group rule's own pair first, layers in depth order
    assert len(calls) == len(set(calls)) == refined.pairs_cost["candidates"]
    assert set(calls) == {(1, 7), (1, 4), (4, 7)}
    assert refined.rule_name == "pairs" and sorted([refined.middle, refined.late]) == [4, 7]
    assert refined.pairs["4-7"] == pytest.approx(0.9) and refined.pairs_cost["probes"] == 3 * len(LATE_SHALLOW)
    on_test = refine_with_pairs(choose_layers(study, late_tasks=["esc50", "us8k", "gtzan"], select_on="test"),
                                probe_pair, top_k=2)
    assert sorted([on_test.middle, on_test.late]) == [1, 4]


def test_card_says_which_accuracy_chose_the_layers(tmp_path):
    from hf_fusion.hub.cards import render_model_card

    config = hf_fusion.AudioFusionConfig(backbone="ast", backbone_config=dict(TINY_AST), fusion_layers=[1, 7])
    choice = choose_layers(_study(LATE_SHALLOW, LATE_SHALLOW))
    on_valid = render_model_card(config, "org/ast-fusion-1-7", selection=choice.to_dict()).text
    assert "M = 7 (middle layer) and L = 1 (late layer)" in on_valid
    assert "validation accuracies of the per-layer linear probes (the test sets were not read)" in on_valid
    assert "Note: L = layer 1" in on_valid and "does not hold" in on_valid
    on_test = choose_layers(_study(LATE_SHALLOW, LATE_SHALLOW), select_on="test").to_dict()
    text = render_model_card(config, "org/ast-fusion-1-7", selection=on_test).text
    assert "test accuracies of the per-layer linear probes, as in the paper (the test sets influenced the choice)" in text


def test_task_statistics_are_kept_per_crops_and_fbank(tmp_path, monkeypatch):
    """AST's task statistics are computed once per (training crops, fbank settings) and then read back."""
    from datasets import Dataset, DatasetDict, load_from_disk

    from hf_fusion import FusedAudioFeatureExtractor
    from hf_fusion.app import task_model
    from hf_fusion.app.workflow import task_input_statistics, train_clips

    rng = np.random.default_rng(0)
    clips = {"input_values": [rng.standard_normal(16000).astype(np.float32) for _ in range(4)], "label": [0, 1, 0, 1]}
    Dataset.from_dict(clips).save_to_disk(tmp_path / "train")
    data = DatasetDict({"train": load_from_disk(str(tmp_path / "train"))})  # file-backed, like the CLI's crops
    fe = FusedAudioFeatureExtractor(backbone="ast", frontend={"num_mel_bins": 32, "max_length": 98})
    calls = []
    compute = task_model.input_statistics
    monkeypatch.setattr(task_model, "input_statistics", lambda *a, **k: calls.append(1) or compute(*a, **k))
    first, reused = task_input_statistics(data, fe, tmp_path / "cache")
    drawn = list(train_clips(data))  # the training clips in the statistic's seeded order
    assert sorted(c.tobytes() for c in drawn) == sorted(np.asarray(c, np.float32).tobytes() for c in clips["input_values"])
    assert not reused and len(calls) == 1 and first == {**compute(drawn, fe), "seed": 0}
    again, reused = task_input_statistics(data, fe, tmp_path / "cache")
    assert reused and again == first and len(calls) == 1
    shorter = FusedAudioFeatureExtractor(backbone="ast", frontend={"num_mel_bins": 32, "max_length": 50})
    assert not task_input_statistics(data, shorter, tmp_path / "cache")[1] and len(calls) == 2
    seeded, reused = task_input_statistics(data, fe, tmp_path / "cache", seed=1)  # another order: its own entry
    assert not reused and seeded["seed"] == 1 and len(calls) == 3
    other = DatasetDict({"train": Dataset.from_dict(clips)})  # in memory: no content name, computed every time
    task_input_statistics(other, fe, tmp_path / "cache")
    task_input_statistics(other, fe, tmp_path / "cache")
    assert len(calls) == 5 and len(list((tmp_path / "cache" / "ast_stats").glob("*.json"))) == 3
