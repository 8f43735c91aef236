"""Find corrupt or unreadable audio before a long embedding run.

:func:`check_audio` decodes every example of the ``audio`` column with torchcodec (the decoder
``datasets`` itself uses). ``on_error="raise"`` stops at the first bad file with its name and the
decoder's message; ``on_error="skip"`` drops bad rows and reports which ones.
A file that decodes to zero samples counts as bad.
"""

from __future__ import annotations

from typing import Literal, Union

from datasets import Audio, Dataset, DatasetDict


class AudioDecodeError(RuntimeError):
    """An audio file/bytes could not be decoded; ``.name`` is the file (or row) concerned."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"cannot decode audio {name}: {reason}")
        self.name = name


def _name(value: dict, index: int) -> str:
    return value.get("path") or f"row {index} (embedded bytes)"


def decode_check(value: dict, index: int = 0, full: bool = True) -> None:
    """Raise :class:`AudioDecodeError` unless an encoded ``{"path", "bytes"}`` value decodes.

    ``full=False`` only opens the stream (fast header check); ``full=True`` decodes all samples.
    """
    from torchcodec.decoders import AudioDecoder

    name = _name(value, index)
    src = value.get("bytes") or value.get("path")
    if src is None:
        raise AudioDecodeError(name, "neither path nor bytes")
    try:
        dec = AudioDecoder(src)
        if full:
            samples = dec.get_all_samples()
            if samples.data.numel() == 0:
                raise AudioDecodeError(name, "no samples")
    except AudioDecodeError:
        raise
    except Exception as err:  # torchcodec raises RuntimeError/ValueError on broken streams
        raise AudioDecodeError(name, f"{type(err).__name__}: {err}") from err


def check_audio(
    data: Union[Dataset, DatasetDict],
    on_error: Literal["raise", "skip"] = "raise",
    column: str = "audio",
    full: bool = True,
):
    """Decode every example; returns ``(clean_data, skipped)``.

    Args:
        data: Dataset or DatasetDict with an Audio ``column``.
        on_error: "raise" -> AudioDecodeError naming the first bad file; "skip" -> drop bad rows.
        full: decode all samples (True) or only open each file (False, faster).
    Returns:
        (data without bad rows, skipped) where skipped is a list of file names for a Dataset or
        ``{split: [names]}`` for a DatasetDict; ``len`` gives the count.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if isinstance(data, DatasetDict):
        out, skipped = {}, {}
        for split, ds in data.items():
            out[split], skipped[split] = check_audio(ds, on_error, column, full)
        return DatasetDict(out), skipped
    feat = data.features.get(column)
    if not isinstance(feat, Audio):
        raise ValueError(f"column {column!r} is not an Audio feature (got {feat})")
    raw = data.cast_column(column, Audio(decode=False))
    keep, skipped = [], []
    for i, value in enumerate(raw[column]):
        try:
            decode_check(value, i, full)
            keep.append(i)
        except AudioDecodeError as err:
            if on_error == "raise":
                raise
            skipped.append(err.name)
    clean = data if not skipped else data.select(keep)
    return clean, skipped
