"""Reference implementations for parity tests (test-only packages, random weights, no downloads).

- torchvggish==0.2: ``torchvggish.torchvggish._vgg(postprocess=False)`` (no weight or PCA download).
- panns-inference (+ torchlibrosa, librosa): ``panns_inference.models.Cnn14``. The package ``__init__``
  downloads a labels CSV with wget at import time, so ``panns_inference.models`` is imported under an
  empty stand-in package object that never runs that ``__init__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch


def torchvggish_vgg(seed: int = 0):
    """torchvggish's VGG (pre-PCA) with random weights, eval mode."""
    pytest.importorskip("torchvggish", reason="parity test needs `pip install --no-deps torchvggish==0.2`")
    from torchvggish.torchvggish import _vgg

    torch.manual_seed(seed)
    return _vgg(postprocess=False).eval()


def panns_models_module():
    """``panns_inference.models`` imported without running ``panns_inference/__init__.py``."""
    pytest.importorskip("torchlibrosa", reason="parity test needs `pip install --no-deps torchlibrosa`")
    pytest.importorskip("librosa", reason="torchlibrosa needs librosa")
    if "panns_inference.models" in sys.modules:
        return sys.modules["panns_inference.models"]
    spec = importlib.util.find_spec("panns_inference")  # locates the package without executing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("parity test needs `pip install --no-deps panns-inference==0.1.1`")
    stand_in = types.ModuleType("panns_inference")
    stand_in.__path__ = list(spec.submodule_search_locations)
    previous = sys.modules.get("panns_inference")
    sys.modules["panns_inference"] = stand_in
    try:
        return importlib.import_module("panns_inference.models")
    finally:
        if previous is not None:
            sys.modules["panns_inference"] = previous


def panns_cnn14(sample_rate: int, seed: int = 0):
    """PANNs Cnn14 for ``sample_rate`` (16000 or 32000 presets) with random weights AND random BN
    statistics (so that eval-mode BatchNorm is really exercised), eval mode."""
    models = panns_models_module()
    presets = {16000: (512, 160, 50, 8000), 32000: (1024, 320, 50, 14000)}
    window, hop, fmin, fmax = presets[sample_rate]
    torch.manual_seed(seed)
    net = models.Cnn14(sample_rate, window, hop, 64, fmin, fmax, 527)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
                module.bias.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.3 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
        # PANNs' bn0 sees dB values around -50: give it matching statistics
        net.bn0.running_mean.add_(-40.0)
        net.bn0.running_var.mul_(300.0)
    return net.eval()


class Hooks:
    """Forward hooks on named modules that store a clone of each output (in-place ReLUs are safe)."""

    def __init__(self, modules: dict):
        self.out: dict = {}
        self.handles = [
            m.register_forward_hook(lambda mod, args, output, key=key: self.out.__setitem__(key, output.detach().clone()))
            for key, m in modules.items()
        ]

    def remove(self):
        for h in self.handles:
            h.remove()


def save_state(path: Path, state: dict, wrap: bool) -> Path:
    torch.save({"model": state} if wrap else state, path)
    return path
