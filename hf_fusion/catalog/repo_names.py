"""Hub repo names against a fused model: what in a name contradicts the model (``push`` refuses it)."""

from __future__ import annotations

from .entry import entries


def backbone_words() -> dict[str, str]:
    """Words that name a backbone anywhere in a repo name -> the backbone they mean (each entry's ``repo_words``)."""
    return {word: name for name, entry in entries().items() for word in entry.repo_words}


def repo_name_conflicts(repo_name: str, backbone: str, layers: list[int], aliases: tuple[str, ...] = (),
                        words: dict[str, str] | None = None, names: set[str] | None = None) -> list[str]:
    """What in a Hub repo name contradicts a fused model (empty list: nothing does).

    ``repo_name``: the part after ``org/``. It contradicts the model when it names another backbone
    (``ast-...`` for a CREPE model; ``aliases`` are further words for this model's backbone, e.g. the
    wrapped model type ``wav2vec2`` of an ``hf`` backbone) or, after ``fusion``, other layer numbers
    than ``layers`` (``crepe-fusion-2-5`` for layers [1, 6]). A name that claims neither
    (``my-pitch-features``) contradicts nothing; a suffix after the numbers (``...-1-6-v2``) is fine.
    ``words``: word -> backbone (default :func:`backbone_words`); a registered backbone's name
    (``names``, default the registry's) also counts right before ``fusion`` (``hf-fusion-...``: "hf" is a common word in names otherwise).
    """
    words = backbone_words() if words is None else words
    if names is None:
        names = set(entries())
    tokens = [t for t in repo_name.lower().replace("_", "-").replace(".", "-").split("-") if t]
    own = {backbone.lower(), *(a.lower() for a in aliases)}
    problems, named = [], []
    for i, token in enumerate(tokens):
        meant = words.get(token)
        if meant is None and token in names and tokens[i + 1:i + 2] == ["fusion"]:
            meant = token
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
