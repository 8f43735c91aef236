"""Batched torch front ends (waveform -> log-mel) for AST, VGGish and CNN14.

Remote code: imports only torch, numpy and the standard library. Every function takes a float waveform
batch ``[B, N]`` (any device) and optional ``lengths [B]`` (real samples per clip), so a padded batch
gives each clip's frames alone; outputs are float32 on the input's device, computed under
``torch.no_grad()``. :func:`ast_fbank` (Kaldi fbank as transformers' ``ASTFeatureExtractor``),
:func:`vggish_log_mel_examples` (torchvggish, 16 kHz), :func:`panns_log_mel` (torchlibrosa as PANNs
uses it). The FFT runs in float64 by default (``stft_dtype``); why, and how the CPU path is kept fast:
docs/design.md.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

__all__ = [
    "AST_MEAN",
    "AST_STD",
    "PANNS_PRESETS",
    "VGGISH_EXAMPLE_FRAMES",
    "VGGISH_MIN_SAMPLES",
    "ast_fbank",
    "ast_num_frames",
    "ast_samples_for_frames",
    "htk_mel_matrix",
    "kaldi_mel_matrix",
    "panns_log_mel",
    "panns_num_frames",
    "slaney_mel_matrix",
    "vggish_log_mel_examples",
    "vggish_num_examples",
]

AST_MEAN = -4.2677393
AST_STD = 4.5689974
_AST_FRAME, AST_HOP, _AST_FFT = 400, 160, 512
_AST_PREEMPH = 0.97
_AST_LOG_FLOOR = 1.192092955078125e-07  # float32 machine epsilon, as Kaldi / transformers

_VG_SR, VGGISH_FRAME, VGGISH_HOP, _VG_FFT, _VG_MELS = 16000, 400, 160, 512, 64
_VG_FMIN, _VG_FMAX, _VG_LOG_OFFSET = 125.0, 7500.0, 0.01
VGGISH_EXAMPLE_FRAMES = 96
#: Shortest waveform that yields one VGGish example: 96 frames of 400 samples, hop 160.
VGGISH_MIN_SAMPLES = VGGISH_FRAME + VGGISH_HOP * (VGGISH_EXAMPLE_FRAMES - 1)  # 15600

#: PANNs CNN14 front-end settings per sample rate (the 16 kHz and the original 32 kHz checkpoints).
PANNS_PRESETS = {
    16000: {"window_size": 512, "hop_size": 160, "fmin": 50.0, "fmax": 8000.0},
    32000: {"window_size": 1024, "hop_size": 320, "fmin": 50.0, "fmax": 14000.0},
}
_PANNS_AMIN = 1e-10
# Work is tiled so that the FFT input buffer of one block is about this size on CPU (cache-sized,
# reused across blocks; chosen by measurement, docs/performance.md) and at most 2**18 frames on GPUs.
_CPU_BLOCK_BYTES = 4 * 2**20
_GPU_BLOCK_FRAMES = 2**18


# ----------------------------------------------------------------------------------------------
# Mel matrices (numpy float64 construction, cached torch float32 copies per device)
# ----------------------------------------------------------------------------------------------
def kaldi_mel_matrix(num_mel_bins: int = 128, num_fft_bins: int = 257, sampling_rate: int = 16000,
                     fmin: float = 20.0, fmax: float | None = None) -> np.ndarray:
    """Kaldi mel filterbank ``[num_fft_bins, num_mel_bins]`` (float64, no normalisation).

    Mel scale ``1127 ln(1 + f/700)``; triangles are linear in mel, with ``num_mel_bins + 2`` edges
    evenly spaced in mel between ``fmin`` and ``fmax`` (Hz, default ``sampling_rate / 2``); the FFT
    bin ``k`` sits at ``k * sampling_rate / (2 * (num_fft_bins - 1))`` Hz.
    """
    fmax = sampling_rate / 2 if fmax is None else fmax
    _check_band(fmin, fmax, sampling_rate)
    to_mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    edges = np.linspace(to_mel(fmin), to_mel(fmax), num_mel_bins + 2)
    bin_hz = sampling_rate / (2.0 * (num_fft_bins - 1))
    bins_mel = to_mel(bin_hz * np.arange(num_fft_bins))
    return _triangles(bins_mel, edges)


def htk_mel_matrix(num_mel_bins: int = 64, num_fft_bins: int = 257, sampling_rate: int = 16000,
                   fmin: float = 125.0, fmax: float = 7500.0) -> np.ndarray:
    """VGGish (torchvggish ``mel_features``) mel matrix ``[num_fft_bins, num_mel_bins]`` (float64).

    HTK mel ``1127 ln(1 + f/700)``; triangles linear in mel between ``fmin`` and ``fmax`` Hz; FFT
    bins spread linearly over ``[0, sampling_rate / 2]``; the DC row is zeroed (HTK excludes DC).
    """
    _check_band(fmin, fmax, sampling_rate)
    to_mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    bins_mel = to_mel(np.linspace(0.0, sampling_rate / 2.0, num_fft_bins))
    edges = np.linspace(to_mel(fmin), to_mel(fmax), num_mel_bins + 2)
    weights = _triangles(bins_mel, edges)
    weights[0, :] = 0.0
    return weights


def _slaney_hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mel = hz / f_sp
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-300) / min_log_hz) / logstep, mel)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def slaney_mel_matrix(sampling_rate: int, n_fft: int, n_mels: int = 64, fmin: float = 0.0,
                      fmax: float | None = None) -> np.ndarray:
    """Slaney mel filterbank ``[n_fft // 2 + 1, n_mels]`` with Slaney area normalisation (float32).

    Same construction as ``librosa.filters.mel`` defaults (``htk=False, norm='slaney'``): triangles
    linear in Hz between band edges evenly spaced on the Slaney mel scale (linear below 1 kHz,
    logarithmic above), each scaled by ``2 / (upper_edge - lower_edge)``.  Returned transposed
    (frequency-major) so that ``power_spectrum @ matrix`` gives mel energies.
    """
    fmax = sampling_rate / 2 if fmax is None else float(fmax)
    _check_band(fmin, fmax, sampling_rate)
    fft_hz = np.arange(n_fft // 2 + 1) * (1.0 / (n_fft * (1.0 / sampling_rate)))
    edges_hz = _slaney_mel_to_hz(np.linspace(_slaney_hz_to_mel(fmin), _slaney_hz_to_mel(fmax), n_mels + 2))
    # librosa rounds the triangles to float32 before applying the normalisation; do the same.
    weights = _triangles(fft_hz, edges_hz).astype(np.float32)
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[None, :]
    return weights


def _triangles(bin_pos: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Triangular filters ``[len(bin_pos), len(edges) - 2]`` with corners at consecutive ``edges``."""
    diff = np.diff(edges)
    ramps = edges[:, None] - bin_pos[None, :]  # [n_edges, n_bins]
    lower = -ramps[:-2] / diff[:-1, None]
    upper = ramps[2:] / diff[1:, None]
    return np.maximum(0.0, np.minimum(lower, upper)).T.copy()


def _check_band(fmin: float, fmax: float, sampling_rate: int) -> None:
    if not 0.0 <= fmin < fmax <= sampling_rate / 2:
        raise ValueError(
            f"mel band must satisfy 0 <= fmin < fmax <= sampling_rate / 2; got fmin={fmin}, fmax={fmax}, "
            f"sampling_rate={sampling_rate}")


class _MelGroups(NamedTuple):
    """A mel matrix cut for a fast CPU projection (see :func:`_mel_groups`).

    ``lo:hi`` is the range of FFT bins any filter reads; each group ``(b0, b1, c0, c1, weights)``
    maps bins ``lo + b0 : lo + b1`` onto mel columns ``c0:c1`` with ``weights [b1 - b0, c1 - c0]``.
    """

    lo: int
    hi: int
    groups: tuple


#: Mel columns per group of the CPU projection: 16 float32 columns is one AVX-512 register row,
#: where MKL's small-matrix kernels are fastest (chosen by measurement, docs/performance.md).
_MEL_GROUP_COLUMNS = 16


def _mel_groups(mel: torch.Tensor) -> _MelGroups:
    """Split ``mel [bins, M]`` into groups of :data:`_MEL_GROUP_COLUMNS` columns, each restricted to
    the bins its filters cover.  Triangular filters are narrow, so the groups hold about a quarter
    of the dense matrix: the projection costs 2.5-4x less on CPU, with the same products summed."""
    used = mel.ne(0)
    rows = used.any(1).nonzero().flatten().tolist()
    lo, hi = (rows[0], rows[-1] + 1) if rows else (0, 0)
    groups = []
    for c0 in range(0, mel.shape[1], _MEL_GROUP_COLUMNS):
        c1 = min(c0 + _MEL_GROUP_COLUMNS, mel.shape[1])
        rows = used[:, c0:c1].any(1).nonzero().flatten().tolist()
        b0, b1 = (rows[0], rows[-1] + 1) if rows else (lo, lo)
        groups.append((b0 - lo, b1 - lo, c0, c1, mel[b0:b1, c0:c1].contiguous()))
    return _MelGroups(lo, hi, tuple(groups))


@functools.lru_cache(maxsize=64)
def _cached_tensor(kind: str, params: tuple, device: str, dtype: torch.dtype):
    """Mel matrix or window for ``params``, built once per (device, dtype); ``kind="groups"`` with
    ``params = (mel_kind, mel_params)`` gives that mel matrix's :class:`_MelGroups`."""
    if kind == "groups":
        return _mel_groups(_cached_tensor(params[0], params[1], device, dtype))
    if kind == "kaldi":
        arr = kaldi_mel_matrix(*params)
    elif kind == "htk":
        arr = htk_mel_matrix(*params)
    elif kind == "slaney":
        arr = slaney_mel_matrix(*params)
    elif kind == "hann_symmetric":  # numpy.hanning(n): 0.5 - 0.5 cos(2 pi k / (n - 1))
        arr = np.hanning(params[0])
    elif kind == "hann_periodic":  # 0.5 - 0.5 cos(2 pi k / n)
        (n,) = params
        arr = 0.5 - 0.5 * np.cos(2.0 * np.pi / n * np.arange(n))
    else:  # pragma: no cover - internal misuse
        raise KeyError(kind)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=dtype)


def _const(kind: str, params: tuple, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return _cached_tensor(kind, tuple(params), str(device), dtype)


def _mel(kind: str, params: tuple, device: torch.device) -> tuple[torch.Tensor, _MelGroups]:
    """Float32 mel matrix ``[bins, M]`` of ``kind`` and its CPU projection groups (both cached)."""
    params = tuple(params)
    return _const(kind, params, device), _cached_tensor("groups", (kind, params), str(device), torch.float32)


# ----------------------------------------------------------------------------------------------
# Input checks and framing
# ----------------------------------------------------------------------------------------------
def _prepare(waveforms: torch.Tensor, lengths, name: str,
             stft_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate ``[B, N]`` float input and optional ``lengths [B]``.

    The waveforms come back in their own dtype (half precision widened to float32, exactly): the
    conversion to ``stft_dtype`` happens block by block in :func:`_mel_spectrum`, so a float32 batch
    is never copied whole to float64 (that copy alone cost as much as the float64 FFTs on CPU).
    """
    if not isinstance(waveforms, torch.Tensor):
        raise TypeError(f"{name}: waveforms must be a torch.Tensor of shape [batch, samples]; "
                        f"got {type(waveforms).__name__}")
    if waveforms.dim() != 2:
        hint = " (use waveforms.unsqueeze(0) for a single clip)" if waveforms.dim() == 1 else ""
        raise ValueError(f"{name}: waveforms must have shape [batch, samples]; got shape "
                         f"{tuple(waveforms.shape)}{hint}")
    if not waveforms.is_floating_point():
        raise TypeError(f"{name}: waveforms must be floating point (samples in [-1, 1]); got {waveforms.dtype}")
    if stft_dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name}: stft_dtype must be torch.float64 or torch.float32; got {stft_dtype}")
    x = waveforms if waveforms.dtype in (torch.float32, torch.float64) else waveforms.float()
    if lengths is None:
        return x, None
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.shape != (x.shape[0],) or lengths.is_floating_point() or lengths.is_complex():
        raise ValueError(f"{name}: lengths must be an integer tensor of shape [{x.shape[0]}] (one per clip); "
                         f"got shape {tuple(lengths.shape)} and dtype {lengths.dtype}")
    lengths = lengths.to(torch.long)
    if x.shape[0] and (int(lengths.min()) < 0 or int(lengths.max()) > x.shape[1]):
        raise ValueError(f"{name}: lengths must lie in [0, {x.shape[1]}] (the padded number of samples); "
                         f"got {lengths.tolist()}")
    return x, lengths


def _num_frames(num_samples, frame: int, hop: int):
    """Frames of ``frame`` samples at ``hop`` that fit in ``num_samples`` (no padding; >= 0)."""
    if isinstance(num_samples, torch.Tensor):
        return torch.where(num_samples >= frame, (num_samples - frame) // hop + 1, torch.zeros_like(num_samples))
    return (num_samples - frame) // hop + 1 if num_samples >= frame else 0


def _frame_mask(n_frames_per_clip: torch.Tensor, total: int) -> torch.Tensor:
    """Boolean ``[B, total, 1]`` that is True for frames beyond each clip's own frame count."""
    return (torch.arange(total, device=n_frames_per_clip.device)[None, :] >= n_frames_per_clip[:, None])[..., None]


def _mel_spectrum(x: torch.Tensor, fill, n_frames: int, frame: int, hop: int, n_fft: int,
                  mel: tuple[torch.Tensor, _MelGroups], stft_dtype: torch.dtype, magnitude: bool = False,
                  finish: Callable[[torch.Tensor], object] | None = None) -> torch.Tensor:
    """Mel energies ``[B, n_frames, M]`` (float32) of frames ``t`` reading ``x[:, t*hop : t*hop+frame]``.

    ``fill(xs, buf)`` writes the windowed frames of the sample block ``xs`` (``[b, samples]``, frame
    0 starting at ``xs[:, 0]``, already converted to ``stft_dtype``) into ``buf`` (``[b, f, frame]``,
    ``stft_dtype``).  One real FFT of ``n_fft`` points per frame, power ``re^2 + im^2`` (or its
    square root when ``magnitude``), a float32 projection onto the mel matrix (``mel`` as
    :func:`_mel` returns it), then ``finish(block)`` in place (the log) while the block is in cache.

    Precision: ``re`` and ``im`` are rounded to float32 before squaring, a relative error of 6e-8 of
    each bin's *own* magnitude (never of the frame's peak), so the float32 tail adds at most about
    2e-7 to the log of any band; the FFT itself runs in ``stft_dtype``.

    The work is tiled over (clips, frames) blocks whose buffers are reused; on CPU a block's FFT
    buffer is ``_CPU_BLOCK_BYTES`` so every temporary stays cache-sized (docs/performance.md), and the
    projection runs per group of mel columns over the bins they read (:func:`_mel_groups`).  Only the bins some filter reads are squared.
    """
    dense, bands = mel
    batch = x.shape[0]
    n_mels = dense.shape[1]
    out = torch.empty(batch, n_frames, n_mels, dtype=dense.dtype, device=x.device)
    if batch == 0 or n_frames == 0:
        return out
    on_cpu = x.device.type == "cpu"
    if on_cpu:
        block = max(1, _CPU_BLOCK_BYTES // (n_fft * stft_dtype.itemsize))
    else:
        block = _GPU_BLOCK_FRAMES
    frames_per_block = min(n_frames, block)
    # Blocks hold either whole clips (all frames of several clips) or part of one clip, so every
    # block of ``out`` is a contiguous [rows, M] run.
    clips_per_block = min(batch, max(1, block // n_frames))
    rows = clips_per_block * frames_per_block
    lo, hi = bands.lo, bands.hi
    buf = torch.zeros(rows, n_fft, dtype=stft_dtype, device=x.device)  # zero tail = FFT padding
    squares = torch.empty(rows, hi - lo, 2, dtype=dense.dtype, device=x.device)
    power = torch.empty(rows, hi - lo, dtype=dense.dtype, device=x.device)
    weights = dense[lo:hi]
    for c0 in range(0, batch, clips_per_block):
        nb = min(clips_per_block, batch - c0)
        for t0 in range(0, n_frames, frames_per_block):
            nf = min(frames_per_block, n_frames - t0)
            r = nb * nf
            xs = x[c0:c0 + nb, t0 * hop: (t0 + nf - 1) * hop + frame].to(stft_dtype)
            fill(xs, buf[:r].view(nb, nf, n_fft)[..., :frame])
            spec = torch.view_as_real(torch.fft.rfft(buf[:r]))[:, lo:hi]  # [r, hi - lo, (re, im)]
            b_sq, b_pow = squares[:r], power[:r]
            b_sq.copy_(spec)  # to float32: relative rounding per bin, see the docstring
            b_sq.mul_(b_sq)
            torch.add(b_sq[..., 0], b_sq[..., 1], out=b_pow)
            if magnitude:
                b_pow.sqrt_()
            b_out = out[c0:c0 + nb, t0:t0 + nf].view(r, n_mels)
            if on_cpu:
                for b0, b1, m0, m1, w in bands.groups:
                    torch.mm(b_pow[:, b0:b1], w, out=b_out[:, m0:m1])
            else:
                torch.mm(b_pow, weights, out=b_out)
            if finish is not None:
                finish(b_out)
    return out


# ----------------------------------------------------------------------------------------------
# AST (Kaldi fbank as transformers' ASTFeatureExtractor)
# ----------------------------------------------------------------------------------------------
def ast_samples_for_frames(num_frames: int) -> int:
    """The fewest samples that give ``num_frames`` Kaldi fbank frames (25 ms frames, 10 ms hop at 16 kHz)."""
    return _AST_FRAME + AST_HOP * (int(num_frames) - 1)


def ast_num_frames(num_samples):
    """Kaldi fbank frames (25 ms / 10 ms at 16 kHz, snip edges) for ``num_samples`` (int or tensor)."""
    return _num_frames(num_samples, _AST_FRAME, AST_HOP)


@torch.no_grad()
def ast_fbank(waveforms: torch.Tensor, sampling_rate: int = 16000, num_mel_bins: int = 128,
              max_length: int = 1024, mean: float = AST_MEAN, std: float = AST_STD,
              do_normalize: bool = True, lengths: torch.Tensor | Sequence[int] | None = None,
              stft_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """AST input features: Kaldi log-mel fbank, padded/cut to ``max_length`` frames, normalised.

    Matches transformers' ``ASTFeatureExtractor`` without torchaudio: 400-sample frames, hop 160
    (no edge padding), per-frame DC removal, pre-emphasis 0.97 (first sample scaled by 0.03),
    symmetric Hann window, 512-point power spectrum, Kaldi mel filters (20 Hz .. sr/2, triangular in
    mel), ``log(max(mel, 1.1920929e-07))``.  Frames past the clip end (or past ``lengths[b]``) are
    zeros *before* normalisation ``(x - mean) / (2 std)``, exactly as transformers pads.

    Args:
        waveforms: ``[B, N]`` float waveforms at 16 kHz, samples in [-1, 1].
        lengths: optional ``[B]`` real sample counts of a zero-padded batch.
        stft_dtype: precision of framing + FFT (float64 default; docs/design.md explains why).
    Returns:
        ``[B, max_length, num_mel_bins]`` float32 on the input's device.
    """
    x, lengths = _prepare(waveforms, lengths, "ast_fbank", stft_dtype)
    if sampling_rate != 16000:
        raise ValueError(f"ast_fbank expects 16000 Hz audio (AST's Kaldi fbank uses 400/160-sample "
                         f"frames); got sampling_rate={sampling_rate}. Resample to 16 kHz first.")
    batch, n = x.shape
    n_frames = min(ast_num_frames(n), max_length)
    out = torch.zeros(batch, max_length, num_mel_bins, dtype=torch.float32, device=x.device)
    if n_frames > 0:
        x = x[:, : _AST_FRAME + AST_HOP * (n_frames - 1)]  # only the samples the kept frames read
        p = _AST_PREEMPH
        window = _const("hann_symmetric", (_AST_FRAME,), x.device, stft_dtype)

        def fill(xc: torch.Tensor, buf: torch.Tensor) -> None:
            # Per-frame DC removal then pre-emphasis equals pre-emphasis of the raw frame minus
            # (1 - p) * frame mean, and samples 1..399 of a pre-emphasised frame are the globally
            # pre-emphasised waveform: so pre-emphasis runs once on the waveform, not per frame.
            raw = xc.unfold(-1, _AST_FRAME, AST_HOP)  # [b, T, 400] view
            dc = raw.mean(-1, keepdim=True).mul_(1.0 - p)
            emph = xc[:, 1:] - p * xc[:, :-1]
            torch.sub(emph.unfold(-1, _AST_FRAME - 1, AST_HOP), dc, out=buf[..., 1:])
            torch.sub(raw[..., :1] * (1.0 - p), dc, out=buf[..., :1])
            buf.mul_(window)

        mel = _mel("kaldi", (num_mel_bins, _AST_FFT // 2 + 1, sampling_rate, 20.0, sampling_rate / 2), x.device)
        fbank = _mel_spectrum(x, fill, n_frames, _AST_FRAME, AST_HOP, _AST_FFT, mel, stft_dtype,
                              finish=lambda m: m.clamp_min_(_AST_LOG_FLOOR).log_())
        if lengths is not None:
            fbank.masked_fill_(_frame_mask(ast_num_frames(lengths), n_frames), 0.0)
        out[:, :n_frames] = fbank
    if do_normalize:
        out.sub_(mean).div_(2.0 * std)
    return out


# ----------------------------------------------------------------------------------------------
# VGGish (torchvggish waveform_to_examples)
# ----------------------------------------------------------------------------------------------
def vggish_num_examples(num_samples):
    """Number of 96-frame VGGish examples for a clip of ``num_samples`` 16 kHz samples (>= 1).

    Clips shorter than :data:`VGGISH_MIN_SAMPLES` (15600 samples, 0.975 s) count as one zero-padded example.
    """
    if isinstance(num_samples, torch.Tensor):
        return _num_frames(num_samples.clamp_min(VGGISH_MIN_SAMPLES), VGGISH_FRAME, VGGISH_HOP) // VGGISH_EXAMPLE_FRAMES
    return _num_frames(max(num_samples, VGGISH_MIN_SAMPLES), VGGISH_FRAME, VGGISH_HOP) // VGGISH_EXAMPLE_FRAMES


@torch.no_grad()
def vggish_log_mel_examples(waveforms: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None,
                            sampling_rate: int = 16000, stft_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """VGGish input examples: log-mel patches of 96 frames x 64 bands (0.96 s each).

    Matches torchvggish 0.2 ``waveform_to_examples`` at 16 kHz: periodic Hann 400, hop 160,
    512-point magnitude spectrum, 64 HTK mel bands 125-7500 Hz (DC row zeroed), ``log(mel + 0.01)``,
    consecutive non-overlapping 96-frame examples, partial tail dropped.  With the default float64
    FFT the result is within 5e-7 of torchvggish (which computes in float64) on tones, chirps and
    noise; ``stft_dtype=torch.float32`` is faster but off by up to ~1e-3 in bands far
    below a pure tone (docs/design.md).

    Short clips: where torchvggish would return no example (fewer than 15600 samples), the
    *waveform* is zero-padded to 15600 samples so that the clip gives exactly one example.
    With ``lengths``, clip ``b`` has ``vggish_num_examples(lengths[b])`` valid examples; the
    remaining example slots of the batch tensor hold ``log(0.01)`` (digital silence) and should be
    dropped by the caller.

    Args:
        waveforms: ``[B, N]`` float waveforms at 16 kHz.
        lengths: optional ``[B]`` real sample counts of a zero-padded batch.
        sampling_rate: must be 16000 (no resampling here).
        stft_dtype: precision of framing + FFT (float64 default; docs/design.md explains why).
    Returns:
        ``[B, n_examples, 96, 64]`` float32 on the input's device, ``n_examples`` the most any clip has.
    """
    x, lengths = _prepare(waveforms, lengths, "vggish_log_mel_examples", stft_dtype)
    if sampling_rate != _VG_SR:
        raise ValueError(f"vggish_log_mel_examples expects {_VG_SR} Hz audio; got sampling_rate={sampling_rate}. "
                         "Resample to 16 kHz first.")
    batch, n = x.shape
    if lengths is not None:
        # a short clip is zero-padded up to one example, whatever the batch held past its end
        short_end = lengths.clamp_max(VGGISH_MIN_SAMPLES)
        width = min(n, VGGISH_MIN_SAMPLES)
        beyond = torch.arange(width, device=x.device)[None, :] >= short_end[:, None]
        if bool(beyond.any()):
            x = x.clone() if x is waveforms else x
            x[:, :width].masked_fill_(beyond, 0.0)
        n_examples = int(vggish_num_examples(lengths).max()) if batch else 0
    else:
        n_examples = vggish_num_examples(n)
    if n < VGGISH_MIN_SAMPLES:
        x = torch.nn.functional.pad(x, (0, VGGISH_MIN_SAMPLES - n))
    n_frames = n_examples * VGGISH_EXAMPLE_FRAMES
    x = x[:, : VGGISH_FRAME + VGGISH_HOP * (n_frames - 1)]
    window = _const("hann_periodic", (VGGISH_FRAME,), x.device, stft_dtype)

    def fill(xc: torch.Tensor, buf: torch.Tensor) -> None:
        torch.mul(xc.unfold(-1, VGGISH_FRAME, VGGISH_HOP), window, out=buf)

    mel = _mel("htk", (_VG_MELS, _VG_FFT // 2 + 1, _VG_SR, _VG_FMIN, _VG_FMAX), x.device)
    log_mel = _mel_spectrum(x, fill, n_frames, VGGISH_FRAME, VGGISH_HOP, _VG_FFT, mel, stft_dtype, magnitude=True,
                            finish=lambda m: m.add_(_VG_LOG_OFFSET).log_())
    if lengths is not None:
        valid = vggish_num_examples(lengths) * VGGISH_EXAMPLE_FRAMES
        log_mel.masked_fill_(_frame_mask(valid, n_frames), math.log(_VG_LOG_OFFSET))
    return log_mel.reshape(batch, n_examples, VGGISH_EXAMPLE_FRAMES, _VG_MELS)


# ----------------------------------------------------------------------------------------------
# PANNs CNN14 (torchlibrosa Spectrogram + LogmelFilterBank)
# ----------------------------------------------------------------------------------------------
def panns_num_frames(num_samples, hop_size: int):
    """Centred STFT frames for ``num_samples``: ``1 + num_samples // hop_size`` (int or tensor)."""
    return 1 + num_samples // hop_size


@torch.no_grad()
def panns_log_mel(waveforms: torch.Tensor, sampling_rate: int = 32000, window_size: int | None = None,
                  hop_size: int | None = None, mel_bins: int = 64, fmin: float | None = None,
                  fmax: float | None = None, lengths: torch.Tensor | Sequence[int] | None = None,
                  stft_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """PANNs CNN14 input: log-mel in dB, ``[B, 1, T, mel_bins]`` with ``T = 1 + N // hop_size``.

    Same maths as torchlibrosa ``Spectrogram(n_fft=window_size, hop_length=hop_size,
    win_length=window_size, window='hann', center=True, pad_mode='reflect')`` +
    ``LogmelFilterBank(sr, window_size, mel_bins, fmin, fmax, ref=1.0, amin=1e-10, top_db=None)``:
    periodic Hann, reflect padding of ``window_size // 2`` on both sides, power spectrum, Slaney mel
    (librosa defaults), ``10 log10(max(mel, 1e-10))``.  ``window_size``, ``hop_size``, ``fmin`` and
    ``fmax`` default to :data:`PANNS_PRESETS` (16 kHz: 512/160/50-8000 Hz; 32 kHz:
    1024/320/50-14000 Hz).  With ``lengths``, each clip is reflect-padded at its own end and its
    frames beyond ``panns_num_frames(lengths[b], hop_size)`` hold -100 dB (digital silence).

    Args:
        waveforms: ``[B, N]`` float waveforms at ``sampling_rate`` Hz, ``N > window_size // 2``.
        lengths: optional ``[B]`` real sample counts of a zero-padded batch.
        stft_dtype: precision of framing + FFT (float64 default; docs/design.md explains why).
    Returns:
        ``[B, 1, T, mel_bins]`` float32 on the input's device.
    """
    x, lengths = _prepare(waveforms, lengths, "panns_log_mel", stft_dtype)
    preset = PANNS_PRESETS.get(sampling_rate)
    if preset is None and None in (window_size, hop_size, fmax):
        raise ValueError(f"panns_log_mel: no preset for sampling_rate={sampling_rate} (presets: "
                         f"{sorted(PANNS_PRESETS)} Hz); pass window_size, hop_size and fmax explicitly")
    preset = preset or {}
    window_size = int(preset["window_size"] if window_size is None else window_size)
    hop_size = int(preset["hop_size"] if hop_size is None else hop_size)
    fmin = float(preset.get("fmin", 0.0) if fmin is None else fmin)
    fmax = float(preset["fmax"] if fmax is None else fmax)
    if window_size <= 0 or hop_size <= 0:
        raise ValueError(f"panns_log_mel: window_size and hop_size must be positive; got {window_size}, {hop_size}")
    batch, n = x.shape
    pad = window_size // 2
    shortest = int(lengths.min()) if (lengths is not None and batch) else n
    if shortest <= pad:
        raise ValueError(f"panns_log_mel: reflect padding needs clips longer than window_size // 2 = {pad} "
                         f"samples; got a clip of {shortest} samples")
    if lengths is None:
        padded = torch.nn.functional.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]
    else:
        # per-clip reflect padding: source index of each padded position, reflected at 0 and at L_b - 1
        pos = torch.arange(-pad, n + pad, device=x.device)[None, :]
        last = (lengths - 1)[:, None]
        idx = pos.abs()
        idx = torch.where(idx > last, 2 * last - idx, idx).clamp_(0, n - 1)
        padded = torch.gather(x, 1, idx)
    n_frames = panns_num_frames(n, hop_size)
    window = _const("hann_periodic", (window_size,), x.device, stft_dtype)

    def fill(xc: torch.Tensor, buf: torch.Tensor) -> None:
        torch.mul(xc.unfold(-1, window_size, hop_size), window, out=buf)

    mel = _mel("slaney", (sampling_rate, window_size, mel_bins, fmin, fmax), x.device)
    log_mel = _mel_spectrum(padded, fill, n_frames, window_size, hop_size, window_size, mel, stft_dtype,
                            finish=lambda m: m.clamp_min_(_PANNS_AMIN).log10_().mul_(10.0))
    if lengths is not None:
        log_mel.masked_fill_(_frame_mask(panns_num_frames(lengths, hop_size), n_frames),
                             10.0 * math.log10(_PANNS_AMIN))
    return log_mel[:, None]
