"""Result tables (paper Table III / IV style) and an append-only leaderboard file with provenance.

Accuracies are stored as fractions in [0, 1] (CSV, JSON, JSONL) and rendered as percentages in
markdown. The leaderboard is JSON Lines, one run per line; `append_entries` rewrites the file
through a temporary file + `os.replace` under an exclusive lock, so a crash mid-write leaves the
previous file intact and concurrent writers cannot lose each other's rows.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..protocol import PAPER_TASKS
from .selection import canonical_task

VERSION_PACKAGES = ("hf-fusion", "torch", "transformers", "datasets", "evaluate", "huggingface_hub", "numpy")


def package_versions(packages: Sequence[str] = VERSION_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape a result ("not installed" when absent)."""
    from importlib import metadata

    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    if out.get("hf-fusion") == "not installed":
        try:
            from hf_fusion import __version__ as v  # source checkout

            out["hf-fusion"] = str(v)
        except Exception:  # noqa: BLE001 - provenance is best effort
            pass
    return out


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


@dataclass
class LeaderboardEntry:
    """One evaluated (model, task) run. accuracy/std are fractions in [0, 1]; date is ISO 8601 UTC."""

    model: str
    task: str
    accuracy: float
    std: float | None = None
    lr: float | None = None
    seeds: list = field(default_factory=list)
    layers: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    date: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.model or not self.task:
            raise ValueError(f"leaderboard entry needs a model and a task, got model={self.model!r} task={self.task!r}")
        acc = _num(self.accuracy)
        if acc is None or not 0.0 <= acc <= 1.0:
            raise ValueError(f"leaderboard entry {self.model}/{self.task}: accuracy must be a fraction in [0, 1], got {self.accuracy}")
        self.accuracy, self.std, self.lr = acc, _num(self.std), _num(self.lr)
        self.seeds, self.layers = list(self.seeds), list(self.layers)
        if not self.date:
            self.date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        if not self.versions:
            self.versions = package_versions()

    @classmethod
    def from_probe(cls, model: str, layers: Sequence, result, **extra) -> "LeaderboardEntry":
        """Entry from a `ProbeResult` (task, accuracy, std, lr, seeds are taken from it)."""
        return cls(model=model, task=result.task, accuracy=result.accuracy, std=result.std, lr=result.lr,
                   seeds=list(result.seeds), layers=list(layers),
                   extra={"per_seed": result.per_seed, "dim": result.dim, "num_classes": result.num_classes,
                          "protocol": {k: result.config[k] for k in ("lrs", "batch_size", "max_epochs", "patience")},
                          **extra})

    def to_dict(self) -> dict:
        return asdict(self)


def _locked(path: Path):
    """Exclusive advisory lock on `<path>.lock` (POSIX flock; no-op where unavailable), removed again
    afterwards so no empty lock file is left beside the leaderboard (safe: see ``FileLock``)."""
    from ..extraction.locks import locked

    return locked(Path(str(path) + ".lock"), remove=True)


def _parse_lines(text: str, path) -> list[LeaderboardEntry]:
    entries = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(LeaderboardEntry(**json.loads(line)))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{i}: not a valid leaderboard row ({e}); the file was not modified") from e
    return entries


def load_leaderboard(path) -> list[LeaderboardEntry]:
    """Read every run in a JSONL leaderboard (an absent file is an empty leaderboard)."""
    path = Path(path)
    if not path.exists():
        return []
    return _parse_lines(path.read_text(encoding="utf-8"), path)


def _atomic_write(path: Path, data: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # persist the rename itself
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def append_entries(path, entries: Iterable[LeaderboardEntry] | LeaderboardEntry) -> list[LeaderboardEntry]:
    """Append runs to the leaderboard atomically; returns all runs now in the file.

    The existing file is validated first (a corrupt file raises and is left untouched), then old
    lines + new lines are written to a temporary file that replaces the old one in one rename.
    """
    path = Path(path)
    if isinstance(entries, LeaderboardEntry):
        entries = [entries]
    entries = [e if isinstance(e, LeaderboardEntry) else LeaderboardEntry(**e) for e in entries]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        existing = _parse_lines(old, path)
        if old and not old.endswith("\n"):
            old += "\n"
        new = "".join(json.dumps(e.to_dict(), sort_keys=True) + "\n" for e in entries)
        _atomic_write(path, old + new)
    return existing + entries


@dataclass
class ResultTable:
    """Rows x task columns of accuracies (fractions) with a row average.

    rows: [(name, [value per column or None], average or None)]; `incomplete` names rows whose
    average covers only the tasks present; `kind` is "accuracy" or "difference" per row.
    """

    columns: list
    rows: list
    kinds: list
    incomplete: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"columns": list(self.columns) + ["average"],
                "rows": [{"name": n, "kind": k, **dict(zip(self.columns, v)), "average": a}
                         for (n, v, a), k in zip(self.rows, self.kinds)],
                "incomplete": list(self.incomplete)}

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_csv(self, path=None) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", *self.columns, "average"])
        for name, vals, avg in self.rows:
            w.writerow([name, *("" if v is None else repr(float(v)) for v in vals), "" if avg is None else repr(float(avg))])
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_markdown(self, digits: int = 1) -> str:
        """Markdown table in percent; difference rows are signed percentage points."""
        def fmt(v, kind):
            if v is None:
                return "-"
            return f"{v * 100:+.{digits}f}" if kind == "difference" else f"{v * 100:.{digits}f}"

        head = "| | " + " | ".join(map(str, self.columns)) + " | Average |"
        sep = "|---|" + "---:|" * (len(self.columns) + 1)
        lines = [head, sep]
        for (name, vals, avg), kind in zip(self.rows, self.kinds):
            star = "*" if name in self.incomplete else ""
            lines.append(f"| {name} | " + " | ".join(fmt(v, kind) for v in vals) + f" | {fmt(avg, kind)}{star} |")
        if self.incomplete:
            lines.append("")
            lines.append("\\* average over the tasks this model has results for.")
        return "\n".join(lines) + "\n"


def _acc(v) -> float:
    if hasattr(v, "accuracy"):
        v = v.accuracy
    elif isinstance(v, Mapping):
        v = v["accuracy"]
    v = float(v)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {v}")
    return v


def _mean(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def fused_table(baseline: Mapping, fusion: Mapping, baseline_name: str = "baseline", fusion_name: str = "fusion",
                tasks: Sequence[str] | None = None) -> ResultTable:
    """Table III style: rows baseline, fusion, difference (fusion - baseline); task columns + average.

    `baseline` / `fusion` map task -> accuracy (a fraction, a ProbeResult or a dict with "accuracy").
    """
    if tasks is None:
        tasks = [t for t in baseline if t in fusion]
    missing = {n: [t for t in tasks if t not in d] for n, d in ((baseline_name, baseline), (fusion_name, fusion))}
    missing = {n: m for n, m in missing.items() if m}
    if missing:
        raise ValueError(f"fused_table: tasks without results: {missing}")
    if not tasks:
        raise ValueError("fused_table: baseline and fusion share no task")
    b = [_acc(baseline[t]) for t in tasks]
    f = [_acc(fusion[t]) for t in tasks]
    d = [y - x for x, y in zip(b, f)]
    rows = [(baseline_name, b, _mean(b)), (fusion_name, f, _mean(f)), ("difference", d, _mean(f) - _mean(b))]
    return ResultTable(columns=list(tasks), rows=rows, kinds=["accuracy", "accuracy", "difference"])


def _task_order(tasks: Iterable[str]) -> list[str]:
    seen = list(dict.fromkeys(tasks))
    paper = [t for t in seen if canonical_task(t) in PAPER_TASKS]
    paper.sort(key=lambda t: PAPER_TASKS.index(canonical_task(t)))
    return paper + [t for t in seen if t not in paper]


def leaderboard_table(entries: Iterable[LeaderboardEntry] | str | os.PathLike, tasks: Sequence[str] | None = None,
                      models: Sequence[str] | None = None) -> ResultTable:
    """Table IV style comparison: models as rows, tasks as columns, average.

    When a (model, task) has several runs the latest by date wins (file order breaks ties). A model
    missing some tasks averages over the tasks it has and is listed in `incomplete`.
    """
    if isinstance(entries, (str, os.PathLike)):
        entries = load_leaderboard(entries)
    entries = list(entries)
    latest: dict[tuple[str, str], tuple[str, int, LeaderboardEntry]] = {}
    for i, e in enumerate(entries):
        key = (e.model, e.task)
        if key not in latest or (e.date, i) >= latest[key][:2]:
            latest[key] = (e.date, i, e)
    tasks = list(tasks) if tasks is not None else _task_order(e.task for e in entries)
    models = list(models) if models is not None else list(dict.fromkeys(e.model for e in entries))
    rows, incomplete = [], []
    for m in models:
        vals = [latest[(m, t)][2].accuracy if (m, t) in latest else None for t in tasks]
        if any(v is None for v in vals):
            incomplete.append(m)
        rows.append((m, vals, _mean(vals)))
    return ResultTable(columns=tasks, rows=rows, kinds=["accuracy"] * len(rows), incomplete=incomplete)
