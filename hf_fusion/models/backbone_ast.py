"""AST backbone through transformers' ``ASTModel(output_hidden_states=True)``, at any input length.

Layer l (1..N) is the final LayerNorm applied to ``hidden_states[l]``, then the mean of the [CLS] and
distillation tokens: ``[B, hidden_size]``, no time axis. ``backbone_config["max_length"]`` is the
number of fbank frames the model takes; the weights keep the checkpoint's positional grid
(``pretrained_max_length``) and every forward adapts it to ``max_length`` as YuanGongND/ast does
(details: docs/design.md; docs/reference.md, "The authors' protocol").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import ASTConfig, ASTModel
from transformers.models.audio_spectrogram_transformer.modeling_audio_spectrogram_transformer import ASTEmbeddings

from .backbone_base import FrontEnd, ResizableInput, TappedBackbone, proportional_fusion_layers
from .frontends import AST_HOP
from .frontends import AST_MEAN, AST_STD, ast_fbank, ast_num_frames, ast_samples_for_frames
from .fusion import align_layer

#: LayerNorm eps of the original (timm) AST; transformers' ASTConfig default is 1e-12
TIMM_LAYER_NORM_EPS = 1e-6
#: backbone_config key: frames of the checkpoint's positional-embedding grid (not an ASTConfig field)
PRETRAINED_LENGTH_KEY = "pretrained_max_length"


def patch_grid(num_frames: int, num_mel_bins: int, patch_size: int = 16, frequency_stride: int = 10,
               time_stride: int = 10) -> tuple[int, int]:
    """(frequency patches, time patches) of a [num_frames, num_mel_bins] fbank, e.g. 1024 x 128 -> (12, 101)."""
    if num_frames < patch_size or num_mel_bins < patch_size:
        raise ValueError(
            f"ast: an input of {num_frames} frames x {num_mel_bins} mel bins is smaller than one "
            f"{patch_size}x{patch_size} patch; use max_length >= {patch_size} frames"
        )
    return (num_mel_bins - patch_size) // frequency_stride + 1, (num_frames - patch_size) // time_stride + 1


def adapt_position_embeddings(position_embeddings: torch.Tensor, frequency_patches: int, time_patches: int,
                              new_time_patches: int) -> torch.Tensor:
    """[1, 2 + f * t, D] -> [1, 2 + f * t_new, D], AST's rule for another input length.

    The patch part is viewed as [D, f, t] (frequency-major, as the patch conv flattens); t_new <= t keeps
    the middle columns ``[t // 2 - t_new // 2, ... + t_new)`` (the reference's ``50 - t_new // 2`` for
    t = 101); t_new > t interpolates bilinearly to (f, t_new). Tokens 0 and 1 are kept as they are.
    The reference cuts only when t_new < t; at t_new == t its interpolation is the identity, so both agree.
    """
    tokens, patches = position_embeddings[:, :2], position_embeddings[:, 2:]
    dim = position_embeddings.shape[-1]
    if patches.shape[1] != frequency_patches * time_patches:
        raise ValueError(
            f"ast: positional embeddings hold {patches.shape[1]} patches, not {frequency_patches} x {time_patches}"
        )
    if new_time_patches == time_patches:
        return position_embeddings
    grid = patches.transpose(1, 2).reshape(1, dim, frequency_patches, time_patches)
    if new_time_patches < time_patches:
        start = time_patches // 2 - new_time_patches // 2
        grid = grid[..., start : start + new_time_patches]
    else:
        grid = nn.functional.interpolate(grid, size=(frequency_patches, new_time_patches), mode="bilinear")
    patches = grid.reshape(1, dim, frequency_patches * new_time_patches).transpose(1, 2)
    return torch.cat([tokens, patches], dim=1)


class LengthAdaptedASTEmbeddings(ASTEmbeddings):
    """transformers' ``ASTEmbeddings`` (same parameters, pretrained grid) for inputs of ``input_length`` frames."""

    def __init__(self, config: ASTConfig, input_length: int):
        super().__init__(config)
        self.set_input_length(input_length)

    def set_input_length(self, input_length: int) -> None:
        cfg = self.config
        geometry = (cfg.patch_size, cfg.frequency_stride, cfg.time_stride)
        self.pretrained_grid = patch_grid(cfg.max_length, cfg.num_mel_bins, *geometry)
        self.input_time_patches = patch_grid(int(input_length), cfg.num_mel_bins, *geometry)[1]
        self.input_length = int(input_length)

    def adapted_position_embeddings(self) -> torch.Tensor:
        """[1, 2 + f * t_in, D]: the positional embeddings this input length uses."""
        f, t = self.pretrained_grid
        return adapt_position_embeddings(self.position_embeddings, f, t, self.input_time_patches)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        batch_size = input_values.shape[0]
        patches = self.patch_embeddings(input_values)
        tokens = torch.cat(
            (self.cls_token.expand(batch_size, -1, -1), self.distillation_token.expand(batch_size, -1, -1), patches),
            dim=1,
        )
        return self.dropout(tokens + self.adapted_position_embeddings())


#: generic keys of a saved transformers config.json that are not ASTConfig fields
_GENERIC_CONFIG_KEYS = {"architectures", "id2label", "label2id", "torch_dtype", "dtype", "transformers_version",
                        "model_type", "_name_or_path", "num_labels", "problem_type", "return_dict",
                        "output_hidden_states", "output_attentions", "chunk_size_feed_forward", "tie_word_embeddings",
                        "is_encoder_decoder", "pruned_heads", "tokenizer_class", "finetuning_task", "prefix",
                        "task_specific_params", "_attn_implementation_autoset"}


class ASTBackbone(ResizableInput, TappedBackbone):
    """Taps transformer blocks 1..num_hidden_layers of an Audio Spectrogram Transformer."""

    name = "ast"
    has_time_axis = False
    input_normalizations = {"audioset": (AST_MEAN, AST_STD)}
    input_hop = AST_HOP
    frontend_spec = FrontEnd("ast_fbank", ast_fbank)

    @classmethod
    def tap_description(cls, backbone_config: dict[str, Any], layer: int) -> str:
        return f"ast.encoder.layer.{layer - 1} -> final layernorm, mean of tokens 0 and 1"

    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        return ASTConfig().to_dict()

    @classmethod
    def known_config_keys(cls) -> set[str]:
        """ASTConfig's fields, PretrainedConfig's generic ones (a saved transformers config.json carries
        them) and the checkpoint grid length."""
        return set(ASTConfig().to_dict()) | set(ASTConfig.__annotations__) | _GENERIC_CONFIG_KEYS | {PRETRAINED_LENGTH_KEY}

    @classmethod
    def normalize_backbone_config(cls, backbone_config: Any) -> dict[str, Any]:
        merged = super().normalize_backbone_config(backbone_config)
        # Keep AST's own fields only (not PretrainedConfig's generic ones), and round-trip through
        # ASTConfig so invalid values fail here with transformers' message.
        fields = {k: v for k, v in merged.items() if k in ASTConfig.__annotations__}
        checked = ASTConfig(**fields).to_dict()
        out = {k: checked[k] for k in fields}
        pretrained = merged.get(PRETRAINED_LENGTH_KEY)
        pretrained = out["max_length"] if pretrained is None else pretrained
        if isinstance(pretrained, bool) or not isinstance(pretrained, int) or pretrained < 1:
            raise ValueError(f"ast: {PRETRAINED_LENGTH_KEY} must be a positive int (frames), got {pretrained!r}")
        out[PRETRAINED_LENGTH_KEY] = pretrained
        for key in ("max_length", PRETRAINED_LENGTH_KEY):
            patch_grid(out[key], out["num_mel_bins"], out["patch_size"], out["frequency_stride"], out["time_stride"])
        return out

    @classmethod
    def tappable_layers(cls, backbone_config: dict[str, Any]) -> tuple[int, ...]:
        return tuple(range(1, int(backbone_config["num_hidden_layers"]) + 1))

    @classmethod
    def layer_dims(cls, backbone_config: dict[str, Any], frontend: dict[str, Any]) -> dict[int, int]:
        return {layer: int(backbone_config["hidden_size"]) for layer in cls.tappable_layers(backbone_config)}

    @classmethod
    def default_frontend(cls, backbone_config: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": cls.frontend_spec.name,
            "sampling_rate": 16000,
            "num_mel_bins": int(backbone_config["num_mel_bins"]),
            "max_length": int(backbone_config["max_length"]),
            "mean": AST_MEAN,
            "std": AST_STD,
            "do_normalize": True,
        }

    @classmethod
    def check_frontend(cls, backbone_config: dict[str, Any], frontend: dict[str, Any]) -> None:
        """The fbank must have exactly the frames and mel bins the model takes."""
        for key in ("max_length", "num_mel_bins"):
            if int(frontend[key]) != int(backbone_config[key]):
                raise ValueError(
                    f"ast: front-end {key}={frontend[key]} differs from the model's {key}={backbone_config[key]}; "
                    "the feature extractor must produce the model's input length (resize both with "
                    "hf_fusion.app.task_model.resize_input or AudioFusionModel.from_pretrained(path, max_length=N))"
                )

    @classmethod
    def input_length(cls, backbone_config: dict[str, Any]) -> int:
        return int(backbone_config["max_length"])

    @classmethod
    def input_frames_for_samples(cls, frontend: dict[str, Any], num_samples: int) -> int:
        """Kaldi fbank frames of a clip (EVAR's ``input_tdim``): 16000 samples -> 98; at least one patch."""
        rate = int(frontend.get("sampling_rate", 16000))
        frames = int(ast_num_frames(int(num_samples)))
        patch = int(cls.default_backbone_config()["patch_size"])
        if frames < patch:
            raise ValueError(f"ast: a clip of {int(num_samples)} samples ({int(num_samples) / rate:g} s) gives "
                             f"{max(frames, 0)} fbank frames; AST needs >= {patch} (one patch, "
                             f"{ast_samples_for_frames(patch) / rate:g} s)")
        return frames

    @classmethod
    def with_input_length(cls, backbone_config: dict[str, Any], frontend: dict[str, Any],
                          frames: int) -> tuple[dict[str, Any], dict[str, Any]]:
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"ast: the input length must be a positive int (fbank frames), got {frames!r}")
        backbone_config = cls.normalize_backbone_config({**backbone_config, "max_length": frames})  # checks it
        return backbone_config, {**frontend, "max_length": frames}

    @classmethod
    def default_fusion_layers(cls, backbone_config: dict[str, Any]) -> list[int]:
        return proportional_fusion_layers(int(backbone_config["num_hidden_layers"]))  # the paper's 5 of 12

    @staticmethod
    def ast_config(backbone_config: dict[str, Any]) -> ASTConfig:
        """The ``ASTConfig`` of the weights: ``max_length`` = the pretrained grid's length."""
        fields = {k: v for k, v in backbone_config.items() if k in ASTConfig.__annotations__}
        fields["max_length"] = int(backbone_config.get(PRETRAINED_LENGTH_KEY) or fields["max_length"])
        return ASTConfig(**fields)

    def __init__(self, backbone_config: dict[str, Any], frontend: dict[str, Any], attn_implementation=None):
        super().__init__(backbone_config, frontend)
        ast_config = self.ast_config(backbone_config)
        if attn_implementation is not None:
            ast_config._attn_implementation = attn_implementation
        self.ast = ASTModel(ast_config)
        self.ast.embeddings = LengthAdaptedASTEmbeddings(ast_config, int(backbone_config["max_length"]))

    def set_input_length(self, max_length: int) -> None:
        """Take inputs of ``max_length`` frames from now on (the weights are unchanged)."""
        self.ast.embeddings.set_input_length(int(max_length))
        self.backbone_config["max_length"] = int(max_length)

    def set_layer_norm_eps(self, eps: float) -> None:
        """Use ``eps`` in every LayerNorm (timm's AST: 1e-6)."""
        for module in self.ast.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = float(eps)
        self.ast.config.layer_norm_eps = float(eps)
        self.backbone_config["layer_norm_eps"] = float(eps)

    def forward(
        self, input_values: torch.Tensor, layers: Sequence[int], num_frames: int | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> dict[int, torch.Tensor]:
        """input_values: [B, max_length, num_mel_bins] AST fbank -> {layer: [B, hidden, T_o (=1)]}."""
        self.check_attention_mask(attention_mask)
        layers = self.check_layers(layers)
        expected = (self.backbone_config["max_length"], self.backbone_config["num_mel_bins"])
        if input_values.dim() != 3 or tuple(input_values.shape[1:]) != tuple(expected):
            raise ValueError(
                f"ast: input_values must be [B, {expected[0]}, {expected[1]}] (frames x mel bins, from "
                f"FusedAudioFeatureExtractor(backbone='ast') with the model's max_length), got shape "
                f"{tuple(input_values.shape)}"
            )
        hidden_states = self.ast(input_values, output_hidden_states=True).hidden_states
        out = {}
        for layer in layers:
            tokens = self.ast.layernorm(hidden_states[layer][:, :2])
            out[layer] = align_layer(tokens.mean(dim=1), num_frames or 1, name=f"ast layer {layer}")
        return out

    def init_weights(self, module: nn.Module) -> None:
        self.ast._init_weights(module)
