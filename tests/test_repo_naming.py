"""`push` refuses a repo name that contradicts the model, unless --force-name."""

import json

import pytest

from hf_fusion.catalog.repo_names import repo_name_conflicts
from tests.test_hub import _cli


@pytest.mark.parametrize("name,backbone,layers,aliases,expected", [
    ("crepe-fusion-1-6", "crepe", [1, 6], (), []),
    ("CREPE_fusion_1_6-v2", "crepe", [1, 6], (), []),                 # case, underscores, a suffix
    ("crepe-tiny-fusion-1-6", "crepe", [1, 6], (), []),
    ("my-pitch-features", "crepe", [1, 6], (), []),                   # claims nothing
    ("my-hf-model", "crepe", [1, 6], (), []),                         # "hf" only counts before "fusion"
    ("ast-fusion-5-12", "crepe", [1, 6], (), ["backbone ast", "layers 5 12"]),
    ("crepe-fusion-2-5", "crepe", [1, 6], (), ["layers 2 5"]),
    ("crepe-fusion-6", "crepe", [1, 6], (), ["layers 6"]),
    ("panns-fusion-3-6", "cnn14", [3, 6], (), []),                     # panns = cnn14
    ("vggish-fusion-3-6", "cnn14", [3, 6], (), ["backbone vggish"]),
    ("hf-fusion-4-12", "crepe", [4, 12], (), ["backbone hf"]),
    ("wav2vec2-fusion-4-12", "hf", [4, 12], ("wav2vec2",), []),
    ("ast-fusion-4-12", "hf", [4, 12], ("wav2vec2",), ["backbone ast"]),
])
def test_repo_name_conflicts(name, backbone, layers, aliases, expected):
    problems = repo_name_conflicts(name, backbone, layers, aliases)
    assert len(problems) == len(expected)
    for problem, part in zip(problems, expected):
        assert part in problem


@pytest.fixture(scope="module")
def crepe_folder(tmp_path_factory):
    from hf_fusion.conversion import build_crepe_fusion_model

    folder = tmp_path_factory.mktemp("crepe") / "saved"
    model, fe = build_crepe_fusion_model("tiny", fusion_layers=[1, 6])
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("repo_id,message", [
    ("org/ast-fusion-5-12", "names backbone ast but the model's backbone is crepe; it names layers 5 12"),
    ("org/crepe-fusion-2-5", "it names layers 2 5 but the model fuses 1 6"),
])
def test_push_refuses_contradicting_name_unless_forced(tmp_path, crepe_folder, capsys, repo_id, message):
    out = tmp_path / "repo"
    assert _cli(["--model", crepe_folder, "--repo-id", repo_id, "--dry-run", "--out", out]) == 2
    err = capsys.readouterr().err
    assert message in err and "--force-name" in err and "org/crepe-fusion-1-6" in err
    assert err.strip().splitlines() == [line for line in err.strip().splitlines() if line.startswith("hf-fusion push:")]
    assert len(err.strip().splitlines()) == 1 and not out.exists()  # one line, before any weights are read
    assert _cli(["--model", crepe_folder, "--repo-id", repo_id, "--dry-run", "--out", out, "--force-name"]) == 0
    assert json.loads((out / "config.json").read_text())["fusion_layers"] == [1, 6]


def test_push_accepts_the_models_own_name_and_org(tmp_path, crepe_folder):
    assert _cli(["--model", crepe_folder, "--repo-id", "org/crepe-fusion-1-6", "--dry-run", "--out", tmp_path / "a"]) == 0
    assert _cli(["--model", crepe_folder, "--org", "org", "--dry-run", "--out", tmp_path / "b"]) == 0
    assert (tmp_path / "b" / "README.md").read_text().count("org/crepe-fusion-1-6") >= 1


def test_preset_name_checked_before_conversion(tmp_path, capsys):
    argv = ["--preset", "ast-fusion-5-12", "--checkpoint", tmp_path / "never-read", "--repo-id",
            "org/ast-fusion-4-12", "--dry-run", "--out", tmp_path / "repo"]
    assert _cli(argv) == 2
    assert "it names layers 4 12 but the model fuses 5 12" in capsys.readouterr().err
