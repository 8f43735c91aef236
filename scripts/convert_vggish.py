"""Convert a VGGish ``.pth`` (torchvggish's ``vggish-10086976.pth`` or tcvrick's ``pytorch_vggish.pth``) into a saved fused model folder.

    python scripts/convert_vggish.py --checkpoint vggish-10086976.pth --layers 10 15 --out vggish-fusion-10-15
"""

from __future__ import annotations

import argparse

from hf_fusion.conversion import convert_vggish_checkpoint


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="VGGish state dict (.pth), torchvggish or tcvrick layout (auto-detected)")
    parser.add_argument("--layers", type=int, nargs="+", default=[10, 15],
                        help="Table I layers to fuse (tappable: 2 5 8 10 13 15 18 20 22); default 10 15")
    parser.add_argument("--out", required=True, help="output folder (save_pretrained)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow a checkpoint that needs full unpickling (can run code: trusted files only)")
    args = parser.parse_args(argv)
    model, _ = convert_vggish_checkpoint(args.checkpoint, args.layers, args.out, trust_pickle=args.trust_pickle)
    print(f"saved {model.config.fusion_name} ({model.config.hidden_size}-d) to {args.out}")


if __name__ == "__main__":
    main()
