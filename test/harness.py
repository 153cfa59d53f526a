"""Helpers for tests that run real rclpy nodes in separate processes (no mocks of ROS)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent


def entry_point(name: str) -> str:
    """Absolute path of an installed console script of this package (in the active venv)."""
    exe = shutil.which(name, path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if exe is None:
        raise RuntimeError(f"console script {name} is not installed: run tools/bootstrap.sh")
    return exe


def write_params(path: Path, params: dict, node: str = "/**") -> Path:
    path.write_text(yaml.safe_dump({node: {"ros__parameters": params}}))
    return path


class NodeProcess:
    """A node started through its own entry point; its console output is kept in a file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict | None = None):
        """``env``: variables added to (or replacing) this process's environment."""
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def wait_for_output(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if not self.alive():
                return text in self.output()
            time.sleep(0.05)
        return False


def start_in_namespace(tmp_path: Path, exe: str, ns: str, **params) -> NodeProcess:
    """Console script ``exe`` as a node process in namespace ``ns`` with ``params`` (a params file
    under ``tmp_path``), once it has logged ``ready:``."""
    pfile = write_params(tmp_path / f"{ns.strip('/')}.yaml", params)
    node = NodeProcess(
        [entry_point(exe), "--ros-args", "--params-file", str(pfile), "-r", f"__ns:={ns}"],
        tmp_path / f"{ns.strip('/')}.log",
    )
    assert node.wait_for_output("ready:", 180), node.output()
    return node


def spin_until(executor, predicate, timeout: float, step: float = 0.05) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step)
    return predicate()


def make_test_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test picture: sky-like gradient, a floor, and a few rectangles."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    img[..., 0] = 80 + 100 * v / height
    img[..., 1] = 120 + 60 * u / width
    img[..., 2] = 200 - 80 * v / height
    floor = v > height * 0.55
    img[floor] = rng.uniform(60, 160, size=(int(floor.sum()), 3))
    for _ in range(3):
        y0, x0 = rng.integers(0, height // 2), rng.integers(0, width - width // 4)
        img[y0 : y0 + height // 3, x0 : x0 + width // 5] = rng.uniform(0, 255, size=3)
    return img.clip(0, 255).astype(np.uint8)
