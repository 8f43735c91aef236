"""The one naming rule of fused models; no imports, so the CLI parser can use it without torch/transformers."""


def fusion_model_name(backbone: str, layers: list[int]) -> str:
    """``ast`` + [5, 12] -> ``ast-fusion-5-12`` (one naming rule for configs, repos and cards)."""
    return f"{backbone}-fusion-" + "-".join(str(int(layer)) for layer in layers)


#: Words that name a backbone family in a repo name, and the backbone they mean ("hf" counts only
#: right before "-fusion-": it is a common word in names otherwise).
BACKBONE_WORDS = {"ast": "ast", "vggish": "vggish", "cnn14": "cnn14", "panns": "cnn14", "crepe": "crepe"}


def repo_name_conflicts(repo_name: str, backbone: str, layers: list[int], aliases: tuple[str, ...] = ()) -> list[str]:
    """What in a Hub repo name contradicts a fused model (empty list: nothing does).

    ``repo_name``: the part after ``org/``. It contradicts the model when it names another backbone
    (``ast-...`` for a CREPE model; ``aliases`` are further words for this model's backbone, e.g. the
    wrapped model type ``wav2vec2`` of an ``hf`` backbone) or, after ``fusion``, other layer numbers
    than ``layers`` (``crepe-fusion-2-5`` for layers [1, 6]). A name that claims neither
    (``my-pitch-features``) contradicts nothing; a suffix after the numbers (``...-1-6-v2``) is fine.
    """
    tokens = [t for t in repo_name.lower().replace("_", "-").replace(".", "-").split("-") if t]
    own = {backbone.lower(), *(a.lower() for a in aliases)}
    problems, named = [], []
    for i, token in enumerate(tokens):
        meant = BACKBONE_WORDS.get(token)
        if meant is None and token == "hf" and tokens[i + 1:i + 2] == ["fusion"]:
            meant = "hf"
        if meant is not None and meant not in own and token not in own:
            named.append(token)
    if named:
        problems.append(f"it names backbone {', '.join(sorted(set(named)))} but the model's backbone is {backbone}")
    if "fusion" in tokens:
        after = tokens[tokens.index("fusion") + 1:]
        claimed = []
        for token in after:
            if not token.isdigit():
                break
            claimed.append(int(token))
        if claimed and claimed != [int(x) for x in layers]:
            problems.append(f"it names layers {' '.join(map(str, claimed))} but the model fuses "
                            f"{' '.join(str(int(x)) for x in layers)}")
    return problems
