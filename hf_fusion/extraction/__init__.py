"""One-pass all-layer feature extraction into a resumable on-disk cache (not part of Hub repos)."""

from ..data.decoding import AudioDecodeError
from ..data.fingerprints import dataset_fingerprint
from ..data.storage import default_cache_root
from .cache import FeatureCache
from .extract import extract_features
from .identity import model_key, weights_fingerprint
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
