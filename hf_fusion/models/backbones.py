"""The registry of backbones by name (``AudioFusionConfig.backbone``): the one place that lists them.

The module contract of a backbone is declared on its class (``backbone_base.TappedBackbone``: front end,
layers, frame geometry, windowing, masks, taps); other modules read it through :data:`BACKBONES`. A
shipped backbone = one ``backbone_<name>.py`` + one line below, so that Hub repos carry its code; its
provenance is its entry in ``hf_fusion.catalog`` (``register_entry`` adds a backbone from outside).
"""

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


def register_backbone(cls: type[TappedBackbone], replace: bool = False) -> type[TappedBackbone]:
    """Add a backbone class (usable as a decorator). Its ``name`` must be new unless ``replace``; the
    class must declare a front end (``frontend_spec``, a ``backbone_base.FrontEnd``)."""
    if not (isinstance(cls, type) and issubclass(cls, TappedBackbone)) or not cls.name:
        raise TypeError(f"register_backbone takes a TappedBackbone subclass with a name, got {cls!r}")
    if cls.name in BACKBONES and BACKBONES[cls.name] is not cls and not replace:
        raise ValueError(f"backbone {cls.name!r} is already registered ({BACKBONES[cls.name].__name__})")
    if cls.frontend_spec is None or not cls.frontend_spec.name or not callable(cls.frontend_spec.function):
        raise ValueError(f"backbone {cls.name!r} declares no front end (frontend_spec = FrontEnd(name, function))")
    BACKBONES[cls.name] = cls
    return cls


def get_backbone_class(name: str) -> type[TappedBackbone]:
    """Return the backbone class registered under ``name``; the error lists the known names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {sorted(BACKBONES)}") from None


def backbone_for_frontend(frontend_name: str) -> type[TappedBackbone]:
    """The backbone whose front end is named ``frontend_name``; the error lists the known front ends."""
    for cls in BACKBONES.values():
        if cls.frontend_spec.name == frontend_name:
            return cls
    raise ValueError(f"unknown front end {frontend_name!r}; known: {sorted(c.frontend_spec.name for c in BACKBONES.values())}")
