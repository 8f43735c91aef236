"""CREPE front end: waveforms -> overlapping 1024-sample frames, each mean/std normalised (batched torch).

Same framing as torchcrepe's ``preprocess`` (``pad=True``): the clip is zero-padded by 512 samples on
both sides, frame ``t`` covers samples ``[t * hop, t * hop + 1024)`` of the padded clip (so it is centred
on sample ``t * hop`` of the original), there are ``1 + N // hop`` frames, and every frame is made zero
mean and divided by its (unbiased) standard deviation clamped at 1e-10.

Clips of different lengths: frame ``t < 1 + N_b // hop`` of clip b only sees its own samples and the
zero padding it would get alone, so these frames equal the clip's frames alone; ``crepe_valid_frames``
gives that count (the feature extractor's ``attention_mask``), later frames are batch padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CREPE_SAMPLE_RATE = 16000
CREPE_WINDOW = 1024


def crepe_valid_frames(lengths: torch.Tensor, hop_length: int = 160, **unused) -> torch.Tensor:
    """Frames [B] of each clip alone: 1 + N_b // hop_length (N_b = lengths [B] in samples)."""
    return 1 + torch.div(lengths, int(hop_length), rounding_mode="floor")


def crepe_frames(
    waveforms: torch.Tensor,
    lengths: torch.Tensor | None = None,
    sampling_rate: int = CREPE_SAMPLE_RATE,
    hop_length: int = 160,
    window_size: int = CREPE_WINDOW,
    **unused,
) -> torch.Tensor:
    """waveforms [B, N] float (16 kHz, zero-padded batch) -> frames [B, T, 1024], T = 1 + N // hop_length.

    A batch of unequal clips is framed over its zero-padded length: clip b's first
    ``crepe_valid_frames(lengths)[b]`` frames are those it gets alone, the rest (batch padding) are
    masked by the feature extractor's ``attention_mask``.
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
