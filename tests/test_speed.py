"""Speed options of extract_features: decode workers, length bucketing, mixed precision.

- decode workers give the same cache bit for bit (variable lengths, 44.1 kHz FLAC resampled, an unreadable file);
- workers + bucketing on clips of one length give the plain batches, so the same cache bit for bit; on
  variable lengths the rows come back in order and every vector equals the plain run's to the batch-size
  tolerance of tests/test_batch_independence.py (a clip's batch partners change its float rounding);
- the compute dtype is in the cache key only when it is not fp32; bf16 runs, stays close to fp32, and
  never reuses (or overwrites) the fp32 cache.
"""

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Audio, ClassLabel, Dataset, Features

from hf_fusion.extraction import extract_features, model_key
from hf_fusion.data.bucketing import bucketed_batches, contiguous_batches, padding_stats
from hf_fusion.extraction.precision import backbone_autocast, resolve_dtype

from .conftest import make_clips

RTOL = 1e-5  # tests/test_batch_independence.py
#: variable lengths (s) in stored order; the unreadable file goes in at row 5
SECONDS = (1.3, 0.45, 2.2, 0.9, 0.35, 1.7, 0.6, 2.0, 0.9, 1.1, 0.5)


def _flac_dataset(folder, seconds, bad_at=None):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, clip in enumerate(make_clips(seconds, sr=44100, seed=3)):
        stereo = np.stack([clip, clip[::-1]], axis=1)  # two different channels: the decoder averages them
        paths.append(str(folder / f"clip_{i}.flac"))
        sf.write(paths[-1], stereo, 44100)
    if bad_at is not None:
        (folder / "broken.flac").write_bytes(b"fLaC but not really")
        paths.insert(bad_at, str(folder / "broken.flac"))
    features = Features({"audio": Audio(sampling_rate=16000), "label": ClassLabel(names=["a", "b", "c"])})
    return Dataset.from_dict({"audio": paths, "label": [i % 3 for i in range(len(paths))]}, features=features)


@pytest.fixture(scope="module")
def crepe():
    from hf_fusion.conversion import build_crepe_fusion_model

    model, fe = build_crepe_fusion_model("tiny", hop_length=800)
    return model.eval(), fe


def _run(crepe, data, cache, **kw):
    model, fe = crepe
    cache = extract_features(model, fe, data, "speed", layers="all", batch_size=3, batches_per_shard=2,
                             cache_dir=cache, progress=False, on_error="skip", **kw)
    X, y = cache.load("all", "all")
    group = cache._groups["all"][0]
    return {"X": X, "y": y, "rows": group.read_column("row"), "skipped": cache.skipped("all"),
            "folder": cache.folder("all")}


@pytest.fixture(scope="module")
def variable(tmp_path_factory, crepe):
    folder = tmp_path_factory.mktemp("variable")
    data = _flac_dataset(folder / "audio", SECONDS, bad_at=5)
    return data, _run(crepe, data, folder / "plain"), folder


@pytest.mark.slow
def test_decode_workers_bit_identical(crepe, variable):
    data, plain, folder = variable
    fast = _run(crepe, data, folder / "workers", decode_workers=2)
    assert plain["X"].shape == (len(SECONDS), fast["X"].shape[1]) and plain["skipped"] == fast["skipped"]
    assert len(plain["skipped"]) == 1 and plain["skipped"][0].endswith("broken.flac")
    np.testing.assert_array_equal(fast["rows"], plain["rows"])
    np.testing.assert_array_equal(fast["y"], plain["y"])
    np.testing.assert_array_equal(fast["X"], plain["X"])  # bit for bit
    assert fast["folder"].relative_to(folder / "workers") == plain["folder"].relative_to(folder / "plain")


@pytest.mark.slow
def test_workers_and_bucketing_bit_identical_on_one_length(tmp_path, crepe):
    """Every clip 1.2 s (as a pre-cut task): the buckets are the plain batches, the cache is the same bit for bit."""
    data = _flac_dataset(tmp_path / "audio", (1.2,) * 10, bad_at=4)
    plain = _run(crepe, data, tmp_path / "plain")
    fast = _run(crepe, data, tmp_path / "fast", decode_workers=2, bucket_by_length=True)
    assert plain["skipped"] == fast["skipped"] and len(plain["skipped"]) == 1
    np.testing.assert_array_equal(fast["rows"], plain["rows"])
    np.testing.assert_array_equal(fast["X"], plain["X"])


@pytest.mark.slow
def test_workers_and_bucketing_bit_identical_on_variable_lengths(crepe, variable):
    """Variable lengths: other batch partners and less padding, yet the same rows in the same order and the
    same vectors bit for bit (CREPE is batch-invariant: tests/test_batch_independence.py)."""
    data, plain, folder = variable
    bucketed = _run(crepe, data, folder / "bucketed", decode_workers=2, bucket_by_length=True)
    np.testing.assert_array_equal(bucketed["rows"], plain["rows"])
    np.testing.assert_array_equal(bucketed["y"], plain["y"])
    assert bucketed["skipped"] == plain["skipped"]
    np.testing.assert_array_equal(bucketed["X"], plain["X"])


def test_bucketed_batches_plan():
    rows = list(range(10, 20))
    lengths = [5, 9, 1, 9, 3, 3, 7, 2, 8, 6]
    plan = bucketed_batches(rows, lengths, 3)
    assert sorted(r for b in plan for r in b) == rows and [len(b) for b in plan] == [3, 3, 3, 1]
    assert plan[0] == [11, 13, 18]  # the three longest (9, 9, 8), in row order
    assert bucketed_batches(rows, [4] * 10, 3) == contiguous_batches(rows, 3)  # one length: the plain batches
    length_of = dict(zip(rows, lengths))
    plain, bucketed = padding_stats(contiguous_batches(rows, 3), length_of), padding_stats(plan, length_of)
    assert plain["valid"] == bucketed["valid"] == sum(lengths)
    assert plain["padded"] == 3 * 9 + 3 * 9 + 3 * 8 + 6 and bucketed["padded"] == 3 * 9 + 3 * 7 + 3 * 3 + 1
    with pytest.raises(ValueError, match="lengths"):
        bucketed_batches(rows, lengths[:3], 3)


def test_dtype_in_cache_key_only_when_not_fp32(crepe):
    model, fe = crepe
    plain_key, plain_desc = model_key(model, fe)
    assert model_key(model, fe, "fp32") == (plain_key, plain_desc) and "compute_dtype" not in plain_desc
    bf16_key, bf16_desc = model_key(model, fe, "bf16")
    fp16_key, _ = model_key(model, fe, torch.float16)
    assert bf16_desc["compute_dtype"] == "bf16" and len({plain_key, bf16_key, fp16_key}) == 3
    assert model_key(model, fe, "bfloat16")[0] == bf16_key
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("int8")
    with pytest.raises(ValueError, match="decode_workers"):
        extract_features(model, fe, Dataset.from_dict({"label": [0]}), "x", decode_workers=-1)
    with pytest.raises(ValueError, match="dtype must be one of"):
        extract_features(model, fe, Dataset.from_dict({"label": [0]}), "x", dtype="half-ish")


def test_bf16_runs_close_to_fp32_in_its_own_cache(crepe, variable):
    data, plain, folder = variable
    model, fe = crepe
    forward = model.backbone.forward
    low = _run(crepe, data, folder / "plain", dtype="bf16")  # same cache root as the fp32 run
    assert model.backbone.forward == forward  # autocast was only around the extraction
    assert low["folder"].parents[2].name != plain["folder"].parents[2].name  # another model key folder
    np.testing.assert_array_equal(low["rows"], plain["rows"])
    rel = np.abs(low["X"] - plain["X"]).max(1) / np.abs(plain["X"]).max(1)
    assert 0 < rel.max() < 0.05, rel.max()  # bf16 really ran (not the fp32 cache), and stays close
    again = _run(crepe, data, folder / "plain")  # the fp32 cache is untouched
    np.testing.assert_array_equal(again["X"], plain["X"])


def test_backbone_autocast_scope(crepe):
    """Only the backbone runs in bf16: the front end before it and the pooled vectors stay float32."""
    model, fe = crepe
    x = fe(make_clips((0.5,))[0], sampling_rate=16000, return_tensors="pt")
    with backbone_autocast(model, "bf16", "cpu"), torch.inference_mode():
        inside = fe(make_clips((0.5,))[0], sampling_rate=16000, return_tensors="pt")["input_values"]
        taps = model.tap(x["input_values"], [7])
    assert inside.dtype == torch.float32 and taps[7].dtype == torch.bfloat16
    with torch.inference_mode():
        assert model.tap(x["input_values"], [7])[7].dtype == torch.float32  # restored


@pytest.mark.slow
def test_crop_decode_workers_bit_identical(tmp_path, variable):
    """The CLI's path (``--decode-workers``): cropping decodes in workers, same crops and skipped files."""
    from datasets import DatasetDict

    from hf_fusion.tasks.clips import crop_clips
    from hf_fusion.tasks import skipped_at_load

    data = DatasetDict(train=variable[0])
    plain = crop_clips(data, 1.0, seed=1, on_error="skip", cache_dir=tmp_path / "plain")
    fast = crop_clips(data, 1.0, seed=1, on_error="skip", cache_dir=tmp_path / "fast", decode_workers=1)
    assert skipped_at_load(fast) == skipped_at_load(plain) and len(skipped_at_load(plain)["train"]) == 1
    a = np.asarray(plain["train"].with_format("numpy")["input_values"])
    b = np.asarray(fast["train"].with_format("numpy")["input_values"])
    assert a.shape == (len(SECONDS), 16000) and np.abs(a).max() > 0
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="decode workers"):
        crop_clips(data, 1.0, cache_dir=tmp_path / "bad", decode_workers=-2)


def test_study_estimate_counts_vggish_flops():
    """scripts/estimate_study_time.py counts FLOPs on the meta device: VGGish on a 1 s clip is one 96x64
    example, whose convolutions and FC layers cost 2 * MACs = 1.7278 GFLOP by hand (Table I shapes)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "estimate_study_time.py"
    spec = importlib.util.spec_from_file_location("estimate_study_time", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    convs = [(1, 64, 96 * 64), (64, 128, 48 * 32), (128, 256, 24 * 16), (256, 256, 24 * 16), (256, 512, 12 * 8),
             (512, 512, 12 * 8)]
    by_hand = sum(2 * 9 * c_in * c_out * pixels for c_in, c_out, pixels in convs)
    by_hand += 2 * (512 * 6 * 4 * 4096 + 4096 * 4096 + 4096 * 128)
    flops, floats, _ = module.clip_flops("vggish", 1.0)
    assert flops == pytest.approx(by_hand, rel=1e-3), (flops, by_hand)
    assert floats == 6 * 4096 + 2 * 4096 + 128  # the 9 tapped layers' dims


@pytest.mark.slow
def test_bench_pipeline_runs_and_reports_every_stage(capsys):
    """scripts/bench_pipeline.py at a tiny size (a smoke run; its numbers are never asserted): every stage's
    row, the alternating-round worker ratios, the bound and the bucketing line are printed."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_pipeline.py"
    spec = importlib.util.spec_from_file_location("bench_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--clips", "4", "--seconds", "1", "--batch-size", "2", "--workers", "0", "1", "--decode-rounds", "2",
                 "--repeats", "1", "--backbones", "crepe"])
    out = capsys.readouterr().out
    for row in ("| decode+resample | in process |", "| decode+resample | 1 worker(s) |", "| frontend | crepe tiny variant",
                "| backbone | crepe tiny variant", "| cache write |", "| pipeline |"):
        assert row in out, row
    assert "decode: 1 worker / in process throughput" in out and "per round" in out
    assert "crepe: " in out and "bounds it at" in out and "length bucketing" in out


def _script(name: str):
    import importlib.util
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    sys.path.insert(0, str(scripts))
    spec = importlib.util.spec_from_file_location(name, scripts / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_probe_runs_and_compares_every_trainer(capsys):
    """scripts/bench_probe.py at a tiny size (a smoke run, no timing asserted): every trainer, including the
    baseline revision from git when the checkout has it, gives the same validation counts, predictions and
    epochs, and the floor share is printed."""
    out = _script("bench_probe").main(["--n", "300", "--dim", "32", "--classes", "4", "--per-decade", "1",
                                       "--seeds", "2", "--max-epochs", "8", "--patience", "3", "--layers", "2",
                                       "--repeats", "1", "--device", "cpu"])
    same = next(v for k, v in out.items() if k.startswith("same_results_as_"))
    assert same and all(same.values()), same
    assert {"batched", "foreach-adam", "sequential", "stacked", "matmul_floor"} <= set(out["wall_s"])
    assert 0 < out["matmul_share_of_batched"] and "of the floor ceiling" in capsys.readouterr().out


def test_study_estimate_names_the_options_that_meet_the_hour(capsys):
    """scripts/estimate_study_time.py prints one row per (precision, screening) combination, the one that
    meets the target with its defaults (docs/performance.md), and what stays assumed; --measure times the
    decode rate and the probe GEMM shapes here first."""
    module = _script("estimate_study_time")
    module.main([])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| fp32, ", "| tf32, ", "| bf16, "))]
    assert len(rows) == 15 and rows[0].startswith("| fp32, full |") and "whole study (evaluation tf32)" in out
    assert "-> met by layer-wise probes tf32, 1 seed + halving, and the final evaluation at the full protocol in tf32" in out
    assert all("meets" not in r.split("|")[4] for r in rows)  # no combination with an fp32 evaluation fits
    assert "unmeasured (assumed): the GPU's sustained GEMM rates" in out
    module.main(["--measure"])
    measured = capsys.readouterr().out.splitlines()[0]
    assert measured.startswith("measured: decode rate ") and "of a large GEMM's rate" in measured
