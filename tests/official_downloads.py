"""Tiny copies of the nine official downloads: the real folder and file-name patterns, metadata files with
real-format rows and the real codecs (GTZAN's .au, Surge's Ogg Vorbis, UrbanSound8K's mix of 8-bit, 16/24-bit,
float, stereo, 8-96 kHz and IMA ADPCM wavs), a few short clips per class. Each builder returns
``(download folder, split file or folder to pass as --splits, or None)``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from hf_fusion.tasks.split_definitions import SHIPPED_DIR

SECONDS = 0.3


def clip(seed: int, sr: int, seconds: float = SECONDS, channels: int = 1) -> np.ndarray:
    """A tone whose pitch follows ``seed`` (classes differ in pitch), plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 37 * (seed % 11)) * t) + 0.01 * rng.standard_normal(t.size)
    x = x.astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def write(path: Path, seed: int, sr: int = 16000, **kwargs) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = kwargs.pop("channels", 1)
    sf.write(path, clip(seed, sr, channels=channels), sr, **kwargs)
    return path.name


def write_csv(path: Path, header, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def esc50(dest: Path):
    top = dest / "ESC-50-master"
    rows = []
    for fold in range(1, 6):
        for target, category in ((0, "dog"), (10, "rain")):
            name = f"{fold}-{100032 + fold}-A-{target}.wav"
            write(top / "audio" / name, target + fold, sr=44100)
            rows.append([name, fold, target, category, "True", 100032 + fold, "A"])
    write_csv(top / "meta" / "esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    return dest, None


#: UrbanSound8K's encodings: (subtype, rate, channels)
US8K_ENCODINGS = [("PCM_16", 44100, 2), ("PCM_U8", 8000, 1), ("PCM_24", 96000, 2), ("FLOAT", 48000, 1),
                  ("IMA_ADPCM", 22050, 1), ("PCM_16", 11025, 1)]


def us8k(dest: Path):
    top = dest / "UrbanSound8K"
    rows, i = [], 0
    for fold in (1, 2, 3):
        for class_id, name in ((3, "dog_bark"), (6, "gun_shot")):
            subtype, sr, channels = US8K_ENCODINGS[i % len(US8K_ENCODINGS)]
            file = f"{100000 + i}-{class_id}-0-{fold}.wav"
            write(top / "audio" / f"fold{fold}" / file, class_id + i, sr=sr, subtype=subtype, channels=channels)
            rows.append([file, 100000 + i, 0.0, SECONDS, 1, fold, class_id, name])
            i += 1
    write_csv(top / "metadata" / "UrbanSound8K.csv",
              ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"], rows)
    return dest, None


def spcv2(dest: Path):
    valid, test = [], []
    for w, word in enumerate(("left", "right", "yes")):
        for n, speaker in enumerate(("0a7c2a8d", "0b40aa8e", "0c2ca723", "0f7dc557")):
            name = f"{word}/{speaker}_nohash_0.wav"
            write(dest / name, w, sr=16000)
            (valid if n == 2 else test if n == 3 else []).append(name)
    write(dest / "_background_noise_" / "white_noise.wav", 99, sr=16000)
    (dest / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (dest / "testing_list.txt").write_text("\n".join(test) + "\n")
    (dest / "README.md").write_text("Speech Commands v0.02 (tiny copy)\n")
    return dest, None


def vc1(dest: Path):
    lines = []
    for s, speaker in enumerate(("id10001", "id10002")):
        for v, (video, code) in enumerate((("1zcIwhmdeo4", 1), ("7gWzIy6yIIk", 1), ("9mQ11vBs1wc", 2), ("Y8hIVOBuels", 3))):
            path = f"{speaker}/{video}/0000{v + 1}.wav"
            write(dest / "wav" / path, s, sr=16000)
            lines.append(f"{code} {path}")
    splits = dest.parent / f"{dest.name}_meta" / "iden_split.txt"
    splits.parent.mkdir(parents=True, exist_ok=True)
    splits.write_text("\n".join(lines) + "\n")
    return dest, splits


def voxforge(dest: Path):
    rows = []
    for lang, sessions in (("de", ("Hans-20080521-abc", "Jutta-20091212-xyz", "Kai-20100101-k1")),
                           ("en", ("Aaron-20080318-kdl", "Bea-20090101-hjk", "Cal-20110505-zz9"))):
        for session, split in zip(sessions, ("train", "valid", "test")):
            for k in range(2):
                name = f"{session}/wav/a000{k}.wav"
                write(dest / name, (lang == "en") * 4 + k, sr=16000)
                rows.append([name, lang, split])
    splits = dest.parent / f"{dest.name}_voxforge.csv"
    write_csv(splits, ["file_name", "label", "split"], rows)
    return dest, splits


def cremad(dest: Path):
    rows = []
    for actor, split in (("1001", "train"), ("1002", "train"), ("1003", "valid"), ("1004", "test")):
        for e, emotion in enumerate(("ANG", "SAD")):
            name = f"{actor}_DFA_{emotion}_XX.wav"
            write(dest / "AudioWAV" / name, e, sr=16000)
            rows.append([name, emotion, actor, split])
    write(dest / "AudioWAV" / "1040_ITH_SAD_XX.wav", 1, sr=16000)  # a known bad file, not in EVAR's list
    splits = dest.parent / f"{dest.name}_cremad.csv"
    write_csv(splits, ["file_name", "label", "speaker_id", "split"], rows)
    return dest, splits


def gtzan_listed() -> dict[str, list[str]]:
    """{split: the shipped fault-filtered entries}."""
    return {s: (SHIPPED_DIR / "gtzan" / f"{s}_filtered.txt").read_text().split() for s in ("train", "valid", "test")}


def gtzan(dest: Path):
    """Two genres, two listed clips per split each, plus one clip outside the lists (left out)."""
    listed = gtzan_listed()
    for s, split in enumerate(("train", "valid", "test")):
        for genre in ("blues", "metal"):
            for entry in [e for e in listed[split] if e.startswith(f"{genre}/")][:2]:
                write(dest / "genres" / entry.replace(".wav", ".au"), s + (genre == "metal") * 5, sr=22050,
                      format="AU", subtype="PCM_16")
    every = {e for entries in listed.values() for e in entries}
    outside = next(f"{g}/{g}.{n:05d}.wav" for g in ("blues", "metal") for n in range(100)
                   if f"{g}/{g}.{n:05d}.wav" not in every)
    write(dest / "genres" / outside.replace(".wav", ".au"), 3, sr=22050, format="AU", subtype="PCM_16")
    return dest, None


def nsynth(dest: Path):
    for s, split in enumerate(("train", "valid", "test")):
        examples = {}
        for family, source in (("guitar", "acoustic"), ("organ", "electronic")):
            for pitch in (60, 64):
                note = f"{family}_{source}_00{s}-0{pitch}-100"
                write(dest / f"nsynth-{split}" / "audio" / f"{note}.wav", pitch + len(family), sr=16000)
                examples[note] = {"note_str": note, "instrument_family_str": family, "instrument_source_str": source,
                                  "pitch": pitch, "velocity": 100, "sample_rate": 16000}
        (dest / f"nsynth-{split}" / "examples.json").write_text(json.dumps(examples))
    return dest, None


def surge(dest: Path):
    rows = []
    for preset, split in (("surge-patches-3rdparty-Argitoth-Drums-Kick-velocity64", "train"),
                          ("surge-patches-Keys-Dark-Piano-velocity64", "train"),
                          ("surge-patches-Leads-Saw-velocity64", "valid"),
                          ("surge-patches-Pads-Soft-velocity64", "test")):
        for note in ("060", "072"):
            write(dest / preset / f"{note}.ogg", int(note), sr=16000, format="OGG", subtype="VORBIS")
        rows.append([preset, split])
    splits = dest.parent / f"{dest.name}_tone_splits.csv"
    write_csv(splits, ["tone", "split"], rows)
    return dest, splits


BUILDERS = {"esc50": esc50, "us8k": us8k, "spcv2": spcv2, "vc1": vc1, "voxforge": voxforge, "cremad": cremad,
            "gtzan": gtzan, "nsynth": nsynth, "surge": surge}


def build(task: str, root: Path):
    """(download folder, --splits path or None) of a tiny copy of ``task``'s official download under ``root``."""
    dest = Path(root) / task
    dest.mkdir(parents=True, exist_ok=True)
    return BUILDERS[task](dest)
