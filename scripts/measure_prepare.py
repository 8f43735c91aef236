"""Time ``hf-fusion prepare`` on a full-size Speech Commands v0.02 layout (docs/downloads.md).

Builds the official layout at its real counts (105,829 files over 35 word folders, the two lists of 9,981 and
11,005 names, six background-noise files) in a temporary folder, with empty files (prepare reads names and
metadata, never audio), and prepares it: the counts check passes without --allow-partial.

    python scripts/measure_prepare.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hf_fusion.tasks import PAPER_TASK_SPECS, prepare_task
from hf_fusion.tasks.downloads import SPCV2_WORDS


def build_spcv2_layout(root: Path) -> None:
    counts = PAPER_TASK_SPECS["spcv2"].counts
    total = sum(counts.values())
    names = [f"{SPCV2_WORDS[i % len(SPCV2_WORDS)]}/{i:08x}_nohash_0.wav" for i in range(total)]
    for word in SPCV2_WORDS:
        (root / word).mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).touch()
    (root / "_background_noise_").mkdir()
    for k in range(6):
        (root / "_background_noise_" / f"noise_{k}.wav").touch()
    valid, test = names[: counts["valid"]], names[counts["valid"]: counts["valid"] + counts["test"]]
    (root / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="build in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        start = time.perf_counter()
        build_spcv2_layout(base / "download")
        built = time.perf_counter() - start
        start = time.perf_counter()
        folder = prepare_task("spcv2", base / "download", base / "tasks", progress=False)
        seconds = time.perf_counter() - start
        info = json.loads((folder / "task.json").read_text())
        size = (folder / "metadata.csv").stat().st_size + (folder / "task.json").stat().st_size
        print(f"layout of {sum(info['counts'].values()):,} files built in {built:.1f} s")
        print(f"prepare spcv2: {seconds:.1f} s, complete={info['complete']}, counts {info['counts']}, "
              f"{size / 1e6:.1f} MB written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
