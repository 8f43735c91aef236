"""Column, split and attribute names that the task loaders write and extraction reads."""

from __future__ import annotations

#: the split of a fold task that holds every clip once (cropped from sample 0)
ALL_SPLIT = "all"
#: the split with the random training crop of each fold-task clip longer than the clip length
TRAIN_CROPS_SPLIT = "all_train_crops"
#: the column of ``TRAIN_CROPS_SPLIT`` naming each crop's row in ``ALL_SPLIT``
SOURCE_ROW = "source_row"
#: the attribute of a loaded DatasetDict listing the files skipped at load ({split: [files]})
SKIPPED_ATTR = "skipped_files"
#: the attribute of a loaded DatasetDict holding the gaps of a partial download (``task.json``'s ``gaps``)
PARTIAL_ATTR = "partial_download_gaps"


def skipped_at_load(data) -> dict[str, list[str]]:
    """{split: [file names]} of the unreadable files dropped when ``data`` was loaded with ``on_error="skip"``."""
    return dict(getattr(data, SKIPPED_ATTR, None) or {})
