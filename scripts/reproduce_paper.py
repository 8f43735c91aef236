"""Reproduce the paper's Table III: three fused models (paper layers) x nine tasks, fusion vs last layer.

Needs the nine tasks, either prepared folders (``ROOT/<task>/metadata.csv``: ``hf-fusion prepare``, or EVAR's
output, see docs/downloads.md) or the official downloads (``--downloads DIR`` with one folder per task, named
by its id: ``DIR/esc50``, ``DIR/us8k``, ...; each is prepared into ``--data-root``), and the three original
checkpoints. Everything is checked first; the script stops with one list of every missing task, split file
and checkpoint before any model runs. Features are cached (``--cache-dir``), so an interrupted run resumes.

    python scripts/reproduce_paper.py --downloads /data/downloads --data-root /data/tasks \
        --vggish-checkpoint vggish-10086976.pth --cnn14-checkpoint Cnn14_16k_mAP=0.438.pth \
        --ast-checkpoint MIT/ast-finetuned-audioset-10-10-0.4593 --out paper_out [--layerwise]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hf_fusion.app import workflow
from hf_fusion.app.cli import (add_probe_speed_args, add_screening_args, parse_ast_frames, parse_folds,
                               screening_from_args)
from hf_fusion.evaluation import ProbeConfig, choose_layers, write_study
from hf_fusion.hub.presets import convert_checkpoint, get_preset
from hf_fusion import protocol
from hf_fusion.models.backbone_ast import TIMM_LAYER_NORM_EPS
from hf_fusion.models.backbones import get_backbone_class
from hf_fusion.protocol import PAPER_TABLE_III, PAPER_TASKS
from hf_fusion.tasks import prepare_task
from hf_fusion.tasks.prepare import download_problems


def preflight(args) -> list[str]:
    """Everything that is missing, as human-readable lines (empty = ready)."""
    missing = []
    root = Path(args.data_root) if args.data_root else None
    downloads = Path(args.downloads) if args.downloads else None
    for task in args.tasks:
        if task not in PAPER_TASKS:
            missing.append(f"task {task!r}: not one of the paper's tasks {list(PAPER_TASKS)}")
        elif root is not None and (root / task / "metadata.csv").is_file():
            missing += prepared_folder_problems(task, root / task)
        elif downloads is not None and (downloads / task).is_dir():
            missing += download_problems(task, downloads / task, allow_partial=args.allow_partial,
                                         fetch=not args.no_fetch)
        else:
            where = [str(root / task / "metadata.csv") if root else "--data-root ROOT/<task>/metadata.csv",
                     str(downloads / task) if downloads else "--downloads DIR/<task>"]
            missing.append(f"task {task}: neither a prepared folder nor a download ({' nor '.join(where)} found)")
    for backbone in args.backbones:
        checkpoint = getattr(args, f"{backbone}_checkpoint")
        if checkpoint and Path(checkpoint).exists():
            continue  # a local file or checkpoint folder
        if checkpoint and checkpoint.count("/") == 1:  # a Hub id
            try:
                from huggingface_hub import HfApi

                HfApi().model_info(checkpoint)
            except Exception as err:  # offline, unknown id, no access
                missing.append(f"{backbone} checkpoint {checkpoint}: not a local file or folder and the Hub cannot "
                               f"serve it ({type(err).__name__})")
        else:
            missing.append(f"{backbone} checkpoint: give --{backbone}-checkpoint PATH "
                           f"({get_preset(_preset(backbone)).checkpoint_help})")
    return missing


def prepared_folder_problems(task: str, folder: Path) -> list[str]:
    """What the loader would refuse in a prepared (or EVAR) task folder: bad columns or split values, an empty
    split, listed audio files that are not there."""
    from hf_fusion.tasks import read_metadata, read_task_info

    try:
        rows, kind = read_metadata(folder / "metadata.csv")
    except ValueError as err:
        return [f"task {task}: {err}"]
    problems = []
    if kind == "split":
        empty = [s for s in protocol.SPLITS if not any(r["split"] == s for r in rows)]
        if empty:
            problems.append(f"task {task}: {folder / 'metadata.csv'} has no row of split(s) {empty}")
    audio = Path(read_task_info(folder).get("audio_root") or folder)
    absent = [r["file_name"] for r in rows if not (audio / r["file_name"]).is_file()]
    if absent:
        problems.append(f"task {task}: {len(absent):,} listed audio file(s) not found under {audio}, e.g. {absent[:3]}")
    return problems


def prepare_downloads(args) -> None:
    """Prepare every task that has a download and no prepared folder yet (after the preflight passed)."""
    root = Path(args.data_root)
    for task in args.tasks:
        if not (root / task / "metadata.csv").is_file():
            folder = prepare_task(task, Path(args.downloads) / task, root, allow_partial=args.allow_partial,
                                  fetch=not args.no_fetch)
            print(f"prepared {task} from {Path(args.downloads) / task} -> {folder}")


def _preset(backbone: str) -> str:
    return next(name for name in PAPER_TABLE_III if get_preset(name).backbone == backbone)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="folder with one prepared (or EVAR) task folder per task; with "
                        "--downloads, where they are prepared (default OUT/tasks)")
    parser.add_argument("--downloads", help="folder with the official downloads, one folder per task named by its id "
                        "(DIR/esc50, DIR/us8k, ...; split files beside them or fetched): prepared into --data-root")
    parser.add_argument("--allow-partial", action="store_true", help="--downloads: prepare incomplete downloads "
                        "(the gap is recorded) instead of stopping")
    parser.add_argument("--no-fetch", action="store_true", help="--downloads: never download a missing split file")
    parser.add_argument("--tasks", nargs="+", default=list(PAPER_TASKS))
    paper_backbones = [get_preset(name).backbone for name in PAPER_TABLE_III]
    parser.add_argument("--backbones", nargs="+", default=paper_backbones, choices=paper_backbones)
    for backbone in paper_backbones:
        preset = get_preset(_preset(backbone))
        parser.add_argument(f"--{backbone}-checkpoint", default=preset.default_checkpoint,
                            help=f"{preset.checkpoint_help}" + (f" (default {preset.default_checkpoint})"
                                                                if preset.default_checkpoint else ""))
    parser.add_argument("--out", default="paper_out")
    parser.add_argument("--cache-dir")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--layerwise", action="store_true", help="also run the layer-wise study and the layer choice")
    parser.add_argument("--select-on", choices=protocol.SELECT_ON, default=protocol.SELECT_ON[0],
                        help="--layerwise: the layer choice reads validation (default) or test accuracy (the paper's practice)")
    parser.add_argument("--folds", type=parse_folds, metavar="1,3",
                        help="fold tasks (esc50, us8k): the folds held out in turn (default: all, as the paper)")
    parser.add_argument("--ast-frames", type=parse_ast_frames, default="task", help="AST input: 'task' = each task's clip length "
                        "(the authors' protocol, default) or a frame count such as 1024")
    parser.add_argument("--ast-normalization", choices=protocol.INPUT_NORMALIZATIONS,
                        default=protocol.INPUT_NORMALIZATIONS[0],
                        help="AST fbank statistics: the task's (the authors', default), AudioSet's, or the model's saved ones")
    parser.add_argument("--max-epochs", type=int, default=protocol.PROBE_MAX_EPOCHS, help="probe epochs (the paper's 200)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(protocol.PAPER_SEEDS), help="probe seeds (paper: 3 runs)")
    add_probe_speed_args(parser)
    add_screening_args(parser)
    args = parser.parse_args(argv)

    if args.downloads and not args.data_root:
        args.data_root = str(Path(args.out) / "tasks")
    missing = preflight(args)
    if missing:
        print("reproduce_paper: cannot start, missing:\n  - " + "\n  - ".join(missing), file=sys.stderr)
        return 2
    if args.downloads:
        prepare_downloads(args)
    out = Path(args.out)
    # the paper's protocol: up to 200 epochs, patience 20, lr grid in [1e-5, 1e-2], 3 seeds
    config = ProbeConfig(max_epochs=args.max_epochs, seeds=tuple(args.seeds), precision=args.probe_dtype,
                         stack_layers=args.stack_layers)
    screening = screening_from_args(args) if args.layerwise else None
    print("protocol: fold tasks hold out each fold in turn (validation: a stratified 10% of the other folds), "
          "results averaged over folds; clips cut/padded to the task's length (random crop for train/valid, "
          f"from 0 for test); layer choice on {args.select_on} accuracy")
    resized = [b for b in args.backbones if get_backbone_class(b).resizable_input]
    if resized:
        frames = "each task's clip length" if args.ast_frames == "task" else f"{args.ast_frames} frames"
        print(f"protocol ({', '.join(resized)}): input {frames}, normalised with the {args.ast_normalization} "
              f"statistics, LayerNorm eps {TIMM_LAYER_NORM_EPS:g} (timm's, the original model)")
    summary = {}
    for backbone in args.backbones:
        preset = get_preset(_preset(backbone))
        folder = out / preset.name
        if not (folder / "config.json").is_file():
            convert_checkpoint(backbone, getattr(args, f"{backbone}_checkpoint"), list(preset.fusion_layers), folder)
        loaded = workflow.load_model(str(folder))
        tasks = workflow.load_tasks(args.tasks, [], loaded.feature_extractor.sampling_rate, root=args.data_root)
        caches = workflow.extract_tasks(loaded, tasks, "all", cache_dir=args.cache_dir, batch_size=args.batch_size,
                                        input_frames=args.ast_frames,
                                        normalization=args.ast_normalization, layer_norm_eps=TIMM_LAYER_NORM_EPS)
        if args.layerwise:
            study = workflow.layerwise_study(caches, loaded.tappable_layers, config, folds=args.folds,
                                             screening=screening)
            choice = choose_layers(study, select_on=args.select_on)
            write_study(study, out / preset.name / "layerwise", groups=choice.groups, model=backbone,
                        marks={choice.middle: "M", choice.late: "L"})
            choice.to_json(out / preset.name / "selection.json")
            print(f"{preset.name}: layer-wise choice M={choice.middle} L={choice.late} (paper: {preset.fusion_layers})")
        results = workflow.evaluate_fusion(loaded, caches, config, folds=args.folds)
        workflow.write_results(loaded, results, out / preset.name / "evaluation", out / "leaderboard.jsonl",
                               partial=workflow.partial_tasks(tasks))
        ours = {task: 100 * res.accuracy for task, res in results[loaded.name][1].items()}
        paper = dict(zip(PAPER_TASKS, PAPER_TABLE_III[preset.name]))
        summary[preset.name] = {t: {"ours": ours[t], "paper": paper[t]} for t in ours}
        print(f"\n{preset.name}: task  ours  paper")
        for task in ours:
            print(f"  {task:9s} {ours[task]:5.1f} {paper[task]:5.1f}")
    (out / "paper_comparison.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {out / 'paper_comparison.json'} and {out / 'leaderboard.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
