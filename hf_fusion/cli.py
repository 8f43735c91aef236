"""``hf-fusion`` command line. Subcommands are added by their own modules' ``add_parser`` functions."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _demo_random_ast(args) -> int:
    """Fused embeddings of a few generated clips with a small RANDOM-initialised AST-Fusion model."""
    import numpy as np
    import torch

    from hf_fusion import AudioFusionConfig, AudioFusionModel, FusedAudioFeatureExtractor

    print("NOTE: this demo uses a small AST-Fusion model with RANDOM weights (no download is possible "
          "offline); the embeddings show the pipeline and shapes, not a trained representation.")
    torch.manual_seed(0)
    config = AudioFusionConfig(
        backbone="ast",
        backbone_config=dict(hidden_size=64, num_hidden_layers=12, num_attention_heads=4, intermediate_size=128),
        fusion_layers=[5, 12],
    )
    model = AudioFusionModel(config).eval()
    fe = FusedAudioFeatureExtractor.from_fusion_config(config)
    sr = fe.sampling_rate
    t = np.arange(sr * 2) / sr
    rng = np.random.default_rng(0)
    clips = {
        "tone_440Hz": 0.3 * np.sin(2 * np.pi * 440 * t),
        "chirp_200-2000Hz": 0.3 * np.sin(2 * np.pi * (200 * t + 450 * t**2)),
        "white_noise": 0.1 * rng.standard_normal(t.size),
    }
    start = time.perf_counter()
    inputs = fe([c.astype(np.float32) for c in clips.values()], sampling_rate=sr, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    elapsed = time.perf_counter() - start
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "embeddings.npy", out.pooler_output.numpy())
    model.save_pretrained(out_dir / config.fusion_name)
    fe.save_pretrained(out_dir / config.fusion_name)
    print(f"model {config.fusion_name}: layers {config.fusion_layers}, D = {config.hidden_size} "
          f"({' + '.join(str(config.layer_dims[layer]) for layer in config.fusion_layers)})")
    for name, emb in zip(clips, out.pooler_output):
        print(f"  {name:18s} embedding [{emb.numel()}]  norm {emb.norm():.3f}")
    print(f"input_values {tuple(inputs['input_values'].shape)} -> pooler_output {tuple(out.pooler_output.shape)} "
          f"in {elapsed:.2f} s")
    print(f"wrote {out_dir / 'embeddings.npy'} and the saved model {out_dir / config.fusion_name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-fusion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="offline demo (the README's main job)")
    demo.add_argument("--out", default="hf_fusion_out/demo", help="output folder")
    demo.set_defaults(func=_demo_random_ast)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
