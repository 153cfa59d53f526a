"""The torch backend's compiled path (``compile=True``: torch.compile, TorchInductor, frozen weights).

- The embedded BoRe-Depth weights compiled through the engine give the eager engine's depth and
  confidence (fusion reorders float32 sums: measured max relative difference ~1e-6; allowed 1e-4 of
  the largest value), and the backend reports its compile time and start check.
- compile in bf16 (CPUs with native bf16) is checked against fp32 eager under the bf16 gate (1 %):
  a compiled bf16 model and an eager bf16 one round differently (~0.5 % apart), so comparing the
  two under the fp32 limit would refuse a good model.
- compile with a backend other than torch is refused before anything is loaded.
- Dynamo's recompile limit spent (more compiled copies of one model alive than it allows) is a
  CompileFailed, never an eager model that says it is compiled; closing the last compiled backend
  clears Dynamo's caches, so configure/cleanup cycles compile again without reaching the limit.
- A machine whose C++ compiler is missing gets CompileFailed naming the cause (a real compiler
  failure: CXX points at no compiler and the inductor cache is empty, in a child process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from bore_depth_ros.backends.torch_backend import (
    BF16_MAX_MEDIAN_REL,
    COMPILE_MAX_MEDIAN_REL,
    TorchBackend,
    cpu_bf16_support,
)
from bore_depth_ros.engine import DepthEngine, EngineConfig

# the smallest input the model takes keeps the (size-independent) compilation the only real cost
SIZE = (64, 96)
MAX_REL = 1e-4


@pytest.mark.slow
def test_compiled_engine_matches_eager_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", os.fspath(tmp_path / "inductor"))
    base = EngineConfig(model="bore_depth", backend="torch", input_height=SIZE[0], input_width=SIZE[1])
    rng = np.random.default_rng(3)
    frame = (rng.random((96, 160, 3)) * 255).astype(np.uint8)
    eager = DepthEngine(base)
    compiled = DepthEngine(replace(base, compile=True))
    backend = compiled.backend
    assert backend.compile_s is not None and backend.compile_s > 0
    assert all(g <= COMPILE_MAX_MEDIAN_REL for g in backend.compile_gap.values()), backend.compile_gap
    assert "inductor" in compiled.describe()["compile"]
    a, b = eager.infer([frame]), compiled.infer([frame])
    scale = float(np.abs(a.depth).max())
    assert np.abs(a.depth - b.depth).max() <= MAX_REL * scale
    if a.confidence is not None:
        assert np.abs(a.confidence - b.confidence).max() <= MAX_REL
    # the compiled model serves further frames of the same shape without recompiling
    c = compiled.infer([frame[::-1].copy()])
    assert c.depth.shape == a.depth.shape and np.isfinite(c.depth).all()


def small_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.GELU(), nn.Conv2d(16, 1, 1), nn.Softplus()
    ).eval()


@pytest.mark.skipif(
    not cpu_bf16_support()[0], reason="bf16 needs a CPU with native bf16 (tested refused elsewhere)"
)
@pytest.mark.slow
def test_compiled_bf16_is_gated_against_fp32(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", os.fspath(tmp_path / "inductor"))
    backend = TorchBackend(small_model(), (1, 3, 64, 64), ["depth"], precision="bf16", compile=True)
    assert backend.compile_gap["depth"] <= BF16_MAX_MEDIAN_REL
    assert backend.describe()["compile"].endswith("vs fp32 eager")


def test_compile_is_refused_for_other_backends():
    with pytest.raises(ValueError, match="compile is an option of backend 'torch'"):
        DepthEngine(EngineConfig(model="bore_depth", backend="onnxruntime", compile=True))


@pytest.mark.slow
def test_missing_compiler_is_a_clear_error(tmp_path):
    script = textwrap.dedent(
        """
        import torch
        from torch import nn
        from bore_depth_ros.backends.torch_backend import CompileFailed, TorchBackend

        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.GELU(), nn.Conv2d(8, 1, 1))
        try:
            TorchBackend(model, (1, 3, 32, 32), ["depth"], compile=True)
        except CompileFailed as e:
            print("REFUSED", e)
        else:
            print("COMPILED")
        """
    )
    env = {
        **os.environ,
        "CXX": os.fspath(tmp_path / "no-such-compiler"),
        "TORCHINDUCTOR_CACHE_DIR": os.fspath(tmp_path / "inductor"),
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REFUSED compile=True: torch.compile (inductor) could not build the model" in out.stdout
    assert "use compile=False" in out.stdout


@pytest.mark.slow
def test_recompile_limit_is_an_error_and_close_frees_it(tmp_path):
    script = textwrap.dedent(
        """
        import torch
        from test_torch_compile import small_model
        from bore_depth_ros.backends.torch_backend import CompileFailed, TorchBackend

        torch._dynamo.config.cache_size_limit = 1  # Dynamo's limit, reached by a second live copy
        first = TorchBackend(small_model(), (1, 3, 32, 32), ["depth"], compile=True)
        try:
            TorchBackend(small_model(), (1, 3, 32, 32), ["depth"], compile=True)
        except CompileFailed as e:
            print("REFUSED", e)
        first.close()  # the last compiled backend: Dynamo's caches are cleared
        again = TorchBackend(small_model(), (1, 3, 32, 32), ["depth"], compile=True)
        print("AGAIN", again.describe()["compile"])
        """
    )
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.fspath(tmp_path / "inductor")}
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REFUSED compile=True: torch.compile captured no graph" in out.stdout, out.stdout
    assert "AGAIN inductor" in out.stdout, out.stdout
