"""Fleet evaluation throughput: bags per second serially and on a local Ray with 1 and 2 workers
(one thread each), Ray's start-up cost and the workers' peak RSS; ratios measured in one run.

tools/env.sh-activated shell:  python benchmarks/bench_fleet.py [--bags 6] [--frames 3] [--work DIR]

The bags are rendered once into --work (kept for later runs): six-camera synth recordings at
320x192 without LiDAR; the model is the embedded BoRe-Depth on ONNX Runtime. Ray starts locally,
bound to 127.0.0.1, without dashboard or usage statistics (replay.fleet.start_ray).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def render(work: Path, n: int, frames: int) -> list[str]:
    from bore_depth_ros.sim.recording import RecordingConfig, record

    bags = []
    for i in range(n):
        path = work / f"bag_{i:02d}"
        if not path.exists():
            record(
                path,
                RecordingConfig(rig="surround", frames=frames, seed=500 + i, rate_hz=5.0, lidar=False),
                progress=False,
            )
        bags.append(str(path))
    return bags


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bags", type=int, default=6)
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench_fleet"))
    a = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import torch

    from bore_depth_ros.replay import EvalConfig, fleet

    torch.set_num_threads(1)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    bags = render(work, a.bags, a.frames)
    cfg = lambda out: EvalConfig(  # noqa: E731
        bag="", report_dir=str(out), panels_per_camera=0, threads=1, min_depth=0.5, max_depth=80.0
    )
    rows = []

    def run(name: str, runner) -> dict:
        out = work / f"out_{name}"
        t0 = time.perf_counter()
        s = fleet.evaluate_fleet(cfg(out), bags, out, force=True, progress=False, runner=runner)
        wall = time.perf_counter() - t0
        rows.append((name, len(bags) / wall, wall, s))
        return s

    run("serial", None)
    t0 = time.perf_counter()
    fleet.start_ray("local", num_cpus=2)
    ray_start = time.perf_counter() - t0
    for w in (1, 2):
        run(f"ray_{w}_worker", fleet.ray_runner(fleet.RayPool(workers=w, num_cpus=1)))
    import ray

    ray.shutdown()
    print(f"{len(bags)} bags x {a.frames} six-camera frames (320x192), embedded bore_depth, ONNX Runtime")
    print(f"Ray start-up (ray.init, local, 2 CPUs): {ray_start:.2f} s")
    print("| run | bags/s | wall s | peak RSS per process (MB) |")
    print("|---|---|---|---|")
    for name, bps, wall, s in rows:
        rss = ", ".join(f"{v:.0f}" for v in s["peak_rss_mb"].values())
        print(f"| {name} | {bps:.3f} | {wall:.1f} | {rss} |")
    by = {r[0]: r[1] for r in rows}
    print(f"ratio 2 workers / 1 worker: {by['ray_2_worker'] / by['ray_1_worker']:.2f}")
    print(f"ratio Ray 1 worker / serial: {by['ray_1_worker'] / by['serial']:.2f}")
    lines = [(work / f"out_{n}" / "frames.jsonl").read_text() for n, *_ in rows]
    print("frames.jsonl identical across runs:", all(x == lines[0] for x in lines))


if __name__ == "__main__":
    main()
