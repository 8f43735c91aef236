"""Offline synthetic task suite: small, deterministic audio classification tasks built with numpy.

Four tasks, 16 kHz mono, 1.0 s clips, train/valid/test = 60/20/20 % of every class: ``synth_pitch``
(12 pitch classes), ``synth_timbre`` (8 timbres), ``synth_events`` (8 noise and event types) and
``synth_rhythm`` (6 modulation rates). Clip ``i`` of class ``c`` comes from
``numpy.random.default_rng([seed, task, c, i])``, so one seed gives identical audio bytes. Each task
is an EVAR folder (``metadata.csv``, ``audio/``, ``task.json`` written last), built in a temporary
folder and renamed into place. What each task contains: docs/design.md.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Union

import numpy as np
import soundfile as sf

from .registry import SYNTHETIC_TASKS

SR = 16000
CLIP_SECONDS = 1.0
N = int(SR * CLIP_SECONDS)
VERSION = 1
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
DEFAULT_N_PER_CLASS = {"synth_pitch": 30, "synth_timbre": 40, "synth_events": 40, "synth_rhythm": 50}
_T = np.arange(N) / SR

# ----------------------------------------------------------------------------- building blocks


def _midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def _partials(freqs, amps, rng, vibrato=None, decays=None) -> np.ndarray:
    """Sum of sinusoids (Hz, linear amps); ``vibrato`` is a relative frequency deviation signal;
    ``decays`` per-partial exponential decay rates (1/s). Partials above 0.45*SR are dropped."""
    out = np.zeros(N)
    mod = 1.0 if vibrato is None else (1.0 + vibrato)
    for k, (f, a) in enumerate(zip(freqs, amps)):
        if f >= 0.45 * SR or a == 0:
            continue
        phase = 2 * np.pi * np.cumsum(f * mod) / SR + rng.uniform(0, 2 * np.pi)
        p = a * np.sin(phase)
        if decays is not None:
            p = p * np.exp(-decays[k] * _T)
        out += p
    return out


def _envelope(rng, attack=(0.005, 0.08), release=(0.05, 0.2), onset=(0.0, 0.12), min_len=0.6) -> np.ndarray:
    """Onset delay, linear attack, sustain, linear release; starts at a random onset."""
    on = rng.uniform(*onset)
    length = rng.uniform(min_len, CLIP_SECONDS - on)
    a, r = rng.uniform(*attack), rng.uniform(*release)
    t = _T - on
    env = np.clip(t / a, 0, 1) * np.clip((length - t) / r, 0, 1)
    env[t < 0] = 0
    return env


def _vibrato(rng, rate=(4.5, 6.5), depth=(0.0, 0.006)) -> np.ndarray:
    return rng.uniform(*depth) * np.sin(2 * np.pi * rng.uniform(*rate) * _T + rng.uniform(0, 2 * np.pi))


def _coloured_noise(rng, exponent: float, n: int = N) -> np.ndarray:
    """Gaussian noise with power spectrum ~ f**exponent (0 white, -1 pink, -2 brown, +1 blue)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    spec *= (f / 1000.0) ** (exponent / 2.0)
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def _band_noise(rng, centre: float, width_oct: float, n: int = N) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec *= np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / centre) / (width_oct / 2)) ** 2)
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def _tilt(x: np.ndarray, exponent: float) -> np.ndarray:
    """Apply a spectral tilt f**(exponent/2) to a signal (a random 'channel')."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SR)
    f[0] = f[1]
    return np.fft.irfft(spec * (f / 1000.0) ** (exponent / 2.0), len(x))


def _finish(x: np.ndarray, rng, snr_db=(20.0, 40.0), level_db=(-32.0, -14.0)) -> np.ndarray:
    """Random RMS level, pink-ish noise floor at a random SNR, peak-safe float32."""
    rms = np.sqrt(np.mean(x**2)) + 1e-12
    x = x / rms * 10 ** (rng.uniform(*level_db) / 20)
    noise = _coloured_noise(rng, rng.uniform(-1.0, 0.0))
    x = x + noise * np.sqrt(np.mean(x**2)) * 10 ** (-rng.uniform(*snr_db) / 20)
    peak = np.max(np.abs(x))
    if peak > 0.99:
        x = x * (0.99 / peak)
    return x.astype(np.float32)


# ----------------------------------------------------------------------------- the four tasks

PITCH_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def _pitch_clip(c: int, rng) -> np.ndarray:
    midi = 48 + 12 * rng.integers(0, 2) + c + rng.uniform(-0.3, 0.3)
    f0 = _midi_hz(midi)
    n_h = int(rng.integers(3, 13))
    k = np.arange(1, n_h + 1)
    amps = k ** (-rng.uniform(0.5, 2.0)) * rng.uniform(0.3, 1.0, n_h)
    if rng.random() < 0.3:
        amps[1::2] = 0.0  # odd harmonics only
    x = _partials(f0 * k, amps, rng, vibrato=_vibrato(rng))
    return x * _envelope(rng)


TIMBRE_NAMES = ["sine", "square", "saw", "pluck", "bowed", "bell", "nasal", "brass"]


def _timbre_clip(c: int, rng) -> np.ndarray:
    f0 = _midi_hz(rng.uniform(48, 72))
    kind = TIMBRE_NAMES[c]
    k = np.arange(1, 25)
    jit = rng.uniform(0.7, 1.3, len(k))
    if kind == "sine":
        amps = np.zeros(len(k))
        amps[0], amps[1], amps[2] = 1.0, rng.uniform(0.0, 0.15), rng.uniform(0.0, 0.05)
        x = _partials(f0 * k, amps, rng, _vibrato(rng)) * _envelope(rng, attack=(0.02, 0.12))
    elif kind == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0) * jit
        x = _partials(f0 * k, amps, rng, _vibrato(rng)) * _envelope(rng, attack=(0.005, 0.05))
    elif kind == "saw":
        amps = k ** -rng.uniform(0.9, 1.2) * jit
        x = _partials(f0 * k, amps, rng, _vibrato(rng)) * _envelope(rng, attack=(0.005, 0.05))
    elif kind == "pluck":
        amps = k ** -rng.uniform(0.8, 1.4) * jit
        decays = rng.uniform(2.0, 6.0) * (1 + 0.35 * (k - 1))
        x = _partials(f0 * k, amps, rng, decays=decays) * _envelope(rng, attack=(0.001, 0.004), release=(0.02, 0.05))
    elif kind == "bowed":
        amps = k ** -rng.uniform(1.1, 1.5) * jit
        x = _partials(f0 * k, amps, rng, _vibrato(rng, depth=(0.004, 0.01))) * _envelope(
            rng, attack=(0.12, 0.3), onset=(0.0, 0.05), min_len=0.75)
    elif kind == "bell":
        ratios = np.array([1.0, 2.756, 5.404, 8.933, 13.345]) * rng.uniform(0.98, 1.02, 5)
        amps = np.array([1.0, 0.6, 0.4, 0.25, 0.15]) * rng.uniform(0.6, 1.4, 5)
        decays = rng.uniform(1.5, 4.0) * ratios**0.7
        x = _partials(f0 * ratios, amps, rng, decays=decays) * _envelope(rng, attack=(0.001, 0.004), release=(0.02, 0.05))
    elif kind == "nasal":
        centre = rng.uniform(1000, 2200)
        amps = np.exp(-0.5 * (np.log2(f0 * k / centre) / 0.45) ** 2) * jit + 0.02 / k
        x = _partials(f0 * k, amps, rng, _vibrato(rng)) * _envelope(rng, attack=(0.01, 0.06))
    else:  # brass: brightness grows with loudness during the attack
        env = _envelope(rng, attack=(0.03, 0.09))
        amps = k ** -rng.uniform(0.3, 0.7) * jit
        x = np.zeros(N)
        for kk, a in zip(k[:16], amps[:16]):
            x += _partials([f0 * kk], [a], rng) * env ** (1 + 0.5 * (kk - 1))
    return x


EVENT_NAMES = ["white", "pink", "brown", "blue", "clicks", "bursts", "chirp_up", "chirp_down"]


def _event_clip(c: int, rng) -> np.ndarray:
    kind = EVENT_NAMES[c]
    if kind in ("white", "pink", "brown", "blue"):
        exponent = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0}[kind] + rng.uniform(-0.3, 0.3)
        x = _coloured_noise(rng, exponent) * _envelope(rng, attack=(0.005, 0.2), onset=(0.0, 0.2), min_len=0.5)
    elif kind == "clicks":
        x = np.zeros(N)
        for pos in rng.integers(0, N - 400, rng.integers(3, 13)):
            tau = rng.uniform(0.0005, 0.003)
            seg = rng.standard_normal(400) * np.exp(-np.arange(400) / (tau * SR))
            x[pos : pos + 400] += seg * rng.uniform(0.3, 1.0)
    elif kind == "bursts":
        x = np.zeros(N)
        for _ in range(rng.integers(2, 6)):
            length = int(rng.uniform(0.03, 0.1) * SR)
            pos = rng.integers(0, N - length)
            win = np.hanning(length)
            x[pos : pos + length] += _band_noise(rng, rng.uniform(300, 5000), rng.uniform(0.5, 1.5), length) * win
    else:
        lo, hi = rng.uniform(150, 600), rng.uniform(2000, 6000)
        dur = rng.uniform(0.2, 0.6)
        start = rng.uniform(0.0, CLIP_SECONDS - dur)
        t = np.clip((_T - start) / dur, 0, 1)
        if kind == "chirp_down":
            t = 1 - t
        freq = lo * (hi / lo) ** t
        phase = 2 * np.pi * np.cumsum(freq) / SR
        gate = ((_T >= start) & (_T < start + dur)).astype(float)
        x = np.sin(phase) * np.convolve(gate, np.hanning(160) / 80, mode="same")
    return _tilt(x, rng.uniform(-0.6, 0.6))


RHYTHM_RATES = [2.0, 3.0, 4.0, 6.0, 8.0, 12.0]
RHYTHM_NAMES = [f"{r:g}hz" for r in RHYTHM_RATES]


def _rhythm_clip(c: int, rng) -> np.ndarray:
    rate = RHYTHM_RATES[c] * rng.uniform(0.96, 1.04)
    carrier = rng.integers(0, 3)
    if carrier == 0:
        x = _band_noise(rng, rng.uniform(300, 4000), rng.uniform(0.5, 2.0))
    elif carrier == 1:
        f0 = _midi_hz(rng.uniform(45, 80))
        k = np.arange(1, 7)
        x = _partials(f0 * k, k ** -rng.uniform(0.5, 2.0), rng)
    else:
        x = _coloured_noise(rng, rng.uniform(-1.0, 0.5))
    phase = 2 * np.pi * rate * _T + rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.5:  # sinusoidal AM
        depth = rng.uniform(0.6, 1.0)
        mod = 1 - depth * 0.5 * (1 + np.cos(phase))
    else:  # gated pulses with smoothed edges
        duty = rng.uniform(0.2, 0.5)
        gate = ((phase / (2 * np.pi)) % 1.0 < duty).astype(float)
        mod = np.convolve(gate, np.hanning(81) / 40.5, mode="same")
    return x * mod


GENERATORS: dict[str, tuple[Callable[[int, np.random.Generator], np.ndarray], list[str]]] = {
    "synth_pitch": (_pitch_clip, PITCH_NAMES),
    "synth_timbre": (_timbre_clip, TIMBRE_NAMES),
    "synth_events": (_event_clip, EVENT_NAMES),
    "synth_rhythm": (_rhythm_clip, RHYTHM_NAMES),
}
_TASK_IDS = {name: i for i, name in enumerate(GENERATORS)}


def synth_clip(task: str, class_index: int, index: int, seed: int = 0) -> np.ndarray:
    """One clip, float32 [16000] in [-1, 1], deterministic in (task, class_index, index, seed)."""
    name = _canonical(task)
    gen, labels = GENERATORS[name]
    if not 0 <= class_index < len(labels):
        raise ValueError(f"{name}: class_index must be in [0, {len(labels)}), got {class_index}")
    rng = np.random.default_rng([int(seed), _TASK_IDS[name], int(class_index), int(index)])
    return _finish(gen(class_index, rng), rng)


def _canonical(task: str) -> str:
    key = str(task).strip().lower()
    if not key.startswith("synth_"):
        key = "synth_" + key
    if key not in GENERATORS:
        raise KeyError(f"unknown synthetic task {task!r}; known: {', '.join(GENERATORS)}")
    return key


def _split_of(i: int, n: int) -> str:
    n_train = int(round(SPLIT_FRACTIONS[0] * n))
    n_valid = int(round(SPLIT_FRACTIONS[1] * n))
    return "train" if i < n_train else ("valid" if i < n_train + n_valid else "test")


# ----------------------------------------------------------------------------- writing folders


def _params(name: str, seed: int, n_per_class: int) -> dict:
    return {"name": name, "version": VERSION, "seed": int(seed), "n_per_class": int(n_per_class),
            "sampling_rate": SR, "clip_seconds": CLIP_SECONDS, "labels": GENERATORS[name][1]}


def _is_complete(task_dir: Path, params: dict) -> bool:
    info = task_dir / "task.json"
    if not info.is_file() or not (task_dir / "metadata.csv").is_file():
        return False
    try:
        stored = json.loads(info.read_text())
    except (OSError, ValueError):
        return False
    if {k: stored.get(k) for k in params} != params:
        return False
    with open(task_dir / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != stored.get("n_files"):
        return False
    return all((task_dir / r["file_name"]).is_file() for r in rows)


def _write_task(tmp: Path, params: dict) -> None:
    name, seed, n = params["name"], params["seed"], params["n_per_class"]
    labels = params["labels"]
    rows = []
    for c, label in enumerate(labels):
        (tmp / "audio" / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rel = f"audio/{label}/{label}_{i:04d}.wav"
            sf.write(tmp / rel, synth_clip(name, c, i, seed), SR, subtype="PCM_16")
            rows.append((rel, label, _split_of(i, n)))
    with open(tmp / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "label", "split"])
        w.writerows(rows)
    (tmp / "task.json").write_text(json.dumps({**params, "n_files": len(rows)}, indent=1))


def _cleanup_stale(out_dir: Path, name: str) -> None:
    for p in out_dir.glob(f".{name}.tmp-*"):
        try:
            pid = int(p.name.split("-")[1])
            os.kill(pid, 0)  # still running: leave it alone
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


def build_synthetic_task(out_dir: Union[str, os.PathLike], name: str, seed: int = 0,
                         n_per_class: Optional[int] = None) -> Path:
    """Build (or reuse) one synthetic task folder ``out_dir/<name>``; returns its path."""
    name = _canonical(name)
    n = int(n_per_class or DEFAULT_N_PER_CLASS[name])
    if n < 5:
        raise ValueError(f"n_per_class must be >= 5 (train/valid/test per class), got {n}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / name
    params = _params(name, seed, n)
    if _is_complete(final, params):
        return final
    _cleanup_stale(out_dir, name)
    tmp = out_dir / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_task(tmp, params)
        if final.exists():
            trash = out_dir / f".{name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def build_synthetic_suite(
    out_dir: Union[str, os.PathLike],
    seed: int = 0,
    n_per_class: Union[None, int, Mapping[str, int]] = None,
    tasks: Optional[Iterable[str]] = None,
) -> list[Path]:
    """Build the synthetic tasks as EVAR folders under ``out_dir``; returns their paths.

    Args:
        out_dir: parent folder (created if needed).
        seed: master seed; same seed -> identical wav bytes.
        n_per_class: clips per class: None (task defaults: 30/40/40/50 -> 360/320/320/300 clips),
            an int for all tasks, or ``{task: int}``.
        tasks: subset of names (``synth_pitch`` or ``pitch``); default all four.
    A complete folder with the same parameters is reused; anything else is rebuilt atomically.
    """
    names = [_canonical(t) for t in (tasks if tasks is not None else GENERATORS)]
    out = []
    for name in names:
        n = n_per_class.get(name, n_per_class.get(name.removeprefix("synth_"))) if isinstance(n_per_class, Mapping) \
            else n_per_class
        out.append(build_synthetic_task(out_dir, name, seed, n))
    return out


def default_synthetic_dir() -> Path:
    """``$HF_FUSION_SYNTHETIC_DIR`` or ``~/.cache/hf_fusion/synthetic``."""
    env = os.environ.get("HF_FUSION_SYNTHETIC_DIR")
    return Path(env) if env else Path.home() / ".cache" / "hf_fusion" / "synthetic"


assert set(GENERATORS) == set(SYNTHETIC_TASKS), "synthetic registry and generators disagree"
assert all(len(GENERATORS[n][1]) == SYNTHETIC_TASKS[n].n_classes for n in GENERATORS)
