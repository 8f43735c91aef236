"""Clip-length handling as EVAR does it: crop or zero-pad every clip to the task's length.

Rules (``n = round(clip_seconds * sampling_rate)`` samples):

* a clip longer than ``n`` is cropped: at a random start for train/valid, at sample 0 for test.
  The random start is drawn with ``numpy.random.default_rng([seed, key])`` where ``key`` is the
  file's name as the task lists it (:func:`clip_key`; the row for embedded bytes), so it is
  deterministic per (seed, file), changes with the seed and never with the metadata rows' order;
* a clip shorter than ``n`` is zero-padded at the end (never cropped, whatever the split);
* audio is mono: ``datasets``' decoder returns the mean of the channels for ``["array"]``.
"""

from __future__ import annotations

import os
import warnings
import functools
import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import numpy as np
from datasets import Audio, Dataset, DatasetDict, List, Value

from ..data.bucketing import contiguous_batches
from ..data.columns import SKIPPED_ATTR
from ..data.decoding import AudioDecodeError, ClipFeeder, DecodeFailure, check_on_error, check_workers, decode_audio
from ..data.fingerprints import dataset_fingerprint
from ..data.storage import default_cache_root
from .validate import UnreadableAudioError

RANDOM_CROP_SPLITS = ("train", "valid")
#: temporary column of the crop map: the decode error of the row ("" when it decoded)
_ERROR = "_decode_error"
#: bump when the crop output for the same input and settings changes (keys the crop cache files)
CROP_CACHE_VERSION = 2
#: the crop map flushes its output to disk every this many bytes of clips (bounds the writer's buffer)
_WRITER_BYTES = 4 * 2**20


def audio_array(value) -> tuple[np.ndarray, int]:
    """Mono float32 samples and sampling rate of a decoded ``audio`` value.

    Accepts a ``datasets`` AudioDecoder (datasets >= 4) or a dict with ``array`` and
    ``sampling_rate``. Multi-channel input is averaged over channels: an ``array`` of shape
    (channels, samples) becomes (samples,).
    """
    try:
        array, sr = value["array"], value["sampling_rate"]
    except (KeyError, TypeError) as err:
        raise TypeError(f"expected a decoded audio value with 'array' and 'sampling_rate', got {type(value)}") from err
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        array = array.mean(axis=0)
    elif array.ndim != 1:
        raise ValueError(f"audio array must be 1-D (samples) or 2-D (channels, samples), got shape {array.shape}")
    return array, int(sr)


def clip_samples(clip_seconds: float, sampling_rate: int) -> int:
    """Clip length in samples: ``round(clip_seconds * sampling_rate)``."""
    if clip_seconds is None or clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
    return int(round(clip_seconds * sampling_rate))


def crop_start(n_in: int, n_out: int, random_crop: bool, seed: int = 0, index: int | str = 0) -> int:
    """Start sample of the crop of an ``n_in``-sample clip to ``n_out`` samples (0 if it fits), drawn from
    ``seed`` and the clip's ``index``: a row number, or a name (:func:`clip_key`) so that a clip's crop does
    not depend on where its row is."""
    if n_in <= n_out or not random_crop:
        return 0
    if isinstance(index, str):
        index = int.from_bytes(hashlib.blake2b(index.encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng([int(seed), int(index)])
    return int(rng.integers(0, n_in - n_out + 1))


def clip_key(example: dict, audio_column: str, index: int) -> int | str:
    """What a clip's random crop is drawn from: its ``file_name`` as the task lists it (relative to the task
    folder, so VoxCeleb1's many ``00001.wav`` stay apart), else its file's base name, so the same crop
    wherever metadata.csv lists it; its row number for embedded bytes without a path."""
    if example.get("file_name"):
        return str(example["file_name"])
    path = (example.get(audio_column) or {}).get("path")
    return os.path.basename(path) if path else int(index)


def crop_or_pad(wave: np.ndarray, n_out: int, start: int = 0) -> np.ndarray:
    """``wave[start:start + n_out]``, zero-padded at the end to exactly ``n_out`` samples (float32)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"crop_or_pad expects mono samples of shape (samples,), got {wave.shape}")
    seg = wave[start : start + n_out]
    if len(seg) < n_out:
        seg = np.concatenate([seg, np.zeros(n_out - len(seg), dtype=np.float32)])
    return seg


def make_clip_fn(
    clip_seconds: float,
    random_crop: bool,
    seed: int = 0,
    audio_column: str = "audio",
    output_column: str = "input_values",
) -> Callable[[dict, int], dict]:
    """A function for ``Dataset.map(fn, with_indices=True)`` writing a fixed-length clip.

    The output column holds float32 mono samples of length ``round(clip_seconds * sr)`` where sr
    is the decoded audio's rate.
    """

    def fn(example: dict, index: int) -> dict:
        wave, sr = audio_array(example[audio_column])
        n = clip_samples(clip_seconds, sr)
        start = crop_start(len(wave), n, random_crop, seed, index)
        return {output_column: crop_or_pad(wave, n, start)}

    return fn


def crop_clips(
    data: DatasetDict,
    clip_seconds: float,
    seed: int = 0,
    random_splits: Iterable[str] = RANDOM_CROP_SPLITS,
    audio_column: str = "audio",
    output_column: str = "input_values",
    keep_audio: bool = True,
    num_proc: Optional[int] = None,
    on_error: str = "raise",
    cache_dir: Union[str, os.PathLike, None] = None,
    decode_workers: int = 0,
) -> DatasetDict:
    """Add a fixed-length ``output_column`` (float32 samples) to every split of ``data``.

    Splits named in ``random_splits`` (train, valid) get random crops, the others (test) start at
    0; short clips are zero-padded. The audio column must have a fixed ``sampling_rate`` (cast it
    with ``Audio(sampling_rate=...)``) so the clip length in samples is the same everywhere.
    The new column is ``List(float32, length=n)``; read it with ``.with_format("numpy")`` or
    ``"torch"``. The decoded waveform is not re-encoded: ``keep_audio=False`` drops the audio column.

    A file that cannot be decoded (empty, truncated, not audio, NaN/inf samples): ``on_error="raise"``
    raises :class:`~hf_fusion.tasks.validate.UnreadableAudioError` naming every such file of the split;
    ``"skip"`` drops their rows, warns once naming them, and records them on the result
    (``hf_fusion.tasks.validate.skipped_at_load(result)`` -> ``{split: [files]}``).

    ``decode_workers`` > 0 decodes + resamples in that many spawned processes feeding the map in row
    order (the same samples bit for bit, the same crop file; a kept crop file starts none).

    Memory: the crops are written to an arrow file under ``cache_dir`` (default
    ``$HF_FUSION_CACHE/clips``, see :func:`crop_cache_file`) in bounded batches and memory-mapped,
    so memory does not grow with the number of clips; a later load of the same files with the same
    settings reuses the file.
    """
    check_on_error(on_error)
    check_workers(decode_workers, "decode workers")
    random_splits = set(random_splits)
    out, skipped = {}, {}
    for split, ds in data.items():
        feat = ds.features.get(audio_column)
        if not isinstance(feat, Audio):
            raise ValueError(f"split {split!r}: column {audio_column!r} is not an Audio feature (got {feat})")
        if feat.sampling_rate is None:
            raise ValueError(
                f"split {split!r}: audio has no fixed sampling rate; load the task with sampling_rate=... "
                "(or cast_column('audio', Audio(sampling_rate=sr))) before cropping"
            )
        n = clip_samples(clip_seconds, feat.sampling_rate)
        random_crop = split in random_splits
        def fn(example: dict, index: int, decode, _random=random_crop, _n=n) -> dict:
            try:
                wave = decode(example[audio_column], index)
            except AudioDecodeError as err:
                return {output_column: np.zeros(_n, np.float32), _ERROR: _error_text(err)}
            start = crop_start(len(wave), _n, _random, seed, clip_key(example, audio_column, index))
            return {output_column: crop_or_pad(wave, _n, start), _ERROR: ""}

        settings = {"kind": "split", "n": n, "sr": feat.sampling_rate, "random": random_crop, "seed": seed,
                    "output": output_column}
        mapped = _map_undecoded(ds, fn, audio_column, {output_column: List(Value("float32"), length=n)}, num_proc,
                                f"crop {split} to {clip_seconds} s", cache_dir, settings, n, decode_workers)
        mapped, skipped[split] = _drop_bad_rows(mapped, on_error, f"split {split!r}")
        if not keep_audio:
            mapped = mapped.remove_columns(audio_column)
        out[split] = mapped
    result = DatasetDict(out)
    setattr(result, SKIPPED_ATTR, {split: names for split, names in skipped.items() if names})
    return result


def _error_text(err: AudioDecodeError) -> str:
    return f"{err.name}\t{err.reason}"


def crop_cache_file(ds: Dataset, audio_column: str, settings: dict,
                    cache_dir: Union[str, os.PathLike, None] = None) -> Path:
    """The arrow file holding the crops of ``ds`` with ``settings`` (clip samples, rate, seed, ...).

    Keyed by a digest of the split's content (audio paths + size + mtime or embedded bytes, labels and
    every other column, row order; ``hf_fusion.data.fingerprints.dataset_fingerprint``), the crop
    settings and :data:`CROP_CACHE_VERSION`: the same files and settings give the same file, any change
    another. Folder: ``cache_dir``, default ``$HF_FUSION_CACHE/clips`` (``~/.cache/hf_fusion/clips``).
    """
    import hashlib
    import json

    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root() / "clips"
    others = tuple(c for c in ds.column_names if c not in (audio_column, "label"))
    key = {"data": dataset_fingerprint(ds, audio_column, others), "settings": settings,
           "features": str(ds.features), "version": CROP_CACHE_VERSION}
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()
    return folder / f"crop-{digest}.arrow"


class _RowDecoder:
    """Decodes the rows of one crop map in row order: in the map itself (``decode_audio``), or by taking
    each row's clip from decode workers (the same samples bit for bit)."""

    def __init__(self, decoder: Audio, stream=None):
        self.decoder, self.stream = decoder, stream

    def __call__(self, value: dict, index: int) -> np.ndarray:
        if self.stream is None:
            return decode_audio(value, index, self.decoder)
        row, clip = next(self.stream)
        if row != index:
            raise RuntimeError(f"crop decode workers delivered row {row} for row {index}")
        if isinstance(clip, DecodeFailure):
            raise AudioDecodeError(clip.name, clip.reason)
        return clip


@contextmanager
def _row_decoder(raw: Dataset, audio_column: str, sampling_rate: int, workers: int):
    """A :class:`_RowDecoder` for one crop map; ``workers`` > 0 decodes in that many spawned processes
    (``hf_fusion.data.decoding.ClipFeeder``), stopped when the block ends."""
    decoder = Audio(sampling_rate=sampling_rate)
    if not workers or len(raw) == 0:
        yield _RowDecoder(decoder)
        return
    plan = contiguous_batches(range(len(raw)), 16)
    with ClipFeeder(raw, audio_column, sampling_rate, workers) as feeder:
        yield _RowDecoder(decoder, ((row, clip) for rows, clips in zip(plan, feeder.batches(plan))
                                    for row, clip in zip(rows, clips)))


def _map_undecoded(ds: Dataset, fn, audio_column: str, new_features: dict, num_proc, desc: str,
                   cache_dir=None, settings: Optional[dict] = None, clip_samples_per_row: int = 1,
                   decode_workers: int = 0) -> Dataset:
    """``ds.map(fn, with_indices=True)`` with the audio column undecoded ({"path", "bytes"}: ``fn(example,
    index, decode=...)`` decodes it with ``decode(value, index)`` and catches bad files) plus ``new_features``
    and the error column; the Audio feature is restored. ``decode_workers`` > 0: the clips are decoded in
    that many processes ahead of the map (same samples, same file).

    The output goes to :func:`crop_cache_file` (reused when present), flushed every ~4 MiB of clips,
    and is read back memory-mapped: memory does not grow with the number of rows."""
    feat = ds.features[audio_column]
    cache_file = crop_cache_file(ds, audio_column, settings or {}, cache_dir)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    raw = ds.cast_column(audio_column, Audio(decode=False))
    features = raw.features.copy()
    features.update(new_features)
    features[_ERROR] = Value("string")
    row_bytes = 4 * clip_samples_per_row * sum(1 for f in new_features.values() if isinstance(f, List))
    writer_rows = max(1, min(1000, _WRITER_BYTES // max(row_bytes, 1)))
    kwargs = dict(with_indices=True, features=features, num_proc=num_proc, desc=desc, writer_batch_size=writer_rows,
                  new_fingerprint=cache_file.stem)
    workers = decode_workers if num_proc is None and not cache_file.exists() else 0  # a kept file needs none
    try:
        with _row_decoder(raw, audio_column, feat.sampling_rate, workers) as decode:
            mapped = raw.map(functools.partial(fn, decode=decode), cache_file_name=str(cache_file),
                             load_from_cache_file=True, **kwargs)
    except Exception:
        if not cache_file.exists():
            raise
        # an unreadable cache file (cut by a full disk, edited): compute it again
        mapped = raw.map(functools.partial(fn, decode=_RowDecoder(Audio(sampling_rate=feat.sampling_rate))),
                         cache_file_name=str(cache_file), load_from_cache_file=False, **kwargs)
    return mapped.cast_column(audio_column, feat)


def _drop_bad_rows(mapped: Dataset, on_error: str, where: str) -> tuple[Dataset, list[str]]:
    """Remove the error column; raise naming every bad file, or drop their rows (one warning) -> (data, files)."""
    errors = mapped[_ERROR]
    mapped = mapped.remove_columns(_ERROR)
    bad = [(i, *text.split("\t", 1)) for i, text in enumerate(errors) if text]
    if not bad:
        return mapped, []
    problems = [AudioDecodeError(name, reason) for _, name, reason in bad]
    if on_error == "raise":
        raise UnreadableAudioError(where, problems)
    names = [name for _, name, _ in bad]
    warnings.warn(f"{where}: skipped {len(names)} unreadable audio file(s): "
                  + "; ".join(f"{p.name} ({p.reason})" for p in problems), stacklevel=3)
    rows = set(i for i, _, _ in bad)
    return mapped.select([i for i in range(len(mapped)) if i not in rows]), names


def with_row_column(ds: Dataset, name: str) -> Dataset:
    """``ds`` plus an int64 column ``name`` = each row's position (0..len-1), without holding the clips.

    ``Dataset.add_column`` first copies a dataset that has an index mapping (after ``select``) with
    1000-row writer batches in memory; here that copy is written in ~4 MiB batches to the dataset's
    cache folder (memory-mapped) instead."""
    if ds._indices is not None:
        row_bytes = max(1, ds.data.nbytes // max(ds.data.num_rows, 1))
        ds = ds.flatten_indices(writer_batch_size=max(1, min(1000, _WRITER_BYTES // row_bytes)))
    return ds.add_column(name, np.arange(len(ds), dtype=np.int64))


def crop_fold_clips(
    ds,
    clip_seconds: float,
    seed: int = 0,
    audio_column: str = "audio",
    output_column: str = "input_values",
    num_proc: Optional[int] = None,
    on_error: str = "raise",
    cache_dir: Union[str, os.PathLike, None] = None,
    decode_workers: int = 0,
) -> tuple:
    """Crops of fold data (every fold is test once and train/valid otherwise), decoding each clip once.

    Returns ``(test_crops, train_crops, long_rows, skipped)``: two row-aligned Datasets with
    ``output_column`` = the clip from sample 0 (its crop whenever it is in the test fold) and a
    random crop with ``crop_start(..., seed, clip_key(...))`` (its
    crop whenever it is in train or valid, whichever fold is held out), and the rows whose clip is
    longer than the clip length (only there do the two crops differ; shorter clips are zero-padded
    identically in both), and the files dropped as unreadable (``on_error="skip"``; with ``"raise"``
    :class:`~hf_fusion.tasks.validate.UnreadableAudioError` names them all). A dropped file is missing from
    both crops alike, and ``long_rows`` index the remaining rows. The crops are memory-mapped from an arrow
    file under ``cache_dir`` as in :func:`crop_clips`.
    """
    check_on_error(on_error)
    check_workers(decode_workers, "decode workers")
    feat = ds.features.get(audio_column)
    if not isinstance(feat, Audio) or feat.sampling_rate is None:
        raise ValueError(f"fold data: column {audio_column!r} must be an Audio feature with a fixed sampling_rate "
                         f"(got {feat}); load the task with sampling_rate=...")
    n = clip_samples(clip_seconds, feat.sampling_rate)
    random_column = f"_{output_column}_train_crop"
    def fn(example: dict, index: int, decode) -> dict:
        try:
            wave = decode(example[audio_column], index)
        except AudioDecodeError as err:
            zeros = np.zeros(n, np.float32)
            return {output_column: zeros, random_column: zeros, "_is_long": False, _ERROR: _error_text(err)}
        start = crop_start(len(wave), n, True, seed, clip_key(example, audio_column, index))
        return {output_column: crop_or_pad(wave, n, 0), random_column: crop_or_pad(wave, n, start),
                "_is_long": len(wave) > n, _ERROR: ""}

    clip = List(Value("float32"), length=n)
    settings = {"kind": "fold", "n": n, "sr": feat.sampling_rate, "seed": seed, "output": output_column}
    mapped = _map_undecoded(ds, fn, audio_column, {output_column: clip, random_column: clip, "_is_long": Value("bool")},
                            num_proc, f"crop fold clips to {clip_seconds} s", cache_dir, settings, n, decode_workers)
    mapped, skipped = _drop_bad_rows(mapped, on_error, "fold data")
    long_rows = [i for i, is_long in enumerate(mapped["_is_long"]) if is_long]
    mapped = mapped.remove_columns("_is_long")
    test = mapped.remove_columns(random_column)
    train = mapped.remove_columns(output_column).rename_column(random_column, output_column)
    return test, train, long_rows, skipped
