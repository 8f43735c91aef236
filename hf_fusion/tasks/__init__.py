"""Downstream tasks: registry, loaders (EVAR folder, audiofolder, Hub/save_to_disk), preparation of the
official downloads, folds, clip cropping, audio checks and the offline synthetic suite."""

from .clips import audio_array, clip_samples, crop_clips, crop_or_pad, crop_start, make_clip_fn
from .folds import available_folds, fold_splits, iter_folds, stratified_valid_indices
from .registry import (
    PAPER_TASK_SPECS,
    SYNTHETIC_TASKS,
    HubSource,
    TaskSpec,
    get_task,
    list_tasks,
)
from .downloads import DownloadLayoutError, Listing, read_download
from .prepare import IncompleteDownloadError, prepare_task
from .split_definitions import MissingSplitDefinition, resolve_split_files
from .sources import (
    is_saved_dataset,
    load_audiofolder_task,
    load_hub_task,
    load_synthetic_task,
    load_task,
    load_task_dir,
    normalize_task_data,
    read_metadata,
    read_task_info,
    sorted_label_names,
)
from .synthetic import build_synthetic_suite, build_synthetic_task, synth_clip
from ..data.columns import skipped_at_load
from ..data.decoding import AudioDecodeError
from .validate import UnreadableAudioError, check_audio

__all__ = [
    "PAPER_TASK_SPECS", "SYNTHETIC_TASKS", "HubSource", "TaskSpec", "get_task", "list_tasks",
    "load_task", "load_task_dir", "load_audiofolder_task", "load_hub_task", "normalize_task_data",
    "read_metadata", "read_task_info", "sorted_label_names", "is_saved_dataset",
    "prepare_task", "read_download", "resolve_split_files", "Listing", "IncompleteDownloadError",
    "DownloadLayoutError", "MissingSplitDefinition",
    "fold_splits", "iter_folds", "available_folds", "stratified_valid_indices",
    "crop_clips", "crop_or_pad", "crop_start", "clip_samples", "make_clip_fn", "audio_array",
    "check_audio", "AudioDecodeError", "UnreadableAudioError", "skipped_at_load",
    "build_synthetic_suite", "build_synthetic_task", "load_synthetic_task", "synth_clip",
]
