"""Automatic choice of the middle (M) and late (L) layers to fuse, from a layer-wise study.

The paper's rule: L = the layer with the best average accuracy over the "late" task group
(ESC-50, US8K, GTZAN: tasks close to the AudioSet pre-training), M = the layer with the best
average over the "middle" group (all other tasks).

Groups come from, in order of precedence:
1. "user": `late_tasks` given explicitly (`middle_tasks` defaults to every other task);
2. "paper": every task is one of the paper's nine and at least one late and one middle task are
   present: late = esc50, us8k, gtzan; middle = the rest;
3. "derived": otherwise, from the study itself. Each task's best layer is located by its position
   p_t in the ordered list of studied layers (ties -> the shallower layer). With lo = min p_t and
   hi = max p_t, a task is "late" when its best layer lies in the deeper half of that span,
   p_t > (lo + hi) / 2, and "middle" otherwise. This is a threshold at the centre of the range of
   best layers, so it needs no task names and separates "peaks deep" from "peaks early" tasks; when
   every task peaks at the same layer no split exists and both groups are all tasks ("derived-single").

Ties in the averages go to the shallower layer. If the best middle-group layer equals L, M becomes
the best middle-group layer among the other layers (the second best), and `m_equals_l` records it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

PAPER_TASKS = ("esc50", "us8k", "spcv2", "vc1", "voxforge", "cremad", "gtzan", "nsynth", "surge")
PAPER_LATE_TASKS = ("esc50", "us8k", "gtzan")
_ALIASES = {"vf": "voxforge", "crmd": "cremad", "urbansound8k": "us8k", "speechcommandsv2": "spcv2",
            "voxceleb1": "vc1", "nsynthinstrument": "nsynth"}


def canonical_task(name: str) -> str:
    """Lower-case, strip '-', '_', ' ' and map common aliases: 'ESC-50' -> 'esc50', 'CRM-D' -> 'cremad'."""
    key = re.sub(r"[-_\s]", "", str(name).lower())
    return _ALIASES.get(key, key)


def _layer_key(layer):
    return (0, layer, "") if isinstance(layer, (int, np.integer)) else (1, 0, str(layer))


@dataclass
class LayerChoice:
    """The chosen layers and the numbers behind the choice (accuracies are fractions in [0, 1]).

    middle, late: chosen layers M and L.
    groups: {"middle": [tasks], "late": [tasks]}; group_source: "user", "paper", "derived" or
        "derived-single".
    middle_average / late_average: {layer: mean accuracy over the group's tasks}.
    best_layer_per_task: {task: layer with its best accuracy}.
    m_equals_l: True when the middle group's best layer was L and the second best was taken.
    """

    middle: object
    late: object
    groups: dict
    group_source: str
    layers: list
    middle_average: dict
    late_average: dict
    best_layer_per_task: dict
    m_equals_l: bool
    rule: str

    @property
    def name_suffix(self) -> str:
        """'M-L', as in 'vggish-fusion-10-15'."""
        return f"{self.middle}-{self.late}"

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("middle_average", "late_average"):
            d[k] = {str(l): (None if v is None or math.isnan(v) else v) for l, v in d[k].items()}
        return d

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from pathlib import Path

            Path(path).write_text(text)
        return text


def _as_matrix(table) -> dict[str, dict]:
    if hasattr(table, "matrix"):
        return table.matrix()
    if isinstance(table, Mapping):
        return {str(t): dict(per) for t, per in table.items()}
    raise TypeError(f"expected a LayerwiseStudy or {{task: {{layer: accuracy}}}}, got {type(table).__name__}")


def _argmax_first(values: Sequence[float]) -> int:
    arr = np.asarray(values, dtype=float)
    if np.all(np.isnan(arr)):
        raise ValueError("no layer has an accuracy for this group")
    return int(np.nanargmax(arr))  # first maximum -> shallower layer on ties


def derive_groups(matrix: Mapping[str, Mapping], layers: Sequence) -> tuple[dict, dict, str]:
    """Derived rule (see module docstring): returns (groups, best_layer_per_task, source)."""
    pos, best = {}, {}
    for task, per in matrix.items():
        i = _argmax_first([per.get(l, np.nan) for l in layers])
        pos[task], best[task] = i, layers[i]
    lo, hi = min(pos.values()), max(pos.values())
    if hi == lo:
        tasks = list(matrix)
        return {"middle": tasks, "late": list(tasks)}, best, "derived-single"
    mid = (lo + hi) / 2
    late = [t for t in matrix if pos[t] > mid]
    middle = [t for t in matrix if pos[t] <= mid]
    return {"middle": middle, "late": late}, best, "derived"


def choose_layers(table, late_tasks: Sequence[str] | None = None, middle_tasks: Sequence[str] | None = None,
                  use_paper_groups: bool = True) -> LayerChoice:
    """Choose M and L from a `LayerwiseStudy` or a {task: {layer: accuracy}} mapping.

    `late_tasks` / `middle_tasks` override the groups; `use_paper_groups=False` forces the derived rule
    even for the paper's task names.
    """
    matrix = _as_matrix(table)
    if not matrix:
        raise ValueError("choose_layers: empty table")
    layers = sorted({l for per in matrix.values() for l in per}, key=_layer_key)
    if len(layers) < 2:
        raise ValueError(f"choose_layers: need at least 2 layers to choose a middle and a late one, got {layers}")
    tasks = list(matrix)
    best = {t: layers[_argmax_first([matrix[t].get(l, np.nan) for l in layers])] for t in tasks}

    if late_tasks is not None:
        unknown = [t for t in list(late_tasks) + list(middle_tasks or []) if t not in matrix]
        if unknown:
            raise ValueError(f"choose_layers: tasks {unknown} are not in the table (tasks: {tasks})")
        late = list(late_tasks)
        middle = list(middle_tasks) if middle_tasks is not None else [t for t in tasks if t not in late]
        if not late or not middle:
            raise ValueError(f"choose_layers: both groups need tasks, got late={late}, middle={middle}")
        groups, source = {"middle": middle, "late": late}, "user"
    else:
        canon = {t: canonical_task(t) for t in tasks}
        paper_late = [t for t in tasks if canon[t] in PAPER_LATE_TASKS]
        paper_ok = use_paper_groups and all(c in PAPER_TASKS for c in canon.values())
        if paper_ok and paper_late and len(paper_late) < len(tasks):
            groups = {"middle": [t for t in tasks if t not in paper_late], "late": paper_late}
            source = "paper"
        else:
            groups, best, source = derive_groups(matrix, layers)

    def group_avg(group):
        return {l: float(np.nanmean([matrix[t].get(l, np.nan) for t in group]))
                if any(not math.isnan(matrix[t].get(l, np.nan)) for t in group) else float("nan") for l in layers}

    late_avg, middle_avg = group_avg(groups["late"]), group_avg(groups["middle"])
    L = layers[_argmax_first([late_avg[l] for l in layers])]
    M = layers[_argmax_first([middle_avg[l] for l in layers])]
    m_equals_l = M == L
    if m_equals_l:
        M = layers[_argmax_first([middle_avg[l] if l != L else np.nan for l in layers])]
    return LayerChoice(middle=M, late=L, groups=groups, group_source=source, layers=list(layers),
                       middle_average=middle_avg, late_average=late_avg, best_layer_per_task=best,
                       m_equals_l=m_equals_l, rule=_RULES[source] + (_M_EQ_L if m_equals_l else ""))


_RULES = {
    "user": "L = best mean accuracy over the user's late tasks; M = best mean over the user's middle tasks.",
    "paper": "Paper rule: L = best mean accuracy over esc50/us8k/gtzan; M = best mean over the other tasks.",
    "derived": ("Derived groups: a task is late when its best layer lies in the deeper half of the span of all "
                "tasks' best layers; L = best mean over late tasks, M = best mean over middle tasks."),
    "derived-single": ("Derived groups: every task peaks at the same layer, so both groups are all tasks; "
                       "L = best mean accuracy, M = the best other layer."),
}
_M_EQ_L = " The middle group's best layer equalled L, so M is its second-best layer."
