"""Converters registered for their backbone class: an original checkpoint -> a fused model.

Each converter module registers its function with :func:`register_converter` when it is imported (so
``import hf_fusion.conversion`` registers every one); the provenance a user needs (the default checkpoint,
how to describe one) travels with the registration, not with the backbone module that ships to the Hub.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..models.backbone_base import TappedBackbone
from ..models.backbones import get_backbone_class


@dataclass(frozen=True)
class Converter:
    """``function(checkpoint, fusion_layers=..., output_dir=..., **options)`` -> ``(model, extractor)``;
    ``default_checkpoint`` is used when none is given (None: the user must give one)."""

    function: Callable[..., Any]
    default_checkpoint: str | None = None
    checkpoint_help: str = "a path or Hub id"


CONVERTERS: dict[type[TappedBackbone], Converter] = {}


def register_converter(backbone_class: type[TappedBackbone], function: Callable[..., Any],
                       default_checkpoint: str | None = None, checkpoint_help: str = "a path or Hub id") -> Converter:
    """Register ``function`` as the converter of ``backbone_class`` (replacing an earlier one)."""
    if not (isinstance(backbone_class, type) and issubclass(backbone_class, TappedBackbone)):
        raise TypeError(f"register_converter takes a TappedBackbone subclass, got {backbone_class!r}")
    if not callable(function):
        raise TypeError(f"the converter of {backbone_class.name!r} must be callable, got {function!r}")
    CONVERTERS[backbone_class] = converter = Converter(function, default_checkpoint, checkpoint_help)
    return converter


def converter_for(backbone: str | type[TappedBackbone]) -> Converter:
    """The converter of a backbone (class or registered name); the error lists the convertible backbones."""
    cls = get_backbone_class(backbone) if isinstance(backbone, str) else backbone
    try:
        return CONVERTERS[cls]
    except KeyError:
        known = sorted(c.name for c in CONVERTERS)
        raise ValueError(f"no converter for backbone {cls.name!r}; convertible backbones: {known}") from None


def build_fused(backbone: str | type[TappedBackbone], source: str | None = None,
                fusion_layers: Sequence[int] | None = None, **options):
    """``(AudioFusionModel, FusedAudioFeatureExtractor)`` from ``source`` (a checkpoint; None = the
    converter's default) with ``fusion_layers`` (None = the backbone's preset)."""
    cls = get_backbone_class(backbone) if isinstance(backbone, str) else backbone
    converter = converter_for(cls)
    layers = fusion_layers if fusion_layers is not None else cls.preset()
    checkpoint = source if source is not None else converter.default_checkpoint
    if checkpoint is None:
        raise ValueError(f"{cls.name}: give the original checkpoint ({converter.checkpoint_help})")
    return converter.function(checkpoint, fusion_layers=None if layers is None else list(layers), **options)
