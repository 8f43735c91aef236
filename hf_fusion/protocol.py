"""The paper's protocol facts and every choice list, written once (import-free: the CLI parser reads them).

Tasks (Table III order, display names, the paper's late group), the linear-evaluation defaults
(standardised features, one linear layer, Adam, early stopping on validation, learning rates searched
in [1e-5, 1e-2], 3 seeds averaged) and the option lists of the library and the command line.
"""

# ---- the paper's tasks ----
#: task id -> dataset name shown in tables and on the Hub, in Table III's order
PAPER_TASK_NAMES = {
    "esc50": "ESC-50",
    "us8k": "UrbanSound8K",
    "spcv2": "Speech Commands V2",
    "vc1": "VoxCeleb1",
    "voxforge": "VoxForge",
    "cremad": "CREMA-D",
    "gtzan": "GTZAN",
    "nsynth": "NSynth",
    "surge": "Surge synthesizer pitch",
}
#: the nine task ids in Table III's order
PAPER_TASKS = tuple(PAPER_TASK_NAMES)
#: tasks where late layers win (the L group); the others form the M group
PAPER_LATE_TASKS = ("esc50", "us8k", "gtzan")
PAPER_MIDDLE_TASKS = tuple(t for t in PAPER_TASKS if t not in PAPER_LATE_TASKS)
#: layer groups of the M/L rule
LAYER_GROUPS = ("middle", "late")
#: Table III (accuracy %), the fusion rows, in PAPER_TASKS order
PAPER_TABLE_III = {
    "vggish-fusion-10-15": (86.5, 80.9, 91.4, 54.5, 91.6, 59.3, 70.8, 73.6, 33.3),
    "cnn14-fusion-3-6": (93.0, 85.8, 91.3, 50.6, 90.5, 59.0, 77.4, 73.8, 32.4),
    "ast-fusion-5-12": (94.2, 85.5, 80.4, 24.9, 87.6, 60.7, 82.9, 77.6, 34.6),
}

# ---- linear evaluation ----
#: the splits of a task with a fixed split (fold tasks carve theirs from the folds)
SPLITS = ("train", "valid", "test")
#: the learning-rate grid: one per decade over the paper's range
PAPER_LRS = (1e-5, 1e-4, 1e-3, 1e-2)
#: training seeds averaged per result
PAPER_SEEDS = (0, 1, 2)
#: minibatch size (the paper: at most 200), epochs at most, early-stopping patience (epochs)
PROBE_BATCH_SIZE = 200
PROBE_MAX_EPOCHS = 200
PROBE_PATIENCE = 20
#: how the probe's matrix products run (fp32 = exact; tf32 / bf16: tensor-core precisions, an option)
PROBE_PRECISIONS = ("fp32", "tf32", "bf16")
#: fold tasks: the stratified share of the training folds used for validation
VALID_FRACTION = 0.1

# ---- the authors' per-task input statistics (AST) ----
#: EVAR's ``calculate_norm_stats``: batches of 128 from its shuffled training loader until >= 5000 clips
TASK_STATS_MAX_CLIPS = 5000
TASK_STATS_BATCH_SIZE = 128
#: the seed of the permutation the training clips are drawn in (from their files' sorted names)
TASK_STATS_SEED = 0

# ---- choice lists ----
#: the accuracy the layer choice reads
SELECT_ON = ("valid", "test")
#: layer-choice rules: the paper's groups, or groups refined by probing the best (M, L) pairs
SELECTION_RULES = ("groups", "pairs")
#: backbone precision during extraction
DTYPES = ("fp32", "bf16", "fp16")
#: what an undecodable file does: stop naming it, or skip it and record it
ON_ERROR = ("raise", "skip")
#: fbank normalisation of a resizable-input backbone (AST): the task's statistics, AudioSet's, or as saved
INPUT_NORMALIZATIONS = ("task", "audioset", "model")
