"""Offline `evaluate` metrics shipped with hf-fusion (loaded by path, no Hub access)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

METRICS_DIR = Path(__file__).resolve().parent
ACCURACY_PATH = METRICS_DIR / "accuracy"


@functools.lru_cache(maxsize=1)
def accuracy_metric():
    """The packaged top-1 accuracy as an `evaluate.EvaluationModule` (works with HF_HUB_OFFLINE=1)."""
    import evaluate

    return evaluate.load(str(ACCURACY_PATH), keep_in_memory=True)


def compute_accuracy(predictions, references) -> float:
    """Top-1 accuracy in [0, 1] via the packaged `evaluate` metric; inputs are int class indices [n]."""
    pred, ref = np.asarray(predictions), np.asarray(references)
    if pred.shape != ref.shape or pred.ndim != 1:
        raise ValueError(f"compute_accuracy: expected two 1-D arrays of equal length, got {pred.shape} and {ref.shape}")
    return float(accuracy_metric().compute(predictions=pred, references=ref)["accuracy"])
