"""Hub helpers (cards, publishing, offline cache layout). Never copied to a Hub repo."""

from .offline_cache import install_in_hf_cache

__all__ = ["install_in_hf_cache"]
