"""The tap interface every backbone implements (one forward pass -> aligned outputs of chosen layers).

Layer numbers are the paper's, 1-based (DESIGN.md section 1). A backbone receives the front end's
``input_values`` and returns, for every requested layer, its Eq.1-aligned features [B, D_l, T_o].
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn


class TappedBackbone(nn.Module):
    """Base class of the backbones. Subclasses set ``name`` and implement the classmethods + forward."""

    name: ClassVar[str] = ""
    #: False when no tap has a time axis (AST's token rule): T_o = 1 and Eq.3 is skipped.
    has_time_axis: ClassVar[bool] = True
    #: True when ``forward`` takes the feature extractor's ``attention_mask`` (valid input frames or
    #: examples of clips of different lengths in one batch) and ``frame_mask`` maps it to T_o frames;
    #: then a clip's valid frames (and, with a forced T_o, its Eq.1 kernel) never depend on the batch.
    supports_attention_mask: ClassVar[bool] = False

    # ---- static description, usable without building the module (config validation, cards) ----
    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        """The backbone's own hyper-parameters (the paper's model) as a JSON-able dict."""
        raise NotImplementedError

    @classmethod
    def normalize_backbone_config(cls, backbone_config: Any) -> dict[str, Any]:
        """Accept a dict, a config object or None; return a complete JSON-able dict."""
        merged = cls.default_backbone_config()
        if backbone_config is None:
            return merged
        if hasattr(backbone_config, "to_dict"):
            backbone_config = backbone_config.to_dict()
        if not isinstance(backbone_config, dict):
            raise TypeError(
                f"backbone_config for {cls.name!r} must be a dict or a config object, "
                f"got {type(backbone_config).__name__}"
            )
        merged.update(backbone_config)
        return merged

    @classmethod
    def tappable_layers(cls, backbone_config: dict[str, Any]) -> tuple[int, ...]:
        """The 1-based layer numbers that can be tapped."""
        raise NotImplementedError

    @classmethod
    def layer_dims(cls, backbone_config: dict[str, Any], frontend: dict[str, Any]) -> dict[int, int]:
        """Feature dimension D_l after Eq.1 for every tappable layer."""
        raise NotImplementedError

    @classmethod
    def default_frontend(cls, backbone_config: dict[str, Any]) -> dict[str, Any]:
        """Front-end settings (``name`` of the front end + its parameters, incl. ``sampling_rate``)."""
        raise NotImplementedError

    @classmethod
    def resolve_frontend(cls, backbone_config: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
        """Complete front-end settings: the defaults updated by ``overrides`` (a backbone may pick
        defaults from the overrides, e.g. CNN14's 16 kHz / 32 kHz presets from ``sampling_rate``)."""
        return {**cls.default_frontend(backbone_config), **(overrides or {})}

    @classmethod
    def check_frontend(cls, backbone_config: dict[str, Any], frontend: dict[str, Any]) -> None:
        """Raise ValueError when resolved front-end settings cannot feed this backbone (default: no check)."""

    @classmethod
    def default_fusion_layers(cls, backbone_config: dict[str, Any]) -> list[int]:
        """The paper's (or a sensible) middle + late layer choice."""
        raise NotImplementedError

    # ---- module behaviour ----
    def __init__(self, backbone_config: dict[str, Any], frontend: dict[str, Any], attn_implementation=None):
        """``attn_implementation`` is passed on by transformers-based backbones and ignored by the others."""
        super().__init__()
        self.backbone_config = backbone_config
        self.frontend = frontend

    def check_layers(self, layers: Sequence[int]) -> list[int]:
        """Validate requested layers; an error lists the valid ones."""
        valid = self.tappable_layers(self.backbone_config)
        bad = [layer for layer in layers if layer not in valid]
        if bad or len(layers) == 0:
            raise ValueError(
                f"{self.name}: cannot tap layer(s) {bad or list(layers)}; tappable layers are {list(valid)} "
                "(1-based, the paper's numbering)"
            )
        return list(layers)

    def forward(
        self, input_values: torch.Tensor, layers: Sequence[int], num_frames: int | None = None
    ) -> dict[int, torch.Tensor]:
        """Run once; return {layer: [B, D_l, T_o]} for ``layers``. ``num_frames`` overrides T_o.

        Backbones with ``supports_attention_mask`` also take ``attention_mask=`` (the feature
        extractor's [B, T_in] mask) and keep each clip's valid frames independent of the batch.
        """
        raise NotImplementedError

    def frame_mask(self, attention_mask: torch.Tensor, num_frames: int | None = None) -> torch.Tensor | None:
        """Map the input ``attention_mask`` [B, T_in] to the valid output frames [B, T_o] (bool), the
        mask Eq.3 uses; ``None`` when the backbone has no per-clip lengths."""
        return None

    def mask_lengths(self, attention_mask: torch.Tensor | None, batch: int, steps: int,
                     unit: str = "frames") -> torch.Tensor | None:
        """Valid steps per clip [B] from an input ``attention_mask`` [B, steps] (None -> None); the error
        names the expected shape."""
        if attention_mask is None:
            return None
        if tuple(attention_mask.shape) != (batch, steps):
            raise ValueError(
                f"{self.name}: attention_mask must be [B, T] = {(batch, steps)} (valid {unit}), "
                f"got shape {tuple(attention_mask.shape)}"
            )
        return attention_mask.to(torch.long).sum(dim=1)

    def tap_module(self, layer: int) -> nn.Module:
        """The module whose output is layer ``layer`` (hooked backbones: VGGish, CNN14)."""
        raise NotImplementedError(f"{self.name}: no hooked modules")

    @contextmanager
    def capture_taps(self, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
        """Forward hooks on ``tap_module(layer)`` for every layer; yields the {layer: output} dict they
        fill during the forward pass run inside the ``with`` block, and removes the hooks afterwards."""
        captured: dict[int, torch.Tensor] = {}
        handles = [
            self.tap_module(layer).register_forward_hook(
                lambda module, args, output, layer=layer: captured.__setitem__(layer, output)
            )
            for layer in layers
        ]
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    def init_weights(self, module: nn.Module) -> None:
        """Initialise one sub-module (called by transformers for weights missing from a checkpoint)."""
