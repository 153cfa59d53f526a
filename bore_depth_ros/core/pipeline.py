"""The depth pipeline shared by the ROS nodes, bag replay and benchmarks (no ROS imports).

``DepthEngine``: one model behind one backend, loaded once and shared by every view/node of a process.
``ViewProcessor``: per-view post-processing: confidence, metric scale, resize to the published
resolution, REP 117 invalid marking (NaN), summary statistics.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .camera import Intrinsics
from .confidence import edge_confidence
from .resize import resize_bilinear
from .scale import ScaleResult, make_scale_estimator

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class EngineConfig:
    """What to load and how to run it; read-only for the lifetime of a node."""

    model: str = "bore_depth"
    weights: str = ""            # checkpoint (.ckpt/.pt/.pth) or .onnx; "" = the embedded default
    backend: str = "onnxruntime"  # torch | onnxruntime | tensorrt
    device: str = "cpu"
    precision: str = "fp32"
    input_height: int = 0        # 0: the size the weights were trained at, else the model default
    input_width: int = 0
    batch: int = 1               # views per inference call (fixed per deployment)
    cache_dir: str | None = None
    force_engine_rebuild: bool = False   # tensorrt: rebuild the engine even if a cached one matches
    engine_cache_dir: str | None = None  # tensorrt engine cache (default $BORE_DEPTH_CACHE/engines)


@dataclass
class EngineOutput:
    depth: np.ndarray                 # [N, h, w] float32, model units (relative for bore_depth)
    confidence: np.ndarray | None     # [N, h, w] float32 in [0, 1] if the model predicts it
    infer_ms: float                   # backend time of the whole batch
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


def resolve_input_size(config: EngineConfig) -> tuple[int, int]:
    """The model input size: as configured; for 0, the size the weights were trained at (our
    checkpoints record it), else the model's default."""
    from ..models import get_model_info

    if config.input_height and config.input_width:
        return config.input_height, config.input_width
    weights = config.weights.strip()
    path = weights if weights and not weights.endswith(".onnx") else (
        None if weights else embedded_weights_path(config.model))
    trained = weights_metadata(path).get("input_size") if path else None
    h, w = trained if trained else get_model_info(config.model).default_input_size
    return config.input_height or int(h), config.input_width or int(w)


def _engine_options(config: EngineConfig) -> dict:
    """TensorRT engine-cache options, for the backends that build engines."""
    opts = {}
    if config.backend == "tensorrt":
        opts["force_rebuild"] = config.force_engine_rebuild
    if config.backend == "tensorrt" or config.device.startswith("tensorrt"):
        if config.engine_cache_dir:
            opts["engine_cache_dir"] = config.engine_cache_dir
    return opts


class DepthEngine:
    """A model loaded once behind a backend; thread-safe ``infer`` on batches of RGB images."""

    def __init__(self, config: EngineConfig):
        from ..backends import create_backend
        from ..models import check_input_size, get_model_info

        self.config = config
        self.info = get_model_info(config.model)
        if config.batch < 1:
            raise ValueError(f"batch must be >= 1, got {config.batch}")
        self.input_hw = resolve_input_size(config)
        check_input_size(*self.input_hw)
        shapes = self.info.input_shapes(config.batch, *self.input_hw)
        weights = config.weights.strip()
        model = None
        onnx_path = None
        if weights.endswith(".onnx"):
            if config.backend == "torch":
                raise ValueError("backend 'torch' needs a PyTorch checkpoint, not an ONNX file: "
                                 f"{weights}")
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"ONNX file not found: {weights}")
            onnx_path = weights
            self.weights_source = weights
        else:
            model, self.weights_source = self._load_torch_model(config.model, weights)
        self.backend = create_backend(
            config.backend, model=model, model_name=config.model, onnx_path=onnx_path,
            input_shapes=shapes, output_names=self.info.output_names, device=config.device,
            precision=config.precision, cache_dir=config.cache_dir, **_engine_options(config))
        self._mean = np.asarray(self.info.mean, np.float32)
        self._std = np.asarray(self.info.std, np.float32)
        self._inputs = {name: np.zeros(shp, np.float32) for name, shp in shapes.items()}
        self._batch = self._inputs["image"]
        self._has_prev = False
        self._lock = threading.Lock()
        self._warm_ms: float | None = None

    @staticmethod
    def _load_torch_model(name: str, weights: str):
        import torch

        from ..models import create_model, load_checkpoint

        if weights:
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"weights file not found: {weights}")
            return load_checkpoint(weights, model_name=name), weights
        default = embedded_weights_path(name)
        if default is not None:
            return load_checkpoint(str(default), model_name=name), f"embedded:{default.name}"
        # No trained default shipped for this model yet: a seeded initialisation keeps every run
        # reproducible, and the source string says plainly that the depth is not meaningful.
        torch.manual_seed(0)
        return create_model(name).eval(), "random-init (no trained default weights shipped)"

    def describe(self) -> dict[str, str]:
        d = {"model": self.config.model, "weights": self.weights_source,
             "input": f"{self.input_hw[0]}x{self.input_hw[1]}", "batch": str(self.config.batch)}
        d.update(self.backend.describe())
        return d

    def preprocess_into(self, i: int, rgb: np.ndarray) -> None:
        """Resize (bilinear, no crop, no aspect preservation) and normalise into batch slot i."""
        h, w = self.input_hw
        x = resize_bilinear(rgb, h, w) if rgb.shape[:2] != (h, w) else rgb.astype(np.float32)
        x *= 1.0 / 255.0
        x -= self._mean
        x /= self._std
        self._batch[i] = x.transpose(2, 0, 1)

    def infer(self, images: Sequence[np.ndarray], intrinsics: Sequence[Intrinsics] | None = None,
              extrinsics: Sequence | None = None) -> EngineOutput:
        """Run the model on up to ``batch`` RGB uint8 images (H, W, 3); one backend call.

        Models with geometry inputs need ``intrinsics`` (per image, at its own resolution) and,
        for ``rays``/``origins``, ``extrinsics`` (per image, the target-frame-from-optical
        Transform). Models that fuse views (``num_cameras`` > 1) need exactly ``batch`` images.
        """
        n = len(images)
        if not 1 <= n <= self.config.batch:
            raise ValueError(f"engine batch is {self.config.batch}, got {n} images")
        if self.info.num_cameras > 1 and n != self.config.batch:
            raise ValueError(f"model {self.info.name} fuses whole rigs: give all "
                             f"{self.config.batch} views, got {n}")
        with self._lock:
            t0 = time.perf_counter()
            if self._has_prev and "prev_image" in self._inputs:
                self._inputs["prev_image"][:] = self._batch
            for i, rgb in enumerate(images):
                self.preprocess_into(i, rgb)
            if n < self.config.batch:
                self._batch[n:] = 0.0
            self._fill_geometry(n, intrinsics, extrinsics)
            if "prev_image" in self._inputs and not self._has_prev:
                self._inputs["prev_image"][:] = self._batch   # no previous frame yet: itself
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
        from .transforms import Transform

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
            raise RuntimeError(f"backend {self.config.backend} failed its first inference: "
                               f"{type(e).__name__}: {e}") from e
        finally:
            self.reset_temporal()
        if out.depth.shape[0] != n or not np.isfinite(out.depth).all():
            raise RuntimeError(f"backend {self.config.backend} returned depth of shape "
                               f"{out.depth.shape} with non-finite values on a grey test batch")
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
        from .rays import focal_ratio, rig_inputs

        if intrinsics is None or len(intrinsics) != n:
            raise ValueError(f"model {self.info.name} needs the intrinsics of every view "
                             f"(inputs {sorted(names)})")
        if names & {"rays", "origins"}:
            if extrinsics is None or len(extrinsics) != n or any(e is None for e in extrinsics):
                raise ValueError(f"model {self.info.name} needs every view's extrinsics")
            geo = rig_inputs(intrinsics, extrinsics, self.input_hw, self.info.canonical_focal,
                             self.info.ray_stride)
            for k in names:
                self._inputs[k][:n] = geo[k]
        else:
            self._inputs["focal"][:n, 0] = [focal_ratio(k, self.input_hw, self.info.canonical_focal)
                                            for k in intrinsics]
        for k in names:
            if n < self.config.batch:
                self._inputs[k][n:] = self._inputs[k][0]


@dataclass
class ViewConfig:
    """Per-view post-processing parameters (may change at run time)."""

    confidence_threshold: float = 0.0   # depth below this confidence becomes NaN
    min_depth: float = 0.0              # metres; outside [min_depth, max_depth] becomes NaN
    max_depth: float = math.inf
    edge_sensitivity: float = 8.0
    scale_mode: str = "fixed"           # fixed | ground_plane | metric
    depth_scale: float = 1.0            # for scale_mode fixed
    camera_height: float = 0.0          # metres above the ground, for scale_mode ground_plane


@dataclass
class ViewResult:
    depth: np.ndarray          # (H, W) float32 metres, NaN invalid
    confidence: np.ndarray     # (H, W) float32 in [0, 1]
    scale: ScaleResult
    valid_fraction: float
    mean_confidence: float
    min_depth: float
    median_depth: float
    max_depth: float
    stats_ms: dict[str, float] = field(default_factory=dict)


def make_view_scale(config: ViewConfig, model_is_metric: bool):
    """The scale estimator a view uses, from its config and the model's nature."""
    if model_is_metric and config.scale_mode != "fixed":
        return make_scale_estimator("metric")
    if config.scale_mode == "fixed":
        return make_scale_estimator("fixed", scale=config.depth_scale)
    if config.scale_mode == "ground_plane":
        if not config.camera_height > 0:
            raise ValueError("scale_mode 'ground_plane' needs camera_height > 0 (metres above the "
                             f"ground), got {config.camera_height}")
        return make_scale_estimator("ground_plane", camera_height=config.camera_height)
    return make_scale_estimator(config.scale_mode)


class ViewProcessor:
    """Turns one view's model output into published depth and confidence."""

    def __init__(self, config: ViewConfig, model_is_metric: bool,
                 saturation_bounds: tuple[float, float] | None = None):
        self.model_is_metric = model_is_metric
        self.saturation_bounds = saturation_bounds
        self._pending_lock = threading.Lock()
        self._pending = None
        self._reset_pending = False
        self.config = config
        self.scale_estimator = make_view_scale(config, model_is_metric)

    def configure(self, config: ViewConfig) -> None:
        """Validate ``config`` now (ValueError); it takes effect at the next ``process`` call,
        so a node may reconfigure from its executor thread while a worker thread processes."""
        estimator = make_view_scale(config, self.model_is_metric)
        with self._pending_lock:
            self._pending = (config, estimator)

    def reset(self) -> None:
        """Forget temporal state (scale smoothing), e.g. when a bag restarts; like ``configure``
        it takes effect at the next ``process`` call."""
        self._reset_pending = True

    def _apply_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.config, self.scale_estimator = pending
        if self._reset_pending:
            self._reset_pending = False
            reset = getattr(self.scale_estimator, "reset", None)
            if reset is not None:
                reset()

    def process(self, depth_model: np.ndarray, conf_model: np.ndarray | None,
                out_intr: Intrinsics) -> ViewResult:
        self._apply_pending()
        cfg = self.config
        t0 = time.perf_counter()
        h, w = depth_model.shape
        if conf_model is None:
            conf_model = edge_confidence(depth_model, cfg.edge_sensitivity, self.saturation_bounds)
        scale = self.scale_estimator.update(depth_model, out_intr.scaled_to(w, h))
        t1 = time.perf_counter()
        H, W = out_intr.height, out_intr.width
        if (H, W) != (h, w):
            depth = resize_bilinear(depth_model, H, W)
            conf = resize_bilinear(conf_model, H, W)
        else:
            depth = depth_model.astype(np.float32, copy=True)
            conf = conf_model.astype(np.float32, copy=True)
        np.clip(conf, 0.0, 1.0, out=conf)
        depth *= np.float32(scale.scale)
        invalid = ~np.isfinite(depth)
        invalid |= conf < cfg.confidence_threshold
        if cfg.min_depth > 0:
            invalid |= depth < cfg.min_depth
        if math.isfinite(cfg.max_depth):
            invalid |= depth > cfg.max_depth
        depth[invalid] = np.nan
        t2 = time.perf_counter()
        valid = depth[~invalid]
        n = depth.size
        if valid.size:
            dmin, dmed, dmax = (float(valid.min()), float(np.median(valid)), float(valid.max()))
        else:
            dmin = dmed = dmax = float("nan")
        t3 = time.perf_counter()
        return ViewResult(depth, conf, scale, valid.size / n, float(conf.mean()), dmin, dmed, dmax,
                          {"scale_ms": (t1 - t0) * 1e3, "resize_mask_ms": (t2 - t1) * 1e3,
                           "summary_ms": (t3 - t2) * 1e3})


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


def resolve_engine(engine: "DepthEngine | EnginePool | None", config: EngineConfig) -> DepthEngine:
    """A node's engine: the one given, one from a shared pool, or a new one for ``config``."""
    if isinstance(engine, DepthEngine):
        return engine
    if isinstance(engine, EnginePool):
        return engine.get(config)
    return DepthEngine(config)
