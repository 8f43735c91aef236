"""Max relative difference of a clip's embedding alone vs. in one padded batch of mixed-length clips.

Uses the tiny models and clips of tests/test_batch_independence.py; prints one line per backbone for
the model call (fused ``pooler_output``) and for ``extract_features`` (every layer's cached vector).
Run from the repository root: ``PYTHONPATH=$PWD python scripts/measure_batch_independence.py``.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path.cwd()))
from tests.test_batch_independence import (  # noqa: E402
    BACKBONES, ORDER, SECONDS, SR, audio_dataset, build, relative_difference,
)
from tests.conftest import make_clips  # noqa: E402


def measure(name, clips, folder):
    from hf_fusion.extraction import extract_features

    model, fe = build(name, folder / "model")
    layers = list(model.config.backbone_class.tappable_layers(model.config.backbone_config))
    with torch.no_grad():
        alone = [model(**fe(c, sampling_rate=SR, return_tensors="pt")).pooler_output[0].numpy() for c in clips]
        alone_layers = {}
        for c in clips:
            x = fe(c, sampling_rate=SR, return_tensors="pt")
            mask = x.get("attention_mask")  # alone: all ones, except Whisper (its fixed chunk pads every clip)
            frame_mask = None if mask is None else model.frame_mask(mask)
            for layer, z in model.tap(x["input_values"], "all", attention_mask=mask).items():
                alone_layers.setdefault(layer, []).append(model.pool([z], mask=frame_mask)[1][0].numpy())
        batch = fe(clips, sampling_rate=SR, return_tensors="pt")
        out = model(**batch).pooler_output.numpy()
    call = max(relative_difference(out[i], alone[i]) for i in range(len(clips)))
    (folder / "audio").mkdir()
    cache = extract_features(model, fe, audio_dataset(folder / "audio", clips), "mixed", layers=layers,
                             batch_size=len(clips), cache_dir=folder / "cache", progress=False)
    extraction = max(
        relative_difference(X[i], alone_layers[layer][i])
        for layer in layers for X in [cache.load(layer, "all")[0]] for i in range(len(clips))
    )
    return call, extraction


def main():
    clips = [make_clips(SECONDS, seed=5)[i] for i in ORDER]
    print(f"{'backbone':16s} {'model call':>12s} {'extraction':>12s}   (max relative difference, batch of {len(clips)})")
    for name in BACKBONES:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                call, extraction = measure(name, clips, Path(tmp))
                print(f"{name:16s} {call:12.3g} {extraction:12.3g}")
            except Exception as err:  # the code before the masks fails on some backbones
                print(f"{name:16s} failed: {type(err).__name__}: {str(err)[:100]}")


if __name__ == "__main__":
    main()
