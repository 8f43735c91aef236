"""The published fused models as presets: backbone + layers + how to convert the original checkpoint.

Built from the backbone entries (``hf_fusion.catalog``: preset layers, converter, default checkpoint,
checkpoint help), read on every access, so a backbone registered later has its preset too. Repo names come from ONE rule,
:func:`hf_fusion.models.naming.fusion_model_name` (``ast`` + [5, 12] -> ``ast-fusion-5-12``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..models.naming import fusion_model_name


@dataclass(frozen=True)
class FusionPreset:
    """A named fused model: ``backbone`` + ``fusion_layers`` (paper numbering) + checkpoint hints."""

    backbone: str
    fusion_layers: tuple[int, ...]
    #: used when the user gives no checkpoint (a Hub id, or CREPE's capacity); None = the user must give one
    default_checkpoint: str | None
    checkpoint_help: str

    @property
    def name(self) -> str:
        return fusion_model_name(self.backbone, self.fusion_layers)


def _convertible():
    """The entries with a converter (imports torch: only when presets are used, never by the CLI parser)."""
    from ..catalog import entries

    return [entry for entry in entries().values() if entry.converter is not None]


def presets() -> dict[str, FusionPreset]:
    """Preset name (``fusion_model_name(backbone, layers)``) -> preset, one per convertible backbone with
    preset layers."""
    out = {}
    for entry in _convertible():
        if entry.preset() is not None:
            preset = FusionPreset(entry.name, tuple(entry.preset()), entry.default_checkpoint, entry.checkpoint_help)
            out[preset.name] = preset
    return out


def preset_for_backbone() -> dict[str, FusionPreset]:
    """Backbone -> its preset (the default layers and checkpoint when converting that backbone)."""
    return {p.backbone: p for p in presets().values()}


def converters() -> dict[str, str]:
    """Convertible backbone name -> its converter function's name."""
    return {entry.name: entry.converter.__name__ for entry in _convertible()}


# ---------------------------------------------------------------- public API


def get_preset(name: str) -> FusionPreset:
    """Preset by name (``ast-fusion-5-12``, ...); the error lists the known names."""
    known = presets()
    try:
        return known[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(known)}") from None


def convert_checkpoint(
    backbone: str,
    checkpoint: str | Path | None,
    fusion_layers: Sequence[int] | None,
    output_dir: str | Path,
    **options,
) -> Path:
    """Original ``checkpoint`` of ``backbone`` -> saved fused model folder ``output_dir`` (returned).

    ``fusion_layers`` None = the backbone's preset layers (the converter's default where there is no
    preset); ``checkpoint`` None = the preset's default (AST's paper checkpoint id, CREPE ``tiny``).
    ``options`` go to the converter (e.g. ``sample_rate=32000`` for CNN14, ``trust_pickle=True``).
    """
    from ..catalog import build_fused, converter_entry

    converter_entry(backbone)  # the error lists the convertible backbones
    output_dir = Path(output_dir)
    source = None if checkpoint is None else str(checkpoint)
    result = build_fused(backbone, source, fusion_layers, output_dir=output_dir, **options)
    if not (output_dir / "config.json").is_file():
        # a converter that only returns (model, feature_extractor): save them here
        model, extractor = result if isinstance(result, tuple) else (result, None)
        model.save_pretrained(output_dir)
        if extractor is not None:
            extractor.save_pretrained(output_dir)
    return output_dir


def build_preset(
    name: str,
    checkpoint: str | Path | None = None,
    output_dir: str | Path | None = None,
    fusion_layers: Sequence[int] | None = None,
    **options,
) -> Path:
    """Convert the preset's original checkpoint into a saved fused model folder (returned).

    ``fusion_layers`` overrides the preset's layers (the repo name then follows them, see
    :func:`preset_model_name`). ``output_dir`` defaults to ``./<model name>``.
    """
    preset = get_preset(name)
    layers = list(fusion_layers) if fusion_layers is not None else list(preset.fusion_layers)
    out = Path(output_dir) if output_dir is not None else Path(fusion_model_name(preset.backbone, layers))
    return convert_checkpoint(preset.backbone, checkpoint, layers, out, **options)


def preset_model_name(name: str, fusion_layers: Sequence[int] | None = None) -> str:
    """The repo name of a preset, with optionally overridden layers (``crepe-fusion-3-6`` -> ``crepe-fusion-2-6``)."""
    preset = get_preset(name)
    return fusion_model_name(preset.backbone, fusion_layers if fusion_layers is not None else preset.fusion_layers)
