"""The contract every registered backbone keeps, on each tiny variant its entry declares (the toy backbone
of tests/toy_backbone.py, registered from outside the package, included): declared layer dims = forward shapes, a clip alone = the
same clip in a batch (with the extractor's mask), bitwise save/load, strict loading, a clear error for a
malformed input, and loading through the repo's own remote code in an interpreter without hf_fusion.
Reference parity lives in the per-backbone files (test_vggish.py, test_cnn14.py, ...)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import hf_fusion.models.backbones as registry
from hf_fusion import AudioFusionModel, FusedAudioFeatureExtractor

from hf_fusion.catalog import ENTRIES, build_tiny, register_entry, tiny_variants

from .conftest import make_clips
from .toy_backbone import TOY_ENTRY


#: every tiny variant of every entry (a backbone's entry declares them), and the toy registered from outside
VARIANTS = {name: (entry.name, variant) for name, (entry, variant) in tiny_variants().items()}
VARIANTS.update({variant.name: (TOY_ENTRY.name, variant) for variant in TOY_ENTRY.tiny})
CASES = sorted(VARIANTS)
#: variants whose backbone code is not in the package's closure, so a saved repo cannot carry it
NOT_SHIPPED = {name for name, (backbone, _) in VARIANTS.items() if backbone == TOY_ENTRY.name}
#: clip lengths (s): different, so a batch pads and masks
LENGTHS = (1.1, 0.5, 1.6)


@pytest.fixture(scope="module", autouse=True)
def _toy_registered():
    register_entry(TOY_ENTRY)
    yield
    ENTRIES.pop("toy", None)
    registry.BACKBONES.pop("toy", None)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """variant name -> (model, extractor, clips), built once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            backbone, variant = VARIANTS[name]
            model, fe = build_tiny(variant, backbone, tmp_path_factory.mktemp(name))
            cache[name] = model, fe, make_clips(LENGTHS, sr=fe.sampling_rate, seed=3)
        return cache[name]

    return get


def _embed(model, fe, clips):
    with torch.no_grad():
        return model(**fe(clips, sampling_rate=fe.sampling_rate, return_tensors="pt")).pooler_output


def test_every_registered_backbone_has_a_tiny_variant():
    covered = {backbone for backbone, _ in VARIANTS.values()}
    assert covered == set(registry.BACKBONES), "declare a TinyVariant in each backbone's entry (hf_fusion.catalog)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_declared_layer_dims_are_the_forward_shapes(built, name):
    model, fe, clips = built(name)
    config, cls = model.config, model.config.backbone_class
    inputs = fe(clips, sampling_rate=fe.sampling_rate, return_tensors="pt")
    with torch.no_grad():
        taps = model.tap(inputs["input_values"], "all", attention_mask=inputs.get("attention_mask"))
        out = model(**inputs, output_hidden_states=True)
    dims = cls.layer_dims(config.backbone_config, config.frontend)
    assert list(taps) == list(cls.tappable_layers(config.backbone_config)) == list(dims)
    assert config.layer_dims == dims
    frames = {z.shape[2] for z in taps.values()}
    assert len(frames) == 1, f"taps disagree on T_o: {frames}"
    assert {layer: tuple(z.shape[:2]) for layer, z in taps.items()} == {l: (len(clips), d) for l, d in dims.items()}
    hidden = sum(dims[layer] for layer in config.fusion_layers)
    assert config.hidden_size == hidden and tuple(out.pooler_output.shape) == (len(clips), hidden)
    assert out.last_hidden_state.shape[0] == len(clips) and out.last_hidden_state.shape[2] == hidden
    assert [h.shape[-1] for h in out.hidden_states] == [dims[layer] for layer in config.fusion_layers]
    assert torch.isfinite(out.pooler_output).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_clip_alone_equals_the_clip_in_a_batch(built, name):
    model, fe, clips = built(name)
    together = _embed(model, fe, clips)
    for k, clip in enumerate(clips):
        torch.testing.assert_close(_embed(model, fe, [clip])[0], together[k], rtol=1e-5, atol=1e-6,
                                   msg=f"{name}: clip {k} alone differs from the batch")


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_and_load_are_bitwise(built, name, tmp_path):
    model, fe, clips = built(name)
    model.save_pretrained(tmp_path)
    fe.save_pretrained(tmp_path)
    loaded = AudioFusionModel.from_pretrained(tmp_path).eval()
    loaded_fe = FusedAudioFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.config.to_dict() | {"_name_or_path": ""} == model.config.to_dict() | {"_name_or_path": ""}
    assert loaded_fe.frontend == fe.frontend
    saved, back = model.state_dict(), loaded.state_dict()
    assert list(saved) == list(back)
    for key, value in saved.items():  # BatchNorm statistics and recomputed buffers included
        assert torch.equal(back[key], value), f"{name}: {key} changed in save/load"
    torch.testing.assert_close(_embed(loaded, loaded_fe, clips), _embed(model, fe, clips), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_loading_is_strict(built, name, tmp_path):
    model, _, _ = built(name)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = sorted(weights)[len(weights) // 2]
    save_file({k: v for k, v in weights.items() if k != dropped}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    # the message names the key as the model calls it (a saved AST keeps transformers' older key names)
    with pytest.raises(ValueError, match=r"do not match its config.json.*1 missing keys \(e.g. backbone\."):
        AudioFusionModel.from_pretrained(tmp_path)
    assert AudioFusionModel.from_pretrained(tmp_path, allow_missing_weights=True).config.backbone == VARIANTS[name][0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_malformed_input_is_an_error_naming_its_shape(built, name):
    model, fe, clips = built(name)
    bad = torch.zeros(2, 1, 1, 1, 1, 3)
    with pytest.raises(ValueError, match=r"\(2, 1, 1, 1, 1, 3\)"):
        model(bad)
    inputs = fe(clips, sampling_rate=fe.sampling_rate, return_tensors="pt")
    mask = inputs.get("attention_mask")
    if mask is None:  # a fixed-length input: a mask is refused
        with pytest.raises(ValueError, match="takes no attention_mask"):
            model(inputs["input_values"], attention_mask=torch.ones(len(clips), 3, dtype=torch.long))
    else:
        wrong = torch.ones(mask.shape[0], mask.shape[1] + 1, dtype=mask.dtype)
        with pytest.raises(ValueError, match=rf"attention_mask must be .*got shape \({mask.shape[0]}, {mask.shape[1] + 1}\)"):
            model(inputs["input_values"], attention_mask=wrong)


REMOTE_LOADER = textwrap.dedent(
    """
    import sys
    sys.modules["hf_fusion"] = None  # any `import hf_fusion` now raises ImportError
    import numpy as np, torch
    from transformers import AutoFeatureExtractor, AutoModel
    src, clips_file, out = sys.argv[1:4]
    model = AutoModel.from_pretrained(src, trust_remote_code=True).eval()
    fe = AutoFeatureExtractor.from_pretrained(src, trust_remote_code=True)
    data = np.load(clips_file)
    clips = [data[k] for k in sorted(data.files)]
    with torch.no_grad():
        emb = model(**fe(clips, sampling_rate=fe.sampling_rate, return_tensors="pt")).pooler_output
    np.save(out, emb.numpy())
    print(type(model).__module__, type(fe).__module__)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(CASES) - NOT_SHIPPED))
def test_remote_code_loads_without_hf_fusion(built, name, tmp_path):
    model, fe, clips = built(name)
    folder = tmp_path / "repo"
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    np.savez(tmp_path / "clips.npz", **{f"c{i}": c for i, c in enumerate(clips)})
    (tmp_path / "loader.py").write_text(REMOTE_LOADER)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(tmp_path / "loader.py"), str(folder), str(tmp_path / "clips.npz"),
                           str(tmp_path / "emb.npy")], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.split()[:2] and all(m.startswith("transformers_modules") for m in proc.stdout.split()[:2])
    np.testing.assert_allclose(np.load(tmp_path / "emb.npy"), _embed(model, fe, clips).numpy(), rtol=1e-5, atol=1e-6)
