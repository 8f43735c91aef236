"""hf-fusion: fused multilayer audio representations (Niizumi et al., 2022) for Hugging Face.

``import hf_fusion`` registers the config, model and feature extractor with transformers'
AutoConfig / AutoModel / AutoFeatureExtractor, and marks them for remote code on ``save_pretrained``.
"""

from ._torchaudio_guard import hide_broken_torchaudio

hide_broken_torchaudio()  # must run before transformers is imported

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel  # noqa: E402

from .configuration_fusion import AudioFusionConfig, fusion_model_name  # noqa: E402
from .feature_extraction_fusion import FusedAudioFeatureExtractor  # noqa: E402
from .fusion import align_layer, concat_layers, fuse, temporal_pool  # noqa: E402
from .modeling_fusion import AudioFusionModel, AudioFusionOutput  # noqa: E402

__version__ = "0.1.0"

AutoConfig.register(AudioFusionConfig.model_type, AudioFusionConfig, exist_ok=True)
AutoModel.register(AudioFusionConfig, AudioFusionModel, exist_ok=True)
AutoFeatureExtractor.register(AudioFusionConfig, FusedAudioFeatureExtractor, exist_ok=True)
# save_pretrained then writes auto_map and copies the flat modules for trust_remote_code loading.
AudioFusionConfig.register_for_auto_class()
AudioFusionModel.register_for_auto_class("AutoModel")
FusedAudioFeatureExtractor.register_for_auto_class()

__all__ = [
    "AudioFusionConfig",
    "AudioFusionModel",
    "AudioFusionOutput",
    "FusedAudioFeatureExtractor",
    "align_layer",
    "concat_layers",
    "fuse",
    "temporal_pool",
    "fusion_model_name",
]
