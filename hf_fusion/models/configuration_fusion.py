"""``AudioFusionConfig``: everything that describes a fused model (backbone, layers, T_o, pooling, front end)."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from .backbone_base import layer_numbers  # noqa: F401  (re-exported)
from .backbones import get_backbone_class
from .fusion import POOLINGS
from .naming import fusion_model_name  # noqa: F401  (re-exported: one naming rule)


#: ``config.custom_pipelines`` of every fused model: ``pipeline("feature-extraction", model=..., trust_remote_code=True)``
#: runs the saved ``pipeline_fusion.FusedAudioFeaturePipeline`` (the model's remote code copies that module).
CUSTOM_PIPELINES = {
    "feature-extraction": {"impl": "pipeline_fusion.FusedAudioFeaturePipeline", "pt": ["AutoModel"], "type": "audio"}
}


class AudioFusionConfig(PretrainedConfig):
    """Configuration of an :class:`AudioFusionModel`.

    Args:
        backbone: registered backbone name (``"ast"``, ...).
        backbone_config: the backbone's own config (a dict or e.g. a ``transformers.ASTConfig``);
            missing keys take the paper model's values. Stored as a dict.
        fusion_layers: layer numbers to fuse, 1-based as in the paper (e.g. ``[5, 12]`` for AST-Fusion#5#12).
            ``None`` picks the backbone's paper default.
        num_output_frames: T_o of Eq.1. ``None`` = the backbone's rule (AST 1, VGGish 6 per 0.96 s
            example, CNN14 floor(T/32)); an int forces T_o.
        pooling: Eq.3, ``"mean+max"`` (paper), ``"mean"`` or ``"max"``.
        frontend: front-end settings overriding the backbone's defaults (``sampling_rate``, ...).
    """

    model_type = "audio-fusion"

    def __init__(
        self,
        backbone: str = "ast",
        backbone_config: dict[str, Any] | Any | None = None,
        fusion_layers: list[int] | None = None,
        num_output_frames: int | None = None,
        pooling: str = "mean+max",
        frontend: dict[str, Any] | None = None,
        **kwargs,
    ):
        backbone_cls = get_backbone_class(backbone)
        self.backbone = backbone
        self.backbone_config = backbone_cls.normalize_backbone_config(backbone_config)
        defaults = backbone_cls.default_frontend(self.backbone_config)
        self.frontend = backbone_cls.resolve_frontend(self.backbone_config, frontend)
        if self.frontend.get("name") != defaults.get("name"):
            raise ValueError(
                f"backbone {backbone!r} needs front end {defaults.get('name')!r}, got {self.frontend.get('name')!r}"
            )
        backbone_cls.check_frontend(self.backbone_config, self.frontend)
        if fusion_layers is None:
            fusion_layers = backbone_cls.default_fusion_layers(self.backbone_config)
        self.fusion_layers = backbone_cls.resolve_layers(self.backbone_config, fusion_layers, what="fusion_layers")
        if num_output_frames is not None and (not isinstance(num_output_frames, int) or num_output_frames < 1):
            raise ValueError(f"num_output_frames must be None or a positive int, got {num_output_frames!r}")
        self.num_output_frames = num_output_frames
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        # every fused model (also one saved before the pipeline existed) declares its feature-extraction pipeline
        custom = dict(kwargs.pop("custom_pipelines", None) or {})
        for task, info in CUSTOM_PIPELINES.items():
            custom.setdefault(task, {key: list(v) if isinstance(v, list) else v for key, v in info.items()})
        kwargs["custom_pipelines"] = custom
        super().__init__(**kwargs)

    @property
    def backbone_class(self):
        return get_backbone_class(self.backbone)

    @property
    def sampling_rate(self) -> int:
        return int(self.frontend["sampling_rate"])

    @property
    def layer_dims(self) -> dict[int, int]:
        """D_l of every tappable layer."""
        return self.backbone_class.layer_dims(self.backbone_config, self.frontend)

    @property
    def embedding_pooling(self) -> str:
        """The Eq.3 applied to the fused frames: ``pooling``, or ``"none"`` where taps have no time axis
        (AST with its own T_o = 1: the embedding is the concatenated vector itself)."""
        return self.backbone_class.embedding_pooling(self.pooling, self.num_output_frames)

    @property
    def hidden_size(self) -> int:
        """D of the fused embedding: the sum of the chosen layers' dims."""
        dims = self.layer_dims
        return sum(dims[layer] for layer in self.fusion_layers)

    @property
    def fusion_name(self) -> str:
        """Paper-style name, e.g. ``ast-fusion-5-12``."""
        return fusion_model_name(self.backbone, self.fusion_layers)

