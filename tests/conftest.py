"""Shared fixtures: tiny random-initialised models and synthetic audio (no downloads)."""

import numpy as np
import pytest
import torch

from hf_fusion.catalog.ast import TINY_AST  # noqa: F401  (the tiny AST of the backbone's entry)


@pytest.fixture
def tiny_ast_config():
    import hf_fusion

    return hf_fusion.AudioFusionConfig(backbone="ast", backbone_config=dict(TINY_AST), fusion_layers=[5, 12])


@pytest.fixture
def tiny_ast_model(tiny_ast_config):
    import hf_fusion

    torch.manual_seed(0)
    return hf_fusion.AudioFusionModel(tiny_ast_config).eval()


def make_clips(lengths_s=(1.0, 0.7, 1.3), sr=16000, seed=0):
    """Real-looking mono clips: a harmonic tone, a chirp with noise, amplitude-modulated noise."""
    rng = np.random.default_rng(seed)
    clips = []
    for i, seconds in enumerate(lengths_s):
        t = np.arange(int(seconds * sr)) / sr
        kind = i % 3
        if kind == 0:
            f0 = rng.uniform(150, 600)
            x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
        elif kind == 1:
            x = np.sin(2 * np.pi * (200 * t + 900 * t**2)) + 0.05 * rng.standard_normal(t.size)
        else:
            x = rng.standard_normal(t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
        clips.append((0.3 * x / np.abs(x).max()).astype(np.float32))
    return clips


@pytest.fixture(autouse=True, scope="session")
def _session_cache_root(tmp_path_factory):
    """Cropped clips and features of tests go to a session folder, never ~/.cache/hf_fusion (unless set)."""
    import os

    if os.environ.get("HF_FUSION_CACHE"):
        yield
        return
    os.environ["HF_FUSION_CACHE"] = str(tmp_path_factory.mktemp("hf_fusion_cache"))
    try:
        yield
    finally:
        os.environ.pop("HF_FUSION_CACHE", None)


@pytest.fixture(scope="session")
def documented_demo(tmp_path_factory):
    """`hf-fusion demo` as documented (default size and protocol, real CREPE-tiny weights), run once per
    session through the console command in a fresh working folder with its own feature cache.

    Returns {"work": folder it ran in, "cache": its HF_FUSION_CACHE, "env": the environment, "demo": the
    CompletedProcess}; `hf-fusion` resolves to this checkout's CLI. The README walkthrough and the
    demo-choice tests start from it (one extraction of the demo's features per session)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    work = tmp_path_factory.mktemp("clone")  # stands for the clone's root: nothing else is in it
    tools = tmp_path_factory.mktemp("bin")
    cache = tmp_path_factory.mktemp("demo_cache")
    shim = tools / "hf-fusion"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hf_fusion.app.cli "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "HF_FUSION_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    demo = subprocess.run(["bash", "-euo", "pipefail", "-c", "hf-fusion demo"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert demo.returncode == 0, demo.stderr[-3000:]
    return {"work": work, "cache": cache, "env": env, "demo": demo}
