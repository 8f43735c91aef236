"""Converters from original backbone checkpoints to saved ``AudioFusionModel`` folders; each backbone's
entry in :mod:`hf_fusion.catalog` names its converter and default checkpoint."""

from .ast import convert_ast_checkpoint, convert_original_ast_checkpoint
from .cnn14 import convert_cnn14_checkpoint
from .crepe import build_crepe_fusion_model, convert_crepe
from .hf_encoder import convert_hf_encoder
from .vggish import convert_vggish_checkpoint

__all__ = [
    "convert_ast_checkpoint",
    "convert_original_ast_checkpoint",
    "convert_vggish_checkpoint",
    "convert_cnn14_checkpoint",
    "build_crepe_fusion_model",
    "convert_crepe",
    "convert_hf_encoder",
]
