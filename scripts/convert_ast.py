"""Convert a transformers AST checkpoint (Hub id or local folder) into a saved fused model folder.

    python scripts/convert_ast.py --checkpoint MIT/ast-finetuned-audioset-10-10-0.4593 --layers 5 12 --out ast-fusion-5-12
"""

from __future__ import annotations

import argparse

from hf_fusion.conversion import convert_ast_checkpoint
from hf_fusion.conversion.ast import PAPER_CHECKPOINT


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=PAPER_CHECKPOINT, help=f"AST checkpoint (default {PAPER_CHECKPOINT})")
    parser.add_argument("--layers", type=int, nargs="+", default=[5, 12], help="transformer blocks to fuse (1..12)")
    parser.add_argument("--out", required=True, help="output folder (save_pretrained)")
    args = parser.parse_args(argv)
    model, _ = convert_ast_checkpoint(args.checkpoint, args.layers, args.out)
    print(f"saved {model.config.fusion_name} ({model.config.hidden_size}-d) to {args.out}")


if __name__ == "__main__":
    main()
