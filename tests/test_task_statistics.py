"""AST task statistics as the authors compute them: the training clips in a seeded shuffled order (from their
files' sorted names, never metadata.csv's row order), batches of 128 up to the first batch reaching 5000
clips, EVAR's weighting; the seed and sample size recorded in the model, its cache key and its card."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from hf_fusion import protocol
from hf_fusion.app import task_model as task_model_module
from hf_fusion.app import workflow
from hf_fusion.app.workflow import task_input_statistics, train_clips

from .conftest import TINY_AST

SR = 16000
CLASSES = 3
PER_CLASS = 100  # 300 training clips: batches of 128, 128 and 44
CLIP_S = 0.7


def _write_task(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "label", "split"])
        writer.writerows(rows)


@pytest.fixture(scope="module")
def sorted_task(tmp_path_factory):
    """A task folder whose metadata lists the training clips class by class (as metadata files usually do),
    each class at its own loudness, and the same folder with the rows shuffled."""
    root = tmp_path_factory.mktemp("stats")
    (root / "sorted").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    splits = [("train", k) for k in range(PER_CLASS)] + [("valid", 0), ("test", 0)]
    for split, k in splits:
        for label in range(CLASSES):
            name = f"{split}_c{label}_{k:03d}.wav"
            wave = (0.02 * 10**label) * rng.standard_normal(int(CLIP_S * SR))  # class = loudness
            sf.write(root / "sorted" / name, wave.astype(np.float32), SR, subtype="FLOAT")
            rows.append((name, f"class{label}", split))
    rows.sort(key=lambda row: (row[2] != "train", row[1], row[0]))  # class by class, as metadata files are
    _write_task(root / "sorted", rows)
    shutil.copytree(root / "sorted", root / "shuffled")
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    _write_task(root / "shuffled", shuffled)
    return root


def _load(folder, cache):
    return workflow.load_tasks([], [str(folder)], SR, clip_seconds=CLIP_S, cache_dir=cache)[folder.name]


def _loudness_class(clip: np.ndarray) -> int:
    return int(round(np.log10(np.std(clip) / 0.02)))


def test_the_statistic_covers_every_class_whatever_the_row_order(sorted_task, tmp_path):
    data = _load(sorted_task / "sorted", tmp_path)
    counted = slice(protocol.TASK_STATS_BATCH_SIZE, None)  # EVAR's running mean gives batch 0 no weight
    in_rows = [_loudness_class(c) for c in train_clips(data, seed=None)]
    assert in_rows == sorted(in_rows)  # metadata order, class by class
    assert set(in_rows[counted]) == {1, 2}, "in row order the statistic never sees class 0"
    for seed in (0, 1, 2):
        shuffled = [_loudness_class(c) for c in train_clips(data, seed=seed)]
        assert sorted(shuffled) == in_rows and set(shuffled[counted]) == {0, 1, 2}
        # every class's share of the counted clips is close to its share of the task (a third each)
        shares = np.bincount(shuffled[counted], minlength=CLASSES) / len(shuffled[counted])
        assert np.all(np.abs(shares - 1 / CLASSES) < 0.15), shares


def test_shuffled_metadata_rows_give_the_same_statistics_and_vectors(sorted_task, tmp_path):
    import hf_fusion

    torch.manual_seed(0)
    config = hf_fusion.AudioFusionConfig(backbone="ast", backbone_config=dict(TINY_AST), fusion_layers=[5, 12])
    model = hf_fusion.AudioFusionModel(config).eval()
    loaded = workflow.LoadedModel(model, hf_fusion.FusedAudioFeatureExtractor.from_fusion_config(config), "tiny-ast")
    vectors, stats = {}, {}
    for name in ("sorted", "shuffled"):
        data = _load(sorted_task / name, tmp_path / "cache")
        used = {}
        caches = workflow.extract_tasks(loaded, {name: data}, "all", cache_dir=tmp_path / "cache",
                                        log=lambda *a: None, task_models=used)
        frontend = used[name].model.config.frontend
        stats[name] = (frontend["mean"], frontend["std"], frontend["normalization_clips"], frontend["normalization_seed"])
        X, _ = caches[name].load(12, "train")
        files = data["train"]["file_name"]
        vectors[name] = {f: X[i] for i, f in enumerate(files)}
    assert stats["sorted"] == stats["shuffled"]
    assert stats["sorted"][2:] == (CLASSES * PER_CLASS, protocol.TASK_STATS_SEED)
    assert vectors["sorted"].keys() == vectors["shuffled"].keys()
    for f, v in vectors["sorted"].items():
        np.testing.assert_array_equal(vectors["shuffled"][f], v, err_msg=f)
    # the old order (metadata rows) gives other statistics: the ones the statistic must not depend on
    data = _load(sorted_task / "sorted", tmp_path / "cache")
    fe = used["shuffled"].feature_extractor  # the same resized front end for both folders
    in_rows = task_model_module.input_statistics(train_clips(data, seed=None), fe)
    assert abs(in_rows["mean"] - stats["sorted"][0]) > 1e-3


def test_a_large_task_uses_a_random_sample_of_whole_batches_not_its_first_rows(monkeypatch):
    from datasets import Dataset, DatasetDict

    n = 6000
    data = DatasetDict(train=Dataset.from_dict({"input_values": [np.full(4, i, np.float32) for i in range(n)],
                                                "label": [i % 7 for i in range(n)]}))
    seen = {}

    def fake_statistics(clips, feature_extractor, max_clips, batch_size):
        ids = [int(c[0]) for c in clips]
        seen.setdefault("ids", []).append(ids)
        assert (max_clips, batch_size) == (protocol.TASK_STATS_MAX_CLIPS, protocol.TASK_STATS_BATCH_SIZE)
        return {"mean": 0.0, "std": 1.0, "num_clips": len(ids)}

    monkeypatch.setattr(task_model_module, "input_statistics", fake_statistics)
    fe = type("FE", (), {"frontend": {"name": "ast_fbank", "max_length": 4}})()
    stats, reused = task_input_statistics(data, fe, seed=0)
    ids = seen["ids"][0]
    assert not reused and stats["seed"] == 0
    assert len(ids) == 40 * 128 == len(set(ids))  # EVAR: 40 full batches of 128 (>= 5000)
    assert ids != list(range(len(ids)))
    beyond = sum(i >= len(ids) for i in ids)  # rows past the first 5120: ~ 5120 * 880 / 6000 = 751
    assert 600 < beyond < 900, beyond
    task_input_statistics(data, fe, seed=1)
    assert set(seen["ids"][1]) != set(ids)  # another seed, another sample
    shuffled = DatasetDict(train=data["train"].shuffle(seed=5))
    task_input_statistics(shuffled, fe, seed=0)
    assert seen["ids"][2] == ids  # the rows' order does not matter, only the seed


def test_the_seed_and_sample_are_in_the_model_key_and_on_the_card(tiny_ast_model):
    from hf_fusion.app.task_model import prepare_task_model
    from hf_fusion.extraction import model_key
    from hf_fusion.hub.cards import render_model_card

    keys, cards = [], []
    for seed in (0, 1):
        stats = {"mean": -7.0, "std": 4.0, "num_clips": 5120, "seed": seed}
        model, fe, _ = prepare_task_model(tiny_ast_model, 0.7, statistics=stats)
        assert model.config.frontend["normalization_seed"] == seed and fe.frontend["normalization_clips"] == 5120
        keys.append(model_key(model, fe)[0])
        cards.append(" ".join(str(render_model_card(model.config, "org/ast-fusion-5-12")).split()))
    assert keys[0] != keys[1]  # the feature cache never mixes statistics drawn in different orders
    assert "mean -7.0000, std 4.0000 of the raw fbank over 5120 training clips, drawn in a shuffled order (seed 0)" in cards[0]
    assert "drawn in a shuffled order (seed 1)" in cards[1]
