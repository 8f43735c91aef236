"""Cross-validation folds and stratified validation carving (EVAR protocol).

The held-out fold is the test set; a stratified ``valid_fraction`` (10 %) of the remaining examples,
drawn with ``numpy.random.default_rng(seed)``, is the validation set. :func:`fold_split_indices` is
the one implementation of the carving: the task loaders and the probe on cached fold features both
call it, so a fold gets the same validation set on every path. The sizing rule per class:
docs/tasks.md, "Folds".
"""

from __future__ import annotations

from typing import Iterator, Union

import numpy as np
from datasets import Dataset, DatasetDict

from ..protocol import VALID_FRACTION


def stratified_valid_indices(labels, valid_fraction: float = VALID_FRACTION, seed: int = 0) -> np.ndarray:
    """Positions (sorted, into ``labels``) chosen for validation; the rule is in docs/tasks.md, "Folds".

    Args:
        labels: 1-D sequence of class ids (any hashable, sortable values), length N.
        valid_fraction: fraction in [0, 1).
        seed: random seed.
    Returns:
        int64 array of positions, sorted ascending.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0 or valid_fraction == 0.0:
        return np.zeros(0, dtype=np.int64)
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    quota = valid_fraction * counts
    k = np.floor(quota).astype(np.int64)
    target = int(round(valid_fraction * n))
    rng = np.random.default_rng(seed)
    # Largest remainder; ties broken by a seeded random order.
    rest = target - int(k.sum())
    if rest > 0:
        tie = rng.random(len(classes))
        order = np.lexsort((tie, -(quota - k)))
        k[order[:rest]] += 1
    # Every class with >= 2 examples: at least 1 in valid, at least 1 left in train.
    k = np.where(counts >= 2, np.clip(k, 1, counts - 1), 0)
    chosen = []
    for c in range(len(classes)):
        pos = np.flatnonzero(inverse == c)
        if k[c]:
            chosen.append(rng.permutation(pos)[: k[c]])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _as_dataset(dataset: Union[Dataset, DatasetDict]) -> Dataset:
    if isinstance(dataset, DatasetDict):
        if len(dataset) != 1:
            raise ValueError(
                f"expected a Dataset or a one-split DatasetDict with a fold column, got splits {list(dataset)}"
            )
        return next(iter(dataset.values()))
    return dataset


def available_folds(dataset: Union[Dataset, DatasetDict], fold_column: str = "fold") -> list[int]:
    """Sorted distinct fold numbers of ``dataset``."""
    ds = _as_dataset(dataset)
    if fold_column not in ds.column_names:
        raise ValueError(f"no fold column {fold_column!r}; columns are {ds.column_names}")
    return sorted(int(f) for f in set(ds[fold_column]))


def fold_split_indices(
    folds, labels, test_fold: int, valid_fraction: float = VALID_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """THE train/valid/test carving of fold data, used by every code path (task loading and the probe).

    Args:
        folds: [N] integer fold id per example; labels: [N] class ids; test_fold: the held-out fold.
    Returns:
        (train, valid, test) positions into the N examples, each ascending: test = the examples of
        ``test_fold``; valid = :func:`stratified_valid_indices` of the remaining examples' labels
        (``valid_fraction``, ``seed``); train = the rest.
    """
    folds = np.asarray(folds).astype(np.int64)
    labels = np.asarray(labels)
    if folds.shape != labels.shape or folds.ndim != 1:
        raise ValueError(f"folds and labels must be 1-D of one length, got {folds.shape} and {labels.shape}")
    known = sorted(set(folds.tolist()))
    if int(test_fold) not in known:
        raise ValueError(f"test_fold={test_fold!r} is not one of the folds {known}")
    test_idx = np.flatnonzero(folds == int(test_fold))
    rest_idx = np.flatnonzero(folds != int(test_fold))
    is_valid = np.zeros(len(rest_idx), dtype=bool)
    is_valid[stratified_valid_indices(labels[rest_idx], valid_fraction, seed)] = True
    return rest_idx[~is_valid], rest_idx[is_valid], test_idx


def fold_splits(
    dataset: Union[Dataset, DatasetDict],
    test_fold: int,
    valid_fraction: float = VALID_FRACTION,
    seed: int = 0,
    fold_column: str = "fold",
    label_column: str = "label",
    train_dataset: Dataset | None = None,
) -> DatasetDict:
    """Split a fold dataset into train/valid/test with ``test_fold`` held out (:func:`fold_split_indices`).

    Args:
        dataset: a Dataset (or one-split DatasetDict, e.g. ``{"all": ...}``) with integer
            ``fold_column`` and ``label_column`` columns.
        test_fold: fold number used as the test set.
        valid_fraction: stratified fraction of the other folds used for validation.
        seed: seed of the validation draw.
        train_dataset: optional row-aligned copy of ``dataset`` that train/valid rows are taken from
            (the random training crops of :func:`hf_fusion.tasks.clips.crop_fold_clips`).
    Returns:
        DatasetDict with "train", "valid", "test" (disjoint; union = whole dataset).
    """
    ds = _as_dataset(dataset)
    available_folds(ds, fold_column)  # a clear error when the column is missing
    if label_column not in ds.column_names:
        raise ValueError(f"no label column {label_column!r}; columns are {ds.column_names}")
    train_idx, valid_idx, test_idx = fold_split_indices(ds[fold_column], ds[label_column], test_fold,
                                                        valid_fraction, seed)
    source = ds if train_dataset is None else train_dataset
    if len(source) != len(ds):
        raise ValueError(f"train_dataset has {len(source)} rows, the fold data {len(ds)}")
    return DatasetDict(train=source.select(train_idx), valid=source.select(valid_idx), test=ds.select(test_idx))


def iter_folds(
    dataset: Union[Dataset, DatasetDict],
    valid_fraction: float = VALID_FRACTION,
    seed: int = 0,
    fold_column: str = "fold",
    label_column: str = "label",
) -> Iterator[tuple[int, DatasetDict]]:
    """Yield ``(test_fold, DatasetDict(train, valid, test))`` for every fold, in fold order."""
    for f in available_folds(dataset, fold_column):
        yield f, fold_splits(dataset, f, valid_fraction, seed, fold_column, label_column)
