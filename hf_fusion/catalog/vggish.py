"""VGGish's entry: the torchvggish weights, VGGish-Fusion#10#15, the card, the tiny test model."""

from ..conversion.vggish import convert_vggish_checkpoint
from ..models.backbone_vggish import VGGishBackbone
from .entry import BackboneEntry, TinyVariant

ENTRY = BackboneEntry(
    VGGishBackbone,
    converter=convert_vggish_checkpoint,
    checkpoint_help="the torchvggish state dict, e.g. vggish-10086976.pth",
    paper_layers=(10, 15),
    card_template="vggish.md",
    license="apache-2.0",
    repo_words=("vggish",),
    # the FC layers 17-22 are one GEMM over the batch's examples: they round by batch shape
    tiny=(TinyVariant("vggish", exact=(*range(1, 17), "fusion")),),
    parity_tests=("tests/test_vggish.py",),
)
