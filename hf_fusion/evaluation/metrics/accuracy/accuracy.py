"""Top-1 accuracy as a local `evaluate` metric, loadable offline by path.

`evaluate.load("accuracy")` fetches its script from the Hub; this module ships with hf-fusion so that
`evaluate.load("<package>/evaluation/metrics/accuracy")` works with HF_HUB_OFFLINE=1.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Top-1 accuracy: the fraction of predictions equal to the references, in [0, 1]."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class indices, shape [n].
    references (list of int): true class indices, shape [n].
    normalize (bool): if False, return the number of correct predictions instead of the fraction.
    sample_weight (list of float, optional): per-sample weights, shape [n].
Returns:
    accuracy (float): weighted fraction (or count) of correct predictions.
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    """Top-1 classification accuracy (no network access needed)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        pred = np.asarray(predictions, dtype=np.int64)
        ref = np.asarray(references, dtype=np.int64)
        if pred.shape != ref.shape:
            raise ValueError(f"accuracy: predictions {pred.shape} and references {ref.shape} differ in shape")
        correct = (pred == ref).astype(np.float64)
        if sample_weight is None:
            weight = np.ones_like(correct)
        else:
            weight = np.asarray(sample_weight, dtype=np.float64)
            if weight.shape != correct.shape:
                raise ValueError(f"accuracy: sample_weight {weight.shape} does not match predictions {pred.shape}")
        total = float((correct * weight).sum())
        if normalize:
            denom = float(weight.sum())
            total = total / denom if denom > 0 else float("nan")
        return {"accuracy": total}
