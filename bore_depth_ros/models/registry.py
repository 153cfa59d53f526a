"""Registry of depth networks: names, factories and the facts a pipeline needs about each model.

This module imports no torch, so preprocessing and non-PyTorch backends (ONNX Runtime, TensorRT) can
read a model's input contract (`get_model_info`, `check_input_size`) without it. Factories are
called only by `create_model`; the built-in ones import their torch modules lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_input_size(height: int, width: int, multiple: int = 32) -> None:
    """Raise ValueError unless height and width are positive multiples of `multiple`."""
    for axis, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"input {axis} must be an int, got {value!r}")
        if value <= 0 or value % multiple:
            raise ValueError(f"input {axis} {value} is not a multiple of {multiple}")


@dataclass(frozen=True)
class ModelInfo:
    """Static description of a registered model: I/O contract, normalisation and output range.

    `input_presets` maps a dataset/use name to the (height, width) the model was trained at;
    `checkpoint_prefix` is the prefix of the model's tensors inside a full training checkpoint.
    """

    name: str
    description: str = ""
    output_names: tuple[str, ...] = ("depth",)
    metric: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_presets: dict[str, tuple[int, int]] = field(default_factory=dict, hash=False)
    default_input_size: tuple[int, int] = (256, 320)
    input_multiple: int = 32
    num_cameras: int = 1
    min_depth: float = 0.0
    max_depth: float = float("inf")
    checkpoint_prefix: str = ""

    def __post_init__(self) -> None:
        # A private copy, so the caller's dict cannot change a registered ModelInfo afterwards.
        object.__setattr__(self, "input_presets", dict(self.input_presets))
        object.__setattr__(self, "output_names", tuple(self.output_names))
        check_input_size(*self.default_input_size, multiple=self.input_multiple)
        for preset in self.input_presets.values():
            check_input_size(*preset, multiple=self.input_multiple)

    def check_input_size(self, height: int, width: int) -> None:
        """`check_input_size` with this model's size multiple."""
        check_input_size(height, width, self.input_multiple)


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


def create_model(name: str, **kwargs: Any):
    """Build a fresh (randomly initialised) instance of the registered model `name`."""
    return _FACTORIES[_lookup(name)](**kwargs)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_FACTORIES)


def get_model_info(name: str) -> ModelInfo:
    """The ModelInfo registered for `name`."""
    return _INFOS[_lookup(name)]


def _build_bore_depth(**kwargs: Any):
    from .bore_depth import BoReDepthNet

    return BoReDepthNet(**kwargs)


BORE_DEPTH_MIN_DISPARITY = 0.01
BORE_DEPTH_MAX_DISPARITY = 10.01  # 10 * sigmoid + 0.01

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
