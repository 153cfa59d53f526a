"""The README's main job, end to end at a small size: render, evaluate, live node."""

import json
import subprocess

from harness import entry_point


def test_demo_writes_report_bag_and_live_outputs(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            entry_point("bore-depth"),
            "demo",
            "--out",
            str(out),
            "--frames",
            "2",
            "--width",
            "128",
            "--height",
            "80",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "report:" in proc.stdout and "node overhead" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval"]["frames"]["evaluated"] == 12  # 6 cameras x 2 frames
    assert summary["eval"]["frames"]["dropped"] == 0
    assert summary["live"]["frames"] == 2 and summary["live"]["rejected"] == {}
    acc = summary["live"]["accounting"]
    assert summary["live"]["lifecycle_state"] == "active"
    assert (acc["frames_in"], acc["frames_out"], acc["unaccounted"]) == (2, 2, 0), acc
    for f in (
        "report/report.html",
        "report/report.md",
        "report/metrics.json",
        "report/error_vs_distance.png",
        "live/points.ply",
        "live/frame_000.png",
        "recording/metadata.yaml",
        "depth_bag/metadata.yaml",
    ):
        assert (out / f).is_file(), f
