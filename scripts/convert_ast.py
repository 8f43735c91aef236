"""Convert an AST checkpoint (transformers Hub id / folder, or the original YuanGongND ``.pth``) into a saved fused model folder.

    python scripts/convert_ast.py --checkpoint MIT/ast-finetuned-audioset-10-10-0.4593 --layers 5 12 --out ast-fusion-5-12
    python scripts/convert_ast.py --checkpoint audioset_10_10_0.4593.pth --max-length 398 --out ast-fusion-5-12-4s
"""

from __future__ import annotations

import argparse

from hf_fusion.conversion import convert_ast_checkpoint
from hf_fusion.conversion.ast import PAPER_CHECKPOINT


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=PAPER_CHECKPOINT,
                        help=f"AST checkpoint: Hub id, transformers folder or original .pth (default {PAPER_CHECKPOINT})")
    parser.add_argument("--layers", type=int, nargs="+", default=[5, 12], help="transformer blocks to fuse (1..12)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="input fbank frames (default: the checkpoint's, 1024); e.g. 398 for 4 s clips")
    parser.add_argument("--layer-norm-eps", type=float, default=None,
                        help="LayerNorm eps (default: the checkpoint's; .pth: timm's 1e-6)")
    parser.add_argument("--trust-pickle", action="store_true", help=".pth only: allow full unpickling (trusted files)")
    parser.add_argument("--out", required=True, help="output folder (save_pretrained)")
    args = parser.parse_args(argv)
    model, _ = convert_ast_checkpoint(args.checkpoint, args.layers, args.out, max_length=args.max_length,
                                      layer_norm_eps=args.layer_norm_eps, trust_pickle=args.trust_pickle)
    frames = model.config.backbone_config["max_length"]
    print(f"saved {model.config.fusion_name} ({model.config.hidden_size}-d) to {args.out} (input: {frames} fbank frames)")


if __name__ == "__main__":
    main()
