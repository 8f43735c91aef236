"""A trained linear probe becomes a Hub audio classifier: export, pipeline, evaluator, push.

The end-to-end tests run ``hf-fusion evaluate --save-classifier`` with the real CREPE-tiny weights on a small
synthetic task whose 1.0 s clips are cut to a 0.8 s clip length, so the classifier's feature extractor must
reproduce the evaluation's test crops (from sample 0) for its predictions to match the probe's.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

import hf_fusion
from hf_fusion import AudioFusionConfig, AudioFusionForAudioClassification, AudioFusionModel, FusedAudioFeatureExtractor
from hf_fusion.evaluation import (ProbeConfig, TaskFeatures, classifier_feature_extractor, classifier_from_probe,
                                  linear_probe, save_classifier)
from hf_fusion.tasks import build_synthetic_suite
from hf_fusion.tasks.clips import crop_or_pad
from hf_fusion.tasks.folds import fold_split_indices

from .test_hub import _cli, no_hub  # noqa: F401  (the push helper and its no-network fixture)

TASK = "synth_events"
CLIP_SECONDS = 0.8
SR = 16000
LAYERS = ["3", "6"]
PROBE_ARGS = ["--lrs", "1e-3", "1e-2", "--seeds", "0", "1", "2", "--max-epochs", "40"]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """`hf-fusion evaluate --model crepe-tiny --layers 3 6 --task-dir T --clip-seconds 0.8 --save-classifier DIR`."""
    from hf_fusion.app.cli import main

    root = tmp_path_factory.mktemp("clf")
    (task_dir,) = build_synthetic_suite(root / "data", seed=0, n_per_class=10, tasks=[TASK])
    argv = ["evaluate", "--model", "crepe-tiny", "--layers", *LAYERS, "--task-dir", str(task_dir),
            "--clip-seconds", str(CLIP_SECONDS), "--cache-dir", str(root / "cache"), "--out", str(root / "out"),
            "--device", "cpu", *PROBE_ARGS, "--save-classifier", str(root / "classifier")]
    assert main(argv) == 0
    return {"root": root, "task_dir": task_dir, "classifier": root / "classifier", "cache": root / "cache",
            "results": json.loads((root / "out" / "results.json").read_text())}


@pytest.fixture(scope="module")
def test_split(evaluated):
    """The task's test split as decoded (uncropped 1.0 s clips) -> (datasets split, [float32 arrays], labels)."""
    from hf_fusion.tasks.sources import load_task_dir

    test = load_task_dir(evaluated["task_dir"], SR)["test"]
    clips = [np.asarray(ex["audio"]["array"], dtype=np.float32) for ex in test]
    return test, clips, np.asarray(test["label"])


def _pipeline_predictions(pipe, clips):
    return np.array([pipe.model.config.label2id[pipe(clip, top_k=1)[0]["label"]] for clip in clips])


def _logits(classifier, clips):
    fe = classifier_feature_extractor(classifier.config)
    with torch.no_grad():
        return classifier(**fe(clips, sampling_rate=SR, return_tensors="pt")).logits.numpy()


def _crepe_config():
    return AudioFusionConfig(backbone="crepe", backbone_config={"capacity": "tiny"}, fusion_layers=[3, 6])


# ---------------------------------------------------------------- end to end (real CREPE-tiny)


@pytest.mark.slow
def test_pipeline_accuracy_equals_the_exported_probe_run(evaluated, test_split):
    from transformers import pipeline

    probe = json.loads((evaluated["classifier"] / "probe.json").read_text())
    fused = evaluated["results"]["crepe-fusion-3-6"]["tasks"][TASK]
    # the exported run: the reported lr, and the best-validation seed there (never the test accuracy)
    li = fused["lrs"].index(probe["lr"])
    assert probe["lr"] == fused["lr"] and probe["fold"] is None
    assert probe["seed"] == fused["seeds"][int(np.argmax(fused["valid_accuracy"][li]))]
    assert probe["test_accuracy"] == fused["per_seed"][fused["seeds"].index(probe["seed"])]
    assert probe["clip_samples"] == round(CLIP_SECONDS * SR)

    pipe = pipeline("audio-classification", model=str(evaluated["classifier"]))
    assert isinstance(pipe.model, AudioFusionForAudioClassification)
    assert pipe.feature_extractor.clip_samples == round(CLIP_SECONDS * SR)
    _, clips, labels = test_split
    assert all(len(c) > probe["clip_samples"] for c in clips)  # the crop matters for every clip
    predictions = _pipeline_predictions(pipe, clips)
    assert len(predictions) == probe["num_test_clips"]
    assert float(np.mean(predictions == labels)) == probe["test_accuracy"]
    names = pipe.model.config.id2label
    assert [names[i] for i in range(len(names))] == test_split[0].features["label"].names


@pytest.mark.slow
def test_classifier_from_probe_gives_the_probes_logits(evaluated, test_split, tmp_path):
    """Python path: the same run from the cached features; the classifier's logits on the raw clips are
    ((x - mean) / std) @ W + b of the probe on the cached test features, and survive save/load."""
    from transformers import AutoModelForAudioClassification

    from hf_fusion.app import workflow

    loaded = workflow.load_model("crepe-tiny", [3, 6])
    tasks = workflow.load_tasks([], [str(evaluated["task_dir"])], SR, clip_seconds=CLIP_SECONDS,
                                cache_dir=evaluated["cache"])
    caches = workflow.extract_tasks(loaded, tasks, "fusion", cache_dir=evaluated["cache"], log=lambda *a: None)
    features = workflow.task_features(caches[TASK], [3, 6])
    config = ProbeConfig(lrs=(1e-3, 1e-2), seeds=(0, 1, 2), max_epochs=40)
    result = linear_probe(features, config, keep_weights=True)
    probe = json.loads((evaluated["classifier"] / "probe.json").read_text())
    assert (result.lr, result.accuracy) == (probe["lr"], probe["test_accuracy_mean"])  # the CLI's run, reproduced

    labels = tasks[TASK]["test"].features["label"].names
    classifier = classifier_from_probe(loaded.model, result, labels, clip_samples=round(CLIP_SECONDS * SR))
    run = result.export_run()
    assert classifier.config.probe["seed"] == run.seed == probe["seed"]
    X, y = features.splits["test"]
    expected = (((torch.as_tensor(X, dtype=torch.float64) - run.mean) / run.std) @ run.weight.double()
                + run.bias.double()).numpy()
    assert float(np.mean(expected.argmax(1) == y)) == run.test_accuracy == probe["test_accuracy"]
    _, clips, labels_ = test_split
    np.testing.assert_array_equal(labels_, y)
    got = _logits(classifier, clips)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))

    save_classifier(classifier, tmp_path / "clf")
    reloaded = AutoModelForAudioClassification.from_pretrained(tmp_path / "clf").eval()
    for name in ("feature_mean", "feature_std", "classifier.weight"):  # persistent buffers survive the meta device
        torch.testing.assert_close(reloaded.state_dict()[name], classifier.state_dict()[name], rtol=0, atol=0)
    for name, value in classifier.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], value, rtol=0, atol=0)
    np.testing.assert_allclose(_logits(reloaded, clips), got, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_evaluate_evaluator_offline_gives_the_same_accuracy(evaluated, test_split, monkeypatch):
    import evaluate
    from transformers import pipeline

    from hf_fusion.evaluation.hf_evaluator import OfflineAudioClassificationEvaluator, audio_classification_evaluator
    from hf_fusion.evaluation.metrics import accuracy_metric

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    test, _, _ = test_split
    probe = json.loads((evaluated["classifier"] / "probe.json").read_text())
    pipe = pipeline("audio-classification", model=str(evaluated["classifier"]))
    stock = evaluate.evaluator("audio-classification")
    with pytest.raises(AttributeError, match="TFPreTrainedModel"):  # evaluate 0.4.6 vs transformers 5
        stock.compute(model_or_pipeline=pipe, data=test, input_column="audio", metric=accuracy_metric())
    task_evaluator = audio_classification_evaluator()
    assert isinstance(task_evaluator, type(stock)) and isinstance(task_evaluator, OfflineAudioClassificationEvaluator)
    # the datasets split as it is (Audio column), the folder path, the default (packaged) accuracy metric
    result = task_evaluator.compute(model_or_pipeline=evaluated["classifier"], data=test, input_column="audio")
    assert result["accuracy"] == probe["test_accuracy"]
    # numpy waveforms, a ready pipeline and the metric module given explicitly
    data = test.map(lambda ex: {"waveform": np.asarray(ex["audio"]["array"], np.float32)},
                    remove_columns=["audio"]).with_format("numpy")
    result = task_evaluator.compute(model_or_pipeline=pipe, data=data, input_column="waveform",
                                    metric=accuracy_metric(), label_mapping=pipe.model.config.label2id)
    assert result["accuracy"] == probe["test_accuracy"]


REMOTE = textwrap.dedent(
    """
    import os, sys
    sys.modules["hf_fusion"] = None  # any `import hf_fusion` raises ImportError
    import numpy as np, torch
    from transformers import AutoModelForAudioClassification, pipeline
    src, clips = sys.argv[1], list(np.load(sys.argv[2]))
    pipe = pipeline("audio-classification", model=src, trust_remote_code=True)
    model = AutoModelForAudioClassification.from_pretrained(src, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**pipe.feature_extractor(clips, sampling_rate=16000, return_tensors="pt")).logits
    labels = [pipe(c, top_k=1)[0]["label"] for c in clips]
    np.save(sys.argv[3], logits.numpy())
    print("LABELS", *labels)
    print("MODULES", type(model).__module__, type(pipe.model).__module__, type(pipe.feature_extractor).__module__)
    """
)


@pytest.mark.slow
def test_trust_remote_code_without_hf_fusion(evaluated, test_split, tmp_path):
    from transformers import AutoModelForAudioClassification

    _, clips, labels = test_split
    np.save(tmp_path / "clips.npy", np.stack(clips))
    (tmp_path / "remote.py").write_text(REMOTE)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(tmp_path / "remote.py"), str(evaluated["classifier"]),
                           str(tmp_path / "clips.npy"), str(tmp_path / "logits.npy")],
                          env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    modules = proc.stdout.split("MODULES", 1)[1].split()
    assert all(m.startswith("transformers_modules") for m in modules), modules  # the saved remote code
    local = AutoModelForAudioClassification.from_pretrained(evaluated["classifier"]).eval()
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), _logits(local, clips), rtol=1e-5, atol=1e-5)
    names = proc.stdout.split("LABELS", 1)[1].split("MODULES")[0].split()
    probe = json.loads((evaluated["classifier"] / "probe.json").read_text())
    predicted = np.array([local.config.label2id[n] for n in names])
    assert float(np.mean(predicted == labels)) == probe["test_accuracy"]


@pytest.mark.slow
def test_push_dry_run_card_reports_the_probe_run(evaluated, tmp_path, no_hub, capsys):  # noqa: F811
    from transformers import AutoModelForAudioClassification

    probe = json.loads((evaluated["classifier"] / "probe.json").read_text())
    out = tmp_path / "repo"
    assert _cli(["--model", evaluated["classifier"], "--org", "org", "--dry-run", "--out", out]) == 0
    name = f"crepe-fusion-3-6-{TASK}"
    assert f"https://huggingface.co/org/{name}" in capsys.readouterr().out and no_hub == []
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "audio-classification"
    (result,) = card.data.eval_results
    assert (result.task_type, result.dataset_split, result.metric_type) == ("audio-classification", "test", "accuracy")
    assert result.metric_value == round(probe["test_accuracy"], 6)
    assert f"| seed | {probe['seed']} (the seed with the best validation accuracy" in card.text
    assert f"| learning rate | {probe['lr']} " in card.text and f"`{TASK}`" in card.text
    assert f"**{100 * probe['test_accuracy']:.1f} %** on {probe['num_test_clips']} test clips" in card.text
    assert "incomplete download" not in card.text and "partial" not in result.dataset_name
    summary = json.loads((out / "results.json").read_text())
    assert summary["results"][0]["accuracy"] == probe["test_accuracy"] and summary["kind"] == "audio-classification"
    assert json.loads((out / "probe.json").read_text()) == probe
    pushed = AutoModelForAudioClassification.from_pretrained(out)
    saved = AutoModelForAudioClassification.from_pretrained(evaluated["classifier"])
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(pushed.state_dict()[key], value, rtol=0, atol=0)
    # the card reports the probe itself: evaluation files of fused models are refused
    argv = ["--model", evaluated["classifier"], "--repo-id", "org/x", "--dry-run", "--out", tmp_path / "r2",
            "--results", evaluated["root"] / "out" / "results.csv"]
    assert _cli(argv) == 2 and "reports its own probe run" in capsys.readouterr().err


def test_a_classifier_of_a_partial_download_says_so_on_its_card(evaluated):
    """A task prepared with --allow-partial: save_task_classifier records the gaps, the card and model-index show them."""
    from transformers import AutoConfig

    from hf_fusion.app import workflow
    from hf_fusion.data.columns import PARTIAL_ATTR
    from hf_fusion.hub.classifier_card import render_classifier_card
    from hf_fusion.tasks.sources import load_task_dir

    config = AutoConfig.from_pretrained(evaluated["classifier"])
    gaps = [{"split": "test", "expected": 11005, "found": 10990, "missing": 15, "missing_examples": ["a/x.wav"]}]
    test = load_task_dir(evaluated["task_dir"], SR, clip_seconds=CLIP_SECONDS)["test"]
    data = type("LoadedTask", (dict,), {})(test=test)  # what load_task_dir returns for a partial download
    setattr(data, PARTIAL_ATTR, gaps)
    with pytest.MonkeyPatch.context() as mp:  # the probe record only: no probe weights to rebuild here
        mp.setattr("hf_fusion.evaluation.classifier_from_probe", lambda *a, **k: type("C", (), {"config": config})())
        mp.setattr("hf_fusion.evaluation.save_classifier", lambda classifier, folder: classifier.config)
        saved = workflow.save_task_classifier(type("Loaded", (), {"model": None})(), data, None, None)
    assert saved.probe["partial"] == "split test: 11,005 expected, 10,990 found, 15 missing"
    card = render_classifier_card(saved, "org/x")
    assert "**Evaluated on an incomplete download**" in card.text and "10,990 found, 15 missing." in card.text
    assert card.data.eval_results[0].dataset_name.endswith("(partial download)")


# ---------------------------------------------------------------- CLI choices and errors


@pytest.mark.slow
def test_save_classifier_needs_one_task_and_one_fold(evaluated, tmp_path, capsys):
    from hf_fusion.app.cli import main

    task_dir = evaluated["task_dir"]
    two = ["evaluate", "--model", "crepe-tiny", "--task-dir", str(task_dir), "--task-dir", str(tmp_path / "other"),
           "--save-classifier", str(tmp_path / "c")]
    other = tmp_path / "other"
    other.mkdir()
    (other / "metadata.csv").write_text((task_dir / "metadata.csv").read_text())
    (other / "audio").symlink_to(task_dir / "audio")
    assert main([*two, "--allow-outside-task-dir", "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "one task" in capsys.readouterr().err
    # a fold task: one classifier per held-out fold, so --folds must pick one
    folds = tmp_path / "folds"
    folds.mkdir()
    rows = (task_dir / "metadata.csv").read_text().splitlines()[1:]
    lines = [f"{r.split(',')[0]},{r.split(',')[1]},{1 + i % 3}" for i, r in enumerate(rows)]
    (folds / "metadata.csv").write_text("file_name,label,fold\n" + "\n".join(lines) + "\n")
    (folds / "audio").symlink_to(task_dir / "audio")
    base = ["evaluate", "--model", "crepe-tiny", "--task-dir", str(folds), "--allow-outside-task-dir",
            "--cache-dir", str(tmp_path / "cache"), "--save-classifier", str(tmp_path / "c")]
    for extra in ([], ["--folds", "1,2"]):
        assert main([*base, *extra]) == 2
        assert "pick one with --folds N" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- units (fast)


def _random_task(dim, classes=3, n=90, seed=0, folds=False):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, dim))
    X = (centres[y] + rng.normal(scale=2.0, size=(n, dim))) * rng.uniform(0.5, 3.0, size=dim) + rng.normal(size=dim)
    group = (np.arange(n) // classes) % 3  # every class in every group
    if folds:
        return TaskFeatures.from_folds(X.astype(np.float32), y, 1 + group, classes, name="foldy")
    idx = {s: np.flatnonzero(group == k) for k, s in enumerate(("train", "valid", "test"))}
    return TaskFeatures.from_splits(*[(X[idx[s]].astype(np.float32), y[idx[s]]) for s in ("train", "valid", "test")],
                                    num_classes=classes, name="splitty")


def test_probe_keeps_the_chosen_runs_and_exports_the_best_validation_seed():
    task = _random_task(12)
    result = linear_probe(task, lrs=(1e-3, 1e-2), seeds=(0, 1, 2), max_epochs=15, keep_weights=True)
    li = result.lrs.index(result.lr)
    assert len(result.runs) == 3 and {r.lr for r in result.runs} == {result.lr}
    assert [r.test_accuracy for r in result.runs] == result.per_seed
    assert [r.valid_accuracy for r in result.runs] == result.valid_accuracy[li]
    run = result.export_run()
    assert run.valid_accuracy == max(result.valid_accuracy[li])
    assert run.seed == result.seeds[int(np.argmax(result.valid_accuracy[li]))]
    assert result.export_run(seed=2).seed == 2
    Xtr = task.splits["train"][0].astype(np.float64)
    np.testing.assert_allclose(run.mean.numpy(), Xtr.mean(0), rtol=1e-12)
    np.testing.assert_allclose(run.std.numpy(), Xtr.std(0), rtol=1e-12)
    Xte, yte = task.splits["test"]
    pred = (((torch.as_tensor(Xte, dtype=torch.float64) - run.mean) / run.std) @ run.weight.double() + run.bias).argmax(1)
    assert float((pred.numpy() == yte).mean()) == run.test_accuracy
    d = result.to_dict()
    assert "runs" not in d and json.loads(json.dumps(d, default=float))["lr"] == result.lr
    with pytest.raises(ValueError, match="seed 7 was not trained"):
        result.export_run(seed=7)
    with pytest.raises(ValueError, match="no folds"):
        result.export_run(fold=1)
    with pytest.raises(ValueError, match="keep_weights=True"):
        linear_probe(task, lrs=(1e-3,), seeds=(0,), max_epochs=2).export_run()


def test_fold_task_exports_one_fold_with_that_folds_statistics():
    config = _crepe_config()
    torch.manual_seed(0)
    model = AudioFusionModel(config).eval()
    task = _random_task(config.hidden_size, folds=True)
    result = linear_probe(task, lrs=(1e-3,), seeds=(0, 1), max_epochs=5, keep_weights=True)
    with pytest.raises(ValueError, match=r"folds \[1, 2, 3\] in turn.*fold=N"):
        classifier_from_probe(model, result, ["a", "b", "c"])
    with pytest.raises(ValueError, match="fold 4 was not held out"):
        result.export_run(fold=4)
    classifier = classifier_from_probe(model, result, ["a", "b", "c"], fold=2, seed=1)
    probe = classifier.config.probe
    assert (probe["fold"], probe["seed"], probe["seed_choice"]) == (2, 1, "given")
    assert probe["test_accuracy"] == result.per_fold["2"][1]
    X, y, fold = task.folds
    train, _, _ = fold_split_indices(fold, y, 2)
    np.testing.assert_allclose(classifier.feature_mean.numpy(), X[train].astype(np.float64).mean(0), rtol=1e-5)
    np.testing.assert_allclose(classifier.feature_std.numpy(), X[train].astype(np.float64).std(0), rtol=1e-5)


def test_classifier_from_probe_refuses_mismatches():
    config = _crepe_config()
    model = AudioFusionModel(config).eval()
    result = linear_probe(_random_task(256), lrs=(1e-3,), seeds=(0,), max_epochs=2, keep_weights=True)
    with pytest.raises(ValueError, match="256-d features but crepe-fusion-3-6's fused embedding has 768"):
        classifier_from_probe(model, result, ["a", "b", "c"])
    result = linear_probe(_random_task(config.hidden_size), lrs=(1e-3,), seeds=(0,), max_epochs=2, keep_weights=True)
    with pytest.raises(ValueError, match="2 label names given for a 3-class probe"):
        classifier_from_probe(model, result, ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        classifier_from_probe(model, result, ["a", "b", "a"])
    classifier = AudioFusionForAudioClassification(AudioFusionConfig(**{**config.to_dict(), "num_labels": 3}))
    with pytest.raises(ValueError, match="weight"):
        classifier.set_probe(torch.zeros(3, 768), torch.zeros(3), torch.zeros(768), torch.ones(768))


def test_ast_task_model_classifier_round_trip(tmp_path, tiny_ast_model):
    """An AST task model (resized input, task normalisation in its front end) travels inside the classifier."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from hf_fusion.app.task_model import resize_input

    model, _ = resize_input(tiny_ast_model, 32)
    model.config.frontend = {**model.config.frontend, "mean": -3.0, "std": 2.5}
    result = linear_probe(_random_task(model.config.hidden_size), lrs=(1e-3,), seeds=(0, 1), max_epochs=3,
                          keep_weights=True)
    classifier = classifier_from_probe(model, result, ["x", "y", "z"], clip_samples=5000)
    save_classifier(classifier, tmp_path / "ast")
    reloaded = AutoModelForAudioClassification.from_pretrained(tmp_path / "ast").eval()
    fe = AutoFeatureExtractor.from_pretrained(tmp_path / "ast")
    assert fe.clip_samples == 5000 and fe.frontend["max_length"] == 32 and fe.frontend["mean"] == -3.0
    assert reloaded.config.backbone_config["max_length"] == 32 and reloaded.config.id2label == {0: "x", 1: "y", 2: "z"}
    from .conftest import make_clips

    clips = make_clips((0.2, 0.5))
    with torch.no_grad():
        want = classifier(**classifier_feature_extractor(classifier.config)(clips, sampling_rate=SR,
                                                                             return_tensors="pt")).logits
        inputs = fe(clips, sampling_rate=SR, return_tensors="pt")
        got = reloaded(**inputs, labels=torch.tensor([0, 2]))
    torch.testing.assert_close(got.logits, want)
    torch.testing.assert_close(got.loss, torch.nn.functional.cross_entropy(want, torch.tensor([0, 2])))


def test_missing_head_is_an_error_or_an_identity_standardisation(tmp_path):
    model = AudioFusionModel(_crepe_config())
    model.save_pretrained(tmp_path / "fused")
    with pytest.raises(ValueError, match="no classification head.*--save-classifier"):
        AudioFusionForAudioClassification.from_pretrained(tmp_path / "fused")
    loose = AudioFusionForAudioClassification.from_pretrained(tmp_path / "fused", allow_missing_weights=True)
    # initialised, not left as meta-device garbage
    assert torch.equal(loose.feature_mean, torch.zeros(768)) and torch.equal(loose.feature_std, torch.ones(768))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loose.fusion.state_dict()[key], value, rtol=0, atol=0)


def test_feature_extractor_clip_samples_is_the_test_crop(tmp_path):
    plain = FusedAudioFeatureExtractor(backbone="crepe")
    cropped = FusedAudioFeatureExtractor(backbone="crepe", clip_samples=8000)
    assert "clip_samples" not in plain.to_dict()  # saved fused models (and feature-cache keys) unchanged
    rng = np.random.default_rng(0)
    long, short = (rng.standard_normal(n).astype(np.float32) * 0.1 for n in (12000, 5000))
    got = cropped([long, short], sampling_rate=SR, return_tensors="pt")
    want = plain([crop_or_pad(long, 8000), crop_or_pad(short, 8000)], sampling_rate=SR, return_tensors="pt")
    torch.testing.assert_close(got["input_values"], want["input_values"], rtol=0, atol=0)
    assert bool(got["attention_mask"].all())
    cropped.save_pretrained(tmp_path)
    assert FusedAudioFeatureExtractor.from_pretrained(tmp_path).clip_samples == 8000
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="clip_samples"):
            FusedAudioFeatureExtractor(backbone="crepe", clip_samples=bad)


def test_auto_class_registration():
    from transformers import AutoModelForAudioClassification

    hf_fusion.register_auto_classes()
    model = AutoModelForAudioClassification.from_config(AudioFusionConfig(**{**_crepe_config().to_dict(),
                                                                             "num_labels": 4}))
    assert isinstance(model, AudioFusionForAudioClassification) and model.classifier.out_features == 4
    assert AudioFusionForAudioClassification._auto_class == "AutoModelForAudioClassification"
