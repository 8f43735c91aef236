"""The documentation is tested with the code.

- ``mkdocs build --strict`` passes (no broken link or anchor, every API directive resolves); built into a
  temporary folder, never into the clone.
- The API reference documents every public name: ``hf_fusion.__all__`` and each subpackage's ``__all__``.
- Every ```bash / ```python block of README.md and docs/ either runs here (offline, in a temporary folder)
  or has a marker on the line before it: ``<!-- not run: <reason> -->`` or
  ``<!-- runs in tests/<file>.py -->`` (a test that runs it). A block with neither fails.
- The repository speaks of the project only: no development-history wording outside the changelog.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN_LANGUAGES = {"bash", "sh", "shell", "python", "py"}
MARKER = re.compile(r"^<!--\s*(not run:\s*(?P<why>.*?)|runs in\s+(?P<where>\S+?))\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def code_blocks(path: Path) -> list[dict]:
    """The fenced blocks of one Markdown file: language, body, line number, marker line (or None)."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = [s.strip() for s in text[: match.start()].splitlines() if s.strip()]
        marker = before[-1] if before and before[-1].startswith("<!--") else None
        blocks.append({"path": path, "line": line, "lang": match.group("lang").lower(), "body": match.group("body"),
                       "marker": marker, "id": f"{path.relative_to(ROOT)}:{line}"})
    return blocks


ALL_BLOCKS = [b for path in DOC_FILES for b in code_blocks(path)]
SHELL_OR_PYTHON = [b for b in ALL_BLOCKS if b["lang"] in RUN_LANGUAGES]


def _unique_runnable() -> list[dict]:
    seen, out = set(), []
    for block in SHELL_OR_PYTHON:
        key = (block["lang"], block["body"])
        if block["marker"] is None and key not in seen:  # identical blocks (README and a page) run once
            seen.add(key)
            out.append(block)
    return out


RUNNABLE = _unique_runnable()


# ------------------------------------------------------------------------------------------- markers


def test_every_shell_and_python_block_runs_here_or_says_why_not():
    assert SHELL_OR_PYTHON, "no code blocks found in README.md and docs/"
    problems = []
    for block in SHELL_OR_PYTHON:
        if block["marker"] is None:
            continue  # runs in test_code_block_runs
        match = MARKER.match(block["marker"])
        if match is None:
            problems.append(f"{block['id']}: unknown marker {block['marker']!r}")
        elif match.group("where") is not None and not (ROOT / match.group("where")).is_file():
            problems.append(f"{block['id']}: the marker names {match.group('where')}, which does not exist")
        elif match.group("why") is not None and not match.group("why").strip():
            problems.append(f"{block['id']}: 'not run' without a reason")
    assert not problems, "\n".join(problems)


def test_readme_and_cli_page_show_the_same_walkthrough():
    """docs/cli.md repeats the README's walkthrough block, which tests/test_readme_walkthrough.py runs."""
    marker = "<!-- runs in tests/test_readme_walkthrough.py -->"
    readme = [b["body"] for b in ALL_BLOCKS if b["path"].name == "README.md" and b["marker"] == marker]
    page = [b["body"] for b in ALL_BLOCKS if b["path"] == ROOT / "docs" / "cli.md" and b["marker"] == marker]
    assert len(readme) == 1 and page == readme


# ------------------------------------------------------------------------------------------ running


@pytest.fixture(scope="module")
def doc_env(tmp_path_factory):
    tools = tmp_path_factory.mktemp("bin")
    shim = tools / "hf-fusion"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hf_fusion.app.cli "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
            "HF_FUSION_CACHE": str(tmp_path_factory.mktemp("cache")), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
            "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


@pytest.mark.parametrize("block", RUNNABLE, ids=[b["id"] for b in RUNNABLE])
def test_code_block_runs(block, doc_env, tmp_path):
    if block["lang"] in {"python", "py"}:
        command = [sys.executable, "-c", block["body"]]
    else:
        command = ["bash", "-euo", "pipefail", "-c", block["body"]]
    run = subprocess.run(command, cwd=tmp_path, env=doc_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{block['id']} failed:\n{block['body']}\n--- stderr:\n{run.stderr[-3000:]}"


# ------------------------------------------------------------------------------------------ the site


def _have_mkdocs() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("mkdocs", "material", "mkdocstrings_handlers.python"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not _have_mkdocs():
        pytest.skip("mkdocs, mkdocs-material or mkdocstrings[python] is not installed (scripts/setup.sh --dev installs them)")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return out


def test_mkdocs_build_strict(site):
    assert (site / "index.html").is_file() and (site / "api" / "models" / "index.html").is_file()


def public_names() -> dict[str, list[str]]:
    """``{package: __all__}`` for hf_fusion and every subpackage that declares ``__all__``."""
    packages = ["hf_fusion"] + sorted(f"hf_fusion.{p.parent.name}" for p in (ROOT / "hf_fusion").glob("*/__init__.py"))
    out = {}
    for name in packages:
        module = importlib.import_module(name)
        if hasattr(module, "__all__"):
            out[name] = list(module.__all__)
    return out


def test_api_pages_name_every_public_name():
    text = "\n".join(p.read_text() for p in sorted((ROOT / "docs" / "api").glob("*.md")))
    listed = set(re.findall(r"^\s+- (\w+)\s*$", text, flags=re.MULTILINE))  # ::: directive members
    listed |= set(re.findall(r"\{ *#[\w.]*?\.(\w+) *\}", text))                # hand-written entries
    missing = {pkg: [n for n in names if n not in listed] for pkg, names in public_names().items()}
    missing = {pkg: names for pkg, names in missing.items() if names}
    assert not missing, f"public names missing from docs/api/*.md: {missing}"


def test_api_reference_renders_every_public_name(site):
    ids = set()
    for page in (site / "api").rglob("*.html"):
        ids |= set(re.findall(r'id="(hf_fusion\.[\w.]+)"', page.read_text()))
    leaves = {i.rsplit(".", 1)[-1] for i in ids}
    missing = {pkg: [n for n in names if n not in leaves] for pkg, names in public_names().items()}
    missing = {pkg: names for pkg, names in missing.items() if names}
    assert not missing, f"public names without an entry in the built API reference: {missing}"


# ------------------------------------------------------------------------------------ what the repo says


def _repo_text_files() -> list[Path]:
    skip = {".git", "site", "hf_fusion_out", "build", "dist", ".pytest_cache", "__pycache__"}
    files = []
    for path in ROOT.rglob("*"):
        if path.suffix in {".py", ".md"} and not skip & set(path.relative_to(ROOT).parts) and path.is_file():
            files.append(path)
    return files


# spelled with character classes so that this file does not match itself
HISTORY = re.compile(r"len[t] to|thi[s] session|agent[s]|issu[e] [0-9]+", re.IGNORECASE)


def test_no_development_history_wording_outside_the_changelog():
    hits = []
    for path in _repo_text_files():
        if path == ROOT / "docs" / "changelog.md":
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if HISTORY.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not hits, "\n".join(hits)


def test_module_docstrings_are_short():
    long = []
    for path in sorted((ROOT / "hf_fusion").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        if doc and len(doc.strip().splitlines()) > 10:
            long.append(f"{path.relative_to(ROOT)}: {len(doc.strip().splitlines())} lines")
    assert not long, "module docstrings over 10 lines (move the discussion to docs/):\n" + "\n".join(long)


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_readme_links_point_to_files_of_the_repo():
    """mkdocs checks the links of docs/; the README is not part of the site, so its relative links are checked here."""
    text = (ROOT / "README.md").read_text()
    targets = {m.split("#", 1)[0] for m in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", m)}
    missing = sorted(t for t in targets if t and not (ROOT / t).exists())
    assert not missing, f"README links to missing files: {missing}"


def test_python_imports_named_in_cards_and_docs_exist():
    """Every ``from hf_fusion... import names`` line in the card templates and the docs names a module that
    imports and names it defines (card code is shown on the Hub and never run here)."""
    pattern = re.compile(r"^\s*from (hf_fusion[\w.]*) import \(?([\w, ]+)", re.MULTILINE)
    pages = sorted((ROOT / "hub_cards").glob("*.md")) + sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
    broken = []
    for page in pages:
        for module_name, names in pattern.findall(page.read_text()):
            try:
                module = importlib.import_module(module_name)
            except ImportError as err:
                broken.append(f"{page.relative_to(ROOT)}: {module_name} ({err})")
                continue
            missing = [n for n in (x.strip() for x in names.split(",")) if n and not hasattr(module, n)
                       and importlib.util.find_spec(f"{module_name}.{n}") is None]
            broken += [f"{page.relative_to(ROOT)}: {module_name}.{n}" for n in missing]
    assert broken == []
