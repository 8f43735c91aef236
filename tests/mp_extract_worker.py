"""One process of a multi-process ``extract_features`` run (tests/test_multiprocess.py).

accelerate launch ... tests/mp_extract_worker.py AUDIO_DIR CACHE_DIR REPORT_DIR [--die-after-first-shard RANK]
(or plain ``python`` for one process). Extracts every layer of CREPE-tiny (hop 800) for the wav files in
AUDIO_DIR (split ``train`` = ``tr_*.wav``, ``test`` = ``te_*.wav``, label = index % 3, 2 clips per batch,
one batch per shard), then writes REPORT_DIR/rank<i>.json (the process's index, count, distributed type
and the shards it computed) and, on rank 0, REPORT_DIR/vectors.npz (every layer of every split).

``--die-after-first-shard RANK``: the process of that rank ends with ``os._exit(3)`` right after the
marker of its first computed shard is written (a hard kill at a known point; the test hook lives here,
not in the library: it wraps the ``atomic_write_json`` that extraction calls).
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features

import hf_fusion.extraction.extract as extract_module
from hf_fusion.conversion import build_crepe_fusion_model
from hf_fusion.extraction import extract_features

DIE_CODE = 3


def _split(paths):
    features = Features({"audio": Audio(sampling_rate=16000), "label": ClassLabel(names=["a", "b", "c"])})
    return Dataset.from_dict({"audio": paths, "label": [i % 3 for i in range(len(paths))]}, features=features)


def main(argv):
    audio_dir, cache_dir, report_dir = (Path(p) for p in argv[:3])
    die_rank = int(argv[argv.index("--die-after-first-shard") + 1]) if "--die-after-first-shard" in argv else None
    torch.set_num_threads(1)
    computed = []
    original = extract_module.atomic_write_json

    def recording(path, payload):
        original(path, payload)
        path = Path(path)
        if path.parent.name == "shards" and path.name.startswith("shard-"):
            computed.append(f"{path.parent.parent.parent.name.split('-')[0]}/{path.stem}")
            if PartialState().process_index == die_rank:
                os._exit(DIE_CODE)  # no clean-up, no barrier: like a crash or a SIGKILL

    extract_module.atomic_write_json = recording
    model, fe = build_crepe_fusion_model("tiny", hop_length=800)
    data = DatasetDict(train=_split(sorted(str(p) for p in audio_dir.glob("tr_*.wav"))),
                       test=_split(sorted(str(p) for p in audio_dir.glob("te_*.wav"))))
    cache = extract_features(model, fe, data, "mp", batch_size=2, batches_per_shard=1, cache_dir=cache_dir,
                             progress=False)
    # PartialState is the process state extract_features' Accelerator() set up. Creating it *before* that
    # Accelerator would be wrong on CPU: PartialState() ignores ACCELERATE_USE_CPU, finds no GPU and
    # leaves every process a single-process run (rank 0 of 1).
    state = PartialState()
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"rank{state.process_index}.json").write_text(json.dumps({
        "process_index": state.process_index, "num_processes": state.num_processes,
        "distributed_type": str(state.distributed_type), "computed": computed}))
    if state.is_main_process:
        np.savez(report_dir / "vectors.npz", **{f"{split}_{layer}": cache.load(layer, split)[0]
                                                for split in cache.splits for layer in cache.layers})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
