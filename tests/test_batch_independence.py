"""A clip's embedding is the same alone, in any batch, at any batch_size (masks, every backbone).

For every tiny variant that a backbone's entry declares (``hf_fusion.catalog``: random configs, CREPE with its
real tiny weights, one per ``hf`` masking strategy) eight clips of mixed lengths (and, where the variant
declares one, with a forced T_o) are embedded one by one (the reference), then in shuffled batches of 1, 3
and 8, through both paths:
- the model call: ``FusedAudioFeatureExtractor`` -> ``AudioFusionModel(input_values, attention_mask=...)``;
- ``extract_features`` (every layer's cached Eq.1+Eq.3 vector, and the fused one, via ``FeatureCache.load``).
Every vector must equal the clip's vector alone to RTOL (max |batched - alone| / max |alone| per clip), and
bit for bit for what the variant declares ``exact``: there every op computes a clip's rows alike whatever the batch (CREPE's
classifier runs on fixed frame blocks, ``backbone_base.in_row_blocks``) and Eq.3 averages each clip over its
own frames only. CNN14's convs, VGGish's FC layers and the transformers encoders' GEMMs round by batch shape
(oneDNN / BLAS kernel choice), ~1e-7 relative.
"""

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Audio, ClassLabel, Dataset, Features

from hf_fusion import AudioFusionConfig, AudioFusionModel
from hf_fusion.catalog import build_tiny, tiny_variants
from hf_fusion.extraction import extract_features

from .conftest import make_clips

SR = 16000
RTOL = 1e-5
#: mixed lengths in seconds (two equal ones: the hf "groups" strategy runs them together)
SECONDS = (1.3, 0.45, 0.9, 2.1, 0.6, 0.9, 0.35, 1.05)
ORDER = (3, 0, 6, 1, 5, 7, 2, 4)  # batches are cut from this shuffled order
BATCH_SIZES = (1, 3, 8)
#: every tiny variant of every backbone entry, and "<variant>@T_o=<k>" for those that declare a forced T_o
VARIANTS = {name: (entry.name, variant) for name, (entry, variant) in tiny_variants().items()}
CASES = tuple(VARIANTS) + tuple(f"{name}@T_o={v.forced_frames}" for name, (_, v) in VARIANTS.items()
                                if v.forced_frames is not None)


def tolerance(name, layer="fusion") -> float:
    """0 where the variant declares the vector exact whatever the batch (its ``exact``), else RTOL."""
    exact = VARIANTS[name.split("@T_o=")[0]][1].exact
    return 0.0 if exact == "all" or layer in exact else RTOL


def build(name, folder):
    """(model in eval mode, feature extractor) of one tiny variant; "<name>@T_o=<k>" forces T_o = k."""
    if "@T_o=" in name:
        name, t_o = name.split("@T_o=")
        model, fe = build(name, folder)
        forced = AudioFusionModel(AudioFusionConfig(**{**model.config.to_dict(), "num_output_frames": int(t_o)}))
        forced.load_state_dict(model.state_dict())
        return forced.eval(), fe
    torch.manual_seed(0)
    backbone, variant = VARIANTS[name]
    return build_tiny(variant, backbone, folder)


def relative_difference(batched: np.ndarray, alone: np.ndarray) -> float:
    """max |batched - alone| / max |alone| (one clip's vector)."""
    return float(np.abs(batched - alone).max() / np.abs(alone).max())


@pytest.fixture(scope="module")
def clips():
    return make_clips(SECONDS, seed=5)


@pytest.fixture(scope="module", params=CASES)
def setup(request, tmp_path_factory, clips):
    """(name, model, fe, alone) with alone = {"fused": [n, D], layer: [n, D_l]} computed one clip at a time."""
    name = request.param
    model, fe = build(name, tmp_path_factory.mktemp(name))
    layers = list(model.config.backbone_class.tappable_layers(model.config.backbone_config))
    fused, per_layer = [], {layer: [] for layer in layers}
    with torch.no_grad():
        for clip in clips:
            inputs = fe(clip, sampling_rate=SR, return_tensors="pt")
            mask = inputs.get("attention_mask")
            fused.append(model(**inputs).pooler_output[0].numpy())
            taps = model.tap(inputs["input_values"], "all", attention_mask=mask)
            frame_mask = None if mask is None else model.frame_mask(mask)
            for layer in layers:
                per_layer[layer].append(model.pool([taps[layer]], mask=frame_mask)[1][0].numpy())
    alone = {"fused": np.stack(fused), **{layer: np.stack(v) for layer, v in per_layer.items()}}
    return name, model, fe, alone


def test_clips_really_differ_in_length(setup, clips):
    """The batch of all eight clips is padded: every backbone with a time axis returns a mask with zeros."""
    name, model, fe, _ = setup
    batch = fe(clips, sampling_rate=SR, return_tensors="pt")
    if not model.config.backbone_class.supports_attention_mask:  # a fixed input (AST): each clip padded / cut alone
        assert "attention_mask" not in batch and batch["input_values"].shape[0] == 8
        assert len({tuple(row.shape) for row in batch["input_values"]}) == 1
        return
    mask = batch["attention_mask"]
    assert mask.shape[0] == 8 and bool((mask == 0).any()), mask.sum(1)
    with torch.no_grad():
        frame_mask = model.frame_mask(mask)
    if model.config.num_output_frames is None:  # clips keep different numbers of valid output frames
        assert len(set(frame_mask.sum(1).tolist())) > 1
    else:  # a forced T_o: every frame of every clip is valid (each pooled over its own frames)
        assert bool(frame_mask.all()) and frame_mask.shape == (8, model.config.num_output_frames)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_model_call_batch_independent(setup, clips, batch_size):
    name, model, fe, alone = setup
    worst = 0.0
    with torch.no_grad():
        for start in range(0, len(ORDER), batch_size):
            rows = list(ORDER[start : start + batch_size])
            inputs = fe([clips[i] for i in rows], sampling_rate=SR, return_tensors="pt")
            out = model(**inputs).pooler_output.numpy()
            for k, i in enumerate(rows):
                worst = max(worst, relative_difference(out[k], alone["fused"][i]))
    assert worst <= tolerance(name), (
        f"{name}, batch_size={batch_size}: max relative difference {worst:.3g} alone vs batched")


def audio_dataset(folder, clips):
    paths = []
    for i, clip in enumerate(clips):
        path = folder / f"clip_{i}.wav"
        sf.write(path, clip, SR, subtype="FLOAT")  # float WAV: decodes to exactly these samples
        paths.append(str(path))
    features = Features({"audio": Audio(sampling_rate=SR), "label": ClassLabel(names=["a", "b"])})
    return Dataset.from_dict({"audio": paths, "label": [i % 2 for i in range(len(clips))]}, features=features)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_extract_features_batch_independent(setup, clips, batch_size, tmp_path):
    name, model, fe, alone = setup
    audio = tmp_path / "audio"
    audio.mkdir()
    data = audio_dataset(audio, [clips[i] for i in ORDER])  # stored in the shuffled order
    cache = extract_features(model, fe, data, "mixed", layers="all", batch_size=batch_size,
                             cache_dir=tmp_path / "cache", progress=False)
    order = list(ORDER)
    for layer in [*cache.layers, "fusion"]:
        X, _ = cache.load(layer, "all")
        reference = alone["fused" if layer == "fusion" else layer][order]
        worst = max(relative_difference(X[k], reference[k]) for k in range(len(order)))
        assert worst <= tolerance(name, layer), (
            f"{name}, batch_size={batch_size}, layer {layer}: max relative difference {worst:.3g}")


def test_cache_key_ignores_batch_size(tmp_path, clips):
    """batch_size is not in the cache key (vectors do not depend on it): a second run at another batch
    size reuses the cache without running the model; backbones with a time axis key the masking version."""
    from hf_fusion.extraction import model_key

    model, fe = build("crepe", tmp_path / "model")
    (tmp_path / "audio").mkdir()
    data = audio_dataset(tmp_path / "audio", clips)
    first = extract_features(model, fe, data, "mixed", batch_size=3, cache_dir=tmp_path / "cache", progress=False)
    forward = model.backbone.forward
    model.backbone.forward = lambda *a, **k: pytest.fail("the cache should have been reused")
    try:
        again = extract_features(model, fe, data, "mixed", batch_size=8, cache_dir=tmp_path / "cache", progress=False)
    finally:
        model.backbone.forward = forward
    np.testing.assert_array_equal(first.load("fusion", "all")[0], again.load("fusion", "all")[0])
    assert model_key(model, fe)[1]["valid_frames"] == 1
    ast, ast_fe = build("ast", tmp_path / "ast")
    assert "valid_frames" not in model_key(ast, ast_fe)[1]  # fixed-length input: AST caches keep their key
