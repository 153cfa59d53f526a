"""Does a six-view batch pay on this CPU? One svr call on six views against six one-view calls.

tools/env.sh-activated shell:  python benchmarks/bench_batching.py [--rounds 5] [--profile]

Measured in one run, rounds alternating between the variants and, inside a variant, between the
batch-of-6 call and the six batch-1 calls (the order flips every round), so load from other
processes hits both sides alike. Per variant it prints the median ms of one six-view call and of
six one-view calls, and the median over rounds of the per-round ratio (6 x batch-1) / batch-6
(above 1: batching pays). Variants: torch fp32 in the default layout, torch fp32 channels_last
(the CPU default), torch bf16 (channels_last, only on CPUs with native bf16) and ONNX Runtime fp32,
all through ``create_backend`` with the embedded svr weights at 192x320 and seeded inputs.

Then the CPU time (process time on one thread, which other processes' load barely changes) of the
torch variants split into the per-call fixed cost and per-view compute at batch 1 and batch 6, and
the thread scaling of one torch channels_last call (1 thread vs all threads, batch 1 and
batch 6): when one view already keeps every core busy, a batch has no idle core to fill.
``--profile`` adds the per-view time of each op kind at batch 1 and batch 6 (torch.profiler).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bore_depth_ros.backends import create_backend, seeded_inputs
from bore_depth_ros.backends.torch_backend import cpu_bf16_support
from bore_depth_ros.engine import embedded_weights_path
from bore_depth_ros.models import get_model_info, load_checkpoint

MODEL = "svr"
VIEWS = 6


def svr():
    return load_checkpoint(str(embedded_weights_path(MODEL)), model_name=MODEL)


def backends(name: str, hw: tuple[int, int], cache_dir: str | None):
    """(batch-6 backend, batch-1 backend) of variant ``name``."""
    info = get_model_info(MODEL)
    out = []
    for n in (VIEWS, 1):
        shapes = info.input_shapes(n, *hw)
        kw = dict(input_shapes=shapes, output_names=info.output_names)
        if name == "onnxruntime fp32":
            out.append(
                create_backend("onnxruntime", model=svr(), model_name=MODEL, cache_dir=cache_dir, **kw)
            )
        else:
            layout = "contiguous" if "default layout" in name else "channels_last"
            precision = "bf16" if "bf16" in name else "fp32"
            out.append(create_backend("torch", model=svr(), precision=precision, memory_format=layout, **kw))
    return out


def feeds(hw: tuple[int, int]):
    """The six-view feed and its six one-view slices."""
    shapes = get_model_info(MODEL).input_shapes(VIEWS, *hw)
    six = seeded_inputs(shapes, seed=3)
    singles = [{k: np.ascontiguousarray(v[i : i + 1]) for k, v in six.items()} for i in range(VIEWS)]
    return six, singles


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def compare(variants: dict, six, singles, rounds: int) -> dict[str, dict[str, list[float]]]:
    res = {name: {"b6": [], "6xb1": [], "ratio": []} for name in variants}
    for b6, b1 in variants.values():  # warm-up: first calls pay allocation and kernel selection
        b6.infer(six)
        b1.infer(singles[0])
    for r in range(rounds):
        for name, (b6, b1) in variants.items():
            one = lambda b6=b6: b6.infer(six)  # noqa: E731
            many = lambda b1=b1: [b1.infer(x) for x in singles]  # noqa: E731
            if r % 2:
                t_many, t_one = timed(many), timed(one)
            else:
                t_one, t_many = timed(one), timed(many)
            res[name]["b6"].append(t_one)
            res[name]["6xb1"].append(t_many)
            res[name]["ratio"].append(t_many / t_one)
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return res


def thread_scaling(hw, six, singles, rounds: int) -> None:
    """ms of one channels_last fp32 call with 1 thread and with all threads, batch 1 and batch 6."""
    full = torch.get_num_threads()
    b6, b1 = backends("torch fp32 channels_last", hw, None)
    times = {(t, b): [] for t in (1, full) for b in (1, VIEWS)}
    for _ in range(rounds):
        for t in (1, full):
            torch.set_num_threads(t)
            b1.infer(singles[0])
            times[(t, 1)].append(timed(lambda: b1.infer(singles[0])))
            times[(t, VIEWS)].append(timed(lambda: b6.infer(six)) / VIEWS)
    torch.set_num_threads(full)
    print(f"\nthread scaling, torch fp32 channels_last, ms per view (median of {rounds}):")
    print(f"| batch | 1 thread | {full} threads | speed-up |")
    print("|---|---|---|---|")
    for b in (1, VIEWS):
        one, many = statistics.median(times[(1, b)]), statistics.median(times[(full, b)])
        print(f"| {b} | {one:.0f} | {many:.0f} | {one / many:.2f}x |")


def cpu_time(variants: dict, hw, six, singles, rounds: int) -> None:
    """Process CPU time (not wall time) on one intra-op thread: what a call costs in work, which
    other processes' load barely changes (unlike wall time). Splits a view's cost into the per-call
    fixed cost (a forward at 32x64, where compute is ~1/30 of 192x320) and compute, per batch."""
    full = torch.get_num_threads()
    torch.set_num_threads(1)
    info = get_model_info(MODEL)
    tiny_shapes = info.input_shapes(1, 32, 64)
    tiny_feed = seeded_inputs(tiny_shapes, seed=3)
    res = {}
    for name, (b6, b1) in variants.items():
        if not name.startswith("torch"):
            continue  # ONNX Runtime's pool threads spin: its process time is not its work
        layout = "contiguous" if "default layout" in name else "channels_last"
        precision = "bf16" if "bf16" in name else "fp32"
        tiny = create_backend(
            "torch",
            model=svr(),
            input_shapes=tiny_shapes,
            output_names=info.output_names,
            precision=precision,
            memory_format=layout,
            bf16_check=False,
        )
        tiny.infer(tiny_feed)
        b6.infer(six)
        b1.infer(singles[0])
        t = {"fixed": [], "b1": [], "b6": []}
        for _ in range(rounds):
            for key, fn in (
                ("fixed", lambda tiny=tiny: tiny.infer(tiny_feed)),
                ("b1", lambda b1=b1: [b1.infer(x) for x in singles]),
                ("b6", lambda b6=b6: b6.infer(six)),
            ):
                t0 = time.process_time()
                fn()
                t[key].append((time.process_time() - t0) * 1e3 / (1 if key == "fixed" else VIEWS))
        res[name] = {k: statistics.median(v) for k, v in t.items()}
        tiny.close()
    torch.set_num_threads(full)
    print(f"\nCPU time on 1 thread, ms per view (median of {rounds}); fixed = one forward at 32x64:")
    print("| variant | fixed per call | batch 1 | batch 6 | batch-6 compute / batch-1 compute | ratio |")
    print("|---|---|---|---|---|---|")
    for name, r in res.items():
        c1 = r["b1"] - r["fixed"]
        c6 = r["b6"] - r["fixed"] / VIEWS
        ratio = r["b1"] / r["b6"]
        row = f"| {name} | {r['fixed']:.0f} | {r['b1']:.0f} | {r['b6']:.0f} | {c6 / c1:.2f} | {ratio:.2f}x |"
        print(row)


def profile(hw, six, singles) -> None:
    """Per-view self CPU ms of each op kind at batch 1 and batch 6 (channels_last fp32)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    b6, b1 = backends("torch fp32 channels_last", hw, None)
    b6.infer(six)
    b1.infer(singles[0])
    totals = {}
    for label, fn, per in (
        ("b1", lambda: [b1.infer(x) for x in singles], VIEWS),
        ("b6", lambda: b6.infer(six), VIEWS),
    ):
        with prof(activities=[ProfilerActivity.CPU]) as p:
            fn()
        totals[label] = {e.key: (e.self_cpu_time_total / 1e3 / per, e.count / per) for e in p.key_averages()}
    keys = sorted(totals["b1"], key=lambda k: -totals["b1"][k][0])[:15]
    print("\nper-view self CPU ms by op (torch fp32 channels_last; profiler overhead included):")
    print("| op | batch 1 ms | batch 6 ms | calls/view b1 | calls/view b6 |")
    print("|---|---|---|---|---|")
    for k in keys:
        a, b = totals["b1"][k], totals["b6"].get(k, (0.0, 0.0))
        print(f"| {k} | {a[0]:.1f} | {b[0]:.1f} | {a[1]:.0f} | {b[1]:.1f} |")
    for label in ("b1", "b6"):
        ms = sum(v[0] for v in totals[label].values())
        calls = sum(v[1] for v in totals[label].values())
        print(f"{label}: {ms:.0f} ms and {calls:.0f} profiled op calls per view")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--cache-dir", default=None, help="ONNX cache (default $BORE_DEPTH_CACHE/onnx)")
    ap.add_argument("--skip", nargs="*", default=[], help="variants to leave out, e.g. onnxruntime")
    ap.add_argument("--profile", action="store_true", help="per-op breakdown at batch 1 and 6")
    ap.add_argument("--cpu-time-only", action="store_true", help="only the 1-thread CPU-time table")
    a = ap.parse_args()
    hw = (a.height, a.width)
    names = ["torch fp32 default layout", "torch fp32 channels_last"]
    if cpu_bf16_support()[0]:
        names.append("torch bf16 channels_last")
    names.append("onnxruntime fp32")
    names = [n for n in names if not any(s in n for s in a.skip)]
    if a.cpu_time_only:
        names = [n for n in names if n.startswith("torch")]
    print(
        f"svr {hw[0]}x{hw[1]}, {VIEWS} views: one batch-{VIEWS} call vs {VIEWS} batch-1 calls; torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads; CPU bf16: {cpu_bf16_support()[1]}"
    )
    variants = {n: backends(n, hw, a.cache_dir) for n in names}
    six, singles = feeds(hw)
    if a.cpu_time_only:
        cpu_time(variants, hw, six, singles, a.rounds)
        return
    res = compare(variants, six, singles, a.rounds)
    print(
        f"\nms, median of {a.rounds} alternating rounds; ratio = (6 x batch-1) / batch-6, per-round median:"
    )
    print("| variant | batch-6 call | 6 x batch-1 | ratio | ms per view (batched) |")
    print("|---|---|---|---|---|")
    for n, r in res.items():
        b6, b1, ratio = (statistics.median(r[k]) for k in ("b6", "6xb1", "ratio"))
        print(f"| {n} | {b6:.0f} | {b1:.0f} | {ratio:.2f}x | {b6 / VIEWS:.0f} |")
    cpu_time(variants, hw, six, singles, a.rounds)
    for b6, b1 in variants.values():
        b6.close()
        b1.close()
    thread_scaling(hw, six, singles, a.rounds)
    if a.profile:
        profile(hw, six, singles)


if __name__ == "__main__":
    main()
