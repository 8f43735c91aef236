"""Convert a PANNs Cnn14 checkpoint (``Cnn14_16k_mAP=0.438.pth`` / ``Cnn14_mAP=0.431.pth``) into a fused model folder.

    python scripts/convert_cnn14.py --checkpoint Cnn14_16k_mAP=0.438.pth --sample-rate 16000 --layers 3 6 --out cnn14-fusion-3-6
"""

from __future__ import annotations

import argparse

from hf_fusion.conversion import convert_cnn14_checkpoint


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="PANNs .pth (a dict with the state dict under 'model')")
    parser.add_argument("--sample-rate", type=int, choices=(16000, 32000), default=None,
                        help="front-end preset (16000: 512/160, 50-8000 Hz; 32000: 1024/320, 50-14000 Hz); "
                        "default: inferred from the checkpoint's STFT/mel weights")
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 6], help="conv blocks to fuse (1..6); default 3 6")
    parser.add_argument("--out", required=True, help="output folder (save_pretrained)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow a checkpoint that needs full unpickling (can run code: trusted files only)")
    args = parser.parse_args(argv)
    model, _ = convert_cnn14_checkpoint(
        args.checkpoint, args.layers, args.out, sample_rate=args.sample_rate, trust_pickle=args.trust_pickle
    )
    print(f"saved {model.config.fusion_name} ({model.config.hidden_size}-d, {model.config.sampling_rate} Hz) to {args.out}")


if __name__ == "__main__":
    main()
