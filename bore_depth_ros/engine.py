"""The depth engine: one model behind one backend, loaded once and shared by every view and node
of a process (the nodes, replay, training evaluation and benchmarks use it).

It sits outside ``core`` because it loads models and backends (torch, ONNX Runtime, TensorRT);
the per-view post-processing it feeds is ROS- and torch-free (:mod:`bore_depth_ros.core.view`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .core.camera import Intrinsics
from .core.preprocess import model_input

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
# fp16: CUDA (torch autocast, tensorrt, onnxruntime on device tensorrt); bf16: torch on a CPU with
# native bf16 (AVX512-BF16 or AMX), checked against fp32 when the backend starts (torch_backend)
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class EngineConfig:
    """What to load and how to run it; read-only for the lifetime of a node."""

    model: str = "bore_depth"
    weights: str = ""  # checkpoint (.ckpt/.pt/.pth) or .onnx; "" = the embedded default
    backend: str = "onnxruntime"  # torch | onnxruntime | tensorrt
    device: str = "cpu"
    precision: str = "fp32"  # one of PRECISIONS; which backend and device run which: check_precision
    input_height: int = 0  # 0: the size the weights were trained at, else the model default
    input_width: int = 0
    batch: int = 1  # views per inference call (fixed per deployment)
    threads: int = 0  # CPU threads of one inference (ONNX Runtime intra-op); 0 = the runtime's default
    compile: bool = False  # torch: torch.compile (inductor, frozen weights), compiled and checked at start
    cache_dir: str | None = None
    force_engine_rebuild: bool = False  # tensorrt: rebuild the engine even if a cached one matches
    engine_cache_dir: str | None = None  # tensorrt engine cache (default $BORE_DEPTH_CACHE/engines)


@dataclass
class EngineOutput:
    depth: np.ndarray  # [N, h, w] float32, model units (relative for bore_depth)
    confidence: np.ndarray | None  # [N, h, w] float32 in [0, 1] if the model predicts it
    infer_ms: float  # backend time of the whole batch
    preprocess_ms: float


def embedded_weights_path(model: str) -> Path | None:
    """Default weights shipped in bore_depth_ros/data for ``model``, if any."""
    for suffix in (".pt", ".ckpt"):
        p = DATA_DIR / f"{model}_default{suffix}"
        if p.is_file():
            return p
    return None


def weights_metadata(path: str | Path) -> dict:
    """The training metadata a checkpoint written by ``bore-depth train`` carries ({} otherwise)."""
    import json

    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable files are reported by the loader itself
        return {}
    meta = ckpt.get("bore_depth_ros") if isinstance(ckpt, dict) else None
    return json.loads(meta) if isinstance(meta, str) else {}


def _options_note(name: str, model) -> str:
    """`` (model_options a=1, b=2)`` for the options of ``model`` that differ from the model's
    defaults ("" when none do, or the model has no options)."""
    from .models import get_model_info

    values = model.model_options() if callable(getattr(model, "model_options", None)) else {}
    defaults = get_model_info(name).resolve_options()
    changed = [f"{k}={v}" for k, v in values.items() if k in defaults and defaults[k] != v]
    return f" (model_options {', '.join(changed)})" if changed else ""


def trained_input_size(config: EngineConfig) -> tuple[int, int] | None:
    """The input size the configured weights were trained at, when they record it (our
    checkpoints and the embedded defaults do; ONNX files are fixed-size anyway)."""
    weights = config.weights.strip()
    path = (
        weights
        if weights and not weights.endswith(".onnx")
        else (None if weights else embedded_weights_path(config.model))
    )
    trained = weights_metadata(path).get("input_size") if path else None
    return (int(trained[0]), int(trained[1])) if trained else None


def onnx_input_size(path: str) -> tuple[int, int] | None:
    """(height, width) of the ``image`` input of an ONNX file (None if it has none or is dynamic):
    read with ``onnx`` when installed, else from an ONNX Runtime session (the lean runtime)."""
    try:
        import onnx

        graph = onnx.load(path, load_external_data=False).graph
        dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}.get("image")
    except ImportError:
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        dims = next((i.shape for i in session.get_inputs() if i.name == "image"), None)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the backend that loads it
        return None
    if not dims or len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[2:]):
        return None
    return int(dims[2]), int(dims[3])


def resolve_input_size(config: EngineConfig) -> tuple[int, int]:
    """The model input size: as configured; for 0, an ONNX file's own input size, or the size the
    weights were trained at (our checkpoints record it), else the model's default."""
    from .models import get_model_info

    if config.input_height and config.input_width:
        return config.input_height, config.input_width
    weights = config.weights.strip()
    if weights.endswith(".onnx") and os.path.isfile(weights):
        fixed = onnx_input_size(weights)  # an exported graph has its size built in
        if fixed is not None:
            return config.input_height or fixed[0], config.input_width or fixed[1]
    trained = trained_input_size(config)
    h, w = trained if trained else get_model_info(config.model).default_input_size
    return config.input_height or int(h), config.input_width or int(w)


def input_size_warning(config: EngineConfig, input_hw: tuple[int, int]) -> str | None:
    """Why a forced input size may hurt: the weights were trained at another size (None if not)."""
    trained = trained_input_size(config)
    if trained is None or tuple(input_hw) == trained:
        return None
    return (
        f"input size {input_hw[0]}x{input_hw[1]} differs from the {trained[0]}x{trained[1]} the "
        f"weights were trained at: accuracy usually drops (without a size, {trained[0]}x{trained[1]} "
        "is used)"
    )


def _engine_options(config: EngineConfig) -> dict:
    """Backend options from the config: CPU threads (ONNX Runtime), compile (torch) and the TensorRT
    engine cache."""
    opts = {}
    if config.threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = the runtime's default), got {config.threads}")
    if config.backend == "onnxruntime" and config.threads:
        opts["intra_op_threads"] = config.threads
    if config.compile:
        if config.backend != "torch":
            raise ValueError(
                f"compile is an option of backend 'torch' (torch.compile); backend '{config.backend}' "
                "optimises its own graph: set compile to false or use backend 'torch'"
            )
        opts["compile"] = True
    if config.backend == "tensorrt":
        opts["force_rebuild"] = config.force_engine_rebuild
    if config.backend == "tensorrt" or config.device.startswith("tensorrt"):
        if config.engine_cache_dir:
            opts["engine_cache_dir"] = config.engine_cache_dir
    return opts


def check_precision(config: EngineConfig) -> None:
    """ValueError naming what runs ``config.precision`` when the configured backend and device
    cannot (before any model is loaded); the torch backend checks the CPU's bf16 support itself."""
    p, backend, device = config.precision, config.backend, config.device
    if p not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {p!r}")
    if p == "bf16" and (backend != "torch" or not device.startswith("cpu")):
        raise ValueError(
            f"precision 'bf16' runs on backend 'torch' with device 'cpu' (got backend '{backend}', "
            f"device '{device}'): use fp16 on CUDA, fp32 elsewhere"
        )


class DepthEngine:
    """A model loaded once behind a backend; thread-safe ``infer`` on batches of RGB images."""

    def __init__(self, config: EngineConfig):
        from .backends import create_backend
        from .models import check_input_size, get_model_info

        self.config = config
        self.info = get_model_info(config.model)
        if config.batch < 1:
            raise ValueError(f"batch must be >= 1, got {config.batch}")
        check_precision(config)
        self.input_hw = resolve_input_size(config)
        check_input_size(*self.input_hw)
        self.size_warning = input_size_warning(config, self.input_hw)
        if self.size_warning:
            log.warning(self.size_warning)
        shapes = self.info.input_shapes(config.batch, *self.input_hw)
        weights = config.weights.strip()
        model = None
        onnx_path = None
        if weights.endswith(".onnx"):
            if config.backend == "torch":
                raise ValueError(f"backend 'torch' needs a PyTorch checkpoint, not an ONNX file: {weights}")
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"ONNX file not found: {weights}")
            onnx_path = weights
            self.weights_source = weights
        else:
            model, self.weights_source = self._load_torch_model(config.model, weights)
        self.backend = create_backend(
            config.backend,
            model=model,
            model_name=config.model,
            onnx_path=onnx_path,
            input_shapes=shapes,
            output_names=self.info.output_names,
            device=config.device,
            precision=config.precision,
            cache_dir=config.cache_dir,
            **_engine_options(config),
        )
        self._mean = np.asarray(self.info.mean, np.float32)
        self._std = np.asarray(self.info.std, np.float32)
        self._inputs = {name: np.zeros(shp, np.float32) for name, shp in shapes.items()}
        self._batch = self._inputs["image"]
        self._has_prev = False
        self._lock = threading.Lock()
        self._warm_ms: float | None = None

    @staticmethod
    def _load_torch_model(name: str, weights: str):
        """(model in eval mode, weights source). A checkpoint is loaded into the network it was
        trained as: ``load_checkpoint`` rebuilds it with the architecture options the file records
        (``model_options`` of the training config; none given here); the source string names
        those that differ from the model's defaults."""
        import torch

        from .models import create_model, load_checkpoint

        if weights:
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"weights file not found: {weights}")
            model = load_checkpoint(weights, model_name=name)
            return model, weights + _options_note(name, model)
        default = embedded_weights_path(name)
        if default is not None:
            model = load_checkpoint(str(default), model_name=name)
            return model, f"embedded:{default.name}" + _options_note(name, model)
        # No trained default shipped for this model yet: a seeded initialisation keeps every run
        # reproducible, and the source string says plainly that the depth is not meaningful.
        torch.manual_seed(0)
        return create_model(name).eval(), "random-init (no trained default weights shipped)"

    def describe(self) -> dict[str, str]:
        d = {
            "model": self.config.model,
            "weights": self.weights_source,
            "input": f"{self.input_hw[0]}x{self.input_hw[1]}",
            "batch": str(self.config.batch),
        }
        d.update(self.backend.describe())
        return d

    def preprocess_into(self, i: int, rgb: np.ndarray) -> None:
        """The model input of ``rgb`` into batch slot i
        (:func:`~bore_depth_ros.core.preprocess.model_input`)."""
        model_input(rgb, self.input_hw, self._mean, self._std, out=self._batch[i])

    def infer(
        self,
        images: Sequence[np.ndarray],
        intrinsics: Sequence[Intrinsics] | None = None,
        extrinsics: Sequence | None = None,
    ) -> EngineOutput:
        """Run the model on up to ``batch`` RGB uint8 images (H, W, 3); one backend call.

        Models with geometry inputs need ``intrinsics`` (per image, at its own resolution) and,
        for ``rays``/``origins``, ``extrinsics`` (per image, the target-frame-from-optical
        Transform). Models that fuse views (``num_cameras`` > 1) need exactly ``batch`` images;
        an image may be None there: a masked view (a camera missing from the set) gets a neutral
        input (zeros after normalisation) and still needs its intrinsics and extrinsics.
        """
        n = len(images)
        if any(rgb is None for rgb in images) and self.info.num_cameras <= 1:
            raise ValueError(f"model {self.info.name} runs per view: masked (None) views are for rig models")
        if not 1 <= n <= self.config.batch:
            raise ValueError(f"engine batch is {self.config.batch}, got {n} images")
        if self.info.num_cameras > 1 and n != self.config.batch:
            raise ValueError(
                f"model {self.info.name} fuses whole rigs: give all {self.config.batch} views, got {n}"
            )
        with self._lock:
            t0 = time.perf_counter()
            if self._has_prev and "prev_image" in self._inputs:
                self._inputs["prev_image"][:] = self._batch
            for i, rgb in enumerate(images):
                if rgb is None:
                    self._batch[i] = 0.0  # masked view: the normalised mean colour
                else:
                    self.preprocess_into(i, rgb)
            if n < self.config.batch:
                self._batch[n:] = 0.0
            self._fill_geometry(n, intrinsics, extrinsics)
            if "prev_image" in self._inputs and not self._has_prev:
                self._inputs["prev_image"][:] = self._batch  # no previous frame yet: itself
            self._has_prev = True
            t1 = time.perf_counter()
            feed = self._inputs if len(self._inputs) > 1 else self._batch
            out = self.backend.infer(feed)
            t2 = time.perf_counter()
        depth = out["depth"][:n, 0]
        conf = out["confidence"][:n, 0] if "confidence" in out else None
        return EngineOutput(depth, conf, (t2 - t1) * 1e3, (t1 - t0) * 1e3)

    def warmup(self) -> float:
        """Run the backend once on a grey batch with plausible geometry (a ring of cameras) and
        check the output; return the time in ms. The first call pays for lazy allocations and
        kernel selection, so a node does it while configuring rather than on its first frame.
        Done once per engine (nodes sharing an engine warm it up once). Raises RuntimeError when
        the backend cannot run or returns non-finite depth."""
        if self._warm_ms is not None:
            return self._warm_ms
        from .core.transforms import Transform

        h, w = self.input_hw
        n = self.config.batch
        intr = [Intrinsics(w / 2.0, w / 2.0, (w - 1) / 2.0, (h - 1) / 2.0, w, h)] * n
        ext = []
        for k in range(n):
            yaw = 2 * np.pi * k / n
            c, s_ = np.cos(yaw), np.sin(yaw)
            # optical z forward along the yaw direction, x right, y down (REP 103 optical frame)
            r = np.array([[s_, 0.0, c], [-c, 0.0, s_], [0.0, -1.0, 0.0]])
            ext.append(Transform(r, np.array([c, s_, 1.5])))
        grey = np.full((h, w, 3), 128, np.uint8)
        t0 = time.perf_counter()
        try:
            out = self.infer([grey] * n, intrinsics=intr, extrinsics=ext)
        except Exception as e:  # noqa: BLE001 - reported as a configure failure
            raise RuntimeError(
                f"backend {self.config.backend} failed its first inference: {type(e).__name__}: {e}"
            ) from e
        finally:
            self.reset_temporal()
        if out.depth.shape[0] != n or not np.isfinite(out.depth).all():
            raise RuntimeError(
                f"backend {self.config.backend} returned depth of shape "
                f"{out.depth.shape} with non-finite values on a grey test batch"
            )
        self._warm_ms = (time.perf_counter() - t0) * 1e3
        return self._warm_ms

    def reset_temporal(self) -> None:
        """Forget the previous frame (the next call uses its own images as previous)."""
        with self._lock:
            self._has_prev = False

    def _fill_geometry(self, n: int, intrinsics, extrinsics) -> None:
        names = self._inputs.keys() - {"image", "prev_image"}
        if not names:
            return
        from .core.rays import focal_ratio, rig_inputs

        if intrinsics is None or len(intrinsics) != n:
            raise ValueError(
                f"model {self.info.name} needs the intrinsics of every view (inputs {sorted(names)})"
            )
        if names & {"rays", "origins"}:
            if extrinsics is None or len(extrinsics) != n or any(e is None for e in extrinsics):
                raise ValueError(f"model {self.info.name} needs every view's extrinsics")
            geo = rig_inputs(
                intrinsics, extrinsics, self.input_hw, self.info.canonical_focal, self.info.ray_stride
            )
            for k in names:
                self._inputs[k][:n] = geo[k]
        else:
            self._inputs["focal"][:n, 0] = [
                focal_ratio(k, self.input_hw, self.info.canonical_focal) for k in intrinsics
            ]
        for k in names:
            if n < self.config.batch:
                self._inputs[k][n:] = self._inputs[k][0]


class EnginePool:
    """Loaded engines by configuration: every node asking for the same model, weights, backend,
    input size and batch gets the same ``DepthEngine`` (one copy of the weights per process).
    Models that keep the previous frame (temporal state) are never shared between nodes."""

    def __init__(self):
        self._engines: dict[EngineConfig, DepthEngine] = {}
        self._private: list[DepthEngine] = []
        self._users: dict[int, int] = {}
        self._lock = threading.Lock()

    def get(self, config: EngineConfig) -> DepthEngine:
        with self._lock:
            engine = self._engines.get(config)
            if engine is None:
                engine = DepthEngine(config)
                if engine.info.needs_previous_frame:
                    self._private.append(engine)
                else:
                    self._engines[config] = engine
            self._users[id(engine)] = self._users.get(id(engine), 0) + 1
            return engine

    def release(self, engine: DepthEngine) -> None:
        """A node no longer uses ``engine`` (lifecycle cleanup); the last user frees it."""
        with self._lock:
            left = self._users.get(id(engine), 0) - 1
            if left > 0:
                self._users[id(engine)] = left
                return
            self._users.pop(id(engine), None)
            self._private = [e for e in self._private if e is not engine]
            for k in [k for k, e in self._engines.items() if e is engine]:
                del self._engines[k]

    def engines(self) -> list[DepthEngine]:
        return list(self._engines.values()) + self._private


def resolve_engine(engine: DepthEngine | EnginePool | None, config: EngineConfig) -> DepthEngine:
    """A node's engine: the one given, one from a shared pool, or a new one for ``config``."""
    if isinstance(engine, DepthEngine):
        return engine
    if isinstance(engine, EnginePool):
        return engine.get(config)
    return DepthEngine(config)
