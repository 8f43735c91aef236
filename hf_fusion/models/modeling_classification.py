"""``AudioFusionForAudioClassification``: a fused model plus a trained linear probe, as one transformers model.

fused embedding [B, D] (``AudioFusionModel.pooler_output``) -> standardisation ``(x - mean) / std`` with the
probe's training statistics (persistent buffers [D]) -> ``nn.Linear(D, num_labels)`` -> logits [B, C].
Built from an evaluation run by ``hf_fusion.evaluation.classifier_from_probe`` (or ``hf-fusion evaluate
--save-classifier DIR``); ``config.probe`` records which run (task, lr, seed, fold, test accuracy).
Travels to the Hub as remote code: imports its siblings only relatively.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_fusion import AudioFusionConfig
from .modeling_fusion import AudioFusionModel, AudioFusionPreTrainedModel, checkpoint_name, loading_problems


class AudioFusionForAudioClassification(AudioFusionPreTrainedModel):
    """Audio classifier: :class:`AudioFusionModel` (``self.fusion``) + standardisation + one linear layer.

    ``config.id2label`` / ``label2id`` name the classes; ``config.probe`` (a dict) describes the linear
    probe run the head comes from. Inputs are those of :class:`AudioFusionModel` (its feature extractor's
    ``input_values`` and, except for AST, ``attention_mask``).
    """

    def __init__(self, config: AudioFusionConfig):
        super().__init__(config)
        self.fusion = AudioFusionModel(config)
        dim = config.hidden_size
        # persistent: saved in model.safetensors, so from_pretrained restores them (never recomputed in __init__)
        self.register_buffer("feature_mean", torch.zeros(dim), persistent=True)
        self.register_buffer("feature_std", torch.ones(dim), persistent=True)
        self.classifier = nn.Linear(dim, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        """Weights missing from a checkpoint: the backbone's own rule; identity standardisation; a zero head."""
        if module is self:
            with torch.no_grad():
                self.feature_mean.zero_()
                self.feature_std.fill_(1.0)
        elif module is self.classifier:
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        else:
            self.fusion.backbone.init_weights(module)

    @classmethod
    def from_pretrained(cls, *args, allow_missing_weights: bool = False, **kwargs):
        """transformers' ``from_pretrained``, strict like :meth:`AudioFusionModel.from_pretrained`: a folder
        without the classifier's weights (e.g. a plain fused model) or with weights of another shape is an
        error naming the keys, unless ``allow_missing_weights=True``."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        said = loading_problems(info)
        if said and not allow_missing_weights:
            where = checkpoint_name(args, kwargs)
            raise ValueError(
                f"{where}: not a complete audio classifier for its config.json ({said}). A plain fused model "
                "has no classification head: build one from a linear probe (hf-fusion evaluate --save-classifier "
                "DIR, or hf_fusion.evaluation.classifier_from_probe), or pass allow_missing_weights=True")
        return (model, info) if want_info else model

    @torch.no_grad()
    def set_probe(self, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        """Load a linear probe: ``weight`` [D, C] and ``bias`` [C] act on ``(x - mean) / std`` (``mean``,
        ``std`` [D]), as the probe trained them (``hf_fusion.evaluation.ProbeRun``)."""
        dim, classes = self.config.hidden_size, self.config.num_labels
        shapes = {"weight": (tuple(weight.shape), (dim, classes)), "bias": (tuple(bias.shape), (classes,)),
                  "mean": (tuple(mean.shape), (dim,)), "std": (tuple(std.shape), (dim,))}
        bad = {k: got for k, (got, want) in shapes.items() if got != want}
        if bad:
            raise ValueError(f"probe shapes {bad} do not fit this classifier (D={dim} fused dims, C={classes} labels): "
                             "expected " + ", ".join(f"{k} {want}" for k, (_, want) in shapes.items()))
        if not bool((std > 0).all()):
            raise ValueError("std must be positive everywhere (the probe gives a constant feature std 1)")
        self.classifier.weight.copy_(weight.t().to(self.classifier.weight))
        self.classifier.bias.copy_(bias.to(self.classifier.bias))
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_std.copy_(std.to(self.feature_std))
        return self

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        """``input_values`` / ``attention_mask``: as for :class:`AudioFusionModel`. ``labels`` [B] int class
        indices add the mean cross-entropy ``loss``. Returns ``logits`` [B, num_labels]; ``hidden_states``
        (with ``output_hidden_states=True``) are the fused model's per-layer aligned features."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        fused = self.fusion(input_values, attention_mask=attention_mask, output_hidden_states=output_hidden_states,
                            return_dict=True)
        embedding = fused.pooler_output
        standardised = (embedding - self.feature_mean.to(embedding.dtype)) / self.feature_std.to(embedding.dtype)
        logits = self.classifier(standardised.to(self.classifier.weight.dtype))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels.to(logits.device).long())
        out = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=fused.hidden_states)
        return out if return_dict else out.to_tuple()
