"""TensorRT backend (TensorRT 10 Python API; CUDA buffers and stream owned by torch).

UNTESTED HERE: the development/CI machine has neither a CUDA GPU nor the ``tensorrt`` package, so only
the BackendUnavailable path is exercised by the tests. Everything that touches TensorRT sits in
``build_engine``, ``load_engine`` and ``TensorRTBackend`` (engine I/O, buffers, ``execute_async_v3``) and
has to be validated on a Jetson (JetPack 6 / TensorRT 10), including the binding of several named inputs
(multi-input models such as ``svr`` and ``semi_smd``). Not done yet: engine cache keys, a
TensorRT-vs-PyTorch self-check after building, INT8, dynamic shapes.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Backend, BackendUnavailable, InputShapes, Inputs, shape_str, shapes_str

UNAVAILABLE_MSG = ("backend 'tensorrt' needs NVIDIA TensorRT (JetPack ships it; pip install tensorrt on x86 "
                   "with CUDA) and a CUDA GPU")
PRECISIONS = ("fp32", "fp16")


def import_tensorrt():
    """Import tensorrt and check that torch sees a CUDA GPU, else raise BackendUnavailable."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailable(f"{UNAVAILABLE_MSG} (import tensorrt failed: {e})") from e
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailable(f"{UNAVAILABLE_MSG}; its buffers also need a CUDA build of torch") from e
    if not torch.cuda.is_available():
        raise BackendUnavailable(f"{UNAVAILABLE_MSG} (tensorrt {tensorrt.__version__} is installed but torch "
                                 "sees no CUDA device)")
    return tensorrt


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, precision: str = "fp32",
                 workspace_bytes: int = 1 << 30) -> Path:
    """Parse ``onnx_path`` and write a serialized engine to ``engine_path`` (atomically)."""
    trt = import_tensorrt()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=engine_path.parent, prefix=f".{engine_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(memoryview(serialized))
        os.replace(tmp, engine_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return engine_path


def load_engine(engine_path: str | os.PathLike) -> tuple[Any, Any]:
    """Deserialize ``engine_path``; returns ``(runtime, engine)`` (the runtime must outlive the engine)."""
    trt = import_tensorrt()
    runtime = trt.Runtime(_logger(trt))
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT could not load {engine_path}: engines only load with the TensorRT version "
                           "and GPU that built them; rebuild it from the ONNX file")
    return runtime, engine


def default_engine_path(onnx_path: str | os.PathLike, precision: str) -> Path:
    """``<onnx stem>.<precision>.trt<version>.engine`` beside the ONNX file."""
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{precision}.trt{trt.__version__}.engine")


class TensorRTBackend(Backend):
    """Runs a TensorRT engine loaded from ``engine_path`` or built from ``onnx_path`` into it."""

    name = "tensorrt"

    def __init__(self, onnx_path: str | os.PathLike | None, input_shape: InputShapes,
                 output_names: Sequence[str], engine_path: str | os.PathLike | None = None,
                 device: str = "cuda", precision: str = "fp32", rebuild: bool = False,
                 workspace_bytes: int = 1 << 30) -> None:
        super().__init__(input_shape, output_names)
        trt = import_tensorrt()
        import torch

        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"backend 'tensorrt' runs on a CUDA device ('cuda' or 'cuda:N'), got '{device}'")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
        self.precision = precision
        if engine_path is None:
            if onnx_path is None:
                raise ValueError("backend 'tensorrt' needs onnx_path or engine_path")
            engine_path = default_engine_path(onnx_path, precision)
        self.engine_path = Path(engine_path)

        with torch.cuda.device(self.device):
            if rebuild or not self.engine_path.is_file():
                if onnx_path is None:
                    raise FileNotFoundError(f"engine {self.engine_path} does not exist and no onnx_path was given")
                build_engine(onnx_path, self.engine_path, precision, workspace_bytes)
            self._runtime, self._engine = load_engine(self.engine_path)
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(self.device)
            self._feed_names, self._inputs, self._outputs = self._bind_tensors(trt, torch)

    def _bind_tensors(self, trt, torch) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        """Allocate one torch CUDA tensor per engine I/O tensor and register its address with the context.

        Returns (backend input name -> engine input name, input tensors by backend name, output tensors).
        """
        pairs = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
                 "UINT8": torch.uint8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool}
        dtypes = {getattr(trt.DataType, k): v for k, v in pairs.items() if hasattr(trt.DataType, k)}
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if not self.named_inputs:
            if len(inputs) != 1:
                raise ValueError(f"engine {self.engine_path} has inputs {inputs}; expected one image input "
                                 "(pass input_shapes={name: shape} for a multi-input model)")
            feed = {self.input_names[0]: inputs[0]}
        else:
            if sorted(inputs) != sorted(self.input_names):
                raise ValueError(f"engine {self.engine_path} has inputs {inputs}, but the backend was configured "
                                 f"for {list(self.input_names)}")
            feed = {n: n for n in self.input_names}
        for name, engine_name in feed.items():
            want = self.input_shapes[name]
            engine_shape = tuple(self._engine.get_tensor_shape(engine_name))
            if len(engine_shape) != len(want) or any(d != -1 and d != w for d, w in zip(engine_shape, want)):
                raise ValueError(f"engine {self.engine_path} expects input '{engine_name}' of shape "
                                 f"{shape_str(engine_shape)}, but the backend was configured for {shape_str(want)}")
            if self._engine.get_tensor_dtype(engine_name) != trt.DataType.FLOAT:
                raise ValueError(f"engine {self.engine_path} input '{engine_name}' is "
                                 f"{self._engine.get_tensor_dtype(engine_name)}; expected float32")
            self._context.set_input_shape(engine_name, want)
        missing = [n for n in self.output_names if n not in names]
        if missing:
            raise ValueError(f"engine {self.engine_path} has tensors {names}, lacking {missing}")

        tensors: dict[str, Any] = {}
        for n in names:
            shape = tuple(self._context.get_tensor_shape(n))
            tensors[n] = torch.empty(shape, dtype=dtypes[self._engine.get_tensor_dtype(n)], device=self.device)
            self._context.set_tensor_address(n, tensors[n].data_ptr())
        input_tensors = {name: tensors.pop(engine_name) for name, engine_name in feed.items()}
        return feed, input_tensors, tensors

    def infer(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Copy in, ``execute_async_v3`` on the backend's stream, copy the outputs back as float32."""
        import torch

        from .torch_backend import numpy_to_tensor

        arrays = self.check_inputs(inputs)
        if self._context is None:
            raise RuntimeError("backend 'tensorrt' is closed")
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            for name, array in arrays.items():
                self._inputs[name].copy_(numpy_to_tensor(array))
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed for {self.engine_path}")
            # .cpu() is queued on the same stream and blocks until it (and so the engine) has finished.
            return {n: self._outputs[n].float().cpu().numpy() for n in self.output_names}

    def describe(self) -> dict[str, str]:
        import tensorrt

        return {
            "backend": self.name,
            "device": str(self.device),
            "precision": self.precision,
            "engine_path": os.fspath(self.engine_path),
            "input_shape": shapes_str(self.input_shapes) if self.named_inputs else shape_str(self.input_shape),
            "outputs": ",".join(self.output_names),
            "tensorrt": tensorrt.__version__,
        }

    def close(self) -> None:
        # Context before engine before runtime: TensorRT objects must be released in reverse creation order.
        self._context = None
        self._engine = None
        self._runtime = None
        self._inputs = {}
        self._outputs = {}
