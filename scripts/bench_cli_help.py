#!/usr/bin/env python
"""Wall time of `hf-fusion --help` (and a subcommand's) next to `python -c "import hf_fusion"` and the
heavy imports the old parser paid for, each a fresh interpreter, several repeats (min / median).

    PYTHONPATH=$PWD python scripts/bench_cli_help.py --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import hf_fusion'": [sys.executable, "-c", "import hf_fusion"],
    "hf-fusion --help": [sys.executable, "-m", "hf_fusion.app.cli", "--help"],
    "hf-fusion push --help": [sys.executable, "-m", "hf_fusion.app.cli", "push", "--help"],
    "hf-fusion extract (arg error)": [sys.executable, "-m", "hf_fusion.app.cli", "extract"],
    "import hf_fusion + transformers (registration)": [sys.executable, "-c", "import hf_fusion, transformers"],
    "import hf_fusion.hub.publish (the old parser's cost)": [sys.executable, "-c", "import hf_fusion.hub.publish"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters per command")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPU(s), load average (1 min) {load:.2f} at start; {args.repeats} repeats each")
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so a load spike hits every command alike
        for name, cmd in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.setdefault(name, []).append(time.perf_counter() - start)
    base = statistics.median(times["python -c 'import hf_fusion'"])
    print(f"\n{'command':52s} {'min s':>7s} {'median s':>9s} {'x import hf_fusion':>19s}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:52s} {min(values):7.3f} {med:9.3f} {med / base:19.2f}")
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average (1 min) {load_end:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
