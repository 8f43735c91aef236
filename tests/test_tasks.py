"""Tests for hf_fusion.tasks: registry, the three sources, folds, clip rules, audio checks and
the synthetic suite. All audio is synthesised here (numpy + soundfile); nothing is downloaded."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, Value

from hf_fusion import protocol
from hf_fusion.tasks import (
    PAPER_TASK_SPECS,
    AudioDecodeError,
    audio_array,
    build_synthetic_suite,
    build_synthetic_task,
    check_audio,
    crop_clips,
    crop_or_pad,
    crop_start,
    fold_splits,
    get_task,
    iter_folds,
    list_tasks,
    load_audiofolder_task,
    load_hub_task,
    load_synthetic_task,
    load_task,
    load_task_dir,
    stratified_valid_indices,
)

# ----------------------------------------------------------------------------- helpers


def tone(freq, seconds, sr, amp=0.3, phase=0.0):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def dominant_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)]


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    """EVAR split folder: 3 string classes x (4 train, 2 valid, 2 test), mixed rates/lengths."""
    d = tmp_path_factory.mktemp("evar_split")
    rows = []
    freqs = {"bird": 500.0, "car": 1000.0, "alarm": 2000.0}
    for label, f in freqs.items():
        (d / "wav" / label).mkdir(parents=True)
        for i in range(8):
            split = "train" if i < 4 else ("valid" if i < 6 else "test")
            sr = 22050 if i % 2 else 16000
            sec = 0.3 + 0.1 * (i % 3)
            rel = f"wav/{label}/{i}.wav"
            sf.write(d / rel, tone(f, sec, sr), sr, subtype="FLOAT")
            rows.append((rel, label, split))
    write_csv(d / "metadata.csv", ["file_name", "label", "split"], rows)
    return d


@pytest.fixture(scope="module")
def fold_dir(tmp_path_factory):
    """EVAR fold folder: integer labels {2, 10, 7}, 4 folds, 5 clips per class per fold."""
    d = tmp_path_factory.mktemp("evar_fold")
    rows = []
    for fold in range(1, 5):
        for label in (2, 10, 7):
            for i in range(5):
                rel = f"f{fold}_{label}_{i}.wav"
                sf.write(d / rel, tone(100.0 * label + i, 0.2, 8000), 8000)
                rows.append((rel, label, fold))
    write_csv(d / "metadata.csv", ["file_name", "label", "fold"], rows)
    return d


# ----------------------------------------------------------------------------- registry

PAPER_TABLE = {  # docs/reference.md, "Tasks"
    "esc50": (50, 5.0, "fold", 5), "us8k": (10, 4.0, "fold", 10), "spcv2": (35, 1.0, "split", None),
    "vc1": (1251, 8.2, "split", None), "voxforge": (6, 5.8, "split", None), "cremad": (6, 2.5, "split", None),
    "gtzan": (10, 30.0, "split", None), "nsynth": (11, 4.0, "split", None), "surge": (88, 4.0, "split", None),
}


def test_registry_matches_paper_table():
    assert list_tasks() == list(PAPER_TABLE)
    for name, (n_classes, clip, kind, n_folds) in PAPER_TABLE.items():
        spec = get_task(name)
        assert (spec.n_classes, spec.clip_seconds, spec.split_kind, spec.n_folds) == (n_classes, clip, kind, n_folds)
        assert spec.group == ("late" if name in ("esc50", "us8k", "gtzan") else "middle")
    assert tuple(PAPER_TASK_SPECS) == protocol.PAPER_TASKS == tuple(PAPER_TABLE)
    assert get_task("ESC50") is PAPER_TASK_SPECS["esc50"]
    assert get_task("esc50").folds == [1, 2, 3, 4, 5]
    assert get_task("esc50").hub.dataset_id == "ashraq/esc50"
    assert get_task("spcv2").hub is None  # google/speech_commands: a loading script, another test split
    for spec in PAPER_TASK_SPECS.values():  # the official counts prepare checks: per split or fold of the task
        assert set(spec.counts) <= (set(spec.folds) or set(protocol.SPLITS))
    totals = {name: sum(spec.counts.values()) for name, spec in PAPER_TASK_SPECS.items()}
    assert totals == {"esc50": 2000, "us8k": 8732, "spcv2": 105829, "vc1": 153516, "voxforge": 0, "cremad": 7438,
                      "gtzan": 930, "nsynth": 305979, "surge": 0}


def test_unknown_task_lists_known_names():
    with pytest.raises(KeyError) as err:
        get_task("esc-fifty")
    msg = str(err.value)
    assert "esc-fifty" in msg
    for name in list_tasks(include_synthetic=True):
        assert name in msg
    with pytest.raises(KeyError, match="known tasks: esc50, us8k"):
        load_task("nosuchtask")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task("./nosuchfolder")


# ----------------------------------------------------------------------------- (a) EVAR folders


def test_evar_split_folder(split_dir):
    dd = load_task_dir(split_dir, sampling_rate=16000)
    assert list(dd) == ["train", "valid", "test"]
    assert [len(dd[s]) for s in dd] == [12, 6, 6]
    assert dd["train"].features["label"] == ClassLabel(names=["alarm", "bird", "car"])
    assert dd["train"].features["audio"] == Audio(sampling_rate=16000)
    freqs = {"bird": 500.0, "car": 1000.0, "alarm": 2000.0}
    names = dd["train"].features["label"].names
    for ex in dd["test"]:
        wave, sr = audio_array(ex["audio"])
        assert sr == 16000 and wave.dtype == np.float32
        i = int(Path(ex["file_name"]).stem)
        assert abs(len(wave) - (0.3 + 0.1 * (i % 3)) * 16000) <= 2  # resampled length
        assert abs(dominant_hz(wave, sr) - freqs[names[ex["label"]]]) < 10


def test_evar_native_rate_and_root(split_dir, tmp_path):
    # metadata elsewhere, audio under root=
    meta = tmp_path / "meta" / "mytask.csv"
    meta.parent.mkdir()
    meta.write_text((split_dir / "metadata.csv").read_text())
    dd = load_task_dir(tmp_path / "unused", metadata=meta, root=split_dir)
    rates = {audio_array(ex["audio"])[1] for ex in dd["train"]}
    assert rates == {16000, 22050}  # sampling_rate=None keeps native rates


def fold_of(dd, row, other=False):
    """The fold of ``row`` in ``dd["all"]`` (``other``: some other fold)."""
    folds = sorted(set(dd["all"]["fold"]))
    f = dd["all"][row]["fold"]
    return next(x for x in folds if x != f) if other else f


def test_evar_fold_folder_int_labels(fold_dir):
    dd = load_task_dir(fold_dir, sampling_rate=8000)
    assert list(dd) == ["all"] and len(dd["all"]) == 60
    assert dd["all"].features["label"].names == ["2", "7", "10"]  # numeric order
    assert sorted(set(dd["all"]["fold"])) == [1, 2, 3, 4]
    row = dd["all"][0]
    assert row["file_name"] == "f1_2_0.wav" and row["label"] == 0 and row["fold"] == 1
    dd3 = load_task_dir(fold_dir, sampling_rate=8000, test_fold=3)
    assert set(dd3["test"]["fold"]) == {3} and len(dd3["test"]) == 15
    # fold data cropped without test_fold: every clip once (test crop from 0), plus the random training
    # crops of the clips longer than the clip length, keyed by their row in "all"
    lengths = [len(audio_array(ex["audio"])[0]) for ex in dd["all"]]
    cropped = load_task_dir(fold_dir, sampling_rate=8000, clip_seconds=0.1, seed=5)
    n = 800
    long_rows = [i for i, k in enumerate(lengths) if k > n]
    assert len(long_rows) == 60  # every 0.2 s clip is longer than 0.1 s
    assert list(load_task_dir(fold_dir, sampling_rate=8000, clip_seconds=0.2)) == ["all"]  # all fit: one crop each
    assert list(cropped) == ["all", "all_train_crops"] and len(cropped["all"]) == 60
    assert cropped["all_train_crops"]["source_row"] == long_rows
    for i in (0, long_rows[0]):
        wave = audio_array(dd["all"][i]["audio"])[0]
        np.testing.assert_array_equal(cropped["all"][i]["input_values"], crop_or_pad(wave, n, 0))
    j = long_rows[-1]
    wave = audio_array(dd["all"][j]["audio"])[0]
    start = crop_start(len(wave), n, True, seed=5, index=dd["all"][j]["file_name"])  # by file, not by row
    np.testing.assert_array_equal(cropped["all_train_crops"][len(long_rows) - 1]["input_values"],
                                  crop_or_pad(wave, n, start))
    # with test_fold the same crops: train/valid take the training crop of their row, test the crop from 0
    held = load_task_dir(fold_dir, sampling_rate=8000, clip_seconds=0.1, seed=5, test_fold=fold_of(dd, j, other=True))
    rows = {name: i for i, name in enumerate(dd["all"]["file_name"])}
    for split in ("train", "valid"):
        for ex in held[split]:
            i = rows[ex["file_name"]]
            wave = audio_array(dd["all"][i]["audio"])[0]
            expected = crop_or_pad(wave, n, crop_start(len(wave), n, True, seed=5, index=ex["file_name"]))
            np.testing.assert_array_equal(ex["input_values"], expected)
    # a registered fold task read from an EVAR folder, cropped to its 4.0 s clips
    with pytest.warns(UserWarning, match="3 classes, the paper's task has 10"):
        us = load_task("us8k", 8000, root=fold_dir, test_fold=4, crop=True)
    assert us["test"].features["input_values"].length == 4 * 8000
    assert set(us["test"]["fold"]) == {4}


def test_missing_audio_file_is_named(split_dir, tmp_path):
    rows = [("a.wav", "x", "train"), ("gone/b.wav", "y", "valid"), ("c.wav", "x", "test")]
    sf.write(tmp_path / "a.wav", tone(300, 0.1, 8000), 8000)
    sf.write(tmp_path / "c.wav", tone(300, 0.1, 8000), 8000)
    write_csv(tmp_path / "metadata.csv", ["file_name", "label", "split"], rows)
    with pytest.raises(FileNotFoundError, match="gone/b.wav") as err:
        load_task_dir(tmp_path)
    assert "a.wav" not in str(err.value).split("found under")[1]


@pytest.mark.parametrize(
    "header, rows, pattern",
    [
        (["path", "label", "split"], [("a.wav", "x", "train")], r"bad columns \['path', 'label', 'split'\].*missing \['file_name'\]"),
        (["file_name", "label"], [("a.wav", "x")], "no split or fold column"),
        (["file_name", "label", "split", "fold"], [("a.wav", "x", "train", 1)], "both split and fold"),
        (["file_name", "label", "split"], [("a.wav", "x", "holdout")], r"split values.*'holdout'"),
        (["file_name", "label", "fold"], [("a.wav", "x", "one")], r"fold values must be integers.*'one'"),
    ],
)
def test_bad_metadata_is_explained(tmp_path, header, rows, pattern):
    write_csv(tmp_path / "metadata.csv", header, rows)
    with pytest.raises(ValueError, match=pattern):
        load_task_dir(tmp_path)


def test_stereo_becomes_channel_mean(tmp_path):
    sr = 16000
    left, right = tone(440, 0.25, sr), -0.5 * tone(440, 0.25, sr) + tone(1500, 0.25, sr, amp=0.1)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), sr, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", left, sr, subtype="FLOAT")
    write_csv(tmp_path / "metadata.csv", ["file_name", "label", "split"],
              [("st.wav", "a", "train"), ("mono.wav", "b", "valid"), ("mono.wav", "b", "test")])
    dd = load_task_dir(tmp_path, sampling_rate=sr)
    wave, _ = audio_array(dd["train"][0]["audio"])
    assert wave.shape == left.shape
    np.testing.assert_allclose(wave, (left + right) / 2, atol=1e-6)
    # audio_array also averages a (channels, samples) array given as a dict
    w2, _ = audio_array({"array": np.stack([left, right]), "sampling_rate": sr})
    np.testing.assert_allclose(w2, (left + right) / 2, atol=1e-7)


def test_resampling_to_requested_rate(tmp_path):
    sf.write(tmp_path / "hi.wav", tone(1000, 0.5, 44100), 44100, subtype="FLOAT")
    write_csv(tmp_path / "metadata.csv", ["file_name", "label", "split"],
              [("hi.wav", "a", s) for s in ("train", "valid", "test")])
    for sr in (16000, 32000):
        wave, got = audio_array(load_task_dir(tmp_path, sampling_rate=sr)["test"][0]["audio"])
        assert got == sr and abs(len(wave) - sr // 2) <= 2
        assert abs(dominant_hz(wave, sr) - 1000) < 5


# ----------------------------------------------------------------------------- (b) audiofolder


def test_audiofolder_split_dirs(tmp_path):
    root = tmp_path / "af"
    for split, n in (("train", 4), ("validation", 2), ("test", 2)):
        for label in ("dog", "cat", "cow"):
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                sf.write(root / split / label / f"{i}.wav", tone(300, 0.2, 22050), 22050)
    dd = load_audiofolder_task(root, sampling_rate=16000, cache_dir=tmp_path / "cache")
    assert list(dd) == ["train", "valid", "test"] and [len(dd[s]) for s in dd] == [12, 6, 6]
    assert dd["train"].features["label"].names == ["cat", "cow", "dog"]
    assert audio_array(dd["valid"][0]["audio"])[1] == 16000
    # load_task on a plain folder dispatches to audiofolder
    assert len(load_task(root, cache_dir=tmp_path / "cache2")["test"]) == 6


def test_audiofolder_with_fold_metadata(tmp_path):
    root = tmp_path / "af"
    root.mkdir()
    rows = []
    for i in range(24):
        sf.write(root / f"{i}.wav", tone(200 + i, 0.1, 8000), 8000)
        rows.append((f"{i}.wav", ["low", "high"][i % 2], 1 + i % 3))
    write_csv(root / "metadata.csv", ["file_name", "label", "fold"], rows)  # audiofolder reads it too
    dd = load_audiofolder_task(root, test_fold=2, cache_dir=tmp_path / "cache")
    assert set(dd["test"]["fold"]) == {2} and len(dd["test"]) == 8
    assert dd["train"].features["label"].names == ["high", "low"]


# ----------------------------------------------------------------------------- (c) Hub / save_to_disk


def _esc_like(tmp_path, n_per=4, folds=3):
    """An ESC-50-like dataset (one 'train' split) with Hub-style column names, saved to disk."""
    files, cats, fl = [], [], []
    for f in range(1, folds + 1):
        for cat in ("rain", "dog", "clock"):
            for i in range(n_per):
                p = tmp_path / f"{f}-{cat}-{i}.wav"
                sf.write(p, tone(150 + 50 * i, 0.2, 44100), 44100)
                files.append(str(p)), cats.append(cat), fl.append(f)
    ds = Dataset.from_dict({"filename": [os.path.basename(p) for p in files], "wav": files, "category": cats,
                            "fold": fl},
                           features=Features({"filename": Value("string"), "wav": Audio(), "category": Value("string"),
                                              "fold": Value("int64")}))
    path = tmp_path / "saved"
    DatasetDict(train=ds).save_to_disk(str(path))
    return path


def test_saved_dataset_with_column_mapping(tmp_path):
    path = _esc_like(tmp_path)
    dd = load_hub_task(path, sampling_rate=16000, audio_column="wav", label_column="category", fold_column="fold")
    assert list(dd) == ["all"] and len(dd["all"]) == 36
    assert dd["all"].features["label"].names == ["clock", "dog", "rain"]
    assert dd["all"].features["audio"] == Audio(sampling_rate=16000)
    assert {"audio", "label", "fold", "filename"} <= set(dd["all"].column_names)
    ex = dd["all"][0]
    assert ex["filename"] == "1-rain-0.wav" and dd["all"].features["label"].int2str(ex["label"]) == "rain"
    assert audio_array(ex["audio"])[1] == 16000
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\]"):
        load_hub_task(path, audio_column="wav")


def test_registered_task_from_saved_copy_uses_documented_mapping(tmp_path):
    path = _esc_like(tmp_path)
    ds = DatasetDict.load_from_disk(str(path))["train"].rename_column("wav", "audio")
    ds.save_to_disk(str(tmp_path / "esc"))  # Dataset (no dict) with ashraq/esc50 column names
    with pytest.warns(UserWarning, match="3 classes, the paper's task has 50"):
        dd = load_task("esc50", 16000, source=tmp_path / "esc", test_fold=1, seed=3)
    assert list(dd) == ["train", "valid", "test"]
    assert set(dd["test"]["fold"]) == {1} and len(dd["test"]) == 12
    with pytest.raises(ValueError, match="no Hub copy that follows the paper's split: prepare the official download"):
        load_task("gtzan")


def test_saved_dict_splits_classlabel_and_drop(tmp_path):
    names = ["yes", "no", "_silence_"]
    feats = Features({"audio": Audio(), "label": ClassLabel(names=names)})
    parts = {}
    for split, n in (("train", 9), ("validation", 3), ("test", 3)):
        files = []
        for i in range(n):
            p = tmp_path / f"{split}{i}.wav"
            sf.write(p, tone(400, 0.1, 16000), 16000)
            files.append(str(p))
        parts[split] = Dataset.from_dict({"audio": files, "label": [i % 3 for i in range(n)]}, features=feats)
    DatasetDict(parts).save_to_disk(str(tmp_path / "sc"))
    dd = load_hub_task(tmp_path / "sc", drop_labels=["_silence_"])
    assert list(dd) == ["train", "valid", "test"]
    assert dd["train"].features["label"].names == ["yes", "no"]  # existing ClassLabel order kept
    assert len(dd["train"]) == 6 and len(dd["valid"]) == 2
    assert list(dd["train"]["label"]) == [0, 1, 0, 1, 0, 1]
    # split column instead of splits, with a custom value map
    flat = Dataset.from_dict({"audio": [str(tmp_path / f"train{i}.wav") for i in range(9)],
                              "y": ["b", "a", "c"] * 3, "part": ["tr", "tr", "tr", "dv", "dv", "dv", "ev", "ev", "ev"]},
                             features=Features({"audio": Audio(), "y": Value("string"), "part": Value("string")}))
    flat.save_to_disk(str(tmp_path / "flat"))
    with pytest.raises(ValueError, match=r"values \['dv', 'ev', 'tr'\] not mapped"):
        load_hub_task(tmp_path / "flat", label_column="y", split_column="part")
    dd = load_hub_task(tmp_path / "flat", label_column="y", split_column="part",
                       split_map={"tr": "train", "dv": "valid", "ev": "test"})
    assert [len(dd[s]) for s in dd] == [3, 3, 3] and "part" not in dd["train"].column_names
    assert list(dd["test"]["label"]) == [1, 0, 2]  # b, a, c with sorted names a, b, c


# ----------------------------------------------------------------------------- folds


def test_fold_splits_properties(fold_dir):
    ds = load_task_dir(fold_dir)["all"]
    for test_fold, dd in iter_folds(ds, valid_fraction=0.1, seed=0):
        names = {s: list(dd[s]["file_name"]) for s in dd}
        assert set(dd["test"]["fold"]) == {test_fold}
        assert test_fold not in set(dd["train"]["fold"]) | set(dd["valid"]["fold"])
        assert len(names["test"]) == 15
        all_names = names["train"] + names["valid"] + names["test"]
        assert len(all_names) == len(set(all_names)) == 60  # disjoint and complete
        assert len(dd["valid"]) == round(0.1 * 45)  # 10 % of the other folds
        assert set(dd["valid"]["label"]) == {0, 1, 2}  # every class in valid
    a, b = fold_splits(ds, 2, seed=5), fold_splits(ds, 2, seed=5)
    assert list(a["valid"]["file_name"]) == list(b["valid"]["file_name"])
    others = [list(fold_splits(ds, 2, seed=s)["valid"]["file_name"]) for s in range(6, 12)]
    assert any(o != list(a["valid"]["file_name"]) for o in others)
    with pytest.raises(ValueError, match=r"test_fold=9 is not one of the folds \[1, 2, 3, 4\]"):
        fold_splits(ds, 9)


def test_stratified_valid_small_classes():
    labels = np.array([0] * 40 + [1] * 2 + [2] * 1 + [3] * 7)
    pos = stratified_valid_indices(labels, 0.1, seed=1)
    got = np.bincount(labels[pos], minlength=4)
    assert got[1] == 1 and got[2] == 0 and got[3] >= 1 and 1 <= got[0] <= 40 - 1
    assert got.sum() >= round(0.1 * len(labels))
    assert np.all(np.diff(pos) > 0)
    np.testing.assert_array_equal(pos, stratified_valid_indices(labels, 0.1, seed=1))


# ----------------------------------------------------------------------------- clips


def test_crop_start_rules():
    starts = [crop_start(1000, 100, True, seed=0, index=i) for i in range(20)]
    assert starts == [crop_start(1000, 100, True, seed=0, index=i) for i in range(20)]
    assert all(0 <= s <= 900 for s in starts) and len(set(starts)) > 10
    assert starts != [crop_start(1000, 100, True, seed=1, index=i) for i in range(20)]
    assert crop_start(1000, 100, False, seed=3, index=4) == 0  # test split
    assert crop_start(50, 100, True, seed=3, index=4) == 0  # short clip: no crop
    x = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(crop_or_pad(x, 8), [1, 2, 3, 4, 5, 0, 0, 0])
    np.testing.assert_array_equal(crop_or_pad(x, 3, start=2), [3, 4, 5])


def test_crop_clips_train_random_test_at_zero(split_dir):
    dd = load_task_dir(split_dir, sampling_rate=16000)
    clip = 0.35
    n = round(clip * 16000)
    a = crop_clips(dd, clip, seed=0).with_format("numpy", columns=["input_values"], output_all_columns=True)
    b = crop_clips(dd, clip, seed=0).with_format("numpy", columns=["input_values"], output_all_columns=True)
    c = crop_clips(dd, clip, seed=1).with_format("numpy", columns=["input_values"], output_all_columns=True)
    assert a["train"].features["input_values"].length == n
    saw_random = False
    for split in dd:
        for i in range(len(dd[split])):
            full, _ = audio_array(dd[split][i]["audio"])
            got = a[split][i]["input_values"]
            assert got.shape == (n,) and got.dtype == np.float32
            np.testing.assert_array_equal(got, b[split][i]["input_values"])  # deterministic
            if len(full) <= n:  # zero-padded at the end
                np.testing.assert_array_equal(got[: len(full)], full)
                assert not got[len(full):].any()
            elif split == "test":
                np.testing.assert_array_equal(got, full[:n])
            else:
                s = crop_start(len(full), n, True, 0, dd[split][i]["file_name"])
                np.testing.assert_array_equal(got, full[s : s + n])
                saw_random |= s > 0
                saw_random |= not np.array_equal(got, c[split][i]["input_values"])
    assert saw_random
    assert len(load_task_dir(split_dir, 16000, clip_seconds=clip)["valid"][0]["input_values"]) == n
    with pytest.raises(ValueError, match="no fixed sampling rate"):
        crop_clips(load_task_dir(split_dir), clip)


# ----------------------------------------------------------------------------- corrupt audio


def test_check_audio_raise_or_skip(split_dir, tmp_path):
    for p in split_dir.rglob("*.wav"):
        dst = tmp_path / p.relative_to(split_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
    (tmp_path / "wav/car/5.wav").write_bytes(b"RIFF\x00\x00not really audio" * 10)
    (tmp_path / "metadata.csv").write_text((split_dir / "metadata.csv").read_text())
    dd = load_task_dir(tmp_path, sampling_rate=16000)
    with pytest.raises(AudioDecodeError, match=r"wav/car/5\.wav"):
        check_audio(dd)
    clean, skipped = check_audio(dd, on_error="skip")
    assert len(skipped["valid"]) == 1 and skipped["valid"][0].endswith("wav/car/5.wav")
    assert len(clean["valid"]) == len(dd["valid"]) - 1 and skipped["train"] == []
    assert len(clean["train"]) == len(dd["train"])


# ----------------------------------------------------------------------------- synthetic suite


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synthetic_deterministic_and_seeded(tmp_path):
    a = build_synthetic_suite(tmp_path / "a", seed=0, n_per_class=5)
    b = build_synthetic_suite(tmp_path / "b", seed=0, n_per_class=5)
    c = build_synthetic_suite(tmp_path / "c", seed=1, n_per_class=5, tasks=["pitch"])
    assert [p.name for p in a] == ["synth_pitch", "synth_timbre", "synth_events", "synth_rhythm"]
    for pa, pb in zip(a, b):
        assert _digest(pa) == _digest(pb)
    wav_a = {k: v for k, v in _digest(a[0]).items() if k.endswith(".wav")}
    wav_c = {k: v for k, v in _digest(c[0]).items() if k.endswith(".wav")}
    assert wav_a.keys() == wav_c.keys() and all(wav_a[k] != wav_c[k] for k in wav_a)
    for p in a:
        spec = get_task(p.name)
        dd = load_task_dir(p)
        assert dd["train"].features["label"].num_classes == spec.n_classes
        assert [len(dd[s]) for s in dd] == [3 * spec.n_classes, spec.n_classes, spec.n_classes]
        wave, sr = audio_array(dd["test"][0]["audio"])
        assert sr == 16000 and wave.shape == (16000,) and 0.005 < np.abs(wave).max() <= 1.0


def test_synthetic_default_sizes(tmp_path):
    from hf_fusion.tasks.synthetic import DEFAULT_N_PER_CLASS

    sizes = {n: DEFAULT_N_PER_CLASS[n] * get_task(n).n_classes for n in DEFAULT_N_PER_CLASS}
    assert all(240 <= s <= 400 for s in sizes.values()), sizes


def test_synthetic_idempotent_and_recovers(tmp_path):
    task = build_synthetic_task(tmp_path, "rhythm", n_per_class=5)
    ref = _digest(task)
    info_mtime = (task / "task.json").stat().st_mtime_ns
    assert build_synthetic_task(tmp_path, "synth_rhythm", n_per_class=5) == task
    assert (task / "task.json").stat().st_mtime_ns == info_mtime  # reused, not rewritten
    # half-written folders are rebuilt: a missing wav, a missing task.json, a leftover temp dir
    (task / "audio/4hz/4hz_0003.wav").unlink()
    build_synthetic_task(tmp_path, "rhythm", n_per_class=5)
    assert _digest(task) == ref
    (task / "task.json").unlink()
    (task / "audio/2hz/2hz_0000.wav").write_bytes(b"truncated")
    build_synthetic_task(tmp_path, "rhythm", n_per_class=5)
    assert _digest(task) == ref
    stale = tmp_path / ".synth_rhythm.tmp-999999999-deadbeef"
    stale.mkdir()
    build_synthetic_task(tmp_path, "rhythm", n_per_class=6)  # new parameters -> rebuilt
    assert len(load_task_dir(task)["train"]) == 6 * 4 and not stale.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["synth_rhythm"]  # no temp/trash left


def test_synthetic_labels_are_what_they_claim(tmp_path):
    """Pitch clips carry their chroma (autocorrelation f0); rhythm clips their modulation rate."""
    from hf_fusion.tasks.synthetic import RHYTHM_RATES, synth_clip

    sr, hits, total = 16000, 0, 0
    for c in range(12):
        for i in range(4):
            x = synth_clip("pitch", c, i).astype(np.float64)
            seg = x[4000:12000]
            ac = np.correlate(seg, seg, "full")[len(seg) - 1:]
            lo, hi = sr // 520, sr // 60
            lag = lo + np.argmax(ac[lo:hi])
            f0 = sr / lag
            chroma = int(round(12 * np.log2(f0 / 440.0) + 69)) % 12
            hits += chroma == c
            total += 1
    assert hits / total >= 0.8, hits / total
    hits = 0
    for c, rate in enumerate(RHYTHM_RATES):
        for i in range(4):
            x = synth_clip("rhythm", c, i).astype(np.float64)
            env = np.convolve(x**2, np.ones(160) / 160, "same")[::160]  # 100 Hz envelope
            spec = np.abs(np.fft.rfft((env - env.mean()) * np.hanning(len(env)), 1000))
            freqs = np.fft.rfftfreq(1000, 0.01)
            band = (freqs > 1.5) & (freqs < 15)
            peak = freqs[band][np.argmax(spec[band])]
            hits += abs(peak - rate) <= 0.15 * rate
    assert hits / 24 >= 0.8, hits / 24


def test_load_synthetic_through_load_task(tmp_path):
    dd = load_task("synth_events", out_dir=tmp_path, n_per_class=5)
    assert dd["train"].features["label"].names == sorted(
        ["white", "pink", "brown", "blue", "clicks", "bursts", "chirp_up", "chirp_down"])
    dd2 = load_synthetic_task("events", out_dir=tmp_path, n_per_class=5, sampling_rate=8000)
    assert audio_array(dd2["valid"][0]["audio"])[0].shape == (8000,)


def test_loader_option_tables_match_the_functions_that_declare_them():
    """SPLIT_OPTIONS / COLUMN_MAPPING are the one list of the options the loaders forward: their names and
    defaults are those of load_task and normalize_task_data (the explicit signatures)."""
    import inspect

    from hf_fusion.tasks import sources

    task_params = inspect.signature(sources.load_task).parameters
    assert {name: task_params[name].default for name in sources.SPLIT_OPTIONS} == sources.SPLIT_OPTIONS
    mapping_params = inspect.signature(sources.normalize_task_data).parameters
    assert all(name in mapping_params for name in sources.COLUMN_MAPPING)
    assert sources._split_options({"seed": 3, "streaming": False}) == (
        {**sources.SPLIT_OPTIONS, "seed": 3}, {"streaming": False})


def test_load_tasks_crops_inside_main_process_first(tmp_path, monkeypatch):
    """Under `accelerate launch` the main process crops first and the others read its crop files: every
    task is loaded inside Accelerator.main_process_first (tests/test_multiprocess.py runs it for real)."""
    import contextlib

    import accelerate

    import hf_fusion.tasks
    from hf_fusion.app import workflow

    events = []

    class RecordingAccelerator:
        @contextlib.contextmanager
        def main_process_first(self):
            events.append("enter")
            yield
            events.append("exit")

    monkeypatch.setattr(accelerate, "Accelerator", RecordingAccelerator)
    monkeypatch.setattr(hf_fusion.tasks, "load_task", lambda *a, **k: events.append("load") or {"split": None})
    task = tmp_path / "t"
    task.mkdir()
    (task / "metadata.csv").write_text("file_name,label,split\na.wav,x,train\n")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it for each process
    tasks = workflow.load_tasks([], [str(task)], 16000, clip_seconds=1.0, cache_dir=tmp_path / "cache")
    assert list(tasks) == ["t"] and events == ["enter", "load", "exit"]
    events.clear()
    monkeypatch.delenv("WORLD_SIZE")  # one process: no Accelerator is built
    workflow.load_tasks([], [str(task)], 16000, clip_seconds=1.0, cache_dir=tmp_path / "cache")
    assert events == ["load"]


def test_crops_are_drawn_per_listed_file_not_per_row_or_base_name():
    from hf_fusion.tasks.clips import clip_key

    same_base = [clip_key({"file_name": f"id{i}/clip/00001.wav", "audio": {"path": f"/data/id{i}/clip/00001.wav"}},
                          "audio", 0) for i in range(20)]
    assert len(set(same_base)) == 20  # VoxCeleb-style names: every file its own crop
    assert len({crop_start(100_000, 1000, True, 0, key) for key in same_base}) > 15
    assert clip_key({"file_name": "a.wav"}, "audio", 0) == clip_key({"file_name": "a.wav"}, "audio", 7)  # not the row
    assert clip_key({"audio": {"path": "/x/y.wav"}}, "audio", 3) == "y.wav"
    assert clip_key({"audio": {"bytes": b"RIFF", "path": None}}, "audio", 3) == 3  # embedded bytes: the row
