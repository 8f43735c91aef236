"""Front ends vs their reference implementations (transformers, torchvggish, torchlibrosa, librosa).

Reference packages are test-only (``dev`` extra) and skipped per test when absent.  Signals are
synthesised: pure tones, an AM chirp, white / pink / very quiet noise, amplitudes within [-1, 1].
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest
import torch

from hf_fusion.models import frontends as fe

log = logging.getLogger(__name__)
TOL = 1e-4
LENGTHS_S = (0.5, 1.0, 3.3, 10.0)


def make_signals(sr: int, seconds: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Named float32 test signals of ``seconds`` at ``sr`` Hz."""
    rng = np.random.default_rng(seed)
    n = int(round(sr * seconds))
    t = np.arange(n) / sr
    spec = np.fft.rfft(rng.standard_normal(n))
    freq = np.arange(spec.size, dtype=np.float64)
    freq[0] = 1.0
    pink = np.fft.irfft(spec / np.sqrt(freq), n)
    sig = {
        "tone440": 0.5 * np.sin(2 * np.pi * 440.0 * t),
        "tone3150": 0.9 * np.sin(2 * np.pi * 3150.3 * t + 0.3),
        "am_chirp": 0.7 * np.sin(2 * np.pi * (100 * t + 1500 * t ** 2 / max(seconds, 1.0)))
        * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)),
        "white": rng.uniform(-0.5, 0.5, n),
        "pink": 0.8 * pink / np.abs(pink).max(),
        "quiet": 1e-3 * rng.standard_normal(n),
    }
    return {k: v.astype(np.float32) for k, v in sig.items()}


def maxdiff(a, b) -> float:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, f"shape {a.shape} != reference shape {b.shape}"
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


# ------------------------------------------------------------------------------------------------
# Mel matrices
# ------------------------------------------------------------------------------------------------
def test_kaldi_mel_matrix_matches_transformers():
    audio_utils = pytest.importorskip("transformers.audio_utils")
    ref = audio_utils.mel_filter_bank(num_frequency_bins=257, num_mel_filters=128, min_frequency=20,
                                      max_frequency=8000, sampling_rate=16000, norm=None, mel_scale="kaldi",
                                      triangularize_in_mel_space=True)
    d = maxdiff(fe.kaldi_mel_matrix(128, 257, 16000, 20.0, 8000.0), ref)
    log.info("kaldi mel vs transformers.audio_utils.mel_filter_bank: max|diff| %.3e", d)
    assert d <= 1e-12, f"kaldi mel matrix differs from transformers by {d:.3e}"


def test_htk_mel_matrix_matches_torchvggish():
    mel_features = pytest.importorskip("torchvggish.mel_features")
    ref = mel_features.spectrogram_to_mel_matrix(num_mel_bins=64, num_spectrogram_bins=257,
                                                 audio_sample_rate=16000, lower_edge_hertz=125,
                                                 upper_edge_hertz=7500)
    ours = fe.htk_mel_matrix(64, 257, 16000, 125.0, 7500.0)
    d = maxdiff(ours, ref)
    log.info("htk mel vs torchvggish spectrogram_to_mel_matrix: max|diff| %.3e", d)
    assert d <= 1e-12, f"VGGish mel matrix differs from torchvggish by {d:.3e}"
    assert not ours[0].any(), "DC row must be zero"


@pytest.mark.parametrize("sr, n_fft, fmax", [(16000, 512, 8000.0), (32000, 1024, 14000.0), (22050, 2048, None)])
def test_slaney_mel_matrix_matches_librosa(sr, n_fft, fmax):
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=64, fmin=50.0, fmax=fmax).T
    ours = fe.slaney_mel_matrix(sr, n_fft, 64, 50.0, fmax)
    d = maxdiff(ours, ref)
    log.info("slaney mel (sr=%d, n_fft=%d) vs librosa.filters.mel: max|diff| %.3e", sr, n_fft, d)
    assert ours.dtype == np.float32
    assert d == 0.0, f"Slaney mel matrix differs from librosa by {d:.3e} (expected bit-exact)"


def test_mel_matrices_are_cached_per_device(monkeypatch):
    calls = []
    original = fe.kaldi_mel_matrix
    monkeypatch.setattr(fe, "kaldi_mel_matrix", lambda *a: calls.append(a) or original(*a))
    fe._cached_tensor.cache_clear()
    x = torch.zeros(2, 4000)
    fe.ast_fbank(x)
    fe.ast_fbank(x[:1])
    assert len(calls) == 1, f"kaldi mel matrix built {len(calls)} times for two calls"
    fe._cached_tensor.cache_clear()


@pytest.mark.parametrize("kind, params", [
    ("htk", (64, 257, 16000, 125.0, 7500.0)),
    ("kaldi", (128, 257, 16000, 20.0, 8000.0)),  # has an all-zero filter
    ("slaney", (16000, 512, 64, 50.0, 8000.0)),
    ("slaney", (32000, 1024, 64, 50.0, 14000.0)),
])
def test_mel_groups_hold_every_weight_and_project_like_the_dense_matrix(kind, params):
    dense, bands = fe._mel(kind, params, torch.device("cpu"))
    rebuilt = torch.zeros_like(dense)
    for b0, b1, c0, c1, w in bands.groups:
        assert c1 - c0 <= fe._MEL_GROUP_COLUMNS
        rebuilt[bands.lo + b0: bands.lo + b1, c0:c1] = w
    assert torch.equal(rebuilt, dense), "the groups lose or move mel weights"
    assert 0 < bands.hi - bands.lo < dense.shape[0] + 1
    assert not dense[: bands.lo].any() and not dense[bands.hi:].any()
    used = sum(w.numel() for *_, w in bands.groups)
    assert used <= 0.5 * dense.numel(), f"groups hold {used} of {dense.numel()} weights: no saving"
    power = torch.rand(300, dense.shape[0], generator=torch.Generator().manual_seed(0))
    grouped = torch.empty(300, dense.shape[1])
    for b0, b1, c0, c1, w in bands.groups:
        torch.mm(power[:, bands.lo + b0: bands.lo + b1], w, out=grouped[:, c0:c1])
    ref = power.double() @ dense.double()
    assert maxdiff(grouped, ref) <= 1e-6 * float(ref.abs().max())


# ------------------------------------------------------------------------------------------------
# AST
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ast_extractor():
    transformers = pytest.importorskip("transformers")
    fx = transformers.ASTFeatureExtractor()
    assert hasattr(fx, "mel_filters"), "torchaudio is installed: transformers would not use its numpy path"
    return fx


@pytest.mark.parametrize("seconds", LENGTHS_S)
def test_ast_fbank_matches_transformers(ast_extractor, seconds):
    sig = make_signals(16000, seconds)
    ours = fe.ast_fbank(torch.from_numpy(np.stack(list(sig.values()))))
    assert ours.dtype == torch.float32 and ours.shape == (len(sig), 1024, 128)
    for i, (name, w) in enumerate(sig.items()):
        ref = ast_extractor(w, sampling_rate=16000, return_tensors="np")["input_values"][0]
        d = maxdiff(ours[i], ref)
        log.info("AST %s %.1f s: max|diff| %.3e", name, seconds, d)
        assert d <= TOL, f"AST fbank {name} {seconds} s: max|diff| {d:.3e} > {TOL}"


def test_ast_fbank_cut_and_unnormalised(ast_extractor):
    from transformers import ASTFeatureExtractor

    w = make_signals(16000, 3.3)["am_chirp"]
    fx = ASTFeatureExtractor(max_length=100, do_normalize=False)
    ref = fx(w, sampling_rate=16000, return_tensors="np")["input_values"][0]
    ours = fe.ast_fbank(torch.from_numpy(w)[None], max_length=100, do_normalize=False)[0]
    d = maxdiff(ours, ref)
    assert d <= TOL, f"AST fbank cut to 100 frames, unnormalised: max|diff| {d:.3e}"
    # padded frames normalise to the constant transformers gives them
    padded = fe.ast_fbank(torch.from_numpy(w)[None])[0, fe.ast_num_frames(w.size):]
    assert torch.allclose(padded, torch.full_like(padded, -fe.AST_MEAN / (2 * fe.AST_STD)))


# ------------------------------------------------------------------------------------------------
# VGGish
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vggish_input():
    return pytest.importorskip("torchvggish.vggish_input")


@pytest.mark.parametrize("seconds", LENGTHS_S)
def test_vggish_examples_match_torchvggish(vggish_input, seconds):
    sig = make_signals(16000, seconds)
    ours = fe.vggish_log_mel_examples(torch.from_numpy(np.stack(list(sig.values()))))
    assert ours.dtype == torch.float32
    for i, (name, w) in enumerate(sig.items()):
        if w.size < fe.VGGISH_MIN_SAMPLES:
            # torchvggish gives no example at all; ours equals torchvggish on the zero-padded waveform
            assert vggish_input.waveform_to_examples(w, 16000, return_tensor=False).shape[0] == 0
            w = np.pad(w, (0, fe.VGGISH_MIN_SAMPLES - w.size))
        ref = vggish_input.waveform_to_examples(w, 16000, return_tensor=False)
        d = maxdiff(ours[i], ref)
        log.info("VGGish %s %.1f s: %d examples, max|diff| %.3e", name, seconds, ref.shape[0], d)
        assert d <= TOL, f"VGGish {name} {seconds} s: max|diff| {d:.3e} > {TOL}"


def test_vggish_example_counts():
    assert fe.VGGISH_MIN_SAMPLES == 15600  # 400 + 95 * 160: the samples 96 frames read
    assert fe.vggish_num_examples(160000) == 10  # 998 frames -> 10 whole examples
    assert fe.vggish_num_examples(8000) == 1
    assert fe.vggish_num_examples(15600 + 96 * 160 - 1) == 1
    assert fe.vggish_num_examples(15600 + 96 * 160) == 2
    assert fe.vggish_log_mel_examples(torch.zeros(3, 160000)).shape == (3, 10, 96, 64)


# ------------------------------------------------------------------------------------------------
# PANNs
# ------------------------------------------------------------------------------------------------
def librosa_log_mel(w: np.ndarray, sr: int) -> np.ndarray:
    """Exact float64 reference of the torchlibrosa pipeline, built from librosa itself."""
    import librosa

    p = fe.PANNS_PRESETS[sr]
    spec = librosa.stft(w.astype(np.float64), n_fft=p["window_size"], hop_length=p["hop_size"], window="hann",
                        center=True, pad_mode="reflect", dtype=np.complex128)
    mel = librosa.filters.mel(sr=sr, n_fft=p["window_size"], n_mels=64, fmin=p["fmin"], fmax=p["fmax"])
    return 10.0 * np.log10(np.maximum(mel.astype(np.float64) @ (np.abs(spec) ** 2), 1e-10)).T


def torchlibrosa_log_mel(x: torch.Tensor, sr: int) -> torch.Tensor:
    stft = pytest.importorskip("torchlibrosa.stft")
    p = fe.PANNS_PRESETS[sr]
    spec = stft.Spectrogram(n_fft=p["window_size"], hop_length=p["hop_size"], win_length=p["window_size"],
                            window="hann", center=True, pad_mode="reflect", freeze_parameters=True)
    logmel = stft.LogmelFilterBank(sr=sr, n_fft=p["window_size"], n_mels=64, fmin=p["fmin"], fmax=p["fmax"],
                                   ref=1.0, amin=1e-10, top_db=None, freeze_parameters=True)
    with torch.no_grad():
        return logmel(spec(x))


@pytest.mark.parametrize("sr", [16000, 32000])
@pytest.mark.parametrize("seconds", [0.5, 3.3, 10.0])
def test_panns_log_mel_matches_librosa_maths(sr, seconds):
    pytest.importorskip("librosa")
    sig = make_signals(sr, seconds)
    ours = fe.panns_log_mel(torch.from_numpy(np.stack(list(sig.values()))), sr)
    assert ours.dtype == torch.float32 and ours.shape[:2] == (len(sig), 1)
    for i, (name, w) in enumerate(sig.items()):
        d = maxdiff(ours[i, 0], librosa_log_mel(w, sr))
        log.info("PANNs %d Hz %s %.1f s vs float64 librosa: max|diff| %.3e dB", sr, name, seconds, d)
        assert d <= TOL, f"PANNs {sr} Hz {name} {seconds} s: max|diff| {d:.3e} dB > {TOL} vs librosa float64"


@pytest.mark.parametrize("sr", [16000, 32000])
def test_panns_log_mel_matches_torchlibrosa(sr):
    """Broadband signals match torchlibrosa to 1e-4 dB.  On pure tones torchlibrosa's float32 DFT
    convolution is itself up to ~0.1 dB off the exact maths in bins 100 dB below the peak, so
    there we check that we are closer to the exact maths than torchlibrosa is."""
    pytest.importorskip("librosa")
    sig = make_signals(sr, 3.3)
    x = torch.from_numpy(np.stack(list(sig.values())))
    ref = torchlibrosa_log_mel(x, sr)
    ours = fe.panns_log_mel(x, sr)
    for i, name in enumerate(sig):
        d = maxdiff(ours[i], ref[i])
        if name in ("white", "pink", "quiet"):
            log.info("PANNs %d Hz %s vs torchlibrosa: max|diff| %.3e dB", sr, name, d)
            assert d <= TOL, f"PANNs {sr} Hz {name}: max|diff| {d:.3e} dB vs torchlibrosa > {TOL}"
        else:
            exact = librosa_log_mel(sig[name], sr)
            ours_err, ref_err = maxdiff(ours[i, 0], exact), maxdiff(ref[i, 0], exact)
            log.info("PANNs %d Hz %s: vs torchlibrosa %.3e dB; error vs exact: ours %.3e, torchlibrosa %.3e",
                     sr, name, d, ours_err, ref_err)
            assert ours_err <= TOL and ours_err < ref_err, (
                f"PANNs {sr} Hz {name}: our error {ours_err:.3e} dB, torchlibrosa's {ref_err:.3e} dB")


def test_panns_filterbank_and_frames_as_torchlibrosa():
    stft = pytest.importorskip("torchlibrosa.stft")
    for sr, p in fe.PANNS_PRESETS.items():
        logmel = stft.LogmelFilterBank(sr=sr, n_fft=p["window_size"], n_mels=64, fmin=p["fmin"], fmax=p["fmax"],
                                       ref=1.0, amin=1e-10, top_db=None)
        assert maxdiff(fe.slaney_mel_matrix(sr, p["window_size"], 64, p["fmin"], p["fmax"]), logmel.melW) == 0.0
    # T for 10 s at 32 kHz is 1001, as CNN14's block shapes assume
    assert fe.panns_log_mel(torch.zeros(1, 320000), 32000).shape == (1, 1, 1001, 64)
    assert fe.panns_log_mel(torch.zeros(1, 160000), 16000).shape == (1, 1, 1001, 64)
    assert fe.panns_num_frames(320000, 320) == 1001


# ------------------------------------------------------------------------------------------------
# Batches with lengths == each clip alone
# ------------------------------------------------------------------------------------------------
def ragged_batch(sr: int, seconds: list[float]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Clips of different lengths, padded with loud noise (not zeros) so leaks past lengths show."""
    rng = np.random.default_rng(1)
    names = ["am_chirp", "pink", "tone440", "white"]
    clips = [torch.from_numpy(make_signals(sr, s, seed=i)[names[i % 4]]) for i, s in enumerate(seconds)]
    n = max(c.numel() for c in clips) + 3 * sr // 10
    batch = torch.from_numpy(rng.uniform(-1, 1, (len(clips), n)).astype(np.float32))
    for i, c in enumerate(clips):
        batch[i, : c.numel()] = c
    return clips, batch, torch.tensor([c.numel() for c in clips])


def test_ast_lengths_equal_single_clips():
    clips, batch, lengths = ragged_batch(16000, [0.5, 2.2, 1.0, 3.0, 0.02])
    out = fe.ast_fbank(batch, lengths=lengths, max_length=400)
    for i, c in enumerate(clips):
        alone = fe.ast_fbank(c[None], max_length=400)[0]
        d = maxdiff(out[i], alone)
        assert d <= 1e-5, f"AST clip {i} ({c.numel()} samples): batched vs alone max|diff| {d:.3e}"


def test_vggish_lengths_equal_single_clips():
    clips, batch, lengths = ragged_batch(16000, [0.5, 2.2, 1.0, 3.0])
    out = fe.vggish_log_mel_examples(batch, lengths=lengths)
    assert out.shape[1] == max(fe.vggish_num_examples(c.numel()) for c in clips)
    for i, c in enumerate(clips):
        alone = fe.vggish_log_mel_examples(c[None])[0]
        k = alone.shape[0]
        assert k == fe.vggish_num_examples(c.numel())
        d = maxdiff(out[i, :k], alone)
        assert d <= 1e-5, f"VGGish clip {i} ({c.numel()} samples): batched vs alone max|diff| {d:.3e}"
        assert torch.all(out[i, k:] == math.log(0.01)), "slots past a clip's examples must hold log(0.01)"


@pytest.mark.parametrize("sr", [16000, 32000])
def test_panns_lengths_equal_single_clips(sr):
    clips, batch, lengths = ragged_batch(sr, [0.5, 2.2, 1.0, 3.0])
    out = fe.panns_log_mel(batch, sr, lengths=lengths)
    hop = fe.PANNS_PRESETS[sr]["hop_size"]
    for i, c in enumerate(clips):
        alone = fe.panns_log_mel(c[None], sr)[0]
        t = alone.shape[1]
        assert t == fe.panns_num_frames(c.numel(), hop)
        d = maxdiff(out[i, :, :t], alone)
        assert d <= 1e-4, f"PANNs clip {i} ({c.numel()} samples): batched vs alone max|diff| {d:.3e} dB"
        assert torch.all(out[i, :, t:] == -100.0)


def test_float64_input_and_float32_stft_option():
    w = torch.from_numpy(make_signals(16000, 1.2)["pink"])[None]
    for fn in (fe.ast_fbank, fe.vggish_log_mel_examples, lambda x, **k: fe.panns_log_mel(x, 16000, **k)):
        ref = fn(w)
        assert fn(w.double()).dtype == torch.float32
        assert maxdiff(fn(w.double()), ref) <= 1e-6
        fast = fn(w, stft_dtype=torch.float32)
        assert fast.dtype == torch.float32
        assert maxdiff(fast, ref) <= 1e-3, "float32 STFT drifted from the float64 one on broadband noise"


def test_input_dtype_does_not_change_the_float64_stft():
    """The waveform is widened to float64 block by block: a float32 batch gives bit for bit what the
    same samples give as float64 or float16 (exactly representable) input."""
    w = torch.from_numpy(np.stack(list(make_signals(16000, 2.2).values())))
    half = w.half()
    for fn in (fe.ast_fbank, fe.vggish_log_mel_examples, lambda x, **k: fe.panns_log_mel(x, 16000, **k)):
        assert torch.equal(fn(w.double()), fn(w))
        assert torch.equal(fn(half), fn(half.float()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    w = torch.from_numpy(np.stack(list(make_signals(16000, 2.0).values())))
    for fn in (fe.ast_fbank, fe.vggish_log_mel_examples, lambda x: fe.panns_log_mel(x, 16000)):
        cpu, gpu = fn(w), fn(w.cuda())
        assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
        assert maxdiff(gpu, cpu) <= 1e-4


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
def test_wrong_sample_rates_are_named():
    x = torch.zeros(1, 16000)
    with pytest.raises(ValueError, match=r"expects 16000 Hz.*got sampling_rate=44100"):
        fe.ast_fbank(x, sampling_rate=44100)
    with pytest.raises(ValueError, match=r"expects 16000 Hz.*got sampling_rate=8000"):
        fe.vggish_log_mel_examples(x, sampling_rate=8000)
    with pytest.raises(ValueError, match=r"no preset for sampling_rate=22050.*16000, 32000"):
        fe.panns_log_mel(x, 22050)
    # explicit settings make any rate work
    assert fe.panns_log_mel(x, 22050, window_size=1024, hop_size=256, fmax=11025).shape == (1, 1, 63, 64)


@pytest.mark.parametrize("fn", [fe.ast_fbank, fe.vggish_log_mel_examples, fe.panns_log_mel])
def test_wrong_inputs_are_named(fn):
    with pytest.raises(ValueError, match=r"\[batch, samples\]; got shape \(16000,\).*unsqueeze"):
        fn(torch.zeros(16000))
    with pytest.raises(ValueError, match=r"\[batch, samples\]; got shape \(1, 2, 16000\)"):
        fn(torch.zeros(1, 2, 16000))
    with pytest.raises(TypeError, match=r"floating point.*torch.int16"):
        fn(torch.zeros(1, 16000, dtype=torch.int16))
    with pytest.raises(TypeError, match=r"torch.Tensor.*got ndarray"):
        fn(np.zeros((1, 16000), dtype=np.float32))
    with pytest.raises(ValueError, match=r"lengths must be an integer tensor of shape \[2\].*got shape \(3,\)"):
        fn(torch.zeros(2, 16000), lengths=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 16000\].*16001"):
        fn(torch.zeros(2, 16000), lengths=[16000, 16001])
    with pytest.raises(ValueError, match=r"stft_dtype"):
        fn(torch.zeros(1, 16000), stft_dtype=torch.float16)


def test_panns_too_short_and_bad_band():
    with pytest.raises(ValueError, match=r"window_size // 2 = 512 samples; got a clip of 300 samples"):
        fe.panns_log_mel(torch.zeros(1, 300), 32000)
    with pytest.raises(ValueError, match=r"window_size // 2 = 256.*got a clip of 100"):
        fe.panns_log_mel(torch.zeros(2, 16000), 16000, lengths=[16000, 100])
    with pytest.raises(ValueError, match=r"fmax <= sampling_rate / 2; got fmin=50.0, fmax=9000.0"):
        fe.panns_log_mel(torch.zeros(1, 16000), 16000, fmax=9000)


def test_empty_and_tiny_inputs():
    # shorter than one Kaldi frame: all frames are padding, like transformers
    out = fe.ast_fbank(torch.zeros(2, 100))
    assert torch.allclose(out, torch.full_like(out, -fe.AST_MEAN / (2 * fe.AST_STD)))
    assert fe.vggish_log_mel_examples(torch.zeros(2, 10)).shape == (2, 1, 96, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fe.ast_fbank(torch.zeros(0, 16000)).shape == (0, 1024, 128)


@pytest.mark.parametrize("block_frames", [37, 250])
def test_block_tiling_does_not_change_results(monkeypatch, block_frames):
    """Blocks split clips along time (37 frames) or hold several clips (250): same numbers."""
    clips, batch, lengths = ragged_batch(16000, [2.5, 1.3, 3.1])
    calls = [
        lambda x, **k: fe.ast_fbank(x, max_length=300, **k),
        lambda x, **k: fe.vggish_log_mel_examples(x, **k),
        lambda x, **k: fe.panns_log_mel(x, 16000, **k),
    ]
    ref = [[fn(batch), fn(batch, lengths=lengths)] for fn in calls]
    monkeypatch.setattr(fe, "_CPU_BLOCK_BYTES", block_frames * 512 * 8)
    for fn, (plain, ragged) in zip(calls, ref):
        assert maxdiff(fn(batch), plain) <= 1e-5
        assert maxdiff(fn(batch, lengths=lengths), ragged) <= 1e-5
