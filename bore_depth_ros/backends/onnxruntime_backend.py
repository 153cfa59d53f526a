"""ONNX Runtime backend (CPU, OpenVINO, CUDA or TensorRT execution providers).

``device="openvino"`` runs the graph with the OpenVINO execution provider on the CPU, in float32
(optional package ``onnxruntime-ep-openvino``; measured faster than ORT's own CPU provider with the
same outputs to 1e-5, docs/benchmarks.md), self-checked against ONNX Runtime CPU at start.

onnxruntime is imported when a backend is built, so this module imports without it. With the TensorRT
execution provider (``device="tensorrt[:N]"``) engines are cached on disk (ORT's own engine cache, in a
directory named after the ONNX Runtime and TensorRT versions, see :func:`tensorrt_provider_options`)
and the session is self-checked against ONNX Runtime CPU at start (:mod:`.selfcheck`). UNTESTED HERE:
no onnxruntime-gpu and no GPU on the development machine; only the option building and the CPU
self-check path are tested.

Session options (:class:`SessionConfig`, backend keywords of the same names) were chosen by measurement
on the CPU (docs/benchmarks.md, "ONNX Runtime session options"): graph optimisation level "all"
(NCHWc layouts and fusions), the default thread pools, sequential execution, memory arena and pattern
on, no spin-waiting of idle pool threads, and inputs and outputs bound with an I/O binding (ORT reads
the caller's array and writes into fresh numpy arrays, no copies).
"""

from __future__ import annotations

import dataclasses
import json
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


_OPENVINO = "OpenVINOExecutionProvider"
_OPENVINO_HINT = (
    "pip install onnxruntime-ep-openvino (the OpenVINO execution provider plugin for the installed "
    "onnxruntime; optional, not in the requirements)"
)
# OpenVINO's CPU plugin runs bf16 on AMX/AVX512-BF16 CPUs unless told otherwise: keep the fp32 results.
_OPENVINO_OPTIONS = {"load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "f32"}})}


def _openvino_plugin() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime_ep_openvino") is not None


def openvino_devices(ort: Any = None) -> list[Any]:
    """The OpenVINO plugin's CPU devices (``onnxruntime-ep-openvino``, registered once per process).

    Raises BackendUnavailable when the plugin is not installed or finds no CPU.
    """
    ort = ort or import_onnxruntime()
    try:
        import onnxruntime_ep_openvino as plugin
    except ImportError as e:
        raise BackendUnavailable(
            "backend 'onnxruntime' on device 'openvino' needs the OpenVINO execution provider: "
            + _OPENVINO_HINT
        ) from e
    if not hasattr(ort, "get_ep_devices"):
        raise BackendUnavailable(
            f"device 'openvino' needs onnxruntime >= 1.23 (plugin execution providers), got {ort.__version__}"
        )
    if not any(d.ep_name == _OPENVINO for d in ort.get_ep_devices()):
        ort.register_execution_provider_library(_OPENVINO, plugin.get_library_path())
    devices = [
        d
        for d in ort.get_ep_devices()
        if d.ep_name == _OPENVINO and d.device.type == ort.OrtHardwareDeviceType.CPU
    ]
    if not devices:
        raise BackendUnavailable("the OpenVINO execution provider plugin found no CPU device here")
    return devices


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
    """Execution providers for ``device`` ("cpu", "openvino", "cuda[:N]", "tensorrt[:N]") or the explicit
    ``providers``.

    "openvino" is the OpenVINO execution provider on the CPU in float32 (optional: the
    ``onnxruntime-ep-openvino`` plugin, or an ``onnxruntime-openvino`` build).
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
        elif kind == "openvino" and not index:
            if (
                _OPENVINO not in ort.get_available_providers()
            ):  # an onnxruntime-openvino build has it built in
                openvino_devices(ort)
            return [(_OPENVINO, dict(_OPENVINO_OPTIONS)), "CPUExecutionProvider"]
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
                f"backend 'onnxruntime' supports devices 'cpu', 'cuda[:N]', 'tensorrt[:N]' and 'openvino', "
                f"got '{device}'"
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


GRAPH_OPTIMIZATIONS = ("disabled", "basic", "extended", "layout", "all")
EXECUTION_MODES = ("sequential", "parallel")


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    """ONNX Runtime session options of :class:`OnnxRuntimeBackend` (the defaults are the measured best).

    ``graph_optimization``: one of :data:`GRAPH_OPTIMIZATIONS` ("layout" and "all" add the CPU's NCHWc
    layout; "all" also the fusions of "extended"). ``intra_op_threads`` / ``inter_op_threads``: 0 is ORT's
    default (one per core; inter-op only matters with ``execution_mode="parallel"``). ``memory_arena``,
    ``memory_pattern``: ORT's CPU arena and planned activation buffers. ``allow_spinning``: idle pool
    threads spin-wait for the next operator (fast on an idle machine, wasted cycles on a shared one).
    ``io_binding``: run with ``session.io_binding()`` on the caller's input arrays and fresh output arrays.
    """

    graph_optimization: str = "all"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    execution_mode: str = "sequential"
    memory_arena: bool = True
    memory_pattern: bool = True
    allow_spinning: bool = False
    io_binding: bool = True

    def __post_init__(self) -> None:
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise ValueError(
                f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATIONS)}, "
                f"got {self.graph_optimization!r}"
            )
        if self.execution_mode not in EXECUTION_MODES:
            raise ValueError(
                f"execution_mode must be one of {', '.join(EXECUTION_MODES)}, got {self.execution_mode!r}"
            )
        for name in ("intra_op_threads", "inter_op_threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0: one per core), got {v!r}")
        for name in ("memory_arena", "memory_pattern", "allow_spinning", "io_binding"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def session_options(self, ort: Any = None) -> Any:
        """The ``onnxruntime.SessionOptions`` these settings describe (warnings and info not logged)."""
        ort = ort or import_onnxruntime()
        levels = {
            "disabled": "ORT_DISABLE_ALL",
            "basic": "ORT_ENABLE_BASIC",
            "extended": "ORT_ENABLE_EXTENDED",
            "layout": "ORT_ENABLE_LAYOUT",
            "all": "ORT_ENABLE_ALL",
        }
        level = getattr(ort.GraphOptimizationLevel, levels[self.graph_optimization], None)
        if level is None:
            raise BackendUnavailable(
                f"graph_optimization {self.graph_optimization!r} needs a newer onnxruntime than "
                f"{ort.__version__}"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = self.inter_op_threads
        opts.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL
            if self.execution_mode == "parallel"
            else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        opts.enable_cpu_mem_arena = self.memory_arena
        opts.enable_mem_pattern = self.memory_pattern
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if self.allow_spinning else "0")
        opts.log_severity_level = 3
        return opts


class OnnxRuntimeBackend(Backend):
    """Runs a static-shape ONNX graph with ONNX Runtime; session options as :class:`SessionConfig`
    (its fields are keywords here; ``session`` gives them all at once, and the keywords override it).

    With one ``input_shape`` the graph must have exactly one input (any name); with ``{name: shape}``
    its inputs must be exactly those names, each float32 of that shape. ``precision`` "fp16" only with
    the TensorRT execution provider. ``self_check`` (default: with the TensorRT and OpenVINO providers)
    compares the session with ONNX Runtime CPU at start and raises EngineSelfCheckFailed outside tolerance.
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
        session: SessionConfig | None = None,
        **session_kw: Any,
    ) -> None:
        super().__init__(input_shape, output_names)
        unknown = sorted(set(session_kw) - {f.name for f in dataclasses.fields(SessionConfig)})
        if unknown:
            raise TypeError(f"OnnxRuntimeBackend got unexpected keyword arguments {', '.join(unknown)}")
        if intra_op_threads:
            session_kw.setdefault("intra_op_threads", intra_op_threads)
        self.config = dataclasses.replace(session or SessionConfig(), **session_kw)
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
        opts = self.config.session_options(ort)
        if _provider_name(requested[0]) == _OPENVINO and _openvino_plugin():
            # the plugin package: its devices go into the session options, ORT adds the CPU fallback
            opts.add_provider_for_devices(openvino_devices(ort), dict(requested[0][1]))
            self.session = ort.InferenceSession(os.fspath(self.onnx_path), opts)
        else:
            self.session = ort.InferenceSession(os.fspath(self.onnx_path), opts, providers=requested)
        # ORT silently falls back to CPU when a GPU provider fails to load (missing CUDA/cuDNN libraries).
        active = self.session.get_providers()
        if _provider_name(requested[0]) not in active:
            raise BackendUnavailable(
                f"backend 'onnxruntime': {_provider_name(requested[0])} is installed but failed to load "
                f"(active: {', '.join(active)}); "
                + (
                    f"check the onnxruntime-ep-openvino install against onnxruntime {ort.__version__}"
                    if _provider_name(requested[0]) == _OPENVINO
                    else f"check the CUDA/cuDNN libraries onnxruntime-gpu {ort.__version__} needs"
                )
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
        nodes = {o.name: o for o in self.session.get_outputs()}
        # static float outputs: bind fresh numpy arrays ORT writes into; else let ORT allocate, then copy
        self._out_shapes = {
            n: tuple(nodes[n].shape)
            if nodes[n].type == "tensor(float)" and all(isinstance(d, int) and d >= 0 for d in nodes[n].shape)
            else None
            for n in self.output_names
        }
        self.self_check_report = None
        if self_check is None:
            self_check = active[0] in ("TensorrtExecutionProvider", _OPENVINO)
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
        feed = {self._feed_names[n]: a for n, a in arrays.items()}
        if self.config.io_binding:
            return self._run_bound(feed)
        outputs = self.session.run(self._run_names, feed)
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outputs)}

    def _run_bound(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # One binding per call, so concurrent infer() calls never share one.
        binding = self.session.io_binding()
        for name, a in feed.items():
            binding.bind_cpu_input(name, a)
        out: dict[str, np.ndarray] = {}
        for name in self.output_names:
            shape = self._out_shapes[name]
            if shape is None:
                binding.bind_output(name, "cpu")
            else:
                out[name] = np.empty(shape, np.float32)
                binding.bind_output(name, "cpu", 0, np.float32, list(shape), out[name].ctypes.data)
        self.session.run_with_iobinding(binding)
        if len(out) < len(self.output_names):
            copied = dict(zip(self.output_names, binding.copy_outputs_to_cpu()))
            for name in self.output_names:
                out.setdefault(name, np.asarray(copied[name], dtype=np.float32))
        return out

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
            "session": ",".join(f"{k}={v}" for k, v in dataclasses.asdict(self.config).items()),
        }

    def close(self) -> None:
        self.session = None
