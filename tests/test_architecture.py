"""The package's shape, checked on the parsed source (comments and docstrings do not count).

- Backbones declare themselves: no module outside ``models/backbone_*.py`` / ``models/backbones.py``
  names a backbone in a dict, a comparison or a ``startswith`` test, or asks a backbone ``hasattr``.
- Imports run one way: no cycle (imports inside functions count), the remote-code closure
  ``models/`` imports only itself, the library never imports ``app/``, tasks and extraction never
  import each other.
- Every protocol literal (task lists, probe defaults, choice lists) is written once, in ``protocol.py``.
- The toy backbone (tests/toy_backbone.py), registered at run time, goes through the whole workflow.
"""

from __future__ import annotations

import ast
import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

import hf_fusion.models.backbones as registry
from hf_fusion import AudioFusionConfig, AudioFusionModel, FusedAudioFeatureExtractor

from .toy_backbone import HOP, TOY_ENTRY, ToyBackbone

PACKAGE = Path(__file__).resolve().parents[1] / "hf_fusion"


#: the modules of the backbone catalog that are not one backbone's entry
CATALOG_INFRASTRUCTURE = {"__init__.py", "entry.py", "cli_names.py", "repo_names.py"}


def _allowed(path: Path) -> bool:
    """A backbone's own module (``models/backbone_<name>.py``, the ``models/backbones.py`` list) or its entry
    (``catalog/<name>.py``)."""
    if path.parent == PACKAGE / "catalog":
        return path.name not in CATALOG_INFRASTRUCTURE
    return path.parent == PACKAGE / "models" and (path.name.startswith("backbone_") or path.name == "backbones.py")


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
    """Neither the package nor the scripts keep a table or if-chain of backbones (tests run over the catalog)."""
    names = set(registry.BACKBONES)
    assert {"ast", "vggish", "cnn14", "crepe", "hf"} <= names
    modules = [p for p in PACKAGE.rglob("*.py") if not _allowed(p)] + sorted((PACKAGE.parent / "scripts").glob("*.py"))
    assert len(modules) > 50
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {hits}" for path in modules
             for line, hits in per_backbone_tables(path.read_text(), names)]
    assert found == [], "per-backbone tables or if-chains outside a backbone's module or entry:\n" + "\n".join(found)


def underscore_imports(source: str) -> list[tuple[int, list[str]]]:
    """(line, names) of every ``from X import _name``: a private name used across modules."""
    return [(node.lineno, names) for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
            and (names := [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")])]


def test_no_private_name_is_imported_across_modules():
    assert underscore_imports("from a import _x, y\nfrom b import __version__\n") == [(1, ["_x"])]
    files = [*PACKAGE.rglob("*.py"), *sorted((PACKAGE.parent / "scripts").glob("*.py"))]
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {names}" for path in files
             for line, names in underscore_imports(path.read_text())]
    assert found == [], "make the name public (or move the code next to it):\n" + "\n".join(found)


def test_the_checker_finds_each_kind_of_table():
    source = 'T = {"ast": 1}\nif b == "vggish": pass\nok = b in ("cnn14", "x")\nc = s.startswith("crepe")\n'
    assert [line for line, _ in per_backbone_tables(source, set(registry.BACKBONES))] == [1, 2, 3, 4]
    assert per_backbone_tables('"""the ast backbone"""\nx = f(backbone="ast")\n', {"ast"}) == []


def test_every_backbone_declares_its_facts():
    from hf_fusion.catalog import entries
    from hf_fusion.hub.cards import templates_dir

    for name, entry in entries().items():
        cls = registry.BACKBONES[name]
        assert entry.backbone is cls
        config = cls.normalize_backbone_config(None) if name != "hf" else None
        if config is not None:  # the hf backbone needs a wrapped model's config (tests/test_backbone_contract.py)
            assert set(cls.layer_dims(config, cls.default_frontend(config))) == set(cls.tappable_layers(config))
            assert cls.frontend_spec.name == cls.default_frontend(config)["name"]
            if entry.preset() is not None:  # the published preset is what a config without layers gets
                assert tuple(cls.default_fusion_layers(config)) == entry.preset(), name
        assert callable(cls.frontend_spec.function) and (templates_dir() / entry.card_template).is_file()
        assert entry.converter is not None, f"backbone {name!r} has no converter in its entry"
        assert entry.tiny, f"backbone {name!r} declares no tiny variant for the registry-wide tests"
        assert entry.parity_tests and all((PACKAGE.parent / t).is_file() for t in entry.parity_tests), name
    assert entries()["vggish"].paper_layers == (10, 15)
    assert registry.BACKBONES["cnn14"].frame_hop({"hop_size": 160, "sampling_rate": 16000}) == 5120
    assert [c.name for c in registry.BACKBONES.values() if c.resizable_input] == ["ast"]


#: the members of the shipped base class: the module contract only (provenance and CLI live in the catalog)
SHIPPED_MEMBERS = {
    "name", "has_time_axis", "supports_attention_mask", "resizable_input", "frontend_spec", "default_layers",
    "window_rule", "frame_hop", "frame_centres", "tap_template", "tap_description", "resolve_layers",
    "embedding_pooling", "default_backbone_config", "normalize_backbone_config", "known_config_keys",
    "tappable_layers", "layer_dims", "default_frontend", "resolve_frontend", "check_frontend",
    "default_fusion_layers", "check_layers", "check_attention_mask", "forward", "frame_mask", "mask_lengths",
    "tap_module", "capture_taps", "set_layer_norm_eps", "init_weights",
}
RESIZABLE_MEMBERS = {"resizable_input", "length_key", "mean_key", "std_key", "input_normalizations", "input_hop",
                     "input_length", "input_frames_for_samples", "input_frames_for_seconds", "with_input_length",
                     "set_input_length"}


def test_the_shipped_classes_declare_the_module_contract_only():
    """``TappedBackbone`` and ``ResizableInput`` (copied into every Hub repo) hold no provenance or CLI member:
    no converter, checkpoint, card, license, repo words, CLI names or presets."""
    from hf_fusion.models.backbone_base import ResizableInput, TappedBackbone

    def own(cls):
        return {m for m in vars(cls) if not (m.startswith("__") and m.endswith("__"))}

    assert own(TappedBackbone) == SHIPPED_MEMBERS
    assert own(ResizableInput) == RESIZABLE_MEMBERS
    import hf_fusion.models as shipped

    text = "\n".join(p.read_text() for p in Path(shipped.__file__).parent.glob("*.py"))
    for word in ("card_template", "repo_words", "repo_aliases", "parse_cli_name", "cli_names", "paper_layers",
                 "repo_name_conflicts", "default_checkpoint", "checkpoint_help"):
        assert word not in text, f"{word} is provenance: it belongs to the backbone's catalog entry"


@pytest.fixture
def toy():
    """The toy backbone registered from outside the package: its module and its entry, nothing else."""
    from hf_fusion.catalog import ENTRIES, register_entry

    register_entry(TOY_ENTRY)
    yield _toy_model()
    ENTRIES.pop("toy", None)
    registry.BACKBONES.pop("toy", None)


def _toy_model():
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
    assert model.config.backbone_class.layer_dims(model.config.backbone_config, model.config.frontend)[3] == 4


def test_toy_backbone_extraction_study_and_dry_run_push(toy, tmp_path, capsys):
    from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features

    from hf_fusion.extraction import extract_features
    from hf_fusion.app import push
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
    push.build_push_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["push", "--model", str(tmp_path / "saved"), "--repo-id", "org/toy-fusion-1-3",
                              "--dry-run", "--out", str(tmp_path / "repo")])
    assert args.func(args) == 0, capsys.readouterr().err
    card = ModelCard.load(tmp_path / "repo" / "README.md")
    assert card.data.license == "mit" and "toy-fusion-1-3" in card.text
    assert (tmp_path / "repo" / "backbone_base.py").is_file()


# ---------------------------------------------------------------- imports run one way

ROOT = PACKAGE.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: hf_fusion modules it imports}, every import statement counted (inside functions too)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert len(graph) > 50
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_imports_follow_the_layers():
    graph = import_graph()
    closure = {m for m in graph if m.startswith("hf_fusion.models.")}
    outside = {m: sorted(t for t in graph[m] if not t.startswith("hf_fusion.models")) for m in closure}
    assert {m: t for m, t in outside.items() if t} == {}, "the remote-code closure must import only itself"
    library = {m for m in graph if not m.startswith("hf_fusion.app") and m != "hf_fusion"}
    assert {m: sorted(graph[m]) for m in library if any(t.startswith("hf_fusion.app") for t in graph[m])} == {}
    for a, b in (("tasks", "extraction"), ("extraction", "tasks")):
        crossing = {m: sorted(t for t in graph[m] if t.startswith(f"hf_fusion.{b}"))
                    for m in graph if m.startswith(f"hf_fusion.{a}")}
        assert {m: t for m, t in crossing.items() if t} == {}, f"{a} imports {b}"


def test_the_closure_is_the_models_folder_only():
    """Every module the model classes import (directly or not) is in ``models/``, and ``models/`` holds
    nothing the closure does not reach (what ``save_pretrained`` copies is the folder)."""
    graph = import_graph()
    roots = ["hf_fusion.models.modeling_fusion", "hf_fusion.models.modeling_classification",
             "hf_fusion.models.feature_extraction_fusion", "hf_fusion.models.configuration_fusion"]
    reached, todo = set(), list(roots)
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    assert reached == {m for m in graph if m.startswith("hf_fusion.models.")}


def test_no_hasattr_on_a_backbone_outside_the_backbone_modules():
    found = []
    for path in PACKAGE.rglob("*.py"):
        if _allowed(path) or path.name == "backbone_base.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr" and node.args:
                if "backbone" in ast.unparse(node.args[0]):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == [], "declare a backbone capability instead:\n" + "\n".join(found)


def test_no_module_getattr_shims():
    lazy_packages = {PACKAGE / "__init__.py", PACKAGE / "hub" / "__init__.py"}
    found = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p not in lazy_packages
             and any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in ast.parse(p.read_text()).body)]
    assert found == []


# ---------------------------------------------------------------- each protocol literal once

from hf_fusion import protocol  # noqa: E402

#: protocol lists found wherever they are written; the seeds (0, 1, 2) are too plain a list for that and are
#: looked for where seeds are given (a ``seeds`` default or keyword, ``--seeds``'s default)
LITERAL_LISTS = {name: value for name, value in vars(protocol).items()
                 if name.isupper() and isinstance(value, tuple) and len(value) > 1 and name != "PAPER_SEEDS"
                 and all(isinstance(v, (str, int, float)) for v in value)}
LITERAL_NUMBERS = {"max_epochs": protocol.PROBE_MAX_EPOCHS, "patience": protocol.PROBE_PATIENCE,
                   "valid_fraction": protocol.VALID_FRACTION, "fraction": protocol.VALID_FRACTION}


def protocol_literals(source: str) -> list[tuple[int, str]]:
    """(line, what) of every tuple/list/set literal equal to a protocol list, and of every default or keyword
    value that writes a probe default as a number (``max_epochs=200``, ``patience: int = 20``, ...)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
                isinstance(e, ast.Constant) for e in node.elts):
            values = tuple(e.value for e in node.elts)
            found += [(node.lineno, name) for name, listed in LITERAL_LISTS.items()
                      if values == listed or (isinstance(node, ast.Set) and set(values) == set(listed))]
        pairs = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults + node.args.kw_defaults
            pairs = [(a.arg, d) for a, d in zip(args, defaults) if d is not None]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            pairs = [(node.target.id, node.value)]
        elif isinstance(node, ast.Call):
            pairs = [(k.arg, k.value) for k in node.keywords if k.arg]
        found += [(value.lineno, f"{name}={value.value}") for name, value in pairs
                  if name in LITERAL_NUMBERS and isinstance(value, ast.Constant) and value.value == LITERAL_NUMBERS[name]]
        if any(name == "batch_size" and isinstance(v, ast.Constant) and v.value == protocol.PROBE_BATCH_SIZE
               for name, v in pairs):
            found.append((node.lineno, f"batch_size={protocol.PROBE_BATCH_SIZE}"))
        seeds = isinstance(node, ast.Call) and any(isinstance(a, ast.Constant) and a.value == "--seeds" for a in node.args)
        pairs += [("seeds", v) for name, v in pairs if seeds and name == "default"]
        found += [(v.lineno, "PAPER_SEEDS") for name, v in pairs if name == "seeds" and isinstance(v, (ast.Tuple, ast.List))
                  and all(isinstance(e, ast.Constant) for e in v.elts)
                  and tuple(e.value for e in v.elts) == protocol.PAPER_SEEDS]
    return sorted(set(found))


def test_the_literal_checker_finds_each_kind():
    source = ('a = ("valid", "test")\nb = [1e-5, 1e-4, 1e-3, 1e-2]\ndef f(max_epochs=200, patience: int = 20): pass\n'
              'g(batch_size=200)\nc = ("esc50", "us8k", "gtzan")\np.add_argument("--seeds", default=[0, 1, 2])\n'
              'def h(seeds=(0, 1, 2)): pass\n')
    assert [line for line, _ in protocol_literals(source)] == [1, 2, 3, 3, 4, 5, 6, 7]
    assert protocol_literals('x = ("valid",)\ny = f(batch_size=16)\nworkers = [0, 1, 2]\n') == []


def test_each_protocol_literal_is_written_once():
    paths = [p for p in PACKAGE.rglob("*.py") if p.name != "protocol.py"] + sorted((ROOT / "scripts").glob("*.py"))
    found = [f"{path.relative_to(ROOT)}:{line}: {what}" for path in paths
             for line, what in protocol_literals(path.read_text())]
    assert found == [], "read these from hf_fusion.protocol:\n" + "\n".join(found)


def test_the_readme_layout_matches_the_tree():
    """The README's ``## Layout`` block names every subpackage of hf_fusion and the top-level folders, and
    nothing that does not exist."""
    import re

    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"(?:^|\s)([\w.]+/|[\w]+\.py)(?=\s)", block))
    inner = {n for n in named if n != "hf_fusion/" and (PACKAGE / n).exists()}
    subpackages = {p.parent.name + "/" for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages | {"protocol.py"} <= inner, f"missing from the README layout: {subpackages - inner}"
    missing = sorted(n for n in named if not ((PACKAGE / n).exists() or (ROOT / n).exists()))
    assert missing == [], f"the README layout names what the tree does not have: {missing}"


def test_the_package_never_imports_gradio():
    """The leaderboard Space's page (hub_cards/space_app.py) runs on gradio; the package only writes it."""
    found = [f"{module}: {target}" for module, targets in import_graph_external().items() for target in targets
             if target.split(".")[0] == "gradio"]
    assert found == []


def import_graph_external() -> dict[str, set[str]]:
    """{module: every module name it imports, inside functions too}."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        out[module_name(path)] = names
    return out
