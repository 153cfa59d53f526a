"""Soak: ten minutes of six-camera input into a surround node process (not in the test run).

    . tools/env.sh && python benchmarks/soak.py [--minutes 10] [--load 2.0] [--out soak_output]

The node runs in its own process (``bore-depth-surround-node``, svr-style model, ONNX Runtime);
this process publishes the six cameras at ``--load`` times the node's measured processing rate.
Pass criteria (exit code 0, else 1), printed with the measurements:
- resident memory of the node grows less than 5 % (median of the minute after warm-up versus
  the median of the last minute);
- no good frame is missed except counted skips: every camera's received + lost-in-transport
  frames equal the frames sent, no frame is lost in transport, and the node's accounting has no
  unaccounted frame or set (each is published, or skipped/dropped under a named reason);
- the node is alive and logged no traceback.
Results go to ``<out>/soak.json`` and the node's log to ``<out>/node.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bore_depth_ros.ros.env import ensure_local_ros_env

NS = "/soak"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument(
        "--load", type=float, default=2.0, help="input rate as a multiple of the node's processing rate"
    )
    ap.add_argument("--height", type=int, default=96, help="model input height")
    ap.add_argument("--width", type=int, default=160, help="model input width")
    ap.add_argument("--out", default="soak_output")
    a = ap.parse_args()
    ensure_local_ros_env()
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="bore_depth_soak_logs_"))

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from bore_depth_ros.testing.rig_load import RigLoad, run_load

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    params = out / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "/**": {
                    "ros__parameters": dict(
                        model="svr",
                        backend="onnxruntime",
                        input_height=a.height,
                        input_width=a.width,
                        diagnostics_period=1.0,
                    )
                }
            }
        )
    )
    exe = shutil.which(
        "bore-depth-surround-node", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    )
    log = open(out / "node.log", "w")
    proc = subprocess.Popen(
        [exe, "--ros-args", "--params-file", str(params), "-r", f"__ns:={NS}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    rclpy.init()
    load = RigLoad(NS, height=192, width=320, name="soak_load")
    ex = SingleThreadedExecutor()
    ex.add_node(load)

    def spin_until(pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not pred():
            ex.spin_once(timeout_sec=0.05)
        return pred()

    try:
        if not spin_until(lambda: "ready:" in (out / "node.log").read_text(), 180):
            print("soak: the node did not start:\n" + (out / "node.log").read_text())
            return 1
        spin_until(load.connected, 30)
        run_load(ex, load, proc.pid, rate_hz=1.0, duration_s=10.0)
        spin_until(lambda: int(load.rig_values().get("sets_out", 0)) >= 5, 60)
        proc_s = float(load.rig_values()["e2e_ms.mean"]) / 1e3
        rate = min(a.load / proc_s, 30.0)
        print(
            f"soak: processing {proc_s * 1e3:.0f} ms per six-camera set; publishing "
            f"{rate:.2f} sets/s for {a.minutes:g} min",
            flush=True,
        )

        def progress(t, ld, res):
            rig = ld.rig_values()
            kb = res.rss[-1][1] if res.rss else 0
            print(
                f"  {t / 60:4.1f} min: sets out {rig.get('sets_out')}, skipped "
                f"{rig.get('skipped.overload', 0)}, RSS {kb / 1024:.1f} MiB, latency "
                f"p95 {rig.get('latency_ms.p95')} ms",
                flush=True,
            )

        res = run_load(ex, load, proc.pid, rate_hz=rate, duration_s=a.minutes * 60, progress=progress)
        spin_until(lambda: load.rig_values().get("in_worker") == "0", 60)
        spin_until(lambda: False, 2.5)
        rig = load.rig_values()
        rss0, rss1 = res.rss_growth(warmup_s=30.0, window_s=60.0)
        cams = {}
        for k, cam in enumerate(load.cameras):
            v = load.diag.get(f"{NS}/bore_depth_surround: {cam}", {})
            cams[cam] = dict(
                sent=load.sent[k],
                received=int(v.get("frames_in", -1)),
                lost_in_transport=int(v.get("lost_in_transport", -1)),
                rejected=int(v.get("rejected_total", -1)),
                sync_dropped=int(v.get("sync_dropped_total", -1)),
            )
        alive = proc.poll() is None
        node_log = (out / "node.log").read_text()
        checks = {
            "rss_growth_below_5_percent": rss1 < 1.05 * rss0,
            "every_frame_received": all(
                c["received"] + c["lost_in_transport"] == c["sent"] for c in cams.values()
            ),
            "nothing_lost_in_transport": all(c["lost_in_transport"] == 0 for c in cams.values()),
            "no_unaccounted_frames": rig.get("unaccounted_frames") == "0"
            and rig.get("unaccounted_sets") == "0",
            "no_processing_errors": rig.get("processing_errors") == "0",
            "node_alive_no_traceback": alive and "Traceback" not in node_log,
        }
        summary = dict(
            minutes=a.minutes,
            rate_hz=rate,
            processing_ms=proc_s * 1e3,
            sets_out=int(rig.get("sets_out", 0)),
            skipped_overload=int(rig.get("skipped.overload", 0)),
            latency_p50_s=res.latency_p(50),
            latency_p95_s=res.latency_p(95),
            rss_start_mib=rss0 / 1024,
            rss_end_mib=rss1 / 1024,
            rss_growth_percent=100 * (rss1 / rss0 - 1),
            cameras=cams,
            checks=checks,
            rig_diagnostics=rig,
            rss_samples=res.rss,
        )
        (out / "soak.json").write_text(json.dumps(summary, indent=1))
        print(
            f"soak: {summary['sets_out']} sets published, {summary['skipped_overload']} skipped "
            f"(newest wins); latency p50 {res.latency_p(50):.3f} s, p95 "
            f"{res.latency_p(95):.3f} s; RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB "
            f"({summary['rss_growth_percent']:+.2f} %)"
        )
        for cam, c in cams.items():
            print(f"  {cam}: {c}")
        for name, ok in checks.items():
            print(f"  {'PASS' if ok else 'FAIL'} {name}")
        return 0 if all(checks.values()) else 1
    finally:
        ex.remove_node(load)
        load.destroy_node()
        rclpy.try_shutdown()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
