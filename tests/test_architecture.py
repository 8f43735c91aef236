"""One place per fact: backbones declare themselves, the rest of the package reads the registry.

- No module outside ``backbone_*.py`` / ``backbones.py`` names a backbone in a dict, a comparison or a
  ``startswith`` test (checked on the parsed source, so comments and docstrings do not count).
- A toy backbone defined in this file and registered at run time goes through the whole workflow:
  feature extractor, model save/load, ``extract_features`` (with windows for a long clip), the
  layer-wise study, the one layer resolver's errors and a dry-run push with its card.
"""

from __future__ import annotations

import ast
import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from torch import nn

import hf_fusion.models.backbones as registry
from hf_fusion import AudioFusionConfig, AudioFusionModel, FusedAudioFeatureExtractor
from hf_fusion.models.backbone_base import FrontEnd, LayerInfo, TappedBackbone, WindowRule
from hf_fusion.models.fusion import align_layer

PACKAGE = Path(__file__).resolve().parents[1] / "hf_fusion"


def _allowed(path: Path) -> bool:
    return path.parent == PACKAGE and (path.name.startswith("backbone_") or path.name == "backbones.py")


def _names_in(node: ast.AST, names: set[str]) -> list[str]:
    """Backbone names among the string constants of ``node`` (itself, or a tuple/list/set of them)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in names]


def per_backbone_tables(source: str, names: set[str]) -> list[tuple[int, list[str]]]:
    """(line, backbone names) of every dict key, comparison or ``startswith`` test naming a backbone."""
    found = []
    for node in ast.walk(ast.parse(source)):
        hits: list[str] = []
        if isinstance(node, ast.Dict):
            hits = [n for key in node.keys if key is not None for n in _names_in(key, names)]
        elif isinstance(node, ast.Compare):
            hits = [n for side in [node.left, *node.comparators] for n in _names_in(side, names)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "startswith", "endswith"):
            hits = [n for arg in node.args for n in _names_in(arg, names)]
        if hits:
            found.append((node.lineno, sorted(set(hits))))
    return found


def test_no_per_backbone_table_outside_the_backbone_modules():
    names = set(registry.BACKBONES)
    assert {"ast", "vggish", "cnn14", "crepe", "hf"} <= names
    modules = [p for p in PACKAGE.rglob("*.py") if not _allowed(p)]
    assert len(modules) > 30
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {hits}" for path in modules
             for line, hits in per_backbone_tables(path.read_text(), names)]
    assert found == [], "per-backbone tables or if-chains outside backbone_*.py / backbones.py:\n" + "\n".join(found)


def test_the_checker_finds_each_kind_of_table():
    source = 'T = {"ast": 1}\nif b == "vggish": pass\nok = b in ("cnn14", "x")\nc = s.startswith("crepe")\n'
    assert [line for line, _ in per_backbone_tables(source, set(registry.BACKBONES))] == [1, 2, 3, 4]
    assert per_backbone_tables('"""the ast backbone"""\nx = f(backbone="ast")\n', {"ast"}) == []


def test_every_backbone_declares_its_facts():
    for name, cls in registry.BACKBONES.items():
        config = cls.normalize_backbone_config(None) if name != "hf" else None
        if config is None:
            continue  # the hf backbone needs a wrapped model's config (tests/test_hf_encoder.py)
        info = cls.layer_info(config)
        assert list(info) == list(cls.tappable_layers(config))
        assert all(isinstance(i, LayerInfo) and i.dim == cls.layer_dims(config, cls.default_frontend(config))[n]
                   for n, i in info.items())
        assert cls.frontend_spec.name == cls.default_frontend(config)["name"] and callable(cls.frontend_spec.function)
        assert (cls.card_template, cls.converter) != ("", None)
    assert registry.BACKBONES["ast"].layer_info(registry.BACKBONES["ast"].normalize_backbone_config(None))[5].hop is None
    assert registry.BACKBONES["vggish"].paper_layers == (10, 15)
    assert registry.BACKBONES["cnn14"].frame_hop({"hop_size": 160, "sampling_rate": 16000}) == 5120


# ---------------------------------------------------------------- a toy backbone from this file

HOP = 160


def toy_frames(waveforms: torch.Tensor, lengths: torch.Tensor | None = None, sampling_rate: int = 16000):
    """[B, N] -> [B, T, HOP] non-overlapping frames (T = N // HOP, at least one)."""
    t = max(1, waveforms.shape[-1] // HOP)
    padded = torch.nn.functional.pad(waveforms, (0, max(0, t * HOP - waveforms.shape[-1])))
    return padded[:, : t * HOP].reshape(waveforms.shape[0], t, HOP)


def toy_valid_frames(lengths: torch.Tensor, **settings) -> torch.Tensor:
    return (lengths // HOP).clamp_min(1)


class ToyBackbone(TappedBackbone):
    """Three per-frame linear layers (8, 8, 4 dims) over 10 ms frames."""

    name = "toy"
    supports_attention_mask = True
    frontend_spec = FrontEnd("toy_frames", toy_frames, (toy_valid_frames, 1))
    preset_layers = (1, 3)
    license = "mit"

    @classmethod
    def default_backbone_config(cls) -> dict[str, Any]:
        return {"width": 8}

    @classmethod
    def tappable_layers(cls, backbone_config):
        return (1, 2, 3)

    @classmethod
    def layer_dims(cls, backbone_config, frontend):
        return {1: backbone_config["width"], 2: backbone_config["width"], 3: 4}

    @classmethod
    def default_frontend(cls, backbone_config):
        return {"name": cls.frontend_spec.name, "sampling_rate": 16000}

    @classmethod
    def default_fusion_layers(cls, backbone_config):
        return list(cls.preset_layers)

    @classmethod
    def window_rule(cls, frontend):
        return WindowRule(hop=HOP, grid=HOP, context=0)

    def __init__(self, backbone_config, frontend, attn_implementation=None):
        super().__init__(backbone_config, frontend)
        width = backbone_config["width"]
        self.layers = nn.ModuleList([nn.Linear(HOP, width), nn.Linear(width, width), nn.Linear(width, 4)])

    def forward(self, input_values, layers, num_frames=None, attention_mask=None):
        layers = self.check_layers(layers)
        x, out = input_values, {}
        for k, layer in enumerate(self.layers, start=1):
            x = torch.tanh(layer(x))
            if k in layers:
                out[k] = align_layer(x.transpose(1, 2), num_frames or x.shape[1], name=f"toy layer {k}")
        return out

    def frame_mask(self, attention_mask, num_frames=None):
        return attention_mask.to(torch.bool)

    def init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.reset_parameters()


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(registry.BACKBONES, "toy", ToyBackbone)
    registry.register_backbone(ToyBackbone)  # idempotent for the same class
    torch.manual_seed(0)
    model = AudioFusionModel(AudioFusionConfig(backbone="toy")).eval()
    return model, FusedAudioFeatureExtractor.from_fusion_config(model.config)


def test_registering_checks_the_class():
    with pytest.raises(TypeError, match="TappedBackbone subclass"):
        registry.register_backbone(int)

    class Nameless(ToyBackbone):
        name = "ast"

    with pytest.raises(ValueError, match="already registered"):
        registry.register_backbone(Nameless)


def test_toy_backbone_model_extractor_and_layer_resolver(toy, tmp_path):
    model, fe = toy
    assert model.config.fusion_name == "toy-fusion-1-3" and model.config.hidden_size == 12
    clips = [np.sin(np.arange(n) / 7.0).astype(np.float32) for n in (1600, 800)]
    batch = fe(clips, sampling_rate=16000, return_tensors="pt")
    assert tuple(batch["input_values"].shape) == (2, 10, HOP) and batch["attention_mask"].sum(1).tolist() == [10, 5]
    with torch.no_grad():
        together = model(**batch).pooler_output
        alone = model(**fe(clips[1], sampling_rate=16000, return_tensors="pt")).pooler_output
    torch.testing.assert_close(together[1:], alone)
    model.save_pretrained(tmp_path / "toy")
    reloaded = AudioFusionModel.from_pretrained(tmp_path / "toy")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).pooler_output, together)
    for bad, message in [([0, 3], r"toy: fusion_layers=\[0, 3\] is invalid.*tappable layers are \[1, 2, 3\]"),
                         ([2, 2], "distinct"), ("12", "got '12'")]:
        with pytest.raises(ValueError, match=message):
            AudioFusionConfig(backbone="toy", fusion_layers=bad)
    with pytest.raises(ValueError, match=r"tappable layers are \[1, 2, 3\]"):
        model.tap(batch["input_values"], [4])
    assert model.config.backbone_class.layer_info(model.config.backbone_config)[3] == LayerInfo(3, 4, HOP, "layer 3")


def test_toy_backbone_extraction_study_and_dry_run_push(toy, tmp_path, capsys):
    from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, Value

    from hf_fusion.extraction import extract_features
    from hf_fusion.hub import publish
    from hf_fusion.app.workflow import layerwise_study

    model, fe = toy
    rng = np.random.default_rng(0)

    def split(n, seed):
        labels = [i % 2 for i in range(n)]
        audio = [{"array": (np.sin(np.arange(1600) * (0.05 + 0.2 * lab)) + 0.1 * rng.standard_normal(1600))
                  .astype(np.float32), "sampling_rate": 16000} for lab in labels]
        feats = Features({"audio": Audio(sampling_rate=16000), "label": ClassLabel(names=["low", "high"])})
        return Dataset.from_dict({"audio": audio, "label": labels}, features=feats)

    data = DatasetDict({"train": split(12, 0), "valid": split(6, 1), "test": split(6, 2)})
    cache = extract_features(model, fe, data, "toy_task", cache_dir=tmp_path / "cache", batch_size=4,
                             progress=False, long_clip_seconds=0.05, window_seconds=0.03)  # every clip windowed
    X, y = cache.load([1, 3], "test")
    assert X.shape == (6, 12) and y.tolist() == [0, 1] * 3
    with torch.no_grad():  # windows of the toy's 10 ms frames reproduce the whole clip
        clip = data["test"].with_format("numpy")[0]["audio"]["array"].astype(np.float32)
        whole = model(**fe(clip, sampling_rate=16000, return_tensors="pt")).pooler_output[0].numpy()
    np.testing.assert_allclose(X[0], whole, rtol=1e-5, atol=1e-6)

    from hf_fusion.evaluation import ProbeConfig

    study = layerwise_study({"toy_task": cache}, [1, 2, 3], ProbeConfig(lrs=(1e-2,), seeds=(0,), max_epochs=20),
                            progress=False)
    accuracy = study.matrix("test")["toy_task"]
    assert sorted(accuracy) == [1, 2, 3] and all(0.0 <= a <= 1.0 for a in accuracy.values())
    assert max(study.matrix("valid")["toy_task"].values()) > 0.5  # two tones an octave-ish apart: learnable

    model.save_pretrained(tmp_path / "saved")
    parser = argparse.ArgumentParser(prog="hf-fusion")
    publish.build_push_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["push", "--model", str(tmp_path / "saved"), "--repo-id", "org/toy-fusion-1-3",
                              "--dry-run", "--out", str(tmp_path / "repo")])
    assert args.func(args) == 0, capsys.readouterr().err
    card = ModelCard.load(tmp_path / "repo" / "README.md")
    assert card.data.license == "mit" and "toy-fusion-1-3" in card.text
    assert (tmp_path / "repo" / "backbone_base.py").is_file()
