"""Where BoRe-Depth's time goes on this CPU, and how close to the convolution peak it can get.

tools/env.sh-activated shell:  python benchmarks/bench_op_ceiling.py [--size 256x320] [--rounds 7]

Measured in one run on the embedded BoRe-Depth weights (torch backend's CPU layout, channels_last,
all threads):

1. the convolution peak of ``bore-depth bench`` (best of 10, 3x3 64->64, channels_last);
2. one eager forward with every ``nn.Conv2d`` and ``nn.Linear`` timed by forward hooks (the
   median over rounds per layer), grouped into kinds: dense k x k convolutions (k > 1, one group),
   1x1 convolutions, depthwise/grouped convolutions, linear layers, and the rest (attention
   products, softmax, normalisation, activations, copies, resizes: no counted FLOPs);
3. the whole forward eager, and compiled (``TorchBackend(compile=True)``), alternating rounds.

Per kind it prints the share of the FLOPs and of the time, and the kind's GFLOP/s as a percentage
of the peak; then two ceilings: the model's % of peak if the "rest" cost nothing (the best any
fusion can do with these convolution kernels), and if every kind also ran at the best rate this run
measured for it. The ratio eager/compiled comes from the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from torch import nn

from bore_depth_ros.backends import create_backend, seeded_inputs
from bore_depth_ros.bench.table import measure_peaks
from bore_depth_ros.engine import embedded_weights_path
from bore_depth_ros.models import get_model_info, load_checkpoint

KINDS = ("dense kxk conv", "1x1 conv", "depthwise/grouped conv", "linear", "rest")


def kind_of(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    if module.groups > 1:
        return "depthwise/grouped conv"
    return "1x1 conv" if module.kernel_size == (1, 1) else "dense kxk conv"


def layer_flop(module: nn.Module, out: torch.Tensor) -> float:
    if isinstance(module, nn.Linear):
        return 2.0 * out.numel() * module.in_features
    kh, kw = module.kernel_size
    return 2.0 * out.numel() * (module.in_channels // module.groups) * kh * kw


def hooked_forward(model: nn.Module, x: torch.Tensor, rounds: int):
    """(per-layer median seconds, per-layer FLOPs, per-layer kind, median whole-forward seconds)."""
    times: dict[str, list[float]] = defaultdict(list)
    flops: dict[str, float] = {}
    kinds: dict[str, str] = {}
    starts: dict[str, float] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            kinds[name] = kind_of(m)

            def pre(_m, _inp, name=name):
                starts[name] = time.perf_counter()

            def post(m, _inp, out, name=name):
                times[name].append(time.perf_counter() - starts[name])
                flops[name] = layer_flop(m, out)

            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    total = []
    try:
        with torch.inference_mode():
            for _ in range(rounds + 1):
                t0 = time.perf_counter()
                model(x)
                total.append(time.perf_counter() - t0)
    finally:
        for h in handles:
            h.remove()
    per_layer = {n: statistics.median(t[1:]) for n, t in times.items()}  # first round: warm-up
    return per_layer, flops, kinds, statistics.median(total[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256x320")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    name = "bore_depth"
    info = get_model_info(name)
    shapes = info.input_shapes(1, h, w)

    def model() -> nn.Module:
        return load_checkpoint(str(embedded_weights_path(name)), model_name=name)

    peak = measure_peaks("cpu", None, 10).conv_gflops
    eager = create_backend("torch", model=model(), input_shapes=shapes, output_names=info.output_names)
    t0 = time.perf_counter()
    compiled = create_backend(
        "torch", model=model(), input_shapes=shapes, output_names=info.output_names, compile=True
    )
    compile_s = time.perf_counter() - t0
    feed = seeded_inputs(shapes, seed=1)
    x = torch.from_numpy(feed["image"]).contiguous(memory_format=torch.channels_last)
    per_layer, flops, kinds, hooked_s = hooked_forward(eager.model, x, args.rounds)
    te, tc = [], []
    for r in range(args.rounds + 1):
        order = (eager, compiled) if r % 2 == 0 else (compiled, eager)
        for b in order:
            t = time.perf_counter()
            b.infer(feed)
            (te if b is eager else tc).append(time.perf_counter() - t)
    eager_s, compiled_s = statistics.median(te[1:]), statistics.median(tc[1:])
    total_flop = sum(flops.values())
    by_kind = {k: [0.0, 0.0, 0] for k in KINDS}  # seconds, flop, layers
    for n, s in per_layer.items():
        by_kind[kinds[n]][0] += s
        by_kind[kinds[n]][1] += flops[n]
        by_kind[kinds[n]][2] += 1
    by_kind["rest"][0] = max(hooked_s - sum(v[0] for v in by_kind.values()), 0.0)

    print(f"BoRe-Depth {h}x{w}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"convolution peak (bench, best of 10): {peak:.1f} GFLOP/s")
    print(
        f"model: {total_flop / 1e9:.2f} GFLOP (conv + linear); eager forward {eager_s * 1e3:.1f} ms "
        f"({total_flop / eager_s / 1e9 / peak:.1%} of peak), hooked forward {hooked_s * 1e3:.1f} ms"
    )
    pct = total_flop / compiled_s / 1e9 / peak
    print(
        f"compiled (inductor, frozen): {compiled_s * 1e3:.1f} ms ({pct:.1%} "
        f"of peak); eager/compiled {eager_s / compiled_s:.2f}x; compilation {compile_s:.0f} s"
    )
    print()
    print("| kind | layers | share of FLOPs | share of time | GFLOP/s | % of peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, (s, f, n) in by_kind.items():
        if f > 0:
            rate = f / s / 1e9
            cells = f"{n} | {f / total_flop:.1%} | {s / hooked_s:.1%} | {rate:.1f} | {rate / peak:.1%}"
        else:
            cells = f"- | 0 | {s / hooked_s:.1%} | - | -"
        print(f"| {k} | {cells} |")
    layer_s = sum(v[0] for k, v in by_kind.items() if k != "rest")
    print()
    print(
        f"ceiling if the rest cost nothing: {total_flop / layer_s / 1e9 / peak:.1%} of peak "
        f"({layer_s * 1e3:.1f} ms)"
    )
    best = max(f / s for n, s in per_layer.items() if (f := flops[n]) > 0 and s > 0)
    print(f"best single layer of this run: {best / 1e9:.1f} GFLOP/s ({best / 1e9 / peak:.1%} of peak)")


if __name__ == "__main__":
    main()
