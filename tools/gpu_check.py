"""The torch backend on a GPU (or the CPU): parity against CPU fp32 and speed of the three models.

Run through ``tools/gpu_check.sh`` (``--device cuda[:N]`` by default, ``--device cpu`` for the same
on the CPU, ``--quick`` for a small size and one timed call). Needs PyTorch only: no TensorRT, no
network; weights are the embedded defaults (``bore_depth_ros/data``; all three models ship them),
or a model's seeded random initialisation where none is shipped, as the engine loads them.

Parity: every precision's outputs on seeded inputs against the CPU fp32 outputs in the default
layout (the reference). fp32 and fp16 are judged by the engine self-check's stated tolerances
(``backends.selfcheck.TOLERANCES``: fp32 AbsRel <= 1e-4, max rel <= 1e-2; fp16 AbsRel <= 5e-3,
max rel <= 5e-2; confidence by absolute error), bf16 by the torch backend's start gate (median
relative difference <= 1 %). On CUDA, TF32 is switched off so that fp32 means fp32 (cuDNN's default
TF32 convolutions differ from fp32 by ~1e-3). Speed: ``backend.infer`` end to end (host arrays in,
host arrays out, as a node calls it), median over the timed calls, at the model's default size and
at DDAD- and nuScenes-like sizes (384x640, 448x800), in both memory layouts on CUDA.

Prints two Markdown tables (parity, speed); exits 1 when a parity check fails.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

MODELS = ("bore_depth", "svr", "semi_smd")
SIZES = ((384, 640), (448, 800))  # DDAD-like, nuScenes-like (multiples of 32)
QUICK_SIZE = (128, 160)
RIG_VIEWS = 6


def load_model(name: str):
    """(model in eval mode, weights source): the embedded default, else the seeded initialisation."""
    import torch

    from bore_depth_ros.engine import embedded_weights_path
    from bore_depth_ros.models import create_model, load_checkpoint

    path = embedded_weights_path(name)
    if path is not None:
        return load_checkpoint(str(path), model_name=name).eval(), f"embedded:{path.name}"
    torch.manual_seed(0)
    return create_model(name).eval(), "random-init (seed 0)"


def views_per_call(name: str, quick: bool) -> int:
    """Six views (one rig) per call for the surround models, one for bore_depth; svr takes one view
    in quick mode (it runs views independently)."""
    from bore_depth_ros.models import get_model_info

    cameras = get_model_info(name).num_cameras
    if cameras > 1:
        return cameras
    return 1 if name == "bore_depth" or quick else RIG_VIEWS


def precisions_for(device: str) -> list[str]:
    from bore_depth_ros.backends.torch_backend import cpu_bf16_support

    if device.startswith("cuda"):
        return ["fp32", "fp16"]
    return ["fp32", "bf16"] if cpu_bf16_support()[0] else ["fp32"]


def judge(precision: str, outputs, reference) -> tuple[str, str, bool]:
    """(measured, limit, passed) of one precision's outputs against the reference."""
    from bore_depth_ros.backends.selfcheck import self_check
    from bore_depth_ros.backends.torch_backend import BF16_MAX_MEDIAN_REL, precision_gap

    if precision == "bf16":
        gaps = precision_gap(outputs, reference)
        measured = ", ".join(f"{n} median {g:.2%}" for n, g in gaps.items())
        return (
            measured,
            f"median <= {BF16_MAX_MEDIAN_REL:.0%}",
            all(g <= BF16_MAX_MEDIAN_REL for g in gaps.values()),
        )
    report = self_check(outputs, reference, precision)
    measured = ", ".join(
        f"{o.name} AbsRel {o.abs_rel:.2g} max {o.max_rel:.2g}" for o in report.outputs.values()
    )
    tol = report.tolerance
    return measured, f"AbsRel <= {tol.abs_rel:g}, max <= {tol.max_rel:g}", report.passed


def time_calls(backend, feed, iters: int, warmup: int) -> float:
    """Median ms of ``backend.infer(feed)`` over ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        backend.infer(feed)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        backend.infer(feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(device: str, quick: bool, iters: int | None, models: list[str], out=sys.stdout) -> bool:
    import torch

    from bore_depth_ros.backends import create_backend, seeded_inputs
    from bore_depth_ros.backends.torch_backend import resolve_device
    from bore_depth_ros.models import get_model_info

    dev = resolve_device(device)
    say = lambda *a: print(*a, file=out, flush=True)  # noqa: E731
    if dev.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        cudnn = torch.backends.cudnn.version()
        what = f"{torch.cuda.get_device_name(dev)}, CUDA {torch.version.cuda}, cuDNN {cudnn}, TF32 off"
    else:
        from bore_depth_ros.backends.torch_backend import cpu_bf16_support

        what = f"{torch.get_num_threads()} threads, {cpu_bf16_support()[1]}"
    iters = iters or (1 if quick else (20 if dev.type == "cuda" else 3))
    warmup = 0 if quick else (5 if dev.type == "cuda" else 1)  # quick: the parity call warmed up
    precisions = precisions_for(str(dev))
    layouts = ["contiguous", "channels_last"] if dev.type == "cuda" and not quick else ["auto"]
    say(f"gpu_check: device {dev} ({what}), torch {torch.__version__}, quick={quick}, timed calls {iters}")

    parity_rows, speed_rows, ok = [], [], True
    for name in models:
        info = get_model_info(name)
        base, source = load_model(name)
        views = views_per_call(name, quick)
        default = QUICK_SIZE if quick else info.default_input_size
        sizes = [default] if quick else [default, *[s for s in SIZES if s != tuple(default)]]
        for size in sizes:
            shapes = info.input_shapes(views, *size)
            feed = seeded_inputs(shapes, seed=1)
            reference = None
            if size == default:
                ref_backend = create_backend(
                    "torch",
                    model=copy.deepcopy(base),
                    input_shapes=shapes,
                    output_names=info.output_names,
                    memory_format="contiguous",
                )
                reference = ref_backend.infer(feed)
                ref_backend.close()
            for precision in precisions:
                for layout in layouts:
                    backend = create_backend(
                        "torch",
                        model=copy.deepcopy(base),
                        input_shapes=shapes,
                        output_names=info.output_names,
                        device=str(dev),
                        precision=precision,
                        memory_format=layout,
                        bf16_check=False,
                    )
                    used = backend.memory_format
                    if reference is not None:
                        measured, limit, passed = judge(precision, backend.infer(feed), reference)
                        ok &= passed
                        verdict = "PASS" if passed else "FAIL"
                        parity_rows.append((name, source, precision, used, measured, limit, verdict))
                    ms = time_calls(backend, feed, iters, warmup)
                    speed_rows.append(
                        (
                            name,
                            f"{size[0]}x{size[1]}",
                            str(views),
                            precision,
                            used,
                            f"{ms:.1f}",
                            f"{views * 1e3 / ms:.1f}",
                        )
                    )
                    backend.close()
                    del backend
            if dev.type == "cuda":
                torch.cuda.empty_cache()

    say("")
    say(f"parity against CPU fp32 (default layout), seeded inputs, device {dev}:")
    say("")
    table(say, ("model", "weights", "precision", "layout", "measured", "limit", "verdict"), parity_rows)
    say("")
    say(f"speed: backend.infer end to end (host in, host out), median of {iters} call(s):")
    say("")
    table(say, ("model", "input", "views/call", "precision", "layout", "ms/call", "views/s"), speed_rows)
    if not quick and "svr" in models:
        rows = batching_rows(dev, precisions, iters, warmup)
        say("")
        say(f"batching: svr, one {RIG_VIEWS}-view call vs {RIG_VIEWS} one-view calls (median of {iters}):")
        say("")
        table(
            say, ("input", "precision", f"batch-{RIG_VIEWS} ms", f"{RIG_VIEWS} x batch-1 ms", "ratio"), rows
        )
    say("")
    say("gpu_check: " + ("all parity checks passed" if ok else "PARITY FAILED"))
    return ok


def batching_rows(dev, precisions: list[str], iters: int, warmup: int) -> list[tuple[str, ...]]:
    """svr at its default size: ms of one six-view call and of six one-view calls, per precision
    (the models run the views of a call as one batch: no per-view loop on the device)."""
    from bore_depth_ros.backends import create_backend, seeded_inputs
    from bore_depth_ros.models import get_model_info

    info = get_model_info("svr")
    base, _ = load_model("svr")
    hw = info.default_input_size
    six = seeded_inputs(info.input_shapes(RIG_VIEWS, *hw), seed=2)
    singles = [{k: v[i : i + 1].copy() for k, v in six.items()} for i in range(RIG_VIEWS)]
    rows = []
    for precision in precisions:
        made = {}
        for n in (RIG_VIEWS, 1):
            made[n] = create_backend(
                "torch",
                model=copy.deepcopy(base),
                input_shapes=info.input_shapes(n, *hw),
                output_names=info.output_names,
                device=str(dev),
                precision=precision,
                bf16_check=False,
            )
        batched = time_calls(made[RIG_VIEWS], six, iters, warmup)
        for x in singles[:warmup]:
            made[1].infer(x)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            for x in singles:
                made[1].infer(x)
            times.append((time.perf_counter() - t0) * 1e3)
        single = statistics.median(times)
        hw_s = f"{hw[0]}x{hw[1]}"
        rows.append((hw_s, precision, f"{batched:.1f}", f"{single:.1f}", f"{single / batched:.2f}x"))
        for b in made.values():
            b.close()
    return rows


def table(say, header, rows) -> None:
    say("| " + " | ".join(header) + " |")
    say("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        say("| " + " | ".join(r) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tools/gpu_check.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    ap.add_argument(
        "--quick", action="store_true", help=f"one size ({QUICK_SIZE[0]}x{QUICK_SIZE[1]}), one timed call"
    )
    ap.add_argument(
        "--iters", type=int, default=None, help="timed calls per row (default 20 on CUDA, 3 on CPU)"
    )
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    a = ap.parse_args(argv)
    if a.iters is not None and a.iters < 1:
        ap.error(f"--iters must be >= 1, got {a.iters}")
    from bore_depth_ros.backends import BackendUnavailable

    try:
        return 0 if run(a.device, a.quick, a.iters, a.models) else 1
    except (BackendUnavailable, ValueError) as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
