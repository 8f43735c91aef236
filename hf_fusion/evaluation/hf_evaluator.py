"""``evaluate``'s audio-classification evaluator, usable offline with transformers 5 on a ``datasets`` split.

Three gaps of the stock ``evaluate.evaluator("audio-classification")`` (evaluate 0.4.6) are closed here:

* its ``prepare_pipeline`` reads ``transformers.TFPreTrainedModel``, which transformers 5 no longer has, so any
  ``compute`` call fails: the pipeline is built (or taken as given) without it;
* a decoded ``datasets`` Audio value reaches transformers' pipeline as a torch tensor, which it refuses: an
  ``Audio`` input column is turned into numpy waveforms at the pipeline's sampling rate first;
* ``metric="accuracy"`` (and the default) loads its script from the Hub: the packaged accuracy metric is used,
  and predictions (label names) are mapped to label ids with the model's ``config.label2id`` by default.
"""

from __future__ import annotations

import os

import numpy as np
from evaluate.evaluator import AudioClassificationEvaluator

from .metrics import accuracy_metric

WAVEFORM_COLUMN = "_waveform"


class OfflineAudioClassificationEvaluator(AudioClassificationEvaluator):
    """``AudioClassificationEvaluator`` that works offline with transformers 5 (see the module docstring).

    ``compute(model_or_pipeline=DIR_or_pipeline, data=split, input_column="audio", label_column="label")``
    returns ``{"accuracy": fraction, ...timings}``.
    """

    def __init__(self, task="audio-classification", default_metric_name=None):
        super().__init__(task, default_metric_name=default_metric_name)

    def prepare_pipeline(self, model_or_pipeline, tokenizer=None, feature_extractor=None, device=None):
        from transformers import Pipeline, PreTrainedModel, pipeline

        if isinstance(model_or_pipeline, (str, os.PathLike, PreTrainedModel)):
            model = str(model_or_pipeline) if isinstance(model_or_pipeline, os.PathLike) else model_or_pipeline
            return pipeline(self.task, model=model, feature_extractor=feature_extractor,
                            device=device if device is not None else -1)
        if not isinstance(model_or_pipeline, Pipeline) or model_or_pipeline.task != self.task:
            raise ValueError(f"model_or_pipeline must be a model, a folder / repo id, or an {self.task!r} pipeline; "
                             f"got {type(model_or_pipeline).__name__}")
        return model_or_pipeline

    def prepare_metric(self, metric):
        if metric is None or metric == "accuracy":
            return accuracy_metric()
        return super().prepare_metric(metric)

    def compute(self, model_or_pipeline=None, data=None, *, input_column: str = "audio", label_column: str = "label",
                label_mapping=None, metric=None, feature_extractor=None, device=None, **kwargs):
        """As ``AudioClassificationEvaluator.compute``; ``label_mapping`` defaults to the model's ``label2id``
        and an ``Audio`` ``input_column`` is decoded to numpy at the model's sampling rate."""
        from datasets import Audio, Dataset

        if model_or_pipeline is None:
            raise ValueError("model_or_pipeline is required (a classifier folder, repo id, model or pipeline)")
        pipe = self.prepare_pipeline(model_or_pipeline, feature_extractor=feature_extractor, device=device)
        if label_mapping is None:
            label_mapping = dict(pipe.model.config.label2id)
        if isinstance(data, Dataset) and isinstance(data.features.get(input_column), Audio):
            rate = int(pipe.feature_extractor.sampling_rate)
            data = data.cast_column(input_column, Audio(sampling_rate=rate)).map(
                lambda ex: {WAVEFORM_COLUMN: _mono(ex[input_column]["array"])},
                remove_columns=[input_column], desc="decode audio")
            data, input_column = data.with_format("numpy", columns=[WAVEFORM_COLUMN], output_all_columns=True), \
                WAVEFORM_COLUMN
        return super().compute(model_or_pipeline=pipe, data=data, input_column=input_column, label_column=label_column,
                               label_mapping=label_mapping, metric=metric, **kwargs)


def _mono(array) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    return array.mean(axis=0) if array.ndim == 2 else array


def audio_classification_evaluator() -> OfflineAudioClassificationEvaluator:
    """The offline audio-classification evaluator (``evaluate.evaluator("audio-classification")``'s class, fixed)."""
    return OfflineAudioClassificationEvaluator()
