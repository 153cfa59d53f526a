"""Common interface of the inference backends (PyTorch, ONNX Runtime, TensorRT).

A deployment has static input shapes: either one ``(N, 3, H, W)`` shape (single-input models such as
BoRe-Depth; ``infer`` takes the array) or a mapping ``{input name: shape}`` in the model's forward
argument order (multi-input models such as ``svr`` and ``semi_smd``; ``infer`` takes a dict).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import numpy as np

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
IMAGE_INPUTS = ("image", "prev_image")  # named inputs that must be (N, 3, H, W)

InputShapes = Sequence[int] | Mapping[str, Sequence[int]]
Inputs = np.ndarray | Mapping[str, np.ndarray]


class BackendUnavailable(RuntimeError):
    """The runtime a backend needs (package, GPU, execution provider) is missing; the message says
    what to install."""


def shape_str(shape: Sequence[int]) -> str:
    """``(1, 3, 256, 320)`` -> ``"1x3x256x320"``."""
    return "x".join(str(d) for d in shape)


def validate_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Return ``input_shape`` as a tuple of 4 positive ints (N, 3, H, W) or raise ValueError."""
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(f"input_shape must be 4 positive ints (N, 3, H, W), got {input_shape!r}")
    if shape[1] != 3:
        raise ValueError(f"input_shape must have 3 channels (N, 3, H, W), got {input_shape!r}")
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def _positive_ints(shape: object) -> bool:
    return all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape)


def validate_input_shapes(input_shape: InputShapes) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` from one ``(N, 3, H, W)`` shape (named "image") or a mapping name -> shape.

    Mapping shapes must be non-empty tuples of positive ints; "image" and "prev_image" must be
    (N, 3, H, W). Raises ValueError otherwise.
    """
    if not isinstance(input_shape, Mapping):
        return {"image": validate_input_shape(input_shape)}
    if not input_shape:
        raise ValueError("input_shapes must name at least one input")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in input_shape.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"input names must be non-empty strings, got {name!r}")
        if name in IMAGE_INPUTS:
            try:
                shapes[name] = validate_input_shape(shape)
            except ValueError as e:
                raise ValueError(f"input '{name}': {e}") from None
            continue
        dims = tuple(shape) if isinstance(shape, Sequence) and not isinstance(shape, str) else None
        if not dims or not _positive_ints(dims):
            raise ValueError(f"input_shapes['{name}'] must be positive ints, got {shape!r}")
        shapes[name] = tuple(int(d) for d in dims)
    return shapes


def shapes_str(shapes: Mapping[str, Sequence[int]]) -> str:
    """``{"image": (6, 3, 64, 96), "focal": (6, 1)}`` -> ``"image=6x3x64x96,focal=6x1"``."""
    return ",".join(f"{n}={shape_str(s)}" for n, s in shapes.items())


def validate_output_names(output_names: Sequence[str]) -> tuple[str, ...]:
    """Return ``output_names`` as a non-empty tuple of unique strings or raise ValueError."""
    if isinstance(output_names, str):
        raise ValueError(f"output_names must be a sequence of names, not the string {output_names!r}")
    names = tuple(output_names)
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"output_names must be non-empty unique strings, got {output_names!r}")
    return names


class Backend(abc.ABC):
    """Runs one model on fixed input shapes: ``infer(inputs) -> {output name: float32 array}``.

    ``input_shape`` is one (N, 3, H, W) shape or a mapping ``{input name: shape}`` in the model's
    forward-argument order. Attributes: ``input_shapes`` (always a dict), ``input_names`` (its keys),
    ``input_shape`` (the first input's shape), ``named_inputs`` (False for the single-shape form).
    """

    name: str = ""

    def __init__(self, input_shape: InputShapes, output_names: Sequence[str]) -> None:
        self.input_shapes: dict[str, tuple[int, ...]] = validate_input_shapes(input_shape)
        self.input_names: tuple[str, ...] = tuple(self.input_shapes)
        self.input_shape: tuple[int, ...] = self.input_shapes[self.input_names[0]]
        self.named_inputs: bool = isinstance(input_shape, Mapping)
        self.output_names: tuple[str, ...] = validate_output_names(output_names)

    def _check_array(self, array: object, shape: tuple[int, ...], label: str) -> np.ndarray:
        if not isinstance(array, np.ndarray):
            raise ValueError(
                f"backend '{self.name}' expects a numpy array{label}, got {type(array).__name__}"
            )
        if array.dtype != np.float32:
            raise ValueError(f"backend '{self.name}' expects float32 input{label}, got {array.dtype}")
        if array.shape != shape:
            hint = " (N,3,H,W)" if not label else ""
            raise ValueError(
                f"backend '{self.name}' expects input{label} of shape {shape_str(shape)}{hint}, "
                f"got {shape_str(array.shape) or '()'}"
            )
        if not array.flags.c_contiguous:
            raise ValueError(
                f"backend '{self.name}' expects a C-contiguous array{label}: use np.ascontiguousarray"
            )
        return array

    def check_input(self, batch: np.ndarray) -> np.ndarray:
        """Return ``batch`` if it is a C-contiguous float32 array of ``input_shape``, else raise
        ValueError."""
        return self._check_array(batch, self.input_shape, "")

    def check_inputs(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Validate an array (single-input deployments) or a dict with exactly ``input_names``.

        Returns ``{name: array}`` in ``input_names`` order; raises ValueError on a missing or unexpected
        name or on a wrong type, dtype, shape or memory layout.
        """
        if not isinstance(inputs, Mapping):
            if len(self.input_names) != 1:
                raise ValueError(
                    f"backend '{self.name}' runs a model with inputs {list(self.input_names)}: "
                    f"pass a dict name -> array, got {type(inputs).__name__}"
                )
            return {self.input_names[0]: self.check_input(inputs)}
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_shapes]
        if missing or extra:
            raise ValueError(
                f"backend '{self.name}' expects inputs {list(self.input_names)}; "
                f"missing {missing}, unexpected {extra}"
            )
        label = (lambda n: "") if not self.named_inputs else (lambda n: f" '{n}'")
        return {n: self._check_array(inputs[n], self.input_shapes[n], label(n)) for n in self.input_names}

    @abc.abstractmethod
    def infer(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Run the model; ``inputs`` is a float32 C-contiguous array of ``input_shape`` (single-input
        deployments) or a dict ``{name: array}`` with every name of ``input_shapes``. Returns one
        float32 array per output name."""

    @abc.abstractmethod
    def describe(self) -> dict[str, str]:
        """Human-readable facts about the deployment: backend, device, precision, providers or engine
        path, ..."""

    def close(self) -> None:
        """Release the runtime's resources; the backend is unusable afterwards.

        An optional hook, not an abstract method: the base holds nothing to release, backends that
        hold runtime resources override it.
        """
        return None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        facts = ", ".join(f"{k}={v}" for k, v in self.describe().items())
        return f"{type(self).__name__}({facts})"
