"""The `feature-extraction` pipeline the cards declare: equal to calling the model, one clip and a batch of
clips of different lengths (with the feature extractor's attention_mask), for the first tiny variant of
every backbone's entry; from a saved folder via config.custom_pipelines + trust_remote_code, and via the
task `import hf_fusion` registers."""

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

from hf_fusion import FusedAudioFeaturePipeline
from hf_fusion.catalog import build_tiny, entries

from .conftest import make_clips

LENGTHS = (1.0, 0.55, 2.1)  # seconds, all different


#: the first tiny variant of every backbone's entry
VARIANTS = {entry.tiny[0].name: (entry.name, entry.tiny[0]) for entry in entries().values()}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def built(request, tmp_path_factory):
    torch.manual_seed(0)
    backbone, variant = VARIANTS[request.param]
    return (request.param, *build_tiny(variant, backbone, tmp_path_factory.mktemp(request.param)))


def _direct(model, fe, clips):
    """Per clip (pooler_output [D], valid frames [T_i, D]) from ONE padded model call with attention_mask."""
    features = fe(clips, sampling_rate=fe.sampling_rate, return_tensors="pt", return_attention_mask=True)
    with torch.no_grad():
        out = model(**features)
    mask = out.frame_mask
    return [(out.pooler_output[i], out.last_hidden_state[i] if mask is None else out.last_hidden_state[i][mask[i]])
            for i in range(len(clips))]


def _close(a, b):
    torch.testing.assert_close(torch.as_tensor(a), b, rtol=1e-5, atol=1e-6)


def test_pipeline_equals_the_model_one_clip_and_a_batch(built):
    name, model, fe = built
    pipe = pipeline("fused-audio-feature-extraction", model=model, feature_extractor=fe)
    assert isinstance(pipe, FusedAudioFeaturePipeline)
    clips = make_clips(LENGTHS, sr=fe.sampling_rate, seed=3)
    D = model.config.hidden_size

    one = pipe(clips[0], sampling_rate=fe.sampling_rate, return_frames=True)
    (pooled, frames), = _direct(model, fe, clips[:1])
    assert set(one) == {"pooler_output", "last_hidden_state"} and one["pooler_output"].shape == (D,)
    _close(one["pooler_output"], pooled)
    _close(one["last_hidden_state"], frames)
    assert set(pipe(clips[0])) == {"pooler_output"}  # frames only on request

    batch = pipe(clips, sampling_rate=fe.sampling_rate, return_frames=True)
    direct = _direct(model, fe, clips)
    assert len(batch) == len(clips)
    for got, (pooled, frames) in zip(batch, direct):
        _close(got["pooler_output"], pooled)
        _close(got["last_hidden_state"], frames)
    if model.config.backbone_class.has_time_axis:  # clips of different lengths keep their own frame counts
        assert len({len(got["last_hidden_state"]) for got in batch}) > 1
    # batch_size splits the list into several padded passes; numpy output and datasets audio dicts
    small = pipe([{"array": c, "sampling_rate": fe.sampling_rate} for c in clips], batch_size=2, return_tensors="np")
    for got, (pooled, _) in zip(small, direct):
        assert isinstance(got["pooler_output"], np.ndarray)
        np.testing.assert_allclose(got["pooler_output"], pooled.numpy(), rtol=1e-4, atol=1e-5)


def _build(name, folder):
    torch.manual_seed(0)
    return build_tiny(VARIANTS[name][1], VARIANTS[name][0], folder)


def test_wrong_rate_and_file_names_are_refused(tmp_path):
    model, fe = _build("ast", tmp_path)
    pipe = pipeline("fused-audio-feature-extraction", model=model, feature_extractor=fe)
    with pytest.raises(ValueError, match="Hz"):
        pipe(make_clips((0.5,))[0], sampling_rate=8000)
    with pytest.raises(ValueError, match="decoded audio"):
        pipe("clip.wav")


@pytest.mark.parametrize("name", ["ast", "crepe"])
def test_saved_folder_feature_extraction_pipeline(tmp_path, name):
    model, fe = _build(name, tmp_path / "built")
    folder = tmp_path / name
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["feature-extraction"]["impl"] == "pipeline_fusion.FusedAudioFeaturePipeline"
    assert (folder / "pipeline_fusion.py").is_file()  # copied with the model's remote code
    clips = make_clips(LENGTHS, sr=fe.sampling_rate, seed=4)
    direct = _direct(model, fe, clips)
    remote = pipeline("feature-extraction", model=str(folder), trust_remote_code=True)
    local = pipeline("fused-audio-feature-extraction", model=str(folder))
    for pipe in (remote, local):
        assert type(pipe).__name__ == "FusedAudioFeaturePipeline"
        for got, (pooled, frames) in zip(pipe(clips, sampling_rate=fe.sampling_rate, return_frames=True), direct):
            _close(got["pooler_output"], pooled)
            _close(got["last_hidden_state"], frames)
    # transformers asks for trust_remote_code for any config.custom_pipelines task
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("feature-extraction", model=str(folder))
