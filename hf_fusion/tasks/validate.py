"""Find corrupt or unreadable audio before a long embedding run.

:func:`check_audio` decodes every example of the ``audio`` column with torchcodec (the decoder
``datasets`` itself uses). ``on_error="raise"`` stops at the first bad file with its name and the
decoder's message; ``on_error="skip"`` drops bad rows and reports which ones.
A file that decodes to zero samples counts as bad.
"""

from __future__ import annotations

from typing import Union

from datasets import Audio, Dataset, DatasetDict

from ..data.decoding import AudioDecodeError, check_on_error

class UnreadableAudioError(ValueError):
    """Several files of a task could not be decoded; ``.names`` lists them (one line of text)."""

    def __init__(self, where: str, errors: list[AudioDecodeError]):
        self.names = [err.name for err in errors]
        shown = "; ".join(f"{err.name} ({err.reason})" for err in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        super().__init__(f"{where}: {len(errors)} unreadable audio file(s): {shown}{more}; "
                         "pass on_error='skip' (CLI --on-error skip) to skip them")


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
    on_error: str = "raise",
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
    check_on_error(on_error)
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
