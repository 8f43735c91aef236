"""In-memory precomputed features of one task for one feature set (a layer or a fusion).

`TaskFeatures` is the unit the linear probe, the layer-wise study and the selection rule work on.
Either official splits (train/valid/test) or a fold column (EVAR convention: every fold is held out
in turn as test and 10% of the remaining folds, stratified, becomes validation; the carving is
``hf_fusion.tasks.folds.fold_split_indices``, the same function the task loaders use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..protocol import SPLITS, VALID_FRACTION
from ..tasks.folds import fold_split_indices, stratified_valid_indices



def _as_xy(name: str, X, y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X.detach().cpu() if hasattr(X, "detach") else X)
    y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y)
    if X.ndim != 2:
        raise ValueError(f"{name}: features must be 2-D [n, D], got shape {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{name}: labels must be 1-D [n] with n={X.shape[0]} matching the features, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name}: labels must be integer class indices, got dtype {y.dtype}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name}: features contain NaN or Inf")
    return X.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


@dataclass
class TaskFeatures:
    """Features and labels of one task for one feature set.

    Attributes:
        num_classes: number of classes C; labels are integers in [0, C).
        splits: {"train": (X[n, D] float32, y[n] int64), "valid": ..., "test": ...} or None.
        folds: (X[n, D] float32, y[n] int64, fold[n] int) or None; exactly one of splits/folds is set.
            X holds each clip's test crop (from sample 0).
        train_X: fold tasks only, optional [n, D]: the features of each clip's training crop (random
            start, EVAR's rule for train/valid), used when the clip is in train or valid; None = X
            (every clip fits the clip length, so both crops are the same).
        test_folds: fold tasks only, the folds held out in turn (default: every fold).
        name: optional task name (used in error messages and tables).
    """

    num_classes: int
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None
    folds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    name: str = "task"
    meta: dict = field(default_factory=dict)
    train_X: np.ndarray | None = None
    test_folds: tuple | None = None

    def __post_init__(self):
        if (self.splits is None) == (self.folds is None):
            raise ValueError(f"{self.name}: give exactly one of `splits` (train/valid/test) or `folds` (X, y, fold)")
        C = int(self.num_classes)
        if C < 2:
            raise ValueError(f"{self.name}: num_classes must be >= 2, got {self.num_classes}")
        self.num_classes = C
        if self.splits is not None:
            missing = [s for s in SPLITS if s not in self.splits]
            if missing:
                raise ValueError(f"{self.name}: splits must contain {SPLITS}, missing {missing}")
            clean = {s: _as_xy(f"{self.name}/{s}", *self.splits[s]) for s in SPLITS}
            dims = {s: clean[s][0].shape[1] for s in SPLITS}
            if len(set(dims.values())) != 1:
                raise ValueError(f"{self.name}: feature dimension differs between splits: {dims}")
            for s in SPLITS:
                if clean[s][0].shape[0] == 0:
                    raise ValueError(f"{self.name}/{s}: split is empty")
                self._check_labels(f"{self.name}/{s}", clean[s][1])
            self.splits = clean
            if self.train_X is not None or self.test_folds is not None:
                raise ValueError(f"{self.name}: train_X and test_folds apply to fold tasks only")
        else:
            if len(self.folds) != 3:
                raise ValueError(f"{self.name}: folds must be a tuple (X, y, fold), got {len(self.folds)} items")
            X, y = _as_xy(self.name, self.folds[0], self.folds[1])
            fold = np.asarray(self.folds[2])
            if fold.shape != y.shape:
                raise ValueError(f"{self.name}: fold ids must have shape {y.shape}, got {fold.shape}")
            if len(np.unique(fold)) < 2:
                raise ValueError(f"{self.name}: fold tasks need at least 2 distinct folds, got {np.unique(fold).tolist()}")
            self._check_labels(self.name, y)
            self.folds = (X, y, fold)
            if self.train_X is not None:
                self.train_X = _as_xy(f"{self.name} (training crops)", self.train_X, y)[0]
                if self.train_X.shape != X.shape:
                    raise ValueError(f"{self.name}: train_X must have the shape of X {X.shape}, got {self.train_X.shape}")
            if self.test_folds is not None:
                known = np.unique(fold).tolist()
                chosen = [int(f) for f in self.test_folds]
                bad = [f for f in chosen if f not in known]
                if bad or not chosen:
                    raise ValueError(f"{self.name}: folds {bad or chosen} are not in the data; its folds are {known}")
                self.test_folds = tuple(sorted(set(chosen)))

    def _check_labels(self, where: str, y: np.ndarray) -> None:
        if y.size and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(
                f"{where}: labels must lie in [0, {self.num_classes}), got range [{y.min()}, {y.max()}]"
            )

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        X = self.splits["train"][0] if self.splits is not None else self.folds[0]
        return int(X.shape[1])

    @property
    def is_fold_task(self) -> bool:
        return self.folds is not None

    @classmethod
    def from_splits(cls, train, valid, test, num_classes: int | None = None, name: str = "task") -> "TaskFeatures":
        """Build from (X, y) pairs; num_classes defaults to max label + 1."""
        if num_classes is None:
            num_classes = int(max(np.max(np.asarray(s[1])) for s in (train, valid, test))) + 1
        return cls(num_classes=num_classes, splits={"train": train, "valid": valid, "test": test}, name=name)

    @classmethod
    def from_folds(cls, X, y, fold, num_classes: int | None = None, name: str = "task") -> "TaskFeatures":
        """Build from features, labels and fold ids; num_classes defaults to max label + 1."""
        if num_classes is None:
            num_classes = int(np.max(np.asarray(y))) + 1
        return cls(num_classes=num_classes, folds=(X, y, fold), name=name)


def stratified_valid_split(y: np.ndarray, fraction: float = VALID_FRACTION, seed: int = 0) -> np.ndarray:
    """Boolean mask [n] of the stratified validation subset: ``stratified_valid_indices`` as a mask.

    Every class with at least 2 samples gets at least one validation sample and keeps at least one
    training sample; a class with a single sample stays in training. Deterministic by `seed`.
    """
    y = np.asarray(y)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    mask = np.zeros(y.shape[0], dtype=bool)
    mask[stratified_valid_indices(y, fraction, seed)] = True
    return mask


def fold_problems(task: TaskFeatures, valid_fraction: float = VALID_FRACTION, split_seed: int = 0):
    """Yield (fold_id, train (X, y), valid (X, y), test (X, y)) for each held-out fold, or one split problem.

    Split tasks yield a single problem with fold_id None. Fold tasks: ``task.test_folds`` (default all)
    in order; train/valid use the training crops (``task.train_X``) when given, test the test crops.
    """
    if task.splits is not None:
        yield None, task.splits["train"], task.splits["valid"], task.splits["test"]
        return
    X, y, fold = task.folds
    Xtrain = X if task.train_X is None else task.train_X
    for f in task.test_folds or np.unique(fold).tolist():
        tr, va, te = fold_split_indices(fold, y, f, valid_fraction, split_seed)
        yield int(f), (Xtrain[tr], y[tr]), (Xtrain[va], y[va]), (X[te], y[te])
