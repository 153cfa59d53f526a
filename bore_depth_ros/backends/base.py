"""Common interface of the inference backends (PyTorch, ONNX Runtime, TensorRT)."""
from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")


class BackendUnavailable(RuntimeError):
    """The runtime a backend needs (package, GPU, execution provider) is missing; the message says what to install."""


def shape_str(shape: Sequence[int]) -> str:
    """``(1, 3, 256, 320)`` -> ``"1x3x256x320"``."""
    return "x".join(str(d) for d in shape)


def validate_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Return ``input_shape`` as a tuple of 4 positive ints (N, 3, H, W) or raise ValueError."""
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
                                  for d in shape):
        raise ValueError(f"input_shape must be 4 positive ints (N, 3, H, W), got {input_shape!r}")
    if shape[1] != 3:
        raise ValueError(f"input_shape must have 3 channels (N, 3, H, W), got {input_shape!r}")
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def validate_output_names(output_names: Sequence[str]) -> tuple[str, ...]:
    """Return ``output_names`` as a non-empty tuple of unique strings or raise ValueError."""
    if isinstance(output_names, str):
        raise ValueError(f"output_names must be a sequence of names, not the string {output_names!r}")
    names = tuple(output_names)
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"output_names must be non-empty unique strings, got {output_names!r}")
    return names


class Backend(abc.ABC):
    """Runs one model on a fixed input shape: ``infer(float32 [N,3,H,W]) -> {output name: float32 array}``."""

    name: str = ""

    def __init__(self, input_shape: Sequence[int], output_names: Sequence[str]) -> None:
        self.input_shape: tuple[int, int, int, int] = validate_input_shape(input_shape)
        self.output_names: tuple[str, ...] = validate_output_names(output_names)

    def check_input(self, batch: np.ndarray) -> np.ndarray:
        """Return ``batch`` if it is a C-contiguous float32 array of ``input_shape``, else raise ValueError."""
        if not isinstance(batch, np.ndarray):
            raise ValueError(f"backend '{self.name}' expects a numpy array, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise ValueError(f"backend '{self.name}' expects float32 input, got {batch.dtype}")
        if batch.shape != self.input_shape:
            raise ValueError(f"backend '{self.name}' expects input of shape {shape_str(self.input_shape)} "
                             f"(N,3,H,W), got {shape_str(batch.shape) or '()'}")
        if not batch.flags.c_contiguous:
            raise ValueError(f"backend '{self.name}' expects a C-contiguous array: use np.ascontiguousarray(batch)")
        return batch

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on ``batch`` (float32, C-contiguous, ``input_shape``); one float32 array per output."""

    @abc.abstractmethod
    def describe(self) -> dict[str, str]:
        """Human-readable facts about the deployment: backend, device, precision, providers or engine path, ..."""

    def close(self) -> None:
        """Release the runtime's resources; the backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        facts = ", ".join(f"{k}={v}" for k, v in self.describe().items())
        return f"{type(self).__name__}({facts})"
