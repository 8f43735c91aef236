"""CNN14's entry: the PANNs checkpoints, CNN14-Fusion#3#6, the card, the tiny test model."""

from ..conversion.cnn14 import convert_cnn14_checkpoint
from ..models.backbone_cnn14 import Cnn14Backbone
from .entry import BackboneEntry, TinyVariant

ENTRY = BackboneEntry(
    Cnn14Backbone,
    converter=convert_cnn14_checkpoint,
    checkpoint_help="a PANNs checkpoint, e.g. Cnn14_16k_mAP=0.438.pth (16 kHz, the paper's) or "
                    "Cnn14_mAP=0.431.pth (32 kHz: pass sample_rate=32000)",
    paper_layers=(3, 6),
    card_template="cnn14.md",
    license="mit",
    repo_words=("cnn14", "panns"),
    # oneDNN's convolutions round by batch shape (~1e-7 relative): nothing bit for bit
    tiny=(TinyVariant("cnn14", backbone_config={"channels": [4, 8, 8, 8, 8, 8]}, forced_frames=1),),
    parity_tests=("tests/test_cnn14.py",),
)
