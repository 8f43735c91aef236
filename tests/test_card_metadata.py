"""Card metadata round trip (ModelCard.load): Hub dataset ids from the task registry where a task has one
(the short name otherwise, never an invented id), datasets, base_model, library_name, pipeline_tag."""

from huggingface_hub import ModelCard

from hf_fusion.hub import cards

ROWS = [
    {"model": "ast-fusion-5-12", "task": "esc50", "accuracy": 0.9, "std": 0.01},
    {"model": "ast-fusion-5-12", "task": "spcv2", "accuracy": 0.8, "std": 0.02},
    {"model": "ast-fusion-5-12", "task": "vc1", "accuracy": 0.3, "std": 0.03},  # no Hub dataset registered
]


def test_rendered_card_metadata_round_trips(tmp_path, tiny_ast_config):
    card = cards.render_model_card(tiny_ast_config, "org/ast-fusion-5-12", results=ROWS,
                                   source_checkpoint="MIT/ast-finetuned-audioset-10-10-0.4593")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data
    assert data.library_name == "transformers" and data.pipeline_tag == "feature-extraction"
    assert data.base_model == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert data.datasets == ["ashraq/esc50"]  # real ids only (Speech Commands has none that follows the paper)
    got = {r.dataset_name: (r.dataset_type, r.dataset_config, r.dataset_split, r.metric_value) for r in data.eval_results}
    assert got == {
        "ESC-50": ("ashraq/esc50", None, "test", 0.9),
        "Speech Commands V2": ("spcv2", None, "test", 0.8),
        "VoxCeleb1": ("vc1", None, "test", 0.3),
    }
    assert loaded.data.to_dict() == data.to_dict() and ModelCard(str(loaded)).data.to_dict() == data.to_dict()
    text = " ".join(loaded.text.split())
    assert "No Hub dataset is registered for `spcv2`, `vc1`" in text and "https://huggingface.co/datasets/ashraq/esc50" in text
    assert 'pipeline("feature-extraction", model="org/ast-fusion-5-12", trust_remote_code=True)' in text


def test_no_base_model_for_a_local_checkpoint_and_no_datasets_without_results(tiny_ast_config):
    data = cards.render_model_card(tiny_ast_config, "org/x", source_checkpoint="vggish-10086976.pth").data
    assert data.base_model is None and data.datasets is None and data.eval_results is None
    assert data.library_name == "transformers" and data.pipeline_tag == "feature-extraction"
