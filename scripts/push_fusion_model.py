#!/usr/bin/env python
"""Publish a fused model to the Hugging Face Hub (same options as ``hf-fusion push``).

    python scripts/push_fusion_model.py --model DIR --repo-id org/name --dry-run --out FOLDER
    python scripts/push_fusion_model.py --preset vggish-fusion-10-15 --checkpoint vggish-10086976.pth --org my-org
"""

from hf_fusion.app.push import main

if __name__ == "__main__":
    raise SystemExit(main())
