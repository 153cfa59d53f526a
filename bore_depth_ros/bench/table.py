"""The backend benchmark table (``bore-depth bench``): latency p50/p95, views per second and memory
per model x backend x input size x batch; :func:`to_markdown` / :func:`to_csv` write the table.

How close to the hardware: :func:`model_gflop` counts each model's FLOPs once per size and batch
(``torch.utils.flop_counter.FlopCounterMode``: two FLOPs per multiply-add, convolutions and matrix
products only), :func:`measure_peaks` measures in the same run what this machine reaches on a plain
3x3 convolution (torch channels_last and ONNX Runtime, best of several) and a large memory copy;
:func:`apply_peaks` gives each row its achieved GFLOP/s (at p50) and its percentage of the convolution
peak. The percentage is a ceiling check, not a target: depthwise convolutions, attention, resizes and
element-wise layers cannot run at the dense-convolution rate.

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
import logging
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

log = logging.getLogger(__name__)

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
    gflop: float | None = None  # model FLOPs of one call (all views), in 1e9
    gflops: float | None = None  # achieved GFLOP/s at the p50 latency
    peak_pct: float | None = None  # gflops as a percentage of the measured convolution peak
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
        return create_backend("torch", model=model, compile=bool(spec.get("compile")), **kw)
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
    backend = spec["backend"] + (" compiled" if spec.get("compile") else "")
    row = BenchRow(spec["model"], backend, spec["device"], spec["precision"], shape[2], shape[3], shape[0])
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


# ------------------------------------------------------------------------------- FLOPs and peaks

_GFLOP_CACHE: dict[tuple[Any, ...], float] = {}


def model_gflop(name: str, input_shapes: Mapping[str, Sequence[int]], weights: str = "", model=None) -> float:
    """FLOPs (in 1e9) of one forward pass of model ``name`` at ``input_shapes`` (all views of the batch).

    Counted once per model, shapes and weights in this process with ``FlopCounterMode`` (two FLOPs per
    multiply-add; convolutions, matrix products and attention, not element-wise layers). ``model`` avoids
    loading the weights again.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..backends import seeded_inputs

    shapes = {n: tuple(int(d) for d in s) for n, s in input_shapes.items()}
    key = (name, weights, tuple(shapes.items()))
    if key not in _GFLOP_CACHE:
        if model is None:
            model, _ = load_model(name, weights)
        xs = [torch.from_numpy(a) for a in seeded_inputs(shapes).values()]
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model.eval()(*xs)
        _GFLOP_CACHE[key] = counter.get_total_flops() / 1e9
    return _GFLOP_CACHE[key]


@dataclasses.dataclass
class Peaks:
    """What this machine reached in this run: a 3x3 convolution (GFLOP/s) and a memory copy (GB/s)."""

    conv_shape: str  # the convolution measured, e.g. "1x64x128x160, 64->64, 3x3"
    torch_conv_gflops: float | None = None
    ort_conv_gflops: float | None = None
    copy_gbps: float | None = None  # bytes read + bytes written per second, one numpy copy
    notes: tuple[str, ...] = ()

    @property
    def conv_gflops(self) -> float | None:
        """The best convolution rate measured (the denominator of the rows' percentage)."""
        vals = [v for v in (self.torch_conv_gflops, self.ort_conv_gflops) if v]
        return max(vals) if vals else None

    def merge(self, other: Peaks) -> Peaks:
        """The better figure of two measurements (before and after the table) of the same machine."""

        def best(a: float | None, b: float | None) -> float | None:
            return max(a, b) if a is not None and b is not None else a if b is None else b

        return Peaks(
            self.conv_shape,
            best(self.torch_conv_gflops, other.torch_conv_gflops),
            best(self.ort_conv_gflops, other.ort_conv_gflops),
            best(self.copy_gbps, other.copy_gbps),
            tuple(dict.fromkeys(self.notes + other.notes)),
        )

    def line(self) -> str:
        """One sentence for the table's header."""

        def fmt(v: float | None, unit: str) -> str:
            return "not measured" if v is None else f"{v:.1f} {unit}"

        text = (
            f"Peaks measured in this run (best of several): 3x3 convolution {self.conv_shape}, "
            f"float32, {fmt(self.torch_conv_gflops, 'GFLOP/s')} in torch (channels_last) and "
            f"{fmt(self.ort_conv_gflops, 'GFLOP/s')} in ONNX Runtime; memory copy "
            f'{fmt(self.copy_gbps, "GB/s")} (read + write). "% of peak" is a row\'s GFLOP/s at p50 over '
            f"the better convolution figure."
        )
        return text + ("" if not self.notes else " " + " ".join(self.notes))


def _best_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _ort_conv_seconds(
    shape: tuple[int, int, int, int], cout: int, repeats: int, threads: int | None
) -> float:
    from onnx import TensorProto, helper, numpy_helper

    from ..backends.runtimes import import_onnxruntime

    ort = import_onnxruntime()
    n, cin, h, w = shape
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.05, "w")
    bias = numpy_helper.from_array(np.zeros(cout, np.float32), "b")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node],
        "conv3x3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, cout, h, w])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads or 0)
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = rng.random(shape, dtype=np.float32)
    return _best_seconds(lambda: sess.run(None, {"x": x}), repeats)


def measure_peaks(
    device: str = "cpu",
    threads: int | None = None,
    repeats: int = 10,
    shape: tuple[int, int, int, int] = (1, 64, 128, 160),
    copy_mb: int = 256,
) -> Peaks:
    """This machine's convolution peak (torch conv2d 3x3 ``shape`` -> 64 channels, channels_last; the same
    convolution in ONNX Runtime on the CPU) and memory-copy bandwidth, best of ``repeats`` each.

    ``device`` "cuda[:N]" or "tensorrt[:N]" times the torch convolution on that GPU (fp32) and skips
    ONNX Runtime (whose figure is its CPU provider's, also for "openvino");
    ``threads`` as for the table. Figures that cannot be measured here stay None with a note.
    """
    import torch

    n, cin, h, w = shape
    cout = cin
    flop = 2.0 * n * cout * h * w * cin * 9
    peaks = Peaks(f"{n}x{cin}x{h}x{w}, {cin}->{cout}")
    notes = []
    kind = device.partition(":")[0]
    old_threads = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(int(threads))
        if kind in ("cpu", "openvino"):
            tdev = torch.device("cpu")
        elif kind in ("cuda", "tensorrt") and torch.cuda.is_available():
            tdev = torch.device("cuda" + device[len(kind) :])  # ORT's tensorrt[:N] is GPU N
        else:
            tdev = None
            notes.append(f"No torch convolution peak for device '{device}' here.")
        if tdev is not None:
            conv = torch.nn.Conv2d(cin, cout, 3, padding=1).eval().to(tdev)
            x = torch.rand(shape, device=tdev)
            if tdev.type == "cpu":
                conv = conv.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)

            def step() -> None:
                with torch.inference_mode():
                    conv(x)
                if tdev.type == "cuda":
                    torch.cuda.synchronize(tdev)

            peaks.torch_conv_gflops = flop / _best_seconds(step, repeats) / 1e9
    finally:
        torch.set_num_threads(old_threads)
    if kind in ("cpu", "openvino"):
        try:
            peaks.ort_conv_gflops = flop / _ort_conv_seconds(shape, cout, repeats, threads) / 1e9
        except Exception as e:  # noqa: BLE001 - the torch figure still stands
            notes.append(f"No ONNX Runtime convolution peak ({type(e).__name__}: {e}).")
    src = np.ones(copy_mb * (1 << 20) // 4, np.float32)
    dst = np.empty_like(src)
    peaks.copy_gbps = (
        2.0 * src.nbytes / _best_seconds(lambda: np.copyto(dst, src), max(3, repeats // 2)) / 1e9
    )
    peaks.notes = tuple(notes)
    return peaks


def apply_peaks(rows: Iterable[BenchRow], peaks: Peaks | None) -> None:
    """Fill each measured row's achieved GFLOP/s and, given ``peaks``, its percentage of the conv peak."""
    for r in rows:
        if r.gflop is None or not r.p50_ms:
            continue
        r.gflops = r.gflop / (r.p50_ms / 1e3)
        peak = peaks.conv_gflops if peaks is not None else None
        r.peak_pct = 100.0 * r.gflops / peak if peak else None


def _flags() -> list[str]:
    want = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_fp16")
    try:
        with open("/proc/cpuinfo") as f:
            have = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return []
    return [f for f in want if f in have]


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
    compile: bool = False,  # noqa: A002 - the torch backend's option
) -> list[BenchRow]:
    """Measure every model x backend x size x batch (default size and batch: each model's own).

    ``compile``: after each torch row, the torch backend compiled (``compile=True``; its start-up
    compilation is not timed), as backend "torch compiled".

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
                runs = [(b, False) for b in backends]
                if compile and "torch" in backends:
                    runs.insert(runs.index(("torch", False)) + 1, ("torch", True))
                for backend, compiled in runs:
                    base = {
                        "model": name,
                        "backend": backend,
                        "compile": compiled,
                        "device": device,
                        "precision": precision,
                        "output_names": list(info.output_names),
                        "repeats": repeats,
                        "warmup": warmup,
                        "weights": weights,
                        "input_shapes": {"image": (n, 3, h, w)},
                        "threads": threads,
                    }
                    gflop = None
                    try:
                        base["input_shapes"] = deployment_shapes(name, h, w, n, weights)
                        if torch_model is None:
                            torch_model, _ = load_model(name, weights)
                        try:
                            gflop = model_gflop(name, base["input_shapes"], weights, torch_model)
                        except Exception as e:  # noqa: BLE001 - the row's timing still stands
                            log.warning("no FLOP count for %s at %s: %s", name, base["input_shapes"], e)
                        _check_runtime(backend, device)
                        if backend != "torch":
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
                    rows[-1].gflop = gflop
    apply_peaks(rows, None)
    return rows


# ------------------------------------------------------------------- ONNX Runtime session options

# The option sets ``bore-depth bench --session-sweep`` compares (SessionConfig overrides), first the
# previous defaults that every other set is timed against.
SESSION_SWEEP: dict[str, dict[str, Any]] = {
    "previous defaults (all, spinning, session.run)": {"allow_spinning": True, "io_binding": False},
    "defaults (all, no spinning, I/O binding)": {},
    "no spinning, session.run": {"io_binding": False},
    "spinning, I/O binding": {"allow_spinning": True},
    'graph optimisation "basic"': {"graph_optimization": "basic"},
    'graph optimisation "extended"': {"graph_optimization": "extended"},
    'graph optimisation "layout"': {"graph_optimization": "layout"},
    "1 intra-op thread": {"intra_op_threads": 1},
    "parallel execution, 2 inter-op threads": {"execution_mode": "parallel", "inter_op_threads": 2},
    "no memory arena": {"memory_arena": False},
    "no memory pattern": {"memory_pattern": False},
}


@dataclasses.dataclass
class SweepRow:
    """One option set on one model and shape: median and best time, and the ratio to the first set."""

    model: str
    height: int
    width: int
    batch: int
    options: str
    runs: int
    median_ms: float
    min_ms: float
    ratio: float
    max_rel_diff: float  # largest output difference over the first set's largest value


def session_sweep(
    models: Sequence[str] | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
    batches: Sequence[int] | None = None,
    rounds: int = 6,
    per_round: int = 2,
    sets: Mapping[str, Mapping[str, Any]] | None = None,
    weights: str = "",
    cache_dir: str | os.PathLike | None = None,
) -> list[SweepRow]:
    """Time ONNX Runtime session option sets against each other in this process, on the CPU.

    All sessions are built first; then ``rounds`` rounds run ``per_round`` calls of every set, in
    forward order on even rounds and backward on odd ones, so a change of load hits every set alike.
    Medians over all calls. The first set (default :data:`SESSION_SWEEP`'s previous defaults) is
    the reference of the ratios and of the output differences.
    """
    from ..backends import ensure_onnx, seeded_inputs
    from ..backends.onnxruntime_backend import OnnxRuntimeBackend
    from ..models import get_model_info, list_models

    sets = dict(sets or SESSION_SWEEP)
    out: list[SweepRow] = []
    for name in list(models) if models else list_models():
        info = get_model_info(name)
        model, _ = load_model(name, weights)
        for h, w in sizes or [deployment_size(name, weights=weights)[0]]:
            for n in batches or [default_batch(name)]:
                shapes = deployment_shapes(name, h, w, n, weights)
                path = ensure_onnx(model, name, shapes, info.output_names, cache_dir)
                backends = {
                    k: OnnxRuntimeBackend(path, shapes, info.output_names, **kw) for k, kw in sets.items()
                }
                feed = seeded_inputs(shapes)
                outputs = {k: b.infer(feed) for k, b in backends.items()}  # also the warm-up
                ref = next(iter(outputs.values()))
                times: dict[str, list[float]] = {k: [] for k in backends}
                for r in range(rounds):
                    for k in list(backends) if r % 2 == 0 else list(backends)[::-1]:
                        for _ in range(per_round):
                            t0 = time.perf_counter()
                            backends[k].infer(feed)
                            times[k].append((time.perf_counter() - t0) * 1e3)
                for b in backends.values():
                    b.close()
                base = float(np.median(next(iter(times.values()))))
                for k, t in times.items():
                    diff = max(
                        float(np.abs(outputs[k][o] - ref[o]).max() / max(np.abs(ref[o]).max(), 1e-12))
                        for o in ref
                    )
                    med = float(np.median(t))
                    out.append(SweepRow(name, h, w, n, k, len(t), med, float(np.min(t)), med / base, diff))
    return out


def sweep_markdown(rows: Iterable[SweepRow], caption: str | None = None) -> str:
    """The sweep as a Markdown table (with an environment caption unless ``caption=""``)."""
    lines = [] if caption == "" else [caption or f"Measured on {environment_line()}.", ""]
    lines.append(
        "| model | input HxW | views | ONNX Runtime options | runs | median ms | best ms "
        "| time vs first | max output diff |"
    )
    lines.append("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        lines.append(
            f"| {r.model} | {r.height}x{r.width} | {r.batch} | {r.options} | {r.runs} | {r.median_ms:.1f} | "
            f"{r.min_ms:.1f} | {r.ratio:.2f} | {r.max_rel_diff:.1e} |"
        )
    return "\n".join(lines) + "\n"


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
    ("gflop", "GFLOP"),
    ("gflops", "GFLOP/s"),
    ("peak_pct", "% of peak"),
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
    """Date, CPU model, core count, the CPU's vector/matrix flags, the current 1-minute load average and
    the runtime versions, for the table's caption."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = [f"numpy {np.__version__}"]
    for mod in ("torch", "onnxruntime", "tensorrt"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    flags = _flags()
    flag_text = f" (flags: {' '.join(flags)})" if flags else ""
    load = (
        f", 1-min load average {os.getloadavg()[0]:.2f} before the run" if hasattr(os, "getloadavg") else ""
    )
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f"{date}, {cpu}, {os.cpu_count()} logical CPUs{flag_text}{load}, "
        f"Python {platform.python_version()}, " + ", ".join(versions)
    )


def to_markdown(rows: Iterable[BenchRow], caption: str | None = None, peaks: Peaks | None = None) -> str:
    """A Markdown table of ``rows`` (with an environment caption unless ``caption=""``; with the
    :meth:`Peaks.line` of ``peaks`` under it)."""
    rows = list(rows)
    keep = [(k, t) for k, t in _COLUMNS if k != "note" or any(r.note for r in rows)]
    lines = [] if caption == "" else [caption or f"Measured on {environment_line()}.", ""]
    if peaks is not None:
        lines += [peaks.line(), ""]
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
