"""FusedAudioFeatureExtractor: parity with transformers' ASTFeatureExtractor, torchaudio independence, errors."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import ASTFeatureExtractor

from hf_fusion import FusedAudioFeatureExtractor

from .conftest import make_clips


@pytest.mark.parametrize("lengths", [(1.0,), (0.5, 3.3, 10.0), (12.0, 0.3)])
def test_ast_parity_with_transformers(lengths):
    clips = make_clips(lengths, seed=len(lengths))
    ours = FusedAudioFeatureExtractor(backbone="ast")(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    ref = ASTFeatureExtractor()(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    assert ours.shape == ref.shape == (len(clips), 1024, 128)
    assert ours.dtype == torch.float32
    diff = (ours - ref).abs().max().item()
    assert diff <= 1e-4, f"max abs difference {diff:.2e} against ASTFeatureExtractor"


def test_ast_parity_custom_settings_and_numpy_output():
    clips = make_clips((2.0, 0.8))
    kw = dict(num_mel_bins=64, max_length=300, mean=-5.0, std=3.0)
    ours = FusedAudioFeatureExtractor(backbone="ast", frontend=kw)(clips, sampling_rate=16000)["input_values"]
    ref = ASTFeatureExtractor(**kw)(clips, sampling_rate=16000, return_tensors="np")["input_values"]
    assert isinstance(ours, np.ndarray) and ours.shape == (2, 300, 64)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_single_clip_and_batch_agree():
    clips = make_clips((1.0, 2.5))
    fe = FusedAudioFeatureExtractor(backbone="ast")
    batch = fe(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    one = fe(clips[1], sampling_rate=16000, return_tensors="pt")["input_values"]
    torch.testing.assert_close(batch[1:], one, atol=1e-5, rtol=0)
    as_tensor = fe(torch.from_numpy(clips[1]), sampling_rate=16000, return_tensors="pt")["input_values"]
    torch.testing.assert_close(as_tensor, one)


def test_save_load_round_trip(tmp_path):
    fe = FusedAudioFeatureExtractor(backbone="ast", frontend={"max_length": 512})
    fe.save_pretrained(tmp_path)
    loaded = FusedAudioFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.frontend == fe.frontend and loaded.backbone == "ast" and loaded.sampling_rate == 16000


@pytest.mark.parametrize(
    "audio,kwargs,message",
    [
        (make_clips((1.0,))[0], {"sampling_rate": 44100}, r"44100 Hz but the ast front end expects 16000 Hz"),
        (np.zeros(0, np.float32), {"sampling_rate": 16000}, r"clip 0: audio is empty"),
        ([np.ones(100, np.float32), np.array([0.1, np.nan, np.inf], np.float32)], {"sampling_rate": 16000},
         r"clip 1: 2 of 3 samples are NaN or infinite"),
        ([np.zeros((2, 16000), np.float32)], {"sampling_rate": 16000}, r"clip 0: expected mono 1-D audio, got shape \(2, 16000\).*multi-channel"),
        (np.zeros((2, 3, 100), np.float32), {"sampling_rate": 16000}, r"got an array of shape \(2, 3, 100\)"),
        (np.zeros(1600, np.int16), {"sampling_rate": 16000}, r"expected float audio.*int16"),
        ([], {"sampling_rate": 16000}, r"empty list"),
        ("a.wav", {"sampling_rate": 16000}, r"got str"),
    ],
)
def test_errors_say_what_was_received_and_expected(audio, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        FusedAudioFeatureExtractor(backbone="ast")(audio, **kwargs)


def test_works_when_torchaudio_is_installed_but_broken(tmp_path):
    """A CPU-only torch with PyPI torchaudio fails to import; our front end must not care."""
    fake = tmp_path / "site"
    (fake / "torchaudio").mkdir(parents=True)
    (fake / "torchaudio" / "__init__.py").write_text("raise OSError('libcudart.so.12: cannot open shared object file')\n")
    dist = fake / "torchaudio-2.11.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.0\n")
    script = textwrap.dedent(
        """
        import numpy as np, hf_fusion
        clips = [np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3]
        x = hf_fusion.FusedAudioFeatureExtractor(backbone="ast")(clips, sampling_rate=16000)["input_values"]
        import sys
        assert sys.modules["torchaudio"] is None  # hidden by hf_fusion
        np.save("out.npy", x)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(fake) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clips = [np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3]
    expected = FusedAudioFeatureExtractor(backbone="ast")(clips, sampling_rate=16000)["input_values"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)
