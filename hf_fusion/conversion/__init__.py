"""Converters from original backbone checkpoints to saved ``AudioFusionModel`` folders."""

from .ast import convert_ast_checkpoint
from .cnn14 import convert_cnn14_checkpoint
from .vggish import convert_vggish_checkpoint

__all__ = ["convert_ast_checkpoint", "convert_cnn14_checkpoint", "convert_vggish_checkpoint"]
