"""Converters from original backbone checkpoints to saved ``AudioFusionModel`` folders, registered for
their backbone class (:mod:`.registry`)."""

from .ast import convert_ast_checkpoint, convert_original_ast_checkpoint
from .cnn14 import convert_cnn14_checkpoint
from .crepe import build_crepe_fusion_model, convert_crepe
from .hf_encoder import convert_hf_encoder
from .registry import CONVERTERS, Converter, build_fused, converter_for, register_converter
from .specs import BackboneSpec, build_from_spec, resolve_backbone_spec
from .vggish import convert_vggish_checkpoint

__all__ = [
    "convert_ast_checkpoint",
    "convert_original_ast_checkpoint",
    "convert_vggish_checkpoint",
    "convert_cnn14_checkpoint",
    "build_crepe_fusion_model",
    "convert_crepe",
    "convert_hf_encoder",
    "CONVERTERS",
    "Converter",
    "build_fused",
    "converter_for",
    "register_converter",
    "BackboneSpec",
    "build_from_spec",
    "resolve_backbone_spec",
]
