"""PyTorch eager backend: CPU or CUDA; fp16 autocast on CUDA, bf16 autocast on CPUs with native bf16.

Memory layout (``memory_format``): on CPU the model and its 4-D inputs run in ``channels_last``
(NHWC) by default: oneDNN's convolutions are about twice as fast in that layout as in the default
NCHW one (docs/performance.md). The outputs are the same to float32 rounding (test/test_torch_paths.py
states the tolerance); ``memory_format="contiguous"`` keeps the default layout.

``precision="bf16"`` (CPU only) runs convolutions, linear layers and matmuls in bfloat16 under
``torch.autocast`` (normalisation, softmax and the output heads stay float32). It is accepted only on
CPUs with native bf16 arithmetic (AVX512-BF16 or AMX, :func:`cpu_bf16_support`), where it is
faster than float32; elsewhere oneDNN would emulate it, slower than float32. At start the backend
compares one bf16 and one fp32 pass on seeded inputs and refuses to run when the median relative
output difference exceeds :data:`BF16_MAX_MEDIAN_REL` (:func:`precision_gap`; ``bf16_check=False``
skips it).

``compile=True`` runs the model through ``torch.compile`` (TorchInductor) with frozen weights: batch
normalisation folded into the convolutions, element-wise layers fused into generated C++/OpenMP
(CPU) or Triton (CUDA) kernels, convolution weights prepacked for oneDNN. It is paid for once, at
start: the backend compiles on seeded inputs of its fixed shapes (minutes on a small CPU; compiled
kernels are cached under ``$BORE_DEPTH_CACHE/inductor`` unless ``TORCHINDUCTOR_CACHE_DIR`` is set, so
a restart is quicker) and refuses to serve when the compiled outputs differ from eager ones by more
than :data:`COMPILE_MAX_MEDIAN_REL` (:class:`CompileFailed` for a compiler that fails, e.g. no
C++ compiler). docs/performance.md has the figures.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Backend, BackendUnavailable, Inputs, InputShapes, shape_str, shapes_str
from .cache_paths import cache_root
from .seeded import seeded_inputs

PRECISIONS = ("fp32", "fp16", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
BF16_MAX_MEDIAN_REL = 0.01  # the bf16 start check: median relative output difference vs fp32
BF16_CHECK_SEED = 0
# compile=True: the compiled model's outputs against eager ones at start (median relative difference,
# precision_gap); fusion reorders float32 sums, which moves outputs by ~1e-6
COMPILE_MAX_MEDIAN_REL = 1e-3
# outputs judged by absolute difference over their value range (confidence in [0, 1]), as the
# engine self-check does (selfcheck.VALUE_RANGES)
VALUE_RANGES: dict[str, float] = {"confidence": 1.0}


class PrecisionCheckFailed(RuntimeError):
    """bf16 (or compiled) outputs differ from fp32 eager ones by more than allowed on the start check."""


class CompileFailed(BackendUnavailable):
    """``compile=True`` and torch.compile could not build the model on this machine."""


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
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # torch's own message lists every device type it knows
        raise ValueError(f"backend 'torch' supports devices 'cpu' and 'cuda[:N]', got {device!r}") from None
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


def cpu_bf16_support() -> tuple[bool, str]:
    """(native bf16 arithmetic on this CPU, what was found): AVX512-BF16 or AMX tiles, as torch's
    CPU feature probes report them."""
    found = []
    for probe, label in (("_is_avx512_bf16_supported", "AVX512-BF16"), ("_is_amx_tile_supported", "AMX")):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                found.append(label)
        except Exception:  # noqa: BLE001 - a probe that cannot run means the feature is not usable
            pass
    capability = torch.backends.cpu.get_cpu_capability()
    text = " + ".join(found) if found else f"no AVX512-BF16 or AMX (torch CPU capability {capability})"
    return bool(found), text


def resolve_memory_format(memory_format: str, device: torch.device) -> str:
    """``"auto"`` -> ``"channels_last"`` on CPU (oneDNN convolutions are ~2x faster in NHWC), the
    default layout on CUDA (not measured here; tools/gpu_check.sh compares both); other values as given."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {MEMORY_FORMATS}, got {memory_format!r}")
    if memory_format == "auto":
        return "channels_last" if device.type == "cpu" else "contiguous"
    return memory_format


def check_precision(precision: str, device: torch.device) -> None:
    """ValueError unless ``precision`` runs on ``device``: fp16 needs CUDA, bf16 a CPU with native
    bf16 arithmetic."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            "precision 'fp16' (autocast) is only supported on CUDA devices; on CPU use 'fp32', or "
            "'bf16' where the CPU has native bf16 (AVX512-BF16 or AMX)"
        )
    if precision == "bf16":
        if device.type != "cpu":
            raise ValueError(
                f"precision 'bf16' is for the torch backend on CPU; on '{device}' use 'fp16' or 'fp32'"
            )
        native, found = cpu_bf16_support()
        if not native:
            raise ValueError(
                f"precision 'bf16' needs a CPU with native bf16 arithmetic (AVX512-BF16 or AMX); this "
                f"CPU has {found}, where bf16 would be emulated and slower than fp32: use 'fp32'"
            )


def precision_gap(
    candidate: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Median relative difference of each output of ``candidate`` against ``reference``.

    ``|c - r| / max(|r|, 1 % of max |r|)`` per element (the engine self-check's floor), the median
    over all elements; outputs in :data:`VALUE_RANGES` use ``|c - r| / range`` instead. A
    non-finite candidate value where the reference is finite makes the gap infinite.
    """
    gaps = {}
    for name, r in reference.items():
        r = np.asarray(r, np.float64)
        c = np.asarray(candidate[name], np.float64)
        if c.shape != r.shape:
            raise ValueError(f"output '{name}': shapes {c.shape} and {r.shape} differ")
        finite = np.isfinite(r)
        if not np.isfinite(c[finite]).all():
            gaps[name] = float("inf")
            continue
        diff = np.abs(c[finite] - r[finite])
        if name in VALUE_RANGES:
            rel = diff / VALUE_RANGES[name]
        else:
            floor = max(0.01 * float(np.abs(r[finite]).max(initial=0.0)), 1e-12)
            rel = diff / np.maximum(np.abs(r[finite]), floor)
        gaps[name] = float(np.median(rel)) if rel.size else 0.0
    return gaps


def check_gap(
    gaps: dict[str, float], limit: float, option: str, what: str, against: str, instead: str
) -> None:
    """PrecisionCheckFailed naming ``option`` when any output's median relative difference in
    ``gaps`` exceeds ``limit`` (the bf16 and the compile start checks)."""
    bad = {n: g for n, g in gaps.items() if not g <= limit}
    if bad:
        raise PrecisionCheckFailed(
            f"refusing {option}: on seeded inputs {what} differ from {against} by a median "
            + ", ".join(f"{g:.2%} ({n})" for n, g in bad.items())
            + f", more than the {limit * 100:g}% allowed: use {instead}"
        )


def keep_bf16_weights(model: nn.Module) -> None:
    """Store the weights and biases of ``model``'s convolutions and linear layers in bf16, in place.

    Under CPU autocast these ops cast their fp32 weights to bf16 on every call (the same rounding,
    so outputs are bit-identical); casting once saves that work: ~8 ms CPU per svr call on one
    thread (46 -> 37 ms for a forward at 32x64, docs/performance.md). Normalisation layers keep
    their fp32 parameters.
    """
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, kinds):
                for name in ("weight", "bias"):
                    param = getattr(module, name, None)
                    if param is not None and param.dtype == torch.float32:
                        param.data = param.data.to(torch.bfloat16)


class TorchBackend(Backend):
    """PyTorch inference, eager or compiled (``compile=True``). The model is switched to eval mode,
    moved to ``device`` and converted to the memory layout in place.

    Calls ``model(*[inputs[n] for n in input_names])``. ``memory_format``: "auto" (channels_last on
    CPU, the default layout on CUDA), "channels_last" or "contiguous". ``precision``: "fp32", "fp16"
    (CUDA autocast) or "bf16" (CPU autocast, native-bf16 CPUs only; convolution and linear weights
    are then stored in bf16, :func:`keep_bf16_weights`; checked against fp32 at start unless
    ``bf16_check=False``, see :func:`precision_gap`). ``compile``: TorchInductor with frozen weights,
    compiled and checked against eager at start (module docstring).
    """

    name = "torch"
    _compiled_alive = 0  # compiled backends alive in this process (see _release_compiled)
    _compiled_lock = threading.Lock()

    def __init__(
        self,
        model: nn.Module,
        input_shape: InputShapes,
        output_names: Sequence[str],
        device: str = "cpu",
        precision: str = "fp32",
        memory_format: str = "auto",
        bf16_check: bool = True,
        compile: bool = False,  # noqa: A002 - the option's name in configs and parameters
    ) -> None:
        super().__init__(input_shape, output_names)
        self.device = resolve_device(device)
        check_precision(precision, self.device)
        self.precision = precision
        self.memory_format = resolve_memory_format(memory_format, self.device)
        self._layout = torch.channels_last if self.memory_format == "channels_last" else None
        model = model.eval().to(self.device)
        if self._layout is not None:
            model = model.to(memory_format=self._layout)
        self.model: nn.Module | None = model
        self._forward = model  # the eager model, or its compiled form (compile=True)
        self.bf16_gap: dict[str, float] | None = None
        self.compile_gap: dict[str, float] | None = None
        self.compile_s: float | None = None
        self._holds_compiled = False  # counted in _compiled_alive (released by close)
        fp32_reference = None
        if precision == "bf16":
            if bf16_check:  # before the cast: a refused model is left as it came
                self.bf16_gap, fp32_reference = self._check_bf16()
            keep_bf16_weights(model)
        if compile:
            self._compile(fp32_reference)

    def _autocast(self, precision: str):
        if precision == "fp16":
            return torch.autocast("cuda", dtype=torch.float16)
        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def _run(self, arrays: Mapping[str, np.ndarray], precision: str) -> dict[str, np.ndarray]:
        if self.model is None:
            raise RuntimeError("backend 'torch' is closed")
        with torch.inference_mode():
            xs = [numpy_to_tensor(arrays[n]).to(self.device) for n in self.input_names]
            if self._layout is not None:
                xs = [x.contiguous(memory_format=self._layout) if x.dim() == 4 else x for x in xs]
            with self._autocast(precision):
                outputs = self._forward(*xs)
            tensors = outputs_to_dict(outputs, self.output_names)
            return {
                n: t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
                for n, t in tensors.items()
            }

    def _check_bf16(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """One fp32 and one bf16 pass on seeded inputs (autocast with the fp32 weights: bit-identical
        to the bf16-stored weights served afterwards); PrecisionCheckFailed when an output's median
        relative difference exceeds BF16_MAX_MEDIAN_REL. Also warms the bf16 kernels up. Returns
        the gaps and the fp32 outputs."""
        feed = seeded_inputs(self.input_shapes, BF16_CHECK_SEED)
        fp32 = self._run(feed, "fp32")
        gaps = precision_gap(self._run(feed, "bf16"), fp32)
        check_gap(gaps, BF16_MAX_MEDIAN_REL, "precision 'bf16'", "its outputs", "fp32", "precision 'fp32'")
        return gaps, fp32

    def _compile(self, fp32_reference: dict[str, np.ndarray] | None = None) -> None:
        """Compile the model for this backend's fixed input shapes and check it against eager:
        CompileFailed when inductor cannot build it, PrecisionCheckFailed when its outputs differ
        by a median of more than COMPILE_MAX_MEDIAN_REL from eager ones in the same precision; in
        bf16, by more than BF16_MAX_MEDIAN_REL from fp32 eager ones (``fp32_reference``, the bf16
        start check's; else bf16 eager ones: two bf16 roundings differ by ~0.5 %). Sets
        ``compile_s`` (the first compiled call, compilation included) and ``compile_gap``."""
        from torch._dynamo.utils import counters

        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.fspath(cache_root() / "inductor"))
        feed = seeded_inputs(self.input_shapes, BF16_CHECK_SEED)
        eager = fp32_reference if fp32_reference is not None else self._run(feed, self.precision)
        limit = BF16_MAX_MEDIAN_REL if self.precision == "bf16" else COMPILE_MAX_MEDIAN_REL
        # freezing: weights become constants (BatchNorm folded, convolution weights prepacked); as
        # an option of this compile it also holds for any later recompilation
        compiled = torch.compile(self.model, backend="inductor", dynamic=False, options={"freezing": True})
        self._forward = compiled
        graphs = counters["stats"]["unique_graphs"]
        t0 = time.perf_counter()
        try:
            out = self._run(feed, self.precision)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: serve without compile
            self._forward = self.model
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise CompileFailed(
                f"compile=True: torch.compile (inductor) could not build the model on this machine "
                f"({type(e).__name__}: {first[:300]}); on CPU it needs a C++ compiler (g++) and the "
                "Python headers: use compile=False"
            ) from e
        self.compile_s = time.perf_counter() - t0
        if counters["stats"]["unique_graphs"] == graphs:
            # Dynamo gave up and ran the model eagerly (its recompile limit for the model's code,
            # torch._dynamo.config.cache_size_limit, is spent in this process): say so, never
            # serve an eager model that claims to be compiled
            self._forward = self.model
            raise CompileFailed(
                "compile=True: torch.compile captured no graph (Dynamo's recompile limit for this "
                "model is spent in this process: too many compiled copies of it at once?); share one "
                "engine between nodes or use compile=False"
            )
        with TorchBackend._compiled_lock:
            TorchBackend._compiled_alive += 1
            self._holds_compiled = True
        gaps = precision_gap(out, eager)
        against = "fp32 eager ones" if fp32_reference is not None else "eager ones"
        try:
            check_gap(gaps, limit, "compile=True", "the compiled model's outputs", against, "compile=False")
        except PrecisionCheckFailed:
            self._release_compiled()
            self._forward = self.model
            raise
        self.compile_gap = gaps

    def infer(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Run the model on an array or a dict of arrays; outputs are copied to host float32 arrays."""
        return self._run(self.check_inputs(inputs), self.precision)

    def describe(self) -> dict[str, str]:
        d = {
            "backend": self.name,
            "device": str(self.device),
            "precision": self.precision,
            "memory_format": self.memory_format,
            "model": type(self.model).__name__ if self.model is not None else "(closed)",
            "input_shape": shapes_str(self.input_shapes)
            if self.named_inputs
            else shape_str(self.input_shape),
            "outputs": ",".join(self.output_names),
            "torch": torch.__version__,
        }
        if self.compile_s is not None:
            d["compile"] = (
                f"inductor, first call {self.compile_s:.1f} s, "
                + ", ".join(f"{n} median {g:.1e}" for n, g in (self.compile_gap or {}).items())
                + (" vs fp32 eager" if self.precision == "bf16" else " vs eager")
            )
        if self.precision == "bf16":
            d["cpu_bf16"] = cpu_bf16_support()[1]
        if self.bf16_gap is not None:
            d["bf16_check"] = ", ".join(f"{n} median {g:.2%}" for n, g in self.bf16_gap.items()) + (
                f" vs fp32 (limit {BF16_MAX_MEDIAN_REL:.0%})"
            )
        return d

    def _release_compiled(self) -> None:
        """Dynamo keeps every compiled model (and its frozen weights) in its caches: when the last
        compiled backend of the process goes, they are cleared (torch._dynamo.reset), so a node
        that is cleaned up and configured again neither leaks the weights nor spends Dynamo's
        recompile limit."""
        if not self._holds_compiled:
            return
        with TorchBackend._compiled_lock:
            self._holds_compiled = False
            TorchBackend._compiled_alive -= 1
            if TorchBackend._compiled_alive == 0:
                torch._dynamo.reset()

    def close(self) -> None:
        self._release_compiled()
        self.model = None
        self._forward = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
