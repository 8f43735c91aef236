"""AST's entry: the paper's AudioSet checkpoint, AST-Fusion#5#12, the card, the tiny test model."""

from ..conversion.ast import PAPER_CHECKPOINT, convert_ast_checkpoint
from ..models.backbone_ast import ASTBackbone
from .entry import BackboneEntry, TinyVariant

#: 12 blocks as the paper's model, 16 dims, a 64-frame x 32-mel grid
TINY_AST = dict(hidden_size=16, num_hidden_layers=12, num_attention_heads=2, intermediate_size=32, max_length=64,
                num_mel_bins=32)

ENTRY = BackboneEntry(
    ASTBackbone,
    converter=convert_ast_checkpoint,
    default_checkpoint=PAPER_CHECKPOINT,
    checkpoint_help=f"a transformers AST checkpoint (Hub id or folder) or timm .pth, e.g. {PAPER_CHECKPOINT}",
    paper_layers=(5, 12),
    card_template="ast.md",
    license="bsd-3-clause",
    repo_words=("ast",),
    # exact at this tiny size only (a full-size GEMM over B x 1214 tokens may round by B)
    tiny=(TinyVariant("ast", backbone_config=TINY_AST, exact="all"),),
    parity_tests=("tests/test_model_ast.py", "tests/test_ast_protocol.py"),
)
