"""The README's main job, end to end at a small size: render, evaluate, live node."""

import json
import subprocess

import pytest

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
    # a second run never replaces what is there unless told to
    mark = out / "recording" / "metadata.yaml"
    before = mark.read_bytes()
    again = subprocess.run(
        [entry_point("bore-depth"), "demo", "--out", str(out), "--frames", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 2 and again.stdout == "", again.stdout + again.stderr
    assert "already exist" in again.stderr and "--force" in again.stderr and "Traceback" not in again.stderr
    assert mark.read_bytes() == before


def test_outputs_are_claimed_before_anything_is_written(tmp_path):
    from bore_depth_ros.core.files import claim_outputs

    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "metrics.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.onnx").write_bytes(b"x")
    claim_outputs([tmp_path / "empty", tmp_path / "new"])  # empty or absent: free
    with pytest.raises(FileExistsError, match="report, .*model.onnx already exist.*--force"):
        claim_outputs([tmp_path / "report", tmp_path / "model.onnx", tmp_path / "new"])
    assert (tmp_path / "report" / "metrics.json").is_file() and (tmp_path / "model.onnx").is_file()
    claim_outputs([tmp_path / "report", tmp_path / "model.onnx"], force=True)
    assert not (tmp_path / "report").exists() and not (tmp_path / "model.onnx").exists()
