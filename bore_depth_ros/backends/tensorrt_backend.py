"""TensorRT backend (TensorRT 10 Python API as shipped by JetPack 6, 8.5+ also; CUDA buffers owned by torch).

Start-up: compute the :class:`~.engine_cache.EngineKey` (ONNX SHA-256, TensorRT version, GPU name and
compute capability, precision, input shapes, batch), reuse the cached engine if its sidecar matches,
otherwise build one on this device, run the numeric self-check against ONNX Runtime CPU
(:mod:`.selfcheck`) and cache it only if it passes. ``force_rebuild=True`` ignores the cache.

UNTESTED HERE: the development/CI machine has neither a CUDA GPU nor the ``tensorrt`` package. The
TensorRT calls are confined to :func:`probe_target`, :func:`build_engine`, :func:`load_engine`,
:func:`execute` and the tensor binding in :class:`TensorRTBackend`; they must be validated on a Jetson.
The cache, the key, the self-check and the "not installed" path are tested on CPU.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Backend, BackendUnavailable, Inputs, InputShapes, shape_str, shapes_str
from .engine_cache import EngineCache, EngineKey, TargetInfo, atomic_write, make_key
from .runtimes import import_onnxruntime, import_tensorrt
from .selfcheck import SelfCheckReport, Tolerance, refuse, verify_backend

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")


def probe_target(device: str = "cuda") -> TargetInfo:
    """TensorRT version, GPU name and compute capability of ``device`` (needs TensorRT and CUDA)."""
    trt = import_tensorrt()
    import torch

    dev = torch.device(device)
    props = torch.cuda.get_device_properties(
        dev.index if dev.index is not None else torch.cuda.current_device()
    )
    return TargetInfo(
        trt_version=trt.__version__, gpu_name=props.name, compute_capability=f"{props.major}.{props.minor}"
    )


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def build_engine(
    onnx_path: str | os.PathLike, precision: str = "fp32", workspace_bytes: int = 1 << 30
) -> bytes:
    """Parse ``onnx_path`` and return a serialized engine for this GPU.

    "fp32" disables TF32 (TensorRT enables it by default on Ampere/Orin), so the engine matches the fp32
    reference; "fp16" allows fp16 (and TF32) kernels. INT8 is not offered (needs calibration data).
    """
    trt = import_tensorrt()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    logger = _logger(trt)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    # TensorRT 10: explicit batch is the only mode; 8.5/8.6 (JetPack 5.1, 6.0) need the flag for ONNX.
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    return bytes(memoryview(serialized))


def load_engine(engine: bytes) -> tuple[Any, Any]:
    """Deserialize an engine; returns ``(runtime, engine)`` (the runtime must outlive the engine)."""
    trt = import_tensorrt()
    runtime = trt.Runtime(_logger(trt))
    cuda_engine = runtime.deserialize_cuda_engine(engine)
    if cuda_engine is None:
        raise RuntimeError(
            "TensorRT could not deserialize the engine: engines only load with the TensorRT "
            "version and GPU that built them; rebuild it from the ONNX file (force_rebuild)"
        )
    return runtime, cuda_engine


def execute(context: Any, stream: Any) -> None:
    """Enqueue one inference (tensor addresses already set) on a torch CUDA stream."""
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")


class TensorRTBackend(Backend):
    """Runs a cached (or freshly built and self-checked) TensorRT engine for ``onnx_path``.

    ``engine_path``: use this engine file instead of the cache (loaded as is if it exists, else built
    there with the self-check). ``engine_cache_dir``: cache root (default
    ``$BORE_DEPTH_CACHE/engines``). ``self_check``: run the check after a build (default True);
    ``tolerance`` overrides the precision's stated :data:`~.selfcheck.TOLERANCES`.
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | os.PathLike | None,
        input_shape: InputShapes,
        output_names: Sequence[str],
        engine_path: str | os.PathLike | None = None,
        device: str = "cuda",
        precision: str = "fp32",
        force_rebuild: bool = False,
        engine_cache_dir: str | os.PathLike | None = None,
        workspace_bytes: int = 1 << 30,
        self_check: bool = True,
        tolerance: Tolerance | None = None,
    ) -> None:
        super().__init__(input_shape, output_names)
        trt = import_tensorrt()
        import torch

        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"backend 'tensorrt' runs on a CUDA device ('cuda' or 'cuda:N'), got '{device}'")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
        self.precision = precision
        self.onnx_path = Path(onnx_path) if onnx_path is not None else None
        self.target = probe_target(device)
        self.key: EngineKey | None = None
        self.self_check_report: SelfCheckReport | None = None
        self.build_seconds: float | None = None
        self._context = self._engine = self._runtime = None
        tol: Tolerance | str = tolerance if tolerance is not None else precision

        with torch.cuda.device(self.device):
            if engine_path is not None:
                self.engine_path = Path(engine_path)
                if self.engine_path.is_file() and not force_rebuild:
                    self._start(trt, torch, self.engine_path.read_bytes())
                else:
                    data = self._build_checked(trt, torch, workspace_bytes, self_check, tol)
                    atomic_write(self.engine_path, data)
                return
            if self.onnx_path is None:
                raise ValueError("backend 'tensorrt' needs onnx_path or engine_path")
            cache = EngineCache(engine_cache_dir)
            self.key = make_key(self.onnx_path, self.target, precision, self.input_shapes)
            self.engine_path = cache.engine_path(self.key)
            if self._start_cached(trt, torch, cache.load(self.key, force_rebuild)):
                return
            with cache.lock(self.key):  # another process may have built it meanwhile
                if not force_rebuild and self._start_cached(trt, torch, cache.load(self.key)):
                    return
                data = self._build_checked(trt, torch, workspace_bytes, self_check, tol)
                report = self.self_check_report.to_dict() if self.self_check_report else None
                cache.store(self.key, data, build_seconds=self.build_seconds, self_check=report)

    def _start_cached(self, trt, torch, data: bytes | None) -> bool:
        """Start from cached engine bytes; False (rebuild) if there are none or TensorRT rejects them."""
        if data is None:
            return False
        try:
            self._start(trt, torch, data)
        except RuntimeError as e:
            log.warning("cached engine %s does not load (%s); rebuilding it", self.engine_path, e)
            self.close()
            return False
        return True

    def _build_checked(
        self, trt, torch, workspace_bytes: int, self_check: bool, tol: Tolerance | str
    ) -> bytes:
        """Build from ONNX, load, and (if ``self_check``) refuse an engine that disagrees with ONNX
        Runtime."""
        if self.onnx_path is None:
            raise FileNotFoundError(f"engine {self.engine_path} does not exist and no onnx_path was given")
        if self_check:
            try:
                import_onnxruntime()  # the reference; fail before a build of several minutes
            except BackendUnavailable as e:
                raise BackendUnavailable(
                    f"the TensorRT self-check compares with ONNX Runtime on CPU: {e}; "
                    "or pass self_check=False (not recommended)"
                ) from e
        log.info(
            "building TensorRT %s engine from %s on %s (sm %s, TensorRT %s); this takes minutes once",
            self.precision,
            self.onnx_path,
            self.target.gpu_name,
            self.target.compute_capability,
            self.target.trt_version,
        )
        t0 = time.perf_counter()
        data = build_engine(self.onnx_path, self.precision, workspace_bytes)
        self.build_seconds = time.perf_counter() - t0
        log.info("built TensorRT engine in %.1f s", self.build_seconds)
        self._start(trt, torch, data)
        if self_check:
            report = verify_backend(self.infer, self.onnx_path, self.input_shapes, self.output_names, tol)
            self.self_check_report = report
            log.info("%s", report.summary())
            if not report.passed:
                self.close()
                refuse(
                    report,
                    trt_version=self.target.trt_version,
                    subject=f"TensorRT {self.precision} engine built from {self.onnx_path}",
                )
        return data

    def _start(self, trt, torch, data: bytes) -> None:
        self._runtime, self._engine = load_engine(data)
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(self.device)
        self._feed_names, self._inputs, self._outputs = self._bind_tensors(trt, torch)

    def _bind_tensors(self, trt, torch) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        """Allocate one torch CUDA tensor per engine I/O tensor and register its address with the context.

        Returns (backend input name -> engine input name, input tensors by backend name, output tensors).
        """
        pairs = {
            "FLOAT": torch.float32,
            "HALF": torch.float16,
            "BF16": torch.bfloat16,
            "INT8": torch.int8,
            "UINT8": torch.uint8,
            "INT32": torch.int32,
            "INT64": torch.int64,
            "BOOL": torch.bool,
        }
        dtypes = {getattr(trt.DataType, k): v for k, v in pairs.items() if hasattr(trt.DataType, k)}
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if not self.named_inputs:
            if len(inputs) != 1:
                raise ValueError(
                    f"engine {self.engine_path} has inputs {inputs}; expected one image input "
                    "(pass input_shapes={name: shape} for a multi-input model)"
                )
            feed = {self.input_names[0]: inputs[0]}
        else:
            if sorted(inputs) != sorted(self.input_names):
                raise ValueError(
                    f"engine {self.engine_path} has inputs {inputs}, but the backend was configured "
                    f"for {list(self.input_names)}"
                )
            feed = {n: n for n in self.input_names}
        for name, engine_name in feed.items():
            want = self.input_shapes[name]
            engine_shape = tuple(self._engine.get_tensor_shape(engine_name))
            if len(engine_shape) != len(want) or any(d != -1 and d != w for d, w in zip(engine_shape, want)):
                raise ValueError(
                    f"engine {self.engine_path} expects input '{engine_name}' of shape "
                    f"{shape_str(engine_shape)}, but the backend was configured for {shape_str(want)}"
                )
            if self._engine.get_tensor_dtype(engine_name) != trt.DataType.FLOAT:
                raise ValueError(
                    f"engine {self.engine_path} input '{engine_name}' is "
                    f"{self._engine.get_tensor_dtype(engine_name)}; expected float32"
                )
            self._context.set_input_shape(engine_name, want)
        missing = [n for n in self.output_names if n not in names]
        if missing:
            raise ValueError(f"engine {self.engine_path} has tensors {names}, lacking {missing}")

        tensors: dict[str, Any] = {}
        for n in names:
            shape = tuple(self._context.get_tensor_shape(n))
            tensors[n] = torch.empty(
                shape, dtype=dtypes[self._engine.get_tensor_dtype(n)], device=self.device
            )
            self._context.set_tensor_address(n, tensors[n].data_ptr())
            log.info(
                "TensorRT binding %s %s %s %s",
                self._engine.get_tensor_mode(n).name,
                n,
                shape_str(shape),
                self._engine.get_tensor_dtype(n).name,
            )
        input_tensors = {name: tensors.pop(engine_name) for name, engine_name in feed.items()}
        return feed, input_tensors, tensors

    def infer(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Copy in, :func:`execute` on the backend's stream, copy the outputs back as float32."""
        import torch

        from .torch_backend import numpy_to_tensor

        arrays = self.check_inputs(inputs)
        if self._context is None:
            raise RuntimeError("backend 'tensorrt' is closed")
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            for name, array in arrays.items():
                self._inputs[name].copy_(numpy_to_tensor(array))
            execute(self._context, self._stream)
            # .cpu() is queued on the same stream and blocks until it (and so the engine) has finished.
            return {n: self._outputs[n].float().cpu().numpy() for n in self.output_names}

    def describe(self) -> dict[str, str]:
        d = {
            "backend": self.name,
            "device": str(self.device),
            "precision": self.precision,
            "engine_path": os.fspath(self.engine_path),
            "input_shape": shapes_str(self.input_shapes)
            if self.named_inputs
            else shape_str(self.input_shape),
            "outputs": ",".join(self.output_names),
            "tensorrt": self.target.trt_version,
            "gpu": f"{self.target.gpu_name} (sm {self.target.compute_capability})",
        }
        if self.key is not None:
            d["engine_key"] = self.key.digest()[:16]
        if self.self_check_report is not None:
            d["self_check"] = "passed" if self.self_check_report.passed else "failed"
        return d

    def close(self) -> None:
        # Context before engine before runtime: TensorRT objects must be released in reverse creation order.
        self._context = None
        self._engine = None
        self._runtime = None
        self._inputs = {}
        self._outputs = {}
