"""The README's "Command line walkthrough" runs as written.

The test reads the bash code blocks of that README section and runs them with bash, unchanged, in the
working folder of the documented `hf-fusion demo` (the session's `documented_demo`), which wrote the
`hf_fusion_out/demo/` layout the walkthrough starts from. `hf-fusion` resolves to this checkout's CLI
(`python -m hf_fusion.app.cli`).
"""

import csv
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_section_blocks(title: str = "## Command line walkthrough") -> list[str]:
    """The ```bash blocks of one README section (up to the next heading of the same or a higher level)."""
    text = (ROOT / "README.md").read_text()
    level = title.split()[0]
    start = text.index(f"\n{title}\n")
    rest = text[start + len(title) + 2:]
    stop = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.MULTILINE)
    section = rest[: stop.start()] if stop else rest
    return re.findall(r"^```bash\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def _run(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def walkthrough(documented_demo):
    work, cache, env, demo = (documented_demo[k] for k in ("work", "cache", "env", "demo"))
    features = cache / "features"
    before = {p: p.stat().st_mtime_ns for p in features.rglob("*.arrow")}
    blocks = readme_section_blocks()
    assert blocks, "the README's Command line walkthrough section has no bash block"
    runs = [_run(block, work, env) for block in blocks]
    for block, run in zip(blocks, runs):
        assert run.returncode == 0, f"README block failed:\n{block}\n--- stderr:\n{run.stderr[-3000:]}"
    return {"work": work, "cache": cache, "demo": demo, "runs": runs, "before": before, "features": features}


@pytest.mark.slow
def test_walkthrough_runs_and_follows_its_outputs(walkthrough):
    work = walkthrough["work"]
    walk = work / "hf_fusion_out" / "walk"
    out = "".join(run.stdout for run in walkthrough["runs"])
    choice = json.loads((walk / "study" / "selection.json").read_text())
    layers = sorted([choice["middle"], choice["late"]])
    name = f"crepe-fusion-{layers[0]}-{layers[1]}"
    # select saved the chosen layers where the README says, and said the model's name
    assert json.loads((walk / "fused" / "config.json").read_text())["fusion_layers"] == layers
    assert f"saved the fused model {name} to hf_fusion_out/walk/fused" in out
    with open(walk / "eval" / "results.csv", newline="") as f:
        models = {row["model"] for row in csv.DictReader(f)}
    assert {name, "crepe-layer-7"} <= models
    assert name in (walk / "board" / "leaderboard.md").read_text()
    # push named the repo after the model it pushed
    assert f"huggingface.co/my-org/{name}" in out and "Nothing was uploaded" in out
    assert json.loads((walk / "repo" / "config.json").read_text())["fusion_layers"] == layers
    card = (walk / "repo" / "README.md").read_text()
    assert f"- name: {name}" in card and "type: audio-classification" in card  # the model-index
    why = card.split("### Why these layers", 1)[1].split("###", 1)[0]
    assert f"M = {choice['middle']} (middle layer) and L = {choice['late']} (late layer)" in why
    assert f"| **{choice['middle']} (M)** |" in why and f"| **{choice['late']} (L)** |" in why
    summary = json.loads((walk / "extraction.json").read_text())
    assert summary["model"] == "crepe-tiny" and summary["tasks"]["synth_pitch"]["splits"]["test"]["clips"] > 0
    assert {int(k) for k in summary["tasks"]["synth_pitch"]["layer_dims"]} == set(range(1, 8))
    assert Path(summary["tasks"]["synth_pitch"]["splits"]["train"]["folder"]).is_relative_to(walkthrough["cache"])


@pytest.mark.slow
def test_walkthrough_reuses_the_demos_cache_and_says_where_it_is(walkthrough):
    cache = walkthrough["cache"]
    for run in [walkthrough["demo"], *walkthrough["runs"]]:
        lines = [line for line in run.stdout.splitlines() if line.startswith("feature cache: ")]
        assert lines and all(line.startswith(f"feature cache: {cache} ") for line in lines)
    # one model key (crepe-tiny) for the demo and every fusion; the demo's vectors were not recomputed
    assert len(list(walkthrough["features"].iterdir())) == 1
    after = {p: p.stat().st_mtime_ns for p in walkthrough["features"].rglob("*.arrow")}
    assert walkthrough["before"] and all(after[p] == t for p, t in walkthrough["before"].items())
    assert set(after) == set(walkthrough["before"])


@pytest.mark.slow
def test_walkthrough_leaves_only_ignored_outputs_and_no_lock_files(walkthrough):
    work = walkthrough["work"]
    assert sorted(p.name for p in work.iterdir()) == ["hf_fusion_out"]
    assert "hf_fusion_out/" in (ROOT / ".gitignore").read_text().splitlines()
    assert not [p for p in work.rglob("*.lock")]
    progress = walkthrough["demo"].stdout
    assert "of crepe-tiny" in progress and "crepe-fusion-3-6" not in progress


def test_the_walkthrough_builds_and_lists_the_leaderboard_space(walkthrough):
    space = walkthrough["work"] / "hf_fusion_out" / "walk" / "space"
    assert {p.name for p in space.iterdir()} == {"README.md", "app.py", "data", "requirements.txt"}
    data = json.loads((space / "data" / "leaderboard.json").read_text())
    (model, study), = data["models"].items()
    assert model.startswith("crepe-fusion-") and (space / study["heatmap"]).is_file()
    printed = "".join(run.stdout for run in walkthrough["runs"])
    assert "Dry run: would upload" in printed and "https://huggingface.co/spaces/my-org/fusion-leaderboard" in printed
