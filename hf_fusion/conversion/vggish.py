"""torchvggish checkpoint (``vggish-10086976.pth``) -> ``AudioFusionModel(backbone="vggish")``.

The file is a plain state dict with keys ``features.N.weight/bias`` (N = 0, 3, 6, 8, 11, 13) and
``embeddings.N.weight/bias`` (N = 0, 2, 4); they map 1:1 onto :class:`VGGishBackbone`. The PCA
parameters (a separate file) are not used: the taps are pre-PCA (Table I layers).
Google's TF ``vggish_model.ckpt`` is not read here; convert it with torchvggish's tools first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..configuration_fusion import AudioFusionConfig
from ..feature_extraction_fusion import FusedAudioFeatureExtractor
from ..modeling_fusion import AudioFusionModel
from ._checkpoint import check_keys, finish_conversion, load_checkpoint, state_dict_of

CHECKPOINT_NAME = "vggish-10086976.pth"


def convert_vggish_checkpoint(
    checkpoint: str | Path,
    fusion_layers: Sequence[int] = (10, 15),
    output_dir: str | Path | None = None,
    trust_pickle: bool = False,
) -> tuple[AudioFusionModel, FusedAudioFeatureExtractor]:
    """Load a torchvggish state dict into a fused VGGish model (layers are Table I numbers).

    Strict: every key of the checkpoint must be a VGGish weight and every weight must be present;
    otherwise the error names the keys. With ``output_dir`` the model and its feature extractor are
    saved there (``AutoModel.from_pretrained(output_dir)`` works after ``import hf_fusion``, or with
    ``trust_remote_code=True``).
    """
    state = state_dict_of(load_checkpoint(checkpoint, trust_pickle=trust_pickle), checkpoint)
    config = AudioFusionConfig(backbone="vggish", fusion_layers=list(fusion_layers))
    model = AudioFusionModel(config)
    check_keys(state, model.backbone.state_dict(), checkpoint, "torchvggish VGGish")
    model.backbone.load_state_dict(state, strict=True)
    return finish_conversion(model, output_dir)
