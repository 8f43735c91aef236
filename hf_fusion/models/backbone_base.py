"""The tap interface every backbone implements, and the facts each backbone declares about itself.

Layer numbers are the paper's, 1-based (docs/reference.md, "Layer numbers"). A backbone receives the
front end's ``input_values`` and returns, for every requested layer, its Eq.1-aligned features
[B, D_l, T_o]. The module contract (front end, layers and dims, frame geometry, window rule, masks,
taps) is declared on its class here and read through ``backbones.BACKBONES``; where a backbone comes
from and how it is published (converter, presets, card, license, CLI names) is its entry in
``hf_fusion.catalog``, which Hub repos do not carry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn


class FrontEnd(NamedTuple):
    """A backbone's front end: ``function(waveforms [B, N], lengths [B], **settings) -> input_values``
    (batched), named ``name`` in a config's ``frontend["name"]``; for a per-clip time axis ``valid_steps``
    = ``(count(lengths [B], **settings) -> valid steps [B] or None, time axis of input_values)``."""

    name: str
    function: Callable[..., torch.Tensor]
    valid_steps: tuple[Callable[..., Any], int] | None = None


@dataclass(frozen=True)
class WindowRule:
    """How a long clip is cut into windows that reproduce the whole-clip frames (``extraction/windows.py``),
    in samples at the front end's rate: ``hop`` per output frame, ``grid`` that window starts are multiples
    of (fixed-grid frames), ``context`` extra samples either side (at least ``min_context``)."""

    hop: int
    grid: int
    context: int
    min_context: int = 0


def resolve_layers(layers: Any, valid: Sequence[int], fusion: Sequence[int] | None = None, *, owner: str = "",
                   what: str = "layers") -> list[int]:
    """The one layer resolver: ``None`` / ``"fusion"`` -> ``fusion``; ``"all"`` -> every ``valid`` layer;
    an int or a list of whole layer numbers -> that list, checked (non-empty, distinct, each in ``valid``).
    The error names ``owner`` (a backbone) and lists the valid layers (1-based, the paper's numbering)."""
    if layers is None or (isinstance(layers, str) and layers == "fusion"):
        if fusion is None:
            raise ValueError(f"{owner + ': ' if owner else ''}{what}: no fusion layers to default to")
        return list(fusion)
    if isinstance(layers, str) and layers == "all":
        return list(valid)
    numbers = layer_numbers(layers, what)
    bad = [layer for layer in numbers if layer not in valid]
    if bad or not numbers or len(set(numbers)) != len(numbers):
        problem = f"layer(s) {bad} cannot be tapped" if bad else "give one or more distinct layers"
        raise ValueError(
            f"{owner + ': ' if owner else ''}{what}={numbers} is invalid: {problem}; tappable layers are "
            f"{list(valid)} (1-based, the paper's numbering)"
        )
    return numbers


#: rows per call where a backbone runs a layer over a variable number of rows (frames): a GEMM's rounding
#: depends on its row count (BLAS picks kernels and thread splits by shape; one row takes a GEMV path), so
#: :func:`in_row_blocks` keeps one shape and a row's output independent of its batch partners. Worth it for
#: small weights only: each block re-reads the weight, so VGGish's large FC layers 17-22 stay batch-shaped
#: (the measurement: docs/performance.md, "Tuning constants in the code")
BLOCK_ROWS = 32


def in_row_blocks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rows: int = BLOCK_ROWS) -> torch.Tensor:
    """``fn`` (row-wise: [n, ...] -> [n, ...]) applied to ``x`` [N, ...] in blocks of ``rows`` rows, the last
    one zero-padded; the N real rows of the results, joined."""
    padded = torch.cat([x, x.new_zeros(((-x.shape[0]) % rows,) + tuple(x.shape[1:]))])
    return torch.cat([fn(block) for block in padded.split(rows)])[: x.shape[0]]


def proportional_fusion_layers(num_layers: int) -> list[int]:
    """AST-Fusion#5#12's proportion for an encoder of ``num_layers`` blocks: [round(5 n / 12), n] (one layer
    when they coincide)."""
    middle = max(1, round(5 * num_layers / 12))
    return [middle, num_layers] if middle != num_layers else [num_layers]


def layer_numbers(value: Any, what: str = "layers") -> list[int]:
    """A layer number or a list of them -> list[int]; a string, a fraction or a bool is an error (never
    ``"12"`` -> [1, 2] or 10.7 -> 10)."""
    items = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        items = [value.item()]  # a numpy / torch scalar
    if isinstance(value, (str, bytes)) or not hasattr(items, "__iter__"):
        raise ValueError(f"{what} must be a list of layer numbers (e.g. [5, 12]), got {value!r}")
    out = []
    for item in items:
        if hasattr(item, "item") and not isinstance(item, (list, tuple)):
            item = item.item()  # numpy / torch scalars
        if isinstance(item, bool) or not isinstance(item, (int, float)) or (isinstance(item, float) and not item.is_integer()):
            raise ValueError(f"{what}: {item!r} in {value!r} is not a whole layer number")
        out.append(int(item))
    return out


class TappedBackbone(nn.Module):
    """Base class of the backbones. A subclass sets the facts below and implements the classmethods +
    ``forward``; registering it (``backbones.register_backbone``) is all the rest of the package needs."""

    name: ClassVar[str] = ""
    #: False when no tap has a time axis (AST's token rule): T_o = 1 and Eq.3 is skipped.
    has_time_axis: ClassVar[bool] = True
    #: True when ``forward`` takes the feature extractor's ``attention_mask`` (valid input frames or
    #: examples of clips of different lengths in one batch) and ``frame_mask`` maps it to T_o frames;
    #: then a clip's valid frames (and, with a forced T_o, its Eq.1 kernel) never depend on the batch.
    supports_attention_mask: ClassVar[bool] = False
    #: True for a :class:`ResizableInput` backbone (the per-task protocol resizes its input)
    resizable_input: ClassVar[bool] = False

    # ---- facts (read through backbones.BACKBONES; no other module keeps a per-backbone table) ----
    #: the front end (:class:`FrontEnd`: its name in a config's ``frontend["name"]``, function, valid steps)
    frontend_spec: ClassVar[FrontEnd | None] = None
    #: the fusion layers of a config that names none (:meth:`default_fusion_layers` may compute them instead)
    default_layers: ClassVar[tuple[int, ...] | None] = None

    @classmethod
    def window_rule(cls, frontend: dict[str, Any]) -> WindowRule | None:
        """How long clips are windowed exactly (None: not windowed, e.g. a fixed input length)."""
        return None

    @classmethod
    def frame_hop(cls, frontend: dict[str, Any]) -> int | None:
        """Input samples per Eq.1 output frame (None: no time axis or no fixed step)."""
        rule = cls.window_rule(frontend)
        return None if rule is None else rule.hop

    @classmethod
    def frame_centres(cls, backbone_config: dict[str, Any], frontend: dict[str, Any], num_frames: int) -> torch.Tensor:
        """Centre (in input samples, float64 [num_frames]) of the input each Eq.1 output frame reads, for
        timestamps (``hf_fusion.app.hear``); an error for backbones without per-frame outputs."""
        raise ValueError(f"backbone {cls.name!r} declares no frame geometry (no per-frame time axis); timestamps "
                         "cannot be placed")

    #: where a layer is read, as a ``str.format`` template of ``layer`` (``tap_description`` may compute it)
    tap_template: ClassVar[str] = "layer {layer}"

    @classmethod
    def tap_description(cls, backbone_config: dict[str, Any], layer: int) -> str:
        """Where layer ``layer`` is read (a module path or a phrase)."""
        return cls.tap_template.format(layer=layer)

    @classmethod
    def resolve_layers(cls, backbone_config: dict[str, Any], layers: Any, fusion: Sequence[int] | None = None,
                       what: str = "layers") -> list[int]:
        """:func:`resolve_layers` against this backbone's tappable layers."""
        return resolve_layers(layers, cls.tappable_layers(backbone_config), fusion, owner=cls.name, what=what)

    @classmethod
    def embedding_pooling(cls, pooling: str, num_output_frames: int | None) -> str:
        """The Eq.3 actually applied: ``"none"`` (the [B, D, 1] frame itself) for taps with no time axis
        and the backbone's own T_o (AST: Eq.1-3 reduce to concatenation), else ``pooling``."""
        return "none" if not cls.has_time_axis and num_output_frames is None else pooling

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
        known = cls.known_config_keys()
        unknown = sorted(k for k in merged if k not in known)
        if unknown:  # one rule for every backbone: a typo must not be dropped silently
            import difflib

            hints = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
            said = ", ".join(f"{k!r}" + (f" (did you mean {v[0]!r}?)" if v else "") for k, v in hints.items())
            raise ValueError(f"{cls.name}: unknown backbone_config key(s) {said}; known keys: "
                             f"{sorted(known) or 'none (a fixed architecture)'}")
        return merged

    @classmethod
    def known_config_keys(cls) -> set[str]:
        """The keys ``backbone_config`` may hold (default: those of ``default_backbone_config``)."""
        return set(cls.default_backbone_config())

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
        """The paper's (or a sensible) middle + late layer choice; default: the declared ``default_layers``."""
        if cls.default_layers is None:
            raise NotImplementedError(f"backbone {cls.name!r} declares no default fusion layers")
        return list(cls.default_layers)

    # ---- module behaviour ----
    def __init__(self, backbone_config: dict[str, Any], frontend: dict[str, Any], attn_implementation=None):
        """``attn_implementation`` is passed on by transformers-based backbones and ignored by the others."""
        super().__init__()
        self.backbone_config = backbone_config
        self.frontend = frontend

    def check_layers(self, layers: Sequence[int]) -> list[int]:
        """Validate requested layers; an error lists the valid ones."""
        return self.resolve_layers(self.backbone_config, list(layers))

    def check_attention_mask(self, attention_mask: torch.Tensor | None) -> None:
        """Refuse a mask this backbone cannot use (fixed-length inputs)."""
        if attention_mask is not None and not self.supports_attention_mask:
            raise ValueError(
                f"backbone {self.name!r} takes no attention_mask (its inputs have a fixed length; "
                "its feature extractor returns none)"
            )

    def forward(
        self, input_values: torch.Tensor, layers: Sequence[int], num_frames: int | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> dict[int, torch.Tensor]:
        """Run once; return {layer: [B, D_l, T_o]} for ``layers``. ``num_frames`` overrides T_o.

        ``attention_mask`` is the feature extractor's [B, T_in] mask; backbones with
        ``supports_attention_mask`` keep each clip's valid frames independent of the batch, the others
        refuse a mask (``check_attention_mask``).
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

    def set_layer_norm_eps(self, eps: float) -> None:
        """Use ``eps`` in every LayerNorm (backbones built on a transformer)."""
        raise ValueError(f"backbone {self.name!r} has no LayerNorm eps to set")

    def init_weights(self, module: nn.Module) -> None:
        """Initialise one sub-module (called by transformers for weights missing from a checkpoint)."""


class ResizableInput:
    """Capability of a backbone that takes inputs of one fixed length, changeable without touching the
    weights (AST: positional embeddings adapted from the checkpoint's grid). Mixed in before
    :class:`TappedBackbone`; the per-task protocol (``hf_fusion.app.task_model``) resizes such a backbone
    and reads and writes the front-end settings named by the ``*_key`` attributes."""

    resizable_input: ClassVar[bool] = True
    #: front-end settings: the input length in frames, and the normalisation's mean and std
    length_key: ClassVar[str] = "max_length"
    mean_key: ClassVar[str] = "mean"
    std_key: ClassVar[str] = "std"
    #: named input normalisations {name: (mean, std)} (AST: ``{"audioset": ...}``); a task's own statistics
    #: can replace them (``task_model``)
    input_normalizations: ClassVar[dict[str, tuple[float, float]]] = {}
    #: samples (at the front end's rate) per input frame (AST: the fbank's 160)
    input_hop: ClassVar[int | None] = None

    @classmethod
    def input_length(cls, backbone_config: dict[str, Any]) -> int:
        """Input frames the backbone takes now."""
        raise NotImplementedError

    @classmethod
    def input_frames_for_samples(cls, frontend: dict[str, Any], num_samples: int) -> int:
        """Input frames the front end makes of a clip of ``num_samples`` samples; an error naming the
        shortest clip when that is fewer than the backbone can take."""
        raise NotImplementedError

    @classmethod
    def input_frames_for_seconds(cls, seconds: float, frontend: dict[str, Any] | None = None) -> int:
        """Input frames of a ``seconds``-long clip, sized as EVAR sizes a task (``int(rate * seconds)``
        samples); ``frontend`` None: the default front end."""
        frontend = frontend if frontend is not None else cls.resolve_frontend(cls.default_backbone_config(), None)
        return cls.input_frames_for_samples(frontend, int(int(frontend["sampling_rate"]) * float(seconds)))

    @classmethod
    def with_input_length(cls, backbone_config: dict[str, Any], frontend: dict[str, Any],
                          frames: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """(backbone_config, frontend) for inputs of ``frames`` frames (checked)."""
        raise NotImplementedError

    def set_input_length(self, frames: int) -> None:
        """Take inputs of ``frames`` frames from now on (in place, weights unchanged)."""
        raise NotImplementedError
