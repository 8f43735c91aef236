"""A trained linear probe -> an ``AudioFusionForAudioClassification`` (a Hub-ready audio classifier).

Which run is exported: the probe's chosen learning rate (best mean validation accuracy over seeds and
folds, as reported) and, at that lr, the seed with the best validation accuracy (ties: the first seed);
the test sets take no part in the choice. Fold tasks train one classifier per held-out fold: one is
exported per call (``fold=``; required when several folds were held out).

The classifier's feature extractor crops every clip as the evaluation's test crops (from sample 0 to the
task's clip length, zero-padded at the end), so ``pipeline("audio-classification")`` on the test clips
reproduces the exported run's test predictions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

PROBE_FILE = "probe.json"


def classifier_from_probe(model, result, labels: Sequence[str], *, fold: int | None = None, seed: int | None = None,
                          clip_samples: int | None = None, feature_set: str | None = None):
    """Build the classifier of one probe run.

    Args:
        model: the ``AudioFusionModel`` the probed features came from (for AST, the task's model:
            ``workflow.task_model``, sized and normalised for the task), its fused embedding
            (``pooler_output``, ``config.hidden_size`` dims) being the probed feature set.
        result: a ``ProbeResult`` from ``linear_probe(..., keep_weights=True)``.
        labels: the class names in label-index order (the task's ``ClassLabel`` names).
        fold: the held-out fold of the run, for fold tasks (see :meth:`ProbeResult.export_run`).
        seed: the seed of the run (default: the best-validation seed).
        clip_samples: the task's clip length in samples (the feature extractor's test crop); None = none.
        feature_set: the name the probe was reported under (default: the model's fusion name).
    Returns:
        ``AudioFusionForAudioClassification`` in eval mode; ``config.probe`` describes the run
        (task, lr, seed, fold, its test and validation accuracy, the mean/std over seeds, clip length).
    """
    from ..models.modeling_classification import AudioFusionForAudioClassification

    labels = [str(name) for name in labels]
    if len(labels) != result.num_classes:
        raise ValueError(f"{result.task}: {len(labels)} label names given for a {result.num_classes}-class probe")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{result.task}: label names must be distinct, got {labels}")
    if result.dim != model.config.hidden_size:
        raise ValueError(
            f"{result.task}: the probe was trained on {result.dim}-d features but {model.config.fusion_name}'s fused "
            f"embedding has {model.config.hidden_size} dims; pass the probe of this model's fusion layers "
            f"{list(model.config.fusion_layers)}")
    if clip_samples is not None and (isinstance(clip_samples, bool) or int(clip_samples) != clip_samples
                                     or clip_samples < 1):
        raise ValueError(f"clip_samples must be a positive number of samples, got {clip_samples!r}")
    run = result.export_run(fold=fold, seed=seed)
    config = copy.deepcopy(model.config)
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    config.probe = {
        "task": result.task,
        "feature_set": feature_set or model.config.fusion_name,
        "lr": run.lr,
        "seed": run.seed,
        "fold": run.fold,
        "test_accuracy": run.test_accuracy,
        "valid_accuracy": run.valid_accuracy,
        "num_test_clips": run.n_test,
        "best_epoch": run.best_epoch,
        "seed_choice": "best validation accuracy at the chosen lr" if seed is None else "given",
        "seeds": list(result.seeds),
        # the reported numbers of the whole probe (all seeds; fold tasks: this fold's seeds)
        "test_accuracy_per_seed": (list(result.per_fold[str(run.fold)]) if run.fold is not None
                                   else list(result.per_seed)),
        "test_accuracy_mean": result.accuracy,
        "test_accuracy_std": result.std,
        "lrs": list(result.lrs),
        "clip_samples": None if clip_samples is None else int(clip_samples),
        "clip_seconds": None if clip_samples is None else int(clip_samples) / model.config.sampling_rate,
        "protocol": {k: v for k, v in result.config.items() if k not in ("device",)},
    }
    classifier = AudioFusionForAudioClassification(config)
    classifier.fusion.load_state_dict(model.state_dict())
    classifier.set_probe(run.weight, run.bias, run.mean, run.std)
    return classifier.eval()


def classifier_feature_extractor(config):
    """The ``FusedAudioFeatureExtractor`` of a classifier config: the fused model's front end plus the
    test crop ``config.probe["clip_samples"]``."""
    from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor

    fe = FusedAudioFeatureExtractor.from_fusion_config(config)
    fe.clip_samples = (getattr(config, "probe", None) or {}).get("clip_samples")
    return fe


def save_classifier(classifier, folder: str | Path) -> Path:
    """Save the classifier (weights, config with ``auto_map``, remote code), its feature extractor and a
    ``probe.json`` (= ``config.probe``) into ``folder``; ``pipeline("audio-classification", model=folder)``
    then loads it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--save-classifier {folder}: a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "config.json").is_file():
        raise ValueError(f"--save-classifier {folder}: folder is not empty and holds no saved model; choose a new one")
    classifier.save_pretrained(folder)
    classifier_feature_extractor(classifier.config).save_pretrained(folder)
    (folder / PROBE_FILE).write_text(json.dumps(classifier.config.probe, indent=1, default=float) + "\n")
    return folder
