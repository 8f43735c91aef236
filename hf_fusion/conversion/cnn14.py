"""PANNs CNN14 checkpoint (``Cnn14_16k_mAP=0.438.pth`` / ``Cnn14_mAP=0.431.pth``) -> ``AudioFusionModel``.

The file holds the state dict under ``'model'``. ``bn0`` and ``conv_block1..6`` load 1:1; the STFT and
mel weights are checked against the front end's settings (which tells a 16 kHz checkpoint from a 32 kHz
one); the AudioSet head (:data:`HEAD_KEYS`) is ignored. Any other or missing key is an error naming the
keys (details: docs/design.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..models.backbone_cnn14 import PANNS_PRESETS
from ..models.configuration_fusion import AudioFusionConfig
from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor
from ..models.frontends import slaney_mel_matrix
from ..models.modeling_fusion import AudioFusionModel
from ._checkpoint import check_keys, finish_conversion, load_checkpoint, state_dict_of

#: the AudioSet head of PANNs' Cnn14, deliberately not converted
HEAD_KEYS = ("fc1.weight", "fc1.bias", "fc_audioset.weight", "fc_audioset.bias")
#: torchlibrosa front-end weights stored in the checkpoint (checked against our settings, not loaded)
STFT_KEYS = ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight")
MEL_KEY = "logmel_extractor.melW"


def _frontend_mismatch(state, settings) -> str | None:
    """Why the checkpoint's front-end weights do not fit ``settings`` (None when they do)."""
    n_fft = int(settings["window_size"])
    for key in STFT_KEYS:
        shape = tuple(state[key].shape)
        if shape != (n_fft // 2 + 1, 1, n_fft):
            return f"{key} is {shape}, an STFT of {shape[-1]} samples, not window_size={n_fft}"
    mel = state[MEL_KEY].float().numpy()
    ours = slaney_mel_matrix(int(settings["sampling_rate"]), n_fft, int(settings["mel_bins"]),
                             float(settings["fmin"]), float(settings["fmax"]))
    if mel.shape != ours.shape:
        return f"{MEL_KEY} is {mel.shape}, expected {ours.shape}"
    if not np.allclose(mel, ours, rtol=1e-4, atol=1e-6):
        return f"{MEL_KEY} differs from the Slaney mel matrix of these settings (max |diff| {np.abs(mel - ours).max():.3g})"
    return None


def convert_cnn14_checkpoint(
    checkpoint: str | Path,
    fusion_layers: Sequence[int] | None = None,
    output_dir: str | Path | None = None,
    sample_rate: int | None = None,
    trust_pickle: bool = False,
) -> tuple[AudioFusionModel, FusedAudioFeatureExtractor]:
    """Load a PANNs Cnn14 checkpoint into a fused CNN14 model (layers = conv blocks 1..6).

    ``sample_rate`` (16000 or 32000) picks the front-end preset; ``None`` infers it from the checkpoint's
    own STFT/mel weights. A preset that does not match those weights is an error. Strict key handling:
    see docs/design.md. With ``output_dir`` the model and feature extractor are saved there.
    """
    state = state_dict_of(load_checkpoint(checkpoint, trust_pickle=trust_pickle), checkpoint)
    frontend_keys = (*STFT_KEYS, MEL_KEY)
    absent = [k for k in frontend_keys if k not in state]
    if absent:
        raise ValueError(f"{checkpoint}: not a PANNs Cnn14 checkpoint: missing keys {absent} (front-end weights)")
    if state[MEL_KEY].dim() != 2:
        raise ValueError(f"{checkpoint}: {MEL_KEY} must be [freq_bins, mel_bins], got {tuple(state[MEL_KEY].shape)}")
    mel_bins = int(state[MEL_KEY].shape[1])
    rates = [int(sample_rate)] if sample_rate is not None else sorted(PANNS_PRESETS)
    reasons = {}
    for rate in rates:
        if rate not in PANNS_PRESETS:
            raise ValueError(f"sample_rate must be one of {sorted(PANNS_PRESETS)} (PANNs' CNN14 checkpoints), got {rate}")
        settings = {"sampling_rate": rate, "mel_bins": mel_bins, **PANNS_PRESETS[rate]}
        reasons[rate] = _frontend_mismatch(state, settings)
        if reasons[rate] is None:
            break
    else:
        detail = "; ".join(f"{rate} Hz: {why}" for rate, why in reasons.items())
        raise ValueError(f"{checkpoint}: the checkpoint's front end does not match the PANNs preset(s): {detail}")
    config = AudioFusionConfig(
        backbone="cnn14", backbone_config={"mel_bins": mel_bins}, fusion_layers=None if fusion_layers is None else list(fusion_layers),
        frontend={"sampling_rate": rate},
    )
    model = AudioFusionModel(config)
    weights = {k: v for k, v in state.items() if k not in frontend_keys and k not in HEAD_KEYS}
    check_keys(weights, model.backbone.state_dict(), checkpoint, "PANNs Cnn14")
    model.backbone.load_state_dict(weights, strict=True)
    return finish_conversion(model, output_dir)
