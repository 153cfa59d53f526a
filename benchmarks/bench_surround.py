"""Surround node figures as ratios measured in one run: batching, fusion versus memory copy,
newest-stamp-to-fused-cloud latency versus model time.

    . tools/env.sh && python benchmarks/bench_surround.py [--frames 8] [--model svr]
"""

import argparse

from bore_depth_ros.bench.nodes import run_surround_bench

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--model", default="svr")
    a = ap.parse_args()
    run_surround_bench(a.frames, a.height, a.width, a.model)
