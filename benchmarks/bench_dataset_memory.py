"""Peak memory of a training-dataset pass over a short recording and one four times longer: the
streaming ``RigDataset`` (index built in the pass or read from its cache, then every set read and
decoded) should stay within 10 % of the short recording's peak RSS; loading every frame in memory
(``load_rig_samples``, how training read recordings before) is measured beside it for contrast.
Not a timed test; exit code 1 when the streaming ratio exceeds 1.10.

tools/env.sh-activated shell:  python benchmarks/bench_dataset_memory.py [--frames 20] [--factor 4]
                                   [--width 320 --height 192] [--work DIR]

Both recordings are rendered with the project's sim (six cameras, depth images, LiDAR). Each pass
runs in a fresh Python process; the peak is that process's VmHWM (imports included), the growth the
peak minus the RSS after the imports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status_mb(key: str) -> float:
    """A memory line of /proc/self/status in MB: VmRSS (now) or VmHWM (peak of this process image;
    ru_maxrss would carry the parent's peak over fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, bag: str) -> None:
    """One pass in this process; prints a JSON line."""
    import numpy as np

    import bore_depth_ros.bag.reader  # noqa: F401 - imports count in the baseline, not the pass
    import bore_depth_ros.replay.ground_truth  # noqa: F401
    from bore_depth_ros.train.dataset import RigDataset, load_rig_samples

    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    checksum = 0.0
    if mode in ("stream", "cached"):  # index built in the pass / read from the cache
        data = RigDataset([bag], cache=mode == "cached", index_dir=Path(bag).parent / "index")
        for i in range(len(data)):
            s = data[i]
            checksum += sum(float(img[::16, ::16].mean()) for img in s.images)
            checksum += sum(float(np.nanmean(d)) for d in s.depth_gt if d is not None)
        n = len(data)
    else:
        samples, _ = load_rig_samples(bag)
        for s in samples:
            checksum += sum(float(img[::16, ::16].mean()) for img in s.images)
        n = len(samples)
    peak = _status_mb("VmHWM")
    print(json.dumps({"sets": n, "base_mb": base, "peak_mb": peak, "seconds": time.perf_counter() - t0}))


def measure(mode: str, bag: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(bag)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=20, help="frames of the short recording")
    p.add_argument("--factor", type=int, default=4, help="the long recording is this many times longer")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--work", default="", help="folder for the recordings (default: a temporary one)")
    p.add_argument("--child", nargs=2, metavar=("MODE", "BAG"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return 0
    from bore_depth_ros.sim.recording import RecordingConfig, record

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_dataset_memory_"))
    bags = {}
    for name, frames in (("short", args.frames), ("long", args.frames * args.factor)):
        bags[name] = work / f"{name}_{frames}"
        if not bags[name].exists():
            t0 = time.perf_counter()
            record(
                bags[name],
                RecordingConfig(rig="surround", frames=frames, width=args.width, height=args.height, seed=1),
                progress=False,
            )
            print(f"rendered {bags[name]} ({frames} frames) in {time.perf_counter() - t0:.0f} s", flush=True)
    print(
        f"\nsix cameras {args.width}x{args.height}, depth images + LiDAR; peak RSS per pass (fresh process)\n"
    )
    print("| dataset | short sets | short peak MB | long sets | long peak MB | long/short | growth MB |")
    print("|---|---|---|---|---|---|---|")
    from bore_depth_ros.train.dataset import RigDataset

    for bag in bags.values():  # the index cache of the "cached" rows
        RigDataset([bag], index_dir=work / "index")
    ratios = {}
    for mode, label in (
        ("stream", "RigDataset, index built in the pass"),
        ("cached", "RigDataset, cached index"),
        ("memory", "load_rig_samples (all in memory)"),
    ):
        s, lg = measure(mode, bags["short"]), measure(mode, bags["long"])
        ratios[mode] = lg["peak_mb"] / s["peak_mb"]
        growth = (s["peak_mb"] - s["base_mb"], lg["peak_mb"] - lg["base_mb"])
        print(
            f"| {label} | {s['sets']} | {s['peak_mb']:.0f} | {lg['sets']} | {lg['peak_mb']:.0f} | "
            f"{ratios[mode]:.3f} | {growth[0]:.0f} -> {growth[1]:.0f} |",
            flush=True,
        )
    ok = max(ratios["stream"], ratios["cached"]) <= 1.10
    verdict = "within" if ok else "NOT within"
    print(
        f"\nstreaming peak RSS ratio long/short: {ratios['stream']:.3f} (index built), "
        f"{ratios['cached']:.3f} (cached index): {verdict} 10 %"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
