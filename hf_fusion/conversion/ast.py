"""AST checkpoints -> ``AudioFusionModel(backbone="ast")``, for any input length.

Takes a transformers checkpoint (``ASTModel`` / ``ASTForAudioClassification``, Hub id or folder, e.g.
``MIT/ast-finetuned-audioset-10-10-0.4593``) or the original YuanGongND/ast ``.pth`` (timm layout,
converted key by key; the heads in :data:`TIMM_HEAD_PREFIXES` are ignored, any other unknown, missing or
mis-shaped key is an error naming it). ``max_length=N`` builds the model for N fbank frames. Key
mapping: docs/design.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import ASTModel, FeatureExtractionMixin

from ..models.backbone_ast import ASTBackbone, PRETRAINED_LENGTH_KEY, TIMM_LAYER_NORM_EPS, patch_grid
from ..models.frontends import AST_MEAN, AST_STD
from ..models.configuration_fusion import AudioFusionConfig
from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor
from ..models.modeling_fusion import AudioFusionModel
from ._checkpoint import check_keys, finish_conversion, load_checkpoint, state_dict_of

#: the AudioSet checkpoint the paper used (Hub id)
PAPER_CHECKPOINT = "MIT/ast-finetuned-audioset-10-10-0.4593"
ORIGINAL_CHECKPOINT_NAME = "audioset_10_10_0.4593.pth"
TIMM_HEAD_PREFIXES = ("v.head.", "v.head_dist.", "mlp_head.")
_FRONTEND_KEYS = ("sampling_rate", "num_mel_bins", "max_length", "mean", "std", "do_normalize")
#: timm block sub-module -> transformers ASTLayer sub-module (qkv is split separately)
_BLOCK_RENAMES = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.o_proj",
    "norm2": "layernorm_after",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_TOP_RENAMES = {
    "v.cls_token": "embeddings.cls_token",
    "v.dist_token": "embeddings.distillation_token",
    "v.pos_embed": "embeddings.position_embeddings",
    "v.patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "v.patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "v.norm.weight": "layernorm.weight",
    "v.norm.bias": "layernorm.bias",
}


def convert_ast_checkpoint(
    checkpoint: str | Path = PAPER_CHECKPOINT,
    fusion_layers: Sequence[int] | None = None,
    output_dir: str | Path | None = None,
    max_length: int | None = None,
    layer_norm_eps: float | None = None,
    trust_pickle: bool = False,
    **kwargs,
) -> tuple[AudioFusionModel, FusedAudioFeatureExtractor]:
    """An AST checkpoint (transformers id/folder, or an original ``.pth`` file) -> fused model + extractor.

    ``max_length``: input fbank frames (None = the checkpoint's own length); ``layer_norm_eps``: None =
    the checkpoint's (transformers configs: theirs, usually 1e-12; ``.pth``: 1e-6), pass 1e-6 to match
    the original model with a transformers copy. A ``.pth`` file goes to :func:`convert_original_ast_checkpoint`
    (``kwargs``: its geometry options); otherwise ``kwargs`` go to ``ASTModel.from_pretrained``.
    With ``output_dir`` the model and feature extractor are saved there.
    """
    if str(checkpoint).endswith((".pth", ".pt")) and not Path(str(checkpoint)).is_file():
        raise FileNotFoundError(f"checkpoint file not found: {checkpoint}")
    if Path(str(checkpoint)).is_file():
        return convert_original_ast_checkpoint(
            checkpoint, fusion_layers, output_dir, max_length=max_length,
            layer_norm_eps=TIMM_LAYER_NORM_EPS if layer_norm_eps is None else layer_norm_eps,
            trust_pickle=trust_pickle, **kwargs,
        )
    ast, info = ASTModel.from_pretrained(checkpoint, output_loading_info=True, **kwargs)
    if info["missing_keys"]:
        raise ValueError(f"{checkpoint}: AST weights missing from the checkpoint: {sorted(info['missing_keys'])}")
    frontend = {}
    try:
        fe_dict, _ = FeatureExtractionMixin.get_feature_extractor_dict(checkpoint, **kwargs)
        frontend = {k: fe_dict[k] for k in _FRONTEND_KEYS if k in fe_dict}
    except OSError:
        pass  # no preprocessor_config.json: the AudioSet defaults apply
    backbone_config = ast.config.to_dict()
    if layer_norm_eps is not None:
        backbone_config["layer_norm_eps"] = float(layer_norm_eps)
    model = _fused_model(backbone_config, fusion_layers, frontend, max_length)
    model.backbone.ast.load_state_dict(ast.state_dict(), strict=True)
    return finish_conversion(model, output_dir)


def convert_original_ast_checkpoint(
    checkpoint: str | Path,
    fusion_layers: Sequence[int] | None = None,
    output_dir: str | Path | None = None,
    max_length: int | None = None,
    layer_norm_eps: float = TIMM_LAYER_NORM_EPS,
    pretrained_max_length: int = 1024,
    num_mel_bins: int = 128,
    frequency_stride: int = 10,
    time_stride: int = 10,
    num_attention_heads: int | None = None,
    trust_pickle: bool = False,
) -> tuple[AudioFusionModel, FusedAudioFeatureExtractor]:
    """YuanGongND/ast ``.pth`` (timm DeiT layout; key mapping in docs/design.md) -> fused model + extractor.

    The weights do not record the input geometry: ``pretrained_max_length`` / ``num_mel_bins`` / strides
    are the ones the checkpoint was trained with (AudioSet AST: 1024 frames, 128 bins, stride 10: a
    12 x 101 patch grid, checked against ``pos_embed``); ``num_attention_heads`` defaults to
    hidden / 64 (DeiT: 3, 6, 12 heads). The front end is AudioSet's normalisation
    (``hf_fusion.app.task_model.set_input_normalization`` switches to task statistics).
    """
    state = state_dict_of(load_checkpoint(checkpoint, trust_pickle=trust_pickle), checkpoint)
    state = _strip_prefix(state, "module.")
    required = [k for k in _TOP_RENAMES if k not in state]
    if required:
        raise ValueError(f"{checkpoint}: not an original (timm) AST checkpoint: missing keys {required}; "
                         f"found e.g. {sorted(state)[:8]}")
    hidden = int(state["v.cls_token"].shape[-1])
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"v\.blocks\.(\d+)\.", k))})
    if not blocks or blocks != list(range(len(blocks))):
        raise ValueError(f"{checkpoint}: expected transformer blocks v.blocks.0..N-1, found indices {blocks}")
    proj = state["v.patch_embed.proj.weight"]
    if proj.dim() != 4 or proj.shape[1] != 1 or proj.shape[2] != proj.shape[3]:
        raise ValueError(f"{checkpoint}: v.patch_embed.proj.weight must be [D, 1, p, p] (one fbank channel), "
                         f"got {tuple(proj.shape)}")
    fc1 = state.get("v.blocks.0.mlp.fc1.weight")
    backbone_config = {
        "hidden_size": hidden,
        "num_hidden_layers": len(blocks),
        "num_attention_heads": int(num_attention_heads or max(1, hidden // 64)),
        "intermediate_size": int(fc1.shape[0]) if fc1 is not None else 4 * hidden,
        "layer_norm_eps": float(layer_norm_eps),
        "patch_size": int(proj.shape[-1]),
        "qkv_bias": "v.blocks.0.attn.qkv.bias" in state,
        "frequency_stride": int(frequency_stride),
        "time_stride": int(time_stride),
        "max_length": int(pretrained_max_length),
        "num_mel_bins": int(num_mel_bins),
    }
    f, t = patch_grid(pretrained_max_length, num_mel_bins, int(proj.shape[-1]), frequency_stride, time_stride)
    pos = tuple(state["v.pos_embed"].shape)
    if pos != (1, 2 + f * t, hidden):
        raise ValueError(
            f"{checkpoint}: v.pos_embed is {pos}, but a {pretrained_max_length}-frame x {num_mel_bins}-bin input "
            f"with stride ({frequency_stride}, {time_stride}) has a {f} x {t} patch grid -> (1, {2 + f * t}, {hidden}); "
            "pass the checkpoint's pretrained_max_length / num_mel_bins / strides"
        )
    frontend = {"num_mel_bins": int(num_mel_bins), "mean": AST_MEAN, "std": AST_STD, "do_normalize": True,
                "normalization": "audioset"}
    model = _fused_model(backbone_config, fusion_layers, frontend, max_length)
    target = model.backbone.ast.state_dict()
    weights = timm_to_transformers_state(state, len(blocks), checkpoint)
    check_keys(weights, target, checkpoint, "original AST (timm layout)")
    model.backbone.ast.load_state_dict(weights, strict=True)
    return finish_conversion(model, output_dir)


def timm_to_transformers_state(state: dict[str, torch.Tensor], num_layers: int, path="checkpoint") -> dict:
    """Rename a (``module.``-stripped) timm AST state dict to transformers' ``ASTModel`` names; qkv is split
    into q/k/v projections. Heads are dropped; a missing or unknown key is an error naming the keys."""
    expected = set(_TOP_RENAMES)
    for i in range(num_layers):
        for name in (*_BLOCK_RENAMES, "attn.qkv"):
            expected.update(f"v.blocks.{i}.{name}.{p}" for p in ("weight", "bias"))
    if "v.blocks.0.attn.qkv.bias" not in state:
        expected -= {f"v.blocks.{i}.attn.qkv.bias" for i in range(num_layers)}
    heads = [k for k in state if k.startswith(TIMM_HEAD_PREFIXES)]
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected - set(heads))
    if missing or unexpected:
        problems = ([f"missing keys {missing}"] if missing else []) + ([f"unexpected keys {unexpected}"] if unexpected else [])
        raise ValueError(f"{path}: not an original AST (timm layout) checkpoint: " + "; ".join(problems))
    out = {new: state[old] for old, new in _TOP_RENAMES.items()}
    for i in range(num_layers):
        src, dst = f"v.blocks.{i}.", f"layers.{i}."
        for old, new in _BLOCK_RENAMES.items():
            for p in ("weight", "bias"):
                out[f"{dst}{new}.{p}"] = state[f"{src}{old}.{p}"]
        for p in ("weight", "bias"):
            qkv = state.get(f"{src}attn.qkv.{p}")
            if qkv is None:
                continue
            if qkv.shape[0] % 3:
                raise ValueError(f"{path}: {src}attn.qkv.{p} has {qkv.shape[0]} rows, not 3 x hidden")
            for name, part in zip(("q_proj", "k_proj", "v_proj"), qkv.chunk(3, dim=0)):
                out[f"{dst}attention.{name}.{p}"] = part.clone()
    return out


def _strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _fused_model(backbone_config: dict, fusion_layers, frontend: dict, max_length: int | None) -> AudioFusionModel:
    """A fused AST model whose weights keep ``backbone_config["max_length"]``'s grid, taking ``max_length`` frames."""
    pretrained = int(backbone_config.get(PRETRAINED_LENGTH_KEY) or backbone_config["max_length"])
    frames = pretrained if max_length is None else int(max_length)
    backbone_config = {**backbone_config, "max_length": frames, PRETRAINED_LENGTH_KEY: pretrained}
    frontend = {**frontend, "max_length": frames}
    config = AudioFusionConfig(backbone="ast", backbone_config=backbone_config, fusion_layers=None if fusion_layers is None else list(fusion_layers),
                               frontend=frontend)
    return AudioFusionModel(config)
