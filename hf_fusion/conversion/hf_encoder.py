"""Any transformers audio encoder (Hub id or local folder) -> ``AudioFusionModel(backbone="hf")``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoFeatureExtractor, AutoModel

from ..models.configuration_fusion import AudioFusionConfig
from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor
from ..models.modeling_fusion import AudioFusionModel
from ._checkpoint import finish_conversion

HF_PREFIX = "hf:"


def strip_hf_prefix(source: str | Path) -> str:
    """``"hf:facebook/wav2vec2-base"`` -> ``"facebook/wav2vec2-base"`` (a path or id without prefix is kept)."""
    source = str(source)
    return source[len(HF_PREFIX):] if source.startswith(HF_PREFIX) else source


def convert_hf_encoder(
    source: str | Path,
    fusion_layers: Sequence[int] | None = None,
    output_dir: str | Path | None = None,
    num_output_frames: int | None = None,
    **from_pretrained_kwargs,
) -> tuple[AudioFusionModel, FusedAudioFeatureExtractor]:
    """Load ``source`` ("hf:<id or path>" or "<id or path>") with transformers and wrap its encoder.

    Weights come from ``AutoModel.from_pretrained`` (float32 unless ``dtype=`` is given; task heads are
    dropped; Whisper keeps its encoder) and must all be present: missing encoder weights raise. The
    checkpoint's feature extractor (``AutoFeatureExtractor``) becomes the ``hf`` front end.
    """
    src = strip_hf_prefix(source)
    from_pretrained_kwargs.setdefault("dtype", torch.float32)
    wrapped, info = AutoModel.from_pretrained(src, output_loading_info=True, **from_pretrained_kwargs)
    config = wrapped.config
    encoder = wrapped.get_encoder() if getattr(config, "is_encoder_decoder", False) else wrapped
    prefix = "encoder."
    missing = [k for k in info["missing_keys"] if not config.is_encoder_decoder or k.startswith(prefix)]
    if missing:
        raise ValueError(f"{src}: encoder weights missing from the checkpoint: {sorted(missing)[:20]}")
    hub_kwargs = {k: v for k, v in from_pretrained_kwargs.items() if k in ("revision", "cache_dir", "token", "local_files_only")}
    try:
        fe = AutoFeatureExtractor.from_pretrained(src, **hub_kwargs)
    except (OSError, ValueError) as err:
        raise ValueError(f"{src}: no usable feature extractor (preprocessor_config.json): {err}") from err
    fusion_config = AudioFusionConfig(
        backbone="hf",
        backbone_config={"model_config": config.to_dict(), "feature_extractor": fe.to_dict()},
        fusion_layers=list(fusion_layers) if fusion_layers is not None else None,
        num_output_frames=num_output_frames,
    )
    model = AudioFusionModel(fusion_config)
    model.backbone.encoder.load_state_dict(encoder.state_dict(), strict=True)
    return finish_conversion(model, output_dir)
