"""CNN14 port: docs/reference.md block shapes, parity with PANNs' Cnn14 (random weights), masking, converter,
round trip and remote-code loading."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoFeatureExtractor, AutoModel

from hf_fusion import AudioFusionConfig, AudioFusionModel, FusedAudioFeatureExtractor
from hf_fusion.conversion import convert_cnn14_checkpoint

from .conftest import make_clips
from .reference_models import Hooks, panns_cnn14, save_state

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = (1, 2, 3, 4, 5, 6)
KERNELS = {1: 16, 2: 8, 3: 4, 4: 2, 5: 1, 6: 1}  # docs/reference.md: Eq.1 kernel per block


@pytest.fixture(scope="module")
def ref32(tmp_path_factory):
    net = panns_cnn14(32000, seed=5)
    path = save_state(tmp_path_factory.mktemp("cnn14") / "Cnn14_random_32k.pth", net.state_dict(), wrap=True)
    return net, path


@pytest.fixture(scope="module")
def ref16(tmp_path_factory):
    net = panns_cnn14(16000, seed=6)
    path = save_state(tmp_path_factory.mktemp("cnn14") / "Cnn14_16k_random.pth", net.state_dict(), wrap=True)
    return net, path


@pytest.fixture(scope="module")
def converted16(ref16):
    return convert_cnn14_checkpoint(ref16[1], fusion_layers=[3, 6])


def _run_reference(net, waveform, log_mel=None):
    """PANNs Cnn14 forward with hooks on its conv blocks; ``log_mel`` [B, 1, T, 64] replaces the output
    of its own front end (so both nets see identical inputs). Returns (block outputs, its log-mel)."""
    hooks = Hooks({k: getattr(net, f"conv_block{k}") for k in BLOCKS} | {"logmel": net.logmel_extractor})
    swap = None
    if log_mel is not None:
        swap = net.logmel_extractor.register_forward_hook(lambda m, a, out: log_mel)
    with torch.no_grad():
        net(torch.as_tensor(waveform, dtype=torch.float32).reshape(1, -1))
    hooks.remove()
    if swap is not None:
        swap.remove()
    return {k: hooks.out[k] for k in BLOCKS}, hooks.out["logmel"]


def _reference_embedding(taps, layers):
    """Eq.1-3 written out on reference block outputs [1, C, T_k, F_k] (T_o = T_6, kernels 16,8,4,2,1,1)."""
    t_o = taps[6].shape[2]
    frames = []
    for k in layers:
        z = taps[k]
        pooled = F.max_pool2d(z, kernel_size=(KERNELS[k], 1))[:, :, :t_o]  # [1, C, T_o, F]
        frames.append(pooled.permute(0, 2, 1, 3).reshape(1, t_o, -1))  # [1, T_o, C*F] channel-major
    fused = torch.cat(frames, dim=2)[0]
    return fused.mean(0) + fused.amax(0)


def test_public_contract_dims_and_presets():
    config = AudioFusionConfig(backbone="cnn14", fusion_layers=[3, 6])
    assert config.hidden_size == 6144
    assert AudioFusionConfig(backbone="cnn14").fusion_layers == [3, 6]
    assert [config.layer_dims[k] for k in BLOCKS] == [2048] * 5 + [4096]
    assert config.frontend == {"name": "panns_log_mel", "sampling_rate": 16000, "mel_bins": 64,
                               "window_size": 512, "hop_size": 160, "fmin": 50.0, "fmax": 8000.0}
    c32 = AudioFusionConfig(backbone="cnn14", frontend={"sampling_rate": 32000})
    assert (c32.frontend["window_size"], c32.frontend["hop_size"], c32.frontend["fmax"]) == (1024, 320, 14000.0)
    assert FusedAudioFeatureExtractor(backbone="cnn14", sampling_rate=32000).frontend == c32.frontend
    with pytest.raises(ValueError, match="no front-end preset for sampling_rate=22050"):
        AudioFusionConfig(backbone="cnn14", frontend={"sampling_rate": 22050})
    with pytest.raises(ValueError, match=r"cannot be tapped.*\[1, 2, 3, 4, 5, 6\]"):
        AudioFusionConfig(backbone="cnn14", fusion_layers=[3, 7])


@pytest.mark.slow
def test_block_shapes_10s_32k_and_parity_with_panns(ref32):
    net, path = ref32
    model, fe = convert_cnn14_checkpoint(path, fusion_layers=[3, 6])  # 32 kHz inferred from melW
    assert model.config.sampling_rate == 32000 and model.config.frontend["window_size"] == 1024
    clip = make_clips((10.0,), sr=32000, seed=7)[0]
    ref_taps, ref_log_mel = _run_reference(net, clip)
    assert [tuple(ref_taps[k].shape[1:]) for k in BLOCKS] == [
        (64, 500, 32), (128, 250, 16), (256, 125, 8), (512, 62, 4), (1024, 31, 2), (2048, 31, 2)
    ]
    # identical inputs: PANNs' own log-mel into our backbone
    with torch.no_grad():
        ours = model.backbone.run_taps(ref_log_mel, BLOCKS)
        aligned = model.tap(ref_log_mel, layers="all")
        emb = model(ref_log_mel).pooler_output[0]
    for k in BLOCKS:
        torch.testing.assert_close(ours[k], ref_taps[k], rtol=1e-5, atol=1e-5, msg=f"block {k}")
        assert aligned[k].shape == (1, model.layer_dims[k], 31)
    torch.testing.assert_close(emb, _reference_embedding(ref_taps, [3, 6]), rtol=1e-5, atol=1e-5)
    # whole pipeline: our front end (float64 STFT) vs torchlibrosa's float32 conv STFT: ~1e-4 relative
    batch = fe(clip, sampling_rate=32000, return_tensors="pt")
    torch.testing.assert_close(batch["input_values"], ref_log_mel, rtol=5e-4, atol=1e-3)
    with torch.no_grad():
        pipeline = model(**batch).pooler_output[0]
    torch.testing.assert_close(pipeline, emb, rtol=2e-3, atol=2e-3)


def test_16k_parity_batch_equals_alone_and_short_clip(ref16, converted16):
    net, _ = ref16
    model, fe = converted16
    assert model.config.sampling_rate == 16000 and model.config.hidden_size == 6144
    clips = make_clips((2.0, 0.2, 1.1), seed=8)  # 0.2 s < 0.31 s minimum: zero-padded to 32 frames
    batch = fe(clips, sampling_rate=16000, return_tensors="pt")
    assert batch["input_values"].shape == (3, 1, 201, 64)
    assert batch["attention_mask"].sum(1).tolist() == [201, 32, 111]
    with torch.no_grad():
        out = model(**batch)
    assert out.frame_mask.sum(1).tolist() == [6, 1, 3] and out.last_hidden_state.shape == (3, 6, 6144)
    for i, clip in enumerate(clips):
        alone = fe(clip, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            emb = model(**alone).pooler_output[0]
        torch.testing.assert_close(out.pooler_output[i], emb, rtol=1e-5, atol=1e-5, msg=f"clip {i}")
        padded = np.pad(clip, (0, max(0, 4960 - clip.size)))
        ref_taps, _ = _run_reference(net, padded, log_mel=alone["input_values"])
        torch.testing.assert_close(emb, _reference_embedding(ref_taps, [3, 6]), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        leaky = model(batch["input_values"]).pooler_output  # no mask: padding changes the short clips
    assert not torch.allclose(leaky[2], out.pooler_output[2], rtol=1e-3)


def test_too_short_input_and_forced_num_frames(converted16):
    model, _ = converted16
    with pytest.raises(ValueError, match=r"20 log-mel frames; at least 32.*4960 samples at 16000 Hz"):
        model(torch.zeros(1, 1, 20, 64))
    with pytest.raises(ValueError, match=r"\[B, 1, T, 64\]"):
        model(torch.zeros(1, 1, 100, 128))
    tiny = {"channels": [4, 8, 8, 8, 8, 8]}
    forced = AudioFusionModel(AudioFusionConfig(backbone="cnn14", backbone_config=tiny, num_output_frames=4)).eval()
    mask = torch.ones(2, 200, dtype=torch.long)
    mask[1, 150:] = 0  # 150 frames: 4 frames in block 6 (fewer than T_o=4 fails, as alone)
    x = torch.randn(2, 1, 200, 64) - 50
    with torch.no_grad():
        out = forced(x, attention_mask=mask)
        alone = forced(x[1:, :, :150]).pooler_output[0]
    assert out.last_hidden_state.shape == (2, 4, 8 * 8 + 8 * 2)  # block 3: 8 ch x 8 mel, block 6: 8 x 2
    # a forced T_o pools each clip over its own frames: all 4 frames valid, the short clip as alone
    assert out.frame_mask.tolist() == [[True] * 4, [True] * 4]
    torch.testing.assert_close(out.pooler_output[1], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_converter_strict_sample_rate_and_pickle_policy(ref16, ref32, tmp_path):
    state = ref16[0].state_dict()
    with pytest.raises(ValueError, match=r"32000 Hz: spectrogram_extractor.stft.conv_real.weight is \(257, 1, 512\)"):
        convert_cnn14_checkpoint(ref16[1], sample_rate=32000)
    with pytest.raises(ValueError, match=r"16000 Hz: .*not window_size=512"):
        convert_cnn14_checkpoint(ref32[1], sample_rate=16000)
    extra = save_state(tmp_path / "extra.pth", {**state, "fc2.weight": torch.zeros(1)}, wrap=True)
    with pytest.raises(ValueError, match=r"unexpected keys \['fc2.weight'\]"):
        convert_cnn14_checkpoint(extra)
    gone = "conv_block6.bn2.running_var"
    missing = save_state(tmp_path / "missing.pth", {k: v for k, v in state.items() if k != gone}, wrap=True)
    with pytest.raises(ValueError, match=rf"missing keys \['{gone}'\]"):
        convert_cnn14_checkpoint(missing)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": state, "iteration": np.int64(660000)}, pickled)  # training metadata as numpy scalar
    with pytest.raises(ValueError, match=r"numpy.*arbitrary code.*--trust-pickle"):
        convert_cnn14_checkpoint(pickled)
    model, _ = convert_cnn14_checkpoint(pickled, trust_pickle=True)
    torch.testing.assert_close(model.backbone.conv_block6.bn2.running_var, state[gone])


@pytest.mark.slow
def test_script_save_load_round_trip(ref16, converted16, tmp_path):
    out = tmp_path / "cnn14-fusion-3-6"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_cnn14.py"), "--checkpoint", str(ref16[1]),
         "--sample-rate", "16000", "--layers", "3", "6", "--out", str(out)],
        env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cnn14-fusion-3-6 (6144-d, 16000 Hz)" in proc.stdout
    loaded = AutoModel.from_pretrained(out).eval()
    fe = AutoFeatureExtractor.from_pretrained(out)
    assert type(loaded) is AudioFusionModel and type(fe) is FusedAudioFeatureExtractor
    for name, buf in loaded.named_buffers():  # BN statistics survive save/load (meta-device init)
        torch.testing.assert_close(buf, converted16[0].get_buffer(name), rtol=0, atol=0, msg=name)
    clips = make_clips((1.0, 0.6), seed=9)
    with torch.no_grad():
        a = loaded(**fe(clips, sampling_rate=16000, return_tensors="pt")).pooler_output
        b = converted16[0](**converted16[1](clips, sampling_rate=16000, return_tensors="pt")).pooler_output
    torch.testing.assert_close(a, b, rtol=0, atol=0)
