"""Mono node overhead and backend comparison; prints ratios measured in one run.

tools/env.sh-activated shell:  python benchmarks/bench_mono.py [--frames 20]
"""

import argparse

from bore_depth_ros.bench.nodes import run_mono_bench

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=320)
    a = ap.parse_args()
    run_mono_bench(a.frames, a.height, a.width)
