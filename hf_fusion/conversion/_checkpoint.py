"""Shared helpers of the checkpoint converters: safe loading and strict key matching."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor


def load_checkpoint(path: str | Path, trust_pickle: bool = False):
    """``torch.load`` a checkpoint on CPU with ``weights_only=True``.

    A file that pickles Python objects beyond tensors and containers (e.g. numpy scalars in a training
    script's extra fields) cannot load that way; it is refused, naming those objects, unless
    ``trust_pickle=True``, which unpickles it fully (``weights_only=False``): unpickling can run
    arbitrary code, so do it only for files from a source you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: the checkpoint file is empty (0 bytes); download it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            found = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # noqa: BLE001 - not a readable checkpoint at all
            found = None
        if not found:  # random bytes, a truncated file: no --trust-pickle can help
            raise ValueError(_corrupt(path, size, err)) from None
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        raise ValueError(
            f"{path}: cannot be loaded with torch.load(weights_only=True): besides tensors it pickles Python "
            f"objects ({', '.join(found)}). Unpickling those can execute arbitrary code. If you trust the file's "
            "source, pass --trust-pickle (trust_pickle=True) to load it anyway."
        ) from err
    except (EOFError, RuntimeError, ValueError, OSError, KeyError, IndexError) as err:
        raise ValueError(_corrupt(path, size, err)) from None


def _corrupt(path: Path, size: int, err: Exception) -> str:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"{path}: not a readable PyTorch checkpoint ({size} bytes; truncated, corrupt or another format: "
            f"{type(err).__name__}: {detail[:200]}); download it again")


def state_dict_of(obj, path: str | Path, wrapper_keys: Iterable[str] = ("model", "state_dict")) -> dict:
    """The tensor dict of a loaded checkpoint: the object itself or its ``wrapper_keys`` entry."""
    if isinstance(obj, Mapping):
        for key in wrapper_keys:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return dict(tensors)
    raise ValueError(
        f"{path}: expected a state dict (name -> tensor), or a dict holding one under {list(wrapper_keys)}; "
        f"got {type(obj).__name__}" + (f" with keys {sorted(map(str, obj))[:10]}" if isinstance(obj, Mapping) else "")
    )


def check_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path, what: str) -> None:
    """Strict match of ``state`` against the target's ``expected`` state: an error names every missing
    key, unexpected key and shape mismatch."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs {what} {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatches {shapes}")
    if problems:
        raise ValueError(f"{path}: not a {what} checkpoint: " + "; ".join(problems))


def finish_conversion(model, output_dir=None):
    """Put a converted model in eval mode, build its feature extractor and, with ``output_dir``,
    ``save_pretrained`` both into that folder. Returns ``(model, feature_extractor)``."""
    model.eval()
    feature_extractor = FusedAudioFeatureExtractor.from_fusion_config(model.config)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        feature_extractor.save_pretrained(output_dir)
    return model, feature_extractor
