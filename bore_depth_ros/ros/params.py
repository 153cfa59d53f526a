"""Parameter declarations shared by the depth nodes (descriptions, ranges, read-only flags)."""
from __future__ import annotations

from dataclasses import fields

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from ..engine import EngineConfig
from ..core.view import ViewConfig

ENGINE_PARAMS = {
    "model": ("bore_depth", "registered model name (bore_depth, ...)"),
    "weights": ("", "checkpoint (.ckpt/.pt/.pth, official Lightning layout accepted) or .onnx; "
                    "empty = embedded default"),
    "backend": ("onnxruntime", "inference backend: torch | onnxruntime | tensorrt"),
    "device": ("cpu", "cpu, cuda, cuda:N"),
    "precision": ("fp32", "fp32 | fp16 (CUDA/TensorRT only)"),
    "input_preset": ("", "named input size of the model overriding input_height/width: "
                         "nyu (256x320), kitti (256x832); empty = use input_height/input_width"),
    "input_height": (0, "model input height, a multiple of 32; 0 = the size the weights were "
                        "trained at (embedded defaults record it), else the model's default"),
    "input_width": (0, "model input width, a multiple of 32; 0 = as input_height"),
    "cache_dir": ("", "where exported ONNX files are cached; empty = $BORE_DEPTH_CACHE or ~/.cache"),
    "force_engine_rebuild": (False, "tensorrt: rebuild the engine even if a cached one matches"),
    "engine_cache_dir": ("", "tensorrt engine cache; empty = $BORE_DEPTH_CACHE/engines (where "
                             "bore-depth prebuild puts them)"),
}

VIEW_PARAMS = {
    "confidence_threshold": (0.0, "depth pixels with confidence below this are published as NaN",
                             (0.0, 1.0)),
    "min_depth": (0.0, "metres; depth below is published as NaN (0 = off)", (0.0, 1e6)),
    "max_depth": (0.0, "metres; depth beyond is published as NaN (0 = off)", (0.0, 1e6)),
    "edge_sensitivity": (8.0, "confidence = exp(-edge_sensitivity * |grad log depth|)", (0.0, 1e4)),
    "scale_mode": ("fixed", "metric scale of relative models: fixed | ground_plane", None),
    "depth_scale": (1.0, "metres per model unit, for scale_mode fixed", (1e-9, 1e9)),
    "camera_height": (0.0, "camera height above the ground plane in metres, for scale_mode "
                           "ground_plane", (0.0, 1e3)),
}


def _descriptor(description: str, read_only: bool = False, rng=None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=read_only)
    if rng is not None:
        lo, hi = rng
        if isinstance(lo, int) and isinstance(hi, int):
            d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi))]
    return d


def declare_engine_params(node, default_model: str = "bore_depth", read_only: bool = True) -> None:
    """The engine parameters; managed nodes pass ``read_only=False`` and refuse changes unless
    unconfigured (the model is loaded on configure)."""
    for name, (default, desc) in ENGINE_PARAMS.items():
        if name == "model":
            default = default_model
        node.declare_parameter(name, default, _descriptor(desc, read_only=read_only))


def engine_config_from_params(node, batch: int = 1) -> EngineConfig:
    g = {name: node.get_parameter(name).value for name in ENGINE_PARAMS}
    height, width = int(g["input_height"]), int(g["input_width"])
    if g["input_preset"]:
        height, width = input_size_from_preset(g["model"], g["input_preset"])
    return EngineConfig(model=g["model"], weights=g["weights"], backend=g["backend"],
                        device=g["device"], precision=g["precision"], input_height=height,
                        input_width=width, batch=batch, cache_dir=g["cache_dir"] or None,
                        force_engine_rebuild=bool(g["force_engine_rebuild"]),
                        engine_cache_dir=g["engine_cache_dir"] or None)


def input_size_from_preset(model: str, preset: str) -> tuple[int, int]:
    from ..models import get_model_info

    presets = get_model_info(model).input_presets
    if preset not in presets:
        raise ValueError(f"unknown input_preset '{preset}' for model {model}; known: "
                         + ", ".join(f"{k} ({h}x{w})" for k, (h, w) in presets.items()))
    return presets[preset]


def declare_view_params(node) -> None:
    for name, (default, desc, rng) in VIEW_PARAMS.items():
        node.declare_parameter(name, default, _descriptor(desc, rng=rng))


def view_config_from_values(values: dict) -> ViewConfig:
    """ViewConfig from parameter values (0 for max_depth means no limit)."""
    names = {f.name for f in fields(ViewConfig)}
    kw = {k: v for k, v in values.items() if k in names}
    if kw.get("max_depth", 1.0) <= 0:
        kw["max_depth"] = float("inf")
    return ViewConfig(**kw)


def view_values(node) -> dict:
    return {name: node.get_parameter(name).value for name in VIEW_PARAMS}


def rejected(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


def accepted() -> SetParametersResult:
    return SetParametersResult(successful=True)
