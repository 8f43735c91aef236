"""A clip's embedding is the same alone, in any batch, at any batch_size (masks, every backbone).

For every backbone (tiny random configs; CREPE with its real tiny weights) eight clips of mixed lengths
(and, for five of them, with a forced T_o) are embedded one by one (the reference), then in shuffled batches of 1, 3 and 8, through both paths:
- the model call: ``FusedAudioFeatureExtractor`` -> ``AudioFusionModel(input_values, attention_mask=...)``;
- ``extract_features`` (every layer's cached Eq.1+Eq.3 vector, and the fused one, via ``FeatureCache.load``).
Every vector must equal the clip's vector alone to RTOL (max |batched - alone| / max |alone| per clip), and
bit for bit for the layers in EXACT: there every op computes a clip's rows alike whatever the batch (CREPE's
classifier runs on fixed frame blocks, ``backbone_base.in_row_blocks``) and Eq.3 averages each clip over its
own frames only. CNN14's convs, VGGish's FC layers and the transformers encoders' GEMMs round by batch shape
(oneDNN / BLAS kernel choice), ~1e-7 relative.
"""

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Audio, ClassLabel, Dataset, Features

from hf_fusion import AudioFusionConfig, AudioFusionModel, FusedAudioFeatureExtractor
from hf_fusion.extraction import extract_features

from .conftest import TINY_AST, make_clips

SR = 16000
RTOL = 1e-5
#: cases whose vectors are batch-invariant bit for bit (relative difference exactly 0), all layers or those
#: listed ("fusion": the fused vector). VGGish's FC layers 17-22 are one GEMM over the batch's examples; AST
#: is exact at this tiny size only (a full-size GEMM over B x 1214 tokens may round by B).
EXACT = {"vggish": (*range(1, 17), "fusion"), "ast": "all", "crepe": "all", "crepe@T_o=2": "all"}


def tolerance(name, layer="fusion") -> float:
    exact = EXACT.get(name, ())
    return 0.0 if exact == "all" or layer in exact else RTOL
#: mixed lengths in seconds (two equal ones: the hf "groups" strategy runs them together)
SECONDS = (1.3, 0.45, 0.9, 2.1, 0.6, 0.9, 0.35, 1.05)
ORDER = (3, 0, 6, 1, 5, 7, 2, 4)  # batches are cut from this shuffled order
BATCH_SIZES = (1, 3, 8)
BACKBONES = ("vggish", "cnn14", "ast", "crepe", "wav2vec2-group", "wav2vec2-layer", "hubert", "wavlm", "whisper")
#: a forced T_o (config.num_output_frames): Eq.1 max-pools each clip over its own frames
FORCED = {"cnn14": 1, "crepe": 2, "wav2vec2-group": 4, "wav2vec2-layer": 4, "whisper": 4}
CASES = BACKBONES + tuple(f"{name}@T_o={t_o}" for name, t_o in FORCED.items())


def _tiny_hf(name, folder):
    """A tiny random transformers encoder + feature extractor saved to ``folder``, converted to backbone="hf"."""
    from transformers import (
        HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, WavLMConfig,
        WavLMModel, WhisperConfig, WhisperFeatureExtractor, WhisperModel,
    )

    from hf_fusion.conversion import convert_hf_encoder

    torch.manual_seed(0)
    conv = dict(
        hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8, 8),
        conv_stride=(5, 4, 2), conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )
    layer_norm = dict(feat_extract_norm="layer", do_stable_layer_norm=True)
    if name == "wav2vec2-group":  # wav2vec2-base style: GroupNorm front end, extractor without attention_mask
        model, fe = Wav2Vec2Model(Wav2Vec2Config(**conv)), Wav2Vec2FeatureExtractor(do_normalize=True)
    elif name == "wav2vec2-layer":  # wav2vec2-large-lv60 style: LayerNorm front end, extractor returns the mask
        model = Wav2Vec2Model(Wav2Vec2Config(**conv, **layer_norm))
        fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    elif name == "hubert":  # hubert-base style (GroupNorm, no mask)
        model, fe = HubertModel(HubertConfig(**conv)), Wav2Vec2FeatureExtractor(do_normalize=True)
    elif name == "wavlm":  # wavlm-large style (LayerNorm, mask)
        model = WavLMModel(WavLMConfig(**conv, **layer_norm, num_buckets=32, max_bucket_distance=40))
        fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    elif name == "whisper":  # 1 s chunk -> 100 mel frames -> 50 encoder frames
        model = WhisperModel(WhisperConfig(
            d_model=16, encoder_layers=3, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=20, max_source_positions=50,
            max_target_positions=20, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1,
        ))
        fe = WhisperFeatureExtractor(feature_size=20, chunk_length=1)
    else:
        raise ValueError(name)
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    return convert_hf_encoder(str(folder))


def build(name, folder):
    """(model in eval mode, feature extractor) for one backbone, tiny; "<name>@T_o=<k>" forces T_o = k."""
    if "@T_o=" in name:
        name, t_o = name.split("@T_o=")
        model, fe = build(name, folder)
        forced = AudioFusionModel(AudioFusionConfig(**{**model.config.to_dict(), "num_output_frames": int(t_o)}))
        forced.load_state_dict(model.state_dict())
        return forced.eval(), fe
    torch.manual_seed(0)
    if name == "crepe":
        from hf_fusion.conversion import build_crepe_fusion_model

        model, fe = build_crepe_fusion_model("tiny", hop_length=800)
    elif name in ("vggish", "cnn14", "ast"):
        backbone_config = {"cnn14": {"channels": [4, 8, 8, 8, 8, 8]}, "ast": dict(TINY_AST)}.get(name)
        config = AudioFusionConfig(backbone=name, backbone_config=backbone_config)
        model, fe = AudioFusionModel(config), FusedAudioFeatureExtractor.from_fusion_config(config)
    else:
        model, fe = _tiny_hf(name, folder)
    return model.eval(), fe


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
    if name == "ast":  # fixed 1024-frame (here 64) input: every clip padded / cut alone, no mask needed
        assert "attention_mask" not in batch and batch["input_values"].shape == (8, TINY_AST["max_length"], 32)
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


def _audio_dataset(folder, clips):
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
    data = _audio_dataset(audio, [clips[i] for i in ORDER])  # stored in the shuffled order
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
    data = _audio_dataset(tmp_path / "audio", clips)
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
