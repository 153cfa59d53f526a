"""``bore-depth prebuild`` as a library call: the TensorRT engine a node will load, built ahead of time."""

from __future__ import annotations

import os

from ..backends.base import shape_str
from . import deployment_shapes, load_model


def onnx_io(onnx_path: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], tuple[str, ...]]:
    """Static input shapes (in graph order) and output names of an ONNX file; ValueError on dynamic dims."""
    import onnx

    graph = onnx.load(os.fspath(onnx_path), load_external_data=False).graph
    shapes = {}
    for i in graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in i.type.tensor_type.shape.dim]
        if not dims or not all(d > 0 for d in dims):
            raise ValueError(
                f"{onnx_path}: input '{i.name}' has dynamic or unknown dims; export with fixed shapes"
            )
        shapes[i.name] = tuple(dims)
    return shapes, tuple(o.name for o in graph.output)


def prebuild(
    model: str | None = "bore_depth",
    onnx: str | os.PathLike | None = None,
    weights: str = "",
    height: int | None = None,
    width: int | None = None,
    batch: int | None = None,
    precision: str = "fp32",
    device: str = "cuda",
    cache_dir: str | os.PathLike | None = None,
    engine_cache_dir: str | os.PathLike | None = None,
    force_rebuild: bool = False,
) -> dict[str, str]:
    """Build (or find) the TensorRT engine a node with the same settings will load; returns its description.

    With ``onnx`` the file's own shapes are used; otherwise ``model`` is loaded like the nodes do (same
    ONNX cache file, hence the same engine key). Raises BackendUnavailable without TensorRT/CUDA and
    EngineSelfCheckFailed if the built engine disagrees with ONNX Runtime.
    """
    from ..backends import create_backend
    from ..backends.runtimes import import_tensorrt
    from ..models import get_model_info

    import_tensorrt()  # fail fast, before loading or exporting anything
    kw = dict(
        device=device, precision=precision, force_rebuild=force_rebuild, engine_cache_dir=engine_cache_dir
    )
    if onnx is not None:
        shapes, outputs = onnx_io(onnx)
        backend = create_backend("tensorrt", onnx_path=onnx, input_shapes=shapes, output_names=outputs, **kw)
    else:
        info = get_model_info(model)
        torch_model, _ = load_model(model, weights)
        backend = create_backend(
            "tensorrt",
            model=torch_model,
            model_name=model,
            input_shapes=deployment_shapes(model, height, width, batch, weights),
            output_names=info.output_names,
            cache_dir=cache_dir,
            **kw,
        )
    try:
        return backend.describe()
    finally:
        backend.close()


def list_engines(engine_cache_dir: str | os.PathLike | None = None) -> list[str]:
    """One line per cached engine: file, precision, shapes, TensorRT, GPU, self-check verdict."""
    from ..backends.engine_cache import EngineCache

    cache = EngineCache(engine_cache_dir)
    lines = []
    for e in cache.entries():
        if e.key is None:
            lines.append(f"{e.path.name}: unreadable or missing sidecar (will be rebuilt)")
            continue
        check = (e.sidecar.get("self_check") or {}).get("passed")
        shapes = ",".join(f"{n}={shape_str(s)}" for n, s in e.key.input_shapes)
        lines.append(
            f"{e.path.name}: {e.key.precision} {shapes} TensorRT {e.key.trt_version} {e.key.gpu_name} "
            f"sm{e.key.compute_capability} built {e.sidecar.get('built_at')} self-check "
            f"{'passed' if check else 'not run' if check is None else 'FAILED'}"
        )
    return lines
