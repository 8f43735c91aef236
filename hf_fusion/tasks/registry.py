"""Registry of the paper's nine downstream tasks (EVAR conventions) and the synthetic suite.

A :class:`TaskSpec` states what the linear evaluation needs to know about a task: class count,
clip length (seconds; clips are cropped or zero-padded to it), how the data is split, and which
layer group the paper found best for it ("late" for ESC-50/US8K/GTZAN, "middle" for the rest).
Where a public copy exists on the Hugging Face Hub that loads with today's ``datasets`` and follows the
paper's split, ``hub`` documents its id and column mapping; ``None`` means none we could vouch for: prepare
the official download (``hf-fusion prepare``) and load it with ``root=``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Optional, Sequence

from ..protocol import PAPER_LATE_TASKS, PAPER_TASKS

SplitKind = Literal["split", "fold"]


@dataclass(frozen=True)
class HubSource:
    """Where and how to read a task from a Hub dataset (or a local ``save_to_disk`` folder).

    Columns are renamed to ``audio`` / ``label`` (and ``fold``); ``split_column`` (values mapped by
    ``split_map`` to train/valid/test) or ``fold_column`` (integer folds) overrides the dataset's
    own splits; ``drop_labels`` removes classes the paper does not use.
    """

    dataset_id: str
    config: Optional[str] = None
    revision: Optional[str] = None
    audio_column: str = "audio"
    label_column: str = "label"
    split_column: Optional[str] = None
    fold_column: Optional[str] = None
    split_map: Optional[Mapping[str, str]] = None
    drop_labels: Sequence[str] = ()
    note: str = ""

    def mapping_kwargs(self) -> dict:
        """Keyword arguments for :func:`hf_fusion.tasks.sources.load_hub_task`."""
        return dict(
            config=self.config,
            revision=self.revision,
            audio_column=self.audio_column,
            label_column=self.label_column,
            split_column=self.split_column,
            fold_column=self.fold_column,
            split_map=dict(self.split_map) if self.split_map else None,
            drop_labels=tuple(self.drop_labels),
        )


@dataclass(frozen=True)
class TaskSpec:
    """One classification task.

    Attributes:
        name: registry key (lower case).
        n_classes: number of classes.
        clip_seconds: clip length in seconds (None: keep native lengths).
        split_kind: "split" (train/valid/test given) or "fold" (integer folds, cross-validation).
        n_folds: number of folds for "fold" tasks, else None.
        hub: documented public Hub copy and its column mapping, or None.
        sampling_rate: native rate of the synthetic tasks (None for paper tasks: many rates).
        description: one line about the data and its split.
        license: the data's license or terms, as its publisher states them.
        redistributable: whether those terms allow a public copy (``hf-fusion prepare --push`` pushes the
            others only as private datasets).
        counts: the official clip count per split ("train"/"valid"/"test") or per fold (1..n_folds) of the
            paper's split; ``hf_fusion.tasks.prepare`` checks a download against it (empty: not published).
    """

    name: str
    n_classes: int
    clip_seconds: Optional[float]
    split_kind: SplitKind
    n_folds: Optional[int] = None
    hub: Optional[HubSource] = None
    sampling_rate: Optional[int] = None
    description: str = ""
    counts: Mapping = field(default_factory=dict, hash=False)
    license: str = ""
    redistributable: bool = True

    def __post_init__(self):
        if self.split_kind not in ("split", "fold"):
            raise ValueError(f"task {self.name!r}: split_kind must be 'split' or 'fold', got {self.split_kind!r}")
        if (self.split_kind == "fold") != (self.n_folds is not None):
            raise ValueError(f"task {self.name!r}: n_folds must be given exactly for 'fold' tasks")

    @property
    def group(self) -> Optional[str]:
        """The layer group the paper found best ("late" or "middle", ``hf_fusion.protocol``); None for
        tasks the paper did not use."""
        if self.name not in PAPER_TASKS:
            return None
        return "late" if self.name in PAPER_LATE_TASKS else "middle"

    @property
    def folds(self) -> list[int]:
        """Fold numbers 1..n_folds (empty for "split" tasks)."""
        return list(range(1, self.n_folds + 1)) if self.n_folds else []


PAPER_TASK_SPECS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec(
            "esc50", 50, 5.0, "fold", n_folds=5,
            # Parquet copy of ESC-50 (2000 clips, one "train" split, 44.1 kHz); "target" is the
            # int id of "category". ClassLabel names are the category strings, sorted.
            hub=HubSource("ashraq/esc50", label_column="category", fold_column="fold"),
            description="ESC-50 environmental sounds, 5 official folds",
            counts={fold: 400 for fold in range(1, 6)},
            license="CC BY-NC 3.0",
        ),
        TaskSpec(
            "us8k", 10, 4.0, "fold", n_folds=10,
            # Parquet copy of UrbanSound8K (8732 clips, one "train" split); columns include
            # slice_file_name, fold, classID, class. Mixed native rates / channel counts.
            hub=HubSource("danavery/urbansound8K", label_column="class", fold_column="fold"),
            description="UrbanSound8K, 10 official folds",
            counts=dict(zip(range(1, 11), (873, 888, 925, 990, 936, 823, 838, 806, 816, 837))),
            license="CC BY-NC 3.0",
        ),
        TaskSpec(
            "spcv2", 35, 1.0, "split",
            # google/speech_commands is a loading-script repo (datasets >= 4 refuses it) and its test split
            # is the separate 12-class test archive, not testing_list.txt: prepare the download instead
            hub=None,
            description="Speech Commands v2, official train/validation/test lists",
            counts={"train": 84843, "valid": 9981, "test": 11005},
            license="CC BY 4.0",
        ),
        TaskSpec(
            "vc1", 1251, 8.2, "split",
            hub=None,  # VoxCeleb1 is gated (terms of use); no public copy to vouch for.
            description="VoxCeleb1 speaker identification, official iden split",
            counts={"train": 138361, "valid": 6904, "test": 8251},
            license="CC BY-SA 4.0 (metadata); the audio is from YouTube videos and may not be redistributed",
            redistributable=False,
        ),
        TaskSpec(
            "voxforge", 6, 5.8, "split",
            hub=None,  # EVAR builds its own speaker-disjoint split; no Hub copy known with it.
            description="VoxForge language identification, train/valid/test by speaker",
            license="GPL 3.0",
        ),
        TaskSpec(
            "cremad", 6, 2.5, "split",
            hub=None,  # Copies exist but none with EVAR's speaker-disjoint split to vouch for.
            description="CREMA-D emotion, speaker-disjoint train/valid/test",
            counts={"train": 5155, "valid": 732, "test": 1551},
            license="Open Database License 1.0 (ODbL) + Database Contents License",
        ),
        TaskSpec(
            "gtzan", 10, 30.0, "split",
            hub=None,  # Hub copies are loading scripts without the fault-filtered split.
            description="GTZAN genres, fault-filtered train/valid/test",
            counts={"train": 443, "valid": 197, "test": 290},
            license="no license: excerpts of commercial recordings, for research use",
            redistributable=False,
        ),
        TaskSpec(
            "nsynth", 11, 4.0, "split",
            hub=None,  # No parquet copy with the official splits that we could verify.
            description="NSynth instrument family, official train/valid/test",
            counts={"train": 289205, "valid": 12678, "test": 4096},
            license="CC BY 4.0",
        ),
        TaskSpec(
            "surge", 88, 4.0, "split",
            hub=None,  # Surge synthesizer pitch set (EVAR); no Hub copy known.
            description="Surge synthesizer pitch (88 notes), split by tone preset",
            license="as stated on Zenodo record 4677097 (not checked: kept private)",
            redistributable=False,
        ),
    ]
}

SYNTHETIC_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("synth_pitch", 12, 1.0, "split", sampling_rate=16000,
                 description="12 pitch classes (chroma) of harmonic tones, random timbre/octave/loudness"),
        TaskSpec("synth_timbre", 8, 1.0, "split", sampling_rate=16000,
                 description="8 synthetic instrument timbres (harmonic envelopes, attacks), random pitch"),
        TaskSpec("synth_events", 8, 1.0, "split", sampling_rate=16000,
                 description="8 noise/event types: coloured noises, clicks, bursts, sweeps"),
        TaskSpec("synth_rhythm", 6, 1.0, "split", sampling_rate=16000,
                 description="6 amplitude-modulation / pulse rates on random carriers"),
    ]
}


def list_tasks(include_synthetic: bool = False) -> list[str]:
    """Names of the registered tasks (paper order, then the synthetic ones if asked)."""
    names = list(PAPER_TASK_SPECS)
    if include_synthetic:
        names += list(SYNTHETIC_TASKS)
    return names


def get_task(name: str) -> TaskSpec:
    """Return the :class:`TaskSpec` of a paper or synthetic task (case-insensitive).

    Raises:
        KeyError: unknown name; the message lists every known name.
    """
    key = str(name).strip().lower()
    if key in PAPER_TASK_SPECS:
        return PAPER_TASK_SPECS[key]
    if key in SYNTHETIC_TASKS:
        return SYNTHETIC_TASKS[key]
    known = ", ".join(list_tasks(include_synthetic=True))
    raise KeyError(f"unknown task {name!r}; known tasks: {known} (or pass a task folder path)")
