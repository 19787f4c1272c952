"""One backend per runtime (torch, onnxruntime, LiteRT, ExecuTorch) behind one interface.

Reads bundles through `siglip2_sdk.core.bundle`; never imports the export stage. Importing this
package imports no runtime library: each backend loads its own when a bundle needs it.
"""

from __future__ import annotations

from pathlib import Path

from siglip2_sdk.core.bundle import Manifest
from siglip2_sdk.core.errors import BundleError

from .base import Backend

SUPPORTED = ("onnxruntime", "litert", "executorch")


def open_backend(bundle_dir: str | Path, manifest: Manifest, threads: int | None = None) -> Backend:
    """The backend that runs a (verified) bundle on the runtime it was exported for."""
    if manifest.runtime == "onnxruntime":
        from .onnxruntime_runtime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(Path(bundle_dir), manifest, threads)
    if manifest.runtime == "litert":
        from .litert_runtime import LiteRTBackend

        return LiteRTBackend(Path(bundle_dir), manifest, threads)
    if manifest.runtime == "executorch":
        from .executorch_runtime import ExecuTorchBackend

        return ExecuTorchBackend(Path(bundle_dir), manifest, threads)
    raise BundleError(
        f"bundle '{bundle_dir}' is for {manifest.runtime!r}, which this version of siglip2-sdk cannot "
        f"run yet (it runs: {', '.join(SUPPORTED)})"
    )
