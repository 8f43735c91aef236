"""hf-fusion leaderboard: fused audio representations under the paper's linear evaluation (a Gradio Space).

Written by `hf-fusion leaderboard --space`; reads only data/ beside it and needs gradio and pandas
(requirements.txt), never hf_fusion. Run locally with `python app.py`.
"""

import json
import os
from pathlib import Path

import gradio as gr
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = json.loads((HERE / "data" / "leaderboard.json").read_text(encoding="utf-8"))
TASKS = DATA["tasks"]
BACKBONES = sorted({row["backbone"] for row in DATA["rows"]})
GROUPS = ["all"] + [g for g in ("late", "middle", "other") if g in DATA["groups"].values()]


def _layers(row):
    if row["middle"] is not None and row["late"] is not None:
        return str(row["middle"]), str(row["late"])
    layers = [str(x) for x in row["layers"]]
    return (layers[0], layers[-1]) if len(layers) > 1 else ("", layers[0] if layers else "")


def table(backbones=None, group="all"):
    """The leaderboard rows shown: accuracies in %, the paper's rows marked as references."""
    tasks = [t for t in TASKS if group == "all" or DATA["groups"][t] == group]
    records = []
    for row in DATA["rows"]:
        if backbones is not None and row["backbone"] not in backbones:
            continue
        middle, late = _layers(row)
        record = {"Model": f"[{row['model']}]({row['link']})" if row["link"] else row["model"],
                  "Kind": "paper (reference)" if row["reference"] else "measured", "Backbone": row["backbone"],
                  "M": middle, "L": late}
        values = [row["accuracy"].get(t) for t in tasks]
        for task, value in zip(tasks, values):
            record[DATA["task_names"][task]] = value
        present = [v for v in values if v is not None]
        record["Average"] = round(sum(present) / len(present), 2) if present else None
        record.update({"Rule": row["rule"] or "", "Selected on": row["selected_on"] or "", "Date": row["date"],
                       "Protocol": row["protocol"] or ""})
        records.append(record)
    frame = pd.DataFrame(records)
    return frame.sort_values("Average", ascending=False, na_position="last") if len(frame) else frame


def study(model):
    """The heatmap of a model's layer-wise study, and what was chosen."""
    entry = DATA["models"].get(model or "", {})
    row = next((r for r in DATA["rows"] if r["model"] == model), None)
    heatmap = str(HERE / entry["heatmap"]) if "heatmap" in entry else None
    text = f"No layer-wise study for {model}." if not entry else (
        f"**{model}**: M = {row['middle']}, L = {row['late']} ({row['rule'] or 'paper groups'}, chosen on "
        f"{row['selected_on'] or 'validation'} accuracy); the layer-wise accuracies: `{entry['layerwise']}`.")
    return heatmap, text


def datatypes(frame):
    return ["markdown" if column == "Model" else "number" if column in DATA["task_names"].values() or
            column == "Average" else "str" for column in frame.columns]


with gr.Blocks(title="hf-fusion leaderboard") as demo:
    gr.Markdown("# hf-fusion leaderboard\nLinear-evaluation accuracy (%) of fused multilayer audio "
                "representations (Niizumi et al., 2022). Sort by any column from its header; the paper's "
                "Table III rows are references.")
    with gr.Row():
        backbone = gr.CheckboxGroup(BACKBONES, value=BACKBONES, label="Backbone")
        group = gr.Radio(GROUPS, value="all", label="Task group (the paper's M/L rule)")
    first = table()
    board = gr.Dataframe(value=first, datatype=datatypes(first), interactive=False, wrap=True,
                         elem_id="leaderboard", label="Leaderboard")
    for control in (backbone, group):
        control.change(table, [backbone, group], board)
    models = list(DATA["models"])
    with gr.Row():
        chosen = gr.Dropdown(models, value=models[0] if models else None, label="Layer-wise study of")
    heatmap, text = study(models[0]) if models else (None, "No model has a layer-wise study here.")
    with gr.Row():
        image = gr.Image(value=heatmap, label="Layer-wise test accuracy, M and L marked", elem_id="heatmap",
                         interactive=False)
    details = gr.Markdown(text, elem_id="study-details")
    chosen.change(study, chosen, [image, details])

if __name__ == "__main__":
    demo.launch(allowed_paths=[str(HERE / "data")], server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
