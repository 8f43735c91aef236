"""``hf-fusion prepare``: tiny copies of the nine official downloads (tests/official_downloads.py) through EVAR's
rules, the count checks, ``--allow-partial``, ``--splits`` offline, fetching with a hash check, the Hub dataset
round trip, EVAR's own CSVs, the clip lengths of prepared folders, and decoding of UrbanSound8K's encodings."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datasets import Audio

from hf_fusion.app import workflow
from hf_fusion.app.cli import main as cli_main
from hf_fusion.data.decoding import decode_audio
from hf_fusion.tasks import (
    PAPER_TASK_SPECS,
    DownloadLayoutError,
    IncompleteDownloadError,
    MissingSplitDefinition,
    load_task,
    load_task_dir,
    prepare_task,
    read_task_info,
)
from hf_fusion.tasks import split_definitions
from hf_fusion.tasks.prepare import download_problems
from hf_fusion.tasks.hub_dataset import export_prepared

from . import official_downloads as official


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    root = tmp_path_factory.mktemp("downloads")
    return {task: official.build(task, root) for task in official.BUILDERS}


@pytest.fixture(scope="module")
def prepared(downloads, tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks")
    for task, (download, splits) in downloads.items():
        prepare_task(task, download, out, splits=splits, allow_partial=True, fetch=False, progress=False)
    return out


def rows_of(folder: Path) -> list[dict]:
    with open(folder / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def by_key(rows, key="split"):
    out = {}
    for r in rows:
        out.setdefault(r[key], []).append(r["file_name"])
    return out


# ----------------------------------------------------------------------------- EVAR's rule, task by task


def test_esc50_rows_follow_the_csv(prepared):
    rows = rows_of(prepared / "esc50")
    assert len(rows) == 10 and {r["label"] for r in rows} == {"dog", "rain"}
    assert all(r["file_name"] == f"audio/{r['fold']}-{100032 + int(r['fold'])}-A-{0 if r['label'] == 'dog' else 10}.wav"
               for r in rows)
    assert sorted({r["fold"] for r in rows}) == ["1", "2", "3", "4", "5"]


def test_us8k_rows_use_fold_folders_and_class_names(prepared):
    rows = rows_of(prepared / "us8k")
    assert all(r["file_name"].startswith(f"audio/fold{r['fold']}/") for r in rows)
    assert {r["label"] for r in rows} == {"dog_bark", "gun_shot"}
    assert all(r["file_name"].split("-")[1] == ("3" if r["label"] == "dog_bark" else "6") for r in rows)


def test_spcv2_lists_give_valid_and_test_and_background_noise_is_left_out(prepared):
    rows = rows_of(prepared / "spcv2")
    splits = by_key(rows)
    assert len(splits["valid"]) == 3
    assert all(n.endswith("0c2ca723_nohash_0.wav") for n in splits["valid"])
    assert all(n.endswith("0f7dc557_nohash_0.wav") for n in splits["test"])
    assert len(splits["train"]) == 6 and not any("_background_noise_" in r["file_name"] for r in rows)
    assert all(r["label"] == r["file_name"].split("/")[0] for r in rows)
    info = read_task_info(prepared / "spcv2")
    assert info["left_out"] == {"_background_noise_/ (not a word)": 1}


def test_spcv2_test_list_wins_over_the_valid_list(downloads, tmp_path):
    download = tmp_path / "spc"
    shutil.copytree(downloads["spcv2"][0], download)
    test_name = (download / "testing_list.txt").read_text().split()[0]
    with open(download / "validation_list.txt", "a") as f:
        f.write(test_name + "\n")
    folder = prepare_task("spcv2", download, tmp_path / "out", allow_partial=True, progress=False)
    assert {r["file_name"]: r["split"] for r in rows_of(folder)}[test_name] == "test"


def test_vc1_iden_split_codes(prepared):
    rows = rows_of(prepared / "vc1")
    assert {r["split"] for r in rows if "/00001.wav" in r["file_name"] or "/00002.wav" in r["file_name"]} == {"train"}
    assert {r["split"] for r in rows if r["file_name"].endswith("00003.wav")} == {"valid"}
    assert {r["split"] for r in rows if r["file_name"].endswith("00004.wav")} == {"test"}
    assert all(r["file_name"].startswith(f"wav/{r['label']}/") for r in rows)


def test_voxforge_follows_evars_session_list(prepared, downloads):
    rows = rows_of(prepared / "voxforge")
    with open(downloads["voxforge"][1], newline="") as f:
        listed = {r["file_name"]: (r["label"], r["split"]) for r in csv.DictReader(f)}
    assert {r["file_name"]: (r["label"], r["split"]) for r in rows} == listed
    sessions = {}
    for r in rows:
        sessions.setdefault(r["file_name"].split("/")[0], set()).add(r["split"])
    assert all(len(s) == 1 for s in sessions.values())


def test_cremad_label_is_the_emotion_code_and_unlisted_files_are_left_out(prepared):
    rows = rows_of(prepared / "cremad")
    assert {r["label"] for r in rows} == {"ANG", "SAD"}
    assert all(r["file_name"].startswith("AudioWAV/") and r["file_name"].split("_")[2] == r["label"] for r in rows)
    assert "AudioWAV/1040_ITH_SAD_XX.wav" not in {r["file_name"] for r in rows}
    assert by_key(rows)["test"] == ["AudioWAV/1004_DFA_ANG_XX.wav", "AudioWAV/1004_DFA_SAD_XX.wav"]
    assert sum(read_task_info(prepared / "cremad")["left_out"].values()) == 1


def test_cremad_csv_whose_label_contradicts_the_file_name_is_refused(downloads, tmp_path):
    download, splits = downloads["cremad"]
    text = Path(splits).read_text().replace("1001_DFA_ANG_XX.wav,ANG", "1001_DFA_ANG_XX.wav,SAD")
    bad = tmp_path / "cremad.csv"
    bad.write_text(text)
    with pytest.raises(ValueError, match=r"1001_DFA_ANG_XX.wav: label 'SAD' is not the emotion code"):
        prepare_task("cremad", download, tmp_path / "out", splits=bad, allow_partial=True, progress=False)


def test_gtzan_reads_au_files_and_leaves_out_what_the_filtered_lists_leave_out(prepared):
    rows = rows_of(prepared / "gtzan")
    listed = official.gtzan_listed()
    for r in rows:
        entry = r["file_name"][len("genres/"):].replace(".au", ".wav")
        assert r["file_name"].endswith(".au") and entry in listed[r["split"]]
        assert r["label"] == entry.split("/")[0]
    assert read_task_info(prepared / "gtzan")["left_out"] == {"outside the fault-filtered lists": 1}


def test_nsynth_label_is_the_instrument_family(prepared):
    rows = rows_of(prepared / "nsynth")
    assert {r["label"] for r in rows} == {"guitar", "organ"}
    assert all(r["file_name"].startswith(f"nsynth-{r['split']}/audio/{r['label']}_") for r in rows)


def test_surge_label_is_the_note_and_split_the_preset(prepared):
    rows = rows_of(prepared / "surge")
    assert {r["label"] for r in rows} == {"060", "072"}
    assert by_key(rows)["test"] == ["surge-patches-Pads-Soft-velocity64/060.ogg", "surge-patches-Pads-Soft-velocity64/072.ogg"]


def test_task_json_records_the_registry_and_the_provenance(prepared, downloads):
    for task in official.BUILDERS:
        info = read_task_info(prepared / task)
        spec = PAPER_TASK_SPECS[task]
        assert info["task"] == task and info["clip_seconds"] == spec.clip_seconds
        assert info["complete"] is False and info["gaps"]  # a tiny copy is a partial download
        assert Path(info["audio_root"]).is_dir()
        assert sum(info["counts"].values()) == len(rows_of(prepared / task))
    gtzan = read_task_info(prepared / "gtzan")["split_definition"]
    assert [d["obtained"] for d in gtzan] == ["shipped"] * 3 and all(d["matches_published"] for d in gtzan)
    cremad = read_task_info(prepared / "cremad")["split_definition"]
    assert cremad[0]["matches_published"] is False and cremad[0]["path"] == str(Path(downloads["cremad"][1]).resolve())


def test_every_prepared_task_loads_with_the_registered_length(prepared):
    for task in official.BUILDERS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fewer classes than the paper's task
            data = load_task(task, 16000, root=prepared, crop=True, crop_cache_dir=prepared / "crops")
        split = next(iter(data))
        assert data[split].features["input_values"].length == round(PAPER_TASK_SPECS[task].clip_seconds * 16000)


def test_audio_copies_are_16k_mono_and_a_rerun_keeps_them(downloads, tmp_path):
    folder = prepare_task("us8k", downloads["us8k"][0], tmp_path, allow_partial=True, audio_copies=16000,
                          progress=False)
    info = read_task_info(folder)
    assert info["audio_root"] is None and info["audio_copies"] == {"sampling_rate": 16000, "channels": 1}
    rows = rows_of(folder)
    sources = sorted((downloads["us8k"][0] / "UrbanSound8K").glob("audio/fold*/*.wav"))
    assert [r["file_name"] for r in rows] == [f"audio/{p.relative_to(p.parents[2]).as_posix()}" for p in sources]
    for r, source in zip(rows, sources):
        copy = sf.info(folder / r["file_name"])
        assert (copy.samplerate, copy.channels) == (16000, 1)
        assert abs(copy.duration - sf.info(source).duration) < 1e-3  # ADPCM: libsndfile's padded block included
    stamps = {r["file_name"]: (folder / r["file_name"]).stat().st_mtime_ns for r in rows}
    (folder / rows[0]["file_name"]).unlink()  # an interrupted run: one copy missing
    prepare_task("us8k", downloads["us8k"][0], tmp_path, allow_partial=True, audio_copies=16000, progress=False)
    again = {r["file_name"]: (folder / r["file_name"]).stat().st_mtime_ns for r in rows}
    assert {k for k in stamps if again[k] != stamps[k]} == {rows[0]["file_name"]}
    data = load_task_dir(folder, 16000)
    assert len(data["all"]) == len(rows) and not list(folder.rglob("*.part"))


# ----------------------------------------------------------------------------- counts, partial downloads


def _tiny_counts(monkeypatch, task, rows, n_classes):
    spec = PAPER_TASK_SPECS[task]
    key = "fold" if spec.split_kind == "fold" else "split"
    counts = {}
    for r in rows:
        k = int(r[key]) if key == "fold" else r[key]
        counts[k] = counts.get(k, 0) + 1
    monkeypatch.setitem(PAPER_TASK_SPECS, task, dataclasses.replace(spec, counts=counts, n_classes=n_classes))


def test_a_complete_download_prepares_and_a_missing_file_is_named(downloads, prepared, tmp_path, monkeypatch):
    _tiny_counts(monkeypatch, "esc50", rows_of(prepared / "esc50"), 2)
    download = tmp_path / "esc"
    shutil.copytree(downloads["esc50"][0], download)
    folder = prepare_task("esc50", download, tmp_path / "out", progress=False)
    assert read_task_info(folder)["complete"] is True and read_task_info(folder)["gaps"] == []
    (download / "ESC-50-master" / "audio" / "3-100035-A-10.wav").unlink()
    with pytest.raises(IncompleteDownloadError) as err:
        prepare_task("esc50", download, tmp_path / "out2", progress=False)
    lines = str(err.value).splitlines()
    assert lines[1:] == ["  fold 3: 2 expected, 1 found, 1 missing (first: audio/3-100035-A-10.wav)"]
    assert "--allow-partial" in lines[0]
    assert not (tmp_path / "out2" / "esc50").exists()  # nothing written for a refused download


def test_one_error_line_per_split_and_extra_files_are_named(downloads, prepared, tmp_path, monkeypatch):
    _tiny_counts(monkeypatch, "nsynth", rows_of(prepared / "nsynth"), 2)
    download = tmp_path / "ns"
    shutil.copytree(downloads["nsynth"][0], download)
    for split in ("train", "test"):
        next((download / f"nsynth-{split}" / "audio").glob("*.wav")).unlink()
    official.write(download / "nsynth-valid" / "audio" / "stray_file-060-100.wav", 1)
    with pytest.raises(IncompleteDownloadError) as err:
        prepare_task("nsynth", download, tmp_path / "out", progress=False)
    lines = str(err.value).splitlines()[1:]
    assert [l.split(":")[0].strip() for l in lines] == ["split train", "split test", "1 file(s) match the download's layout but no listing of the task"]
    assert "4 expected, 3 found, 1 missing (first: nsynth-train/audio/" in lines[0]
    assert lines[2].endswith("nsynth-valid/audio/stray_file-060-100.wav")


def test_allow_partial_records_the_gap(downloads, tmp_path):
    folder = prepare_task("spcv2", downloads["spcv2"][0], tmp_path, allow_partial=True, progress=False)
    gaps = {g["split"]: g for g in read_task_info(folder)["gaps"]}
    assert gaps["train"] == {"split": "train", "expected": 84843, "found": 6, "missing": 84837, "missing_examples": []}
    assert gaps["classes"] == {"split": "classes", "expected": 35, "found": 3}
    loaded = {"spcv2": load_task_dir(folder)}  # the loader carries the gaps to the results
    assert workflow.partial_tasks(loaded) == {"spcv2": read_task_info(folder)["gaps"]}


def test_a_split_with_no_file_is_refused_even_when_partial(downloads, tmp_path):
    download = tmp_path / "vc"
    shutil.copytree(downloads["vc1"][0], download)
    for f in download.glob("wav/*/*/00004.wav"):
        f.unlink()
    with pytest.raises(IncompleteDownloadError, match=r"no file of split\(s\) \['test'\] is present"):
        prepare_task("vc1", download, tmp_path / "out", splits=downloads["vc1"][1], allow_partial=True, progress=False)
    # the preflight of a long run (reproduce_paper --downloads) refuses it too, before anything is written
    assert download_problems("vc1", download, splits=downloads["vc1"][1], allow_partial=True) == [
        "vc1: no file of split(s) ['test'] is present: the task cannot be evaluated"]


def test_a_wrong_folder_names_the_layout_it_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DownloadLayoutError, match=r"no meta/esc50.csv here or one folder below"):
        prepare_task("esc50", tmp_path / "empty", tmp_path / "out")


# ----------------------------------------------------------------------------- split files


def test_a_missing_split_file_names_it_and_where_it_is_published(downloads, tmp_path):
    with pytest.raises(MissingSplitDefinition) as err:
        prepare_task("cremad", downloads["cremad"][0], tmp_path, fetch=False)
    message = str(err.value)
    assert "split file cremad.csv not found" in message and "--splits" in message
    assert "nttcslab/eval-audio-repr at 88ba772, evar/metadata/cremad.csv" in message


def test_splits_folder_offline_replaces_the_shipped_lists(downloads, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    for split, entries in official.gtzan_listed().items():
        kept = [e for e in entries if e != "blues/blues.00029.wav"]
        (lists / f"{split}_filtered.txt").write_text("\n".join(kept) + "\n")
    folder = prepare_task("gtzan", downloads["gtzan"][0], tmp_path / "out", splits=lists, allow_partial=True,
                          fetch=False, progress=False)
    assert "genres/blues/blues.00029.au" not in {r["file_name"] for r in rows_of(folder)}
    definition = read_task_info(folder)["split_definition"]
    assert [d["matches_published"] for d in definition] == [False, True, True]
    assert read_task_info(folder)["left_out"] == {"outside the fault-filtered lists": 2}


def test_a_fetched_split_file_is_checked_against_its_pinned_hash(tmp_path, monkeypatch):
    published = tmp_path / "published.csv"
    published.write_bytes(b"tone,split\nsurge-patches-Leads-Saw-velocity64,valid\n")
    blob = split_definitions.git_blob_sha1(published.read_bytes())
    pinned = split_definitions.PublishedFile("dataset_surge_tone_splits.csv", published.as_uri(), "org/repo", "0" * 40,
                                             "x/dataset_surge_tone_splits.csv", blob)
    definition = dataclasses.replace(split_definitions.DEFINITIONS["surge"], files=(pinned,))
    monkeypatch.setitem(split_definitions.DEFINITIONS, "surge", definition)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_FUSION_OFFLINE", raising=False)
    paths, records = split_definitions.resolve_split_files("surge", fetch_dir=tmp_path / "fetched")
    assert paths["dataset_surge_tone_splits.csv"].read_bytes() == published.read_bytes()
    assert records[0]["obtained"] == "fetched" and records[0]["matches_published"] is True
    # a second run reads the fetched copy; a changed publication is refused
    published.write_bytes(b"tone,split\nsomething-else,train\n")
    assert split_definitions.resolve_split_files("surge", fetch_dir=tmp_path / "fetched")[1][0]["obtained"] == "local"
    with pytest.raises(ValueError, match="not the pinned one"):
        split_definitions.resolve_split_files("surge", fetch_dir=tmp_path / "other")
    monkeypatch.setenv("HF_FUSION_OFFLINE", "1")
    with pytest.raises(MissingSplitDefinition, match="dataset_surge_tone_splits.csv not found"):
        split_definitions.resolve_split_files("surge", fetch_dir=tmp_path / "third")


def test_the_shipped_gtzan_lists_are_the_published_files():
    for published in split_definitions.DEFINITIONS["gtzan"].files:
        data = (split_definitions.SHIPPED_DIR / "gtzan" / published.name).read_bytes()
        assert split_definitions.git_blob_sha1(data) == published.git_blob_sha1
    counts = {s: len(v) for s, v in official.gtzan_listed().items()}
    assert counts == dict(PAPER_TASK_SPECS["gtzan"].counts)


# ----------------------------------------------------------------------------- Hub dataset, EVAR's CSV, loading


@pytest.mark.parametrize("task", ["esc50", "cremad"])
def test_the_hub_copy_reads_back_row_for_row(prepared, tmp_path, task):
    done = export_prepared(prepared / task, f"org/{task}", out=tmp_path / "hub", dry_run=True)
    assert done["private"] is False
    card = (tmp_path / "hub" / "README.md").read_text()
    assert PAPER_TASK_SPECS[task].license in card and "Partial copy" in card
    back = load_task(task, 16000, source=tmp_path / "hub" / "data")
    original = load_task_dir(prepared / task)
    assert list(back) == list(original)
    for split in original:
        assert back[split]["file_name"] == original[split]["file_name"]
        assert back[split]["label"] == original[split]["label"]
        assert back[split].features["label"].names == original[split].features["label"].names
        if "fold" in original[split].column_names:
            assert back[split]["fold"] == original[split]["fold"]
    # the audio is embedded: the copy is the same samples without the download
    row = back[next(iter(back))].cast_column("audio", Audio(decode=False))[0]["audio"]
    assert row["bytes"] is not None


def test_tasks_that_may_not_be_redistributed_are_pushed_private(prepared, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="do not allow a public copy"):
        export_prepared(prepared / "vc1", "org/vc1", out=tmp_path, dry_run=True, private=False)
    pushed = {}

    def fake_push(self, repo_id, private=None, token=None):
        pushed.update(repo_id=repo_id, private=private, splits=sorted(self))

    monkeypatch.setattr("datasets.DatasetDict.push_to_hub", fake_push)
    monkeypatch.setattr("huggingface_hub.DatasetCard.push_to_hub", lambda self, repo_id, **kw: pushed.update(card=self.text))
    export_prepared(prepared / "vc1", "org/vc1")
    assert pushed["private"] is True and pushed["splits"] == ["test", "train", "validation"]
    assert "This dataset is private" in pushed["card"]


def test_evars_own_csv_imports_as_written(tmp_path):
    """EVAR's gtzan.csv (empty split for the 70 faulty files) and nsynth.csv (an unnamed index column) beside
    its work/16k audio folder, loaded with root= (which used to be ignored)."""
    audio = tmp_path / "work" / "16k" / "gtzan"
    meta = tmp_path / "evar" / "metadata"
    meta.mkdir(parents=True)
    lines = ["file_name,label,split"]
    for i, (genre, split) in enumerate([("blues", "train"), ("metal", "train"), ("blues", "valid"), ("metal", "valid"),
                                        ("blues", "test"), ("metal", "test"), ("blues", "")]):
        name = f"{genre}/{genre}.{i:05d}.wav"
        official.write(audio / name, i)
        lines.append(f"{name},{genre},{split}")
    (meta / "gtzan.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"1 row\(s\) with an empty split are not in the task"):
        data = load_task("gtzan", 16000, root=audio, metadata=meta / "gtzan.csv")
    assert {s: len(d) for s, d in data.items()} == {"train": 2, "valid": 2, "test": 2}
    nsynth = ["", "file_name", "label", "split"]
    rows = [[i, f"nsynth-{s}/audio/n{i}.wav", fam, s] for i, (s, fam) in
            enumerate([("train", "guitar"), ("train", "organ"), ("valid", "guitar"), ("valid", "organ"),
                       ("test", "guitar"), ("test", "organ")])]
    for r in rows:
        official.write(tmp_path / "work" / "16k" / "nsynth" / r[1], r[0])
    official.write_csv(meta / "nsynth.csv", nsynth, rows)
    data = load_task("nsynth", 16000, root=tmp_path / "work" / "16k" / "nsynth", metadata=meta / "nsynth.csv")
    assert data["test"]["file_name"] == ["nsynth-test/audio/n4.wav", "nsynth-test/audio/n5.wav"]
    assert data["train"].column_names == ["file_name", "audio", "label"]


def test_speech_commands_has_no_hub_default_and_says_how_to_prepare_it():
    assert PAPER_TASK_SPECS["spcv2"].hub is None
    with pytest.raises(ValueError, match=r"hf-fusion prepare spcv2 DOWNLOAD_DIR --out ROOT.*--task-root"):
        load_task("spcv2", 16000)


def test_a_registered_tasks_folder_gets_the_registered_clip_length(prepared, tmp_path):
    assert workflow.task_clip_seconds(prepared / "vc1") == (8.2, "the registered length of vc1 (its task.json)")
    short = tmp_path / "spcv2"  # a folder named like a registered task, short files, no task.json
    short.mkdir()
    for i in range(3):
        sf.write(short / f"{i}.wav", official.clip(i, 16000, seconds=0.2), 16000)
    official.write_csv(short / "metadata.csv", ["file_name", "label", "split"],
                       [[f"{i}.wav", "a", s] for i, s in enumerate(("train", "valid", "test"))])
    assert workflow.task_clip_seconds(short) == (1.0, "the registered length of spcv2 (the folder's name)")
    other = tmp_path / "mine"
    shutil.copytree(short, other)
    assert workflow.task_clip_seconds(other) == (0.2, "the median duration of its files")


# ----------------------------------------------------------------------------- decoding the official codecs


def test_urbansound8k_encodings_decode_as_libsndfile_reads_them(downloads):
    download = downloads["us8k"][0] / "UrbanSound8K" / "audio"
    seen = set()
    for path in sorted(download.glob("fold*/*.wav")):
        info = sf.info(path)
        seen.add((info.subtype, info.samplerate, info.channels))
        reference, _ = sf.read(path, dtype="float32", always_2d=True)
        ours = decode_audio({"path": str(path), "bytes": None}, 0, Audio())
        assert ours.shape == (reference.shape[0],), (path.name, info.subtype)
        np.testing.assert_allclose(ours, reference.mean(axis=1), atol=1e-6, err_msg=f"{path.name} {info.subtype}")
    assert {s for s, _, _ in seen} == {"PCM_16", "PCM_U8", "PCM_24", "FLOAT", "IMA_ADPCM"}
    assert {r for _, r, _ in seen} >= {8000, 96000} and {c for _, _, c in seen} == {1, 2}


def test_surge_ogg_vorbis_and_gtzan_au_decode_to_their_stated_length(downloads):
    for path in [*downloads["surge"][0].glob("*/*.ogg"), *downloads["gtzan"][0].glob("genres/*/*.au")][:4]:
        reference, _ = sf.read(path, dtype="float32")
        ours = decode_audio({"path": str(path), "bytes": None}, 0, Audio())
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, atol=1e-6)


# ----------------------------------------------------------------------------- the command line


@pytest.mark.slow
def test_prepare_then_layerwise_on_all_nine_tiny_downloads(downloads, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_FUSION_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "root"
    for task, (download, splits) in downloads.items():
        args = ["prepare", task, str(download), "--out", str(root), "--allow-partial", "--no-fetch"]
        assert cli_main(args + (["--splits", str(splits)] if splits else [])) == 0
    out = capsys.readouterr().out
    assert "gtzan: 12 clips, 2 classes, clip length 30 s" in out and "left out as EVAR does: 1 file(s)" in out
    tasks = [a for t in official.BUILDERS for a in ("--task", t)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli_main(["layerwise", "--model", "crepe-tiny", *tasks, "--task-root", str(root), "--out",
                         str(tmp_path / "study"), "--seeds", "0", "--lrs", "1e-3", "--max-epochs", "5"]) == 0
    with open(tmp_path / "study" / "layerwise.csv", newline="") as f:
        assert {r["task"] for r in csv.DictReader(f)} == set(official.BUILDERS)


def test_prepare_refuses_a_partial_download_on_the_command_line(downloads, tmp_path, capsys):
    assert cli_main(["prepare", "gtzan", str(downloads["gtzan"][0]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "split train: 443 expected, 4 found, 439 missing (first: genres/blues/" in err
    assert "--allow-partial" in err


def test_extraction_json_records_the_clip_length(prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_FUSION_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli_main(["extract", "--model", "crepe-tiny", "--task-dir", str(prepared / "spcv2"),
                         "--out", str(tmp_path / "x")]) == 0
    summary = json.loads((tmp_path / "x" / "extraction.json").read_text())
    assert summary["tasks"]["spcv2"]["clip_seconds"] == 1.0
