"""PyTorch eager backend (CPU or CUDA, optional fp16 autocast on CUDA)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Backend, BackendUnavailable, Inputs, InputShapes, shape_str, shapes_str

PRECISIONS = ("fp32", "fp16")


def outputs_to_dict(outputs: Any, output_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Map a model's outputs (tensor, tuple/list in ``output_names`` order, or dict) to ``{name: tensor}``."""
    names = tuple(output_names)
    if isinstance(outputs, torch.Tensor):
        if len(names) != 1:
            raise ValueError(f"model returned one tensor but {len(names)} outputs were expected: {names}")
        return {names[0]: outputs}
    if isinstance(outputs, Mapping):
        missing = [n for n in names if n not in outputs]
        if missing:
            raise ValueError(f"model outputs {sorted(outputs)} lack {missing}")
        return {n: outputs[n] for n in names}
    if isinstance(outputs, (tuple, list)):
        if len(outputs) != len(names):
            raise ValueError(
                f"model returned {len(outputs)} outputs but {len(names)} names were given: {names}"
            )
        return dict(zip(names, outputs))
    raise TypeError(
        f"model returned {type(outputs).__name__}; expected a tensor, tuple/list or dict of tensors"
    )


def numpy_to_tensor(array: np.ndarray) -> torch.Tensor:
    """Zero-copy ``torch.from_numpy`` that also accepts read-only arrays."""
    if array.flags.writeable:
        return torch.from_numpy(array)
    # Read-only buffers (e.g. np.frombuffer on a ROS message) are fine: inference never writes its
    # input, so torch's "not writable" warning is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def resolve_device(device: str) -> torch.device:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` -> torch.device; BackendUnavailable if CUDA is requested
    but absent."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                f"backend 'torch' on device '{device}' needs a CUDA GPU and a CUDA build of torch "
                f"(this torch {torch.__version__} sees none): use device='cpu' or install a CUDA torch"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendUnavailable(
                f"device '{device}' requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif dev.type != "cpu":
        raise ValueError(f"backend 'torch' supports devices 'cpu' and 'cuda[:N]', got '{device}'")
    return dev


class TorchBackend(Backend):
    """Eager PyTorch inference; the model is switched to eval mode and moved to ``device`` in place.

    Calls ``model(*[inputs[n] for n in input_names])``.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        input_shape: InputShapes,
        output_names: Sequence[str],
        device: str = "cpu",
        precision: str = "fp32",
    ) -> None:
        super().__init__(input_shape, output_names)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError(
                "precision 'fp16' (autocast) is only supported on CUDA devices; use 'fp32' on CPU"
            )
        self.precision = precision
        self.model: nn.Module | None = model.eval().to(self.device)

    def infer(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Run the model on an array or a dict of arrays; outputs are copied to host float32 arrays."""
        arrays = self.check_inputs(inputs)
        if self.model is None:
            raise RuntimeError("backend 'torch' is closed")
        with torch.inference_mode():
            xs = [numpy_to_tensor(arrays[n]) for n in self.input_names]
            if self.device.type == "cuda":
                xs = [x.to(self.device) for x in xs]
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.precision == "fp16"):
                outputs = self.model(*xs)
            tensors = outputs_to_dict(outputs, self.output_names)
            return {n: t.detach().to(device="cpu", dtype=torch.float32).numpy() for n, t in tensors.items()}

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "device": str(self.device),
            "precision": self.precision,
            "model": type(self.model).__name__ if self.model is not None else "(closed)",
            "input_shape": shapes_str(self.input_shapes)
            if self.named_inputs
            else shape_str(self.input_shape),
            "outputs": ",".join(self.output_names),
            "torch": torch.__version__,
        }

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
