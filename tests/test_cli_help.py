"""`hf-fusion --help` is fast: building the parser and every --help import neither torch nor transformers
(nor datasets), and every option of every subcommand has a help text. No timing assertion here: the
wall times are in scripts/bench_cli_help.py and docs/performance.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets")

PROBE = r"""
import argparse, contextlib, io, json, sys
import hf_fusion.app.cli as cli

parser = cli.build_parser()
report = {"after_build": [m for m in HEAVY if m in sys.modules], "help": {}, "missing_help": [], "errors": {}}
sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
for argv in [[]] + [[name] for name in sub.choices]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli.main([*argv, "--help"])
    report["help"][" ".join(argv) or "-"] = out.getvalue()
for name, p in sub.choices.items():
    for action in p._actions:
        if action.option_strings and action.dest != "help" and not (action.help or "").strip():
            report["missing_help"].append(f"{name} {action.option_strings[0]}")
    err = io.StringIO()  # an argument error exits before any heavy import too
    with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        cli.main([name, "--no-such-option"])
    report["errors"][name] = err.getvalue()
report["after_help"] = [m for m in HEAVY if m in sys.modules]
print(json.dumps(report))
""".replace("HEAVY", repr(HEAVY))


def _probe():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_parser_and_help_import_no_heavy_library_and_every_option_has_help():
    report = _probe()
    assert report["after_build"] == [], f"building the parser imported {report['after_build']}"
    assert report["after_help"] == [], f"--help / argument errors imported {report['after_help']}"
    assert report["missing_help"] == []
    helps = {k: " ".join(v.split()) for k, v in report["help"].items()}  # undo argparse's line wrapping
    assert set(helps) == {"-", "demo", "prepare", "extract", "layerwise", "select", "evaluate", "leaderboard",
                          "push"}
    assert all(text.startswith("usage: hf-fusion") for text in helps.values())
    # defaults are shown
    assert "(default: 16)" in helps["extract"] and "(default: 200)" in helps["layerwise"]
    assert "(default: tiny)" in helps["demo"] and "ast-fusion-5-12" in helps["push"]
    for name, err in report["errors"].items():  # a usage line and argparse's error (a missing required
        assert err.startswith("usage: hf-fusion") and "error:" in err, err  # option comes first)


def test_push_parser_is_still_importable_from_publish():
    """scripts/push_fusion_model.py and tests use hf_fusion.hub.publish's names; --help there stays complete."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "push_fusion_model.py"), "--help"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "--dry-run" in run.stdout and "vggish-fusion-10-15" in run.stdout
