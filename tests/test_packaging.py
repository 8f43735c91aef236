"""The wheel ships every module, the card templates (hub_cards/) and the offline accuracy metric."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_card_templates_metric_and_every_module(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("hf_fusion-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"hf_fusion/hub/templates/{p.name}" for p in (ROOT / "hub_cards").glob("*.md")}
    assert "hf_fusion/hub/templates/base.md" in templates and templates <= names
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "hf_fusion").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules - names == set(), "add the missing subpackage to [tool.setuptools] packages in pyproject.toml"
    assert "hf_fusion/evaluation/metrics/accuracy/accuracy.py" in names
    split_files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "hf_fusion" / "tasks" / "split_files").rglob("*")
                   if p.is_file()}
    assert "hf_fusion/tasks/split_files/gtzan/LICENSE" in split_files and split_files <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hf-fusion = hf_fusion.app.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
