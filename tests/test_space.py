"""The leaderboard as a Gradio Space, built from a real ``hf-fusion evaluate`` output, served on 127.0.0.1 and
read in a real headless Chromium (selenium + Debian's chromium-driver): every model and accuracy is on the
page, sorting by a task column reorders the rows, the heatmap loads; ``push --space --dry-run`` lists it."""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hf_fusion.app.cli import main
from hf_fusion.tasks import build_synthetic_suite

FAST_PROBE = ["--lrs", "1e-3", "1e-2", "--seeds", "0", "--max-epochs", "40", "--patience", "10"]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A layer-wise study, its choice and an evaluation of CREPE-tiny on two synthetic tasks (the CLI)."""
    root = tmp_path_factory.mktemp("space")
    dirs = [str(d) for d in build_synthetic_suite(root / "tasks", seed=0, n_per_class=5,
                                                  tasks=["synth_pitch", "synth_events"])]
    tasks = [arg for d in dirs for arg in ("--task-dir", d)]
    common = ["--cache-dir", str(root / "cache"), *FAST_PROBE]
    assert main(["layerwise", "--model", "crepe-tiny", *tasks, "--out", str(root / "study"), *common]) == 0
    assert main(["select", "--study", str(root / "study" / "layerwise.csv"), "--model", "crepe-tiny",
                 "--out", str(root / "study"), "--save-model", str(root / "fused")]) == 0
    assert main(["evaluate", "--model", str(root / "fused"), *tasks, "--out", str(root / "eval"), *common]) == 0
    return root


def _rows(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fused(root: Path) -> str:
    selection = json.loads((root / "study" / "selection.json").read_text())
    return f"crepe-fusion-{min(selection['middle'], selection['late'])}-{max(selection['middle'], selection['late'])}"


def _build(root: Path, out: Path, study: str | None = None) -> int:
    """``leaderboard --space`` with the study given as DIR (its model found from selection.json) or MODEL=DIR."""
    return main(["leaderboard", str(root / "eval" / "leaderboard.jsonl"), "--space", str(out),
                 "--study", study or str(root / "study"), "--org", "my-org"])


def test_the_space_folder_runs_as_is(evaluated, tmp_path, capsys):
    out = tmp_path / "space"
    assert _build(evaluated, out) == 0
    said = capsys.readouterr().out
    assert "warning: " in said and "the paper did not use task 'synth_pitch'" in said
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "app.py", "data", "requirements.txt"]
    front = (out / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in front and "app_file: app.py" in front and "sdk_version: 6.31.0" in front
    assert "license: apache-2.0" in front and "title: hf-fusion leaderboard" in front
    requirements = (out / "requirements.txt").read_text().split()
    assert all("==" in r for r in requirements)  # pinned
    # app.py imports only the standard library and what requirements.txt names (never hf_fusion)
    tree = ast.parse((out / "app.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported - sys.stdlib_module_names <= {r.split("==")[0] for r in requirements}
    data = json.loads((out / "data" / "leaderboard.json").read_text())
    assert sum(row["reference"] for row in data["rows"]) == 3 and any(r["link"] for r in data["rows"])
    assert list(data["models"]) == [_fused(evaluated)]  # the study's model, found from its selection.json
    assert _build(evaluated, tmp_path / "named", f"{_fused(evaluated)}={evaluated / 'study'}") == 0
    assert _build(evaluated, tmp_path / "bad", f"crepe-fusion-9-9={evaluated / 'study'}") == 2
    assert "no leaderboard row has" in capsys.readouterr().err
    # a new evaluation appended to the file: a rebuild keeps every earlier row
    board = evaluated / "eval" / "leaderboard.jsonl"
    before = len({(r["model"], r["task"]) for r in _rows(board)})
    extra = tmp_path / "more.jsonl"
    extra.write_text(json.dumps({**_rows(board)[0], "model": "crepe-fusion-2-6", "accuracy": 0.25}) + "\n")
    assert main(["leaderboard", str(board), str(extra), "--space", str(out)]) == 0
    rows = json.loads((out / "data" / "leaderboard.json").read_text())["rows"]
    measured = {(r["model"], t) for r in rows if not r["reference"] for t in r["accuracy"]}
    assert len(measured) == before + 1 and ("crepe-fusion-2-6", _rows(board)[0]["task"]) in measured


def test_bad_leaderboard_lines_are_named(evaluated, tmp_path, capsys):
    board = evaluated / "eval" / "leaderboard.jsonl"
    broken = tmp_path / "broken.jsonl"
    broken.write_text(board.read_text() + "{not json\n")
    lines = len(board.read_text().splitlines()) + 1
    assert main(["leaderboard", str(broken), "--space", str(tmp_path / "s1")]) == 2
    assert f"broken.jsonl:{lines}: not a valid leaderboard row" in capsys.readouterr().err
    twice = tmp_path / "twice.jsonl"
    twice.write_text(board.read_text() + board.read_text().splitlines()[0] + "\n")
    assert main(["leaderboard", str(twice), "--space", str(tmp_path / "s2")]) == 0
    said = capsys.readouterr().out
    assert f"twice.jsonl:1, {twice}:{lines}: " in said and "evaluated 2 times; the latest run" in said
    assert main(["leaderboard", str(tmp_path / "nope.jsonl"), "--space", str(tmp_path / "s3")]) == 2
    assert "no such leaderboard file(s)" in capsys.readouterr().err


def test_push_space_dry_run_lists_the_files(evaluated, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "space"
    assert _build(evaluated, out) == 0
    capsys.readouterr()
    assert main(["push", "--space", str(out), "--repo-id", "my-org/fusion-leaderboard", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "https://huggingface.co/spaces/my-org/fusion-leaderboard" in said
    assert all(name in said for name in ("app.py", "requirements.txt", "README.md", "data/leaderboard.json"))
    (out / "app.py").unlink()
    assert main(["push", "--space", str(out), "--repo-id", "my-org/fusion-leaderboard", "--dry-run"]) == 2
    assert "missing ['app.py']" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grid(driver):
    """The leaderboard's rows as shown, top to bottom: [{column title: cell text}]."""
    from selenium.webdriver.common.by import By

    heads = {int(h.get_attribute("data-heading")): h.get_attribute("title")
             for h in driver.find_elements(By.CSS_SELECTOR, "#leaderboard th[data-heading]")}
    shown = []
    for row in driver.find_elements(By.CSS_SELECTOR, "#leaderboard .virtual-row[role=row]"):
        top = driver.execute_script("return arguments[0].getBoundingClientRect().top", row)
        cells = {int(c.get_attribute("data-col")): c.text for c in row.find_elements(By.CSS_SELECTOR, "[role=gridcell]")}
        shown.append((top, {heads[k]: cells.get(k, "") for k in heads}))
    return [cells for _, cells in sorted(shown, key=lambda item: item[0])]


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (scripts/setup.sh --dev)")
def test_the_page_in_a_real_browser(evaluated, tmp_path):
    pytest.importorskip("gradio")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    out = tmp_path / "space"
    assert _build(evaluated, out) == 0
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    # started from the Space folder with its own imports only: hf_fusion made unimportable
    blocker = "import sys; sys.modules['hf_fusion'] = None; import runpy; runpy.run_path('app.py', run_name='__main__')"
    server = subprocess.Popen([sys.executable, "-c", blocker], cwd=out, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1600"):
        options.add_argument(flag)
    driver = None
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(120):  # the server answers within a minute
            try:
                urllib.request.urlopen(url, timeout=2).read(1)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        driver.get(url)
        for _ in range(60):
            if driver.find_elements(By.CSS_SELECTOR, "#leaderboard .virtual-row[role=row]"):
                break
            time.sleep(0.5)
        rows = _grid(driver)
        data = json.loads((out / "data" / "leaderboard.json").read_text())
        shown = {r["Model"]: r for r in rows}
        for row in data["rows"]:  # every model, every accuracy
            cells = shown[row["model"]]
            for task, accuracy in row["accuracy"].items():
                assert float(cells[data["task_names"][task]]) == pytest.approx(accuracy, abs=0.005), (row["model"], task)
        measured = {(e["model"], e["task"]): 100 * e["accuracy"] for e in _rows(evaluated / "eval" / "leaderboard.jsonl")}
        for (model, task), accuracy in measured.items():
            assert float(shown[model][task]) == pytest.approx(accuracy, abs=0.005)
        assert sum(r["Kind"] == "paper (reference)" for r in rows) == 3
        assert shown["crepe-layer-7"]["Model"] == "crepe-layer-7"  # a link's text
        assert driver.find_element(By.LINK_TEXT, "crepe-layer-7").get_attribute("href") == \
            "https://huggingface.co/my-org/crepe-layer-7"
        # sort by a task column from its header menu
        before = [r["Model"] for r in rows]
        menu = driver.find_element(By.CSS_SELECTOR, '#leaderboard th[title="synth_pitch"] button[aria-label="Open cell menu"]')
        driver.execute_script("arguments[0].click()", menu)
        time.sleep(0.5)
        next(b for b in driver.find_elements(By.CSS_SELECTOR, "button") if b.text == "Sort descending").click()
        time.sleep(1.5)
        after = _grid(driver)
        values = [float(r["synth_pitch"]) for r in after if r["synth_pitch"]]
        assert values == sorted(values, reverse=True) and [r["Model"] for r in after] != before
        # the heatmap of the model's layer-wise study loads
        image = driver.find_element(By.CSS_SELECTOR, "#heatmap img")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 100
        assert "M = " in driver.find_element(By.CSS_SELECTOR, "#study-details").text
        driver.save_screenshot(str(tmp_path / "space.png"))
        assert (tmp_path / "space.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
