"""Automatic choice of the middle (M) and late (L) layers to fuse, from a layer-wise study.

The paper's rule: L = the best average over the "late" tasks, M = the best average over the "middle"
tasks; ties go to the shallower layer, and M = L is resolved with the middle group's second best.
Groups are given (``late_tasks``), the paper's (its nine tasks) or derived from the study.
``select_on="valid"`` (default) reads validation accuracies, ``"test"`` the paper's practice.
:func:`refine_with_pairs` (``--rule pairs``) probes the best few (M, L) pairs as fused features.
The full rule, with the derived groups: docs/concepts.md and docs/design.md.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from ..protocol import PAPER_LATE_TASKS, PAPER_TASKS, SELECT_ON
from .study import BASELINE_LAYERS
from .study import layer_sort_key as _layer_key

_ALIASES = {"vf": "voxforge", "crmd": "cremad", "urbansound8k": "us8k", "speechcommandsv2": "spcv2",
            "voxceleb1": "vc1", "nsynthinstrument": "nsynth"}


def canonical_task(name: str) -> str:
    """Lower-case, strip '-', '_', ' ' and map common aliases: 'ESC-50' -> 'esc50', 'CRM-D' -> 'cremad'."""
    key = re.sub(r"[-_\s]", "", str(name).lower())
    return _ALIASES.get(key, key)


@dataclass
class LayerChoice:
    """The chosen layers and the numbers behind the choice (accuracies are fractions in [0, 1]).

    middle, late: chosen layers M and L.
    groups: {"middle": [tasks], "late": [tasks]}; group_source: "user", "paper", "derived" or
        "derived-single".
    middle_average / late_average: {layer: mean accuracy over the group's tasks}.
    best_layer_per_task: {task: layer with its best accuracy}.
    m_equals_l: True when the middle group's best layer was L and the second best was taken.
    selected_on: "valid" (validation accuracy) or "test" (the paper's practice) or "given" (a plain
        {task: {layer: accuracy}} mapping, whatever it holds).
    late_not_deeper: True when L is shallower than M (int layers); ``warning`` explains it.
    pairs: ``--rule pairs`` only: {"A-B" (depth order): mean fused accuracy over all tasks} of the candidates, and
        ``pairs_cost`` {"probes": n, "seconds": s}.
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
    selected_on: str = "given"
    late_not_deeper: bool = False
    warning: str = ""
    rule_name: str = "groups"
    pairs: dict | None = None
    pairs_cost: dict | None = None

    @property
    def fusion_layers(self) -> list:
        """[M, L] in depth order (shallower first), the layers of the fused model and its name."""
        pair = [self.middle, self.late]
        if all(isinstance(x, (int, np.integer)) for x in pair):
            return sorted(int(x) for x in pair)
        return pair

    @property
    def name_suffix(self) -> str:
        """'M-L' in depth order, as in 'vggish-fusion-10-15'."""
        return "-".join(str(x) for x in self.fusion_layers)

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


def _as_matrix(table, select_on: str) -> tuple[dict[str, dict], str]:
    """({task: {layer: accuracy}} without the baseline rows, what was read)."""
    matrix, selected_on = _read_matrix(table, select_on)
    return {t: {l: a for l, a in per.items() if l not in BASELINE_LAYERS} for t, per in matrix.items()}, selected_on


def _read_matrix(table, select_on: str) -> tuple[dict[str, dict], str]:
    if select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {SELECT_ON}, got {select_on!r}")
    if hasattr(table, "matrix"):
        if not table.has_metric(select_on):
            raise ValueError(
                f"the study has no {'validation' if select_on == 'valid' else 'test'} accuracy for every row "
                "(a layerwise.csv written before validation accuracies were recorded?); re-run the study, or "
                "choose on test accuracy as the paper did (select_on='test', CLI --select-on test)")
        return table.matrix(select_on), select_on
    if isinstance(table, Mapping):
        matrix = {str(t): dict(per) for t, per in table.items()}
        for t, per in matrix.items():
            for layer, acc in per.items():
                if not (isinstance(acc, (int, float, np.floating)) and math.isfinite(acc) and 0 <= acc <= 1):
                    raise ValueError(f"choose_layers: task {t!r}, layer {layer!r}: accuracy {acc!r} is not a "
                                     "finite fraction in [0, 1]")
        return matrix, "given"
    raise TypeError(f"expected a LayerwiseStudy or {{task: {{layer: accuracy}}}}, got {type(table).__name__}")


def _argmax_first(values: Sequence[float]) -> int:
    arr = np.asarray(values, dtype=float)
    if np.all(np.isnan(arr)):
        raise ValueError("no layer has an accuracy for this group")
    return int(np.nanargmax(arr))  # first maximum -> shallower layer on ties


def derive_groups(matrix: Mapping[str, Mapping], layers: Sequence) -> tuple[dict, dict, str]:
    """Derived rule (docs/design.md, selection.py): returns (groups, best_layer_per_task, source)."""
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
                  use_paper_groups: bool = True, select_on: str = "valid") -> LayerChoice:
    """Choose M and L from a `LayerwiseStudy` or a {task: {layer: accuracy}} mapping.

    `late_tasks` / `middle_tasks` override the groups; `use_paper_groups=False` forces the derived rule
    even for the paper's task names. `select_on`: which accuracy of a `LayerwiseStudy` is read,
    "valid" (default, no test leakage) or "test" (the paper's practice).
    """
    matrix, selected_on = _as_matrix(table, select_on)
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
    choice = LayerChoice(middle=M, late=L, groups=groups, group_source=source, layers=list(layers),
                         middle_average=middle_avg, late_average=late_avg, best_layer_per_task=best,
                         m_equals_l=m_equals_l, rule=_RULES[source] + (_M_EQ_L if m_equals_l else "")
                         + _SELECTED_ON[selected_on], selected_on=selected_on)
    return _check_depth(choice)


def _check_depth(choice: LayerChoice) -> LayerChoice:
    """Set ``late_not_deeper`` and its warning when L is shallower than M (int layers)."""
    M, L = choice.middle, choice.late
    choice.late_not_deeper = bool(isinstance(M, (int, np.integer)) and isinstance(L, (int, np.integer)) and L < M)
    choice.warning = "" if not choice.late_not_deeper else (
        f"L = layer {L} (best on the late tasks {choice.groups['late']}) is shallower than M = layer {M} (best on the "
        f"middle tasks {choice.groups['middle']}): the middle/late split does not hold for these tasks. The fused "
        f"layers are named in depth order, {'-'.join(map(str, choice.fusion_layers))}.")
    return choice


def refine_with_pairs(choice: LayerChoice, probe_pair, top_k: int = 3) -> LayerChoice:
    """The ``pairs`` rule: probe fused candidates and keep the best mean accuracy over all tasks.

    Candidates: every pair of distinct layers from the ``top_k`` best layers of the middle average and
    the ``top_k`` best of the late average (unordered, the group rule's own pair first).
    ``probe_pair(layers) -> {task: ProbeResult}`` probes one fused feature set (cached features, no model
    pass); the score is the mean over tasks of ``valid_mean`` (``select_on="valid"``) or ``accuracy``.
    Ties keep the earlier candidate. Returns a new LayerChoice with ``pairs`` and ``pairs_cost``.
    """
    import time

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")

    def top(avg):
        ranked = sorted((l for l in choice.layers if not math.isnan(avg[l])), key=lambda l: (-avg[l], _layer_key(l)))
        return ranked[:top_k]

    candidates = [(choice.middle, choice.late)]
    for m in top(choice.middle_average):
        for l in top(choice.late_average):
            if m != l and {m, l} not in [set(c) for c in candidates]:
                candidates.append((m, l))
    start, scores, probes = time.perf_counter(), {}, 0
    key = "accuracy" if choice.selected_on == "test" else "valid_mean"
    for m, l in candidates:
        results = probe_pair(sorted([m, l], key=_layer_key))
        probes += len(results)
        scores[(m, l)] = float(np.mean([getattr(r, key) for r in results.values()]))
    best = max(candidates, key=lambda c: scores[c])  # max keeps the first of equal scores
    out = LayerChoice(**{**asdict(choice), "middle": best[0], "late": best[1]})
    out.rule_name = "pairs"
    out.pairs = {"-".join(str(x) for x in sorted([m, l], key=_layer_key)): s for (m, l), s in scores.items()}
    out.pairs_cost = {"probes": probes, "candidates": len(candidates),
                      "seconds": round(time.perf_counter() - start, 3)}
    out.rule = (choice.rule + f" Pairs rule: {len(candidates)} candidate pairs from the top {top_k} layers of each "
                f"group were probed as fused features; kept the best mean {'test' if key == 'accuracy' else 'validation'}"
                " accuracy over all tasks.")
    return _check_depth(out)


_RULES = {
    "user": "L = best mean accuracy over the user's late tasks; M = best mean over the user's middle tasks.",
    "paper": "Paper rule: L = best mean accuracy over esc50/us8k/gtzan; M = best mean over the other tasks.",
    "derived": ("Derived groups: a task is late when its best layer lies in the deeper half of the span of all "
                "tasks' best layers; L = best mean over late tasks, M = best mean over middle tasks."),
    "derived-single": ("Derived groups: every task peaks at the same layer, so both groups are all tasks; "
                       "L = best mean accuracy, M = the best other layer."),
}
_M_EQ_L = " The middle group's best layer equalled L, so M is its second-best layer."
_SELECTED_ON = {
    "valid": " Chosen on validation accuracy (the test sets were not read).",
    "test": " Chosen on test accuracy, as in the paper (the test sets influenced the choice).",
    "given": "",
}
