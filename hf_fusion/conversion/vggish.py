"""VGGish PyTorch checkpoints -> ``AudioFusionModel(backbone="vggish")``. Two layouts, both plain state dicts:

- torchvggish / harritaylor (``vggish-10086976.pth``): ``features.N.weight/bias`` (N = 0, 3, 6, 8, 11, 13)
  and ``embeddings.N.weight/bias`` (N = 0, 2, 4); they map 1:1 onto :class:`VGGishBackbone`.
- tcvrick/audioset-vggish-tensorflow-to-pytorch (``pytorch_vggish.pth``, the authors' weights): the same
  ``features.N`` conv stack and the FC stack under ``fc.N`` (N = 0, 2, 4), flattened from NHWC like
  torchvggish, so ``fc.N`` -> ``embeddings.N``.

The PCA parameters (a separate file) are not used: the taps are pre-PCA (Table I layers).
Google's TF ``vggish_model.ckpt`` is not read here; convert it with torchvggish's tools first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..models.configuration_fusion import AudioFusionConfig
from ..models.feature_extraction_fusion import FusedAudioFeatureExtractor
from ..models.modeling_fusion import AudioFusionModel
from ._checkpoint import check_keys, finish_conversion, load_checkpoint, state_dict_of

CHECKPOINT_NAME = "vggish-10086976.pth"
TCVRICK_CHECKPOINT_NAME = "pytorch_vggish.pth"
#: layout name -> prefix of its FC stack
LAYOUTS = {"torchvggish": "embeddings.", "tcvrick": "fc."}


def vggish_layout(state: dict, path="checkpoint") -> str:
    """``"torchvggish"`` or ``"tcvrick"``, from the FC stack's prefix; both or neither is an error."""
    found = [name for name, prefix in LAYOUTS.items() if any(k.startswith(prefix) for k in state)]
    if len(found) != 1:
        raise ValueError(
            f"{path}: cannot tell the VGGish layout: expected FC keys under 'embeddings.N' (torchvggish) or "
            f"'fc.N' (tcvrick), found {'both' if found else 'neither'}; keys e.g. {sorted(state)[:8]}"
        )
    return found[0]


def convert_vggish_checkpoint(
    checkpoint: str | Path,
    fusion_layers: Sequence[int] | None = None,
    output_dir: str | Path | None = None,
    trust_pickle: bool = False,
    layout: str = "auto",
) -> tuple[AudioFusionModel, FusedAudioFeatureExtractor]:
    """Load a VGGish state dict (``layout`` ``"auto"``, ``"torchvggish"`` or ``"tcvrick"``) into a fused
    VGGish model (layers are Table I numbers).

    Strict: every key of the checkpoint must be a VGGish weight and every weight must be present;
    otherwise the error names the keys (in the checkpoint's own naming). With ``output_dir`` the model
    and its feature extractor are saved there (``AutoModel.from_pretrained(output_dir)`` works after
    ``import hf_fusion``, or with ``trust_remote_code=True``).
    """
    state = state_dict_of(load_checkpoint(checkpoint, trust_pickle=trust_pickle), checkpoint)
    if layout == "auto":
        layout = vggish_layout(state, checkpoint)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {sorted(LAYOUTS)}, got {layout!r}")
    config = AudioFusionConfig(backbone="vggish", fusion_layers=None if fusion_layers is None else list(fusion_layers))
    model = AudioFusionModel(config)
    prefix = LAYOUTS[layout]
    expected = {
        (prefix + k[len("embeddings."):] if k.startswith("embeddings.") else k): v
        for k, v in model.backbone.state_dict().items()
    }
    check_keys(state, expected, checkpoint, f"{layout} VGGish")
    weights = {("embeddings." + k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
    model.backbone.load_state_dict(weights, strict=True)
    return finish_conversion(model, output_dir)
