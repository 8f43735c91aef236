"""Assemble a Hub repo folder for a fused model and upload it (``hf-fusion push``).

Repo folder: ``config.json`` (layers, front end, ``auto_map``), ``model.safetensors``,
``preprocessor_config.json``, the remote-code ``*.py`` modules, ``README.md`` (card with model-index) and
``results.json``. Checks (repo id, token, folder contents) all run before anything is sent.
An audio classifier (``AudioFusionForAudioClassification``, from ``hf-fusion evaluate --save-classifier``) is
pushed the same way; its card (pipeline_tag audio-classification) reports its own probe run
(``config.probe``) as the model-index (:mod:`.classifier_card`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hf_fusion  # noqa: F401  (registers the Auto classes and the remote-code auto_map)
from hf_fusion.models.configuration_fusion import fusion_model_name
from hf_fusion.models.feature_extraction_fusion import FusedAudioFeatureExtractor
from hf_fusion.models.modeling_classification import AudioFusionForAudioClassification
from hf_fusion.models.modeling_fusion import AudioFusionModel
from hf_fusion.catalog.repo_names import repo_name_conflicts

from .cards import CARD_OPTIONS, render_model_card, results_summary
from .classifier_card import classifier_model_name, classifier_summary, render_classifier_card


class PublishError(RuntimeError):
    """A push that cannot start (bad repo id, no token, incomplete folder)."""


# ---------------------------------------------------------------- checks


def validate_hub_repo_id(repo_id: str) -> str:
    """Require ``org/name`` and a name the Hub accepts; returns it unchanged."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(f"repo id must look like 'org/name' (e.g. 'my-org/ast-fusion-5-12'), got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise PublishError(f"invalid repo id {repo_id!r}: {err}") from None
    return repo_id


def backbone_aliases(config) -> tuple[str, ...]:
    """Further words that name this model's backbone in a repo name (its entry's ``repo_aliases``)."""
    from ..catalog import entry_for

    return entry_for(config.backbone).aliases(dict(config.backbone_config)) or ()


def check_repo_name(repo_id: str, backbone: str, layers, aliases: tuple[str, ...] = (), force: bool = False) -> None:
    """Refuse a repo name that contradicts the model (another backbone, other layer numbers; see
    :func:`hf_fusion.catalog.repo_names.repo_name_conflicts`) unless ``force`` (``--force-name``)."""
    org, name = repo_id.split("/")
    problems = repo_name_conflicts(name, backbone, list(layers), aliases)
    if problems and not force:
        right = fusion_model_name(backbone, layers)
        raise PublishError(
            f"repo name {name!r} contradicts the model {right}: {'; '.join(problems)}. Use --repo-id {org}/{right} "
            f"(or --org {org}), or pass --force-name to keep the name"
        )


def resolve_token(token: str | None = None) -> str:
    """``token`` or the usual huggingface_hub sources (``HF_TOKEN``, ``hf auth login``); fails clearly if none."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise PublishError(
            "no Hugging Face token found: run `hf auth login`, set HF_TOKEN, or pass --token; "
            "nothing was uploaded (use --dry-run to only build the folder)"
        )
    return token


_RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import\s", re.MULTILINE)


def check_repo_folder(folder: str | Path) -> None:
    """Raise :class:`PublishError` listing everything a loadable fused-model repo is missing."""
    folder = Path(folder)
    problems: list[str] = []

    def load(name: str) -> dict[str, Any]:
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            return {}
        return json.loads(path.read_text(encoding="utf-8"))

    config = load("config.json")
    preprocessor = load("preprocessor_config.json")
    auto_map = set(config.get("auto_map", {}))
    if config and not ("AutoConfig" in auto_map and auto_map & {"AutoModel", "AutoModelForAudioClassification"}):
        problems.append("config.json has no auto_map for AutoConfig/AutoModel (or AutoModelForAudioClassification): "
                        "trust_remote_code would fail")
    if preprocessor and "AutoFeatureExtractor" not in preprocessor.get("auto_map", {}):
        problems.append("preprocessor_config.json has no auto_map for AutoFeatureExtractor")
    if not list(folder.glob("*.safetensors")):
        problems.append("no *.safetensors weights")
    if list(folder.glob("*.bin")):
        problems.append("pickled *.bin weights present (only safetensors are published)")
    modules = {ref.split(".")[0] for ref in [*config.get("auto_map", {}).values(), *preprocessor.get("auto_map", {}).values()]}
    seen: set[str] = set()
    while modules:  # the auto_map modules and everything they import relatively
        module = modules.pop()
        if module in seen:
            continue
        seen.add(module)
        path = folder / f"{module}.py"
        if not path.is_file():
            problems.append(f"remote code {module}.py is missing")
            continue
        modules |= set(_RELATIVE_IMPORT.findall(path.read_text(encoding="utf-8")))
    if not (folder / "README.md").is_file():
        problems.append("README.md (model card) is missing")
    if problems:
        raise PublishError(f"{folder} is not a complete fused-model repo: " + "; ".join(problems))


# ---------------------------------------------------------------- folder


_MODELS = (AudioFusionModel, AudioFusionForAudioClassification)


def is_classifier_folder(path: str | Path) -> bool:
    """Whether a saved folder holds an ``AudioFusionForAudioClassification`` (config.json ``architectures``)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return AudioFusionForAudioClassification.__name__ in (config.get("architectures") or [])


def _default_extractor(model) -> FusedAudioFeatureExtractor:
    if isinstance(model, AudioFusionForAudioClassification):
        from hf_fusion.evaluation.export import classifier_feature_extractor

        return classifier_feature_extractor(model.config)
    return FusedAudioFeatureExtractor.from_fusion_config(model.config)


def _load_model(model):
    """(model, feature extractor) of a fused model or classifier, in memory or saved."""
    if isinstance(model, _MODELS):
        return model, _default_extractor(model)
    path = Path(model)
    if not (path / "config.json").is_file():
        raise PublishError(f"--model {path}: not a saved fused model folder (no config.json)")
    cls = AudioFusionForAudioClassification if is_classifier_folder(path) else AudioFusionModel
    loaded = cls.from_pretrained(path)
    if (path / "preprocessor_config.json").is_file():
        extractor = FusedAudioFeatureExtractor.from_pretrained(path)
    else:
        extractor = _default_extractor(loaded)
    if extractor.backbone != loaded.config.backbone:
        raise PublishError(
            f"{path}: preprocessor_config.json is for backbone {extractor.backbone!r} but the model is "
            f"{loaded.config.backbone!r}"
        )
    return loaded.eval(), extractor


def assemble_repo_folder(
    model: str | Path | AudioFusionModel | AudioFusionForAudioClassification,
    out_dir: str | Path,
    repo_id: str,
    *,
    overwrite: bool = False,
    force_name: bool = False,
    **card_options,
) -> Path:
    """Write the complete repo folder for ``model`` (saved folder or model) into ``out_dir`` and check it.

    The model and feature extractor are re-saved (safetensors, ``auto_map``, the package's current remote
    code). ``card_options`` (:data:`hf_fusion.hub.cards.CARD_OPTIONS`: results, layerwise, selection,
    results_model, source_checkpoint, license) go into the card and ``results.json``
    (see :func:`hf_fusion.hub.cards.render_model_card`). A non-empty ``out_dir`` is refused unless
    ``overwrite`` (stale files would be uploaded too); a ``repo_id`` whose name contradicts the model
    (:func:`check_repo_name`) unless ``force_name``. A classifier's card reports its own probe run
    (``config.probe``); ``results`` / ``layerwise`` / ``selection`` are refused for it.
    """
    validate_hub_repo_id(repo_id)
    unknown = sorted(set(card_options) - set(CARD_OPTIONS))
    if unknown:
        raise TypeError(f"assemble_repo_folder: unknown card option(s) {unknown}; known: {list(CARD_OPTIONS)}")
    out = Path(out_dir)
    if not isinstance(model, _MODELS):
        source = Path(model).resolve()
        target = out.resolve()
        if target == source or source.is_relative_to(target) or target.is_relative_to(source):
            raise PublishError(f"--out {out} overlaps --model {model}: the repo folder must be a separate folder "
                               "(it is replaced as a whole)")
    if out.exists() and not out.is_dir():
        raise PublishError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise PublishError(f"output folder {out} is not empty; choose a new one or pass --overwrite")
    if isinstance(model, AudioFusionModel) or (Path(model) / "config.json").is_file():  # before loading weights
        config = model.config if isinstance(model, AudioFusionModel) else AudioFusionModel.config_class.from_pretrained(model)
        check_repo_name(repo_id, config.backbone, config.fusion_layers, backbone_aliases(config), force=force_name)
    fused, extractor = _load_model(model)  # a missing or broken model fails here, before --out is touched
    classifier = isinstance(fused, AudioFusionForAudioClassification)
    if classifier:
        given = [f"--{name}" for name in ("results", "layerwise", "selection") if card_options.get(name) is not None]
        if given:
            raise PublishError(f"{' '.join(given)}: a classifier's card reports its own probe run (config.json "
                               "'probe'); push its fused model for a card with evaluation files")
        classifier_model_name(fused.config)  # a classifier without its probe record fails here
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        fused.save_pretrained(build, safe_serialization=True)
        extractor.save_pretrained(build)
        if classifier:
            card = render_classifier_card(fused.config, repo_id, license=card_options.get("license"),
                                          source_checkpoint=card_options.get("source_checkpoint"))
            summary = classifier_summary(fused.config, repo_id)
            (build / "probe.json").write_text(json.dumps(fused.config.probe, indent=1) + "\n", encoding="utf-8")
        else:
            card = render_model_card(fused.config, repo_id, **card_options)
            summary = results_summary(fused.config, repo_id, **{name: card_options.get(name) for name in
                                                                ("results", "layerwise", "selection", "results_model")})
        card.save(build / "README.md")
        (build / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        check_repo_folder(build)
        _swap_in(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out


def _swap_in(build: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``build`` folder (same parent): the old folder is moved aside
    first and deleted only once the new one is in place, so a failure never leaves ``out`` half-written."""
    if not out.exists():
        os.replace(build, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / out.name)
    try:
        os.replace(build, out)
    except BaseException:
        os.replace(old / out.name, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def upload_plan(folder: str | Path) -> list[tuple[str, int]]:
    """(path in the repo, size in bytes) of every file ``upload_folder`` would send, sorted."""
    folder = Path(folder)
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.relative_to(folder).as_posix().startswith(".")
    )


def _human(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


def format_upload_plan(
    plan: list[tuple[str, int]], repo_id: str, *, private=False, revision=None, create_pr=False
) -> str:
    """Human-readable list of an :func:`upload_plan` (files and sizes) for ``repo_id``."""
    total = sum(size for _, size in plan)
    width = max(len(name) for name, _ in plan)
    lines = [
        f"{len(plan)} files ({_human(total)}) for https://huggingface.co/{repo_id} "
        f"(private={private}, revision={revision or 'main'}, create_pr={create_pr}):"
    ]
    lines += [f"  {name:<{width}}  {_human(size):>9}" for name, size in plan]
    return "\n".join(lines)


# ---------------------------------------------------------------- upload


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    repo_type: str = "model",
):
    """Upload a checked repo folder: ``create_repo(exist_ok=True)`` (+ the ``revision`` branch) then
    ``upload_folder``. Repo id, token and folder are checked first (``repo_type="space"``: a Gradio Space
    folder of :func:`hf_fusion.hub.space.build_space`); returns ``upload_folder``'s CommitInfo."""
    from huggingface_hub import HfApi

    validate_hub_repo_id(repo_id)
    if repo_type == "space":
        from .space import check_space_folder

        check_space_folder(folder)
    elif repo_type == "model":
        check_repo_folder(folder)
    else:
        raise ValueError(f"repo_type must be 'model' or 'space', got {repo_type!r}")
    token = resolve_token(token)
    api = HfApi(token=token)
    space = {"space_sdk": "gradio"} if repo_type == "space" else {}
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **space)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type=repo_type,
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message or f"Upload {repo_id.split('/')[-1]} (hf-fusion)",
        ignore_patterns=["__pycache__/*", "*.pyc", ".*"],
    )


#: publish_model's own options that ``hf-fusion push`` passes on under the same names (besides --out, the token)
PUSH_OPTIONS = ("dry_run", "private", "revision", "create_pr", "commit_message", "overwrite", "force_name")


@dataclass
class PublishResult:
    folder: Path
    repo_id: str
    files: list[tuple[str, int]] = field(default_factory=list)
    uploaded: bool = False
    commit: Any = None


def publish_model(
    model: str | Path | AudioFusionModel,
    repo_id: str,
    *,
    out_dir: str | Path | None = None,
    dry_run: bool = False,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    overwrite: bool = False,
    force_name: bool = False,
    **card_options,
) -> PublishResult:
    """Assemble the repo folder of ``model`` and (unless ``dry_run``) upload it to ``repo_id``.

    Without ``dry_run`` the token is resolved before anything is built. ``card_options``: results,
    layerwise, selection, results_model, source_checkpoint, license (see :func:`assemble_repo_folder`).
    ``out_dir`` None = a temporary folder (kept only for dry runs).
    """
    validate_hub_repo_id(repo_id)
    if not dry_run:
        token = resolve_token(token)
    temporary = out_dir is None
    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="hf-fusion-push-"))
    try:
        assemble_repo_folder(model, folder, repo_id, overwrite=overwrite, force_name=force_name, **card_options)
        result = PublishResult(folder=folder, repo_id=repo_id, files=upload_plan(folder))
        if not dry_run:
            result.commit = push_folder(
                folder,
                repo_id,
                token=token,
                private=private,
                revision=revision,
                create_pr=create_pr,
                commit_message=commit_message,
            )
            result.uploaded = True
        return result
    finally:
        if temporary and not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
