"""Decode + resample audio in worker processes, delivered in order (``extract_features(decode_workers=N)``).

A :class:`ClipFeeder` serves one split: given batches of row numbers it yields, in the order asked,
each row's mono float32 clip at the front end's rate, or a :class:`DecodeFailure` naming the file.
``workers=0`` decodes in the calling process; ``workers=N`` uses N persistent ``spawn`` workers with
one torch thread each and the same decoding function, so the cache is the same bit for bit. A script
calling it needs the ``if __name__ == "__main__":`` guard (docs/extraction.md).
"""

from __future__ import annotations

import io
import multiprocessing
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
from datasets import Audio, Dataset

from ..protocol import ON_ERROR


class AudioDecodeError(RuntimeError):
    """An audio file/bytes could not be decoded; ``.name`` is the file (or row) concerned."""

    def __init__(self, name: str, reason: str):
        reason = " ".join(str(reason).split())  # decoders' messages span lines: keep one line
        super().__init__(f"cannot decode audio {name}: {reason[:300]}")
        self.name, self.reason = name, reason[:300]


def decode_audio(value: dict, row: int, decoder: Audio) -> np.ndarray:
    """An undecoded audio value {"path", "bytes"} -> mono float32 [samples] at the decoder's rate.

    Raises :class:`AudioDecodeError` naming the file for an unreadable, empty or non-finite one."""
    name = value.get("path") or f"row {row} (embedded bytes)"
    if value.get("bytes") is None and value.get("path") is None:
        raise AudioDecodeError(name, "neither a path nor bytes")
    try:
        decoded = decoder.decode_example(_through_libsndfile(value))
        array = np.asarray(decoded["array"], dtype=np.float32)
    except Exception as err:  # torchcodec raises RuntimeError/ValueError/OSError on broken files
        raise AudioDecodeError(name, f"{type(err).__name__}: {err}") from err
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1 or array.size == 0:
        raise AudioDecodeError(name, f"decoded to an empty or non-mono array of shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise AudioDecodeError(name, f"{bad} of {array.size} samples are NaN or infinite")
    return array


#: libsndfile subtypes that ffmpeg (torchcodec) decodes differently: IMA/MS ADPCM WAVs (UrbanSound8K holds
#: some) come out with a fraction of their frames and wrong samples; Ogg Vorbis (Surge) keeps the decoder's
#: tail past the stream's end (docs/downloads.md, "Decoding")
LIBSNDFILE_SUBTYPES = frozenset({"IMA_ADPCM", "MS_ADPCM", "VORBIS"})


def _through_libsndfile(value: dict) -> dict:
    """``value`` itself, or, for a file of a :data:`LIBSNDFILE_SUBTYPES` subtype, its samples as libsndfile
    reads them re-wrapped as an in-memory float WAV: the decoder then only resamples and mixes, as for any
    other file."""
    source = value.get("path") if value.get("bytes") is None else io.BytesIO(value["bytes"])
    if source is None:
        return value
    try:
        if sf.info(source).subtype not in LIBSNDFILE_SUBTYPES:
            return value
        if isinstance(source, io.BytesIO):
            source.seek(0)
        samples, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return value  # a format libsndfile does not read (MP3 in old builds, video, ...): ffmpeg decides
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    return {"path": value.get("path"), "bytes": buffer.getvalue()}


def check_on_error(on_error: str) -> None:
    """Refuse an ``on_error`` that is not one of ``hf_fusion.protocol.ON_ERROR`` ("raise", "skip")."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be {' or '.join(map(repr, ON_ERROR))}, got {on_error!r}")


#: start method of decode workers (spawn: safe after torch has run; see the module docstring)
START_METHOD = "spawn"


class DecodeFailure(NamedTuple):
    """A row whose audio could not be decoded (picklable; becomes an ``AudioDecodeError`` again)."""

    name: str
    reason: str


def check_workers(workers, what: str = "decode_workers") -> int:
    """A worker count as given, checked: an int >= 0 (a bool or anything else is an error naming ``what``)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"{what} must be an int >= 0, got {workers!r}")
    return workers


def decode_row(work: Dataset, column: str, decoder: Audio, row: int) -> np.ndarray | DecodeFailure:
    """Row ``row`` of ``work`` (its ``column`` undecoded: {"path", "bytes"}) -> float32 [samples] or a failure."""
    try:
        return decode_audio(work[row][column], row, decoder)
    except AudioDecodeError as err:
        return DecodeFailure(err.name, err.reason)


def header_samples(value: dict, sampling_rate: int) -> int:
    """Samples at ``sampling_rate`` that the file's header announces (no decoding); 0 when it says nothing.

    Only for grouping clips by length (:mod:`.bucketing`); an unreadable file gives 0 and fails later,
    when it is decoded, with its name."""
    from torchcodec.decoders import AudioDecoder

    source = value.get("bytes") or value.get("path")
    if source is None:
        return 0
    try:
        seconds = AudioDecoder(source).metadata.duration_seconds_from_header
    except Exception:  # a broken file: reported by decode_audio, not here
        return 0
    return int(round(float(seconds or 0.0) * sampling_rate))


class _Jobs(torch.utils.data.Dataset):
    """``jobs[("decode" | "length", rows)]`` -> a list with one clip / failure / length per row."""

    def __init__(self, work: Dataset, column: str, sampling_rate: int):
        self.work, self.column, self.sampling_rate = work, column, int(sampling_rate)
        self.decoder = Audio(sampling_rate=self.sampling_rate)

    def __getitem__(self, job):
        kind, rows = job
        if kind == "length":
            return [header_samples(self.work[row][self.column], self.sampling_rate) for row in rows]
        out = []
        for row in rows:
            clip = decode_row(self.work, self.column, self.decoder, row)
            out.append(clip if isinstance(clip, DecodeFailure) else torch.from_numpy(clip))  # shared memory
        return out

    def __len__(self) -> int:
        return len(self.work)


class _JobList(torch.utils.data.Sampler):
    """The jobs of the current request (replaced before each pass of the persistent loader)."""

    def __init__(self):
        self.jobs: list = []

    def __iter__(self):
        return iter(list(self.jobs))

    def __len__(self) -> int:
        return len(self.jobs)


def _identity(item):
    return item


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)


class ClipFeeder:
    """Decoded clips of one split, batch by batch in the order asked.

    Args:
        work: the split with ``column`` cast to ``Audio(decode=False)``.
        column: the audio column.
        sampling_rate: the front end's rate (Hz); clips are resampled to it.
        workers: decode processes (0: decode here, as the plain run).
        prefetch: batches each worker decodes ahead (memory: ``workers * prefetch`` batches of clips).
    """

    def __init__(self, work: Dataset, column: str, sampling_rate: int, workers: int = 0, prefetch: int = 2):
        self.jobs = _Jobs(work, column, sampling_rate)
        self.workers = check_workers(workers)
        self._sampler = _JobList()
        self._loader = None
        if workers:
            self._loader = torch.utils.data.DataLoader(
                self.jobs, batch_size=None, sampler=self._sampler, num_workers=workers, collate_fn=_identity,
                persistent_workers=True, prefetch_factor=prefetch, worker_init_fn=_one_thread,
                multiprocessing_context=multiprocessing.get_context(START_METHOD),
            )

    def _run(self, jobs: list) -> Iterator[list]:
        if self._loader is None:
            for job in jobs:
                yield self.jobs[job]
            return
        self._sampler.jobs = jobs
        yield from self._loader  # DataLoader keeps the order of its sampler, whatever the workers' speed

    def lengths(self, rows: Sequence[int], chunk: int = 64) -> list[int]:
        """Header lengths (samples at the front end's rate) of ``rows``, read by the workers."""
        rows = list(rows)
        jobs = [("length", rows[i : i + chunk]) for i in range(0, len(rows), chunk)]
        return [n for part in self._run(jobs) for n in part]

    def batches(self, batches: Sequence[Sequence[int]]) -> Iterator[list[np.ndarray | DecodeFailure]]:
        """For each batch of rows (in order): its clips (float32 [samples]) or failures, row by row."""
        for part in self._run([("decode", list(rows)) for rows in batches]):
            yield [clip if isinstance(clip, DecodeFailure) else clip.numpy() for clip in part]

    def close(self) -> None:
        """Stop the worker processes (also done when the feeder is garbage collected)."""
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    def __enter__(self) -> "ClipFeeder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
