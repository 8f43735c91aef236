"""AST task statistics drawn in metadata order vs the authors' shuffled order: statistics, vectors, accuracy.

Usage: python scripts/measure_task_statistics.py [--n-per-class 40] [--seeds 0 1 2 3 4] [--out DIR]

The offline synthetic pitch and timbre tasks (``hf_fusion.tasks.synthetic``: 12 and 8 classes of 1 s
clips, metadata.csv listing the clips class by class) and a small random AST (6 blocks of 64 dims, 128
mel bins) sized for the tasks' clips. The input statistics come from the training clips (a) in metadata
order, as before, (b) in the shuffled order of each seed. Prints mean / std, the fused vectors' cosine to
those of shuffled seed 0, and the layer-wise test accuracy (paper protocol) of each, with the best layer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv=None) -> None:
    import numpy as np
    import torch

    import hf_fusion
    from hf_fusion.app import workflow
    from hf_fusion.app.task_model import input_statistics, prepare_task_model
    from hf_fusion.evaluation import ProbeConfig
    from hf_fusion.extraction import extract_features
    from hf_fusion.protocol import TASK_STATS_BATCH_SIZE, TASK_STATS_MAX_CLIPS
    from hf_fusion.tasks import build_synthetic_task

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-per-class", type=int, default=40, help="clips per class (train is 60%%)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="permutation seeds")
    p.add_argument("--out", default="hf_fusion_out/task_statistics")
    args = p.parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    torch.manual_seed(0)
    config = hf_fusion.AudioFusionConfig(backbone="ast", fusion_layers=[3, 6], backbone_config=dict(
        hidden_size=64, num_hidden_layers=6, num_attention_heads=4, intermediate_size=128, max_length=1024))
    model = hf_fusion.AudioFusionModel(config).eval()
    sample = TASK_STATS_BATCH_SIZE * -(-TASK_STATS_MAX_CLIPS // TASK_STATS_BATCH_SIZE)
    orders = [("metadata order", None)] + [(f"shuffled, seed {s}", s) for s in args.seeds]
    for task in ("synth_pitch", "synth_timbre"):
        folder = build_synthetic_task(out / "data", task, n_per_class=args.n_per_class)
        data = workflow.load_tasks([], [str(folder)], 16000, cache_dir=out / "cache")[task]
        seconds = workflow.task_clip_samples(data) / 16000
        print(f"\n{task}: {len(data['train'])} training clips (batches of {TASK_STATS_BATCH_SIZE}; batch 0 has no "
              f"weight once a second arrives), {seconds:g} s clips")
        results = {}
        for label, seed in orders:
            def stats(fe, seed=seed):
                return {**input_statistics(workflow.train_clips(data, sample, seed=seed), fe), "seed": seed}

            prepared = prepare_task_model(model, seconds, statistics=stats)
            frontend = prepared.model.config.frontend
            cache = extract_features(prepared.model, prepared.feature_extractor, data, task, layers="all",
                                     cache_dir=out / "cache", progress=False)
            study = workflow.layerwise_study({task: cache}, list(range(1, 7)), ProbeConfig(), progress=False)
            fused, _ = cache.load([3, 6], "test")
            results[label] = (frontend["mean"], frontend["std"], fused, study.matrix("test")[task])
        reference = results[f"shuffled, seed {args.seeds[0]}"][2]
        print(f"{'order':22s} {'mean':>9s} {'std':>8s} {'min cos':>8s} " + " ".join(f"{'L' + str(k):>6s}" for k in range(1, 7))
              + "  best")
        for label, (mean, std, fused, accuracy) in results.items():
            cos = np.sum(fused * reference, 1) / (np.linalg.norm(fused, axis=1) * np.linalg.norm(reference, axis=1))
            best = max(accuracy, key=accuracy.get)
            print(f"{label:22s} {mean:9.4f} {std:8.4f} {cos.min():8.5f} "
                  + " ".join(f"{100 * accuracy[k]:6.1f}" for k in range(1, 7)) + f"  {best}")
        shuffled = [results[f"shuffled, seed {s}"] for s in args.seeds]
        spread = lambda i: (max(r[i] for r in shuffled) - min(r[i] for r in shuffled))  # noqa: E731
        old = results["metadata order"]
        print(f"spread over the shuffled seeds: mean {spread(0):.4f}, std {spread(1):.4f}; metadata order vs seed "
              f"{args.seeds[0]}: mean {old[0] - shuffled[0][0]:+.4f}, std {old[1] - shuffled[0][1]:+.4f}")
        gaps = [abs(old[3][k] - np.mean([r[3][k] for r in shuffled])) for k in range(1, 7)]
        print(f"accuracy, metadata order vs the shuffled seeds' mean: mean |diff| {100 * np.mean(gaps):.2f}, "
              f"max {100 * max(gaps):.2f} points")
    print(f"\ndone in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
