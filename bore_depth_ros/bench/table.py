"""The backend benchmark table (``bore-depth bench``): latency p50/p95, views per second and memory
per model x backend x input size x batch; :func:`to_markdown` / :func:`to_csv` write the table.

Memory figures (Linux ``/proc/self/status``): ``load_rss_mb`` is the resident set once the backend is
built, before the first inference; ``peak_rss_mb`` the process's peak resident set while warming up
and timing (``VmHWM``, reset with ``/proc/self/clear_refs`` after loading); ``infer_mb`` their
difference (activations, workspaces). Each configuration runs in a fresh process (``isolate=True``:
``python -m bore_depth_ros.bench.table bench-worker``, the spec on stdin) so figures do not
accumulate; in-process runs report only ``infer_mb``. GPU memory that is not mapped into the
process (discrete GPUs) is not counted; on Jetson use tegrastats as well.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..deploy import default_batch, deployment_shapes, deployment_size, load_model

_RESULT_MARK = "BORE_DEPTH_BENCH_RESULT "
_WORKER_MODULE = "bore_depth_ros.bench.table"
DEFAULT_REPEATS = 20
DEFAULT_WARMUP = 3


@dataclasses.dataclass
class BenchRow:
    """One measured configuration; ``note`` explains a configuration that could not run (figures None)."""

    model: str
    backend: str
    device: str
    precision: str
    height: int
    width: int
    batch: int
    repeats: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    fps: float | None = None  # views per second at the p50 latency
    load_rss_mb: float | None = None
    peak_rss_mb: float | None = None
    infer_mb: float | None = None
    threads: int | None = None
    note: str = ""


def _proc_status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _make_backend(spec: Mapping[str, Any]):
    from ..backends import create_backend

    shapes = {n: tuple(s) for n, s in spec["input_shapes"].items()}
    kw = dict(
        input_shapes=shapes,
        output_names=tuple(spec["output_names"]),
        device=spec["device"],
        precision=spec["precision"],
    )
    threads = spec.get("threads")
    if spec["backend"] == "torch":
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        model, _ = load_model(spec["model"], spec.get("weights", ""))
        return create_backend("torch", model=model, **kw)
    if threads and spec["backend"] == "onnxruntime":
        kw["intra_op_threads"] = int(threads)
    return create_backend(spec["backend"], onnx_path=spec["onnx_path"], **kw)


def measure(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Build the backend ``spec`` describes, warm up, time ``repeats`` calls; latencies and memory figures."""
    from ..backends import seeded_inputs

    backend = _make_backend(spec)
    try:
        inputs = seeded_inputs({n: tuple(s) for n, s in spec["input_shapes"].items()})
        feed = inputs if len(inputs) > 1 else next(iter(inputs.values()))
        load_kb = _proc_status_kb("VmRSS")
        reset = _reset_peak_rss()
        for _ in range(int(spec["warmup"])):
            backend.infer(feed)
        times = []
        for _ in range(int(spec["repeats"])):
            t0 = time.perf_counter()
            backend.infer(feed)
            times.append((time.perf_counter() - t0) * 1e3)
        peak_kb = _proc_status_kb("VmHWM") if reset else None
    finally:
        backend.close()
    threads = spec.get("threads")
    if spec["backend"] == "torch":
        import torch

        threads = torch.get_num_threads()
    return {"times_ms": times, "load_rss_kb": load_kb, "peak_rss_kb": peak_kb, "threads": threads}


def _run_isolated(spec: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", _WORKER_MODULE, "bench-worker"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_MARK):
            return json.loads(line[len(_RESULT_MARK) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"worker exited with {proc.returncode}: {tail}"}


def _worker_main() -> int:
    spec = json.loads(sys.stdin.read())
    try:
        result = measure(spec)
    except Exception as e:  # noqa: BLE001 - reported as the row's note by the parent
        result = {"error": f"{type(e).__name__}: {e}"}
    print(_RESULT_MARK + json.dumps(result), flush=True)
    return 0


def _kb_to_mb(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024.0


def _row(spec: Mapping[str, Any], result: Mapping[str, Any]) -> BenchRow:
    shape = spec["input_shapes"]["image"]
    row = BenchRow(
        spec["model"], spec["backend"], spec["device"], spec["precision"], shape[2], shape[3], shape[0]
    )
    if "error" in result:
        row.note = result["error"]
        return row
    t = np.asarray(result["times_ms"], np.float64)
    row.repeats = int(t.size)
    row.p50_ms, row.p95_ms = (float(v) for v in np.percentile(t, [50, 95]))
    row.fps = row.batch * 1e3 / row.p50_ms
    row.peak_rss_mb = _kb_to_mb(result.get("peak_rss_kb"))
    row.load_rss_mb = _kb_to_mb(result.get("load_rss_kb"))
    if row.peak_rss_mb is not None and row.load_rss_mb is not None:
        row.infer_mb = max(row.peak_rss_mb - row.load_rss_mb, 0.0)
    if not result.get("isolated"):
        row.load_rss_mb = row.peak_rss_mb = None  # other configurations share the process
    row.threads = result.get("threads")
    return row


def _check_runtime(backend: str, device: str) -> None:
    """Raise BackendUnavailable now (before any export) if ``backend`` cannot run on ``device`` here."""
    if backend == "tensorrt":
        from ..backends.runtimes import import_tensorrt

        import_tensorrt()
    elif backend == "onnxruntime":
        from ..backends.onnxruntime_backend import resolve_providers

        resolve_providers(device)


def bench_table(
    models: Sequence[str] | None = None,
    backends: Sequence[str] = ("torch", "onnxruntime"),
    sizes: Sequence[tuple[int, int]] | None = None,  # default: the weights' training size
    batches: Sequence[int] | None = None,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    device: str = "cpu",
    precision: str = "fp32",
    isolate: bool = True,
    cache_dir: str | os.PathLike | None = None,
    weights: str = "",
    timeout: float = 3600.0,
    threads: int | None = None,
) -> list[BenchRow]:
    """Measure every model x backend x size x batch (default size and batch: each model's own).

    ``threads``: CPU threads for torch and ONNX Runtime (default: each runtime's own, one per core).
    In-process runs with ``threads`` leave torch at that thread count.

    ONNX files come from the ONNX cache (exported here once, parity-checked). A configuration that
    cannot run (backend not installed, size not allowed, ...) yields a row whose ``note`` says why.
    """
    from ..backends import ensure_onnx
    from ..models import get_model_info, list_models

    rows = []
    for name in list(models) if models else list_models():
        info = get_model_info(name)
        torch_model = None
        for h, w in sizes or [deployment_size(name, weights=weights)[0]]:
            for n in batches or [default_batch(name)]:
                for backend in backends:
                    base = {
                        "model": name,
                        "backend": backend,
                        "device": device,
                        "precision": precision,
                        "output_names": list(info.output_names),
                        "repeats": repeats,
                        "warmup": warmup,
                        "weights": weights,
                        "input_shapes": {"image": (n, 3, h, w)},
                        "threads": threads,
                    }
                    try:
                        base["input_shapes"] = deployment_shapes(name, h, w, n, weights)
                        _check_runtime(backend, device)
                        if backend != "torch":
                            if torch_model is None:
                                torch_model, _ = load_model(name, weights)
                            base["onnx_path"] = os.fspath(
                                ensure_onnx(
                                    torch_model, name, base["input_shapes"], info.output_names, cache_dir
                                )
                            )
                        if isolate:
                            result = _run_isolated(base, timeout)
                            result["isolated"] = True
                        else:
                            result = measure(base)
                    except Exception as e:  # noqa: BLE001 - a row that says why, never a crash of the whole table
                        result = {"error": f"{type(e).__name__}: {e}"}
                    rows.append(_row(base, result))
    return rows


_COLUMNS = (
    ("model", "model"),
    ("backend", "backend"),
    ("device", "device"),
    ("precision", "precision"),
    ("input", "input HxW"),
    ("batch", "views"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("fps", "FPS (views/s)"),
    ("load_rss_mb", "RSS loaded MB"),
    ("peak_rss_mb", "peak RSS MB"),
    ("infer_mb", "inference MB"),
    ("threads", "CPU threads"),
    ("repeats", "runs"),
    ("note", "note"),
)


def _cells(row: BenchRow) -> dict[str, str]:
    d = dataclasses.asdict(row)
    d["input"] = f"{row.height}x{row.width}"
    out = {}
    for k, _ in _COLUMNS:
        v = d[k]
        out[k] = "" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)
    return out


def environment_line() -> str:
    """CPU, core count, runtime versions and the current 1-minute load average, for the table's caption."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = []
    for mod in ("torch", "onnxruntime", "tensorrt"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    load = (
        f", 1-min load average {os.getloadavg()[0]:.2f} before the run" if hasattr(os, "getloadavg") else ""
    )
    return f"{cpu}, {os.cpu_count()} logical CPUs{load}, Python {platform.python_version()}, " + ", ".join(
        versions
    )


def to_markdown(rows: Iterable[BenchRow], caption: str | None = None) -> str:
    """A Markdown table of ``rows`` (with an environment caption unless ``caption=""``)."""
    rows = list(rows)
    keep = [(k, t) for k, t in _COLUMNS if k != "note" or any(r.note for r in rows)]
    lines = [] if caption == "" else [caption or f"Measured on {environment_line()}.", ""]
    lines.append("| " + " | ".join(t for _, t in keep) + " |")
    lines.append(
        "|"
        + "|".join(
            "---" if k in ("model", "backend", "device", "precision", "note") else "---:" for k, _ in keep
        )
        + "|"
    )
    for r in rows:
        c = _cells(r)
        lines.append("| " + " | ".join(c[k].replace("|", "/") for k, _ in keep) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Iterable[BenchRow]) -> str:
    """CSV of ``rows`` with the :class:`BenchRow` field names as header (empty cells for missing figures)."""
    buf = io.StringIO()
    names = [f.name for f in dataclasses.fields(BenchRow)]
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in dataclasses.asdict(r).items()})
    return buf.getvalue()


if __name__ == "__main__":
    if sys.argv[1:] == ["bench-worker"]:
        sys.exit(_worker_main())
    sys.exit(f"usage: python -m {_WORKER_MODULE} bench-worker < spec.json (internal)")
