"""ONNX Runtime backend (CPU, CUDA or TensorRT execution providers).

onnxruntime is imported when a backend is built, so this module imports without it. With the TensorRT
execution provider (``device="tensorrt[:N]"``) engines are cached on disk (ORT's own engine cache, in a
directory named after the ONNX Runtime and TensorRT versions, see :func:`tensorrt_provider_options`)
and the session is self-checked against ONNX Runtime CPU at start (:mod:`.selfcheck`). UNTESTED HERE:
no onnxruntime-gpu and no GPU on the development machine; only the option building and the CPU
self-check path are tested.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Backend, BackendUnavailable, Inputs, InputShapes, shape_str, shapes_str
from .cache_paths import default_engine_dir
from .runtimes import import_onnxruntime, tensorrt_version

log = logging.getLogger(__name__)

_GPU_HINT = (
    "pip install onnxruntime-gpu (in place of onnxruntime; on Jetson use the JetPack onnxruntime-gpu wheel)"
)


def _provider_name(p: str | tuple[str, dict[str, Any]]) -> str:
    return p if isinstance(p, str) else p[0]


def tensorrt_provider_options(
    device_id: int | None = None, precision: str = "fp32", engine_cache_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Options of ORT's TensorrtExecutionProvider: on-disk engine and timing caches, fp16 if asked.

    ORT names cached engines by graph hash and GPU compute capability only, so the directory carries the
    ONNX Runtime and TensorRT versions: ``<engine_cache_dir>/ort_trt/ort<ver>_trt<ver>`` (default root
    ``$BORE_DEPTH_CACHE/engines``); an upgrade of either then starts a fresh cache.
    """
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"TensorrtExecutionProvider precision must be 'fp32' or 'fp16', got '{precision}'")
    ort = import_onnxruntime()
    root = Path(engine_cache_dir).expanduser() if engine_cache_dir is not None else default_engine_dir()
    path = root / "ort_trt" / f"ort{ort.__version__}_trt{tensorrt_version()}"
    opts: dict[str, Any] = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": os.fspath(path),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": os.fspath(path),
        "trt_fp16_enable": precision == "fp16",
    }
    if device_id is not None:
        opts["device_id"] = int(device_id)
    return opts


def resolve_providers(
    device: str = "cpu",
    providers: Sequence[Any] | None = None,
    precision: str = "fp32",
    engine_cache_dir: str | os.PathLike | None = None,
) -> list[Any]:
    """Execution providers for ``device`` ("cpu", "cuda[:N]", "tensorrt[:N]") or the explicit ``providers``.

    "tensorrt[:N]" gets :func:`tensorrt_provider_options` (``precision``, ``engine_cache_dir``).
    Raises BackendUnavailable if the installed onnxruntime lacks a requested provider.
    """
    ort = import_onnxruntime()
    if providers is None:
        kind, _, index = device.partition(":")
        if index and not index.isdigit():
            raise ValueError(f"invalid device '{device}'")

        def gpu(provider: str) -> Any:
            return (provider, {"device_id": int(index)}) if index else provider

        if kind == "cpu" and not index:
            providers = ["CPUExecutionProvider"]
        elif kind == "cuda":
            providers = [gpu("CUDAExecutionProvider"), "CPUExecutionProvider"]
        elif kind == "tensorrt":
            trt_opts = tensorrt_provider_options(int(index) if index else None, precision, engine_cache_dir)
            providers = [
                ("TensorrtExecutionProvider", trt_opts),
                gpu("CUDAExecutionProvider"),
                "CPUExecutionProvider",
            ]
        else:
            raise ValueError(
                f"backend 'onnxruntime' supports devices 'cpu', 'cuda[:N]' and 'tensorrt[:N]', got '{device}'"
            )
    providers = list(providers)
    if not providers:
        raise ValueError("providers must not be empty")
    available = ort.get_available_providers()
    missing = [_provider_name(p) for p in providers if _provider_name(p) not in available]
    if missing:
        hint = (
            _GPU_HINT
            if any(m in ("CUDAExecutionProvider", "TensorrtExecutionProvider") for m in missing)
            else "install an onnxruntime build that has it"
        )
        raise BackendUnavailable(
            f"backend 'onnxruntime' on device '{device}' needs {', '.join(missing)}, which onnxruntime "
            f"{ort.__version__} here lacks (available: {', '.join(available)}): {hint}"
        )
    return providers


class OnnxRuntimeBackend(Backend):
    """Runs a static-shape ONNX graph with ONNX Runtime (graph optimisation level ALL).

    With one ``input_shape`` the graph must have exactly one input (any name); with ``{name: shape}``
    its inputs must be exactly those names, each float32 of that shape. ``precision`` "fp16" only with
    the TensorRT execution provider. ``self_check`` (default: only with the TensorRT provider) compares
    the session with ONNX Runtime CPU at start and raises EngineSelfCheckFailed outside tolerance.
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        input_shape: InputShapes,
        output_names: Sequence[str],
        providers: Sequence[Any] | None = None,
        intra_op_threads: int = 0,
        device: str = "cpu",
        precision: str = "fp32",
        engine_cache_dir: str | os.PathLike | None = None,
        self_check: bool | None = None,
    ) -> None:
        super().__init__(input_shape, output_names)
        ort = import_onnxruntime()
        self.onnx_path = Path(onnx_path)
        self.device = device
        if precision != "fp32" and not device.startswith("tensorrt"):
            raise ValueError(
                f"backend 'onnxruntime' runs the exported fp32 graph on '{device}'; precision "
                f"'{precision}' needs device='tensorrt' (the TensorRT execution provider)"
            )
        self.precision = precision
        requested = resolve_providers(device, providers, precision, engine_cache_dir)
        if not self.onnx_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.onnx_path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(intra_op_threads)
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(os.fspath(self.onnx_path), opts, providers=requested)
        # ORT silently falls back to CPU when a GPU provider fails to load (missing CUDA/cuDNN libraries).
        active = self.session.get_providers()
        if _provider_name(requested[0]) not in active:
            raise BackendUnavailable(
                f"backend 'onnxruntime': {_provider_name(requested[0])} is installed but failed to load "
                f"(active: {', '.join(active)}); check the CUDA/cuDNN libraries onnxruntime-gpu "
                f"{ort.__version__} needs"
            )

        inputs = {i.name: i for i in self.session.get_inputs()}
        if not self.named_inputs:
            if len(inputs) != 1:
                raise ValueError(
                    f"{self.onnx_path} has {len(inputs)} inputs {list(inputs)}; expected one image "
                    "input (pass input_shapes={name: shape} for a multi-input model)"
                )
            self._feed_names = {self.input_names[0]: next(iter(inputs))}
        else:
            if sorted(inputs) != sorted(self.input_names):
                raise ValueError(
                    f"{self.onnx_path} has inputs {list(inputs)}, but the backend was configured for "
                    f"{list(self.input_names)}"
                )
            self._feed_names = {n: n for n in self.input_names}
        for name, graph_name in self._feed_names.items():
            node, want = inputs[graph_name], self.input_shapes[name]
            model_shape = tuple(node.shape)
            # Symbolic (dynamic) dimensions accept any size, so they match the deployment's.
            if len(model_shape) != len(want) or any(
                isinstance(d, int) and d != w for d, w in zip(model_shape, want)
            ):
                raise ValueError(
                    f"{self.onnx_path} expects input '{graph_name}' of shape "
                    f"{shape_str(model_shape)}, but the backend was configured for "
                    f"{shape_str(want)}; re-export the model at that shape"
                )
            if node.type != "tensor(float)":
                raise ValueError(
                    f"{self.onnx_path} input '{graph_name}' is {node.type}; expected tensor(float)"
                )
        self.input_name = self._feed_names[self.input_names[0]]
        graph_outputs = [o.name for o in self.session.get_outputs()]
        missing = [n for n in self.output_names if n not in graph_outputs]
        if missing:
            raise ValueError(f"{self.onnx_path} has outputs {graph_outputs}, lacking {missing}")
        self._run_names = list(self.output_names)
        self.self_check_report = None
        if self_check is None:
            self_check = active[0] == "TensorrtExecutionProvider"
        if self_check:
            self._self_check(active[0])

    def _self_check(self, provider: str) -> None:
        from .selfcheck import refuse, verify_backend

        report = verify_backend(
            self.infer, self.onnx_path, self.input_shapes, self.output_names, self.precision
        )
        self.self_check_report = report
        log.info("%s: %s", provider, report.summary())
        if not report.passed:
            self.close()
            refuse(
                report,
                trt_version=tensorrt_version() if provider == "TensorrtExecutionProvider" else "",
                subject=f"ONNX Runtime {provider} session for {self.onnx_path}",
            )

    def infer(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Run the session on an array or a dict of arrays; the returned arrays are fresh."""
        arrays = self.check_inputs(inputs)
        if self.session is None:
            raise RuntimeError("backend 'onnxruntime' is closed")
        outputs = self.session.run(self._run_names, {self._feed_names[n]: a for n, a in arrays.items()})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outputs)}

    def describe(self) -> dict[str, str]:
        import onnxruntime

        return {
            "backend": self.name,
            "device": self.device,
            "precision": self.precision,
            "providers": ",".join(self.session.get_providers()) if self.session is not None else "(closed)",
            "onnx_path": os.fspath(self.onnx_path),
            "input_shape": shapes_str(self.input_shapes)
            if self.named_inputs
            else shape_str(self.input_shape),
            "outputs": ",".join(self.output_names),
            "onnxruntime": onnxruntime.__version__,
        }

    def close(self) -> None:
        self.session = None
