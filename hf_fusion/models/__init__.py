"""The remote-code closure: every module a saved Hub repo needs at load time, and nothing else.

``save_pretrained`` copies these flat files next to ``config.json`` so that ``trust_remote_code=True``
loads a fused model without hf_fusion installed; they import only each other, relatively
(``from .fusion import ...``). Public names are re-exported by ``hf_fusion`` itself.
"""
