"""Inference backends: PyTorch eager, ONNX Runtime and TensorRT behind one :class:`Backend` interface.

``create_backend("onnxruntime", model=m, model_name="bore_depth", input_shape=(1, 3, 256, 320),
output_names=("depth",))`` exports ``m`` to a cached, parity-checked ONNX file and serves it. Multi-input
models take ``input_shapes={name: shape}`` in forward-argument order (``ModelInfo.input_shapes(...)``)
and ``backend.infer({name: array})``. Runtimes (onnxruntime, tensorrt) are imported only when their
backend is created.

TensorRT engines are cached by :class:`EngineCache` under an :class:`EngineKey` (ONNX hash, TensorRT
version, GPU, compute capability, precision, input shapes, batch) and self-checked against ONNX Runtime
on their first build (:func:`self_check`, :class:`EngineSelfCheckFailed`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import BACKENDS, Backend, BackendUnavailable, InputShapes
from .engine_cache import EngineCache, EngineKey, TargetInfo, make_key
from .export import ExportMismatch, ExportReport, ensure_onnx, export_onnx
from .seeded import seeded_inputs
from .selfcheck import TOLERANCES, EngineSelfCheckFailed, SelfCheckReport, Tolerance, self_check

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BACKENDS",
    "create_backend",
    "export_onnx",
    "ensure_onnx",
    "ExportMismatch",
    "ExportReport",
    "seeded_inputs",
    "EngineCache",
    "EngineKey",
    "TargetInfo",
    "make_key",
    "EngineSelfCheckFailed",
    "SelfCheckReport",
    "Tolerance",
    "TOLERANCES",
    "self_check",
]


def _onnx_file(
    backend: str,
    model: nn.Module | None,
    model_name: str | None,
    onnx_path: str | os.PathLike | None,
    input_shape: InputShapes,
    output_names: Sequence[str],
    cache_dir: str | os.PathLike | None,
) -> Path:
    if onnx_path is not None:
        return Path(onnx_path)
    if model is None:
        raise ValueError(f"backend '{backend}' needs onnx_path or model")
    return ensure_onnx(model, model_name or type(model).__name__, input_shape, output_names, cache_dir)


def create_backend(
    name: str,
    *,
    model: nn.Module | None = None,
    model_name: str | None = None,
    onnx_path: str | os.PathLike | None = None,
    input_shape: InputShapes | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    output_names: Sequence[str],
    device: str = "cpu",
    precision: str = "fp32",
    cache_dir: str | os.PathLike | None = None,
    **kw: Any,
) -> Backend:
    """Build backend ``name`` (one of :data:`BACKENDS`); ``kw`` goes to the backend's constructor.

    Give exactly one of ``input_shape`` (one (N, 3, H, W) shape: single-input models) and
    ``input_shapes`` (``{name: shape}`` in the model's forward-argument order: multi-input models).

    "torch" needs ``model``; its ``kw``: ``memory_format`` ("auto": channels_last on CPU) and
    ``bf16_check`` (precision "bf16" on CPU is compared with fp32 at start; see torch_backend).
    "onnxruntime" and "tensorrt" use ``onnx_path`` if given, else export ``model`` through the ONNX
    cache (:func:`ensure_onnx`, keyed by ``model_name``). "tensorrt" needs ``device="cuda[:N]"``
    and reuses or builds a cached, self-checked engine; its ``kw``: ``force_rebuild``,
    ``engine_cache_dir``, ``engine_path`` (a file to use instead of the cache), ``self_check``,
    ``tolerance``, ``workspace_bytes``. "onnxruntime" on ``device="tensorrt[:N]"``
    accepts ``precision="fp16"`` and ``engine_cache_dir``.
    Raises BackendUnavailable (before any export) if the runtime is not installed.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    if (input_shape is None) == (input_shapes is None):
        raise ValueError("give exactly one of input_shape= (single input) and input_shapes= (named inputs)")
    if input_shapes is not None:
        if not isinstance(input_shapes, Mapping):
            raise ValueError(
                f"input_shapes must be a mapping name -> shape, got {type(input_shapes).__name__}"
            )
        input_shape = dict(input_shapes)
    if precision == "bf16" and name != "torch":
        raise ValueError(
            f"precision 'bf16' is for backend 'torch' on a CPU with native bf16 (AVX512-BF16 or AMX); "
            f"backend '{name}' takes 'fp32'"
            + (" or 'fp16' (CUDA)" if name == "tensorrt" else " (or 'fp16' with device='tensorrt')")
        )
    if name == "torch":
        if model is None:
            raise ValueError("backend 'torch' needs model=")
        from .torch_backend import TorchBackend

        return TorchBackend(model, input_shape, output_names, device=device, precision=precision, **kw)

    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend, resolve_providers

        if precision != "fp32" and not (precision == "fp16" and device.startswith("tensorrt")):
            raise ValueError(
                f"backend 'onnxruntime' runs the exported fp32 graph; precision '{precision}' is "
                "available with the torch (fp16 on CUDA, bf16 on CPU) and tensorrt backends, or with "
                "device='tensorrt'"
            )
        resolve_providers(device, kw.get("providers"), precision, kw.get("engine_cache_dir"))
        path = _onnx_file(name, model, model_name, onnx_path, input_shape, output_names, cache_dir)
        return OnnxRuntimeBackend(path, input_shape, output_names, device=device, precision=precision, **kw)

    from .runtimes import import_tensorrt
    from .tensorrt_backend import TensorRTBackend

    import_tensorrt()
    if not device.startswith("cuda"):
        raise ValueError(f"backend 'tensorrt' runs on a CUDA device: pass device='cuda' (got '{device}')")
    engine_path = kw.get("engine_path")
    if onnx_path is None and model is None and engine_path is not None and Path(engine_path).is_file():
        path = None  # a prebuilt engine needs no ONNX file
    else:
        path = _onnx_file(name, model, model_name, onnx_path, input_shape, output_names, cache_dir)
    return TensorRTBackend(path, input_shape, output_names, device=device, precision=precision, **kw)
