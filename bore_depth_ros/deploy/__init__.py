"""Deployment of the registered models: what a node will run (input shapes, weights), ONNX export of
every model, TensorRT engine prebuild.

- :mod:`.export`: :func:`~.export.export_all`, each registered model to ONNX at a fixed input size
  and batch (views), checked with the ONNX checker and against PyTorch through ONNX Runtime before
  the file is written.
- :mod:`.prebuild`: :func:`~.prebuild.prebuild`, build (or reuse) the cached, self-checked TensorRT
  engine a node will load, so the node starts in seconds. Needs TensorRT and a GPU; elsewhere it
  fails with BackendUnavailable. :func:`~.prebuild.list_engines` lists the engine cache.

The benchmark table of the backends is :mod:`bore_depth_ros.bench.table`; the command-line
front ends are ``bore-depth export`` / ``prebuild`` / ``bench`` (:mod:`bore_depth_ros.cli`).
This module holds what all of them share: a deployment's shapes and its weights.
"""

from __future__ import annotations

# Views per call of each model's usual deployment: svr serves the surround node's six cameras in one
# batch (it takes any number); models not listed use their rig size (num_cameras), else 1 (mono node).
DEFAULT_VIEWS = {"svr": 6}


def default_batch(model: str) -> int:
    """Views per call a deployment of ``model`` uses by default (:data:`DEFAULT_VIEWS`, rig size, else 1)."""
    from ..models import get_model_info

    n = get_model_info(model).num_cameras
    return DEFAULT_VIEWS.get(model, n if n > 1 else 1)


def deployment_size(model: str, height: int | None = None, width: int | None = None, weights: str = ""):
    """(height, width) to deploy ``model`` at: as given, else the size ``weights`` (default: the
    embedded default) were trained at, else the model's default; and the warning when a given size
    differs from the trained one (None if not)."""
    from ..engine import EngineConfig, input_size_warning, resolve_input_size

    cfg = EngineConfig(model=model, weights=weights, input_height=height or 0, input_width=width or 0)
    hw = resolve_input_size(cfg)
    return hw, input_size_warning(cfg, hw)


def deployment_shapes(
    model: str,
    height: int | None = None,
    width: int | None = None,
    batch: int | None = None,
    weights: str = "",
) -> dict[str, tuple[int, ...]]:
    """Static input shapes of ``model`` at ``height x width`` (default: the size the weights were
    trained at, :func:`deployment_size`) and ``batch`` views."""
    from ..models import get_model_info

    (h, w), _ = deployment_size(model, height, width, weights)
    return get_model_info(model).input_shapes(batch or default_batch(model), h, w)


def load_model(model: str, weights: str = ""):
    """(torch model, weights source) as the nodes load it: ``weights``, else embedded, else seeded random."""
    from ..engine import DepthEngine

    return DepthEngine._load_torch_model(model, weights)
