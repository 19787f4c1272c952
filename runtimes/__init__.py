"""One backend per runtime (torch, onnxruntime, LiteRT, ExecuTorch) behind one interface.

Reads bundles through `siglip2_sdk.core.bundle`; never imports the export stage.
"""
