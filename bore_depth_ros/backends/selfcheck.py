"""Numeric self-check of a freshly built engine against the ONNX Runtime (CPU, fp32) reference.

Some TensorRT releases build engines that run but compute wrong numbers on Jetson (TensorRT 10.3 on
JetPack 6.x: depth whose scale changes from frame to frame, or plainly wrong output). The check runs
the candidate and ONNX Runtime on fixed seeded inputs (:data:`CHECK_SEEDS`, the first input again at
the end, so an engine that drifts between calls on the same input is caught) and compares every output:

- AbsRel: mean of ``|c - r| / d`` over all elements and frames, ``d = max(|r|, 1 % of max |r|)``;
  outputs with a known value range (:data:`VALUE_RANGES`: confidence in [0, 1]) use ``d = range``,
  i.e. absolute error (``1 - entropy`` confidences near 0 lose most relative precision in fp16 while
  their absolute error stays ~1e-4);
- max rel: the largest such element error;
- off fraction: share of elements whose relative error exceeds ``pixel_rel``;
- scale: per frame, ``median(c / r)`` over elements above the floor; ``|scale - 1|`` must stay small
  (not for value-range outputs);
- any NaN/Inf in the candidate fails.

Tolerances (:data:`TOLERANCES`), candidate vs reference:

=========  ======  =======  =========  ============  =====
precision  AbsRel  max rel  pixel_rel  off fraction  scale
=========  ======  =======  =========  ============  =====
fp32       1e-4    1e-2     1e-3       1e-3          1e-4
fp16       5e-3    5e-2     1e-2       1e-2          2e-3
=========  ======  =======  =========  ============  =====

fp32 engines are built without TF32, so they agree with ONNX Runtime to about 1e-6; fp16 rounding
alone gives AbsRel of a few 1e-4 on the registered models.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from .base import Inputs, InputShapes, validate_input_shapes, validate_output_names
from .runtimes import import_onnxruntime
from .seeded import seeded_inputs

CHECK_SEEDS: tuple[int, ...] = (0, 1, 2, 0)
REL_FLOOR = 0.01  # relative-error denominator floor, as a fraction of the output's largest magnitude
VALUE_RANGES: dict[str, float] = {"confidence": 1.0}  # outputs judged by absolute error over their range

Outputs = Mapping[str, np.ndarray]
Frames = Outputs | Sequence[Outputs]

# (TensorRT version prefix, what is known): shown when an engine built with that version is refused.
KNOWN_NUMERIC_ISSUES: tuple[tuple[str, str], ...] = (
    (
        "10.3",
        "TensorRT 10.3 (JetPack 6.1/6.2) is reported to give frame-varying depth scale and wrong "
        "depth on Jetson Orin; users report it fixed from TensorRT 10.14 on",
    ),
)


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Limits of the self-check; an output fails if any measured value exceeds its limit."""

    abs_rel: float  # mean relative error (AbsRel)
    max_rel: float  # largest relative error of one element
    pixel_rel: float  # an element is "off" above this relative error ...
    off_fraction: float  # ... and at most this share of elements may be off
    scale: float  # |median(candidate / reference) - 1| in every frame


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(abs_rel=1e-4, max_rel=1e-2, pixel_rel=1e-3, off_fraction=1e-3, scale=1e-4),
    "fp16": Tolerance(abs_rel=5e-3, max_rel=5e-2, pixel_rel=1e-2, off_fraction=1e-2, scale=2e-3),
}


def tolerance_for(precision: str) -> Tolerance:
    """The stated tolerance of ``precision`` ("fp32" or "fp16")."""
    try:
        return TOLERANCES[precision]
    except KeyError:
        raise ValueError(
            f"no self-check tolerance for precision '{precision}'; known: {sorted(TOLERANCES)}"
        ) from None


@dataclasses.dataclass(frozen=True)
class OutputCheck:
    """Measured errors of one output over all frames, and the limits it broke (empty if it passed)."""

    name: str
    max_abs: float
    max_rel: float
    abs_rel: float
    off_fraction: float
    frame_scales: tuple[float, ...]
    nonfinite: int
    failures: tuple[str, ...]

    @property
    def scale_error(self) -> float:
        """Largest ``|scale - 1|`` over the frames."""
        return max((abs(s - 1.0) for s in self.frame_scales), default=0.0)


@dataclasses.dataclass(frozen=True)
class SelfCheckReport:
    """Outcome of :func:`self_check`; ``passed`` iff no output broke a limit."""

    precision: str
    tolerance: Tolerance
    frames: int
    outputs: dict[str, OutputCheck]
    reference: str = "onnxruntime CPU fp32"

    @property
    def passed(self) -> bool:
        return all(not o.failures for o in self.outputs.values())

    @property
    def failures(self) -> list[str]:
        return [f"output '{o.name}': {f}" for o in self.outputs.values() for f in o.failures]

    def summary(self) -> str:
        """One line: verdict and the worst figures per output."""
        parts = [
            f"{o.name} AbsRel {o.abs_rel:.2e}, max rel {o.max_rel:.2e}, off {o.off_fraction:.2%}, "
            f"scale err {o.scale_error:.2e}"
            for o in self.outputs.values()
        ]
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"self-check {verdict} ({self.precision} tolerance, {self.frames} frames vs {self.reference}): "
            + "; ".join(parts)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the engine cache sidecar)."""
        return {
            "passed": self.passed,
            "precision": self.precision,
            "frames": self.frames,
            "reference": self.reference,
            "tolerance": dataclasses.asdict(self.tolerance),
            "outputs": {
                n: {**dataclasses.asdict(o), "scale_error": o.scale_error} for n, o in self.outputs.items()
            },
        }


class EngineSelfCheckFailed(RuntimeError):
    """A built engine disagrees with the ONNX Runtime reference beyond tolerance; it was not cached."""

    def __init__(self, message: str, report: SelfCheckReport) -> None:
        super().__init__(message)
        self.report = report


def _frames(x: Frames) -> list[Outputs]:
    return [x] if isinstance(x, Mapping) else list(x)


def _check_output(
    name: str, cands: list[np.ndarray], refs: list[np.ndarray], tol: Tolerance, value_range: float | None
) -> OutputCheck:
    failures: list[str] = []
    abs_errs, rel_errs, scales = [], [], []
    nonfinite = 0
    for i, (c, r) in enumerate(zip(cands, refs)):
        c = np.asarray(c, np.float64)
        r = np.asarray(r, np.float64)
        if c.shape != r.shape:
            failures.append(f"frame {i}: shape {c.shape} != reference {r.shape}")
            continue
        bad = ~np.isfinite(c) & np.isfinite(r)
        nonfinite += int(bad.sum())
        c = np.where(bad, 0.0, c)
        diff = np.abs(c - r)
        abs_errs.append(diff.ravel())
        if value_range:
            rel_errs.append((diff / value_range).ravel())
            continue
        floor = max(REL_FLOOR * float(np.abs(r).max(initial=0.0)), 1e-12)
        rel_errs.append((diff / np.maximum(np.abs(r), floor)).ravel())
        sel = np.abs(r) > floor
        scales.append(float(np.median(c[sel] / r[sel])) if sel.any() else 1.0)
    if not abs_errs:
        return OutputCheck(name, np.inf, np.inf, np.inf, 1.0, (), nonfinite, tuple(failures))
    a, rel = np.concatenate(abs_errs), np.concatenate(rel_errs)
    max_abs = float(a.max(initial=0.0))
    max_rel = float(rel.max(initial=0.0))
    abs_rel = float(rel.mean()) if rel.size else 0.0
    off = float((rel > tol.pixel_rel).mean()) if rel.size else 0.0
    check = OutputCheck(name, max_abs, max_rel, abs_rel, off, tuple(scales), nonfinite, ())
    if nonfinite:
        failures.append(f"{nonfinite} NaN/Inf values where the reference is finite")
    if abs_rel > tol.abs_rel:
        failures.append(f"AbsRel {abs_rel:.3g} > {tol.abs_rel:g}")
    if max_rel > tol.max_rel:
        failures.append(f"max relative error {max_rel:.3g} > {tol.max_rel:g}")
    if off > tol.off_fraction:
        failures.append(
            f"{off:.2%} of values off by more than {tol.pixel_rel:.2%} > {tol.off_fraction:.2%} allowed"
        )
    if check.scale_error > tol.scale:
        failures.append(
            f"scale vs reference off by {check.scale_error:.3g} > {tol.scale:g} "
            f"(per-frame scales {', '.join(f'{s:.4f}' for s in scales)})"
        )
    return dataclasses.replace(check, failures=tuple(failures))


def self_check(
    candidate_outputs: Frames,
    reference_outputs: Frames,
    tolerance: Tolerance | str = "fp32",
    output_names: Sequence[str] | None = None,
    value_ranges: Mapping[str, float] | None = None,
) -> SelfCheckReport:
    """Compare candidate and reference outputs (one ``{name: array}`` or one per frame) under ``tolerance``.

    ``tolerance``: a :class:`Tolerance` or a precision name from :data:`TOLERANCES`. ``output_names``
    defaults to the reference's names; a name missing from the candidate fails. ``value_ranges``
    (default :data:`VALUE_RANGES`): outputs judged by absolute error over their value range.
    """
    ranges = VALUE_RANGES if value_ranges is None else value_ranges
    cands, refs = _frames(candidate_outputs), _frames(reference_outputs)
    if len(cands) != len(refs) or not refs:
        raise ValueError(
            f"got {len(cands)} candidate and {len(refs)} reference frames; need the same number >= 1"
        )
    precision = tolerance if isinstance(tolerance, str) else "custom"
    tol = tolerance_for(tolerance) if isinstance(tolerance, str) else tolerance
    names = validate_output_names(output_names if output_names is not None else tuple(refs[0]))
    outputs = {}
    for n in names:
        if any(n not in c for c in cands):
            outputs[n] = OutputCheck(
                n, np.inf, np.inf, np.inf, 1.0, (), 0, ("missing from the candidate's outputs",)
            )
            continue
        outputs[n] = _check_output(n, [c[n] for c in cands], [r[n] for r in refs], tol, ranges.get(n))
    return SelfCheckReport(precision=precision, tolerance=tol, frames=len(refs), outputs=outputs)


def known_issue_hint(trt_version: str) -> str:
    """What is known about ``trt_version``'s numerics, or general advice."""
    for prefix, text in KNOWN_NUMERIC_ISSUES:
        if trt_version == prefix or trt_version.startswith(prefix + "."):
            return text + "; upgrade TensorRT, or use precision fp32 or backend onnxruntime meanwhile"
    return (
        "if this TensorRT version is known to miscompute on your device (e.g. TensorRT 10.3 on JetPack 6.x), "
        "upgrade TensorRT; otherwise try precision fp32 or backend onnxruntime"
    )


def refuse(report: SelfCheckReport, *, trt_version: str = "", subject: str = "TensorRT engine") -> NoReturn:
    """Raise :class:`EngineSelfCheckFailed` describing ``report``: outputs, errors, tolerances, version
    hint."""
    version = f"TensorRT {trt_version}" if trt_version else "this TensorRT"
    msg = (
        f"refusing the {subject}: it disagrees with the {report.reference} reference on fixed inputs "
        f"({report.frames} frames, {report.precision} tolerance) with {version}: "
        + (
            "; ".join(
                f"output '{o.name}': {', '.join(o.failures)}" for o in report.outputs.values() if o.failures
            )
            or "(no failure recorded)"
        )
        + f". {known_issue_hint(trt_version)}. The engine was not cached "
        "(tolerances: docs/jetson.md, section 'The numeric self-check')."
    )
    raise EngineSelfCheckFailed(msg, report)


def check_inputs(
    input_shapes: InputShapes, seeds: Sequence[int] = CHECK_SEEDS
) -> list[dict[str, np.ndarray]]:
    """One seeded input set per seed (:func:`~bore_depth_ros.backends.seeded.seeded_inputs`)."""
    return [seeded_inputs(input_shapes, s) for s in seeds]


def onnxruntime_reference(
    onnx_path: str | os.PathLike, inputs: Sequence[Mapping[str, np.ndarray]], output_names: Sequence[str]
) -> list[dict[str, np.ndarray]]:
    """ONNX Runtime CPU outputs for each input set (a single-input graph takes the one array by position)."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(os.fspath(onnx_path), opts, providers=["CPUExecutionProvider"])
    graph_inputs = [i.name for i in session.get_inputs()]
    names = list(validate_output_names(output_names))
    out = []
    for x in inputs:
        feed = (
            {graph_inputs[0]: next(iter(x.values()))} if len(graph_inputs) == 1 and len(x) == 1 else dict(x)
        )
        out.append({n: np.asarray(v, np.float32) for n, v in zip(names, session.run(names, feed))})
    return out


def verify_backend(
    infer: Callable[[Inputs], Mapping[str, np.ndarray]],
    onnx_path: str | os.PathLike,
    input_shapes: InputShapes,
    output_names: Sequence[str],
    tolerance: Tolerance | str = "fp32",
    seeds: Sequence[int] = CHECK_SEEDS,
) -> SelfCheckReport:
    """Run ``infer`` (e.g. ``backend.infer``) and ONNX Runtime CPU on ``onnx_path`` on the seeded
    inputs; compare.

    ``infer`` receives ``{name: array}`` keyed by the names of ``input_shapes`` (``"image"`` for one
    shape).
    """
    shapes = validate_input_shapes(input_shapes)
    inputs = check_inputs(shapes, seeds)
    reference = onnxruntime_reference(onnx_path, inputs, output_names)
    candidate = [dict(infer(x)) for x in inputs]
    return self_check(candidate, reference, tolerance, output_names)
