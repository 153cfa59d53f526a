"""Optional runtimes (onnxruntime, tensorrt): imported on demand, or BackendUnavailable naming what
to install.

No module of the package imports these runtimes at import time; every backend, the exporter and the
self-check go through :func:`import_onnxruntime` / :func:`import_tensorrt`.
"""

from __future__ import annotations

from .base import BackendUnavailable

TENSORRT_UNAVAILABLE = (
    "backend 'tensorrt' needs NVIDIA TensorRT (JetPack ships it; pip install tensorrt on x86 "
    "with CUDA) and a CUDA GPU"
)


def import_onnxruntime():
    """Import onnxruntime or raise BackendUnavailable naming the package to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable(
            "backend 'onnxruntime' needs the onnxruntime package: pip install onnxruntime "
            "(or onnxruntime-gpu)"
        ) from e
    return onnxruntime


def import_tensorrt():
    """Import tensorrt and check that torch sees a CUDA GPU, else raise BackendUnavailable."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailable(f"{TENSORRT_UNAVAILABLE} (import tensorrt failed: {e})") from e
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailable(
            f"{TENSORRT_UNAVAILABLE}; its buffers also need a CUDA build of torch"
        ) from e
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"{TENSORRT_UNAVAILABLE} (tensorrt {tensorrt.__version__} is installed but torch "
            "sees no CUDA device)"
        )
    return tensorrt


def tensorrt_version() -> str:
    """Version of the installed TensorRT Python package (pip or JetPack), or "unknown"; needs no GPU."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt_libs"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except ImportError:
        return "unknown"
