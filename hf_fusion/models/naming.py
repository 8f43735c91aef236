"""The one naming rule of fused models; no imports, so the CLI parser can use it without torch/transformers.

What a repo name may say about a model is checked by ``hf_fusion.catalog.repo_names``."""


def fusion_model_name(backbone: str, layers: list[int]) -> str:
    """``ast`` + [5, 12] -> ``ast-fusion-5-12`` (one naming rule for configs, repos and cards)."""
    return f"{backbone}-fusion-" + "-".join(str(int(layer)) for layer in layers)
