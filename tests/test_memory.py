"""Memory of the CLI path (``workflow.load_tasks`` + ``workflow.extract_tasks``) does not grow with the number
of clips: the cropped clips are memory-mapped arrow files, never held in memory."""

import csv
import gc
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from hf_fusion.app import workflow

SR = 16000
SECONDS = 3.0
CLIP_BYTES = int(SECONDS * SR) * 4  # one float32 crop


def _task(root, n: int, fold: bool) -> str:
    root.mkdir(parents=True)
    rng = np.random.default_rng(n)
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "label", "fold" if fold else "split"])
        for i in range(n):
            # longer than the clip: fold data then holds test crops AND training crops (two columns)
            sf.write(root / f"c{i}.wav", (0.1 * rng.standard_normal(int(SECONDS * 1.5 * SR))).astype(np.float32), SR)
            w.writerow([f"c{i}.wav", i % 2, 1 + i % 4 if fold else ("train", "valid", "test")[i % 3]])
    return str(root)


@pytest.fixture(scope="module")
def crepe():
    from hf_fusion.conversion import build_crepe_fusion_model

    # a 100 ms hop (10x the default) keeps the model's share of the test time small; memory is about the data
    model, fe = build_crepe_fusion_model("tiny", hop_length=1600)
    return workflow.LoadedModel(model.eval(), fe, "crepe-tiny")


def _measure(loaded, task_dir, cache_dir):
    """(arrow bytes held by the loaded task, Python/numpy heap peak over load + extract) in bytes."""
    gc.collect()
    arrow_before = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        tasks = workflow.load_tasks([], [task_dir], SR, clip_seconds=SECONDS, cache_dir=cache_dir)
        gc.collect()
        arrow_held = pa.total_allocated_bytes() - arrow_before
        caches = workflow.extract_tasks(loaded, tasks, layers=[1], cache_dir=cache_dir, batch_size=8,
                                        log=lambda *a: None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    name = next(iter(caches))
    X, _ = caches[name].load(1, next(iter(caches[name].splits)))
    assert np.all(np.isfinite(X)) and X.shape[0] > 0
    return arrow_held, peak, tasks[name]


@pytest.mark.parametrize("fold", [False, True], ids=["splits", "folds"])
def test_cli_path_memory_does_not_grow_with_clips(tmp_path, crepe, fold):
    small, large = 32, 128
    _measure(crepe, _task(tmp_path / "warm", 3, fold), str(tmp_path / "warm_cache"))  # imports, first-call caches
    extra = (large - small) * CLIP_BYTES * (2 if fold else 1)  # what holding the extra crops would cost
    results = {}
    for n in (small, large):
        results[n] = _measure(crepe, _task(tmp_path / f"t{n}", n, fold), str(tmp_path / "cache"))
    held_small, peak_small, data_small = results[small]
    held_large, peak_large, data_large = results[large]
    # the crops are memory-mapped from the crop cache, not in arrow's heap
    for split, ds in data_large.items():
        assert ds.cache_files and str(tmp_path / "cache" / "clips") in ds.cache_files[0]["filename"], split
    print(f"arrow held {held_small} -> {held_large} B, heap peak {peak_small} -> {peak_large} B, "
          f"the extra crops {extra} B")
    assert held_large - held_small < 0.05 * extra, (held_small, held_large, extra)
    assert peak_large - peak_small < 0.5 * extra, (peak_small, peak_large, extra)


def test_crop_cache_is_reused_and_keyed_by_the_settings(tmp_path):
    task_dir = _task(tmp_path / "t", 12, fold=False)
    cache = str(tmp_path / "cache")
    a = workflow.load_tasks([], [task_dir], SR, clip_seconds=SECONDS, cache_dir=cache)["t"]
    b = workflow.load_tasks([], [task_dir], SR, clip_seconds=SECONDS, cache_dir=cache)["t"]
    c = workflow.load_tasks([], [task_dir], SR, clip_seconds=SECONDS, seed=1, cache_dir=cache)["t"]
    for split in ("train", "valid", "test"):
        assert a[split].cache_files == b[split].cache_files  # the same file, read again
        assert np.array_equal(np.asarray(a[split]["input_values"]), np.asarray(b[split]["input_values"]))
    # another crop seed: other random crops for train/valid (another file); test crops start at 0 either way
    assert c["train"].cache_files != a["train"].cache_files
    assert not np.array_equal(np.asarray(a["train"]["input_values"]), np.asarray(c["train"]["input_values"]))
    assert np.array_equal(np.asarray(a["test"]["input_values"]), np.asarray(c["test"]["input_values"]))
