"""Converters from original backbone checkpoints to saved ``AudioFusionModel`` folders."""

from .ast import convert_ast_checkpoint

__all__ = ["convert_ast_checkpoint"]
