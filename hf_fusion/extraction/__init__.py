"""One-pass all-layer feature extraction into a resumable on-disk cache (not part of Hub repos)."""

from .cache import FeatureCache, default_cache_root
from .extract import AudioDecodeError, extract_features
from .identity import dataset_fingerprint, model_key, weights_fingerprint
from .integrity import CacheIntegrityError

__all__ = [
    "AudioDecodeError",
    "CacheIntegrityError",
    "FeatureCache",
    "dataset_fingerprint",
    "default_cache_root",
    "extract_features",
    "model_key",
    "weights_fingerprint",
]
