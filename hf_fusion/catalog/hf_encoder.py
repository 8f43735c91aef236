"""The ``hf:`` entry: any transformers audio encoder, tapped through ``output_hidden_states``; one tiny
random variant per masking strategy (GroupNorm without a mask, LayerNorm with one, Whisper's fixed chunk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..conversion.hf_encoder import HF_PREFIX, convert_hf_encoder
from ..models.backbone_hf import HFEncoderBackbone
from .entry import BackboneEntry, TinyVariant

#: a 3-block, 16-dim conv encoder of the wav2vec2 family
TINY_CONV_ENCODER = dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(8, 8, 8), conv_stride=(5, 4, 2), conv_kernel=(10, 8, 4),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
_LAYER_NORM = dict(feat_extract_norm="layer", do_stable_layer_norm=True)


def wrapped_model_type(backbone_config: dict[str, Any] | None) -> tuple[str, ...] | None:
    """The wrapped model type (``wav2vec2``; an AST through this path also answers to ``ast``)."""
    if backbone_config is None:
        return None
    model_type = str((backbone_config.get("model_config") or {}).get("model_type", ""))
    return (model_type, "ast") if model_type == "audio-spectrogram-transformer" else (model_type,)


def parse_hf_name(spec: str) -> tuple[str | None, dict[str, Any]] | None:
    """``hf:<model id or path>``."""
    if not spec.startswith(HF_PREFIX):
        return None
    source = spec[len(HF_PREFIX):]
    if not source:
        raise ValueError("backbone 'hf:' needs a model id or path, e.g. hf:facebook/wav2vec2-base")
    return source, {}


def tiny_encoder(kind: str, folder: Path):
    """A tiny random transformers encoder + its feature extractor saved to ``folder``, converted to ``hf``."""
    import transformers as tf

    if kind == "wav2vec2-group":  # wav2vec2-base style: GroupNorm front end, extractor without attention_mask
        model, fe = tf.Wav2Vec2Model(tf.Wav2Vec2Config(**TINY_CONV_ENCODER)), tf.Wav2Vec2FeatureExtractor(do_normalize=True)
    elif kind == "wav2vec2-layer":  # wav2vec2-large-lv60 style: LayerNorm front end, extractor returns the mask
        model = tf.Wav2Vec2Model(tf.Wav2Vec2Config(**TINY_CONV_ENCODER, **_LAYER_NORM))
        fe = tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    elif kind == "hubert":  # hubert-base style (GroupNorm, no mask)
        model, fe = tf.HubertModel(tf.HubertConfig(**TINY_CONV_ENCODER)), tf.Wav2Vec2FeatureExtractor(do_normalize=True)
    elif kind == "wavlm":  # wavlm-large style (LayerNorm, mask)
        model = tf.WavLMModel(tf.WavLMConfig(**TINY_CONV_ENCODER, **_LAYER_NORM, num_buckets=32, max_bucket_distance=40))
        fe = tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    elif kind == "whisper":  # 1 s chunk -> 100 mel frames -> 50 encoder frames
        model = tf.WhisperModel(tf.WhisperConfig(
            d_model=16, encoder_layers=3, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=20, max_source_positions=50,
            max_target_positions=20, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1,
        ))
        fe = tf.WhisperFeatureExtractor(feature_size=20, chunk_length=1)
    else:
        raise ValueError(f"unknown tiny encoder {kind!r}")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    return convert_hf_encoder(str(folder))


def _variant(kind: str, forced_frames: int | None = None) -> TinyVariant:
    return TinyVariant(f"hf-{kind}", build=lambda folder: tiny_encoder(kind, folder), forced_frames=forced_frames)


ENTRY = BackboneEntry(
    HFEncoderBackbone,
    converter=convert_hf_encoder,
    checkpoint_help="a transformers audio encoder: Hub id or folder",
    repo_aliases=wrapped_model_type,
    cli_parser=parse_hf_name,
    cli_forms=(f"{HF_PREFIX}<transformers model id or path>",),
    # BLAS rounds the encoders' GEMMs by batch shape (~1e-7 relative): nothing bit for bit
    tiny=(_variant("wav2vec2-group", 4), _variant("wav2vec2-layer", 4), _variant("hubert"), _variant("wavlm"),
          _variant("whisper", 4)),
    parity_tests=("tests/test_hf_encoder.py",),
)
