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
           fusion + last-layer baseline + the two fused layers alone; each probe ``--probe-epochs``
           epochs of a [D x classes] linear layer (6 FLOPs per weight per training clip and epoch) at
           ``--probe-tflops``.
Extraction stages run in series in one process (today's pipeline: decode in workers feeds the crop
cache first, then front end -> backbone -> write per batch), so a task costs the sum of its stages;
the stage with the largest total is the one that stops the target.
Target: the whole study in under one hour on one modern GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def model_for(backbone: str, seconds: float):
    """(model on the meta device, feature extractor, input shape of one clip) at full size."""
    import torch

    import hf_fusion
    from hf_fusion.models.backbone_ast import ASTBackbone

    extra = {"max_length": ASTBackbone.input_frames_for_seconds(seconds)} if backbone == "ast" else None
    cfg = hf_fusion.AudioFusionConfig(backbone=backbone, backbone_config=extra)
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
        return clips * seconds / time_decode(data, 0, 8, 2)


def fmt(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tflops", type=float, default=100.0,
                   help="sustained accelerator TFLOP/s for the backbones (default 100: ~25-40%% of a current "
                        "data-centre GPU's dense bf16/fp16 peak; fp32 without TF32 is ~10x less)")
    p.add_argument("--cores", type=int, default=16, help="CPU cores decoding (decode workers)")
    p.add_argument("--decode-rate", type=float, default=DEFAULT_DECODE_RATE,
                   help="audio s per s per core, decode+resample (default: measured here)")
    p.add_argument("--measure", action="store_true", help="measure --decode-rate on this machine first")
    p.add_argument("--frontend-rate", type=float, default=50000.0,
                   help="audio s per s of the front end on the accelerator (assumption, default 5e4)")
    p.add_argument("--write-mbps", type=float, default=300.0, help="MB/s of the arrow writer (default 300)")
    p.add_argument("--probe-tflops", type=float, default=20.0,
                   help="sustained TFLOP/s of the probes (batched 4 lrs x 3 seeds, batch 200: memory-bound GEMMs; "
                        "default 20, an assumption; this CPU: 0.12, scripts/bench_probe_floor.py)")
    p.add_argument("--probe-epochs", type=float, default=100.0, help="mean epochs per probe (early stopping; max 200)")
    p.add_argument("--target-hours", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.measure:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        args.decode_rate = measure_decode_rate()
        print(f"measured decode rate: {args.decode_rate:.0f} audio s/s per core")

    totals = {"decode": 0.0, "frontend": 0.0, "backbone": 0.0, "write": 0.0, "probes": 0.0}
    audio = sum(n * s for n, s, _, _ in TASKS.values())
    totals["decode"] = audio / (args.decode_rate * args.cores)
    print(f"study: {len(BACKBONES)} backbones x {len(TASKS)} tasks, {sum(t[0] for t in TASKS.values()):,} clips, "
          f"{audio / 3600:.0f} h of audio (decoded once, shared crop cache)")
    print(f"assumptions: {args.tflops:g} TFLOP/s sustained (backbones), {args.cores} decode cores at "
          f"{args.decode_rate:.0f} audio s/s each, front end {args.frontend_rate:g} audio s/s, writer "
          f"{args.write_mbps:g} MB/s, probes {args.probe_epochs:g} epochs at {args.probe_tflops:g} TFLOP/s\n")
    print("| backbone | task | GFLOP/clip | GFLOP per audio s | backbone | write | probes |")
    print("|---|---|---:|---:|---:|---:|---:|")
    per_second, probe_by_task = {}, dict.fromkeys(TASKS, 0.0)
    for backbone in BACKBONES:
        for task, (n, seconds, classes, folds) in TASKS.items():
            flops, floats, config = clip_flops(backbone, seconds)
            per_second.setdefault(backbone, {})[task] = flops / seconds
            t_bb = n * flops / (args.tflops * 1e12)
            t_fe = n * seconds / args.frontend_rate
            t_wr = n * floats * 4 / (args.write_mbps * 1e6)
            layers = list(config.layer_dims.values())
            fused = [config.layer_dims[l] for l in config.fusion_layers]
            # layer-wise: every layer; evaluation: fusion + last layer + each fused layer alone
            dims = layers + [sum(fused), layers[-1]] + fused
            train = 0.8 * n  # training clips per probe (fold tasks: (folds-1)/folds of the clips, ~0.8)
            probe_flops = sum(6 * d * classes * train * args.probe_epochs * 4 * 3 * folds for d in dims)
            t_pr = probe_flops / (args.probe_tflops * 1e12)
            totals["frontend"] += t_fe
            totals["backbone"] += t_bb
            totals["write"] += t_wr
            totals["probes"] += t_pr
            probe_by_task[task] += t_pr
            print(f"| {backbone} | {task} | {flops / 1e9:.1f} | {flops / seconds / 1e9:.2f} | {fmt(t_bb)} | "
                  f"{fmt(t_wr)} | {fmt(t_pr)} |")
    total = sum(totals.values())
    print("\n| stage | total | share |")
    print("|---|---:|---:|")
    for stage, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {fmt(t)} | {t / total:.0%} |")
    print(f"| **whole study** | **{fmt(total)}** | |")
    extraction = total - totals["probes"]
    print(f"\nextraction alone (decode + front end + backbone + write): {fmt(extraction)}; probes alone: "
          f"{fmt(totals['probes'])}, of which vc1 (1251 classes) {fmt(probe_by_task['vc1'])}")
    bound = max(totals, key=totals.get)
    target = args.target_hours * 3600
    verdict = "meets" if total <= target else "misses"
    print(f"\ntarget: the whole study in under {args.target_hours:g} h on one modern GPU -> {verdict} it "
          f"({fmt(total)}); the largest stage is {bound} ({fmt(totals[bound])}).")
    others = total - totals[bound]
    if total > target:
        if others >= target:
            print(f"  even with {bound} free, the other stages take {fmt(others)}: more than one stage must speed up")
        else:
            print(f"  {bound} must fall below {fmt(target - others)} (x{totals[bound] / (target - others):.1f} faster)")
    print("per-second FLOPs (GFLOP per audio second, task-length inputs): " + "; ".join(
        f"{b} {min(v.values()) / 1e9:.1f}-{max(v.values()) / 1e9:.1f}" for b, v in per_second.items()))


if __name__ == "__main__":
    main()
