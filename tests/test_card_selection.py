"""The card's "Why these layers" section: prose and tables from a real selection.json, never raw JSON."""

import re
from types import SimpleNamespace

from hf_fusion.evaluation import LayerwiseStudy, choose_layers, refine_with_pairs
from hf_fusion.hub import cards


def _study():
    """Task `ev` (late) peaks at layer 12, tasks `pi` and `ti` (middle) at 5; test = valid - 0.01."""
    rows = []
    for task, peak in (("ev", 12), ("pi", 5), ("ti", 5)):
        for layer in range(1, 13):
            valid = 0.9 - 0.04 * abs(layer - peak)
            rows.append({"layer": layer, "task": task, "accuracy": valid - 0.01, "std": 0.01, "lr": 1e-3,
                         "valid_accuracy": valid})
    return LayerwiseStudy(rows=rows)


def _section(card_text: str) -> str:
    return re.split(r"\n#{2,3} ", card_text.split("### Why these layers", 1)[1], maxsplit=1)[0]


def test_selection_section_is_prose_and_a_table(tiny_ast_config):
    choice = choose_layers(_study(), late_tasks=["ev"])
    assert (choice.middle, choice.late) == (5, 12)
    text = str(cards.render_model_card(tiny_ast_config, "org/ast-fusion-5-12", selection=choice.to_dict()))
    section = _section(text)
    assert "M = 5 (middle layer) and L = 12 (late layer)" in section
    assert "reading the validation accuracies" in section and "the test sets were not read" in section
    assert "late tasks (`ev`)" in section and "middle tasks (`pi`, `ti`)" in section and "groups given by hand" in section
    rows = {cells[0]: cells[1:] for cells in
            (re.split(r"\s*\|\s*", line.strip("| ")) for line in section.splitlines() if re.match(r"\| \**\d", line))}
    assert list(rows) == [str(l) if l not in (5, 12) else f"**{l} ({'M' if l == 5 else 'L'})**" for l in range(1, 13)]
    assert rows["**5 (M)**"][:2] == ["90.0", "62.0"]  # middle mean 0.90, late (ev at 5) 0.9 - 0.28
    assert rows["**12 (L)**"] == ["62.0", "90.0", "ev"] and rows["**5 (M)**"][2] == "pi, ti"
    assert not re.search(r"[{}\[\]\"]", section)  # no JSON left in the section


def test_pairs_candidates_table(tiny_ast_config):
    choice = choose_layers(_study(), late_tasks=["ev"], select_on="test")

    def probe(layers):  # a fused pair's score: the mean of its layers' test accuracies
        score = 0.5 + 0.01 * sum(layers)
        return {t: SimpleNamespace(valid_mean=score, accuracy=score) for t in ("ev", "pi", "ti")}

    choice = refine_with_pairs(choice, probe, top_k=2)
    layers = choice.fusion_layers
    config = type(tiny_ast_config)(**{**tiny_ast_config.to_dict(), "fusion_layers": layers})
    section = _section(str(cards.render_model_card(config, "org/x", selection=choice.to_dict())))
    assert "reading the test accuracies" in section and "pairs rule then probed" in section
    pair_rows = [line for line in section.splitlines() if re.match(r"\| \**\d+-\d+", line)]
    assert len(pair_rows) == len(choice.pairs) and f"**{choice.name_suffix}** (chosen)" in pair_rows[0]


def test_plain_selection_keeps_a_readable_table(tiny_ast_config):
    selection = {"M": 5, "L": 12, "group_averages": {"middle": 0.62, "late": 0.58}, "tasks": ["a", "b"]}
    section = _section(str(cards.render_model_card(tiny_ast_config, "org/x", selection=selection)))
    assert "| group_averages.middle | 62.0 |" in section and "| tasks | a, b |" in section
    assert not re.search(r"[{}\[\]\"]", section)
