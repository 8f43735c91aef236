"""CREPE front end: waveforms -> overlapping 1024-sample frames, each mean/std normalised (batched torch).

Same framing as torchcrepe's ``preprocess`` (``pad=True``): the clip is zero-padded by 512 samples on
both sides, frame ``t`` covers samples ``[t * hop, t * hop + 1024)`` of the padded clip (so it is centred
on sample ``t * hop`` of the original), there are ``1 + N // hop`` frames, and every frame is made zero
mean and divided by its (unbiased) standard deviation clamped at 1e-10.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CREPE_SAMPLE_RATE = 16000
CREPE_WINDOW = 1024


def crepe_frames(
    waveforms: torch.Tensor,
    lengths: torch.Tensor | None = None,
    sampling_rate: int = CREPE_SAMPLE_RATE,
    hop_length: int = 160,
    window_size: int = CREPE_WINDOW,
    **unused,
) -> torch.Tensor:
    """waveforms [B, N] float (16 kHz, zero-padded batch) -> frames [B, T, 1024], T = 1 + N // hop_length.

    ``lengths`` is accepted for the front-end protocol; a batch of unequal clips is framed over its
    zero-padded length (all-zero frames normalise to zeros).
    """
    if int(sampling_rate) != CREPE_SAMPLE_RATE:
        raise ValueError(
            f"crepe_frames: CREPE was trained on {CREPE_SAMPLE_RATE} Hz audio, got sampling_rate={sampling_rate}; "
            f"resample the audio to {CREPE_SAMPLE_RATE} Hz"
        )
    if int(window_size) != CREPE_WINDOW:
        raise ValueError(f"crepe_frames: CREPE takes {CREPE_WINDOW}-sample frames, got window_size={window_size}")
    hop_length = int(hop_length)
    if hop_length < 1:
        raise ValueError(f"crepe_frames: hop_length must be a positive number of samples, got {hop_length}")
    if waveforms.dim() != 2:
        raise ValueError(f"crepe_frames: expected waveforms [B, N], got shape {tuple(waveforms.shape)}")
    num_frames = 1 + waveforms.shape[1] // hop_length
    padded = F.pad(waveforms.float(), (window_size // 2, window_size // 2))
    frames = padded.unfold(1, window_size, hop_length)[:, :num_frames]  # [B, T, 1024] (a view)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    return frames / frames.std(dim=-1, keepdim=True).clamp_min(1e-10)
