"""Long clips in windows: Eq.3 of every tapped layer with a peak memory bounded by the window, not the clip.

The waveform ``[N]`` is cut into abutting windows of ``window`` samples, each run with ``context``
samples on either side; the Eq.1 frames whose centre lies in the window proper feed a running sum,
count and max, so Eq.3 combines exactly. Frames equal the whole clip's when the context covers the
backbone's receptive field. Models with a forced ``num_output_frames`` are refused; AST is not
windowed. Which context each backbone needs: docs/extraction.md, "Long clips"; docs/design.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..models.fusion import POOLINGS


def window_rule(model):
    """The backbone's :class:`~hf_fusion.models.backbone_base.WindowRule` for ``model``'s front end, or None."""
    return model.config.backbone_class.window_rule(dict(model.config.frontend or {}))


def can_window(model) -> bool:
    """True when ``model``'s backbone declares a window rule (per-frame taps that windows reproduce:
    CREPE, VGGish, CNN14) and Eq.1 is per frame (no forced ``num_output_frames``)."""
    return window_rule(model) is not None and model.config.num_output_frames is None


def default_context(model, feature_extractor) -> int:
    """Context samples that make windows exact (the backbone's rule: CREPE half a 1024-sample frame,
    VGGish 240 samples (rounded up to a whole example), CNN14 2 s, its conv receptive field); 0 if none."""
    rule = window_rule(model)
    return 0 if rule is None else rule.context


def _required_rule(model):
    rule = window_rule(model)
    if rule is None:
        raise ValueError(f"backbone {model.config.backbone!r} is not windowed: it declares no window rule (fixed "
                         "input length or no per-frame time axis)")
    return rule


def frame_hop(model, feature_extractor) -> int:
    """Samples per Eq.1 output frame of ``model`` (CREPE: its hop; VGGish: 2560; CNN14: 32 STFT hops)."""
    return _required_rule(model).hop


def windowed_embedding(model, feature_extractor, wave: np.ndarray, layers: Sequence[int], window: int,
                       context: int = 0) -> dict[int, torch.Tensor]:
    """{layer: Eq.3 vector [D_l]} of one clip ``wave`` [N] float32 run in windows of ``window`` samples.

    ``window`` is rounded down to a multiple of the backbone's frame grid (:func:`frame_hop`; VGGish: a
    0.96 s example; CNN14: 32 STFT hops) and ``context`` up to one; ``context`` samples of neighbouring
    audio are added on both sides of each window and their frames dropped (VGGish always gets at least
    one example of context: its last frame reads 240 samples past the example). Peak memory is that of
    one ``window + 2 * context`` input.
    """
    config = model.config
    if config.num_output_frames is not None:
        raise ValueError("windowed extraction needs per-frame Eq.1 (num_output_frames=None): a forced "
                         "num_output_frames pools over the whole input")
    if config.pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {config.pooling!r}")
    rule = _required_rule(model)
    hop, grid = rule.hop, rule.grid
    window = max(grid, (int(window) // grid) * grid)
    context = max(int(context), rule.min_context)
    context = int(np.ceil(context / grid)) * grid
    wave = np.asarray(wave, dtype=np.float32)
    n = len(wave)
    total = {layer: None for layer in layers}
    peak = {layer: None for layer in layers}
    count = 0
    sr = int(feature_extractor.sampling_rate)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, max(n, 1), window):
            s0 = max(0, start - context)
            s1 = min(n, start + window + context)
            piece = wave[s0:s1]
            inputs = feature_extractor([piece], sampling_rate=sr, return_tensors="pt", device=device)
            taps = model.tap(inputs["input_values"], list(layers))
            for layer in layers:
                frames = taps[layer][0]  # [D, T_w]
                centres = s0 + hop * torch.arange(frames.shape[-1])
                keep = (centres >= start) & (centres < start + window) & (centres < max(n, 1))
                if start + window >= n:  # the last window keeps its tail frames (centre past the clip)
                    keep |= centres >= start
                kept = frames[:, keep].float()
                if kept.shape[-1] == 0:
                    continue
                total[layer] = kept.sum(-1) if total[layer] is None else total[layer] + kept.sum(-1)
                here = kept.amax(-1)
                peak[layer] = here if peak[layer] is None else torch.maximum(peak[layer], here)
            count += int(keep.sum())
    out = {}
    for layer in layers:
        mean = total[layer] / count
        out[layer] = mean + peak[layer] if config.pooling == "mean+max" else mean if config.pooling == "mean" \
            else peak[layer]
    return out
