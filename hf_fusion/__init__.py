"""hf-fusion: fused multilayer audio representations (Niizumi et al., 2022) for Hugging Face.

``import hf_fusion`` registers the config, model, audio classifier, feature extractor and the
``feature-extraction`` pipeline with transformers (AutoConfig / AutoModel /
AutoModelForAudioClassification / AutoFeatureExtractor / ``pipeline``) and marks them for remote code
on ``save_pretrained``. It imports neither torch nor transformers: the public names load on first
use, and the registration runs as soon as transformers is imported (see docs/design.md).
"""

from __future__ import annotations

import importlib
import sys
import warnings

__version__ = "0.1.0"

#: public name -> submodule that defines it (loaded on first access)
_EXPORTS = {
    "AudioFusionConfig": "models.configuration_fusion",
    "AudioFusionModel": "models.modeling_fusion",
    "AudioFusionOutput": "models.modeling_fusion",
    "AudioFusionForAudioClassification": "models.modeling_classification",
    "FusedAudioFeatureExtractor": "models.feature_extraction_fusion",
    "FusedAudioFeaturePipeline": "models.pipeline_fusion",
    "align_layer": "models.fusion",
    "concat_layers": "models.fusion",
    "fuse": "models.fusion",
    "temporal_pool": "models.fusion",
    "fusion_model_name": "models.naming",
}

__all__ = sorted(_EXPORTS)

_state = {"registered": False, "depth": 0}


def register_auto_classes() -> None:
    """Register the fused classes with transformers (idempotent; imports torch and transformers)."""
    if _state["registered"]:
        return
    _state["registered"] = True
    try:
        from ._torchaudio_guard import hide_broken_torchaudio

        hide_broken_torchaudio()  # a no-op once transformers has looked (the hook ran it before that)
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

        from .models.configuration_fusion import AudioFusionConfig
        from .models.feature_extraction_fusion import FusedAudioFeatureExtractor
        from .models.modeling_classification import AudioFusionForAudioClassification
        from .models.modeling_fusion import AudioFusionModel
        from .models.pipeline_fusion import register_pipeline

        AutoConfig.register(AudioFusionConfig.model_type, AudioFusionConfig, exist_ok=True)
        AutoModel.register(AudioFusionConfig, AudioFusionModel, exist_ok=True)
        AutoFeatureExtractor.register(AudioFusionConfig, FusedAudioFeatureExtractor, exist_ok=True)
        AutoModelForAudioClassification.register(AudioFusionConfig, AudioFusionForAudioClassification, exist_ok=True)
        # save_pretrained then writes auto_map and copies the flat modules for trust_remote_code loading.
        AudioFusionConfig.register_for_auto_class()
        AudioFusionModel.register_for_auto_class("AutoModel")
        AudioFusionForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
        FusedAudioFeatureExtractor.register_for_auto_class()
        register_pipeline()
    except BaseException:
        _state["registered"] = False
        raise
    _remove_hook()


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    _maybe_register()
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


# ---------------------------------------------------------------- registration when transformers arrives


def _maybe_register() -> None:
    if _state["registered"] or _state["depth"] or sys.modules.get("transformers") is None:
        return
    try:
        register_auto_classes()
    except Exception as err:  # never break the user's `import transformers`; the Auto classes will say so
        warnings.warn(f"hf_fusion could not register its classes with transformers: {err!r}", RuntimeWarning,
                      stacklevel=2)


class _RegisterAfterImport:
    """Meta-path finder: hides a broken torchaudio before ``transformers`` runs, and registers the fused
    classes once ``transformers`` is imported and no hf_fusion module is half-way through its own import
    (so registration never imports a partially initialised hf_fusion module)."""

    def find_spec(self, name, path=None, target=None):
        if name != "transformers" and not name.startswith(__name__ + "."):
            return None
        spec = None
        for finder in sys.meta_path:  # the normal lookup, minus this finder
            find = getattr(finder, "find_spec", None) if finder is not self else None
            if find is not None and (spec := find(name, path, target)) is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        if name == "transformers":
            from ._torchaudio_guard import hide_broken_torchaudio

            hide_broken_torchaudio()  # must run before transformers is imported
        original = spec.loader.exec_module

        def exec_module(module, _original=original):
            _state["depth"] += 1
            try:
                _original(module)
            finally:
                _state["depth"] -= 1
            _maybe_register()

        spec.loader.exec_module = exec_module  # this spec's own loader instance only
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_RegisterAfterImport"]


if sys.modules.get("transformers") is not None:
    register_auto_classes()
elif not any(type(f).__name__ == "_RegisterAfterImport" for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterImport())
