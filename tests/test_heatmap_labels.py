"""The layer-wise heatmap names the model, says colours are scaled per column and marks M and L."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402

from hf_fusion.evaluation import LayerwiseStudy, plot_heatmap  # noqa: E402


def _study():
    rows = [{"layer": l, "task": t, "accuracy": 0.1 * l + (0.05 if t == "b" else 0), "std": 0.0, "lr": 1e-3}
            for l in range(1, 8) for t in ("a", "b")]
    return LayerwiseStudy(rows=rows)


def _drawn(monkeypatch, **kwargs):
    """Draw into a real PNG and keep the figure's axes to read their labels."""
    seen = {}
    real = matplotlib.figure.Figure.savefig

    def savefig(fig, path, **kw):
        seen["ax"] = fig.axes[0]
        return real(fig, path, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return seen


def test_title_names_model_and_scaling_and_marks(tmp_path, monkeypatch):
    seen = _drawn(monkeypatch)
    path = plot_heatmap(_study(), tmp_path / "h.png", groups={"middle": ["a"], "late": ["b"]}, model="crepe-tiny",
                        marks={2: "M", 6: "L"})
    assert path.read_bytes()[:4] == b"\x89PNG"
    ax = seen["ax"]
    title = ax.get_title()
    assert title.startswith("crepe-tiny: ") and "colours scaled per column" in title and "M = layer 2, L = layer 6" in title
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["1", "2 (M)", "3", "4", "5", "6 (L)", "7"]
    bold = [t.get_text() for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["2 (M)", "6 (L)"]
    outlines = [p for p in ax.patches if not p.get_fill()]
    assert sorted(p.get_y() + 0.5 for p in outlines) == [1, 5]  # rows of layers 2 and 6 (0-based)
    assert all(p.get_width() == 5 for p in outlines)  # the whole row: 2 tasks, 2 group averages, "avg all"


def test_without_choice_no_marks_but_model_and_scaling(tmp_path, monkeypatch):
    seen = _drawn(monkeypatch)
    plot_heatmap(_study(), tmp_path / "h.png", model="crepe-tiny", layers_as_rows=False)
    ax = seen["ax"]
    assert ax.get_title().startswith("crepe-tiny: ") and "colours scaled per column" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(l) for l in range(1, 8)]
    assert not [p for p in ax.patches if not p.get_fill()]
