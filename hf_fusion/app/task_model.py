"""The model one task is extracted with: the authors' per-task protocol for ``resizable_input`` backbones.

A backbone with a resizable input (AST) is re-targeted to the task's clip length and normalised with the
task's own input statistics (mean / std of the raw front end over up to 5000 training clips, EVAR's
running statistic), optionally with another LayerNorm eps; any other backbone is used as it is.
:func:`prepare_task_model` does all of it; the CLI, ``scripts/reproduce_paper.py`` and the HEAR entry
point go through it or its parts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from ..models.backbones import get_backbone_class
from ..models.feature_extraction_fusion import FRONTEND_INFO_KEYS, FusedAudioFeatureExtractor
from ..protocol import INPUT_NORMALIZATIONS, TASK_STATS_BATCH_SIZE, TASK_STATS_MAX_CLIPS

#: the provenance of a front end's normalisation (with the backbone's mean and std keys: never raw settings)
NORMALIZATION_INFO_KEYS = tuple(key for key in FRONTEND_INFO_KEYS if key != "name")


def raw_frontend_settings(backbone_class, frontend: Mapping[str, Any]) -> dict[str, Any]:
    """A resizable front end's settings without its normalisation (statistics and their provenance)."""
    dropped = (backbone_class.mean_key, backbone_class.std_key, *NORMALIZATION_INFO_KEYS)
    return {k: v for k, v in frontend.items() if k not in dropped}


def _resizable(backbone_class):
    """The class, checked to be a ``ResizableInput`` backbone (whose front-end keys this module reads)."""
    if not backbone_class.resizable_input:
        raise ValueError(f"backbone {backbone_class.name!r} has no resizable input with a mean/std normalisation")
    return backbone_class


class TaskModel(NamedTuple):
    """A model prepared for one task, its matching feature extractor, and the task statistics used (or None)."""

    model: Any
    feature_extractor: FusedAudioFeatureExtractor
    stats: dict[str, Any] | None


def input_frames_for_seconds(config, seconds: float) -> int:
    """Input frames of a fused model's front end for a ``seconds``-long clip (AST: 1.0 s -> 98 fbank frames)."""
    return config.backbone_class.input_frames_for_seconds(seconds, dict(config.frontend))


def resize_input(model, frames: int):
    """Make a ``resizable_input`` fused model take ``frames`` input frames (in place) -> (model, matching
    extractor); the same as ``AudioFusionModel.from_pretrained(path, max_length=frames)`` (which refuses any
    other backbone)."""
    model.set_input_length(int(frames))
    return model, FusedAudioFeatureExtractor.from_fusion_config(model.config)


def set_layer_norm_eps(model, eps: float):
    """Set every LayerNorm eps of a fused model (in place, recorded in its config) -> model."""
    if not float(eps) > 0:
        raise ValueError(f"layer_norm_eps must be > 0, got {eps!r}")
    model.backbone.set_layer_norm_eps(float(eps))
    model.config.backbone_config = {**model.config.backbone_config, "layer_norm_eps": float(eps)}
    model.backbone.backbone_config = model.config.backbone_config
    return model


def _batches(clips: Iterable, batch_size: int):
    batch = []
    for clip in clips:
        batch.append(clip)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def input_statistics(clips: Iterable, feature_extractor: FusedAudioFeatureExtractor,
                     max_clips: int = TASK_STATS_MAX_CLIPS, batch_size: int = TASK_STATS_BATCH_SIZE,
                     statistic: str = "evar") -> dict[str, Any]:
    """Task statistics of the raw (un-normalised) front end -> ``{"mean", "std", "num_clips"}``.

    ``clips``: training clips (1-D arrays at the extractor's rate) already cut or zero-padded to the task's
    length, each long enough for the extractor's ``max_length`` frames; taken batch by batch until at least
    ``max_clips`` were seen (EVAR: 5000, so the last batch may overshoot). ``statistic="evar"`` reproduces
    EVAR's ``RunningStats`` (batch 0 loses its weight once a second batch arrives), ``"pooled"`` is the
    plain mean / std of every value. Computed in float64.
    """
    if statistic not in ("evar", "pooled"):
        raise ValueError(f"statistic must be 'evar' or 'pooled', got {statistic!r}")
    frontend = dict(feature_extractor.frontend)
    backbone_class = _resizable(get_backbone_class(feature_extractor.backbone))
    keys = (backbone_class.mean_key, backbone_class.std_key, backbone_class.length_key)
    if not all(key in frontend for key in keys):
        raise ValueError(f"front end {frontend.get('name')!r} lacks the settings {list(keys)}")
    if max_clips < 1 or batch_size < 1:
        raise ValueError(f"max_clips and batch_size must be >= 1, got {max_clips}, {batch_size}")
    raw = FusedAudioFeatureExtractor(backbone=backbone_class.name, frontend={**frontend, "do_normalize": False})
    frames = int(raw.frontend[backbone_class.length_key])
    rate = int(raw.sampling_rate)
    count = 0
    batch_means, batch_sq = [], []  # per batch: mean, mean squared deviation from the running mean
    total, total_sq, n_values = 0.0, 0.0, 0
    for batch in _batches(clips, batch_size):
        for i, clip in enumerate(batch):
            if len(clip) < 1 or backbone_class.input_frames_for_samples(raw.frontend, len(clip)) < frames:
                raise ValueError(
                    f"clip {count + i}: {len(clip)} samples give fewer than the model's {frames} input frames; cut "
                    "or zero-pad the clips to the task's clip length first (hf_fusion.tasks.clips.crop_or_pad)")
        x = raw(list(batch), sampling_rate=rate, return_tensors="pt")["input_values"].to(torch.float64)
        mean = float(x.mean())
        if statistic == "evar":
            batch_means.append(mean)
            running = batch_means[0] if len(batch_means) == 1 else float(np.mean(batch_means[1:]))
            batch_sq.append(float((x - running).square_().mean()))
        else:
            total += float(x.sum())
            total_sq += float((x**2).sum())
            n_values += x.numel()
        count += len(batch)
        if count >= max_clips:
            break
    if count == 0:
        raise ValueError("input_statistics: no clips given")
    if statistic == "evar":
        used = slice(0, 1) if len(batch_means) == 1 else slice(1, None)
        mean, var = float(np.mean(batch_means[used])), float(np.mean(batch_sq[used]))
    else:
        mean = total / n_values
        var = max(total_sq / n_values - mean**2, 0.0)
    if not var > 0:
        raise ValueError("input_statistics: the clips' input has zero variance (silent clips?)")
    return {"mean": mean, "std": float(np.sqrt(var)), "num_clips": count}


def set_input_normalization(model, normalization: str = "task", stats: Mapping[str, float] | None = None):
    """Set the input normalisation of a fused model's front end -> the matching extractor.

    ``"task"``: ``stats`` (``mean``, ``std``, optional ``num_clips`` and ``seed`` of the clips' order, e.g.
    from :func:`input_statistics`, or published statistics computed elsewhere); a name of the backbone's ``input_normalizations`` (AST:
    ``"audioset"``) uses its constants. The input becomes ``(x - mean) / (2 * std)``; the choice is stored
    in ``config.frontend`` as ``normalization`` (+ ``normalization_clips``, ``normalization_seed``), so
    ``save_pretrained`` keeps it.
    """
    backbone_class = _resizable(model.config.backbone_class)
    named = backbone_class.input_normalizations
    if normalization != "task" and normalization not in named:
        raise ValueError(f"normalization must be 'task' or one of {sorted(named)}, got {normalization!r}")
    frontend = raw_frontend_settings(backbone_class, model.config.frontend)  # normalisation set again below
    if normalization != "task":
        if stats is not None:
            raise ValueError(f"normalization={normalization!r} uses fixed constants; pass stats= only with 'task'")
        mean, std = named[normalization]
        frontend.update({backbone_class.mean_key: mean, backbone_class.std_key: std, "normalization": normalization})
    else:
        if not stats or "mean" not in stats or "std" not in stats:
            raise ValueError("normalization='task' needs stats={'mean': ..., 'std': ...} (see input_statistics)")
        mean, std = float(stats["mean"]), float(stats["std"])
        if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
            raise ValueError(f"task statistics must be finite with std > 0, got mean={mean}, std={std}")
        frontend.update({backbone_class.mean_key: mean, backbone_class.std_key: std, "normalization": "task"})
        if stats.get("num_clips") is not None:
            frontend["normalization_clips"] = int(stats["num_clips"])
        if stats.get("seed") is not None:
            frontend["normalization_seed"] = int(stats["seed"])
    frontend["do_normalize"] = True
    model.config.frontend = frontend
    model.backbone.frontend = frontend
    return FusedAudioFeatureExtractor.from_fusion_config(model.config)


def prepare_task_model(model, clip_seconds: float, *, input_frames: str | int = "task",
                       normalization: str = "task",
                       statistics: Callable[[FusedAudioFeatureExtractor], Mapping] | Mapping | None = None,
                       layer_norm_eps: float | None = None, in_place: bool = False) -> TaskModel:
    """The model a task of ``clip_seconds``-long clips is extracted with -> :class:`TaskModel`.

    A backbone without ``resizable_input`` is returned as it is (with its extractor). Otherwise a copy
    (``in_place=False``) is sized for ``input_frames`` ("task": the clip length, EVAR's ``input_tdim``;
    or a frame count), given ``layer_norm_eps`` (None keeps the model's) and the ``normalization`` of
    ``hf_fusion.protocol.INPUT_NORMALIZATIONS``: "task" takes ``statistics`` (a dict, or a function of the
    resized raw extractor, e.g. ``lambda fe: input_statistics(train_clips, fe)``), "model" keeps the
    saved one, a named one (AST: "audioset") its constants. The settings land in the config, so the
    feature cache keys them.
    """
    if normalization not in INPUT_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {INPUT_NORMALIZATIONS}, got {normalization!r}")
    if not model.config.backbone_class.resizable_input:
        return TaskModel(model, FusedAudioFeatureExtractor.from_fusion_config(model.config), None)
    model = model if in_place else copy.deepcopy(model)
    frames = input_frames_for_seconds(model.config, clip_seconds) if input_frames == "task" else int(input_frames)
    model, fe = resize_input(model, frames)
    if layer_norm_eps is not None:
        set_layer_norm_eps(model, layer_norm_eps)
    stats = None
    if normalization == "task":
        if statistics is None:
            raise ValueError("normalization='task' needs statistics (a dict or a function of the extractor)")
        stats = dict(statistics(fe) if callable(statistics) else statistics)
    if normalization != "model":
        fe = set_input_normalization(model, normalization, stats)
    return TaskModel(model.eval(), fe, stats)
