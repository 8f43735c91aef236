"""Cheaper layer-wise screening: approximate options for the layer-wise study only.

The final evaluation of a fused model always runs the full protocol. Options (measured in
docs/performance.md, "Screening"): ``seeds=k`` trains the first k of the protocol's seeds;
``halving_epochs=k`` is successive halving over the lr grid (every k epochs each feature set keeps
training the better half, rounded up, of its learning rates still training, ranked by mean best
validation accuracy; the rest stop with their best weights); ``max_train=N`` keeps at most N training
clips per problem, a class-stratified subsample drawn with ``seed`` (validation and test stay whole).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .probe import ProbeConfig, probe_config


@dataclass(frozen=True)
class Screening:
    """Approximate options of the layer-wise study (None = the full protocol for that part)."""

    seeds: int | None = None
    halving_epochs: int | None = None
    max_train: int | None = None
    seed: int = 0

    def __post_init__(self):
        for name in ("seeds", "halving_epochs", "max_train"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"Screening.{name} must be >= 1 (or None for the full protocol), got {value}")

    @property
    def active(self) -> bool:
        """True when any option departs from the full protocol."""
        return any(v is not None for v in (self.seeds, self.halving_epochs, self.max_train))

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for logs: which options are on."""
        parts = [f"{self.seeds} seed(s)" if self.seeds else "",
                 f"lr halving every {self.halving_epochs} epochs" if self.halving_epochs else "",
                 f"at most {self.max_train} training clips (stratified, seed {self.seed})" if self.max_train else ""]
        return ", ".join(p for p in parts if p) or "full protocol"

    def config(self, config: ProbeConfig | None) -> ProbeConfig:
        """The probe config of the screening probes: the first ``seeds`` seeds, the rest unchanged."""
        cfg = probe_config(config)
        if self.seeds is None or self.seeds >= len(cfg.seeds):
            return cfg
        return probe_config(cfg, seeds=cfg.seeds[:self.seeds])

    def train_rows(self, y: np.ndarray) -> np.ndarray | None:
        """Sorted indices of the kept training clips (labels ``y`` [n]), or None to keep them all.

        Each class keeps round(N * n_c / n) clips (at least one; largest remainders fill the total to N),
        drawn without replacement by a generator seeded with ``seed``."""
        y = np.asarray(y)
        n = len(y)
        if self.max_train is None or n <= self.max_train:
            return None
        classes, counts = np.unique(y, return_counts=True)
        quota = np.maximum(1, np.floor(self.max_train * counts / n)).astype(int)
        quota = np.minimum(quota, counts)
        left = self.max_train - int(quota.sum())
        if left > 0:  # largest remainders first, never above a class's size
            rem = self.max_train * counts / n - np.floor(self.max_train * counts / n)
            for k in np.argsort(-rem, kind="stable"):
                if left == 0:
                    break
                if quota[k] < counts[k]:
                    quota[k] += 1
                    left -= 1
        rng = np.random.default_rng(self.seed)
        keep = [rng.choice(np.flatnonzero(y == c), size=q, replace=False) for c, q in zip(classes, quota)]
        return np.sort(np.concatenate(keep))
