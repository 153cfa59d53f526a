"""``bore-depth bench``: latency/FPS/memory table per model, backend, size and batch, with each row's
FLOPs, achieved GFLOP/s and percentage of this machine's convolution peak measured in the same run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bench.table import DEFAULT_REPEATS, DEFAULT_WARMUP
from .argtypes import model_name, non_negative_int, positive_int, size
from .errors import command

HELP = "latency/FPS/memory/% of peak table per model, backend, size and batch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models",
        nargs="*",
        type=model_name,
        default=None,
        metavar="NAME",
        help="default: every registered model",
    )
    p.add_argument(
        "--backends",
        nargs="+",
        default=["torch", "onnxruntime"],
        choices=["torch", "onnxruntime", "tensorrt"],
    )
    p.add_argument(
        "--sizes",
        nargs="*",
        type=size,
        default=None,
        metavar="HxW",
        help="input sizes (default: the size each model's weights were trained at)",
    )
    p.add_argument(
        "--batches",
        nargs="*",
        type=positive_int,
        default=None,
        metavar="N",
        help="views per call (default: 6 for svr and semi_smd, 1 for bore_depth)",
    )
    p.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS)
    p.add_argument("--warmup", type=non_negative_int, default=DEFAULT_WARMUP)
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu | cuda[:N] (torch, tensorrt) | tensorrt[:N] or openvino (onnxruntime)",
    )
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch and ONNX Runtime (default: the runtimes' own)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time the torch backend compiled (torch.compile, inductor; minutes of compilation "
        "per row on a small CPU, not timed), as rows 'torch compiled'",
    )
    p.add_argument(
        "--peak-repeats",
        type=non_negative_int,
        default=10,
        metavar="N",
        help="timed calls of the convolution and memory-copy peaks, before and after the table "
        "(best of N; 0: no peaks, no %% of peak)",
    )
    p.add_argument(
        "--session-sweep",
        type=positive_int,
        nargs="?",
        const=6,
        default=None,
        metavar="ROUNDS",
        help="instead of the table: time every ONNX Runtime session option set against the previous "
        "defaults on the CPU, in alternating rounds (default 6) in this process (docs/benchmarks.md)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (faster; no per-configuration RSS figures)",
    )
    p.add_argument("--md", default=None, help="write the Markdown table here")
    p.add_argument("--csv", default=None, help="write the CSV here")
    p.add_argument("--force", action="store_true", help="replace existing --md/--csv files")


@command("bench")
def run(args: argparse.Namespace) -> int:
    """Print the Markdown table, write it to ``--md``/``--csv``; 1 if a row failed."""
    from ..bench.table import apply_peaks, bench_table, environment_line, measure_peaks, to_csv, to_markdown
    from ..core.files import claim_outputs

    # refuse to replace a user's file before measuring anything
    claim_outputs([Path(p) for p in (args.md, args.csv) if p], args.force)

    caption = f"Measured on {environment_line()}."
    if args.session_sweep:
        return _sweep(args, caption)
    peaks = None
    if args.peak_repeats:
        peaks = measure_peaks(args.device, args.threads, args.peak_repeats)
    rows = bench_table(
        args.models,
        args.backends,
        args.sizes,
        args.batches,
        args.repeats,
        args.warmup,
        args.device,
        args.precision,
        isolate=not args.in_process,
        threads=args.threads,
        compile=args.compile,
    )
    if peaks is not None:
        # best of before and after the table: the CPU may be shared, so take its least-disturbed figure
        peaks = peaks.merge(measure_peaks(args.device, args.threads, args.peak_repeats))
        apply_peaks(rows, peaks)
    md = to_markdown(rows, caption, peaks)
    print(md, end="")
    for path, text in ((args.md, md), (args.csv, to_csv(rows) if args.csv else "")):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    return 1 if any(r.note for r in rows) else 0


def _sweep(args: argparse.Namespace, caption: str) -> int:
    import csv
    import dataclasses
    import io

    from ..bench.table import SweepRow, session_sweep, sweep_markdown

    if args.device != "cpu":
        raise ValueError(f"--session-sweep times ONNX Runtime's CPU provider; got --device {args.device}")
    rows = session_sweep(args.models, args.sizes, args.batches, rounds=args.session_sweep)
    md = sweep_markdown(rows, caption)
    print(md, end="")
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(md)
    if args.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([f.name for f in dataclasses.fields(SweepRow)])
        writer.writerows(dataclasses.astuple(r) for r in rows)
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        Path(args.csv).write_text(buf.getvalue())
    return 0
