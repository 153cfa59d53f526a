"""Registry of depth networks: names, factories and each model's `ModelInfo` (defined in `.info`).

This module imports no torch, so preprocessing and non-PyTorch backends (ONNX Runtime, TensorRT) can
read a model's input contract (`get_model_info`, `check_input_size`) without it. Factories are
called only by `create_model`; the built-in ones import their torch modules lazily, so the network
files never import the registry (they take their bounds from `.info`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .info import (
    BORE_DEPTH_MAX_DISPARITY,
    BORE_DEPTH_MIN_DISPARITY,
    SURROUND_CANONICAL_FOCAL,
    SURROUND_MAX_DEPTH,
    SURROUND_MIN_DEPTH,
    SURROUND_PRESETS,
    ModelInfo,
    ModelOption,
)

_FACTORIES: dict[str, Callable[..., Any]] = {}
_INFOS: dict[str, ModelInfo] = {}


def register_model(name: str, factory: Callable[..., Any], info: ModelInfo, *, replace: bool = False) -> None:
    """Register `factory(**kwargs) -> nn.Module` under `name`; `info.name` must equal `name`."""
    if info.name != name:
        raise ValueError(f"ModelInfo.name {info.name!r} does not match registered name {name!r}")
    if name in _FACTORIES and not replace:
        raise ValueError(f"model {name!r} is already registered")
    _FACTORIES[name] = factory
    _INFOS[name] = info


def _lookup(name: str) -> str:
    if name not in _FACTORIES:
        known = ", ".join(sorted(_FACTORIES)) or "none"
        raise KeyError(f"unknown model {name!r}; registered models: {known}")
    return name


def create_model(name: str, options: Mapping[str, Any] | None = None, **kwargs: Any):
    """Build a fresh (randomly initialised) instance of the registered model `name`.

    `options`: the model's architecture options by their config names (`ModelInfo.options`, e.g.
    ``{"bins": 48, "width": 32}`` for svr), validated (an unknown name is a one-line ValueError
    listing the known ones); `kwargs` go to the constructor as they are and may not set an
    argument that `options` also sets.
    """
    name = _lookup(name)
    if options:
        info = _INFOS[name]
        given = info.option_kwargs(options)
        given = {o.kwarg: given[o.kwarg] for o in info.options if o.name in options}
        both = sorted(set(given) & set(kwargs))
        if both:
            raise ValueError(f"create_model({name!r}): {both} given both as options and as arguments")
        kwargs = {**given, **kwargs}
    return _FACTORIES[name](**kwargs)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_FACTORIES)


def get_model_info(name: str) -> ModelInfo:
    """The ModelInfo registered for `name`."""
    return _INFOS[_lookup(name)]


def _build_bore_depth(**kwargs: Any):
    from .bore_depth import BoReDepthNet

    return BoReDepthNet(**kwargs)


register_model(
    "bore_depth",
    _build_bore_depth,
    ModelInfo(
        name="bore_depth",
        description="BoRe-Depth: MPViT-tiny encoder + EFAF decoder, monocular relative depth (8.7 M params)",
        output_names=("depth",),
        metric=False,
        input_presets={"nyu": (256, 320), "kitti": (256, 832)},
        default_input_size=(256, 320),
        min_depth=1.0 / BORE_DEPTH_MAX_DISPARITY,
        max_depth=1.0 / BORE_DEPTH_MIN_DISPARITY,
        checkpoint_prefix="depth_net.",
    ),
)


_POWERS_OF_TWO = (1, 2, 4, 8, 16)

BACKBONE_OPTION = ModelOption(
    "backbone", "backbone", "mpvit_tiny", "shared encoder", choices=("mpvit_tiny", "resnet18")
)
WIDTH_OPTION = ModelOption(
    "width",
    "width",
    64,
    "channels of the encoder's first stage; the other stages scale with it (MPViT-tiny "
    "64/96/176/216, ResNet-18 64/128/256/512 at 64)",
    minimum=8,
    maximum=256,
    multiple=8,
)
OUTPUT_STRIDE_OPTION = ModelOption(
    "output_stride",
    "output_stride",
    1,
    "the decoder stops at H/output_stride; depth and confidence are bilinearly upsampled",
    choices=_POWERS_OF_TWO,
)


def _build_svr(**kwargs: Any):
    from .svr import SVRStudent

    return SVRStudent(**kwargs)


def _build_semi_smd(**kwargs: Any):
    from .semi_smd import SemiSMDNet

    return SemiSMDNet(**kwargs)


register_model(
    "svr",
    _build_svr,
    ModelInfo(
        name="svr",
        description="SVR-style student (our design after Scale-Invariant and View-Relational KD, not the "
        "official model): MPViT-tiny encoder, EFAF decoder, 64 adaptive metric depth bins",
        output_names=("depth", "confidence"),
        input_names=("image", "focal"),
        metric=True,
        input_presets=SURROUND_PRESETS,
        default_input_size=(192, 320),
        num_cameras=0,
        min_depth=SURROUND_MIN_DEPTH,
        max_depth=SURROUND_MAX_DEPTH,
        canonical_focal=SURROUND_CANONICAL_FOCAL,
        options=(
            ModelOption("bins", "num_bins", 64, "adaptive metric depth bins", minimum=2, maximum=512),
            BACKBONE_OPTION,
            WIDTH_OPTION,
            OUTPUT_STRIDE_OPTION,
        ),
    ),
)

register_model(
    "semi_smd",
    _build_semi_smd,
    ModelInfo(
        name="semi_smd",
        description="Semi-SMD-style surround fusion model (our design after Semi-SMD, not the official "
        "model): MPViT-tiny encoder, ring/temporal attention on ray-encoded tokens, EFAF decoder",
        output_names=("depth", "confidence"),
        input_names=("image", "prev_image", "rays", "origins", "focal"),
        metric=True,
        input_presets=SURROUND_PRESETS,
        default_input_size=(192, 320),
        num_cameras=6,
        needs_previous_frame=True,
        min_depth=SURROUND_MIN_DEPTH,
        max_depth=SURROUND_MAX_DEPTH,
        canonical_focal=SURROUND_CANONICAL_FOCAL,
        ray_stride=32,
        options=(
            BACKBONE_OPTION,
            WIDTH_OPTION,
            OUTPUT_STRIDE_OPTION,
            ModelOption(
                "embed_dim", "embed_dim", 128, "fusion token width", minimum=8, maximum=1024, multiple=8
            ),
            ModelOption("blocks", "num_blocks", 2, "fusion blocks (ring reach)", minimum=1, maximum=8),
            ModelOption(
                "heads", "num_heads", 4, "attention heads (must divide embed_dim)", minimum=1, maximum=16
            ),
        ),
    ),
)
