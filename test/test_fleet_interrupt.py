"""Ctrl-C during a fleet evaluation on a local Ray: the command stops cleanly (exit 130, one line,
no traceback), keeps the finished bags, leaves no Ray process behind, and the same command again
evaluates only the rest.

`bore-depth eval` runs as a real child process that starts its own local Ray (127.0.0.1, no
dashboard, no usage statistics); the bags are test_replay_eval's tiny two-camera recordings.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from test_replay_eval import write_test_bag


def _ray_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "raylet|gcs_server|ray::"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


@pytest.mark.slow
def test_ctrl_c_on_ray_keeps_finished_bags_and_resumes(tmp_path, structured_weights):
    bags = tmp_path / "bags"
    bags.mkdir()
    write_test_bag(bags / "b0")
    for i in range(1, 6):
        shutil.copytree(bags / "b0", bags / f"b{i}")
    out = tmp_path / "out"
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "bore-depth"),
        "eval",
        str(bags),
        "--out",
        str(out),
        "--weights",
        str(structured_weights),
        "--input-height",
        "64",
        "--input-width",
        "96",
        "--panels",
        "0",
        "--no-progress",
        "--ray",
        "--ray-workers",
        "1",
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    # one bag serially first: the ONNX export of the weights is cached for the Ray worker, whose
    # first bag would otherwise include it (minutes on a loaded 2-core machine)
    warm = [cmd[0], "eval", str(bags / "b0"), "--out", str(tmp_path / "warm"), *cmd[5 : cmd.index("--ray")]]
    assert subprocess.run(warm, capture_output=True, text=True, env=env, timeout=600).returncode == 0
    before = _ray_processes()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not list((out / "bags").glob("b*.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert list((out / "bags").glob("b*.json")), "no bag finished in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    kept = sorted(p.stem for p in (out / "bags").glob("b*.json"))
    assert kept and all((out / "bags" / f"{k}.jsonl").is_file() for k in kept)
    # the driver shut its Ray down: no raylet, GCS or worker of it is left
    deadline = time.monotonic() + 20
    while _ray_processes() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _ray_processes() - before
    # again, serially: only the unfinished bags run, the finished ones are kept
    again = subprocess.run(cmd[: cmd.index("--ray")], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"6 of 6 bags evaluated ({len(kept)} kept from an earlier run)" in again.stdout
