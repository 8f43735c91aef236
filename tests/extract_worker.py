"""One ``extract_features`` run in its own process (tests/test_bad_inputs.py: concurrent extraction).

python -m tests.extract_worker AUDIO_DIR CACHE_DIR OUT.npz [--hold SIGNAL GO]

Extracts every layer of CREPE-tiny (hop 800) for the wav files in AUDIO_DIR (split ``train``, label =
index % 3, 2 clips per batch, 2 batches per shard) and saves every layer's vectors to OUT.npz. With
``--hold``, the second forward pass creates SIGNAL and waits (up to 60 s) for the file GO: the process is
then inside a shard's ``Dataset.map``, its temporary file open, while the test starts a second process.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features

from hf_fusion.conversion import build_crepe_fusion_model
from hf_fusion.extraction import extract_features


def main(argv):
    audio_dir, cache_dir, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    torch.set_num_threads(1)
    model, fe = build_crepe_fusion_model("tiny", hop_length=800)
    if "--hold" in argv:
        signal, go = (Path(p) for p in argv[argv.index("--hold") + 1:][:2])
        original, calls = model.backbone.forward, []

        def held(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:  # datasets opens its temporary file after the first batch of a map
                signal.touch()
                deadline = time.time() + 60
                while not go.exists() and time.time() < deadline:
                    time.sleep(0.05)
            time.sleep(0.2)  # slower than the other process: both work at once
            return original(*args, **kwargs)

        model.backbone.forward = held
    paths = sorted(str(p) for p in audio_dir.glob("*.wav"))
    features = Features({"audio": Audio(sampling_rate=16000), "label": ClassLabel(names=["a", "b", "c"])})
    data = DatasetDict(train=Dataset.from_dict({"audio": paths, "label": [i % 3 for i in range(len(paths))]},
                                               features=features))
    cache = extract_features(model, fe, data, "concurrent", batch_size=2, batches_per_shard=2,
                             cache_dir=cache_dir, progress=False)
    np.savez(out, **{f"layer_{layer}": cache.load(layer, "train")[0] for layer in cache.layers})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
