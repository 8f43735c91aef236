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
| edited-config-layers / -backbone | a saved config.json edited to more layers / another backbone | ValueError naming the missing/unexpected weights |
"""

import argparse
import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from hf_fusion import AudioFusionConfig, AudioFusionModel
from hf_fusion.cli import main
from hf_fusion.hub import publish
from hf_fusion.tasks import load_task_dir

from .conftest import TINY_AST

SR = 8000


def _push(argv):
    parser = argparse.ArgumentParser(prog="hf-fusion")
    publish.build_push_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["push", *map(str, argv)])
    return args.func(args)


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
