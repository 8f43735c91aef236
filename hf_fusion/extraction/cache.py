"""On-disk per-layer feature cache: layout, atomic writes and the read side (``FeatureCache``).

Under the cache root (``$HF_FUSION_CACHE`` or ``~/.cache/hf_fusion``):
``features/<model_key>/<task>/<split>-<data_key>/layers-.../`` holds ``plan.json``, the arrow shards
with their JSON markers, and ``meta.json`` (written last); ``clips/`` holds the tasks' crops and
``ast_stats/`` AST task statistics. Every file is written under a temporary name and moved into place
with ``os.replace``, so a killed run never leaves a half file. The full layout and what each key
digests: docs/design.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ..data.columns import ALL_SPLIT, SOURCE_ROW, TRAIN_CROPS_SPLIT
from ..data.storage import read_json
from ..models.backbone_base import layer_numbers
from .integrity import check_shard

META = "meta.json"
PLAN = "plan.json"
SHARDS = "shards"


def group_name(layers: Sequence[int]) -> str:
    return "layers-" + "-".join(str(int(layer)) for layer in sorted(layers))


def layer_column(layer: int) -> str:
    return f"layer_{int(layer)}"


def _fixed_list_to_numpy(chunked, dim: int) -> np.ndarray:
    """A fixed-length float list column (pyarrow ChunkedArray) -> float32 [n, dim] (respects slices)."""
    parts = [chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) for chunk in chunked.chunks]
    if not parts:
        return np.zeros((0, dim), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


class SplitCache:
    """One complete split group folder (its meta.json exists)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        meta = read_json(self.folder / META)
        if meta is None:
            raise FileNotFoundError(f"{self.folder}: no complete feature cache here (meta.json missing)")
        self.meta = meta

    @property
    def layers(self) -> list[int]:
        return [int(layer) for layer in self.meta["layers"]]

    def _shard_files(self) -> list[Path]:
        """The shard files, each verified against its marker's checksum (once per process while unchanged);
        a missing, truncated or changed one raises ``CacheIntegrityError`` naming it."""
        paths = []
        for name in self.meta["shards"]:
            path = self.folder / SHARDS / f"{name}.arrow"
            check_shard(path, read_json(self.folder / SHARDS / f"{name}.json"))
            paths.append(path)
        return paths

    def read(self, layers: Sequence[int], with_fold: bool = False):
        """(X float32 [n, sum D_l], y int64 [n][, fold int64 [n]]) streaming shard files (memory-mapped)."""
        dims = {int(k): int(v) for k, v in self.meta["layer_dims"].items()}
        xs, ys, folds = [], [], []
        for path in self._shard_files():
            table = Dataset.from_file(str(path)).data
            xs.append(np.concatenate([_fixed_list_to_numpy(table.column(layer_column(l)), dims[l]) for l in layers], axis=1))
            ys.append(table.column("label").to_numpy().astype(np.int64))
            if with_fold:
                folds.append(table.column("fold").to_numpy().astype(np.int64))
        width = sum(dims[l] for l in layers)
        X = np.concatenate(xs) if xs else np.zeros((0, width), np.float32)
        y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
        if X.shape[0] != self.meta["num_rows"]:
            raise RuntimeError(f"{self.folder}: read {X.shape[0]} rows, meta.json says {self.meta['num_rows']}")
        if with_fold:
            return X, y, (np.concatenate(folds) if folds else np.zeros(0, np.int64))
        return X, y

    def read_column(self, name: str) -> np.ndarray:
        """An integer column of every row (``row``: position in the split, ``fold``, ``source_row``) [n]."""
        parts = [Dataset.from_file(str(path)).data.column(name).to_numpy().astype(np.int64)
                 for path in self._shard_files()]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


class FeatureCache:
    """Per-layer Eq.1+Eq.3 vectors of one model on one task, every split, read from disk.

    ``load(layers, split)`` never runs a model: a single layer gives that layer's vector; several
    layers (or ``"fusion"``, the model's own ``fusion_layers``) give their concatenation, which is
    exactly the fused model's ``pooler_output`` because Eq.3's mean and max act per dimension
    (pooling a concatenation = concatenating the pooled parts).
    """

    def __init__(self, task_name: str, splits: dict[str, list[Path]], model_info: dict[str, Any],
                 skipped_at_load: dict[str, list[str]] | None = None):
        self.task_name = task_name
        self._groups = {split: [SplitCache(folder) for folder in folders] for split, folders in splits.items()}
        self.model_info = model_info
        self._load_skipped = {split: list(names) for split, names in (skipped_at_load or {}).items()}

    @property
    def splits(self) -> list[str]:
        return list(self._groups)

    @property
    def layers(self) -> list[int]:
        """Layers available in every split."""
        sets = [set().union(*(g.layers for g in groups)) for groups in self._groups.values()]
        return sorted(set.intersection(*sets)) if sets else []

    @property
    def fusion_layers(self) -> list[int]:
        return list(self.model_info["fusion_layers"])

    def _meta(self, split: str | None = None) -> dict:
        split = split or self.splits[0]
        return self._groups[split][0].meta

    @property
    def num_classes(self) -> int:
        return int(self._meta()["num_classes"])

    @property
    def label_names(self) -> list[str] | None:
        return self._meta().get("label_names")

    @property
    def layer_dims(self) -> dict[int, int]:
        dims = {}
        for groups in self._groups.values():
            for g in groups:
                dims.update({int(k): int(v) for k, v in g.meta["layer_dims"].items()})
        return dims

    def skipped(self, split: str) -> list[str]:
        """Files of ``split`` that could not be decoded and were skipped (``on_error="skip"``): those the
        task loader dropped while cropping (not in the cached data, so not in meta.json) and those
        extraction dropped (meta.json)."""
        out = list(self._load_skipped.get(self._check_split(split), []))
        for name in self._groups[split][0].meta.get("skipped", []):
            if name not in out:
                out.append(name)
        return out

    def folder(self, split: str) -> Path:
        return self._groups[self._check_split(split)][0].folder

    def _check_split(self, split: str) -> str:
        if split not in self._groups:
            raise KeyError(f"{self.task_name}: no split {split!r} in the feature cache; splits are {self.splits}")
        return split

    def resolve_layers(self, layers: int | str | Sequence[int]) -> list[int]:
        """``"fusion"`` / ``"all"`` / a layer number or list (checked: never ``"12"`` -> [1, 2])."""
        if isinstance(layers, str) and layers == "fusion":
            return self.fusion_layers
        if isinstance(layers, str) and layers == "all":
            return self.layers
        return layer_numbers(layers, f"{self.task_name}: layers")

    def _group_for(self, split: str, layers: list[int]) -> SplitCache:
        for g in self._groups[self._check_split(split)]:
            if set(layers) <= set(g.layers):
                return g
        have = sorted(set().union(*(g.layers for g in self._groups[split])))
        raise KeyError(
            f"{self.task_name}/{split}: layer(s) {sorted(set(layers) - set(have))} are not in the feature cache "
            f"(cached layers {have}); run extract_features(..., layers=...) for them"
        )

    def load(self, layers: int | str | Sequence[int], split: str) -> tuple[np.ndarray, np.ndarray]:
        """(X float32 [n, D], y int64 [n]) of one layer, a layer list (concatenated) or ``"fusion"``."""
        resolved = self.resolve_layers(layers)
        return self._group_for(split, resolved).read(resolved)

    def load_folds(self, layers, split: str = "all") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, fold) for fold tasks (the data had an integer ``fold`` column)."""
        resolved = self.resolve_layers(layers)
        group = self._group_for(split, resolved)
        if not group.meta.get("has_fold"):
            raise ValueError(f"{self.task_name}/{split}: the data had no 'fold' column")
        return group.read(resolved, with_fold=True)

    @property
    def is_fold_task(self) -> bool:
        """Fold data: a split ``all`` with a fold column (and optionally ``all_train_crops``)."""
        return ALL_SPLIT in self._groups and bool(self._meta(ALL_SPLIT).get("has_fold"))

    def task_features(self, layers) -> dict[str, Any]:
        """Keyword arguments of the evaluation's ``TaskFeatures`` for one feature set:
        ``{"name", "num_classes", "splits": {"train": (X, y), "valid": ..., "test": ...}}`` or, for fold
        data, ``{"name", "num_classes", "folds": (X, y, fold), "train_X": X of the training crops or None}``
        (``train_X`` differs from X only in the rows of clips longer than the clip length)."""
        name = f"{self.task_name}"
        if not self.is_fold_task:
            return {"name": name, "num_classes": self.num_classes, "splits": {s: self.load(layers, s) for s in self.splits}}
        X, y, fold = self.load_folds(layers, ALL_SPLIT)
        train_X = None
        if TRAIN_CROPS_SPLIT in self._groups:
            resolved = self.resolve_layers(layers)
            Xr, _ = self.load(resolved, TRAIN_CROPS_SPLIT)
            source = self._group_for(TRAIN_CROPS_SPLIT, resolved).read_column(SOURCE_ROW)
            rows = self._group_for(ALL_SPLIT, resolved).read_column("row")
            position = {int(r): i for i, r in enumerate(rows)}
            keep = [k for k, r in enumerate(source) if int(r) in position]  # a skipped file is skipped in both
            train_X = X.copy()
            train_X[[position[int(source[k])] for k in keep]] = Xr[keep]
        return {"name": name, "num_classes": self.num_classes, "folds": (X, y, fold), "train_X": train_X}

    def __repr__(self) -> str:
        return f"FeatureCache(task={self.task_name!r}, splits={self.splits}, layers={self.layers})"
