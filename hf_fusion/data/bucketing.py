"""Length bucketing: batches of clips of similar length, so that less of each batch is padding.

A shard's rows are sorted by their length (longest first, a stable sort: rows of equal length keep
their order) and cut into batches of ``batch_size``; each batch lists its rows in ascending order.
Clips of one length (every pre-cropped task) therefore give exactly the contiguous batches of the plain
run. Results do not depend on the grouping beyond float rounding: every backbone masks each clip's
padding (``tests/test_batch_independence.py``), and extraction writes the rows back in row order.
"""

from __future__ import annotations

from collections.abc import Sequence


def contiguous_batches(rows: Sequence[int], batch_size: int) -> list[list[int]]:
    """``rows`` cut in order into chunks of ``batch_size`` (the last one shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = list(rows)
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def bucketed_batches(rows: Sequence[int], lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of ``rows`` grouped by ``lengths`` (samples, one per row; longest batch first).

    Stable: rows of equal length stay in their order, so equal lengths give :func:`contiguous_batches`."""
    rows = list(rows)
    if len(lengths) != len(rows):
        raise ValueError(f"got {len(lengths)} lengths for {len(rows)} rows")
    order = sorted(range(len(rows)), key=lambda i: -int(lengths[i]))
    return [sorted(rows[i] for i in chunk) for chunk in contiguous_batches(order, batch_size)]


def padding_stats(batches: Sequence[Sequence[int]], length_of) -> dict[str, float]:
    """Samples a front end sees for ``batches`` (each padded to its longest clip) vs the clips' own.

    ``length_of``: row -> samples (a mapping or a list indexed by row). Returns {"valid", "padded"
    (= sum of batch size x longest clip), "padding_fraction" (padding / padded)}."""
    valid = padded = 0
    for batch in batches:
        sizes = [int(length_of[row]) for row in batch]
        if sizes:
            valid += sum(sizes)
            padded += len(sizes) * max(sizes)
    return {"valid": valid, "padded": padded, "padding_fraction": (padded - valid) / padded if padded else 0.0}
