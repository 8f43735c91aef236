"""``AudioFusionModel``: backbone taps -> Eq.1 -> Eq.2 -> Eq.3, as a transformers ``PreTrainedModel``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_fusion import AudioFusionConfig
from .fusion import fuse


@dataclass
class AudioFusionOutput(ModelOutput):
    """Outputs of :class:`AudioFusionModel`.

    last_hidden_state: [B, T_o, D] fused frames (Eq.2), D = sum of the chosen layers' dims.
    pooler_output: [B, D] the fused embedding (Eq.3).
    hidden_states: with ``output_hidden_states=True``, one [B, T_o, D_l] per chosen layer, in
        ``config.fusion_layers`` order (each layer's Eq.1-aligned features).
    frame_mask: [B, T_o] bool, True for each clip's valid frames of ``last_hidden_state``; only when
        ``attention_mask`` was given (clips of different lengths in one batch).
    """

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    frame_mask: torch.Tensor | None = None


def loading_problems(info: dict) -> str:
    """transformers' loading info -> "N missing keys (e.g. ...); ..." ("" when the weights match)."""
    problems = {kind: sorted(map(str, info.get(kind) or [])) for kind in ("missing_keys", "unexpected_keys",
                                                                         "mismatched_keys")}
    return "; ".join(f"{len(keys)} {kind.replace('_', ' ')} (e.g. {', '.join(keys[:3])})"
                     for kind, keys in problems.items() if keys)


def checkpoint_name(args: tuple, kwargs: dict) -> str:
    """What ``from_pretrained(*args, **kwargs)`` was asked to load (for error messages)."""
    return str(args[0] if args else kwargs.get("pretrained_model_name_or_path", "the checkpoint"))


class AudioFusionPreTrainedModel(PreTrainedModel):
    config_class = AudioFusionConfig
    config: AudioFusionConfig
    base_model_prefix = "fusion"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    _supports_sdpa = True
    _supports_flash_attn = True

    def _init_weights(self, module):
        backbone = getattr(self, "backbone", None)
        if backbone is not None:
            backbone.init_weights(module)
        else:
            super()._init_weights(module)


class AudioFusionModel(AudioFusionPreTrainedModel):
    """Fused multilayer features of a pre-trained audio model (Niizumi et al., 2022).

    ``model(input_values).pooler_output`` is the [B, D] embedding; ``input_values`` comes from
    :class:`FusedAudioFeatureExtractor` with the same backbone.
    """

    def __init__(self, config: AudioFusionConfig):
        super().__init__(config)
        self.backbone = config.backbone_class(
            config.backbone_config, config.frontend, attn_implementation=getattr(config, "_attn_implementation", None)
        )
        self.post_init()

    @staticmethod
    def pipeline_class():
        """The ``feature-extraction`` pipeline class of fused models (``config.custom_pipelines`` names it;
        this relative import also makes ``save_pretrained`` copy ``pipeline_fusion.py`` with the model's code)."""
        from .pipeline_fusion import FusedAudioFeaturePipeline

        return FusedAudioFeaturePipeline

    @classmethod
    def from_pretrained(cls, *args, max_length: int | None = None, allow_missing_weights: bool = False, **kwargs):
        """transformers' ``from_pretrained``; ``max_length=N`` (AST only) makes the loaded model take N
        fbank frames (see :meth:`set_input_length`). Pair it with the matching extractor:
        ``FusedAudioFeatureExtractor.from_fusion_config(model.config)``.

        Strict: a checkpoint whose weights do not match the config (missing, unexpected or wrong-shape
        keys, e.g. a config.json edited to another backbone or more layers) is an error naming the keys,
        never a model with random weights; ``allow_missing_weights=True`` accepts it (transformers' warning)."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        said = loading_problems(info)
        if said and not allow_missing_weights:
            raise ValueError(
                f"{checkpoint_name(args, kwargs)}: the saved weights do not match its config.json (backbone "
                f"{model.config.backbone!r}, layers {list(model.config.fusion_layers)}): {said}. Was config.json "
                "edited? Restore it, or pass allow_missing_weights=True to load with random weights where they are missing")
        if max_length is not None:
            model.set_input_length(max_length)
        return (model, info) if want_info else model

    def set_input_length(self, max_length: int) -> "AudioFusionModel":
        """Re-target a ``resizable_input`` backbone (AST) to inputs of ``max_length`` frames, weights
        unchanged; updates ``config.backbone_config`` and ``config.frontend`` so a feature extractor built
        from the config pads/cuts to the same length."""
        backbone_class = self.config.backbone_class
        if not backbone_class.resizable_input:
            raise ValueError(f"backbone {backbone_class.name!r} has no fixed input length to change (it is not a "
                             "ResizableInput backbone)")
        backbone_config, frontend = backbone_class.with_input_length(self.config.backbone_config,
                                                                     self.config.frontend, max_length)
        self.backbone.set_input_length(max_length)
        self.config.backbone_config = self.backbone.backbone_config = backbone_config
        self.config.frontend = self.backbone.frontend = frontend
        return self

    @property
    def layer_dims(self) -> dict[int, int]:
        return self.config.layer_dims

    def tap(
        self,
        input_values: torch.Tensor,
        layers: Sequence[int] | str | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> dict[int, torch.Tensor]:
        """One backbone pass -> {layer: [B, D_l, T_o]} Eq.1-aligned features.

        ``layers``: ``None`` = the fusion layers, ``"all"`` = every tappable layer, or a list of layer numbers.
        ``attention_mask``: the feature extractor's mask of valid input steps (VGGish examples, CNN14 /
        CREPE frames, hf samples or mel frames); padding then never changes a clip's valid frames.
        """
        layers = self.config.backbone_class.resolve_layers(self.config.backbone_config, layers,
                                                           self.config.fusion_layers)
        self.backbone.check_attention_mask(attention_mask)
        return self.backbone(input_values, layers, num_frames=self.config.num_output_frames,
                             attention_mask=attention_mask)

    def frame_mask(self, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """The valid output frames [B, T_o] (bool) for an input ``attention_mask``."""
        self.backbone.check_attention_mask(attention_mask)
        return self.backbone.frame_mask(attention_mask, num_frames=self.config.num_output_frames)

    def pool(
        self, aligned: Sequence[torch.Tensor], mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq.2 + Eq.3 on aligned layers -> (frames [B, D, T_o], embedding [B, D]).

        ``mask`` [B, T_o]: valid frames per clip (Eq.3 ignores the others). Backbones whose taps have
        no time axis (AST) give T_o = 1; there Eq.1-3 reduce to concatenation, so the embedding is the
        concatenated vector (mean+max would only double it).
        """
        return fuse(aligned, self.config.embedding_pooling, mask=mask)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> AudioFusionOutput | tuple:
        """input_values: the feature extractor's output for this backbone (e.g. AST [B, 1024, 128],
        VGGish [B, n_examples, 96, 64], CNN14 [B, 1, T, 64], CREPE [B, T, 1024], hf [B, N] or
        [B, mels, frames]); attention_mask: its mask of valid input steps for clips of different
        lengths (every backbone but AST), so that each clip's embedding equals the one it gets alone
        (Eq.3 then pools only the clip's valid frames; for Whisper, whose extractor pads every clip to
        its chunk, pass it even for one clip to leave the padded chunk out of Eq.3)."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        taps = self.tap(input_values, attention_mask=attention_mask)
        aligned = [taps[layer] for layer in self.config.fusion_layers]
        mask = None if attention_mask is None else self.frame_mask(attention_mask)
        frames, embedding = self.pool(aligned, mask=mask)
        hidden = tuple(a.transpose(1, 2) for a in aligned) if output_hidden_states else None
        out = AudioFusionOutput(
            last_hidden_state=frames.transpose(1, 2), pooler_output=embedding, hidden_states=hidden, frame_mask=mask
        )
        return out if return_dict else out.to_tuple()
