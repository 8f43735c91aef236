"""Throughput of hf_fusion's batched front ends against their reference implementations.

Same clips for everyone (default 32 clips of 10 s: tones, chirps, white / pink noise).  Prints, per
front end and device, the reference time, our time, the ratio (reference / ours) and the max abs
difference of the outputs.  References (test-only packages, skipped when absent):
transformers' ASTFeatureExtractor (numpy path), torchvggish 0.2 ``waveform_to_examples`` (numpy),
torchlibrosa ``Spectrogram`` + ``LogmelFilterBank`` (torch, batched, float32).

    python scripts/bench_frontends.py [--clips 32] [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout first
from hf_fusion import frontends as fe  # noqa: E402


def make_clips(n_clips: int, seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """``[n_clips, seconds * sr]`` float32 clips in [-1, 1]: tones, chirps, white and pink noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    clips = np.empty((n_clips, n), dtype=np.float32)
    for i in range(n_clips):
        kind = i % 4
        if kind == 0:
            sig = 0.6 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
        elif kind == 1:
            f0, f1 = rng.uniform(100, 500), rng.uniform(1000, 6000)
            sig = 0.7 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
            sig *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 8) * t)
        elif kind == 2:
            sig = rng.uniform(-0.5, 0.5, n)
        else:
            spec = np.fft.rfft(rng.standard_normal(n))
            freq = np.arange(spec.size, dtype=np.float64)
            freq[0] = 1.0
            sig = np.fft.irfft(spec / np.sqrt(freq), n)
            sig = 0.8 * sig / np.abs(sig).max()
        clips[i] = sig
    return clips


def timed(fn, repeat: int, warmup: bool = True):
    """(best wall time over ``repeat`` runs, after one warm-up call when ``warmup``; last result)."""
    if warmup:
        fn()
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def have(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # noqa: BLE001 - any import failure means "absent"
        return False


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs per measurement, best kept (the 2-core CI machine is shared and noisy)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
          f"load average {load:.2f}, {args.clips} clips x {args.seconds:g} s")
    clips16 = make_clips(args.clips, args.seconds, 16000)
    clips32 = make_clips(args.clips, args.seconds, 32000, seed=1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []

    def bench(name: str, ref_fn, ours_fn):
        """``ours_fn(device, stft_dtype)``; both STFT precisions are timed (float64 is the default)."""
        ref_time, ref_out = timed(ref_fn, args.repeat, warmup=False)
        for dev in devices:
            for dtype in (torch.float64, torch.float32):
                t, out = timed(lambda: ours_fn(dev, dtype), args.repeat)
                diff = float(np.abs(out.cpu().numpy() - ref_out).max())
                label = f"{dev} stft {str(dtype)[-7:]}"
                rows.append((name, label, ref_time, t, ref_time / t, diff))
                print(f"{name:28s} {label:18s} ref {ref_time:7.3f} s  ours {t:7.3f} s  "
                      f"ratio {ref_time / t:6.2f}x  max|diff| {diff:.2e}", flush=True)

    w16 = {d: torch.from_numpy(clips16).to(d) for d in devices}
    w32 = {d: torch.from_numpy(clips32).to(d) for d in devices}

    if have("transformers"):
        from transformers import ASTFeatureExtractor

        fx = ASTFeatureExtractor()
        bench("AST fbank vs transformers",
              lambda: np.stack(fx(list(clips16), sampling_rate=16000, return_tensors="np")["input_values"]),
              lambda d, dt: fe.ast_fbank(w16[d], stft_dtype=dt))
    if have("torchvggish.vggish_input"):
        from torchvggish import vggish_input

        bench("VGGish vs torchvggish",
              lambda: np.stack([vggish_input.waveform_to_examples(c, 16000, return_tensor=False) for c in clips16]),
              lambda d, dt: fe.vggish_log_mel_examples(w16[d], stft_dtype=dt))
    if have("torchlibrosa.stft"):
        from torchlibrosa.stft import LogmelFilterBank, Spectrogram

        for sr, clips, w in ((16000, clips16, w16), (32000, clips32, w32)):
            p = fe.PANNS_PRESETS[sr]
            spec = Spectrogram(n_fft=p["window_size"], hop_length=p["hop_size"], win_length=p["window_size"],
                               window="hann", center=True, pad_mode="reflect", freeze_parameters=True)
            logmel = LogmelFilterBank(sr=sr, n_fft=p["window_size"], n_mels=64, fmin=p["fmin"], fmax=p["fmax"],
                                      ref=1.0, amin=1e-10, top_db=None, freeze_parameters=True)
            x = torch.from_numpy(clips)

            def ref(x=x, spec=spec, logmel=logmel):
                with torch.no_grad():
                    return logmel(spec(x)).numpy()

            bench(f"PANNs {sr // 1000} kHz vs torchlibrosa", ref, lambda d, dt, sr=sr, w=w: fe.panns_log_mel(w[d], sr, stft_dtype=dt))
    if not rows:
        print("no reference package installed: nothing to compare against")


if __name__ == "__main__":
    main()
