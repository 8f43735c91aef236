"""AudioFusionConfig / AudioFusionModel with the AST backbone: shapes, token rule, save/load, converter."""

import json

import pytest
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, AutoConfig, AutoModel

from hf_fusion import AudioFusionConfig, AudioFusionModel
from hf_fusion.conversion import convert_ast_checkpoint

from .conftest import TINY_AST, make_clips


def test_paper_ast_dims_and_name():
    cfg = AudioFusionConfig(backbone="ast", backbone_config=ASTConfig(), fusion_layers=[5, 12])
    assert cfg.hidden_size == 1536
    assert cfg.fusion_name == "ast-fusion-5-12"
    assert cfg.frontend["sampling_rate"] == 16000 and cfg.frontend["max_length"] == 1024
    assert AudioFusionConfig().fusion_layers == [5, 12]  # paper default


def test_config_rejects_bad_layers_listing_valid_ones():
    with pytest.raises(ValueError, match=r"layer\(s\) \[0, 13\].*tappable layers are \[1, 2, .*12\]"):
        AudioFusionConfig(backbone="ast", fusion_layers=[0, 13])
    with pytest.raises(ValueError, match="distinct"):
        AudioFusionConfig(backbone="ast", fusion_layers=[5, 5])
    with pytest.raises(ValueError, match="unknown backbone 'nope'.*known backbones"):
        AudioFusionConfig(backbone="nope")
    with pytest.raises(ValueError, match="pooling"):
        AudioFusionConfig(pooling="median")
    small = dict(TINY_AST, num_hidden_layers=3)
    with pytest.raises(ValueError, match=r"tappable layers are \[1, 2, 3\]"):
        AudioFusionConfig(backbone="ast", backbone_config=small, fusion_layers=[5])


def test_config_round_trip(tmp_path, tiny_ast_config):
    tiny_ast_config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, AudioFusionConfig)
    strip = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # noqa: E731
    assert strip(loaded.to_dict()) == strip(tiny_ast_config.to_dict())
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["fusion_layers"] == [5, 12] and saved["backbone"] == "ast"
    assert saved["frontend"]["name"] == "ast_fbank"


def _inputs(config, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.frontend["max_length"], config.frontend["num_mel_bins"], generator=g)


def test_paper_token_rule_against_transformers(tiny_ast_model):
    """Layer l = final LayerNorm(hidden_states[l]) -> mean of tokens 0 and 1; layer 12 == ASTModel's pooler."""
    ast = tiny_ast_model.backbone.ast
    x = _inputs(tiny_ast_model.config)
    with torch.no_grad():
        ref = ast(x, output_hidden_states=True)
        # hidden_states[0] is the embeddings, hidden_states[5] the output of block 5 (run by hand)
        h = ast.embeddings(x)
        torch.testing.assert_close(ref.hidden_states[0], h)
        for block in ast.layers[:5]:
            h = block(h)
            h = h[0] if isinstance(h, tuple) else h
        expected5 = ast.layernorm(h)[:, :2].mean(1)
        taps = tiny_ast_model.tap(x, layers="all")
        out = tiny_ast_model(input_values=x, output_hidden_states=True)
    assert sorted(taps) == list(range(1, 13))
    torch.testing.assert_close(taps[5][..., 0], expected5)
    torch.testing.assert_close(taps[12][..., 0], ref.pooler_output)
    # Eq.1-3 reduce to concatenation for AST (no time axis)
    torch.testing.assert_close(out.pooler_output, torch.cat([expected5, ref.pooler_output], dim=1))


def test_num_output_frames_override_repeats_tokens(tiny_ast_config):
    cfg = AudioFusionConfig(**{**tiny_ast_config.to_dict(), "num_output_frames": 4})
    model = AudioFusionModel(cfg).eval()
    with torch.no_grad():
        out = model(input_values=_inputs(cfg))
    assert out.last_hidden_state.shape == (3, 4, 32)
    torch.testing.assert_close(out.pooler_output, 2 * out.last_hidden_state[:, 0])  # mean + max of a repeat


def test_convert_transformers_ast_checkpoint(tmp_path):
    """A transformers AST classification checkpoint + its preprocessor config -> AudioFusionModel."""
    torch.manual_seed(1)
    src = tmp_path / "ast-src"
    clf = ASTForAudioClassification(ASTConfig(**TINY_AST, num_labels=5)).eval()
    clf.save_pretrained(src)
    ASTFeatureExtractor(num_mel_bins=32, max_length=64, mean=-3.0, std=2.0).save_pretrained(src)
    model, fe = convert_ast_checkpoint(src, fusion_layers=[3, 12], output_dir=tmp_path / "fused")
    assert fe.frontend["mean"] == -3.0 and fe.frontend["std"] == 2.0 and fe.frontend["max_length"] == 64
    clips = make_clips()
    ref_fe = ASTFeatureExtractor(num_mel_bins=32, max_length=64, mean=-3.0, std=2.0)
    x = ref_fe(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    with torch.no_grad():
        ref = clf.audio_spectrogram_transformer(x).pooler_output
        taps = model.tap(x, layers=[12])
    torch.testing.assert_close(taps[12][..., 0], ref)
    reloaded = AutoModel.from_pretrained(tmp_path / "fused").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_values=x).pooler_output, model(input_values=x).pooler_output)


def test_convert_rejects_incomplete_checkpoint(tmp_path):
    from safetensors.torch import load_file, save_file

    src = tmp_path / "broken"
    ASTForAudioClassification(ASTConfig(**TINY_AST)).save_pretrained(src)
    state = load_file(src / "model.safetensors")
    dropped = [k for k in state if ".layer.3.attention." in k]  # saved under 4.x key names
    assert dropped
    save_file({k: v for k, v in state.items() if k not in dropped}, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing from the checkpoint"):
        convert_ast_checkpoint(src)


def test_convert_ast_script(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    src = tmp_path / "src"
    ASTForAudioClassification(ASTConfig(**TINY_AST)).save_pretrained(src)
    script = Path(__file__).resolve().parents[1] / "scripts" / "convert_ast.py"
    proc = subprocess.run([sys.executable, str(script), "--checkpoint", str(src), "--layers", "4", "12",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ast-fusion-4-12 (32-d)" in proc.stdout
    loaded = AutoModel.from_pretrained(tmp_path / "out")
    assert loaded.config.fusion_layers == [4, 12]
