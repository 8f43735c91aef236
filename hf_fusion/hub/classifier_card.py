"""Model cards of audio classifiers (``AudioFusionForAudioClassification``): the exported probe run as model-index.

The card's one ``EvalResult`` is the exported run's test accuracy (a fraction in [0, 1]) on its task's test
split (fold tasks: the held-out fold); the text names the task, seed, learning rate and accuracy. Template:
``hub_cards/classifier.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .cards import (PARTIAL_SUFFIX, TASK_DISPLAY_NAMES, backbone_license, card_context, hub_dataset, looks_like_hub_id,
                    percent_text, tidy_card_text)
from .cards import templates_dir

TEMPLATE = "classifier.md"
METRIC_NAME = "Accuracy (exported linear probe)"
REQUIRED_PROBE_KEYS = ("task", "lr", "seed", "test_accuracy", "num_test_clips")


def classifier_probe(config) -> dict[str, Any]:
    """``config.probe`` of a classifier, checked (a ValueError names what is missing)."""
    probe = getattr(config, "probe", None)
    if not isinstance(probe, dict):
        raise ValueError("config.json has no 'probe' record: not a classifier built by hf-fusion "
                         "(hf-fusion evaluate --save-classifier DIR)")
    missing = [key for key in REQUIRED_PROBE_KEYS if key not in probe]
    if missing:
        raise ValueError(f"config.json's 'probe' record lacks {missing}")
    accuracy = probe["test_accuracy"]
    if not isinstance(accuracy, (int, float)) or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"config.json's probe test_accuracy={accuracy!r} is not a fraction in [0, 1]")
    return probe


def classifier_model_name(config) -> str:
    """Default repo name: ``<fusion name>-<task>`` (e.g. ``crepe-fusion-3-6-synth_pitch``)."""
    return f"{config.fusion_name}-{classifier_probe(config)['task']}"


def classifier_eval_result(config) -> EvalResult:
    probe = classifier_probe(config)
    task = probe["task"]
    source = hub_dataset(task)
    fold = probe.get("fold")
    return EvalResult(
        task_type="audio-classification",
        task_name="Audio Classification",
        dataset_type=source.dataset_id if source else task,
        dataset_name=TASK_DISPLAY_NAMES.get(task, task) + (PARTIAL_SUFFIX if probe.get("partial") else ""),
        dataset_config=source.config if source else None,
        dataset_split="test" if fold is None else f"fold {fold}",
        metric_type="accuracy",
        metric_name=METRIC_NAME + f" (seed {probe['seed']}, lr {probe['lr']:g})",
        metric_value=round(float(probe["test_accuracy"]), 6),
    )


def build_classifier_card_data(config, repo_id: str, *, license: str | None = None,
                               source_checkpoint: str | None = None) -> ModelCardData:
    """YAML metadata: pipeline_tag audio-classification, the model-index of the exported run."""
    probe = classifier_probe(config)
    source = hub_dataset(probe["task"])
    kwargs: dict[str, Any] = dict(
        model_name=repo_id.split("/")[-1],
        library_name="transformers",
        pipeline_tag="audio-classification",
        license=license or backbone_license(config.backbone),
        tags=["audio", "hf-fusion", "audio-fusion", config.backbone, "audio-classification", "arxiv:2205.08138"],
        eval_results=[classifier_eval_result(config)],
        metrics=["accuracy"],
    )
    if source:
        kwargs["datasets"] = [source.dataset_id]
    if looks_like_hub_id(source_checkpoint):
        kwargs["base_model"] = source_checkpoint
    return ModelCardData(**kwargs)


def render_classifier_card(config, repo_id: str, *, license: str | None = None, source_checkpoint: str | None = None,
                           template_dir: str | Path | None = None) -> ModelCard:
    """The README.md card of a classifier (see the module docstring)."""
    import jinja2

    probe = classifier_probe(config)
    card_data = build_classifier_card_data(config, repo_id, license=license, source_checkpoint=source_checkpoint)
    context = card_context(config, repo_id, source_checkpoint=source_checkpoint)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    per_seed = probe.get("test_accuracy_per_seed") or []
    clip = probe.get("clip_samples")
    context.update({
        "probe": {"fold": None, "lrs": [probe["lr"]], "seeds": [probe["seed"]], "best_epoch": "-", "partial": None,
                  "feature_set": config.fusion_name, **probe},
        "task_display": TASK_DISPLAY_NAMES.get(probe["task"], probe["task"]),
        "num_labels": config.num_labels,
        "labels_text": ", ".join(f"`{name}`" for name in labels),
        "test_accuracy_pct": percent_text(probe["test_accuracy"]),
        "valid_accuracy_pct": percent_text(probe.get("valid_accuracy")),
        "seed_accuracies": ", ".join(percent_text(a) for a in per_seed) + " %" if per_seed else "-",
        "mean_pct": (percent_text(probe.get("test_accuracy_mean"), probe.get("test_accuracy_std")) + " %"
                     if probe.get("test_accuracy_mean") is not None else "-"),
        "seed_choice_text": ("the seed with the best validation accuracy at that lr"
                             if str(probe.get("seed_choice", "")).startswith("best") else "chosen by hand"),
        "clip_text": (f"{clip} samples ({clip / config.sampling_rate:g} s)" if clip else "clips as given"),
        "crop_text": (f"cuts every clip to its first {clip / config.sampling_rate:g} s ({clip} samples) or zero-pads it "
                      "to that length, as the evaluation's test crops" if clip else "takes clips as given"),
    })
    folder = Path(template_dir) if template_dir is not None else templates_dir()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    variables = {**card_data.to_dict(), **context, "card_data": card_data.to_yaml()}
    return ModelCard(tidy_card_text(env.get_template(TEMPLATE).render(**variables)))


def classifier_summary(config, repo_id: str) -> dict[str, Any]:
    """The ``results.json`` next to a classifier's card (fractions in [0, 1])."""
    probe = classifier_probe(config)
    return {
        "model": repo_id.split("/")[-1],
        "kind": "audio-classification",
        "backbone": config.backbone,
        "fusion_layers": list(config.fusion_layers),
        "metric": "accuracy",
        "unit": "fraction",
        "results": [{"task": probe["task"], "accuracy": probe["test_accuracy"], "std": None,
                     "seed": probe["seed"], "lr": probe["lr"], "fold": probe.get("fold")}],
        "probe": probe,
    }
