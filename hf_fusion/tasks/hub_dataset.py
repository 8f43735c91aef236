"""A prepared task as a Hub dataset: a ``DatasetDict`` (``Audio``, ``ClassLabel``, split or fold) with a dataset card.

``hf-fusion prepare ... --push org/name`` uploads it (``push_to_hub``; tasks whose terms forbid
redistribution only as private datasets, and the card says why); ``--dry-run`` writes the same dataset
(audio embedded, ``save_to_disk``) and its card to a local folder instead. ``load_task(name, source=...)``
reads either back row for row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from datasets import DatasetDict

from ..protocol import PAPER_TASK_NAMES
from .registry import get_task
from .sources import load_task_dir, read_task_info

#: the Hub's split names for the task's splits (fold tasks have one split holding every fold)
HUB_SPLITS = {"train": "train", "valid": "validation", "test": "test", "all": "train"}


def prepared_dataset(task_folder: os.PathLike, embed_audio: bool = False) -> DatasetDict:
    """The prepared task at ``task_folder`` as a DatasetDict: ``file_name``, ``audio`` (``Audio()``, native
    rate), ``label`` (``ClassLabel``) and ``fold`` for fold tasks; splits train/validation/test, or one train
    split holding every fold. ``embed_audio`` stores the files' bytes in the dataset (a self-contained copy)."""
    data = load_task_dir(task_folder)
    out = DatasetDict({HUB_SPLITS[split]: ds for split, ds in data.items()})
    if embed_audio:
        from datasets.table import embed_table_storage

        out = DatasetDict({split: ds.with_format("arrow").map(embed_table_storage, batched=True,
                                                              desc=f"embedding {split} audio").with_format(None)
                           for split, ds in out.items()})
    return out


def dataset_card(task_folder: os.PathLike, repo_id: str, private: bool) -> str:
    """The dataset card (README.md) of a prepared task: provenance, counts, license, how to load it."""
    info = read_task_info(task_folder)
    spec = get_task(info["task"])
    name = PAPER_TASK_NAMES.get(spec.name, spec.name)
    counts = "\n".join(f"| {k} | {v:,} | {spec.counts.get(int(k) if k.isdigit() else k, '')} |"
                       for k, v in info["counts"].items())
    definition = info["split_definition"]
    if isinstance(definition, list):
        definition = "\n".join(f"- `{d['file']}`: {d.get('url', d['path'])} (sha256 `{d['sha256']}`"
                               f"{'' if d.get('matches_published', True) else ', differs from the published file'})"
                               for d in definition)
    gaps = "" if info.get("complete") else (
        "\n**Partial copy**: the download did not match the official counts; the gaps, as `hf-fusion prepare "
        "--allow-partial` recorded them, are in the table above and in `task.json`.\n")
    why_private = "" if spec.redistributable else (
        f"\nThis dataset is private: the terms of {name} ({spec.license}) do not allow a public copy.\n")
    return f"""---
license: other
task_categories:
- audio-classification
pretty_name: {name} (hf-fusion task, EVAR split)
tags:
- hf-fusion
- {spec.name}
---

# {name}, prepared by hf-fusion

{spec.description}: {spec.n_classes} classes, clips cut or padded to {spec.clip_seconds:g} s in the
paper's evaluation (Niizumi et al. 2022; EVAR's split). Columns: `file_name` (as in the official download),
`audio` (native rate), `label` (`ClassLabel`){', `fold`' if info['split_kind'] == 'fold' else ''}.

| {info['split_kind']} | clips | official |
|---|---:|---:|
{counts}
{gaps}
## Source and split

Download layout: {info['source']['layout']}.

Split definition:

{definition}

## License

{spec.license}.
{why_private}
## Use

```python
from hf_fusion.tasks import load_task
data = load_task("{spec.name}", 16000, source="{repo_id}", crop=True)
```
"""


def export_prepared(task_folder: os.PathLike, repo_id: str, out: Optional[os.PathLike] = None,
                    dry_run: bool = False, private: Optional[bool] = None, token: Optional[str] = None) -> dict:
    """Push a prepared task to ``repo_id`` (or, with ``dry_run``, write it to ``out``); returns what was done.

    A task whose terms forbid redistribution is pushed as private whatever ``private`` says (asking for a
    public copy of one is an error)."""
    info = read_task_info(task_folder)
    if not info:
        raise FileNotFoundError(f"{task_folder}: no task.json (prepare the task first: hf-fusion prepare)")
    spec = get_task(info["task"])
    if private is False and not spec.redistributable:
        raise ValueError(f"{spec.name}: its terms ({spec.license}) do not allow a public copy; push it as private")
    private = (not spec.redistributable) if private is None else private
    card = dataset_card(task_folder, repo_id, private)
    if dry_run:
        if out is None:
            raise ValueError("a dry run needs a folder to write the dataset to (--out)")
        folder = Path(out)
        data = prepared_dataset(task_folder, embed_audio=True)
        data.save_to_disk(str(folder / "data"))
        (folder / "README.md").write_text(card, encoding="utf-8")
        return {"repo_id": repo_id, "private": private, "folder": str(folder), "splits": {k: len(v) for k, v in data.items()}}
    from huggingface_hub import DatasetCard

    data = prepared_dataset(task_folder)
    data.push_to_hub(repo_id, private=private, token=token)  # embeds the audio shard by shard
    DatasetCard(card).push_to_hub(repo_id, repo_type="dataset", token=token)
    return {"repo_id": repo_id, "private": private, "splits": {k: len(v) for k, v in data.items()}}
