"""Where exported ONNX files and TensorRT engines are cached (``$BORE_DEPTH_CACHE``); pure Python, no imports
of the rest of the package, so the exporter, the engine cache and the backends all read the same places."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$BORE_DEPTH_CACHE`` if set, else ``$XDG_CACHE_HOME`` (default ``~/.cache``) ``/bore_depth_ros``."""
    root = os.environ.get("BORE_DEPTH_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "bore_depth_ros"


def default_cache_dir() -> Path:
    """The ONNX cache: ``<cache_root>/onnx``."""
    return cache_root() / "onnx"


def default_engine_dir() -> Path:
    """The TensorRT engine cache, beside the ONNX cache: ``<cache_root>/engines``."""
    return cache_root() / "engines"
