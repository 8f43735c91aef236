"""Long clips in windows (hf_fusion.extraction.windows): Eq.3 over windows vs the unwindowed reference."""

import numpy as np
import pytest
import torch

from hf_fusion.conversion import build_crepe_fusion_model
from hf_fusion.extraction.extract import _pool_one
from hf_fusion.extraction.windows import windowed_embedding


@pytest.fixture(scope="module")
def crepe():
    return build_crepe_fusion_model("tiny", hop_length=320)


def _reference(model, fe, wave, layers):
    with torch.inference_mode():
        x = fe([wave], sampling_rate=16000, return_tensors="pt")
        taps = model.tap(x["input_values"], layers)
        return {layer: _pool_one(model, taps[layer])[0] for layer in layers}


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
