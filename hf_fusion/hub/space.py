"""The leaderboard as a Gradio Space: a folder with ``app.py``, pinned ``requirements.txt``, a ``README.md``
with the Space front matter, and the data the page shows (``data/leaderboard.json``, each model's
layer-wise study and heatmap). The page itself needs only gradio and pandas, never hf_fusion; this
module never imports gradio.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..evaluation.leaderboard import load_leaderboard
from ..protocol import PAPER_LATE_TASKS, PAPER_TABLE_III, PAPER_TASK_NAMES, PAPER_TASKS

#: the gradio the Space runs (its ``sdk_version``) and the other pinned requirements of ``app.py``
GRADIO_VERSION = "6.31.0"
SPACE_REQUIREMENTS = {"pandas": "3.1.1"}
SPACE_APP = "space_app.py"
PAPER_URL = "https://arxiv.org/abs/2205.08138"
#: the paper's names of its fused models (Table III)
PAPER_MODEL_NAMES = {"vggish-fusion-10-15": "VGGish-Fusion#10#15", "cnn14-fusion-3-6": "CNN14-Fusion#3#6",
                     "ast-fusion-5-12": "AST-Fusion#5#12"}


class SpaceWarning(UserWarning):
    """Something in the leaderboard files the page shows in a way the user should know about."""


def _backbone_of(model: str) -> str:
    for marker in ("-fusion-", "-layer-"):
        if marker in model:
            return model.split(marker, 1)[0]
    return model.split("-", 1)[0]


def _group(task: str) -> str:
    return "late" if task in PAPER_LATE_TASKS else "middle" if task in PAPER_TASKS else "other"


def read_runs(files: Sequence[str | Path]) -> list[tuple[str, int, object]]:
    """(file, line, LeaderboardEntry) of every run, in file order; a malformed line is an error naming it
    (:func:`hf_fusion.evaluation.load_leaderboard`)."""
    runs = []
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such leaderboard file")
        lines = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
        runs += [(str(path), line, entry) for line, entry in zip(lines, load_leaderboard(path))]
    if not runs:
        raise ValueError(f"no leaderboard rows in {', '.join(map(str, files))}")
    return runs


def resolve_studies(studies, runs) -> dict[str, Path]:
    """{model: study folder} from ``{model: folder}`` or ``[(model or None, folder)]``; a folder without a model
    is the study of the fused model its selection.json chose (the one leaderboard model fusing M and L)."""
    pairs = list(studies.items()) if isinstance(studies, Mapping) else list(studies or [])
    models = list(dict.fromkeys(entry.model for _, _, entry in runs))
    out = {}
    for model, folder in pairs:
        folder = Path(folder)
        if model is None:
            choice = _read_json(folder / "selection.json")
            if choice.get("middle") is None:
                raise ValueError(f"--study {folder}: no selection.json with M and L there; give --study MODEL={folder}")
            layers = sorted({int(choice["middle"]), int(choice["late"])})
            fused = [m for m in models if "-fusion-" in m and m.endswith("-fusion-" + "-".join(map(str, layers)))]
            if len(fused) != 1:
                raise ValueError(f"--study {folder}: {len(fused)} leaderboard models fuse layers {layers} ({fused}); "
                                 f"give --study MODEL={folder}")
            model = fused[0]
        if model not in models:
            raise ValueError(f"--study names model {model!r} that no leaderboard row has (models: {models})")
        out[str(model)] = folder
    return out


def leaderboard_data(files: Sequence[str | Path], studies=None, org: str | None = None,
                     runs: list | None = None) -> tuple[dict, list[str]]:
    """The page's data (JSON-able) and the warnings said about the files: a (model, task) evaluated more
    than once (the latest run by date is shown; every line is named), a task the paper did not use (shown in
    the "other" group). ``studies``: {model: folder with layerwise.csv (+ layerwise.png, selection.json)};
    ``org``: the Hub organisation the models are published under (their names link there); ``runs``: the
    files' :func:`read_runs`, when already read."""
    runs = read_runs(files) if runs is None else runs
    studies = resolve_studies(studies, runs)
    said, latest, seen = [], {}, {}
    for where, line, entry in runs:
        key = (entry.model, entry.task)
        seen.setdefault(key, []).append(f"{where}:{line}")
        if key not in latest or entry.date >= latest[key][2].date:
            latest[key] = (where, line, entry)
        if _group(entry.task) == "other" and not any(w.endswith(f"task {entry.task!r}") for w in said):
            said.append(f"{where}:{line}: the paper did not use task {entry.task!r}")
    said += [f"{', '.join(lines)}: {model} / {task} evaluated {len(lines)} times; the latest run "
             f"({latest[(model, task)][0]}:{latest[(model, task)][1]}) is shown" for (model, task), lines in seen.items()
             if len(lines) > 1]
    tasks = list(dict.fromkeys(task for _, _, entry in runs for task in [entry.task]))
    tasks = [t for t in PAPER_TASKS if t in tasks] + [t for t in tasks if t not in PAPER_TASKS]
    rows = []
    for model in dict.fromkeys(entry.model for _, _, entry in runs):
        entries = {task: latest[(model, task)][2] for task in tasks if (model, task) in latest}
        first = next(iter(entries.values()))
        selection = _read_json(studies[model] / "selection.json") if model in studies else {}
        protocol = first.extra.get("protocol", {})
        rows.append({
            "model": model, "reference": False, "backbone": _backbone_of(model),
            "layers": list(first.layers), "middle": selection.get("middle"), "late": selection.get("late"),
            "rule": selection.get("rule_name") or ("paper groups" if selection else None),
            "selected_on": selection.get("selected_on"), "date": max(e.date for e in entries.values())[:10],
            "protocol": ", ".join(f"{k} {v}" for k, v in protocol.items()) if protocol else None,
            "link": f"https://huggingface.co/{org}/{model}" if org else None,
            "accuracy": {task: round(100 * e.accuracy, 2) for task, e in entries.items()},
        })
    for name, values in PAPER_TABLE_III.items():  # the paper's own rows, for reference
        backbone = name.split("-fusion-", 1)[0]
        layers = [int(x) for x in name.split("-fusion-", 1)[1].split("-")]
        rows.append({"model": f"{PAPER_MODEL_NAMES[name]} (paper)", "reference": True, "backbone": backbone,
                     "layers": layers, "middle": layers[0], "late": layers[1], "rule": "paper groups",
                     "selected_on": "test", "date": "2022", "protocol": "the paper's (Table III)", "link": PAPER_URL,
                     "accuracy": {task: value for task, value in zip(PAPER_TASKS, values) if task in tasks}})
    models = {}
    for model, folder in studies.items():
        entry = {"layerwise": f"data/studies/{model}/layerwise.csv"}
        if (folder / "layerwise.png").is_file():
            entry["heatmap"] = f"data/studies/{model}/layerwise.png"
        models[model] = entry
    data = {"tasks": tasks, "task_names": {t: PAPER_TASK_NAMES.get(t, t) for t in tasks},
            "groups": {t: _group(t) for t in tasks}, "rows": rows, "models": models}
    return data, said


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}
    except ValueError as err:
        raise ValueError(f"{path}: not a JSON file ({err})") from None


def space_readme(title: str, license: str = "apache-2.0") -> str:
    """The Space's README.md: its front matter (``sdk: gradio``, the pinned ``sdk_version``) and a line."""
    return (f"---\ntitle: {title}\ncolorFrom: blue\ncolorTo: indigo\nsdk: gradio\nsdk_version: {GRADIO_VERSION}\n"
            f"app_file: app.py\npinned: false\nlicense: {license}\n---\n\n"
            f"# {title}\n\nFused multilayer audio representations (Niizumi et al., 2022, {PAPER_URL}) evaluated "
            "with the paper's linear-evaluation protocol, with the paper's Table III rows for reference. Built "
            "by `hf-fusion leaderboard --space`.\n")


def build_space(files: Sequence[str | Path], out_dir: str | Path, studies=None, org: str | None = None,
                title: str = "hf-fusion leaderboard") -> tuple[Path, list[str]]:
    """Write the Space folder ``out_dir`` from leaderboard files (all their rows) -> (folder, warnings said).

    The folder runs as is on a Space (``app.py`` + ``requirements.txt``), or locally with
    ``python app.py``; rebuilding it from a leaderboard with more rows updates its data."""
    from .cards import templates_dir

    runs = read_runs(files)
    studies = resolve_studies(studies, runs)
    data, said = leaderboard_data(files, studies, org, runs=runs)
    out = Path(out_dir)
    if (out / "data").exists():
        shutil.rmtree(out / "data")
    (out / "data").mkdir(parents=True, exist_ok=True)
    for model, folder in studies.items():
        target = out / "data" / "studies" / str(model)
        target.mkdir(parents=True, exist_ok=True)
        if not (Path(folder) / "layerwise.csv").is_file():
            raise FileNotFoundError(f"--study {model}={folder}: no layerwise.csv there (hf-fusion layerwise --out)")
        for name in ("layerwise.csv", "layerwise.png", "selection.json"):
            if (Path(folder) / name).is_file():
                shutil.copyfile(Path(folder) / name, target / name)
        selection = _read_json(target / "selection.json")
        if selection.get("middle") is not None:  # the heatmap drawn again with M and L marked
            from ..evaluation import LayerwiseStudy
            from ..evaluation.study import plot_heatmap

            study = LayerwiseStudy.from_csv(target / "layerwise.csv")
            plot_heatmap(study, target / "layerwise.png", groups=selection.get("groups"), model=str(model),
                         marks={selection["middle"]: "M", selection["late"]: "L"})
            data["models"][str(model)]["heatmap"] = f"data/studies/{model}/layerwise.png"
    (out / "data" / "leaderboard.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    shutil.copyfile(templates_dir() / SPACE_APP, out / "app.py")
    requirements = {"gradio": GRADIO_VERSION, **SPACE_REQUIREMENTS}
    (out / "requirements.txt").write_text("".join(f"{k}=={v}\n" for k, v in requirements.items()))
    (out / "README.md").write_text(space_readme(title))
    for line in said:
        warnings.warn(line, SpaceWarning, stacklevel=2)
    return out, said


def check_space_folder(folder: str | Path) -> None:
    """Refuse a folder that a Space cannot run: no app.py, requirements.txt, data or front matter."""
    folder = Path(folder)
    missing = [n for n in ("app.py", "requirements.txt", "README.md", "data/leaderboard.json") if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"{folder}: not a Space folder built by `hf-fusion leaderboard --space` (missing {missing})")
    readme = (folder / "README.md").read_text(encoding="utf-8")
    if not readme.startswith("---\n") or "sdk: gradio" not in readme.split("---", 2)[1]:
        raise ValueError(f"{folder}/README.md has no Space front matter with sdk: gradio")
