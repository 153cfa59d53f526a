"""tools/gpu_check.sh on the CPU (``--device cpu --quick``): the same script a GPU machine runs, with
its parity table (every model and precision against CPU fp32) and its speed table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bore_depth_ros.backends.torch_backend import cpu_bf16_support

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.sh"
MODELS = ("bore_depth", "svr", "semi_smd")


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """Rows of the Markdown table whose header starts with ``| first_header |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


@pytest.mark.slow
def test_gpu_check_on_cpu_quick():
    res = run_script("--device", "cpu", "--quick")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert out.startswith("gpu_check: device cpu") and "all parity checks passed" in out
    precisions = ["fp32", "bf16"] if cpu_bf16_support()[0] else ["fp32"]
    parity = table_rows(out, "model")
    assert [(r[0], r[2]) for r in parity] == [(m, p) for m in MODELS for p in precisions]
    assert all(r[3] == "channels_last" and r[-1] == "PASS" for r in parity), parity
    weights = {r[0]: r[1] for r in parity}
    assert weights["bore_depth"] == "embedded:bore_depth_default.pt"
    assert weights["svr"] == "embedded:svr_default.pt"
    assert weights["semi_smd"] == "embedded:semi_smd_default.pt"
    speed = table_rows(out, "model | input")
    assert [(r[0], r[3]) for r in speed] == [(m, p) for m in MODELS for p in precisions]
    for model, size, views, _, layout, ms, per_s in speed:
        assert size == "128x160" and layout == "channels_last"
        assert views == ("6" if model == "semi_smd" else "1")
        # both columns are printed rounded: compare within their rounding
        assert float(ms) > 0 and float(per_s) == pytest.approx(
            int(views) * 1e3 / float(ms), rel=0.01, abs=0.06
        )


@pytest.mark.slow
def test_gpu_check_refuses_an_unusable_device():
    res = run_script("--device", "tpu", "--models", "bore_depth")
    assert res.returncode == 2 and "gpu_check: error: backend 'torch' supports devices" in res.stderr
    if not torch.cuda.is_available():
        res = run_script("--device", "cuda", "--models", "bore_depth")
        assert res.returncode == 2 and re.search(r"gpu_check: error: .*needs a CUDA GPU", res.stderr)
    res = run_script("--iters", "0")
    assert res.returncode == 2 and "--iters must be >= 1" in res.stderr
