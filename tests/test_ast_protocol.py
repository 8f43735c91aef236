"""The authors' AST protocol: per-task input length, positional-embedding rule, task normalisation, the
original timm checkpoint, and number-for-number parity with a reference of their pipeline."""

import json

import numpy as np
import pytest
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTModel, AutoModel

from hf_fusion import AudioFusionModel, FusedAudioFeatureExtractor
from hf_fusion.app.task_model import (
    input_statistics,
    prepare_task_model,
    resize_input,
    set_input_normalization,
)
from hf_fusion.models.backbone_ast import TIMM_LAYER_NORM_EPS, ASTBackbone, adapt_position_embeddings
from hf_fusion.conversion import convert_ast_checkpoint

from .conftest import make_clips
from .reference_ast import ReferenceAST, authors_embedding, evar_norm_stats, reference_fbank

SMALL = dict(dim=64, depth=4, heads=4, mlp_hidden=128)
FUSION = [2, 4]  # 1-based; the authors' config would say [1, 3]
LENGTHS_S = (1.0, 2.5, 4.0, 5.8, 8.2, 30.0)
#: max |ours - reference| per (source, clip length), filled by the parity test (printed with -s)
MEASURED: dict = {}


def _task_clips(seconds: float, n: int, seed: int):
    """n clips cut / zero-padded to the task length (EVAR's int(16000 * s) samples)."""
    samples = int(16000 * seconds)
    clips = make_clips(tuple(seconds * (0.6 + 0.2 * (i % 3)) for i in range(n)), seed=seed)
    return [np.pad(c, (0, max(0, samples - c.size)))[:samples].astype(np.float32) for c in clips]


@pytest.fixture(scope="module")
def reference():
    return ReferenceAST(**SMALL, seed=7)


@pytest.fixture(scope="module")
def timm_pth(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("ast-orig") / "audioset_10_10_0.4593.pth"
    torch.save(reference.checkpoint_state(), path)
    return path


@pytest.fixture(scope="module")
def transformers_source(tmp_path_factory):
    """A random transformers AST folder (1024-frame grid, its config says eps 1e-12) + a reference
    holding the same weights."""
    torch.manual_seed(11)
    config = ASTConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128)
    ast = ASTModel(config).eval()
    with torch.no_grad():
        for name, p in ast.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() == 1 else 1 / np.sqrt(p[0].numel())))
            if "layernorm" in name and name.endswith("weight"):
                p.add_(1.0)
    folder = tmp_path_factory.mktemp("ast-hf") / "src"
    ast.save_pretrained(folder)
    ASTFeatureExtractor().save_pretrained(folder)
    ref = ReferenceAST(**SMALL, seed=0)
    ref.load_transformers_state(ast.state_dict())
    return folder, ref


def test_frames_for_seconds():
    assert [ASTBackbone.input_frames_for_seconds(s) for s in LENGTHS_S] == [98, 248, 398, 578, 818, 2998]
    assert ASTBackbone.input_frames_for_seconds(10.24) == 1022
    with pytest.raises(ValueError, match="AST needs >= 16"):
        ASTBackbone.input_frames_for_seconds(0.1)


@pytest.mark.parametrize("frames", [98, 248, 398, 578, 818, 1024, 2998])
def test_position_rule_equals_reference(reference, frames):
    ours = adapt_position_embeddings(reference.v.pos_embed.detach(), 12, 101, (frames - 16) // 10 + 1)
    torch.testing.assert_close(ours, reference.pos_embed_for(frames), rtol=0, atol=0)


@pytest.mark.parametrize("frames", [98, 578, 2998])
def test_fbank_matches_transformers_at_any_length(frames):
    """Our batched fbank at N frames == transformers' ASTFeatureExtractor(max_length=N) numpy path, for
    clips shorter (padded), equal to and longer (cut) than N frames, with explicit mean/std."""
    seconds = (frames - 1) * 0.01 + 0.025
    clips = make_clips((seconds * 0.5, seconds, seconds * 1.3), seed=3)
    ref = ASTFeatureExtractor(max_length=frames, mean=-6.5, std=3.25)(clips, sampling_rate=16000, return_tensors="np")
    fe = FusedAudioFeatureExtractor(backbone="ast", frontend={"max_length": frames, "mean": -6.5, "std": 3.25})
    ours = fe(clips, sampling_rate=16000, return_tensors="np")["input_values"]
    assert ours.shape == (3, frames, 128)
    np.testing.assert_allclose(ours, ref["input_values"], rtol=0, atol=2e-5)


def test_task_normalization_is_evar_statistic():
    """EVAR's RunningStats (incremental updates, batches until >= max clips) == ours; 'pooled' differs."""
    clips = _task_clips(1.0, 7, seed=5)
    frames = ASTBackbone.input_frames_for_seconds(1.0)
    fe = FusedAudioFeatureExtractor(backbone="ast", frontend={"max_length": frames})
    # 3 batches (3, 3, 1) would be 7 clips; max 5 stops after the second batch (6 clips)
    stats = input_statistics(clips, fe, max_clips=5, batch_size=3)
    ref_mean, ref_std = evar_norm_stats(clips, frames, batch_size=3, max_samples=5)
    assert stats["num_clips"] == 6
    assert stats["mean"] == pytest.approx(ref_mean, rel=1e-6) and stats["std"] == pytest.approx(ref_std, rel=1e-6)
    one = input_statistics(clips, fe, batch_size=128)  # one batch: its own mean/std
    assert one["num_clips"] == 7
    assert (one["mean"], one["std"]) == pytest.approx(evar_norm_stats(clips, frames), rel=1e-6)
    raw = reference_fbank(clips[:6], frames).double()
    pooled = input_statistics(clips, fe, max_clips=5, batch_size=3, statistic="pooled")
    assert (pooled["mean"], pooled["std"]) == pytest.approx((float(raw.mean()), float(raw.std(unbiased=False))), rel=1e-6)
    with pytest.raises(ValueError, match=r"clip 1: 8000 samples give fewer than the model's 98 input frames.*crop_or_pad"):
        input_statistics([clips[0], clips[1][:8000]], fe)
    with pytest.raises(ValueError, match="statistic must be"):
        input_statistics(clips, fe, statistic="median")


def test_resize_and_normalization_round_trip(timm_pth, tmp_path):
    """from_pretrained(path, max_length=N) == resize_input; the extractor follows; task stats are saved."""
    model, fe = convert_ast_checkpoint(timm_pth, fusion_layers=FUSION, output_dir=tmp_path / "fused")
    assert model.config.backbone_config["max_length"] == 1024 and fe.frontend["max_length"] == 1024
    assert model.config.backbone_config["layer_norm_eps"] == 1e-6
    clips = _task_clips(2.5, 4, seed=8)
    loaded = AudioFusionModel.from_pretrained(tmp_path / "fused", max_length=248).eval()
    auto = AutoModel.from_pretrained(tmp_path / "fused", max_length=248).eval()
    resized, fe248 = resize_input(model, 248)
    assert fe248.frontend["max_length"] == 248 and loaded.config.frontend["max_length"] == 248
    x = fe248(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    assert x.shape == (4, 248, 128)
    with torch.no_grad():
        a, b, c = (m(x).pooler_output for m in (resized, loaded, auto))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"input_values must be \[B, 248, 128\].*max_length"):
        resized(FusedAudioFeatureExtractor(backbone="ast")(clips, sampling_rate=16000, return_tensors="pt")["input_values"])

    stats = input_statistics(clips, fe248, batch_size=2)
    fe_task = set_input_normalization(resized, "task", stats)
    assert fe_task.frontend["normalization"] == "task" and fe_task.frontend["normalization_clips"] == 4
    resized.save_pretrained(tmp_path / "task")
    fe_task.save_pretrained(tmp_path / "task")
    saved = json.loads((tmp_path / "task" / "preprocessor_config.json").read_text())["frontend"]
    assert saved["mean"] == stats["mean"] and saved["std"] == stats["std"] and saved["max_length"] == 248
    assert saved["normalization"] == "task"
    reloaded_fe = FusedAudioFeatureExtractor.from_pretrained(tmp_path / "task")
    xt = reloaded_fe(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    raw = fe248(clips, sampling_rate=16000, return_tensors="pt")["input_values"] * (2 * 4.5689974) - 4.2677393
    torch.testing.assert_close(xt, (raw - stats["mean"]) / (2 * stats["std"]), rtol=1e-4, atol=1e-4)
    back = AudioFusionModel.from_pretrained(tmp_path / "task")
    assert back.config.frontend["mean"] == stats["mean"] and back.config.backbone_config["max_length"] == 248
    fe_as = set_input_normalization(back, "audioset")
    assert fe_as.frontend["mean"] == -4.2677393 and "normalization_clips" not in fe_as.frontend
    with pytest.raises(ValueError, match="needs stats"):
        set_input_normalization(back, "task")
    with pytest.raises(ValueError, match="normalization must be 'task' or one of"):
        set_input_normalization(back, "imagenet")
    with pytest.raises(ValueError, match="smaller than one 16x16 patch"):
        resize_input(back, 8)
    from hf_fusion import AudioFusionConfig

    with pytest.raises(ValueError, match="front-end max_length=512 differs from the model's max_length=1024"):
        AudioFusionConfig(backbone="ast", frontend={"max_length": 512})


def test_original_checkpoint_strict_keys(reference, tmp_path):
    state = reference.checkpoint_state()
    assert {"module.v.head.weight", "module.v.head_dist.bias", "module.mlp_head.1.weight"} <= set(state)
    model, _ = convert_ast_checkpoint(_save(tmp_path / "ok.pth", state), fusion_layers=FUSION)
    key = model.backbone.ast.layers[1].attention.k_proj.weight  # qkv rows 64..127
    torch.testing.assert_close(key, reference.v.blocks[1].attn.qkv.weight[64:128])
    assert model.config.backbone_config["num_attention_heads"] == 1  # hidden 64 / 64 unless told
    bad = {k: v for k, v in state.items() if k != "module.v.blocks.2.attn.proj.bias"}
    bad["module.v.blocks.2.attn.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['v.blocks.2.attn.proj.bias'\]; unexpected keys "
                                         r"\['v.blocks.2.attn.extra'\]"):
        convert_ast_checkpoint(_save(tmp_path / "bad.pth", bad), fusion_layers=FUSION)
    with pytest.raises(ValueError, match=r"v.pos_embed is \(1, 1214, 64\).*12 x 50 patch grid"):
        convert_ast_checkpoint(_save(tmp_path / "ok2.pth", state), FUSION, pretrained_max_length=512)
    wrong = {**state, "module.v.blocks.0.mlp.fc2.weight": torch.zeros(64, 5)}
    with pytest.raises(ValueError, match=r"shape mismatches \['layers.0.mlp.fc2.weight"):
        convert_ast_checkpoint(_save(tmp_path / "wrong.pth", wrong), fusion_layers=FUSION)
    with pytest.raises(ValueError, match="not an original \\(timm\\) AST checkpoint: missing keys"):
        convert_ast_checkpoint(_save(tmp_path / "vgg.pth", {"features.0.weight": torch.zeros(1)}))


def test_resize_errors(tmp_path):
    from hf_fusion import AudioFusionConfig

    vggish = AudioFusionModel(AudioFusionConfig(backbone="vggish"))
    with pytest.raises(ValueError, match="backbone 'vggish' has no fixed input length to change"):
        resize_input(vggish, 398)
    with pytest.raises(ValueError, match="no fixed input length to change"):
        vggish.set_input_length(398)
    small = AudioFusionModel(AudioFusionConfig(backbone="ast", backbone_config=dict(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32), fusion_layers=[1, 2]))
    with pytest.raises(ValueError, match="the input length must be a positive int"):
        small.set_input_length(39.8)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        convert_ast_checkpoint(tmp_path / "nope.pth")


def _save(path, state):
    torch.save(state, path)
    return path


@pytest.mark.parametrize("seconds", LENGTHS_S)
@pytest.mark.parametrize("source", ["timm_pth", "transformers"])
def test_parity_with_authors_pipeline(source, seconds, reference, timm_pth, transformers_source, tmp_path):
    """AST-Fusion (layers 2 + 4 of a 4-block AST) from waveforms, per-task length and task normalisation:
    hf-fusion == the authors' pipeline (reference_ast) to 1e-4 absolute."""
    frames = ASTBackbone.input_frames_for_seconds(seconds)
    train = _task_clips(seconds, 5, seed=int(seconds * 10))
    test = _task_clips(seconds, 2, seed=int(seconds * 10) + 1)
    if source == "timm_pth":
        ref = reference
        if seconds == 1.0:  # straight from the .pth at N frames
            model, fe = convert_ast_checkpoint(timm_pth, fusion_layers=FUSION, max_length=frames,
                                               num_attention_heads=SMALL["heads"])
        else:  # converted at 1024 frames, saved, re-loaded for N
            model, fe = convert_ast_checkpoint(timm_pth, fusion_layers=FUSION, output_dir=tmp_path / "f",
                                               num_attention_heads=SMALL["heads"])
            model = AudioFusionModel.from_pretrained(tmp_path / "f", max_length=frames).eval()
        model, fe, stats = prepare_task_model(model, seconds, statistics=lambda fe: input_statistics(train, fe, max_clips=4),
                                              layer_norm_eps=TIMM_LAYER_NORM_EPS, in_place=True)
    else:
        folder, ref = transformers_source
        if seconds in (1.0, 5.8):  # converted for N frames and eps 1e-6, normalisation set by hand
            model, _ = convert_ast_checkpoint(folder, fusion_layers=FUSION, max_length=frames, layer_norm_eps=1e-6)
            fe_raw = FusedAudioFeatureExtractor.from_fusion_config(model.config)
            stats = input_statistics(train, fe_raw, max_clips=4)
            fe = set_input_normalization(model, "task", stats)
        else:  # the transformers copy as it is (1024 frames, eps 1e-12), then the protocol in one call
            model, _ = convert_ast_checkpoint(folder, fusion_layers=FUSION)
            assert model.config.backbone_config["layer_norm_eps"] == 1e-12
            model, fe, stats = prepare_task_model(model, seconds, statistics=lambda fe: input_statistics(train, fe, max_clips=4),
                                              layer_norm_eps=TIMM_LAYER_NORM_EPS, in_place=True)
    assert model.config.backbone_config["max_length"] == frames == fe.frontend["max_length"]
    assert model.config.backbone_config["layer_norm_eps"] == 1e-6  # timm's, as the original model
    assert model.backbone.ast.layernorm.eps == 1e-6 and model.backbone.ast.layers[0].layernorm_before.eps == 1e-6
    ref_stats = evar_norm_stats(train, frames, max_samples=4)
    assert (stats["mean"], stats["std"]) == pytest.approx(ref_stats, rel=1e-6)
    with torch.no_grad():
        ours = model(**fe(test, sampling_rate=16000, return_tensors="pt")).pooler_output
    theirs = authors_embedding(ref, test, frames, ref_stats, [layer - 1 for layer in FUSION])
    assert ours.shape == theirs.shape == (2, 128)
    diff = float((ours - theirs).abs().max())
    MEASURED[(source, seconds)] = diff
    print(f"\nAST parity {source} {seconds} s ({frames} frames): max |diff| {diff:.2e}, "
          f"min cosine {float(torch.nn.functional.cosine_similarity(ours, theirs).min()):.8f}")
    assert diff < 1e-4
