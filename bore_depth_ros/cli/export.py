"""``bore-depth export``: export models to ONNX, checked against PyTorch through ONNX Runtime."""

from __future__ import annotations

import argparse
import sys

from .argtypes import folder, model_name, positive_int
from .errors import command

HELP = "export models to ONNX (checked against PyTorch through ONNX Runtime)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models",
        "--model",
        nargs="*",
        type=model_name,
        default=None,
        metavar="NAME",
        help="models to export (default: every registered model; bore_depth with --output)",
    )
    p.add_argument(
        "--out-dir", type=folder, default="onnx", help="folder for <model>_<N>x3x<H>x<W>.onnx (default: onnx)"
    )
    p.add_argument("--output", default=None, help="exact output file (one model)")
    p.add_argument(
        "--height", type=positive_int, default=None, help="input height (default: the weights' training size)"
    )
    p.add_argument(
        "--width", type=positive_int, default=None, help="input width (default: the weights' training size)"
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        default=None,
        help="views per call, fixed in the graph (default: 6 for svr and semi_smd, 1 for bore_depth)",
    )
    p.add_argument("--weights", default="", help="checkpoint (one model only; default: embedded/seeded)")
    p.add_argument("--opset", type=positive_int, default=None)
    p.add_argument("--force", action="store_true", help="replace existing ONNX files")


@command("export")
def run(args: argparse.Namespace) -> int:
    """0 if every model was exported, 1 if any failed, 2 if a runtime is missing or an argument is bad."""
    from ..backends.base import shape_str
    from ..deploy.export import export_all

    results = export_all(
        args.models,
        args.out_dir,
        args.height,
        args.width,
        args.batch,
        args.weights,
        args.opset,
        args.output,
        force=args.force,
    )
    for r in results:
        if r.warning:
            print(f"bore-depth export: warning: {r.model}: {r.warning}", file=sys.stderr)
        shapes = ",".join(f"{n}={shape_str(s)}" for n, s in r.input_shapes.items())
        if r.ok:
            errs = ", ".join(
                f"{n} abs {r.report.max_abs_err[n]:.1e} rel {r.report.max_rel_err[n]:.1e}"
                for n in r.report.output_names
            )
            print(
                f"{r.model}: {r.path} ({shapes}; weights {r.weights}); "
                f"ONNX Runtime vs PyTorch max err: {errs}"
            )
        else:
            print(f"{r.model}: NOT written ({shapes}): {r.error}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1
