"""The authors' AST protocol (docs/reference.md, "The authors' protocol") on a fused AST model: per-task input length and
per-task fbank normalisation.

- :func:`ast_frames_for_seconds`: the fbank frame count of a task's clip length (EVAR's ``input_tdim``).
- :func:`resize_ast`: re-target a fused AST model (and its extractor) to N frames; the positional
  embeddings are re-adapted from the checkpoint's grid (:mod:`hf_fusion.models.backbone_ast`).
- :func:`ast_task_normalization`: mean/std of the raw fbank over up to 5000 training clips, computed
  with EVAR's running statistic; :func:`set_ast_normalization` puts them (or AudioSet's) into the model's
  front end, so ``(x - mean) / (2 * std)`` uses them and the saved extractor records them.
- :func:`set_layer_norm_eps`: timm's LayerNorm eps 1e-6 (the original model) on a transformers copy (1e-12).
- :func:`prepare_ast_for_task`: all of it in one call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ..models.backbone_ast import AUDIOSET_MEAN, AUDIOSET_STD, TIMM_LAYER_NORM_EPS, ASTBackbone
from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor
from ..models.frontends import ast_num_frames

NORMALIZATIONS = ("task", "audioset")
#: EVAR: ``calculate_norm_stats(..., max_smaples=5000)`` on the training loader, batch size 128
TASK_STATS_MAX_CLIPS = 5000
TASK_STATS_BATCH_SIZE = 128
_FRAME, _HOP = 400, 160


def ast_frames_for_seconds(seconds: float, sampling_rate: int = 16000) -> int:
    """Kaldi fbank frames of a ``seconds``-long clip, as EVAR sizes AST (``unit_samples = int(sr * s)``):
    1.0 s -> 98, 2.5 -> 248, 4.0 -> 398, 5.8 -> 578, 8.2 -> 818, 10.24 -> 1022, 30 -> 2998."""
    if sampling_rate != 16000:
        raise ValueError(f"AST's fbank runs at 16000 Hz, got sampling_rate={sampling_rate}")
    samples = int(sampling_rate * float(seconds))
    if samples < _FRAME + 15 * _HOP:
        raise ValueError(f"a {seconds} s clip gives {max(ast_num_frames(samples), 0)} fbank frames; AST needs >= 16 "
                         f"(one 16-frame patch, {(_FRAME + 15 * _HOP) / sampling_rate} s)")
    return int(ast_num_frames(samples))


def _check_ast(model) -> None:
    backbone_class = getattr(model.config, "backbone_class", None)
    if not (isinstance(backbone_class, type) and issubclass(backbone_class, ASTBackbone)):
        raise ValueError(f"expected a fused AST model, got backbone {getattr(model.config, 'backbone', None)!r}")


def resize_ast(model, max_length: int):
    """Make a fused AST model take ``max_length`` fbank frames (in place) -> (model, matching extractor).

    Equivalent to ``AudioFusionModel.from_pretrained(path, max_length=max_length)`` for a loaded model.
    The extractor keeps the model's normalisation settings.
    """
    _check_ast(model)
    model.set_input_length(int(max_length))
    return model, FusedAudioFeatureExtractor.from_fusion_config(model.config)


def set_layer_norm_eps(model, eps: float = TIMM_LAYER_NORM_EPS):
    """Set every LayerNorm eps of a fused AST model (in place, recorded in its config) -> model."""
    _check_ast(model)
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


def ast_task_normalization(
    clips: Iterable,
    feature_extractor: FusedAudioFeatureExtractor,
    max_clips: int = TASK_STATS_MAX_CLIPS,
    batch_size: int = TASK_STATS_BATCH_SIZE,
    statistic: str = "evar",
) -> dict[str, Any]:
    """Task statistics of the raw (un-normalised) AST fbank -> ``{"mean", "std", "num_clips"}``.

    Args:
        clips: mono 16 kHz training clips (1-D arrays/tensors), already cut or zero-padded to the task's
            clip length, in loader order (EVAR draws them from its shuffled training loader, random crops).
            Each must cover the extractor's ``max_length`` frames (a shorter one is an error: the authors
            pad waveforms, not fbank frames).
        feature_extractor: the AST extractor of the model (its ``max_length`` / mel settings are used).
        max_clips: clips are taken batch by batch until at least this many were seen (EVAR: 5000, so
            the last batch may overshoot, e.g. 40 x 128 = 5120).
        statistic: ``"evar"`` reproduces EVAR's ``RunningStats`` exactly: per-batch means over all values
            of the batch [B, T, mel], averaged over batches by its running update, which gives batch 0 no
            weight once a second batch arrives (its update divides by the number of earlier batches); the
            variance is the same running average of each batch's mean squared deviation from the running
            mean after that batch; std = sqrt. ``"pooled"``: plain mean/std over every value of every clip.
    Computed in float64 (EVAR: float32; the difference is ~1e-6 relative).
    """
    if statistic not in ("evar", "pooled"):
        raise ValueError(f"statistic must be 'evar' or 'pooled', got {statistic!r}")
    if feature_extractor.frontend.get("name") != "ast_fbank":
        raise ValueError(f"expected an AST feature extractor (front end 'ast_fbank'), got {feature_extractor.frontend.get('name')!r}")
    if max_clips < 1 or batch_size < 1:
        raise ValueError(f"max_clips and batch_size must be >= 1, got {max_clips}, {batch_size}")
    raw = FusedAudioFeatureExtractor(backbone=ASTBackbone.name, frontend={**feature_extractor.frontend, "do_normalize": False})
    frames = int(raw.frontend["max_length"])
    need = _FRAME + _HOP * (frames - 1)
    count = 0
    batch_means, batch_sq = [], []  # per batch: mean, mean squared deviation from the running mean
    total, total_sq, n_values = 0.0, 0.0, 0
    for batch in _batches(clips, batch_size):
        for i, clip in enumerate(batch):
            if len(clip) < need:
                raise ValueError(
                    f"clip {count + i}: {len(clip)} samples, fewer than the {need} that {frames} fbank frames read; "
                    "cut or zero-pad the clips to the task's clip length first (hf_fusion.tasks.clips.crop_or_pad)"
                )
        x = raw(list(batch), sampling_rate=16000, return_tensors="pt")["input_values"].to(torch.float64)
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
        raise ValueError("ast_task_normalization: no clips given")
    if statistic == "evar":
        used = slice(0, 1) if len(batch_means) == 1 else slice(1, None)
        mean, var = float(np.mean(batch_means[used])), float(np.mean(batch_sq[used]))
    else:
        mean = total / n_values
        var = max(total_sq / n_values - mean**2, 0.0)
    if not var > 0:
        raise ValueError("ast_task_normalization: the clips' fbank has zero variance (silent clips?)")
    return {"mean": mean, "std": float(np.sqrt(var)), "num_clips": count}


def set_ast_normalization(model, normalization: str = "task", stats: dict[str, float] | None = None):
    """Set the fbank normalisation of a fused AST model's front end -> the matching extractor.

    ``"task"``: ``stats`` from :func:`ast_task_normalization` (``mean``, ``std``, optional ``num_clips``);
    ``"audioset"``: AudioSet's constants (-4.2677393, 4.5689974). Either way the input is
    ``(x - mean) / (2 * std)``; the choice is stored in ``config.frontend`` / the extractor config as
    ``normalization`` (+ ``normalization_clips``), so ``save_pretrained`` keeps the provenance.
    """
    _check_ast(model)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    frontend = {k: v for k, v in model.config.frontend.items() if k != "normalization_clips"}
    if normalization == "audioset":
        if stats is not None:
            raise ValueError("normalization='audioset' uses AudioSet's constants; pass stats= only with 'task'")
        frontend.update(mean=AUDIOSET_MEAN, std=AUDIOSET_STD, normalization="audioset")
    else:
        if not stats or "mean" not in stats or "std" not in stats:
            raise ValueError("normalization='task' needs stats={'mean': ..., 'std': ...} (see ast_task_normalization)")
        mean, std = float(stats["mean"]), float(stats["std"])
        if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
            raise ValueError(f"task statistics must be finite with std > 0, got mean={mean}, std={std}")
        frontend.update(mean=mean, std=std, normalization="task")
        if stats.get("num_clips") is not None:
            frontend["normalization_clips"] = int(stats["num_clips"])
    frontend["do_normalize"] = True
    model.config.frontend = frontend
    model.backbone.frontend = frontend
    return FusedAudioFeatureExtractor.from_fusion_config(model.config)


def prepare_ast_for_task(model, clip_seconds: float, train_clips: Iterable | None = None,
                         normalization: str = "task", max_clips: int = TASK_STATS_MAX_CLIPS,
                         layer_norm_eps: float | None = TIMM_LAYER_NORM_EPS):
    """The authors' protocol in one call -> (model, extractor, stats or None).

    Resizes ``model`` (in place) to the fbank frames of ``clip_seconds``, sets LayerNorm eps
    (default timm's 1e-6; ``None`` keeps the model's) and the normalisation: ``"task"`` computes it
    from ``train_clips`` (see :func:`ast_task_normalization`), ``"audioset"`` uses AudioSet's constants.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    model, fe = resize_ast(model, ast_frames_for_seconds(clip_seconds))
    if layer_norm_eps is not None:
        set_layer_norm_eps(model, layer_norm_eps)
    stats = None
    if normalization == "task":
        if train_clips is None:
            raise ValueError("normalization='task' needs train_clips (the task's training clips)")
        stats = ast_task_normalization(train_clips, fe, max_clips=max_clips)
    return model, set_ast_normalization(model, normalization, stats), stats
