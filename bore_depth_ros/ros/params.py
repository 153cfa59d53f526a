"""The depth nodes' parameters, declared once: one table per node of name, default, range or
choices, description and when it may change. Declaration (descriptors for ``ros2 param
describe``), the checks on configure (values from YAML files) and the checks of run-time
``ros2 param set`` all derive from these tables.

When a parameter may change:
- ``RUNTIME``: any time; the node applies it to the next frame.
- ``UNCONFIGURED``: engine parameters; accepted only while the node is unconfigured (the model is
  loaded on configure), so an operator can fix a path and configure again.
- ``STARTUP``: read-only for the node's life (topics, queue sizes, timers are made from it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from ..core.errors import DEFAULT_MAX_INPUT_PIXELS
from ..core.view import ViewConfig
from ..engine import PRECISIONS, EngineConfig

RUNTIME, UNCONFIGURED, STARTUP = "runtime", "unconfigured", "startup"
DEFAULT_CAMERAS = ["front", "front_left", "back_left", "back", "back_right", "front_right"]


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    change: str = RUNTIME
    lo: float | None = None  # inclusive lower bound (exclusive with lo_open)
    hi: float | None = None  # inclusive upper bound
    lo_open: bool = False
    in_descriptor: bool = False  # also enforce the range through the rclpy descriptor
    choices: tuple = ()  # the allowed values, when they are a fixed set

    def check(self, value) -> str | None:
        """Why ``value`` cannot be used, or None."""
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None and not lo <= value <= hi:
            return f"{self.name} must be in [{lo:g}, {hi:g}], got {value}"
        if lo is not None and hi is None:
            if self.lo_open and not value > lo:
                return f"{self.name} must be > {lo:g}, got {value}"
            if not self.lo_open and not value >= lo:
                return f"{self.name} must be >= {lo:g}, got {value}"
        return None

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(description=self.description, read_only=self.change == STARTUP)
        if self.in_descriptor and self.lo is not None and self.hi is not None:
            if isinstance(self.default, int) and not isinstance(self.default, bool):
                d.integer_range = [IntegerRange(from_value=int(self.lo), to_value=int(self.hi), step=1)]
            else:
                d.floating_point_range = [
                    FloatingPointRange(from_value=float(self.lo), to_value=float(self.hi))
                ]
        return d


def _table(*params: Param) -> dict[str, Param]:
    return {p.name: p for p in params}


ENGINE = _table(
    Param("model", "bore_depth", "registered model name (bore_depth, svr, semi_smd)", UNCONFIGURED),
    Param(
        "weights",
        "",
        "checkpoint (.ckpt/.pt/.pth, official Lightning layout accepted) or .onnx; empty = embedded default",
        UNCONFIGURED,
    ),
    Param("backend", "onnxruntime", "inference backend: torch | onnxruntime | tensorrt", UNCONFIGURED),
    Param("device", "cpu", "cpu, cuda, cuda:N", UNCONFIGURED),
    Param(
        "precision",
        "fp32",
        "fp32 | fp16 (CUDA: torch, tensorrt, onnxruntime on device tensorrt) | bf16 (backend torch "
        "on a CPU with native bf16, AVX512-BF16 or AMX; checked against fp32 at start)",
        UNCONFIGURED,
        choices=PRECISIONS,
    ),
    Param(
        "compile",
        False,
        "backend torch: torch.compile (inductor, frozen weights) at configure, checked against eager; "
        "minutes on a small CPU the first time (kernels cached under $BORE_DEPTH_CACHE/inductor)",
        UNCONFIGURED,
    ),
    Param(
        "input_preset",
        "",
        "named input size of the model overriding input_height/width: nyu "
        "(256x320), kitti (256x832); empty = use input_height/input_width",
        UNCONFIGURED,
    ),
    Param(
        "input_height",
        0,
        "model input height, a multiple of 32; 0 = the size the weights were "
        "trained at (embedded defaults record it), else the model's default",
        UNCONFIGURED,
        lo=0,
    ),
    Param("input_width", 0, "model input width, a multiple of 32; 0 = as input_height", UNCONFIGURED, lo=0),
    Param(
        "cache_dir",
        "",
        "where exported ONNX files are cached; empty = $BORE_DEPTH_CACHE or ~/.cache",
        UNCONFIGURED,
    ),
    Param(
        "force_engine_rebuild",
        False,
        "tensorrt: rebuild the engine even if a cached one matches",
        UNCONFIGURED,
    ),
    Param(
        "engine_cache_dir",
        "",
        "tensorrt engine cache; empty = $BORE_DEPTH_CACHE/engines (where bore-depth prebuild puts them)",
        UNCONFIGURED,
    ),
)

VIEW = _table(
    Param(
        "confidence_threshold",
        0.0,
        "depth pixels with confidence below this are published as NaN",
        lo=0.0,
        hi=1.0,
        in_descriptor=True,
    ),
    Param(
        "min_depth",
        0.0,
        "metres; depth below is published as NaN (0 = off)",
        lo=0.0,
        hi=1e6,
        in_descriptor=True,
    ),
    Param(
        "max_depth",
        0.0,
        "metres; depth beyond is published as NaN (0 = off)",
        lo=0.0,
        hi=1e6,
        in_descriptor=True,
    ),
    Param(
        "edge_sensitivity",
        8.0,
        "confidence = exp(-edge_sensitivity * |grad log depth|)",
        lo=0.0,
        hi=1e4,
        in_descriptor=True,
    ),
    Param("scale_mode", "fixed", "metric scale of relative models: fixed | ground_plane"),
    Param(
        "depth_scale", 1.0, "metres per model unit, for scale_mode fixed", lo=1e-9, hi=1e9, in_descriptor=True
    ),
    Param(
        "camera_height",
        0.0,
        "camera height above the ground plane in metres, for scale_mode ground_plane",
        lo=0.0,
        hi=1e3,
        in_descriptor=True,
    ),
    Param(
        "scale_smoothing",
        0.3,
        "scale_mode ground_plane: weight of each new frame's scale in the running estimate "
        "(1 = no smoothing; eval's temporal stability judges it)",
        lo=0.0,
        hi=1.0,
        lo_open=True,
    ),
)

NODE = _table(
    Param(
        "autostart",
        True,
        "configure and activate at start; false: wait for a lifecycle manager (~/change_state)",
        STARTUP,
    ),
    Param(
        "lazy",
        False,
        "skip inference while nobody subscribes to any output (frames are "
        "counted as skipped.no_subscribers; /diagnostics says so), and build no point cloud "
        "nobody subscribes to (counted as not_built_lazy.*)",
    ),
    Param(
        "max_input_pixels",
        DEFAULT_MAX_INPUT_PIXELS,
        "images with more pixels are rejected (image_too_large)",
        lo=1,
    ),
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages", STARTUP, lo=0.0, lo_open=True),
    Param(
        "diagnostics_window",
        10.0,
        "seconds: /diagnostics levels follow what happened within this recent window (rejections, "
        "drops, overload); the totals stay in the values",
        STARTUP,
        lo=0.0,
        lo_open=True,
    ),
    Param(
        "image_transport",
        "raw",
        "raw: subscribe the image topic (sensor_msgs/Image); compressed: subscribe <image topic>/compressed "
        "(sensor_msgs/CompressedImage, JPEG or PNG), as image_transport names it",
        STARTUP,
        choices=("raw", "compressed"),
    ),
    Param(
        "camera_timeout",
        0.0,
        "seconds without an image before a camera counts as silent (/diagnostics; the surround node "
        "then forms sets from the other cameras); 0 = automatic, 3 frame periods (at least 0.2 s)",
        lo=0.0,
    ),
)

_DECIMATION = dict(lo=1, hi=64)

MONO = _table(
    *ENGINE.values(),
    *VIEW.values(),
    *NODE.values(),
    Param("output_width", 0, "published depth width; 0 = input image width", STARTUP, lo=0),
    Param("output_height", 0, "published depth height; 0 = input image height", STARTUP, lo=0),
    Param("points_decimation", 1, "publish every n-th pixel (rows and columns) in points", **_DECIMATION),
    Param("points_rgb", True, "add the packed rgb field to points"),
    Param("publish_points", True, "publish the organized point cloud"),
    Param(
        "queue_size",
        5,
        "input subscription depth (callbacks only hand frames to the worker, which takes the newest)",
        STARTUP,
        lo=1,
    ),
)

SURROUND = _table(
    *ENGINE.values(),
    *VIEW.values(),
    *NODE.values(),
    Param(
        "cameras",
        DEFAULT_CAMERAS,
        "camera names in ring order; topics <name>/image and <name>/camera_info",
        STARTUP,
    ),
    Param("target_frame", "base_link", "frame of the fused cloud (REP 105 body frame)", STARTUP),
    Param("slop", 0.03, "seconds: largest stamp spread of one synchronized set", STARTUP, lo=0.0),
    Param("queue_size", 5, "per-camera synchroniser queue (newest frames win)", STARTUP, lo=1),
    Param("points_decimation", 4, "per-view clouds: every n-th pixel", **_DECIMATION),
    Param("points_rgb", True, "per-view clouds: add rgb"),
    Param("publish_points", True, "publish the per-view clouds"),
    Param("fused_decimation", 4, "fused cloud: every n-th pixel of each view", **_DECIMATION),
    Param("fused_min_range", 0.3, "fused cloud: metres from target_frame's origin", lo=0.0),
    Param("fused_max_range", 80.0, "fused cloud: metres from target_frame's origin", lo=0.0),
    Param("fused_rgb", True, "fused cloud: add rgb"),
    Param("consistency_decimation", 8, "overlap check: every n-th pixel", **_DECIMATION),
)


# ---------------------------------------------------------------------------- checks
def check_values(table: dict[str, Param], values: dict) -> None:
    """Raise ValueError naming the first value of ``values`` (name -> value, a full set) that
    cannot work: each parameter's own range, then the checks across parameters."""
    for name, value in values.items():
        p = table.get(name)
        err = p.check(value) if p is not None else None
        if err:
            raise ValueError(err)
    if {"fused_min_range", "fused_max_range"} <= values.keys() and not values["fused_min_range"] < values[
        "fused_max_range"
    ]:
        raise ValueError("need 0 <= fused_min_range < fused_max_range")
    view_config_from_values(values)


def view_config_from_values(values: dict) -> ViewConfig:
    """ViewConfig from parameter values (0 for max_depth means no limit); ValueError if they
    contradict each other."""
    names = {f.name for f in fields(ViewConfig)}
    kw = {k: v for k, v in values.items() if k in names}
    if kw.get("max_depth", 1.0) <= 0:
        kw["max_depth"] = float("inf")
    if kw.get("min_depth", 0.0) > kw.get("max_depth", float("inf")):
        raise ValueError(
            f"min_depth {kw['min_depth']} > max_depth {kw['max_depth']}: every pixel would be invalid"
        )
    return ViewConfig(**kw)


# ---------------------------------------------------------------------------- rclpy side
def declare(node, table: dict[str, Param], defaults: dict | None = None) -> None:
    """Declare every parameter of ``table`` on ``node`` (``defaults`` overrides table defaults,
    e.g. the model of a node class)."""
    defaults = defaults or {}
    for p in table.values():
        node.declare_parameter(p.name, defaults.get(p.name, p.default), p.descriptor())


def values_of(node, table: dict[str, Param]) -> dict:
    return {name: node.get_parameter(name).value for name in table}


def engine_config_from_values(values: dict, batch: int = 1) -> EngineConfig:
    height, width = int(values["input_height"]), int(values["input_width"])
    if values["input_preset"]:
        height, width = input_size_from_preset(values["model"], values["input_preset"])
    return EngineConfig(
        model=values["model"],
        weights=values["weights"],
        backend=values["backend"],
        device=values["device"],
        precision=values["precision"],
        compile=bool(values["compile"]),
        input_height=height,
        input_width=width,
        batch=batch,
        cache_dir=values["cache_dir"] or None,
        force_engine_rebuild=bool(values["force_engine_rebuild"]),
        engine_cache_dir=values["engine_cache_dir"] or None,
    )


def input_size_from_preset(model: str, preset: str) -> tuple[int, int]:
    from ..models import get_model_info

    presets = get_model_info(model).input_presets
    if preset not in presets:
        raise ValueError(
            f"unknown input_preset '{preset}' for model {model}; known: "
            + ", ".join(f"{k} ({h}x{w})" for k, (h, w) in presets.items())
        )
    return presets[preset]


def rejected(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


def accepted() -> SetParametersResult:
    return SetParametersResult(successful=True)
