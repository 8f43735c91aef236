"""``hf-fusion push``: its options (import-free, so ``--help`` answers at once) and the command, which
builds the repo folder with :mod:`hf_fusion.hub.publish` (a library) and uploads it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

def _option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option takes KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


# The push options after --repo-id/--org/--force-name, by argument group: flag -> add_argument keywords.
# The card group's destinations are hub.cards.CARD_OPTIONS (less source_checkpoint, taken from the model).
_FLAG = {"action": "store_true"}
PUSH_TARGET_OPTIONS = {
    "--private": {**_FLAG, "help": "create the repo as private"},
    "--revision": {"help": "branch to push to (created if missing; default: main)"},
    "--create-pr": {**_FLAG, "help": "open a pull request instead of committing"},
    "--token": {"help": "Hub token (default: HF_TOKEN or `hf auth login`)"},
    "--commit-message": {"help": "message of the Hub commit (default: huggingface_hub's)"},
}
PUSH_CARD_OPTIONS = {
    "--results": {"metavar": "CSV", "help": "results.csv (model,task,accuracy,std; accuracy in [0, 1])"},
    "--layerwise": {"metavar": "CSV", "help": "layerwise.csv (layer,task,accuracy,std)"},
    "--selection": {"metavar": "JSON", "help": "layer-selection JSON (M, L, group averages)"},
    "--results-model": {"help": "value of results.csv's model column for this model (default: repo name)"},
    "--license": {"help": "license id for the card (default: the original weights' license)"},
}
PUSH_OUTPUT_OPTIONS = {
    "--out": {"metavar": "FOLDER", "help": "where to assemble the repo (default: a temporary folder)"},
    "--overwrite": {**_FLAG, "help": "empty a non-empty --out first"},
    "--dry-run": {**_FLAG, "help": "build the folder and list the files; upload nothing"},
}


def add_push_arguments(parser: argparse.ArgumentParser, preset_names: Sequence[str] | None = None,
                       backbone_names: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``push`` options on ``parser``. ``preset_names`` / ``backbone_names`` (read from the backbone
    registry by callers that have imported it) become argparse choices; the CLI passes none, so that its
    parser needs neither torch nor transformers, and the names are checked when the command runs."""
    source = parser.add_argument_group("model source (one of)")
    source.add_argument("--model", metavar="DIR", help="saved fused model folder (save_pretrained output)")
    source.add_argument("--space", metavar="DIR", help="a leaderboard Space folder (hf-fusion leaderboard --space): "
                        "uploaded as a Gradio Space to --repo-id")
    source.add_argument(
        "--preset", metavar="NAME", choices=sorted(preset_names) if preset_names else None,
        help="convert an original checkpoint into this preset, <backbone>-fusion-<M>-<L> of a backbone with "
        "published layers, e.g. ast-fusion-5-12 (needs --checkpoint except for AST's default Hub id and "
        "CREPE's capacity; an unknown name lists the presets)"
        + (f"; one of {', '.join(sorted(preset_names))}" if preset_names else ""))
    source.add_argument("--backbone", metavar="NAME", choices=sorted(backbone_names) if backbone_names else None,
                        help="convert --checkpoint of this registered backbone"
                        + (f"; one of {', '.join(sorted(backbone_names))}" if backbone_names else ""))
    parser.add_argument("--checkpoint", help="original checkpoint: path or Hub id (CREPE: capacity tiny|full)")
    parser.add_argument("--layers", type=int, nargs="+", metavar="N",
                        help="fusion layers (paper numbering) for --preset/--backbone (default: the preset's)")
    parser.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="converter option, e.g. sample_rate=32000 for CNN14 (repeatable)")
    target = parser.add_argument_group("target")
    target.add_argument("--repo-id", help="Hub repo 'org/name'")
    target.add_argument("--org", help="instead of --repo-id: publish as ORG/<backbone>-fusion-<layers>")
    target.add_argument("--force-name", action="store_true",
                        help="keep a --repo-id whose name contradicts the model (another backbone or other layer "
                             "numbers than the model's <backbone>-fusion-<layers>); refused without it")
    groups = ((target, PUSH_TARGET_OPTIONS), (parser.add_argument_group("card"), PUSH_CARD_OPTIONS),
              (parser.add_argument_group("output"), PUSH_OUTPUT_OPTIONS))
    for group, options in groups:
        for flag, kwargs in options.items():
            group.add_argument(flag, **kwargs)
    return parser


def build_push_parser(subparsers, **parser_options) -> argparse.ArgumentParser:
    """Add the ``push`` subcommand to ``subparsers`` (runs :func:`run_push`); ``parser_options`` go to
    ``add_parser`` (e.g. the CLI's ``formatter_class``)."""
    parser = subparsers.add_parser(
        "push",
        help="assemble a fused model's Hub repo (card, weights, remote code) and upload it",
        description="Assemble a fused model's Hub repo folder and upload it (or only build it with --dry-run).",
        **parser_options,
    )
    add_push_arguments(parser)
    parser.set_defaults(func=run_push)
    return parser


def run_push(args: argparse.Namespace) -> int:
    """Run ``hf-fusion push``; returns the exit code: 0 ok, 2 bad input (one clear line on stderr, nothing
    uploaded), 1 the Hub refused (e.g. a bad token)."""
    from huggingface_hub.errors import HfHubHTTPError

    from ..hub.publish import PublishError

    try:
        return _run_push(args)
    except HfHubHTTPError as err:  # bad token, no write access, ...: the Hub's own message
        print(f"hf-fusion push: the Hub refused the upload: {err}", file=sys.stderr)
        return 1
    except (PublishError, ValueError, OSError, NotImplementedError) as err:
        print(f"hf-fusion push: error: {err}", file=sys.stderr)
        return 2


def _run_push(args: argparse.Namespace) -> int:
    import tempfile

    from ..hub import presets
    from ..hub.cards import CARD_OPTIONS
    from ..hub.classifier_card import classifier_model_name
    from ..hub.presets import convert_checkpoint, get_preset
    from ..hub.publish import (PUSH_OPTIONS, PublishError, check_repo_name, format_upload_plan, is_classifier_folder,
                               publish_model, resolve_token, validate_hub_repo_id)
    from ..models.configuration_fusion import fusion_model_name
    from ..models.modeling_fusion import AudioFusionModel

    sources = [name for name in ("model", "preset", "backbone", "space") if getattr(args, name)]
    if len(sources) != 1:
        raise PublishError("give exactly one of --model DIR, --preset NAME, --backbone NAME (with --checkpoint) "
                           "or --space DIR")
    if args.space:
        return _push_space(args)
    if args.model and (args.checkpoint or args.layers):
        raise PublishError("--checkpoint/--layers convert an original checkpoint: use them with --preset or --backbone")
    backbone = get_preset(args.preset).backbone if args.preset else args.backbone
    if args.backbone and args.backbone not in presets.converters():
        raise PublishError(f"--backbone {args.backbone!r}: no converter; convertible backbones: "
                           f"{sorted(presets.converters())}")
    preset_for_backbone = presets.preset_for_backbone()
    layers = args.layers or (list(get_preset(args.preset).fusion_layers) if args.preset else None)
    if args.repo_id and args.org:
        raise PublishError("give --repo-id or --org, not both")
    if args.org:
        if args.model:
            config = AudioFusionModel.config_class.from_pretrained(args.model)
            name = classifier_model_name(config) if is_classifier_folder(args.model) else config.fusion_name
        else:
            preset = preset_for_backbone.get(backbone)
            if not layers and preset is None:
                raise PublishError(f"--org needs --layers for backbone {backbone!r} (or give --repo-id org/name)")
            name = fusion_model_name(backbone, layers or preset.fusion_layers)
        repo_id = f"{args.org}/{name}"
    elif args.repo_id:
        repo_id = args.repo_id
    else:
        raise PublishError("give --repo-id org/name (or --org ORG to use the fused model's name)")
    validate_hub_repo_id(repo_id)
    early_layers = layers or getattr(preset_for_backbone.get(backbone), "fusion_layers", None)
    from ..catalog import entry_for

    knowable = backbone is not None and entry_for(backbone).aliases(None) is not None
    if not args.model and knowable and early_layers:  # before converting (a folder, or hf: once loaded)
        check_repo_name(repo_id, backbone, early_layers, force=args.force_name)
    token = None if args.dry_run else resolve_token(args.token)  # fail before any conversion or upload

    with tempfile.TemporaryDirectory(prefix="hf-fusion-convert-") as tmp:
        model = args.model
        source_checkpoint = None
        if model is None:
            source_checkpoint = args.checkpoint
            model = convert_checkpoint(backbone, args.checkpoint, layers, Path(tmp) / "converted", **dict(args.option))
            if source_checkpoint is None and backbone in preset_for_backbone:
                source_checkpoint = preset_for_backbone[backbone].default_checkpoint
            elif Path(source_checkpoint).exists():
                source_checkpoint = Path(source_checkpoint).name  # no local paths in a public card
        options = {name: getattr(args, name) for name in PUSH_OPTIONS + CARD_OPTIONS if name != "source_checkpoint"}
        result = publish_model(model, repo_id, out_dir=args.out, token=token, source_checkpoint=source_checkpoint,
                               **options)
    plan = format_upload_plan(
        result.files, repo_id, private=args.private, revision=args.revision, create_pr=args.create_pr
    )
    if args.dry_run:
        print(f"Dry run: would upload {plan}")
        print(f"Nothing was uploaded; the repo folder is {result.folder}")
    else:
        print(f"Uploaded {plan}")
        url = getattr(result.commit, "pr_url", None) or getattr(result.commit, "commit_url", None)
        if url:
            print(url)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/push_fusion_model.py`` (same options as ``hf-fusion push``)."""
    parser = argparse.ArgumentParser(
        prog="push_fusion_model.py",
        description="Assemble a fused model's Hub repo folder (card, weights, remote code) and upload it "
        "(or only build it with --dry-run).",
    )
    from ..hub import presets

    add_push_arguments(parser, sorted(presets.presets()), sorted(presets.converters()))
    return run_push(parser.parse_args(argv))


def _push_space(args: argparse.Namespace) -> int:
    """``push --space DIR --repo-id org/name``: check the Space folder, list its files, upload unless --dry-run."""
    from ..hub.publish import PublishError, format_upload_plan, push_folder, upload_plan, validate_hub_repo_id
    from ..hub.space import check_space_folder

    if not args.repo_id:
        raise PublishError("--space needs --repo-id org/name (the Space's id)")
    validate_hub_repo_id(args.repo_id)
    check_space_folder(args.space)
    plan = format_upload_plan(upload_plan(args.space), args.repo_id, private=args.private, revision=args.revision,
                              create_pr=args.create_pr).replace("huggingface.co/", "huggingface.co/spaces/", 1)
    if args.dry_run:
        print(f"Dry run: would upload {plan}")
        print(f"Nothing was uploaded; the Space folder is {args.space}")
        return 0
    commit = push_folder(args.space, args.repo_id, token=args.token, private=args.private, revision=args.revision,
                         create_pr=args.create_pr, commit_message=args.commit_message, repo_type="space")
    print(f"Uploaded {plan}")
    url = getattr(commit, "pr_url", None) or getattr(commit, "commit_url", None)
    if url:
        print(url)
    return 0
