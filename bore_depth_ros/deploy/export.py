"""``bore-depth export`` as a library call: every registered model to a checked ONNX file."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..backends.base import shape_str
from ..core.files import claim_outputs
from . import deployment_shapes, deployment_size, load_model


@dataclasses.dataclass(frozen=True)
class ModelExport:
    """Outcome of exporting one model: the report if the file was written, else the error."""

    model: str
    path: Path
    weights: str
    input_shapes: dict[str, tuple[int, ...]]
    report: Any = None  # backends.ExportReport
    error: str = ""
    warning: str = ""  # e.g. a size other than the weights were trained at

    @property
    def ok(self) -> bool:
        return self.report is not None


def export_all(
    models: Sequence[str] | None = None,
    out_dir: str | os.PathLike = "onnx",
    height: int | None = None,
    width: int | None = None,
    batch: int | None = None,
    weights: str = "",
    opset: int | None = None,
    output: str | os.PathLike | None = None,
    force: bool = False,
) -> list[ModelExport]:
    """Export ``models`` (default: every registered model) to ``out_dir/<model>_<N>x3x<H>x<W>.onnx``.

    ``height``/``width`` default to the size the weights were trained at, ``batch`` to each model's
    own (:func:`deployment_shapes`); a forced size other than the trained one is exported with a
    ``warning``. ``weights``
    and ``output`` (an exact file path) need exactly one model (bore_depth if ``models`` is not given
    with ``output``). A model whose graph fails the checker or the parity check is reported with its
    error and nothing is written for it. Raises BackendUnavailable without onnxruntime, ValueError or
    KeyError for bad arguments, FileExistsError for an existing output file unless ``force``, all
    before any model is built.
    """
    from ..backends import ExportMismatch, export_onnx
    from ..backends.export import DEFAULT_OPSET
    from ..backends.runtimes import import_onnxruntime
    from ..models import get_model_info, list_models

    names = list(models) if models else ["bore_depth"] if output else list_models()
    if (weights or output) and len(names) != 1:
        raise ValueError("--weights and --output apply to one model: pass exactly one --models name")
    import_onnxruntime()  # the parity check needs it: fail before any model is built
    plan = []
    for name in names:
        shapes = deployment_shapes(name, height, width, batch, weights)
        _, warning = deployment_size(name, height, width, weights)
        path = Path(output) if output else Path(out_dir) / f"{name}_{shape_str(shapes['image'])}.onnx"
        plan.append((name, shapes, path, warning or ""))
    claim_outputs([path for _, _, path, _ in plan], force)
    results = []
    for name, shapes, path, warning in plan:
        info = get_model_info(name)
        model, source = load_model(name, weights)
        try:
            report = export_onnx(model, path, shapes, info.output_names, opset=opset or DEFAULT_OPSET)
            results.append(ModelExport(name, path, source, shapes, report, warning=warning))
        except (ExportMismatch, ValueError, RuntimeError) as e:
            results.append(
                ModelExport(name, path, source, shapes, error=f"{type(e).__name__}: {e}", warning=warning)
            )
    return results
