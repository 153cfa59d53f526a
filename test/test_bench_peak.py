"""``bore-depth bench`` reports how close each row is to this machine's limit: the model's FLOPs per
call, the achieved GFLOP/s at p50 and the percentage of a convolution peak and memory-copy bandwidth
measured in the same run (bench/table.py: model_gflop, measure_peaks, apply_peaks).

Tiny iteration counts; no timing is asserted: only that the figures are there, positive and
consistent with each other.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess

import pytest

from bore_depth_ros import deploy
from bore_depth_ros.bench import table
from harness import entry_point

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


def test_model_gflop_counts_once_and_scales_with_the_image():
    small = deploy.deployment_shapes("bore_depth", 64, 96)
    big = deploy.deployment_shapes("bore_depth", 128, 192)
    g_small = table.model_gflop("bore_depth", small)
    assert g_small > 0
    assert ("bore_depth", "", tuple((n, tuple(s)) for n, s in small.items())) in table._GFLOP_CACHE
    assert table.model_gflop("bore_depth", small) == g_small  # cached, not counted again
    # a fully convolutional network: four times the pixels, about four times the work
    assert table.model_gflop("bore_depth", big) == pytest.approx(4 * g_small, rel=0.1)


def test_measure_peaks_gives_the_convolution_and_copy_figures():
    peaks = table.measure_peaks(threads=1, repeats=1, shape=(1, 16, 32, 40), copy_mb=8)
    assert peaks.torch_conv_gflops > 0 and peaks.ort_conv_gflops > 0 and peaks.copy_gbps > 0
    assert peaks.conv_gflops == max(peaks.torch_conv_gflops, peaks.ort_conv_gflops)
    line = peaks.line()
    assert "1x16x32x40, 16->16" in line and "GFLOP/s in torch" in line and "GB/s" in line


def test_apply_peaks_and_merge_arithmetic():
    row = table.BenchRow("m", "onnxruntime", "cpu", "fp32", 64, 96, 1, p50_ms=100.0, gflop=10.0)
    table.apply_peaks([row], table.Peaks("s", torch_conv_gflops=150.0, ort_conv_gflops=200.0))
    assert row.gflops == pytest.approx(100.0) and row.peak_pct == pytest.approx(50.0)
    failed = table.BenchRow("m", "tensorrt", "cpu", "fp32", 64, 96, 1, gflop=10.0, note="absent")
    table.apply_peaks([failed], table.Peaks("s", torch_conv_gflops=150.0))
    assert failed.gflops is None and failed.peak_pct is None
    a = table.Peaks("s", torch_conv_gflops=100.0, ort_conv_gflops=None, copy_gbps=9.0)
    b = table.Peaks("s", torch_conv_gflops=120.0, ort_conv_gflops=80.0, copy_gbps=7.0)
    m = a.merge(b)
    assert (m.torch_conv_gflops, m.ort_conv_gflops, m.copy_gbps) == (120.0, 80.0, 9.0)


def test_bench_prints_peaks_and_percent_of_peak(tmp_path):
    md, csv_path = tmp_path / "b.md", tmp_path / "b.csv"
    out = subprocess.run(
        [
            entry_point("bore-depth"),
            "bench",
            "--models",
            "bore_depth",
            "--backends",
            "onnxruntime",
            "--sizes",
            "64x96",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--peak-repeats",
            "1",
            "--threads",
            "1",
            "--in-process",
            "--md",
            str(md),
            "--csv",
            str(csv_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    text = md.read_text()
    assert text in out.stdout and text.startswith("Measured on ")
    header = text.splitlines()[0]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", header) and "logical CPUs" in header
    assert "onnxruntime " in header and "torch " in header
    assert re.search(r"3x3 convolution .*\d+\.\d GFLOP/s in torch .*\d+\.\d GFLOP/s in ONNX Runtime", text)
    assert re.search(r"memory copy \d+\.\d GB/s", text)
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    row = dict(zip(cols, cells))
    assert {"GFLOP", "GFLOP/s", "% of peak"} <= set(cols)
    assert float(row["GFLOP"]) > 0 and float(row["GFLOP/s"]) > 0 and float(row["% of peak"]) > 0
    (parsed,) = csv.DictReader(io.StringIO(csv_path.read_text()))
    gflops = float(parsed["gflop"]) / (float(parsed["p50_ms"]) / 1e3)
    assert float(parsed["gflops"]) == pytest.approx(gflops)
    assert float(parsed["peak_pct"]) > 0
