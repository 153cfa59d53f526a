"""ONNX export with a PyTorch-vs-ONNX-Runtime parity check, atomic writes and a content-addressed cache.

Exports use the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): the torch.export
based one needs the ``onnxscript`` package. Shapes are static (one deployment = one input shape, or one
shape per named input for multi-input models: pass ``{name: shape}`` in forward-argument order).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .base import InputShapes, shape_str, shapes_str, validate_input_shapes, validate_output_names
from .cache_paths import default_cache_dir
from .runtimes import import_onnxruntime
from .seeded import seeded_inputs

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

INPUT_NAME = "image"
DEFAULT_OPSET = 17
# Bump when the exported graph changes for reasons the cache key cannot see (wrapper, exporter flags).
_CACHE_FORMAT = 1
# Denominator floor of the elementwise relative error, so exact zeros do not divide by zero.
_REL_FLOOR = 1e-6


class ExportMismatch(RuntimeError):
    """The exported graph's outputs differ from PyTorch's beyond tolerance; nothing was written."""

    def __init__(
        self, message: str, max_abs_err: dict[str, float], max_rel_err: dict[str, float], detail: str = ""
    ) -> None:
        super().__init__(message)
        self.max_abs_err = max_abs_err
        self.max_rel_err = max_rel_err
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """Outcome of :func:`export_onnx`; errors are ONNX Runtime vs PyTorch on the seeded check input."""

    path: Path
    input_shape: tuple[int, ...]  # the first input's shape
    output_names: tuple[str, ...]
    max_abs_err: dict[str, float]
    max_rel_err: dict[str, float]
    opset: int
    seconds: float
    input_shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)  # every graph input


def _output_wrapper(model: nn.Module, output_names: tuple[str, ...]) -> nn.Module:
    import torch

    from .torch_backend import outputs_to_dict

    class _Ordered(torch.nn.Module):
        # Dict outputs would be flattened in the model's insertion order; pin the order to output_names.
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(outputs_to_dict(self.model(*xs), output_names).values())

    return _Ordered()


def _model_device(model: nn.Module):
    import torch

    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _torch_outputs(
    model: nn.Module, inputs: dict[str, np.ndarray], output_names: tuple[str, ...]
) -> dict[str, np.ndarray]:
    import torch

    from .torch_backend import outputs_to_dict

    device = _model_device(model)
    with _eval_mode(model), torch.inference_mode():
        out = model(*[torch.from_numpy(x).to(device) for x in inputs.values()])
        return {n: t.detach().float().cpu().numpy() for n, t in outputs_to_dict(out, output_names).items()}


def check_onnx_parity(
    model: nn.Module,
    onnx_path: str | os.PathLike,
    input_shape: InputShapes,
    output_names: Sequence[str],
    rtol: float = 1e-3,
    atol: float = 1e-4,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, float]]:
    """Compare ONNX Runtime (CPU) on ``onnx_path`` with ``model`` on seeded inputs (:func:`seeded_inputs`).

    ``input_shape``: one shape (the graph's single input) or ``{name: shape}`` (every graph input, by
    name, in the model's argument order). An element passes when ``|ort - torch| <= atol + rtol *
    |torch|`` (numpy.allclose). Returns per output ``(max_abs_err, max_rel_err)``, the relative error
    being ``|ort - torch| / max(|torch|, 1e-6)``. Raises ExportMismatch if any output fails or differs
    in shape, ValueError if the graph's input names differ from the given ones.
    """
    ort = import_onnxruntime()
    names = validate_output_names(output_names)
    inputs = seeded_inputs(input_shape, seed)
    expected = _torch_outputs(model, inputs, names)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # Same optimisation level as OnnxRuntimeBackend, so the check covers the fused graph that will run.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(os.fspath(onnx_path), opts, providers=["CPUExecutionProvider"])
    graph_inputs = [i.name for i in session.get_inputs()]
    if not isinstance(input_shape, Mapping):
        if len(graph_inputs) != 1:
            raise ValueError(
                f"{os.fspath(onnx_path)} has inputs {graph_inputs}; pass one shape per input name"
            )
        feed = {graph_inputs[0]: inputs["image"]}
    elif sorted(graph_inputs) != sorted(inputs):
        raise ValueError(f"{os.fspath(onnx_path)} has inputs {graph_inputs}, expected {list(inputs)}")
    else:
        feed = inputs
    got = dict(zip(names, session.run(list(names), feed)))

    abs_err: dict[str, float] = {}
    rel_err: dict[str, float] = {}
    failures = []
    for n in names:
        ref, out = expected[n], np.asarray(got[n], dtype=np.float32)
        if ref.shape != out.shape:
            abs_err[n] = rel_err[n] = float("inf")
            failures.append(f"{n}: shape {shape_str(out.shape)} (onnx) != {shape_str(ref.shape)} (torch)")
            continue
        diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        abs_err[n] = float(diff.max()) if diff.size else 0.0
        rel_err[n] = float((diff / np.maximum(np.abs(ref), _REL_FLOOR)).max()) if diff.size else 0.0
        if not np.isfinite(diff).all() or not np.all(diff <= atol + rtol * np.abs(ref)):
            failures.append(f"{n}: max abs err {abs_err[n]:.3g}, max rel err {rel_err[n]:.3g}")
    if failures:
        detail = f"beyond rtol={rtol:g}, atol={atol:g}: " + "; ".join(failures)
        raise ExportMismatch(
            f"ONNX Runtime on {os.fspath(onnx_path)} disagrees with PyTorch {detail}",
            abs_err,
            rel_err,
            detail,
        )
    return abs_err, rel_err


def _torch_onnx_export(
    model: nn.Module,
    examples: tuple,
    path: str,
    input_names: Sequence[str],
    output_names: tuple[str, ...],
    opset: int,
) -> None:
    import torch

    kwargs = dict(
        input_names=list(input_names),
        output_names=list(output_names),
        opset_version=opset,
        do_constant_folding=True,
    )
    # torch < 2.5 has no `dynamo` argument and always uses the TorchScript exporter.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with warnings.catch_warnings():
        # The exporter's own deprecation notices and its note about un-foldable strided slices are noise
        # for users: whatever it produces is parity-checked afterwards.
        warnings.filterwarnings(
            "ignore", message=".*legacy TorchScript-based ONNX export.*", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(model, examples, path, **kwargs)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: InputShapes,
    output_names: Sequence[str],
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> ExportReport:
    """Export ``model`` to ONNX at ``path`` (static shapes), refusing a graph that disagrees.

    ``input_shape``: one (N, 3, H, W) shape (graph input ``"image"``) or ``{name: shape}`` in the
    model's forward-argument order (one graph input per name). The graph is written to a temporary file
    beside ``path``, validated with ``onnx.checker`` and, when ``check``, compared against PyTorch with
    ONNX Runtime on every output (see :func:`check_onnx_parity`); only then is it moved into place with
    ``os.replace``. Raises ExportMismatch (nothing written) outside tolerance.
    """
    import onnx
    import torch

    t0 = time.perf_counter()
    shapes = validate_input_shapes(input_shape)
    shape = next(iter(shapes.values()))
    names = validate_output_names(output_names)
    if check:
        import_onnxruntime()  # fail before the (slow) export, not after
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with _eval_mode(model), torch.no_grad():
            device = _model_device(model)
            examples = tuple(torch.from_numpy(x).to(device) for x in seeded_inputs(shapes).values())
            input_names = list(shapes) if isinstance(input_shape, Mapping) else [INPUT_NAME]
            _torch_onnx_export(_output_wrapper(model, names), examples, tmp, input_names, names, opset)
        _check_graph_inputs(tmp, path, input_names)
        onnx.checker.check_model(tmp)
        abs_err: dict[str, float] = {}
        rel_err: dict[str, float] = {}
        if check:
            try:
                abs_err, rel_err = check_onnx_parity(model, tmp, input_shape, names, rtol=rtol, atol=atol)
            except ExportMismatch as e:
                raise ExportMismatch(
                    f"refusing to export {path}: ONNX Runtime disagrees with PyTorch {e.detail}",
                    e.max_abs_err,
                    e.max_rel_err,
                    e.detail,
                ) from None
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared with other users' nodes
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    report = ExportReport(
        path=path,
        input_shape=shape,
        output_names=names,
        max_abs_err=abs_err,
        max_rel_err=rel_err,
        opset=opset,
        seconds=time.perf_counter() - t0,
        input_shapes=shapes,
    )
    log.info("exported %s (%s) in %.1f s, max abs err %s", path, shapes_str(shapes), report.seconds, abs_err)
    return report


def _check_graph_inputs(onnx_file: str, path: Path, input_names: Sequence[str]) -> None:
    """The exporter drops inputs the model never reads; refuse such a graph (the backends feed every
    input)."""
    import onnx

    graph_inputs = [i.name for i in onnx.load(onnx_file, load_external_data=False).graph.input]
    if graph_inputs != list(input_names):
        raise ValueError(
            f"refusing to export {path}: graph inputs {graph_inputs} differ from {list(input_names)} "
            "(an input the model does not use is removed by the exporter)"
        )


def _weights_hash(model: nn.Module) -> hashlib._Hash:
    """SHA-256 over the state_dict: every tensor's name, dtype, shape and raw bytes, in state_dict order."""
    import torch

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # Raw bytes through a uint8 view: works for every dtype, including ones numpy lacks (bfloat16).
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h


def onnx_cache_path(
    model: nn.Module,
    model_name: str,
    input_shape: InputShapes,
    cache_dir: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    output_names: Sequence[str] = ("depth",),
) -> Path:
    """Deterministic cache file for ``model`` exported at ``input_shape`` (the file :func:`ensure_onnx` uses).

    The name carries a SHA-256 of the weights (names, dtypes, shapes, bytes), the model name, input
    shape(s) with their names and order, opset, torch version and output names, so any of them
    changing yields a new file. The file name shows the first input's shape.
    """
    import torch

    shapes = validate_input_shapes(input_shape)
    shape = next(iter(shapes.values()))
    # A single-shape deployment keeps its historical key (same cached files as before multi-input).
    shape_key = shape if not isinstance(input_shape, Mapping) else tuple(shapes.items())
    h = _weights_hash(model)
    names = ",".join(validate_output_names(output_names))
    h.update(f"|{model_name}|{shape_key}|{opset}|{torch.__version__}|{names}|{_CACHE_FORMAT}".encode())
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name).strip("._") or "model"
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return directory / f"{safe_name}_{shape_str(shape)}_opset{opset}_{h.hexdigest()[:20]}.onnx"


def ensure_onnx(
    model: nn.Module,
    model_name: str,
    input_shape: InputShapes,
    output_names: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Return the cached ONNX file for ``model`` at ``input_shape``, exporting (with parity check) if
    absent. The file name says which weights and shapes it was exported from; the file itself
    records that key and a SHA-256 of its graph in its metadata when it is written, and both are
    checked on every reuse, so a swapped or damaged file is noticed, logged and exported again
    instead of being used."""
    path = onnx_cache_path(model, model_name, input_shape, cache_dir, opset=opset, output_names=output_names)
    key = path.stem.rsplit("_", 1)[-1]
    if path.is_file():
        problem = _cache_file_problem(path, key)
        if problem is None:
            log.debug("reusing cached ONNX %s", path)
            return path
        log.warning("cached ONNX %s %s: exporting it again", path, problem)
    export_onnx(model, path, input_shape, output_names, opset=opset)
    _stamp_cache_file(path, key)
    return path


_KEY_PROP, _GRAPH_PROP = "bore_depth_ros.cache_key", "bore_depth_ros.graph_sha256"


def _graph_sha256(model_proto) -> str:
    return hashlib.sha256(model_proto.graph.SerializeToString(deterministic=True)).hexdigest()


def _stamp_cache_file(path: Path, key: str) -> None:
    """Record the cache key and the graph's SHA-256 in the file's metadata (atomic rewrite)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in ((_KEY_PROP, key), (_GRAPH_PROP, _graph_sha256(proto))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".stamp.tmp")
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cache_file_problem(path: Path, key: str) -> str | None:
    """Why the cached file cannot be trusted as the export of ``key``, or None."""
    import onnx

    try:
        proto = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - any unreadable file is re-exported, with the reason
        return f"cannot be read ({type(e).__name__}: {e})"
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get(_KEY_PROP) != key:
        return f"was not exported for this key (it records {props.get(_KEY_PROP) or 'none'})"
    if props.get(_GRAPH_PROP) != _graph_sha256(proto):
        return "does not match the graph hash recorded when it was written (modified or damaged)"
    return None
