"""Hub helpers (cards, presets, publishing, offline cache layout). Never copied to a Hub repo."""

from .cards import read_layerwise, read_results, read_selection, render_model_card, templates_dir
from .offline_cache import install_in_hf_cache
from .presets import PRESETS, FusionPreset, build_preset, convert_checkpoint, get_preset
from .publish import (
    PublishError,
    assemble_repo_folder,
    build_push_parser,
    check_repo_folder,
    publish_model,
    push_folder,
    run_push,
    upload_plan,
)

__all__ = [
    "FusionPreset",
    "PRESETS",
    "PublishError",
    "assemble_repo_folder",
    "build_preset",
    "build_push_parser",
    "check_repo_folder",
    "convert_checkpoint",
    "get_preset",
    "install_in_hf_cache",
    "publish_model",
    "push_folder",
    "read_layerwise",
    "read_results",
    "read_selection",
    "render_model_card",
    "run_push",
    "templates_dir",
    "upload_plan",
]
