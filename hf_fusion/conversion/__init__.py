"""Converters from original backbone checkpoints to saved ``AudioFusionModel`` folders."""

from .ast import convert_ast_checkpoint
from .crepe import build_crepe_fusion_model
from .hf_encoder import convert_hf_encoder
from .specs import BackboneSpec, build_from_spec, resolve_backbone_spec

__all__ = [
    "convert_ast_checkpoint",
    "build_crepe_fusion_model",
    "convert_hf_encoder",
    "BackboneSpec",
    "build_from_spec",
    "resolve_backbone_spec",
]
