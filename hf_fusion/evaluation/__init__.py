"""Linear evaluation of precomputed features: probe, layer-wise study, layer choice, tables.

Works on in-memory features (`TaskFeatures`); never travels to the Hub.
"""

from .features import TaskFeatures, fold_problems, stratified_valid_split
from .leaderboard import (LeaderboardEntry, ResultTable, append_entries, fused_table, leaderboard_table,
                          load_leaderboard, package_versions)
from .metrics import accuracy_metric, compute_accuracy
from .probe import (BatchedAdam, EarlyStopping, MatmulPrecision, ProbeConfig, ProbeResult, ProbeRun, TrainOutput,
                    init_linear, linear_probe, linear_probe_stacked, lr_grid, round_to_tf32, standardise, train_batched,
                    train_sequential)
from .screening import Screening
from .selection import PAPER_LATE_TASKS, PAPER_TASKS, LayerChoice, choose_layers, derive_groups, refine_with_pairs
from .study import WEIGHTED_SUM_LAYER, LayerwiseStudy, plot_heatmap, run_layerwise_study, write_study
from .weighted_sum import WeightedSumResult, stack_layers, train_weighted_sum, weighted_sum_probe
from .export import classifier_feature_extractor, classifier_from_probe, save_classifier

__all__ = [
    "TaskFeatures", "fold_problems", "stratified_valid_split",
    "ProbeConfig", "ProbeResult", "ProbeRun", "TrainOutput", "linear_probe", "lr_grid", "standardise", "init_linear",
    "train_batched", "train_sequential", "BatchedAdam", "EarlyStopping", "linear_probe_stacked", "MatmulPrecision",
    "round_to_tf32", "Screening",
    "WeightedSumResult", "weighted_sum_probe", "stack_layers", "train_weighted_sum", "WEIGHTED_SUM_LAYER",
    "LayerwiseStudy", "run_layerwise_study", "plot_heatmap", "write_study",
    "LayerChoice", "choose_layers", "derive_groups", "refine_with_pairs", "PAPER_TASKS", "PAPER_LATE_TASKS",
    "accuracy_metric", "compute_accuracy",
    "LeaderboardEntry", "ResultTable", "append_entries", "load_leaderboard", "fused_table", "leaderboard_table",
    "package_versions",
    "classifier_from_probe", "classifier_feature_extractor", "save_classifier",
]
