"""Hide a torchaudio that is installed but cannot be imported, before transformers looks for it.

PyPI's torchaudio wheels need CUDA torch libraries; with a CPU-only torch ``import torchaudio`` raises,
and transformers (which imports it whenever it is installed) then fails to import its audio modules.
hf-fusion never needs torchaudio, so a broken one is marked absent (``sys.modules[...] = None`` makes
``importlib.util.find_spec`` report it missing) with a warning, instead of breaking the package.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings


def hide_broken_torchaudio() -> bool:
    """Return True when a broken torchaudio was found and hidden."""
    if "torchaudio" in sys.modules or importlib.util.find_spec("torchaudio") is None:
        return False
    try:
        import torchaudio  # noqa: F401
    except Exception as err:  # OSError (missing CUDA libs), ImportError, RuntimeError (ABI mismatch)
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
        sys.modules["torchaudio"] = None
        warnings.warn(
            f"torchaudio is installed but fails to import ({type(err).__name__}: {err}); hf-fusion does not "
            "need it and hides it from transformers. Uninstall it or install a build matching your torch.",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    return False
