"""VGGish port: Table I shapes, parity with torchvggish (random weights), masking, converter, round trip."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

from hf_fusion import AudioFusionConfig, AudioFusionModel, FusedAudioFeatureExtractor
from hf_fusion.conversion import convert_vggish_checkpoint
from hf_fusion.models.fusion import align_layer, temporal_pool

from .conftest import make_clips
from .reference_models import Hooks, save_state, torchvggish_vgg

ROOT = Path(__file__).resolve().parents[1]
TAPS = (2, 5, 8, 10, 13, 15, 18, 20, 22)
TABLE_I = {  # per example: conv (C, T, F), FC (D,)
    2: (64, 96, 64), 5: (128, 48, 32), 8: (256, 24, 16), 10: (256, 24, 16),
    13: (512, 12, 8), 15: (512, 12, 8), 18: (4096,), 20: (4096,), 22: (128,),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(torchvggish VGG with random weights, its checkpoint file)."""
    ref = torchvggish_vgg(seed=3)
    path = save_state(tmp_path_factory.mktemp("vggish") / "vggish-random.pth", ref.state_dict(), wrap=False)
    return ref, path


@pytest.fixture(scope="module")
def converted(reference):
    model, fe = convert_vggish_checkpoint(reference[1], fusion_layers=[10, 15])
    return model, fe


def _reference_taps(ref, examples):
    """Raw outputs of Table I's tappable layers from hooks on torchvggish's own modules + its output."""
    modules = {layer: (ref.features[layer - 1] if layer <= 16 else ref.embeddings[layer - 17]) for layer in TAPS}
    hooks = Hooks(modules)
    with torch.no_grad():
        final = ref(examples)
    hooks.remove()
    return hooks.out, final


def _reference_embedding(ref, examples, layers):
    """Eq.1-3 written out on the reference taps for ONE clip's examples [n, 1, 96, 64]."""
    taps, _ = _reference_taps(ref, examples)
    per_layer = []
    for layer in layers:
        z = taps[layer]
        if z.dim() == 4:  # [n, C, T, F]: max-pool time to 6 frames, flatten C x F channel-major
            n, c, t, f = z.shape
            pooled = torch.nn.functional.max_pool2d(z, kernel_size=(t // 6, 1))  # [n, C, 6, F]
            frames = pooled.permute(0, 2, 1, 3).reshape(n, 6, c * f)  # [n, 6, C*F]
        else:
            frames = z[:, None, :].expand(-1, 6, -1)
        per_layer.append(frames.reshape(-1, frames.shape[-1]))  # examples' frames in time order
    fused = torch.cat(per_layer, dim=1)  # [6n, D]
    return fused.mean(0) + fused.amax(0)


def test_public_contract_dims():
    config = AudioFusionConfig(backbone="vggish", fusion_layers=[10, 15])
    assert config.hidden_size == 8192
    assert AudioFusionConfig(backbone="vggish").fusion_layers == [10, 15]
    dims = config.layer_dims
    assert [dims[layer] for layer in TAPS] == [4096] * 8 + [128]
    assert config.frontend == {"name": "vggish_log_mel", "sampling_rate": 16000}
    with pytest.raises(ValueError, match=r"cannot be tapped.*\[2, 5, 8, 10, 13, 15, 18, 20, 22\]"):
        AudioFusionConfig(backbone="vggish", fusion_layers=[9, 15])  # layer 9 is a conv, not a ReLU


def test_table_i_shapes_and_parity_with_torchvggish(reference, converted):
    ref, _ = reference
    model, fe = converted
    clip = make_clips((2.1,), seed=1)[0]
    examples = fe(clip, sampling_rate=16000, return_tensors="pt")["input_values"]
    assert examples.shape == (1, 2, 96, 64)
    x = examples.reshape(-1, 1, 96, 64)
    ref_taps, ref_final = _reference_taps(ref, x)
    with torch.no_grad():
        ours = model.backbone.run_taps(x, TAPS)
        aligned = model.tap(examples, layers="all")
    for layer in TAPS:
        assert tuple(ours[layer].shape) == (2,) + TABLE_I[layer], layer
        torch.testing.assert_close(ours[layer], ref_taps[layer], rtol=1e-5, atol=1e-6, msg=f"layer {layer}")
        assert aligned[layer].shape == (1, model.layer_dims[layer], 12)  # 6 frames per example
    torch.testing.assert_close(ours[22], ref_final, rtol=1e-5, atol=1e-6)  # layer 22 = VGGish's output
    with torch.no_grad():
        emb = model(examples).pooler_output[0]
    torch.testing.assert_close(emb, _reference_embedding(ref, x, [10, 15]), rtol=1e-5, atol=1e-5)


def test_batch_equals_alone_and_short_clip(reference, converted):
    ref, _ = reference
    model, fe = converted
    clips = make_clips((3.0, 0.4, 1.5), seed=2)  # 3, 1 (padded) and 1 examples
    batch = fe(clips, sampling_rate=16000, return_tensors="pt")
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]
    with torch.no_grad():
        out = model(**batch)
        assert out.frame_mask.sum(1).tolist() == [18, 6, 6]
        for i, clip in enumerate(clips):
            alone = fe(clip, sampling_rate=16000, return_tensors="pt")
            emb = model(**alone).pooler_output[0]
            torch.testing.assert_close(out.pooler_output[i], emb, rtol=1e-5, atol=1e-6)
            x = alone["input_values"].reshape(-1, 1, 96, 64)
            torch.testing.assert_close(emb, _reference_embedding(ref, x, [10, 15]), rtol=1e-5, atol=1e-5)
        # without the mask the padded examples leak into Eq.3 of the short clips
        leaky = model(batch["input_values"]).pooler_output
    assert not torch.allclose(leaky[1], out.pooler_output[1], rtol=1e-3)


@pytest.mark.slow
def test_converter_strict_and_pickle_policy(reference, tmp_path):
    ref, _ = reference
    state = ref.state_dict()
    extra = save_state(tmp_path / "extra.pth", {**state, "pproc.pca_matrix": torch.zeros(2)}, wrap=False)
    with pytest.raises(ValueError, match=r"unexpected keys \['pproc.pca_matrix'\]"):
        convert_vggish_checkpoint(extra)
    missing = save_state(tmp_path / "missing.pth", {k: v for k, v in state.items() if k != "embeddings.4.bias"}, False)
    with pytest.raises(ValueError, match=r"missing keys \['embeddings.4.bias'\]"):
        convert_vggish_checkpoint(missing)
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": state, "step": np.int64(7)}, pickled)
    with pytest.raises(ValueError, match=r"weights_only=True.*numpy.*--trust-pickle"):
        convert_vggish_checkpoint(pickled)
    model, _ = convert_vggish_checkpoint(pickled, trust_pickle=True)
    torch.testing.assert_close(model.backbone.embeddings[4].bias, state["embeddings.4.bias"])
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        convert_vggish_checkpoint(tmp_path / "nope.pth")


@pytest.mark.slow
def test_script_save_load_round_trip(reference, converted, tmp_path):
    _, path = reference
    direct, _ = converted
    out = tmp_path / "vggish-fusion-10-15"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_vggish.py"), "--checkpoint", str(path),
         "--layers", "10", "15", "--out", str(out)],
        env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "vggish-fusion-10-15 (8192-d)" in proc.stdout
    model = AutoModel.from_pretrained(out).eval()
    fe = AutoFeatureExtractor.from_pretrained(out)
    assert type(model) is AudioFusionModel and type(fe) is FusedAudioFeatureExtractor
    assert model.config.fusion_layers == [10, 15] and model.config.hidden_size == 8192
    clips = make_clips((1.2, 2.0), seed=4)
    with torch.no_grad():
        a = model(**fe(clips, sampling_rate=16000, return_tensors="pt")).pooler_output
        b = direct(**fe(clips, sampling_rate=16000, return_tensors="pt")).pooler_output
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_align_layer_matches_written_out_eq1():
    # the backbone's per-example Eq.1 (permute to time-last, align_layer) equals the written-out version
    z = torch.randn(3, 256, 24, 16)
    ours = align_layer(z.permute(0, 1, 3, 2), 6)
    ref = torch.nn.functional.max_pool2d(z, (4, 1)).permute(0, 1, 3, 2).reshape(3, 256 * 16, 6)
    torch.testing.assert_close(ours, ref)
    assert temporal_pool(ours).shape == (3, 4096)


def _tcvrick_vggish(seed: int = 5) -> torch.nn.Module:
    """tcvrick's VGGish layout written out for the test: conv stack ``features``, FC stack ``fc``, the conv
    map flattened from NHWC (his fix of harritaylor's port); random weights."""
    torch.manual_seed(seed)
    layers, channels = [], 1
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, stride=2))
        else:
            layers += [torch.nn.Conv2d(channels, v, 3, stride=1, padding=1), torch.nn.ReLU()]
            channels = v

    class Tcvrick(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(*layers)
            self.fc = torch.nn.Sequential(
                torch.nn.Linear(512 * 24, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 4096), torch.nn.ReLU(),
                torch.nn.Linear(4096, 128), torch.nn.ReLU(),
            )

        def forward(self, x):
            x = self.features(x).permute(0, 2, 3, 1).contiguous()
            return self.fc(x.view(x.size(0), -1))

    return Tcvrick().eval()


def test_tcvrick_layout_converts_and_matches(tmp_path):
    """The authors' VGGish weights layout (``features.N``, ``fc.N``) -> same taps as the tcvrick module."""
    ref = _tcvrick_vggish()
    assert any(k.startswith("fc.4.") for k in ref.state_dict())
    path = save_state(tmp_path / "pytorch_vggish.pth", ref.state_dict(), wrap=False)
    model, fe = convert_vggish_checkpoint(path, fusion_layers=[10, 15])
    examples = fe(make_clips((2.1,), seed=4)[0], sampling_rate=16000, return_tensors="pt")["input_values"]
    x = examples.reshape(-1, 1, 96, 64)
    hooks = Hooks({10: ref.features[9], 15: ref.features[14]})
    with torch.no_grad():
        final = ref(x)
        ours = model.backbone.run_taps(x, [10, 15, 22])
    hooks.remove()
    torch.testing.assert_close(ours[22], final, rtol=1e-5, atol=1e-6)
    for layer in (10, 15):
        torch.testing.assert_close(ours[layer], hooks.out[layer], rtol=1e-5, atol=1e-6)
    # strict keys in the checkpoint's own naming; a mixed layout is refused
    state = ref.state_dict()
    broken = save_state(tmp_path / "broken.pth", {k: v for k, v in state.items() if k != "fc.2.weight"}, False)
    with pytest.raises(ValueError, match=r"tcvrick VGGish checkpoint: missing keys \['fc.2.weight'\]"):
        convert_vggish_checkpoint(broken)
    mixed = save_state(tmp_path / "mixed.pth", {**state, "embeddings.0.bias": state["fc.0.bias"]}, False)
    with pytest.raises(ValueError, match=r"cannot tell the VGGish layout.*found both"):
        convert_vggish_checkpoint(mixed)
    with pytest.raises(ValueError, match="layout must be"):
        convert_vggish_checkpoint(path, layout="google")
