"""The paper's linear-evaluation protocol as constants (import-free: the CLI parser reads them).

See docs/reference.md, "Tasks": standardised features, one linear layer, Adam, early stopping on
validation, the learning rate searched in [1e-5, 1e-2], 3 seeds averaged.
"""

#: the splits of a task with a fixed split (fold tasks carve theirs from the folds)
SPLITS = ("train", "valid", "test")
#: the learning-rate grid: one per decade over the paper's range
PAPER_LRS = (1e-5, 1e-4, 1e-3, 1e-2)
#: training seeds averaged per result
PAPER_SEEDS = (0, 1, 2)
