"""Long clips in windows (hf_fusion.extraction.windows): Eq.3 over windows vs the unwindowed reference."""

import numpy as np
import pytest
import torch

from hf_fusion.conversion import build_crepe_fusion_model
from hf_fusion.extraction.extract import pool_one
from hf_fusion.extraction.windows import windowed_embedding


@pytest.fixture(scope="module")
def crepe():
    return build_crepe_fusion_model("tiny", hop_length=320)


def _reference(model, fe, wave, layers):
    with torch.inference_mode():
        x = fe([wave], sampling_rate=16000, return_tensors="pt")
        taps = model.tap(x["input_values"], layers)
        return {layer: pool_one(model, taps[layer])[0] for layer in layers}


def test_crepe_windows_with_half_frame_context_equal_the_whole_clip(crepe):
    model, fe = crepe
    wave = (0.1 * np.random.default_rng(0).standard_normal(int(3.3 * 16000))).astype(np.float32)
    layers = [1, 4, 7]
    ref = _reference(model, fe, wave, layers)
    exact = windowed_embedding(model, fe, wave, layers, window=16000, context=512)  # CREPE frames are 1024 samples
    cut = windowed_embedding(model, fe, wave, layers, window=16000, context=0)
    for layer in layers:
        scale = float(ref[layer].abs().max())
        assert float((exact[layer] - ref[layer]).abs().max()) < 1e-5 * scale
        # without context the edge frames see zeros instead of their neighbours: a real difference
        assert float((cut[layer] - ref[layer]).abs().max()) > 1e-3 * scale


def test_forced_output_frames_are_refused():
    model, fe = build_crepe_fusion_model("tiny", num_output_frames=4)
    with pytest.raises(ValueError, match="num_output_frames"):
        windowed_embedding(model, fe, np.zeros(16000, np.float32), [1], window=8000)


@pytest.mark.parametrize("seconds", [5.3, 12.0])
def test_vggish_and_cnn14_windows_equal_the_whole_clip(seconds):
    from hf_fusion import AudioFusionConfig, AudioFusionModel, FusedAudioFeatureExtractor

    wave = (0.1 * np.random.default_rng(1).standard_normal(int(seconds * 16000))).astype(np.float32)
    for backbone, layers, context in (("vggish", [2, 10, 22], 0), ("cnn14", [1, 3, 6], 32000)):
        torch.manual_seed(0)
        config = AudioFusionConfig(backbone=backbone, fusion_layers=layers[:2])
        model = AudioFusionModel(config).eval()
        fe = FusedAudioFeatureExtractor.from_fusion_config(config)
        ref = _reference(model, fe, wave, layers)
        got = windowed_embedding(model, fe, wave, layers, window=32000, context=context)
        for layer in layers:
            scale = float(ref[layer].abs().max())
            diff = float((got[layer] - ref[layer]).abs().max())
            assert diff < 1e-5 * scale, f"{backbone} layer {layer}: {diff} (scale {scale})"


def test_extract_features_runs_long_clips_in_windows(tmp_path, crepe):
    """Clips longer than long_clip_seconds are extracted alone, window by window: their cached vectors equal
    the whole-clip ones."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    from hf_fusion.extraction import extract_features
    from hf_fusion.extraction import windows as windows_module

    model, fe = crepe
    rng = np.random.default_rng(2)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 70000, 12000)]
    n = max(len(c) for c in clips)
    padded = [np.pad(c, (0, n - len(c))) for c in clips]
    features = Features({"input_values": List(Value("float32"), length=n), "label": ClassLabel(names=["a", "b"])})
    data = DatasetDict(all=Dataset.from_dict({"input_values": padded, "label": [0, 1, 0]}, features=features))
    calls = []
    real = windows_module.windowed_embedding

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    import hf_fusion.extraction.extract as extract_module

    extract_module.windowed_embedding = counting
    try:
        windowed = extract_features(model, fe, data, "w", layers=[1, 7], batch_size=3, cache_dir=tmp_path / "a",
                                    progress=False, long_clip_seconds=1.0, window_seconds=1.0)
    finally:
        extract_module.windowed_embedding = real
    whole = extract_features(model, fe, data, "w", layers=[1, 7], batch_size=3, cache_dir=tmp_path / "b",
                             progress=False, long_clip_seconds=None)
    assert calls == [n, n, n]  # every clip is padded to n > 1 s here, so all three ran in windows
    for layer in (1, 7):
        a, b = windowed.load(layer, "all")[0], whole.load(layer, "all")[0]
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))
