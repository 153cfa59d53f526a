"""Overload: six cameras at three times the surround node's processing rate for a minute.

The node (its own process) must not queue work: the newest complete set wins, skipped sets are
counted, stamp-to-output latency stays bounded and resident memory stays flat.

Stated bound: p95 of stamp-to-arrival latency < 2 x the node's p95 processing time + 0.25 s.
(With newest-wins a set waits at most for the set in progress, then takes its own processing
time; a queueing node would fall 40 s behind within the minute.) Memory: the median RSS of the
last 10 s is within 5 % of the median of the 10 s after warm-up.
"""

from __future__ import annotations

import os

from rclpy.executors import SingleThreadedExecutor

from bore_depth_ros.testing.rig_load import RigLoad, run_load
from harness import NodeProcess, entry_point, spin_until, write_params

NS = "/overload"
DURATION = float(os.environ.get("BORE_DEPTH_OVERLOAD_SECONDS", "60"))


def test_six_cameras_at_three_times_the_processing_rate(ros, tmp_path):
    pfile = write_params(
        tmp_path / "params.yaml",
        dict(
            model="svr",
            backend="onnxruntime",
            input_height=96,
            input_width=160,
            diagnostics_period=0.5,
            points_decimation=4,
            fused_decimation=4,
        ),
    )
    node = NodeProcess(
        [
            entry_point("bore-depth-surround-node"),
            "--ros-args",
            "--params-file",
            str(pfile),
            "-r",
            f"__ns:={NS}",
        ],
        tmp_path / "node.log",
    )
    load = RigLoad(NS, height=192, width=320, name="overload_load")
    ex = SingleThreadedExecutor()
    ex.add_node(load)
    try:
        assert node.wait_for_output("ready:", 180), node.output()
        assert spin_until(ex, load.connected, 30)
        # warm-up at a gentle rate: how long does one set take on this machine?
        run_load(ex, load, node.proc.pid, rate_hz=1.0, duration_s=8.0)
        assert spin_until(ex, lambda: int(load.rig_values().get("sets_out", 0)) >= 4, 30), load.rig_values()
        proc_s = float(load.rig_values()["e2e_ms.mean"]) / 1e3
        rate = min(3.0 / proc_s, 30.0)
        res = run_load(ex, load, node.proc.pid, rate_hz=rate, duration_s=DURATION)
        # input stopped: the node finishes the set in progress and is idle
        assert spin_until(ex, lambda: load.rig_values().get("in_worker") == "0", 30)
        spin_until(ex, lambda: False, 1.5)  # one more diagnostics period
        rig = load.rig_values()
        cams = {k: v for k, v in load.diag.items() if not k.endswith(": rig")}
        proc_p95 = float(rig["e2e_ms.p95"]) / 1e3
        lat_p95 = res.latency_p(95)
        rss0, rss1 = res.rss_growth(warmup_s=min(15.0, DURATION / 4))
        skipped = int(rig.get("skipped.overload", 0))
        print(
            f"overload: {rate:.1f} sets/s for {DURATION:.0f} s (processing {proc_s * 1e3:.0f} ms"
            f" mean, {proc_p95 * 1e3:.0f} ms p95); published {rig['sets_out']} sets, skipped "
            f"{skipped}; latency p50 {res.latency_p(50):.3f} s p95 {lat_p95:.3f} s (bound "
            f"{2 * proc_p95 + 0.25:.3f} s); RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB "
            f"({100 * (rss1 / rss0 - 1):+.2f} %)"
        )
        assert node.alive()
        assert skipped > 0.5 * int(rig["sets_out"]), "the input did not overload the node"
        assert lat_p95 < 2 * proc_p95 + 0.25, (lat_p95, proc_p95)
        assert rss1 < 1.05 * rss0, (rss0, rss1)
        # every frame is accounted for: published, skipped or dropped with a reason
        assert rig["unaccounted_sets"] == "0" and rig["unaccounted_frames"] == "0", rig
        assert rig["processing_errors"] == "0"
        # transport: what the node received plus the gaps it saw in the publisher's sequence
        # numbers is what this process sent (a loss after the last received frame is invisible)
        for k, cam in enumerate(load.cameras):
            v = cams[f"{NS}/bore_depth_surround: {cam}"]
            received, lost = int(v["frames_in"]), int(v["lost_in_transport"])
            print(
                f"  {cam}: sent {load.sent[k]}, received {received}, lost in transport {lost}, "
                f"rejected {v['rejected_total']}, sync drops {v['sync_dropped_total']}"
            )
            assert load.sent[k] - 3 <= received + lost <= load.sent[k], (cam, load.sent[k], v)
        assert "Traceback" not in node.output()
    finally:
        ex.remove_node(load)
        load.destroy_node()
        node.stop()
