"""Deployment commands: ONNX export of every model, TensorRT engine prebuild, backend benchmark table.

- :func:`export_all`: each registered model to ONNX at a fixed input size and batch (views), checked
  with the ONNX checker and against PyTorch through ONNX Runtime before the file is written.
- :func:`prebuild`: build (or reuse) the cached, self-checked TensorRT engine a node will load, so
  the node starts in seconds. Needs TensorRT and a GPU; elsewhere it fails with BackendUnavailable.
- :func:`bench_table`: latency p50/p95, views per second and memory per model x backend x size x
  batch; :func:`to_markdown` / :func:`to_csv` write the table.

Memory figures (Linux ``/proc/self/status``): ``load_rss_mb`` is the resident set once the backend is
built, before the first inference; ``peak_rss_mb`` the process's peak resident set while warming up
and timing (``VmHWM``, reset with ``/proc/self/clear_refs`` after loading); ``infer_mb`` their
difference (activations, workspaces). Each configuration runs in a fresh process (``isolate=True``)
so figures do not accumulate; in-process runs report only ``infer_mb``. GPU memory that is not
mapped into the process (discrete GPUs) is not counted; on Jetson use tegrastats as well.
"""
from __future__ import annotations

import argparse
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

from .backends.base import BackendUnavailable, shape_str

_RESULT_MARK = "BORE_DEPTH_BENCH_RESULT "
DEFAULT_REPEATS = 20
DEFAULT_WARMUP = 3


# --------------------------------------------------------------------------------------------- export

# Views per call of each model's usual deployment: svr serves the surround node's six cameras in one
# batch (it takes any number); models not listed use their rig size (num_cameras), else 1 (mono node).
DEFAULT_VIEWS = {"svr": 6}


def default_batch(model: str) -> int:
    """Views per call a deployment of ``model`` uses by default (:data:`DEFAULT_VIEWS`, rig size, else 1)."""
    from .models import get_model_info

    n = get_model_info(model).num_cameras
    return DEFAULT_VIEWS.get(model, n if n > 1 else 1)


def deployment_shapes(model: str, height: int | None = None, width: int | None = None,
                      batch: int | None = None) -> dict[str, tuple[int, ...]]:
    """Static input shapes of ``model`` at ``height x width`` (default: the model's) and ``batch`` views."""
    from .models import get_model_info

    info = get_model_info(model)
    h, w = info.default_input_size
    return info.input_shapes(batch or default_batch(model), height or h, width or w)


@dataclasses.dataclass(frozen=True)
class ModelExport:
    """Outcome of exporting one model: the report if the file was written, else the error."""

    model: str
    path: Path
    weights: str
    input_shapes: dict[str, tuple[int, ...]]
    report: Any = None      # backends.ExportReport
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.report is not None


def _load_model(model: str, weights: str = ""):
    from .engine import DepthEngine

    return DepthEngine._load_torch_model(model, weights)


def export_all(models: Sequence[str] | None = None, out_dir: str | os.PathLike = "onnx", height: int | None = None,
               width: int | None = None, batch: int | None = None, weights: str = "", opset: int | None = None,
               output: str | os.PathLike | None = None) -> list[ModelExport]:
    """Export ``models`` (default: every registered model) to ``out_dir/<model>_<N>x3x<H>x<W>.onnx``.

    ``height``/``width``/``batch`` default to each model's own (:func:`deployment_shapes`); ``weights``
    and ``output`` (an exact file path) need exactly one model (bore_depth if ``models`` is not given
    with ``output``). A model whose graph fails the checker or the parity check is reported with its
    error and nothing is written for it.
    """
    from .backends import ExportMismatch, export_onnx
    from .backends.export import DEFAULT_OPSET
    from .backends.runtimes import import_onnxruntime
    from .models import get_model_info, list_models

    names = list(models) if models else ["bore_depth"] if output else list_models()
    if (weights or output) and len(names) != 1:
        raise ValueError("--weights and --output apply to one model: pass exactly one --models name")
    import_onnxruntime()  # the parity check needs it: fail before any model is built
    results = []
    for name in names:
        info = get_model_info(name)
        shapes = deployment_shapes(name, height, width, batch)
        path = Path(output) if output else Path(out_dir) / f"{name}_{shape_str(shapes['image'])}.onnx"
        model, source = _load_model(name, weights)
        try:
            report = export_onnx(model, path, shapes, info.output_names, opset=opset or DEFAULT_OPSET)
            results.append(ModelExport(name, path, source, shapes, report))
        except (ExportMismatch, ValueError, RuntimeError) as e:
            results.append(ModelExport(name, path, source, shapes, error=f"{type(e).__name__}: {e}"))
    return results


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bore-depth export``."""
    p.add_argument("--models", "--model", nargs="*", default=None, metavar="NAME",
                   help="models to export (default: every registered model; bore_depth with --output)")
    p.add_argument("--out-dir", default="onnx", help="folder for <model>_<N>x3x<H>x<W>.onnx (default: onnx)")
    p.add_argument("--output", default=None, help="exact output file (one model)")
    p.add_argument("--height", type=int, default=None, help="input height (default: the model's)")
    p.add_argument("--width", type=int, default=None, help="input width (default: the model's)")
    p.add_argument("--batch", type=int, default=None,
                   help="views per call, fixed in the graph (default: 6 for svr and semi_smd, 1 for bore_depth)")
    p.add_argument("--weights", default="", help="checkpoint (one model only; default: embedded/seeded)")
    p.add_argument("--opset", type=int, default=None)


def run_export(args: argparse.Namespace) -> int:
    """``bore-depth export``: 0 if every model was exported, 1 if any failed, 2 if a runtime is missing."""
    try:
        results = export_all(args.models, args.out_dir, args.height, args.width, args.batch, args.weights,
                             args.opset, args.output)
    except (BackendUnavailable, ValueError, KeyError) as e:
        print(f"bore-depth export: {e}", file=sys.stderr)
        return 2
    for r in results:
        shapes = ",".join(f"{n}={shape_str(s)}" for n, s in r.input_shapes.items())
        if r.ok:
            errs = ", ".join(f"{n} abs {r.report.max_abs_err[n]:.1e} rel {r.report.max_rel_err[n]:.1e}"
                             for n in r.report.output_names)
            print(f"{r.model}: {r.path} ({shapes}; weights {r.weights}); ONNX Runtime vs PyTorch max err: {errs}")
        else:
            print(f"{r.model}: NOT written ({shapes}): {r.error}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


# ------------------------------------------------------------------------------------------- prebuild

def onnx_io(onnx_path: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], tuple[str, ...]]:
    """Static input shapes (in graph order) and output names of an ONNX file; ValueError on dynamic dims."""
    import onnx

    graph = onnx.load(os.fspath(onnx_path), load_external_data=False).graph
    shapes = {}
    for i in graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in i.type.tensor_type.shape.dim]
        if not dims or not all(d > 0 for d in dims):
            raise ValueError(f"{onnx_path}: input '{i.name}' has dynamic or unknown dims; export with fixed shapes")
        shapes[i.name] = tuple(dims)
    return shapes, tuple(o.name for o in graph.output)


def prebuild(model: str | None = "bore_depth", onnx: str | os.PathLike | None = None, weights: str = "",
             height: int | None = None, width: int | None = None, batch: int | None = None,
             precision: str = "fp32", device: str = "cuda", cache_dir: str | os.PathLike | None = None,
             engine_cache_dir: str | os.PathLike | None = None, force_rebuild: bool = False) -> dict[str, str]:
    """Build (or find) the TensorRT engine a node with the same settings will load; returns its description.

    With ``onnx`` the file's own shapes are used; otherwise ``model`` is loaded like the nodes do (same
    ONNX cache file, hence the same engine key). Raises BackendUnavailable without TensorRT/CUDA and
    EngineSelfCheckFailed if the built engine disagrees with ONNX Runtime.
    """
    from .backends import create_backend
    from .backends.runtimes import import_tensorrt
    from .models import get_model_info

    import_tensorrt()  # fail fast, before loading or exporting anything
    kw = dict(device=device, precision=precision, force_rebuild=force_rebuild, engine_cache_dir=engine_cache_dir)
    if onnx is not None:
        shapes, outputs = onnx_io(onnx)
        backend = create_backend("tensorrt", onnx_path=onnx, input_shapes=shapes, output_names=outputs, **kw)
    else:
        info = get_model_info(model)
        torch_model, _ = _load_model(model, weights)
        backend = create_backend("tensorrt", model=torch_model, model_name=model,
                                 input_shapes=deployment_shapes(model, height, width, batch),
                                 output_names=info.output_names, cache_dir=cache_dir, **kw)
    try:
        return backend.describe()
    finally:
        backend.close()


def add_prebuild_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bore-depth prebuild``."""
    p.add_argument("--model", default="bore_depth")
    p.add_argument("--onnx", default=None, help="build from this ONNX file instead of --model")
    p.add_argument("--weights", default="")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--engine-cache-dir", default=None, help="default: $BORE_DEPTH_CACHE/engines")
    p.add_argument("--force-rebuild", action="store_true", help="ignore a cached engine")
    p.add_argument("--list", action="store_true", help="list the cached engines and exit")


def list_engines(engine_cache_dir: str | os.PathLike | None = None) -> list[str]:
    """One line per cached engine: file, precision, shapes, TensorRT, GPU, self-check verdict."""
    from .backends.engine_cache import EngineCache

    cache = EngineCache(engine_cache_dir)
    lines = []
    for e in cache.entries():
        if e.key is None:
            lines.append(f"{e.path.name}: unreadable or missing sidecar (will be rebuilt)")
            continue
        check = (e.sidecar.get("self_check") or {}).get("passed")
        shapes = ",".join(f"{n}={shape_str(s)}" for n, s in e.key.input_shapes)
        lines.append(f"{e.path.name}: {e.key.precision} {shapes} TensorRT {e.key.trt_version} {e.key.gpu_name} "
                     f"sm{e.key.compute_capability} built {e.sidecar.get('built_at')} self-check "
                     f"{'passed' if check else 'not run' if check is None else 'FAILED'}")
    return lines


def run_prebuild(args: argparse.Namespace) -> int:
    """``bore-depth prebuild``: 0 on success, 2 if TensorRT/CUDA is missing, 3 if the self-check refused."""
    from .backends import EngineSelfCheckFailed

    if args.list:
        lines = list_engines(args.engine_cache_dir)
        print("\n".join(lines) if lines else "no cached engines")
        return 0
    try:
        facts = prebuild(args.model, args.onnx, args.weights, args.height, args.width, args.batch, args.precision,
                         args.device, None, args.engine_cache_dir, args.force_rebuild)
    except BackendUnavailable as e:
        print(f"bore-depth prebuild: {e}", file=sys.stderr)
        return 2
    except EngineSelfCheckFailed as e:
        print(f"bore-depth prebuild: {e}", file=sys.stderr)
        return 3
    print("\n".join(f"{k}: {v}" for k, v in facts.items()))
    return 0


# ---------------------------------------------------------------------------------------------- bench

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
    fps: float | None = None          # views per second at the p50 latency
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
    from .backends import create_backend

    shapes = {n: tuple(s) for n, s in spec["input_shapes"].items()}
    kw = dict(input_shapes=shapes, output_names=tuple(spec["output_names"]), device=spec["device"],
              precision=spec["precision"])
    threads = spec.get("threads")
    if spec["backend"] == "torch":
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        model, _ = _load_model(spec["model"], spec.get("weights", ""))
        return create_backend("torch", model=model, **kw)
    if threads and spec["backend"] == "onnxruntime":
        kw["intra_op_threads"] = int(threads)
    return create_backend(spec["backend"], onnx_path=spec["onnx_path"], **kw)


def measure(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Build the backend ``spec`` describes, warm up, time ``repeats`` calls; latencies and memory figures."""
    from .backends import seeded_inputs

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
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "bore_depth_ros.deploy", "bench-worker"], input=json.dumps(spec),
                          capture_output=True, text=True, timeout=timeout, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_MARK):
            return json.loads(line[len(_RESULT_MARK):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"worker exited with {proc.returncode}: {tail}"}


def _worker_main() -> int:
    spec = json.loads(sys.stdin.read())
    try:
        result = measure(spec)
    except Exception as e:  # reported as the row's note by the parent
        result = {"error": f"{type(e).__name__}: {e}"}
    print(_RESULT_MARK + json.dumps(result), flush=True)
    return 0


def _row(spec: Mapping[str, Any], result: Mapping[str, Any]) -> BenchRow:
    shape = spec["input_shapes"]["image"]
    row = BenchRow(spec["model"], spec["backend"], spec["device"], spec["precision"], shape[2], shape[3], shape[0])
    if "error" in result:
        row.note = result["error"]
        return row
    t = np.asarray(result["times_ms"], np.float64)
    row.repeats = int(t.size)
    row.p50_ms, row.p95_ms = (float(v) for v in np.percentile(t, [50, 95]))
    row.fps = row.batch * 1e3 / row.p50_ms
    mb = (lambda kb: None if kb is None else kb / 1024.0)
    row.peak_rss_mb = mb(result.get("peak_rss_kb"))
    row.load_rss_mb = mb(result.get("load_rss_kb"))
    if row.peak_rss_mb is not None and row.load_rss_mb is not None:
        row.infer_mb = max(row.peak_rss_mb - row.load_rss_mb, 0.0)
    if not result.get("isolated"):
        row.load_rss_mb = row.peak_rss_mb = None  # other configurations share the process
    row.threads = result.get("threads")
    return row


def _check_runtime(backend: str, device: str) -> None:
    """Raise BackendUnavailable now (before any export) if ``backend`` cannot run on ``device`` here."""
    if backend == "tensorrt":
        from .backends.runtimes import import_tensorrt

        import_tensorrt()
    elif backend == "onnxruntime":
        from .backends.onnxruntime_backend import resolve_providers

        resolve_providers(device)


def bench_table(models: Sequence[str] | None = None, backends: Sequence[str] = ("torch", "onnxruntime"),
                sizes: Sequence[tuple[int, int]] | None = None, batches: Sequence[int] | None = None,
                repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP, device: str = "cpu",
                precision: str = "fp32", isolate: bool = True, cache_dir: str | os.PathLike | None = None,
                weights: str = "", timeout: float = 3600.0, threads: int | None = None) -> list[BenchRow]:
    """Measure every model x backend x size x batch (default size and batch: each model's own).

    ``threads``: CPU threads for torch and ONNX Runtime (default: each runtime's own, one per core).
    In-process runs with ``threads`` leave torch at that thread count.

    ONNX files come from the ONNX cache (exported here once, parity-checked). A configuration that
    cannot run (backend not installed, size not allowed, ...) yields a row whose ``note`` says why.
    """
    from .backends import ensure_onnx
    from .models import get_model_info, list_models

    rows = []
    for name in (list(models) if models else list_models()):
        info = get_model_info(name)
        torch_model = None
        for (h, w) in (sizes or [info.default_input_size]):
            for n in (batches or [default_batch(name)]):
                for backend in backends:
                    base = {"model": name, "backend": backend, "device": device, "precision": precision,
                            "output_names": list(info.output_names), "repeats": repeats, "warmup": warmup,
                            "weights": weights, "input_shapes": {"image": (n, 3, h, w)}, "threads": threads}
                    try:
                        base["input_shapes"] = deployment_shapes(name, h, w, n)
                        _check_runtime(backend, device)
                        if backend != "torch":
                            if torch_model is None:
                                torch_model, _ = _load_model(name, weights)
                            base["onnx_path"] = os.fspath(ensure_onnx(torch_model, name, base["input_shapes"],
                                                                      info.output_names, cache_dir))
                        if isolate:
                            result = _run_isolated(base, timeout)
                            result["isolated"] = True
                        else:
                            result = measure(base)
                    except Exception as e:  # a row that says why, never a crash of the whole table
                        result = {"error": f"{type(e).__name__}: {e}"}
                    rows.append(_row(base, result))
    return rows


_COLUMNS = (("model", "model"), ("backend", "backend"), ("device", "device"), ("precision", "precision"),
            ("input", "input HxW"), ("batch", "views"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
            ("fps", "FPS (views/s)"), ("load_rss_mb", "RSS loaded MB"), ("peak_rss_mb", "peak RSS MB"),
            ("infer_mb", "inference MB"), ("threads", "CPU threads"), ("repeats", "runs"), ("note", "note"))


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
    load = f", 1-min load average {os.getloadavg()[0]:.2f} before the run" if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {os.cpu_count()} logical CPUs{load}, Python {platform.python_version()}, "
            + ", ".join(versions))


def to_markdown(rows: Iterable[BenchRow], caption: str | None = None) -> str:
    """A Markdown table of ``rows`` (with an environment caption unless ``caption=""``)."""
    rows = list(rows)
    keep = [(k, t) for k, t in _COLUMNS if k != "note" or any(r.note for r in rows)]
    lines = [] if caption == "" else [caption or f"Measured on {environment_line()}.", ""]
    lines.append("| " + " | ".join(t for _, t in keep) + " |")
    lines.append("|" + "|".join("---" if k in ("model", "backend", "device", "precision", "note") else "---:"
                                for k, _ in keep) + "|")
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


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x320, got '{text}'") from None
    return h, w


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bore-depth bench``."""
    p.add_argument("--models", nargs="*", default=None, metavar="NAME", help="default: every registered model")
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"],
                   choices=["torch", "onnxruntime", "tensorrt"])
    p.add_argument("--sizes", nargs="*", type=_size, default=None, metavar="HxW",
                   help="input sizes (default: each model's own)")
    p.add_argument("--batches", nargs="*", type=int, default=None, metavar="N",
                   help="views per call (default: 6 for svr and semi_smd, 1 for bore_depth)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP)
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N] (torch, tensorrt) | tensorrt[:N] (onnxruntime)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch and ONNX Runtime (default: the runtimes' own)")
    p.add_argument("--in-process", action="store_true",
                   help="measure in this process (faster; no per-configuration RSS figures)")
    p.add_argument("--md", default=None, help="write the Markdown table here")
    p.add_argument("--csv", default=None, help="write the CSV here")


def run_bench(args: argparse.Namespace) -> int:
    """``bore-depth bench``: print the Markdown table, write it to ``--md``/``--csv``; 1 if a row failed."""
    caption = f"Measured on {environment_line()}."
    rows = bench_table(args.models, args.backends, args.sizes, args.batches, args.repeats, args.warmup,
                       args.device, args.precision, isolate=not args.in_process, threads=args.threads)
    md = to_markdown(rows, caption)
    print(md, end="")
    for path, text in ((args.md, md), (args.csv, to_csv(rows) if args.csv else "")):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    return 1 if any(r.note for r in rows) else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["bench-worker"]:
        sys.exit(_worker_main())
    sys.exit("usage: python -m bore_depth_ros.deploy bench-worker < spec.json (internal)")
