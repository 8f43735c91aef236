"""Transformers AST checkpoint (``ASTModel`` or ``ASTForAudioClassification``) -> ``AudioFusionModel``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transformers import ASTModel, FeatureExtractionMixin

from ..configuration_fusion import AudioFusionConfig
from ..feature_extraction_fusion import FusedAudioFeatureExtractor
from ..modeling_fusion import AudioFusionModel
from ._checkpoint import finish_conversion

PAPER_CHECKPOINT = "MIT/ast-finetuned-audioset-10-10-0.4593"
_FRONTEND_KEYS = ("sampling_rate", "num_mel_bins", "max_length", "mean", "std", "do_normalize")


def convert_ast_checkpoint(
    checkpoint: str | Path = PAPER_CHECKPOINT,
    fusion_layers: Sequence[int] = (5, 12),
    output_dir: str | Path | None = None,
    **from_pretrained_kwargs,
) -> tuple[AudioFusionModel, FusedAudioFeatureExtractor]:
    """Load an AST checkpoint (Hub id or local folder) with transformers and wrap it as a fused model.

    Weights are loaded by ``ASTModel.from_pretrained`` (a classification head is ignored); any AST
    weight missing from the checkpoint is an error. The checkpoint's ``preprocessor_config.json``
    (mean, std, max_length, ...) becomes the front-end settings. With ``output_dir`` the model and
    feature extractor are saved there (safetensors, remote code, auto_map).
    """
    ast, info = ASTModel.from_pretrained(checkpoint, output_loading_info=True, **from_pretrained_kwargs)
    if info["missing_keys"]:
        raise ValueError(f"{checkpoint}: AST weights missing from the checkpoint: {sorted(info['missing_keys'])}")
    frontend = {}
    try:
        fe_dict, _ = FeatureExtractionMixin.get_feature_extractor_dict(checkpoint, **from_pretrained_kwargs)
        frontend = {k: fe_dict[k] for k in _FRONTEND_KEYS if k in fe_dict}
    except OSError:
        pass  # no preprocessor_config.json: the AudioSet defaults apply
    config = AudioFusionConfig(
        backbone="ast", backbone_config=ast.config, fusion_layers=list(fusion_layers), frontend=frontend
    )
    model = AudioFusionModel(config)
    model.backbone.ast.load_state_dict(ast.state_dict(), strict=True)
    return finish_conversion(model, output_dir)
