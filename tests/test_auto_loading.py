"""Auto* registration, trust_remote_code without hf_fusion, and offline repo-id loading from an HF cache."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModel

from hf_fusion import AudioFusionModel, FusedAudioFeatureExtractor
from hf_fusion.hub import install_in_hf_cache

from .conftest import make_clips

# Runs in a fresh interpreter; `import hf_fusion` is made impossible when BLOCK is set.
LOADER = textwrap.dedent(
    """
    import os, sys
    if os.environ.get("BLOCK_HF_FUSION"):
        sys.modules["hf_fusion"] = None  # any `import hf_fusion` now raises ImportError
    else:
        import hf_fusion  # noqa: F401
    import numpy as np, torch
    from transformers import AutoFeatureExtractor, AutoModel, pipeline
    src, out = sys.argv[1], sys.argv[2]
    kw = {"trust_remote_code": True} if os.environ.get("BLOCK_HF_FUSION") else {}
    model = AutoModel.from_pretrained(src, **kw).eval()
    fe = AutoFeatureExtractor.from_pretrained(src, **kw)
    assert "hf_fusion" not in type(model).__module__ or not os.environ.get("BLOCK_HF_FUSION"), type(model).__module__
    clips = list(np.load(os.environ["CLIPS"]))
    with torch.no_grad():
        emb = model(**fe(clips, sampling_rate=16000, return_tensors="pt")).pooler_output
    np.save(out, emb.numpy())
    # the cards' pipeline_tag: config.custom_pipelines runs the repo's own pipeline_fusion.py
    pipe = pipeline("feature-extraction", model=src, trust_remote_code=True)
    got = pipe(clips, sampling_rate=16000)
    np.save(out.replace(".npy", "_pipe.npy"), np.stack([g["pooler_output"].numpy() for g in got]))
    print(type(model).__module__, type(fe).__module__, type(pipe).__module__)
    """
)


def _reference(model, fe, clips):
    with torch.no_grad():
        return model(**fe(clips, sampling_rate=16000, return_tensors="pt")).pooler_output.numpy()


def _run_loader(tmp_path, src, env_extra):
    clips = make_clips((1.0, 1.0))
    np.save(tmp_path / "clips.npy", np.stack(clips))
    script = tmp_path / "loader.py"
    script.write_text(LOADER)
    env = {**os.environ, "CLIPS": str(tmp_path / "clips.npy"), **env_extra}
    out = tmp_path / "emb.npy"
    proc = subprocess.run(
        [sys.executable, str(script), src, str(out)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    emb = np.load(out)
    np.testing.assert_allclose(np.load(tmp_path / "emb_pipe.npy"), emb, rtol=1e-5, atol=1e-6)  # pipeline == model
    return emb, proc.stdout, clips


def _save(tmp_path, model):
    folder = tmp_path / "ast-fusion-5-12"
    model.save_pretrained(folder)
    FusedAudioFeatureExtractor.from_fusion_config(model.config).save_pretrained(folder)
    return folder


def test_auto_classes_resolve_with_package_imported(tmp_path, tiny_ast_model):
    folder = _save(tmp_path, tiny_ast_model)
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert pre["feature_extractor_type"] == "FusedAudioFeatureExtractor"
    assert pre["auto_map"]["AutoFeatureExtractor"] == "feature_extraction_fusion.FusedAudioFeatureExtractor"
    assert type(AutoModel.from_pretrained(folder)) is AudioFusionModel
    assert type(AutoFeatureExtractor.from_pretrained(folder)) is FusedAudioFeatureExtractor


def test_trust_remote_code_without_hf_fusion(tmp_path, tiny_ast_model):
    folder = _save(tmp_path, tiny_ast_model)
    emb, stdout, clips = _run_loader(
        tmp_path, str(folder), {"BLOCK_HF_FUSION": "1", "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    )
    assert "transformers_modules" in stdout  # classes came from the copied remote code
    assert stdout.split()[2].startswith("transformers_modules")  # so did the pipeline
    fe = FusedAudioFeatureExtractor.from_fusion_config(tiny_ast_model.config)
    np.testing.assert_allclose(emb, _reference(tiny_ast_model, fe, clips), rtol=1e-5, atol=1e-6)


def test_offline_repo_id_loading_from_hf_cache(tmp_path, tiny_ast_model):
    folder = _save(tmp_path, tiny_ast_model)
    cache = tmp_path / "hub-cache"
    snapshot = install_in_hf_cache(folder, "org/ast-fusion-5-12", cache_dir=cache)
    assert (cache / "models--org--ast-fusion-5-12" / "refs" / "main").read_text() == snapshot.name
    fe = FusedAudioFeatureExtractor.from_fusion_config(tiny_ast_model.config)
    for block in ("", "1"):
        env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / f"home{block}")}
        if block:
            env["BLOCK_HF_FUSION"] = "1"
        emb, _, clips = _run_loader(tmp_path, "org/ast-fusion-5-12", env)
        np.testing.assert_allclose(emb, _reference(tiny_ast_model, fe, clips), rtol=1e-5, atol=1e-6)


FIXTURES = Path(__file__).parent / "fixtures"


def test_repo_saved_by_the_flat_v0_1_layout_loads_unchanged(tmp_path):
    """A repo folder written before the closure moved to ``hf_fusion/models/`` (kept as a tarball: its remote
    code is v0.1's) gives its saved vector, with hf_fusion's classes and through its own remote code in an
    interpreter that cannot import hf_fusion."""
    import tarfile

    with tarfile.open(FIXTURES / "ast_fusion_saved_v0_1.tar.gz") as archive:
        archive.extractall(tmp_path / "repo", filter="data")
    SAVED_V0_1 = tmp_path / "repo" / "ast_fusion_saved_v0_1"
    expected = np.load(FIXTURES / "ast_fusion_saved_v0_1_expected.npy")
    model = AutoModel.from_pretrained(SAVED_V0_1).eval()
    assert type(model) is AudioFusionModel
    fe = AutoFeatureExtractor.from_pretrained(SAVED_V0_1)
    # the vector was stored on an AVX-512 x86-64; an AVX2-only CPU takes other float kernels and differs by up
    # to 7.7e-7 absolute (2.4e-5 relative on a 0.03 entry), deterministically: atol 5e-6 leaves 6x margin
    np.testing.assert_allclose(_reference(model, fe, make_clips((1.0,))), expected, rtol=1e-5, atol=5e-6)
    for block in ("", "1"):
        env = {"HF_HOME": str(tmp_path / f"home{block}"), "HF_HUB_OFFLINE": "1"}
        if block:
            env["BLOCK_HF_FUSION"] = "1"
        emb, stdout, _ = _run_loader(tmp_path, str(SAVED_V0_1), env)
        assert ("transformers_modules" in stdout.split()[0]) == bool(block)
        np.testing.assert_allclose(emb[:1], expected, rtol=1e-5, atol=5e-6)  # the same measured margin


def test_saved_repo_holds_exactly_the_models_folder(tmp_path, tiny_ast_model):
    """The remote code ``save_pretrained`` copies is the whole ``hf_fusion/models/`` folder and nothing else."""
    import hf_fusion.models

    from hf_fusion import AudioFusionConfig, AudioFusionForAudioClassification

    folder = _save(tmp_path, tiny_ast_model)
    config = AudioFusionConfig(**{**tiny_ast_model.config.to_dict(), "id2label": {0: "a", 1: "b"}})
    AudioFusionForAudioClassification(config).save_pretrained(tmp_path / "classifier")
    copied = {p.name for p in folder.glob("*.py")} | {p.name for p in (tmp_path / "classifier").glob("*.py")}
    closure = {p.name for p in Path(hf_fusion.models.__file__).parent.glob("*.py")} - {"__init__.py"}
    assert copied == closure
