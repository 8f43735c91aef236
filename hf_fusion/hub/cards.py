"""Model cards for fused models: evaluation files -> ``ModelCardData`` (model-index) + a rendered README.md.

Templates live in the repository's top-level ``hub_cards/`` folder (one per backbone family, each extending
``base.md``); an installed wheel carries the same files as ``hf_fusion/hub/templates/``.

Units: ``results.csv`` / ``layerwise.csv`` accuracies are fractions in [0, 1]. The card's ``model-index``
stores them unchanged (fractions, like ``evaluate``'s accuracy); the human-readable tables show percent.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..protocol import PAPER_TASK_NAMES

#: template of backbones that are not registered (each entry names its own, ``card_template``)
GENERIC_TEMPLATE = "hf_encoder.md"
#: task id (the ``task`` column) -> dataset name shown on the Hub.
TASK_DISPLAY_NAMES = PAPER_TASK_NAMES
METRIC_NAME = "Accuracy (linear probe)"
TEMPLATES_ENV = "HF_FUSION_CARD_TEMPLATES"
#: appended to a task's name in the model-index when it was evaluated on an incomplete download
PARTIAL_SUFFIX = " (partial download)"


def templates_dir() -> Path:
    """Folder of the card templates: ``$HF_FUSION_CARD_TEMPLATES``, else the checkout's ``hub_cards/``
    (source / editable install), else the copy packaged as ``hf_fusion/hub/templates/`` (wheel)."""
    candidates = []
    if os.environ.get(TEMPLATES_ENV):
        candidates.append(Path(os.environ[TEMPLATES_ENV]))
    here = Path(__file__).resolve().parent
    candidates += [here.parents[1] / "hub_cards", here / "templates"]
    for folder in candidates:
        if (folder / "base.md").is_file():
            return folder
    raise FileNotFoundError(
        "card templates not found; looked for base.md in " + ", ".join(str(c) for c in candidates)
        + " (a wheel must ship hub_cards/ as hf_fusion/hub/templates, see pyproject.toml)"
    )


def _entry(backbone: str):
    from ..catalog import entries

    return entries().get(backbone)


def template_for_backbone(backbone: str) -> str:
    """File name of the family template used for ``backbone`` (its entry's ``card_template``)."""
    entry = _entry(backbone)
    return entry.card_template if entry is not None else GENERIC_TEMPLATE


def backbone_license(backbone: str) -> str | None:
    """License id of the original weights (the backbone entry's ``license``)."""
    entry = _entry(backbone)
    return None if entry is None else entry.license


def paper_layers(backbone: str) -> list[int] | None:
    """The layers the paper fused for ``backbone`` (Table III), None where the paper did not use it."""
    entry = _entry(backbone)
    return None if entry is None or entry.paper_layers is None else list(entry.paper_layers)


# ---------------------------------------------------------------- evaluation files


def _read_rows(source: str | Path | Iterable[Mapping[str, Any]] | None, required: tuple[str, ...], what: str):
    """CSV path or in-memory rows -> list of dicts (str keys), checking the columns."""
    if source is None:
        return []
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{what} file {path} does not exist")
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = list(reader)
        origin = str(path)
    else:
        rows = [dict(r) for r in source]
        columns = sorted({k for r in rows for k in r})
        origin = f"in-memory {what} rows"
    missing = [c for c in required if c not in columns]
    if rows and missing:
        raise ValueError(f"{origin}: missing column(s) {missing}; expected columns {list(required)} (+ optional std)")
    return [(origin, i, r) for i, r in enumerate(rows)]


def _fraction(value: Any, origin: str, index: int, column: str, allow_empty: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if allow_empty:
            return None
        raise ValueError(f"{origin}, row {index + 1}: empty {column!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{origin}, row {index + 1}: {column}={value!r} is not a number") from None
    if math.isnan(number):
        return None if allow_empty else _raise(f"{origin}, row {index + 1}: {column} is NaN")
    if not 0.0 <= number <= 1.0:
        raise ValueError(
            f"{origin}, row {index + 1}: {column}={number} is outside [0, 1]; accuracies are fractions "
            "(write 0.942, not 94.2)"
        )
    return number


def _raise(message: str):
    raise ValueError(message)


def _filter_model(entries, model_names: list[str], what: str, explicit: bool):
    """Keep rows whose ``model`` column names this model (rows without the column all count)."""
    with_model = [e for e in entries if e[2].get("model") not in (None, "")]
    if not with_model:
        return entries
    kept = [e for e in entries if e[2].get("model") in model_names]
    if not kept:
        available = sorted({e[2]["model"] for e in with_model})
        hint = "" if explicit else "; pick one with results_model= / --results-model"
        raise ValueError(f"{entries[0][0]}: no {what} rows for model {model_names} (models in the file: {available}){hint}")
    return kept


def read_results(source, model_names: str | list[str] | None = None) -> list[dict[str, Any]]:
    """``results.csv`` (``model,task,accuracy,std``) or rows -> [{task, accuracy, std, partial}] for one model.

    ``model_names``: the ``model`` values that denote this model (rows of other models are dropped); a file
    without a ``model`` column is taken whole. One row per task; accuracy/std are fractions in [0, 1];
    ``partial`` (optional column): the gaps of a task prepared from an incomplete download, else None.
    """
    names = [model_names] if isinstance(model_names, str) else list(model_names or [])
    entries = _read_rows(source, ("task", "accuracy"), "results")
    entries = [e for e in entries if str(e[2].get("fold") or "").strip() in ("", "mean")]  # per-fold rows: not here
    if names:
        entries = _filter_model(entries, names, "results", explicit=len(names) == 1)
    out, seen = [], set()
    for origin, i, row in entries:
        task = str(row["task"]).strip()
        if task in seen:
            raise ValueError(f"{origin}, row {i + 1}: task {task!r} appears twice for the same model")
        seen.add(task)
        out.append(
            {
                "task": task,
                "accuracy": _fraction(row["accuracy"], origin, i, "accuracy"),
                "std": _fraction(row.get("std"), origin, i, "std", allow_empty=True),
                "partial": str(row.get("partial") or "").strip() or None,
            }
        )
    return out


def read_layerwise(source, model_names: str | list[str] | None = None) -> list[dict[str, Any]]:
    """``layerwise.csv`` (``layer,task,accuracy,std``) or rows -> [{layer, task, accuracy, std}].

    Only the averaged rows are read: a fold task's per-fold rows (``fold`` = a fold number) are skipped."""
    names = [model_names] if isinstance(model_names, str) else list(model_names or [])
    entries = _read_rows(source, ("layer", "task", "accuracy"), "layer-wise")
    entries = [e for e in entries if str(e[2].get("fold") or "").strip() in ("", "mean")]
    from ..evaluation.study import BASELINE_LAYERS  # the weighted-sum row is a baseline, not a layer

    entries = [e for e in entries if str(e[2]["layer"]).strip() not in BASELINE_LAYERS]
    if names:
        entries = _filter_model(entries, names, "layer-wise", explicit=len(names) == 1)
    out = []
    for origin, i, row in entries:
        try:
            layer = int(float(row["layer"]))
        except (TypeError, ValueError):
            raise ValueError(f"{origin}, row {i + 1}: layer={row['layer']!r} is not a layer number") from None
        out.append(
            {
                "layer": layer,
                "task": str(row["task"]).strip(),
                "accuracy": _fraction(row["accuracy"], origin, i, "accuracy"),
                "std": _fraction(row.get("std"), origin, i, "std", allow_empty=True),
            }
        )
    return out


def read_selection(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Layer-selection JSON (``{"M": 5, "L": 12, ...}`` + per-group averages) or a dict -> dict."""
    if source is None:
        return None
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"selection file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    else:
        data = dict(source)
    if not isinstance(data, dict):
        raise ValueError(f"selection must be a JSON object with keys 'M' and 'L', got {type(data).__name__}")
    return data


def _selected_layers(selection: Mapping[str, Any]) -> tuple[int | None, int | None]:
    keys = {k.lower(): k for k in selection}
    middle = selection.get(keys.get("m", keys.get("middle", "")))
    late = selection.get(keys.get("l", keys.get("late", "")))
    return (int(middle) if middle is not None else None, int(late) if late is not None else None)


# ---------------------------------------------------------------- card


def hub_dataset(task: str):
    """The task registry's :class:`~hf_fusion.tasks.registry.HubSource` of ``task`` (esc50 -> ashraq/esc50),
    or None where the registry names no Hub dataset (then the cards keep the short task name; no id is made up)."""
    from hf_fusion.tasks.registry import get_task  # import-free module (dataclasses only)

    try:
        return get_task(task).hub
    except KeyError:
        return None


def eval_results_for(model_name: str, results: list[dict[str, Any]]) -> list[EvalResult]:
    """One ``EvalResult`` per task: audio-classification, accuracy as a fraction, test split; the dataset is
    the registry's Hub dataset id (and config) where it has one, else the short task name. A task evaluated
    on an incomplete download keeps its number, its dataset name marked with :data:`PARTIAL_SUFFIX`."""
    sources = {r["task"]: hub_dataset(r["task"]) for r in results}
    return [
        EvalResult(
            task_type="audio-classification",
            task_name="Audio Classification",
            dataset_type=sources[r["task"]].dataset_id if sources[r["task"]] else r["task"],
            dataset_name=TASK_DISPLAY_NAMES.get(r["task"], r["task"]) + (PARTIAL_SUFFIX if r.get("partial") else ""),
            dataset_config=sources[r["task"]].config if sources[r["task"]] else None,
            dataset_split="test",
            metric_type="accuracy",
            metric_name=METRIC_NAME,
            metric_value=round(float(r["accuracy"]), 6),
        )
        for r in results
    ]


def percent_text(accuracy: float | None, std: float | None = None) -> str:
    if accuracy is None:
        return "-"
    text = f"{100 * accuracy:.1f}"
    return text + (f" ± {100 * std:.1f}" if std is not None else "")


def looks_like_hub_id(checkpoint: str | None) -> bool:
    if not checkpoint or Path(checkpoint).exists() or checkpoint.count("/") != 1:
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(checkpoint)
    except HFValidationError:
        return False
    return True


def _flatten(prefix: str, value: Any, out: list[dict[str, str]]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, float):
        out.append({"key": prefix, "value": percent_text(value) if 0.0 <= value <= 1.0 else f"{value:.4g}"})
    else:
        out.append({"key": prefix, "value": ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)})


def _setting(value: Any) -> Any:
    """A front-end setting as shown in the card's table (nested extractor configs by their type)."""
    if isinstance(value, Mapping):
        if "feature_extractor_type" in value:
            return f"{value['feature_extractor_type']} (see preprocessor_config.json)"
        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= 80 else "(see preprocessor_config.json)"
    return value


_KNOWN_SELECTION_KEYS = {"m", "l", "middle", "late", "groups", "group_source", "layers", "middle_average",
                         "late_average", "best_layer_per_task", "m_equals_l", "rule", "selected_on",
                         "late_not_deeper", "warning", "rule_name", "pairs", "pairs_cost"}


def _listing(items) -> str:
    return ", ".join(f"`{x}`" for x in items) if items else "none"


def selection_context(selection: Mapping[str, Any], layers: list[int]) -> dict[str, Any]:
    """The card's "Why these layers" section from a selection JSON (``LayerChoice.to_json`` or a plain
    ``{"M": .., "L": ..}``): prose naming the rule, the accuracy read and the task groups, a per-layer
    table of the group averages with M and L marked, the pairs rule's candidates, and any further scalar
    quantities as a two-column table (never raw JSON)."""
    middle, late = _selected_layers(selection)
    out: dict[str, Any] = {"selection_layer_rows": [], "selection_pair_rows": [], "selection_rows": []}
    if middle is None or late is None:
        out["selection_text"] = "Chosen from the layer-wise study; the selection summary follows."
    else:
        if sorted({middle, late}) != sorted(set(layers)):
            raise ValueError(
                f"selection chose M={middle}, L={late} but the model fuses layers {layers}; "
                "pass the selection file of this model (or none)"
            )
        read = {"valid": "the validation accuracies of the per-layer linear probes (the test sets were not read)",
                "test": "the test accuracies of the per-layer linear probes, as in the paper (the test sets "
                        "influenced the choice)"}
        text = [f"M = {middle} (middle layer) and L = {late} (late layer) were chosen from the layer-wise study, "
                f"reading {read.get(str(selection.get('selected_on')), 'the per-layer linear-probe accuracies')}."]
        groups = selection.get("groups") or {}
        if groups:
            source = {"paper": "the paper's groups", "user": "groups given by hand",
                      "derived": "groups derived from the study (a task is late when its best layer lies in the "
                                 "deeper half of the span of all tasks' best layers)",
                      "derived-single": "every task peaks at the same layer, so both groups are all tasks"}
            text.append(f"L is the best layer on average over the late tasks ({_listing(groups.get('late'))}) and M "
                        f"the best over the middle tasks ({_listing(groups.get('middle'))}); "
                        f"{source.get(str(selection.get('group_source')), 'task groups as recorded')}.")
        if selection.get("m_equals_l"):
            text.append("The middle tasks' best layer was L itself, so M is their second-best layer.")
        if selection.get("pairs"):
            cost = selection.get("pairs_cost") or {}
            text.append(f"The pairs rule then probed {len(selection['pairs'])} fused (M, L) candidates and kept the "
                        "best mean accuracy over all tasks" + (f" ({cost['probes']} probes)" if "probes" in cost else "")
                        + ".")
        if selection.get("warning"):
            text.append(f"Note: {selection['warning']}")
        out["selection_text"] = " ".join(text)
    mid_avg, late_avg = selection.get("middle_average") or {}, selection.get("late_average") or {}
    best = selection.get("best_layer_per_task") or {}
    for layer in sorted({*mid_avg, *late_avg}, key=lambda x: (len(str(x)), str(x))):
        mark = " ".join(name for name, chosen in (("M", middle), ("L", late)) if str(chosen) == str(layer))
        tasks = [t for t, b in best.items() if str(b) == str(layer)]
        out["selection_layer_rows"].append({
            "layer": f"**{layer} ({mark})**" if mark else str(layer),
            "middle": percent_text(mid_avg.get(layer)), "late": percent_text(late_avg.get(layer)),
            "best_for": ", ".join(tasks) if tasks else "",
        })
    for pair, score in sorted((selection.get("pairs") or {}).items(), key=lambda kv: -kv[1]):
        chosen = pair == "-".join(str(x) for x in sorted(x for x in (middle, late) if x is not None))
        out["selection_pair_rows"].append({"pair": f"**{pair}** (chosen)" if chosen else pair, "score": percent_text(score)})
    for key, value in selection.items():
        if key.lower() not in _KNOWN_SELECTION_KEYS:
            _flatten(key, value, out["selection_rows"])
    return out


def card_context(
    config,
    repo_id: str,
    *,
    results: list[dict[str, Any]] | None = None,
    layerwise: list[dict[str, Any]] | None = None,
    selection: dict[str, Any] | None = None,
    results_model: str | None = None,
    source_checkpoint: str | None = None,
) -> dict[str, Any]:
    """Template variables for one fused model (an ``AudioFusionConfig``) and its evaluation data."""
    layers = list(config.fusion_layers)
    dims = config.layer_dims
    tappable = list(config.backbone_class.tappable_layers(config.backbone_config))
    results = results or []
    layerwise = layerwise or []
    ctx: dict[str, Any] = {
        "model_name": repo_id.split("/")[-1],
        "fusion_name": config.fusion_name,
        "repo_id": repo_id,
        "backbone": config.backbone,
        "backbone_config": dict(config.backbone_config),
        "backbone_license": backbone_license(config.backbone),
        "fusion_layers": layers,
        "paper_layers": paper_layers(config.backbone),
        "layers_text": "layers " + ", ".join(map(str, layers[:-1])) + f" and {layers[-1]}"
        if len(layers) > 1
        else f"layer {layers[0]}",
        "num_layers": max(tappable),
        "hidden_size": config.hidden_size,
        "fused_layer_rows": [{"layer": layer, "dims": dims[layer]} for layer in layers],
        "pooling_text": {
            "mean+max": "mean over time plus max over time, summed",
            "mean": "mean over time",
            "max": "max over time",
        }[config.pooling],
        "sampling_rate": config.sampling_rate,
        "frontend": dict(config.frontend),
        "frontend_name": config.frontend.get("name"),
        "frontend_settings": [(k, _setting(v)) for k, v in config.frontend.items() if k != "name"],
        "source_checkpoint": source_checkpoint,
        "results_model": results_model,
        "results_rows": [
            {"dataset_name": TASK_DISPLAY_NAMES.get(r["task"], r["task"]) + (" †" if r.get("partial") else ""),
             "accuracy": percent_text(r["accuracy"], r["std"])}
            for r in results
        ],
        "partial_rows": [(TASK_DISPLAY_NAMES.get(r["task"], r["task"]), r["partial"]) for r in results
                         if r.get("partial")],
        "results_average": percent_text(sum(r["accuracy"] for r in results) / len(results)) if results else None,
        "hub_dataset_tasks": [(TASK_DISPLAY_NAMES.get(r["task"], r["task"]), hub_dataset(r["task"]).dataset_id)
                              for r in results if hub_dataset(r["task"])],
        "short_name_tasks": [r["task"] for r in results if not hub_dataset(r["task"])],
        "selection": selection,
        "selection_text": None,
        "selection_layer_rows": [],
        "selection_pair_rows": [],
        "selection_rows": [],
        "layerwise_tasks": [],
        "layerwise_rows": [],
    }
    if selection:
        ctx.update(selection_context(selection, layers))
    if layerwise:
        tasks = list(dict.fromkeys(r["task"] for r in layerwise))
        by_layer: dict[int, dict[str, dict[str, Any]]] = {}
        for r in layerwise:
            by_layer.setdefault(r["layer"], {})[r["task"]] = r
        table = []
        for layer in sorted(by_layer):
            cells = by_layer[layer]
            accs = [cells[t]["accuracy"] for t in tasks if t in cells]
            row = {
                "layer": f"**{layer}**" if layer in layers else str(layer),
                "cells": [percent_text(cells[t]["accuracy"], cells[t]["std"]) if t in cells else "-" for t in tasks],
                "average": percent_text(sum(accs) / len(accs)),
            }
            table.append(row)
        ctx["layerwise_tasks"] = [TASK_DISPLAY_NAMES.get(t, t) for t in tasks]
        ctx["layerwise_rows"] = table
    return ctx


def build_card_data(
    config,
    repo_id: str,
    results: list[dict[str, Any]] | None = None,
    *,
    license: str | None = None,
    source_checkpoint: str | None = None,
) -> ModelCardData:
    """The card's YAML metadata: model-index (``eval_results``), library, tags, license, base model."""
    model_name = repo_id.split("/")[-1]
    kwargs: dict[str, Any] = dict(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="feature-extraction",
        license=license or backbone_license(config.backbone),
        tags=["audio", "hf-fusion", "audio-fusion", config.backbone, "feature-extraction", "arxiv:2205.08138"],
    )
    if results:
        kwargs["eval_results"] = eval_results_for(model_name, results)
        kwargs["metrics"] = ["accuracy"]
        datasets = sorted({source.dataset_id for r in results if (source := hub_dataset(r["task"]))})
        if datasets:  # only real Hub ids; tasks without one stay out of `datasets`
            kwargs["datasets"] = datasets
    if looks_like_hub_id(source_checkpoint):
        kwargs["base_model"] = source_checkpoint
    return ModelCardData(**kwargs)


#: the keyword inputs of a fused model's card (render_model_card's, assemble_repo_folder's ``card_options``)
CARD_OPTIONS = ("results", "layerwise", "selection", "results_model", "source_checkpoint", "license")


def render_model_card(
    config,
    repo_id: str,
    *,
    results=None,
    layerwise=None,
    selection=None,
    results_model: str | None = None,
    source_checkpoint: str | None = None,
    license: str | None = None,
    template_dir: str | Path | None = None,
) -> ModelCard:
    """Render the README.md card of a fused model.

    ``results`` / ``layerwise``: CSV paths or rows (see :func:`read_results`); rows of ``results.csv`` whose
    ``model`` is ``results_model`` (default: the repo name or the fusion name) become model-index entries.
    ``selection``: JSON path or dict with ``M``/``L``. ``template_dir`` overrides :func:`templates_dir`.

    ``ModelCard.from_template`` renders a loader-less ``jinja2.Template``, which cannot resolve
    ``{% extends %}``; this does the same rendering (card data as YAML + its fields as variables) with a
    file-system loader so family templates can extend ``base.md``.
    """
    import jinja2

    names = [results_model] if results_model else [repo_id.split("/")[-1], config.fusion_name, repo_id]
    result_rows = read_results(results, names) if results is not None else []
    layer_rows = read_layerwise(layerwise, names) if layerwise is not None else []
    selection = read_selection(selection)
    card_data = build_card_data(config, repo_id, result_rows, license=license, source_checkpoint=source_checkpoint)
    context = card_context(
        config,
        repo_id,
        results=result_rows,
        layerwise=layer_rows,
        selection=selection,
        results_model=results_model,
        source_checkpoint=source_checkpoint,
    )
    folder = Path(template_dir) if template_dir is not None else templates_dir()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    variables = {**card_data.to_dict(), **context, "card_data": card_data.to_yaml()}
    content = env.get_template(template_for_backbone(config.backbone)).render(**variables)
    return ModelCard(tidy_card_text(content))


def tidy_card_text(markdown: str) -> str:
    """Collapse runs of blank lines left by empty template blocks."""
    lines, blank = [], 0
    for line in markdown.splitlines():
        blank = blank + 1 if not line.strip() else 0
        if blank <= 1:
            lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"


def results_summary(
    config, repo_id: str, results=None, layerwise=None, selection=None, results_model: str | None = None
) -> dict[str, Any]:
    """The ``results.json`` written next to the card (fractions in [0, 1], like the model-index)."""
    names = [results_model] if results_model else [repo_id.split("/")[-1], config.fusion_name, repo_id]
    rows = read_results(results, names) if results is not None else []
    return {
        "model": repo_id.split("/")[-1],
        "backbone": config.backbone,
        "fusion_layers": list(config.fusion_layers),
        "metric": "accuracy",
        "unit": "fraction",
        "results": rows,
        "average": sum(r["accuracy"] for r in rows) / len(rows) if rows else None,
        "layerwise": read_layerwise(layerwise, names) if layerwise is not None else [],
        "selection": read_selection(selection),
    }
