"""Estimated wall time of the whole paper study (VGGish, CNN14, AST x nine tasks, layer-wise + fusion).

Usage: python scripts/estimate_study_time.py [--tflops 100] [--cores 16] [--measure] [--decode-rate R] ...

Model of the run (the CLI's path: ``hf-fusion layerwise`` per backbone, then ``evaluate``):
  decode   every task's files are decoded + resampled to 16 kHz once (the crop cache is shared by the
           three backbones: same rate, same clip length), on ``--cores`` processes (``--decode-workers``),
           at ``--decode-rate`` audio seconds per second per core (``--measure``: timed here on 44.1 kHz
           stereo FLAC; the default is a measured rate, see docs/performance.md);
  frontend per backbone, every clip's front end on the accelerator at ``--frontend-rate`` audio s/s
           (an assumption, not a measurement);
  backbone per backbone, every clip's forward: FLOPs counted with ``torch.utils.flop_counter`` on the
           meta device (full-size configs; AST sized to each task's clip length, as the authors) divided
           by ``--tflops`` (sustained, not peak);
  write    every clip's all-layer vectors (float32) through the arrow writer at ``--write-mbps``;
  probes   layer-wise: every layer x task x learning rate (4) x seed (3), fold tasks once per fold;
           evaluation: fusion + last-layer baseline + the two fused layers alone, always the full fp32
           protocol. A member's epoch of a [D x C] probe on n training clips costs 4.2 n D C GEMM FLOPs
           (forward, weight gradient, validation) at the GPU's sustained rate for the precision
           (``--gpu-tflops``, assumed) times the probe shapes' efficiency (measured here: their GEMM rate
           / a large square GEMM's), plus Adam's 28 bytes per weight per step (n / 200 steps) at
           ``--gpu-tbps`` (assumed). Epochs per member and each screening option's share of the work are
           measured (scripts/measure_probe_options.py on the demo suite and a 1000-class task).
Extraction stages run in series in one process (today's pipeline: decode in workers feeds the crop
cache first, then front end -> backbone -> write per batch), so a task costs the sum of its stages;
the stage with the largest total is the one that stops the target.
Target: the whole study in under one hour on one modern GPU; the script prints which combination of
the probe options (precision, screening) meets it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_fusion.protocol import PROBE_PRECISIONS  # noqa: E402

#: (clips, clip seconds, classes, folds) of the paper's tasks (DESIGN.md section 5; counts are the public
#: datasets' totals as used by EVAR: ESC-50 2000, US8K 8732, SPCV2 105829, VoxCeleb1 iden 153516,
#: VoxForge 176438, CREMA-D 7442, GTZAN fault-filtered 930, NSynth 305979, Surge ~183000 (approximate))
TASKS = {
    "esc50": (2000, 5.0, 50, 5),
    "us8k": (8732, 4.0, 10, 10),
    "spcv2": (105829, 1.0, 35, 1),
    "vc1": (153516, 8.2, 1251, 1),
    "voxforge": (176438, 5.8, 6, 1),
    "cremad": (7442, 2.5, 6, 1),
    "gtzan": (930, 30.0, 10, 1),
    "nsynth": (305979, 4.0, 11, 1),
    "surge": (183000, 4.0, 88, 1),
}
BACKBONES = ("vggish", "cnn14", "ast")
#: audio seconds decoded + resampled per second by one core: 44.1 kHz stereo FLAC -> 16 kHz mono, in process
#: (where it was measured: docs/performance.md, "Tuning constants in the code")
DEFAULT_DECODE_RATE = 400.0
#: measured on 2 CPU cores (--measure): the probe GEMMs' rate as a share of a large square sgemm's; four
#: runs gave 0.69, 0.84, 1.08 and one more near 0.7 on a shared machine: the low end
DEFAULT_SHAPE_EFFICIENCY = 0.7
#: measured: mean epochs a member trains under early stopping, full protocol: 54 (demo suite), 97 (1000
#: classes), 91 (100 classes x 200 clips); their mean (scripts/measure_probe_options.py)
DEFAULT_EPOCHS = 80.0
#: measured: share of the full protocol's probe work (member-epochs x training clips) left by lr halving
#: every 10 epochs: 0.34 (demo), 0.19 (1000 classes), 0.21 (large task); the largest (conservative)
DEFAULT_HALVING_SHARE = 0.34
#: assumed: sustained dense GEMM TFLOP/s of one data-centre GPU (H100/H200 class) per probe precision
#: (about 40-45 % of the datasheet's dense peaks: fp32 67, tf32 495, bf16 989)
DEFAULT_GPU_TFLOPS = dict(zip(PROBE_PRECISIONS, (30.0, 200.0, 400.0)))
#: assumed: sustained HBM bandwidth in TB/s (datasheet 3.35-4.8)
DEFAULT_GPU_TBPS = 2.5
#: screening options the estimate combines, the least approximate first (measured effects: docs/performance.md):
#: (name, seeds kept of 3, lr halving, max training clips)
SCREENINGS = (("full", 3, False, None), ("halving", 3, True, None), ("1 seed", 1, False, None),
              ("1 seed + halving", 1, True, None), ("1 seed + halving + 20k clips", 1, True, 20000))


def model_for(backbone: str, seconds: float):
    """(model on the meta device, feature extractor, input shape of one clip) at full size."""
    import torch

    import hf_fusion
    from hf_fusion.catalog import paper_size_config

    cfg = paper_size_config(backbone, seconds)  # a resizable input (AST) sized for the task's clips
    fe = hf_fusion.FusedAudioFeatureExtractor.from_fusion_config(cfg)
    shape = tuple(fe([torch.zeros(int(seconds * 16000))], sampling_rate=16000, return_tensors="pt")["input_values"].shape)
    with torch.device("meta"):
        model = hf_fusion.AudioFusionModel(cfg).eval()
    return model, fe, shape


def clip_flops(backbone: str, seconds: float):
    """(FLOPs of one clip's all-layer forward, floats of its all-layer vectors, the model config)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model, _, shape = model_for(backbone, seconds)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.tap(torch.empty(shape, device="meta"), "all")
    return float(counter.get_total_flops()), int(sum(model.config.layer_dims.values())), model.config


def measure_decode_rate(seconds: float = 5.0, clips: int = 24) -> float:
    """Audio seconds per second of one process decoding 44.1 kHz stereo FLAC to 16 kHz mono."""
    import tempfile

    from datasets import Audio

    from bench_pipeline import make_flac_task, time_decode  # noqa: E402  (scripts/ on sys.path)

    with tempfile.TemporaryDirectory() as tmp:
        data = make_flac_task(Path(tmp), clips, seconds).cast_column("audio", Audio(decode=False))
        best, _ = time_decode(data, [0], 8, 2)  # in process: {0 workers: best seconds of one pass}
        return clips * seconds / best[0]


def fmt(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def measure_shape_efficiency(threads: int = 0) -> float:
    """This CPU's GEMM rate on the probe's shapes (batch 200, D 1024, 4 lrs x 20 classes, 3 seeds: the forward
    and weight-gradient products of :func:`train_batched`) as a share of a 2048^3 square GEMM's."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    def rate(f, flops, reps):
        f()
        t = time.perf_counter()
        for _ in range(reps):
            f()
        return flops * reps / (time.perf_counter() - t)

    S, N, B, D = 3, 80, 200, 1024
    W, x, g, out, gW = (torch.randn(S, N, D), torch.randn(S, B, D), torch.randn(S, N, B), torch.empty(S, N, B),
                        torch.empty(S, N, D))
    probe = lambda: (torch.bmm(W, x.transpose(1, 2), out=out), torch.baddbmm(gW, g, x, beta=0, alpha=1 / B, out=gW))  # noqa: E731
    big = torch.randn(2048, 2048)
    square = rate(lambda: big @ big, 2 * 2048 ** 3, 30)
    return rate(probe, 4 * S * N * B * D, 50) / square


def probe_seconds(d: int, classes: int, n_train: float, members: float, epochs: float, precision: str, args) -> float:
    """GPU seconds of ``members`` probes of width ``d`` for ``epochs`` epochs on ``n_train`` clips."""
    weights = d * classes * members
    gemm = 4.2 * n_train * weights * epochs / (args.gpu_tflops[precision] * 1e12 * args.shape_efficiency)
    adam = 28.0 * weights * (n_train / 200) * epochs / (args.gpu_tbps * 1e12)
    return gemm + adam


def parse_rates(text: str) -> dict:
    rates = dict(DEFAULT_GPU_TFLOPS)
    for item in text.split(","):
        if item:
            name, value = item.split("=")
            if name not in rates:
                raise argparse.ArgumentTypeError(f"--gpu-tflops: unknown precision {name!r} (one of {list(rates)})")
            rates[name] = float(value)
    return rates


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tflops", type=float, default=100.0,
                   help="sustained accelerator TFLOP/s for the backbones (default 100: ~25-40%% of a current "
                        "data-centre GPU's dense bf16/fp16 peak; fp32 without TF32 is ~10x less)")
    p.add_argument("--cores", type=int, default=16, help="CPU cores decoding (decode workers)")
    p.add_argument("--decode-rate", type=float, default=DEFAULT_DECODE_RATE,
                   help="audio s per s per core, decode+resample (default: measured here)")
    p.add_argument("--measure", action="store_true",
                   help="measure --decode-rate and --shape-efficiency on this machine first")
    p.add_argument("--frontend-rate", type=float, default=50000.0,
                   help="audio s per s of the front end on the accelerator (assumption, default 5e4)")
    p.add_argument("--write-mbps", type=float, default=300.0, help="MB/s of the arrow writer (default 300)")
    p.add_argument("--gpu-tflops", type=parse_rates, default=dict(DEFAULT_GPU_TFLOPS),
                   help="sustained probe GEMM TFLOP/s per precision, e.g. fp32=30,tf32=200,bf16=400 (assumed)")
    p.add_argument("--gpu-tbps", type=float, default=DEFAULT_GPU_TBPS, help="sustained HBM TB/s for Adam (assumed)")
    p.add_argument("--shape-efficiency", type=float, default=DEFAULT_SHAPE_EFFICIENCY,
                   help="the probe GEMMs' rate / a large GEMM's (default: measured on this CPU)")
    p.add_argument("--probe-epochs", type=float, default=DEFAULT_EPOCHS,
                   help="mean epochs per member under early stopping (default: measured)")
    p.add_argument("--halving-share", type=float, default=DEFAULT_HALVING_SHARE,
                   help="share of the probe work left by lr halving every 10 epochs (default: measured)")
    p.add_argument("--target-hours", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.measure:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        args.decode_rate = measure_decode_rate()
        args.shape_efficiency = min(1.0, measure_shape_efficiency())  # a GPU's small GEMMs never beat its large ones
        print(f"measured: decode rate {args.decode_rate:.0f} audio s/s per core; probe GEMM shapes at "
              f"{args.shape_efficiency:.0%} of a large GEMM's rate")

    totals = {"decode": 0.0, "frontend": 0.0, "backbone": 0.0, "write": 0.0}
    audio = sum(n * s for n, s, _, _ in TASKS.values())
    totals["decode"] = audio / (args.decode_rate * args.cores)
    print(f"study: {len(BACKBONES)} backbones x {len(TASKS)} tasks, {sum(t[0] for t in TASKS.values()):,} clips, "
          f"{audio / 3600:.0f} h of audio (decoded once, shared crop cache)")
    print(f"assumed: {args.tflops:g} TFLOP/s sustained (backbones), front end {args.frontend_rate:g} audio s/s, writer "
          f"{args.write_mbps:g} MB/s, probe GEMMs {', '.join(f'{k} {v:g}' for k, v in args.gpu_tflops.items())} "
          f"TFLOP/s, HBM {args.gpu_tbps:g} TB/s")
    print(f"measured here: {args.cores} decode cores at {args.decode_rate:.0f} audio s/s each, probe GEMM shapes at "
          f"{args.shape_efficiency:.0%} of a large GEMM's rate, {args.probe_epochs:g} epochs per member, lr halving "
          f"leaves {args.halving_share:.0%} of the work\n")
    print("| backbone | task | GFLOP/clip | GFLOP per audio s | backbone | write | layer-wise probes (fp32, full) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    per_second, shapes = {}, []  # shapes: (part, task, d, classes, n_train, folds)
    for backbone in BACKBONES:
        for task, (n, seconds, classes, folds) in TASKS.items():
            flops, floats, config = clip_flops(backbone, seconds)
            per_second.setdefault(backbone, {})[task] = flops / seconds
            totals["frontend"] += n * seconds / args.frontend_rate
            totals["backbone"] += n * flops / (args.tflops * 1e12)
            totals["write"] += n * floats * 4 / (args.write_mbps * 1e6)
            layers = list(config.layer_dims.values())
            fused = [config.layer_dims[l] for l in config.fusion_layers]
            train = 0.8 * n  # training clips per probe (fold tasks: (folds-1)/folds of the clips, ~0.8)
            shapes += [("layer-wise", task, d, classes, train, folds) for d in layers]
            shapes += [("evaluation", task, d, classes, train, folds) for d in [sum(fused), layers[-1]] + fused]
            lw = sum(probe_seconds(d, classes, train, 12 * folds, args.probe_epochs, "fp32", args) for d in layers)
            print(f"| {backbone} | {task} | {flops / 1e9:.1f} | {flops / seconds / 1e9:.2f} | "
                  f"{fmt(n * flops / (args.tflops * 1e12))} | {fmt(n * floats * 4 / (args.write_mbps * 1e6))} | {fmt(lw)} |")
    extraction = sum(totals.values())

    def probes(precision: str, seeds: int, halving: bool, max_train, eval_precision: str) -> tuple[float, float, float]:
        """(layer-wise, evaluation, of which vc1) seconds; the evaluation always runs the full protocol (every lr,
        seed and training clip), its products in ``eval_precision``."""
        lw = ev = vc1 = 0.0
        for part, task, d, classes, train, folds in shapes:
            if part == "layer-wise":
                n = min(train, max_train) if max_train else train
                t = probe_seconds(d, classes, n, 4 * seeds * folds, args.probe_epochs * (args.halving_share if halving else 1),
                                  precision, args)
                lw += t
            else:
                t = probe_seconds(d, classes, train, 12 * folds, args.probe_epochs, eval_precision, args)
                ev += t
            vc1 += t if task == "vc1" else 0.0
        return lw, ev, vc1

    target = args.target_hours * 3600
    evals = PROBE_PRECISIONS[:2]  # the final evaluation: fp32, or tf32 (the option measured closest to fp32)
    print(f"\nextraction (decode {fmt(totals['decode'])}, front end {fmt(totals['frontend'])}, backbone "
          f"{fmt(totals['backbone'])}, write {fmt(totals['write'])}): {fmt(extraction)}\n")
    print("| layer-wise probes: precision, screening | layer-wise | " + " | ".join(
        f"evaluation, full protocol, {e} | whole study (evaluation {e})" for e in evals) + " |")
    print("|---|---:|" + "---:|---:|" * len(evals))
    meets = []
    for precision in PROBE_PRECISIONS:
        for name, seeds, halving, max_train in SCREENINGS:
            cells = []
            for e in evals:
                lw, ev, _ = probes(precision, seeds, halving, max_train, e)
                total = extraction + lw + ev
                if total <= target:
                    meets.append((precision, name, e, total))
                cells += [fmt(ev), f"{fmt(total)} ({'meets' if total <= target else 'misses'})"]
            print(f"| {precision}, {name} | {fmt(lw)} | " + " | ".join(cells) + " |")
    if meets:
        # the least approximate: an fp32 evaluation first, then the fewest screening options, the most precise products
        names = [sc[0] for sc in SCREENINGS]
        precision, name, e, total = min(meets, key=lambda m: (evals.index(m[2]), names.index(m[1]),
                                                               PROBE_PRECISIONS.index(m[0])))
        print(f"\ntarget: the whole study in under {args.target_hours:g} h on one modern GPU -> met by layer-wise probes "
              f"{precision}, {name}, and the final evaluation at the full protocol in {e} ({fmt(total)}); "
              f"{len(meets)} of {len(PROBE_PRECISIONS) * len(SCREENINGS) * len(evals)} combinations meet it.")
    else:
        print(f"\ntarget: the whole study in under {args.target_hours:g} h -> no combination meets it")
    print("unmeasured (assumed): the GPU's sustained GEMM rates and HBM bandwidth, the backbones' sustained rate, "
          "the front end's and the writer's rates; everything else above is counted or measured.")
    print("per-second FLOPs (GFLOP per audio second, task-length inputs): " + "; ".join(
        f"{b} {min(v.values()) / 1e9:.1f}-{max(v.values()) / 1e9:.1f}" for b, v in per_second.items()))


if __name__ == "__main__":
    main()
