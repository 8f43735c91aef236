"""The backbone catalog: one registry entry per backbone (``ast.py``, ``vggish.py``, ...), apart from the
module a Hub repo ships. See :mod:`.entry`; command-line names in :mod:`.cli_names`, repo names in
:mod:`.repo_names`."""

from .entry import (
    ENTRIES,
    BackboneEntry,
    TinyVariant,
    build_fused,
    build_paper_size,
    build_tiny,
    converter_entry,
    entries,
    entry_for,
    paper_size_config,
    register_entry,
    standalone_backbones,
    tiny_variants,
)

__all__ = ["ENTRIES", "BackboneEntry", "TinyVariant", "build_fused", "build_paper_size", "build_tiny", "converter_entry",
           "entries", "entry_for", "paper_size_config", "register_entry", "standalone_backbones", "tiny_variants"]
