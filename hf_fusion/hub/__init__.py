"""Hub helpers (cards, presets, publishing, offline cache layout). Never copied to a Hub repo.

The names load on first use, so ``hf_fusion.hub.presets`` (which the CLI parser reads) stays import-free.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "render_classifier_card": "classifier_card",
    "read_layerwise": "cards",
    "read_results": "cards",
    "read_selection": "cards",
    "render_model_card": "cards",
    "templates_dir": "cards",
    "install_in_hf_cache": "offline_cache",
    "FusionPreset": "presets",
    "build_preset": "presets",
    "convert_checkpoint": "presets",
    "get_preset": "presets",
    "PublishError": "publish",
    "assemble_repo_folder": "publish",
    "check_repo_folder": "publish",
    "publish_model": "publish",
    "push_folder": "publish",
    "upload_plan": "publish",
    "build_space": "space",
    "check_space_folder": "space",
    "leaderboard_data": "space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
