"""Export stage: tower wrappers, ONNX / TFLite / ExecuTorch lowering, quantization, parity gate,
bundle writer. Built on `siglip2_sdk.core` and `siglip2_sdk.runtimes` (for the parity gate).
"""
