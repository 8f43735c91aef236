"""Long clips in windows: Eq.3 of every tapped layer with a peak memory bounded by the window, not the clip.

The waveform [N] (samples) is cut into abutting windows of ``window`` samples; each window, with
``context`` extra samples on either side where the clip has them, goes through the front end and the
backbone (``model.tap``); the Eq.1 frames [D_l, T_w] that belong to the window proper (the context's
frames are dropped) are accumulated as a running sum, count and max per dimension, so Eq.3's
``mean`` = sum / count and ``max`` = max of the windows' maxes over exactly the frames that are kept.

Equality with the unwindowed vector (measured by ``scripts/bench_memory.py`` and ``tests/test_windows.py``):
the combination itself is exact; what can differ is each frame, when the backbone's receptive field
crosses a window edge and the context is shorter than it. Frames are assigned to windows by their
position: frame t of a window whose input starts at sample s0 is kept when its centre
``s0 + t * hop`` lies in ``[start, start + window)``; ``hop`` is the backbone's output frame step in
samples (``frame_hop``). With a forced ``config.num_output_frames`` Eq.1 pools over the whole input, which
windows cannot reproduce: ``windowed_embedding`` refuses such models. AST has a fixed input length and is
not windowed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..fusion import POOLINGS

#: output frame step (samples at the front end's rate) per backbone, from its front-end settings
_HOPS = {
    "crepe": lambda frontend: int(frontend.get("hop_length", 160)),
    "vggish": lambda frontend: 160 * 16,  # 6 frames per 0.96 s example = 160 ms at 16 kHz
    "cnn14": lambda frontend: int(frontend.get("hop_size", 160)) * 32,  # 5 pools of 2 in time
}


#: samples that windows and context are whole multiples of, where frames are computed on a fixed grid:
#: VGGish computes independent 0.96 s examples (15360 samples) from the input's start, so a window must
#: start on an example boundary; CNN14's five 2x2 pools group 32 STFT hops
_GRIDS = {
    "vggish": lambda frontend: 15360,
    "cnn14": lambda frontend: int(frontend.get("hop_size", 160)) * 32,
}
#: fewest context samples for exact frames: VGGish's last 25 ms STFT window of an example reaches 240
#: samples past the example's end (rounded up to a whole example)
_MIN_CONTEXT = {"vggish": 240}


def can_window(model) -> bool:
    """True when ``model``'s backbone has per-frame taps that windows reproduce (CREPE, VGGish, CNN14)
    and Eq.1 is per frame (no forced ``num_output_frames``)."""
    return model.config.backbone in _HOPS and model.config.num_output_frames is None


def default_context(model, feature_extractor) -> int:
    """Context samples that make windows exact: CREPE half a 1024-sample frame, VGGish one example
    (rounded up from 240 samples), CNN14 2 s (its conv receptive field; measured 1.7e-7 relative)."""
    name = model.config.backbone
    sr = int(feature_extractor.sampling_rate)
    return {"crepe": 512, "vggish": _MIN_CONTEXT["vggish"], "cnn14": 2 * sr}.get(name, 0)


def frame_hop(model, feature_extractor) -> int:
    """Samples per Eq.1 output frame of ``model`` (CREPE: its hop; VGGish: 2560; CNN14: 32 STFT hops)."""
    name = model.config.backbone
    if name not in _HOPS:
        raise ValueError(f"windowed extraction supports {sorted(_HOPS)}; {name!r} is not windowed (fixed input "
                         "length or no per-frame time axis)")
    return _HOPS[name](dict(model.config.frontend or {}))


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
    hop = frame_hop(model, feature_extractor)
    name, frontend = config.backbone, dict(config.frontend or {})
    grid = _GRIDS[name](frontend) if name in _GRIDS else hop
    window = max(grid, (int(window) // grid) * grid)
    context = max(int(context), _MIN_CONTEXT.get(name, 0))
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
