"""hf-fusion: fused multilayer audio representations (Niizumi et al., 2022) for Hugging Face."""

__version__ = "0.1.0"
