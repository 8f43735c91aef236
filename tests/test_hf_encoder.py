"""backbone="hf": tiny random Wav2Vec2 and Whisper saved with save_pretrained, converted, checked against the
wrapped model's own hidden_states with Eq.1/Eq.3 applied by hand, and round-tripped."""

import numpy as np
import pytest
import torch
from transformers import (
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

from hf_fusion import AudioFusionConfig, AudioFusionModel
from hf_fusion.catalog.cli_names import BackboneSpec, build_from_spec, resolve_backbone_spec
from hf_fusion.conversion import convert_hf_encoder

from .conftest import make_clips

SR = 16000


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8, 8),
        conv_stride=(5, 4, 2), conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-whisper")
    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=16, encoder_layers=3, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=20, max_source_positions=50, max_target_positions=20,
        vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=20, chunk_length=1).save_pretrained(folder)  # 1 s -> 100 frames
    return folder


def _by_hand(hidden_states, layers, num_frames):
    """Eq.1 (max-pool time to T_o), Eq.2 (concat), Eq.3 (mean + max) on the wrapped model's hidden states."""
    aligned = []
    for layer in layers:
        h = hidden_states[layer]  # [B, T, D]
        k = h.shape[1] // num_frames
        pooled = h[:, : k * num_frames].reshape(h.shape[0], num_frames, k, h.shape[2]).amax(2)
        aligned.append(pooled)
    frames = torch.cat(aligned, dim=-1)  # [B, T_o, sum D]
    return frames, frames.mean(1) + frames.amax(1)


def test_wav2vec2_layers_match_wrapped_model(wav2vec2_dir):
    model, fe = convert_hf_encoder(f"hf:{wav2vec2_dir}", fusion_layers=[2, 4])
    wrapped = Wav2Vec2Model.from_pretrained(wav2vec2_dir).eval()
    clips = make_clips((0.5, 0.5))
    inputs = fe(clips, sampling_rate=SR, return_tensors="pt")["input_values"]
    reference = Wav2Vec2FeatureExtractor.from_pretrained(wav2vec2_dir)(clips, sampling_rate=SR, return_tensors="pt")
    torch.testing.assert_close(inputs, reference["input_values"])  # the "hf" front end = the wrapped extractor
    with torch.no_grad():
        hs = wrapped(inputs, output_hidden_states=True).hidden_states
        out = model(inputs, output_hidden_states=True)
        taps = model.tap(inputs, "all")
    assert model.config.layer_dims == {1: 16, 2: 16, 3: 16, 4: 16}
    assert sorted(taps) == [1, 2, 3, 4]  # hidden_states[0] (feature projection) is not a tap
    t = hs[-1].shape[1]
    frames, emb = _by_hand(hs, [2, 4], t)
    torch.testing.assert_close(out.last_hidden_state, frames)
    torch.testing.assert_close(out.pooler_output, emb)
    for layer in range(1, 5):
        torch.testing.assert_close(taps[layer], hs[layer].transpose(1, 2))
    # a configured T_o max-pools the frame axis (Eq.1)
    config = AudioFusionConfig(**{**model.config.to_dict(), "num_output_frames": 4})
    pooled = AudioFusionModel(config).eval()
    pooled.load_state_dict(model.state_dict())
    with torch.no_grad():
        out4 = pooled(inputs)
    frames4, emb4 = _by_hand(hs, [2, 4], 4)
    assert out4.last_hidden_state.shape == (2, 4, 32)
    torch.testing.assert_close(out4.pooler_output, emb4)


def test_whisper_encoder_layers_match_wrapped_model(whisper_dir):
    model, fe = convert_hf_encoder(str(whisper_dir))
    assert model.config.fusion_layers == [1, 3] and type(model.backbone.encoder).__name__ == "WhisperEncoder"
    assert not any(k.startswith("backbone.encoder.decoder") or "decoder" in k for k in model.state_dict())
    wrapped = WhisperModel.from_pretrained(whisper_dir).eval()
    clips = make_clips((1.0, 0.6))
    inputs = fe(clips, sampling_rate=SR, return_tensors="pt")["input_values"]
    reference = WhisperFeatureExtractor.from_pretrained(whisper_dir)(clips, sampling_rate=SR, return_tensors="pt")
    torch.testing.assert_close(inputs, reference["input_features"])
    assert inputs.shape == (2, 20, 100)
    with torch.no_grad():
        hs = wrapped.encoder(inputs, output_hidden_states=True).hidden_states
        out = model(inputs)
    assert len(hs) == 4 and hs[-1].shape == (2, 50, 16)
    frames, emb = _by_hand(hs, [1, 3], 50)
    torch.testing.assert_close(out.last_hidden_state, frames)
    torch.testing.assert_close(out.pooler_output, emb)


def test_errors_and_specs(wav2vec2_dir):
    with pytest.raises(ValueError, match="model_config"):
        AudioFusionConfig(backbone="hf")
    with pytest.raises(ValueError, match="not a transformers model type"):
        AudioFusionConfig(backbone="hf", backbone_config={"model_config": {"model_type": "nope"}})
    model, _ = convert_hf_encoder(wav2vec2_dir)
    with pytest.raises(ValueError, match=r"tappable layers are \[1, 2, 3, 4\]"):
        model.tap(torch.zeros(1, 4000), [0])
    assert resolve_backbone_spec("hf:facebook/wav2vec2-base") == BackboneSpec("hf", "facebook/wav2vec2-base")
    assert resolve_backbone_spec("crepe-full") == BackboneSpec("crepe", None, {"capacity": "full"})
    assert resolve_backbone_spec("crepe") == BackboneSpec("crepe", None, {"capacity": "tiny"})
    assert resolve_backbone_spec("ast:some/ast") == BackboneSpec("ast", "some/ast")
    with pytest.raises(ValueError, match="hf:<transformers model id or path>"):
        resolve_backbone_spec("vggishh")

    built, built_fe = build_from_spec(f"hf:{wav2vec2_dir}", fusion_layers=[1])
    assert built.config.fusion_layers == [1] and built_fe.frontend["name"] == "hf"
    assert np.isfinite(built(**built_fe(make_clips((0.3,)), sampling_rate=SR, return_tensors="pt")).pooler_output.detach().numpy()).all()
