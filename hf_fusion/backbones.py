"""Registry of backbones by name (``AudioFusionConfig.backbone``)."""

from __future__ import annotations

from .backbone_ast import ASTBackbone
from .backbone_base import TappedBackbone
from .backbone_cnn14 import Cnn14Backbone
from .backbone_crepe import CrepeBackbone
from .backbone_hf import HFEncoderBackbone
from .backbone_vggish import VGGishBackbone

BACKBONES: dict[str, type[TappedBackbone]] = {
    cls.name: cls for cls in (ASTBackbone, VGGishBackbone, Cnn14Backbone, CrepeBackbone, HFEncoderBackbone)
}


def get_backbone_class(name: str) -> type[TappedBackbone]:
    """Return the backbone class registered under ``name``; the error lists the known names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {sorted(BACKBONES)}") from None
