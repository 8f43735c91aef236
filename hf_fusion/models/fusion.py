"""Eq.1-3 of Niizumi et al. (2022) as pure tensor functions.

Shapes use B = batch, C = channels, F = frequency bins, T = time frames, D = feature dims.
Eq.1 ``align_layer``: one layer's output -> [B, D, T_o] (max-pool time, flatten channel x frequency).
Eq.2 ``concat_layers``: aligned layers -> [B, sum(D_l), T_o].
Eq.3 ``temporal_pool``: [B, D, T_o] -> [B, D] (mean over time + max over time).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

POOLINGS = ("mean+max", "mean", "max")
#: the Eq.3 of taps with no time axis (one frame, T_o = 1): the frame itself (``config.embedding_pooling``)
NO_POOLING = "none"


def align_layer(z: torch.Tensor, num_frames: int, name: str = "layer") -> torch.Tensor:
    """Eq.1: time-align one layer output to ``num_frames`` (T_o) frames.

    Accepted shapes (time is always the LAST axis):
      [B, C, F, T] (CNN feature map)  -> max-pool T, flatten to [B, C*F, T_o] (channel-major);
      [B, D, T]    (frame sequence)   -> max-pool T -> [B, D, T_o];
      [B, D]       (no time axis: FC output, a transformer's [CLS]) -> repeated -> [B, D, T_o].
    Pooling uses kernel = stride = T // T_o (floor, as ``max_pool1d`` without ``ceil_mode``); frames
    past T_o that a non-divisible T leaves are dropped. ``name`` only labels error messages.
    """
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"{name}: T_o must be a positive integer, got {num_frames!r}")
    if z.dim() == 2:  # a real copy: reductions over a stride-0 view group their additions differently
        return z.unsqueeze(-1).expand(-1, -1, num_frames).contiguous()
    if z.dim() == 4:
        z = z.flatten(1, 2)
    elif z.dim() != 3:
        raise ValueError(
            f"{name}: expected [B, D], [B, D, T] or [B, C, F, T] (time last), got shape {tuple(z.shape)}"
        )
    t = z.shape[-1]
    if t < num_frames:
        raise ValueError(
            f"{name}: has {t} time frames, fewer than the T_o={num_frames} frames to align to; "
            "the input clip is too short for this layer (pad it or lower T_o)"
        )
    kernel = t // num_frames
    if kernel > 1:
        z = F.max_pool1d(z, kernel_size=kernel, stride=kernel)
    return z[..., :num_frames]


def align_valid(
    z: torch.Tensor, num_frames: int, lengths: torch.Tensor | None = None, name: str = "layer"
) -> torch.Tensor:
    """Eq.1 with a FORCED T_o on a padded batch: clip b is aligned over its own ``lengths[b]`` valid
    frames only (kernel ``lengths[b] // T_o``), exactly as when it is alone; -> [B, D, T_o].

    ``z`` as in :func:`align_layer` (time last); ``lengths`` [B] valid time steps of ``z`` (``None`` or
    all full: one batched call). Every output frame of every clip is then valid.
    """
    full = z.shape[-1]
    if lengths is None or bool((lengths >= full).all()):
        return align_layer(z, num_frames, name=name)
    return torch.cat(
        [align_layer(z[b : b + 1, ..., : int(n)], num_frames, name=name) for b, n in enumerate(lengths.tolist())]
    )


def valid_frame_mask(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Valid-frame mask [B, T] (bool) from per-clip frame counts ``lengths`` [B]."""
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


def concat_layers(aligned: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq.2: concatenate aligned layers [B, D_l, T_o] per frame -> [B, sum(D_l), T_o]."""
    if len(aligned) == 0:
        raise ValueError("Eq.2 needs at least one layer to concatenate")
    ref = aligned[0].shape
    for i, a in enumerate(aligned):
        if a.dim() != 3 or a.shape[0] != ref[0] or a.shape[2] != ref[2]:
            raise ValueError(
                "Eq.2: every aligned layer must be [B, D_l, T_o] with the same B and T_o; "
                f"layer #0 is {tuple(ref)}, layer #{i} is {tuple(a.shape)}"
            )
    return torch.cat(list(aligned), dim=1)


def temporal_pool(frames: torch.Tensor, pooling: str = "mean+max", mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq.3: summarise time of [B, D, T] -> [B, D]; "mean+max" is the paper's (a sum, not a concat).

    ``mask`` [B, T] (bool or 0/1) marks each clip's valid frames; padded frames of a shorter clip in a
    batch are then ignored (mean and max over valid frames only), so a clip's embedding does not depend
    on what else shares its batch. Every clip needs at least one valid frame.
    """
    if frames.dim() != 3:
        raise ValueError(f"Eq.3 expects [B, D, T], got shape {tuple(frames.shape)}")
    if pooling == NO_POOLING:
        if frames.shape[-1] != 1:
            raise ValueError(f"Eq.3 {NO_POOLING!r} takes one frame [B, D, 1], got shape {tuple(frames.shape)}")
        return frames[..., 0]
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    if mask is None:
        # contiguous: a mean over a strided view groups its additions differently (see _masked_mean)
        mean, peak = (lambda: frames.contiguous().mean(dim=-1)), (lambda: frames.amax(dim=-1))
    else:
        if mask.shape != (frames.shape[0], frames.shape[2]):
            raise ValueError(
                f"Eq.3: mask must be [B, T] = {(frames.shape[0], frames.shape[2])} (valid frames), "
                f"got shape {tuple(mask.shape)}"
            )
        mask = mask.to(device=frames.device, dtype=torch.bool)
        counts = mask.sum(dim=-1)
        if bool((counts == 0).any()):
            raise ValueError(f"Eq.3: clip(s) {torch.nonzero(counts == 0).flatten().tolist()} have no valid frame")
        valid = mask[:, None, :]
        mean = lambda: _masked_mean(frames, valid, counts)  # noqa: E731
        peak = lambda: frames.masked_fill(~valid, float("-inf")).amax(dim=-1)  # noqa: E731
    if pooling == "mean+max":
        return mean() + peak()
    if pooling == "mean":
        return mean()
    return peak()


def _masked_mean(frames: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean over each clip's valid frames of [B, D, T] -> [B, D]. A clip whose valid frames come first
    (every mask this package builds) is averaged over exactly those frames, copied to contiguous memory, as
    when it is alone: a sum over its padding too, zeros though they are, or over a strided view groups the
    additions differently and moves the last bit."""
    prefix = bool((valid[:, 0, :] == valid_frame_mask(counts, frames.shape[-1])).all())
    if not prefix:
        return frames.masked_fill(~valid, 0.0).sum(dim=-1) / counts[:, None].to(frames.dtype)
    if bool((counts == frames.shape[-1]).all()):  # no padding: one call (row by row the same sums)
        return frames.contiguous().mean(dim=-1)
    return torch.cat([frames[b : b + 1, :, : int(n)].contiguous().mean(dim=-1) for b, n in enumerate(counts.tolist())])


def fuse(
    aligned: Sequence[torch.Tensor], pooling: str = "mean+max", mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq.2 then Eq.3: returns (frames [B, D, T_o], embedding [B, D]); ``mask`` [B, T_o] as in Eq.3."""
    frames = concat_layers(aligned)
    return frames, temporal_pool(frames, pooling, mask=mask)
