"""What a pipeline needs to know about a model, and the output ranges the networks are built with.

A leaf module (no torch, nothing else from the package): :class:`ModelInfo`, the input-size rule,
the ImageNet normalisation and the depth/disparity bounds. The registry (which models exist) and
the network files (which need the bounds in their output heads) both import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_input_size(height: int, width: int, multiple: int = 32) -> None:
    """Raise ValueError unless height and width are positive multiples of `multiple`."""
    for axis, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"input {axis} must be an int, got {value!r}")
        if value <= 0 or value % multiple:
            raise ValueError(f"input {axis} {value} is not a multiple of {multiple}")


# Shape rule of every input name a registered model may declare, for `ModelInfo.input_shapes`:
# n = views per call (B*N), (h, w) = model input size, s = `ModelInfo.ray_stride`.
INPUT_SHAPE_RULES: dict[str, str] = {
    "image": "[n, 3, h, w] ImageNet-normalised RGB of the current frame",
    "prev_image": "[n, 3, h, w] the same cameras one frame earlier (the current images if there is none)",
    "rays": (
        "[n, 3, h/s, w/s] unit viewing rays in base_link through each token cell (core.rays.viewing_rays)"
    ),
    "origins": "[n, 3] camera position in base_link, metres",
    "focal": "[n, 1] fx at the model input size / canonical_focal",
}


@dataclass(frozen=True)
class ModelOption:
    """One architecture setting a training YAML may choose (``model_options: {name: value}``).

    ``kwarg`` is the constructor argument it sets; ``default`` its value when not given (the
    constructor's default, so a file without options rebuilds the default network). A value must
    have the default's type (int or str) and lie in ``choices`` (when given) or in
    [``minimum``, ``maximum``] and be a multiple of ``multiple``.
    """

    name: str
    kwarg: str
    default: Any
    doc: str = ""
    choices: tuple = ()
    minimum: int | None = None
    maximum: int | None = None
    multiple: int = 1

    def check(self, value: Any, model: str) -> Any:
        """``value`` if valid for this option, else ValueError (one line naming the option)."""
        kind = type(self.default)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"model_options.{self.name} of {model} must be {kind.__name__}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ValueError(
                f"model_options.{self.name} of {model} must be one of "
                f"{', '.join(map(str, self.choices))}, got {value!r}"
            )
        low = self.minimum is not None and value < self.minimum
        high = self.maximum is not None and value > self.maximum
        if low or high or (kind is int and value % self.multiple):
            bounds = f"{self.minimum}..{self.maximum}" + (
                f", a multiple of {self.multiple}" if self.multiple > 1 else ""
            )
            raise ValueError(f"model_options.{self.name} of {model} must be in {bounds}, got {value!r}")
        return value


@dataclass(frozen=True)
class ModelInfo:
    """Static description of a registered model: I/O contract, normalisation and output range.

    `input_presets` maps a dataset/use name to the (height, width) the model was trained at;
    `checkpoint_prefix` is the prefix of the model's tensors inside a full training checkpoint.
    `input_names` are the forward arguments in order (see INPUT_SHAPE_RULES and `input_shapes`).
    `num_cameras`: views per rig the model needs in one batch, ring-ordered (sim.rig.RING_ORDER);
    0 means any number (views are processed independently). `needs_previous_frame`: the model
    takes the previous frame ("prev_image"). `canonical_focal` (pixels at the model input size,
    0 = none): metric models predict depth for this focal and scale it by the "focal" input.
    `min_depth`/`max_depth` are the output bounds at focal = 1 (multiply by "focal" otherwise).
    `options`: the architecture settings a training config may choose (`model_options`), recorded
    in the weights file so the same network is rebuilt from the file alone (`resolve_options`).
    """

    name: str
    description: str = ""
    output_names: tuple[str, ...] = ("depth",)
    input_names: tuple[str, ...] = ("image",)
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
    needs_previous_frame: bool = False
    canonical_focal: float = 0.0
    ray_stride: int = 32
    options: tuple[ModelOption, ...] = ()

    def __post_init__(self) -> None:
        # A private copy, so the caller's dict cannot change a registered ModelInfo afterwards.
        object.__setattr__(self, "input_presets", dict(self.input_presets))
        object.__setattr__(self, "output_names", tuple(self.output_names))
        object.__setattr__(self, "input_names", tuple(self.input_names))
        object.__setattr__(self, "options", tuple(self.options))
        if len({o.name for o in self.options}) != len(self.options):
            raise ValueError(f"model {self.name!r}: option names must be unique")
        if (
            not self.input_names
            or len(set(self.input_names)) != len(self.input_names)
            or not all(isinstance(n, str) and n for n in self.input_names)
        ):
            raise ValueError(f"input_names must be non-empty unique strings, got {self.input_names!r}")
        if self.num_cameras < 0:
            raise ValueError(f"num_cameras must be >= 0 (0 = any), got {self.num_cameras}")
        check_input_size(*self.default_input_size, multiple=self.input_multiple)
        for preset in self.input_presets.values():
            check_input_size(*preset, multiple=self.input_multiple)

    def check_input_size(self, height: int, width: int) -> None:
        """`check_input_size` with this model's size multiple."""
        check_input_size(height, width, self.input_multiple)

    def resolve_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option of this model with its value: ``options`` (validated) over the defaults.

        An unknown name is a one-line ValueError listing the known ones (a model without options
        accepts only an empty mapping)."""
        options = dict(options or {})
        known = {o.name: o for o in self.options}
        unknown = sorted(set(options) - set(known), key=str)
        if unknown:
            listed = ", ".join(sorted(known)) or "none (this model has no options)"
            raise ValueError(f"unknown model_options {unknown} for model {self.name}; known: {listed}")
        return {n: o.check(options[n], self.name) if n in options else o.default for n, o in known.items()}

    def option_kwargs(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Constructor keyword arguments of ``options`` (validated, defaults filled in)."""
        resolved = self.resolve_options(options)
        return {o.kwarg: resolved[o.name] for o in self.options}

    def input_shapes(self, num_views: int, height: int, width: int) -> dict[str, tuple[int, ...]]:
        """Static shape of every input, in `input_names` order, for `num_views` views at height x width.

        `num_views` is B*N; it must be a multiple of `num_cameras` when that is > 0. Names without
        a rule in INPUT_SHAPE_RULES raise ValueError (such models state their shapes themselves).
        """
        self.check_input_size(height, width)
        if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f"num_views must be a positive int, got {num_views!r}")
        if self.num_cameras and num_views % self.num_cameras:
            raise ValueError(
                f"model {self.name!r} takes whole rigs of {self.num_cameras} views; got {num_views} views"
            )
        if "rays" in self.input_names:
            check_input_size(height, width, self.ray_stride)
        image = (num_views, 3, height, width)
        rule = {
            "image": image,
            "prev_image": image,
            "origins": (num_views, 3),
            "focal": (num_views, 1),
            "rays": (num_views, 3, height // self.ray_stride, width // self.ray_stride),
        }
        unknown = [n for n in self.input_names if n not in rule]
        if unknown:
            raise ValueError(f"no shape rule for input(s) {unknown} of model {self.name!r}")
        return {n: rule[n] for n in self.input_names}


# Output ranges of the built-in networks (their heads clamp to them; ModelInfo.min/max_depth report them).
BORE_DEPTH_MIN_DISPARITY = 0.01
BORE_DEPTH_MAX_DISPARITY = 10.01  # 10 * sigmoid + 0.01

SURROUND_PRESETS = {"ddad": (384, 640), "nuscenes": (352, 640), "small": (192, 320)}
SURROUND_MIN_DEPTH = 0.5  # metres at focal = 1 (the canonical focal)
SURROUND_MAX_DEPTH = 200.0  # the DDAD evaluation range; wide cameras (small focal) still reach far
SURROUND_CANONICAL_FOCAL = 250.0  # pixels at the model input size
