"""The robot build: colcon builds bore_depth_ros_msgs and bore_depth_ros in a fresh workspace, and
the INSTALLED mono_node (lib/bore_depth_ros, what ``ros2 run`` starts) publishes depth.

The workspace is laid out as docs/robot.md tells a robot user: the repository in src/bore_depth_ros
and a symlink src/bore_depth_ros_msgs to its bore_depth_ros_msgs/ folder (colcon does not look for
packages inside a package). The ROS underlay is the venv's Jazzy wheels (AMENT_PREFIX_PATH,
CMAKE_PREFIX_PATH = the venv); ros2cli and launch_ros are not on PyPI, so the installed executable
is started directly with install/setup.bash sourced, as ``ros2 run`` would.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from harness import REPO, NodeProcess, make_test_image, spin_until, write_params
from ros_clients import DepthProbe, camera_info, encode_image, image_msg

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PACKAGES = {"bore_depth_ros", "bore_depth_ros_msgs"}
EXECUTABLES = ("mono_node", "surround_node", "container", "bore-depth")
H, W = 48, 64
FRAME = "robot_cam_optical_frame"
SKIP_DIRS = {
    ".git",
    ".venv",
    ".cache",
    "build",
    "install",
    "log",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "demo_output",
    "soak_output",
}


def _copy_repository(dst: Path) -> None:
    """What a clone would hold: git's tracked and untracked-but-not-ignored files."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: copy the tree
        shutil.copytree(REPO, dst, ignore=lambda _d, names: [n for n in names if n in SKIP_DIRS])
        return
    for rel in files:
        src = REPO / rel
        if src.is_file():  # files deleted in the working tree are still in the index
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _env(tmp: Path) -> dict[str, str]:
    venv = sys.prefix
    env = dict(os.environ)
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    env["AMENT_PREFIX_PATH"] = venv
    env["CMAKE_PREFIX_PATH"] = venv
    env["COLCON_HOME"] = str(tmp / "colcon_home")  # no user defaults / metadata
    env.pop("COLCON_PREFIX_PATH", None)
    return env


def _colcon(ws: Path, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "colcon", *args],
        cwd=ws,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def _sourced(ws: Path, command: str) -> str:
    """A bash script: the venv active (the robot's Python environment, and the ROS underlay here),
    install/setup.bash sourced, then ``command``."""
    venv = sys.prefix
    return (
        f'export PATH={shlex.quote(os.path.join(venv, "bin"))}:"$PATH" '
        f"AMENT_PREFIX_PATH={shlex.quote(venv)}; "
        f"source {shlex.quote(str(ws / 'install' / 'setup.bash'))} && {command}"
    )


def _in_install(ws: Path, env: dict[str, str], command: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", _sourced(ws, command)], cwd=ws, env=env, text=True, capture_output=True, **kw
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("robot_ws")
    _copy_repository(ws / "src" / "bore_depth_ros")
    env = _env(ws)

    # colcon stops at the first package on each path: the nested msgs package needs the symlink.
    listed = _colcon(ws, env, "list", "--names-only", timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {"bore_depth_ros"}, listed.stdout
    (ws / "src" / "bore_depth_ros_msgs").symlink_to(Path("bore_depth_ros") / "bore_depth_ros_msgs")
    listed = _colcon(ws, env, "list", "--names-only", timeout=120)
    assert set(listed.stdout.split()) == PACKAGES, listed.stdout

    t0 = time.monotonic()
    build = _colcon(
        ws,
        env,
        "build",
        "--event-handlers",
        "console_cohesion+",
        "--cmake-args",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=OFF",
    )
    seconds = time.monotonic() - t0
    assert build.returncode == 0, (build.stdout + build.stderr)[-6000:]
    print(f"\ncolcon build of {sorted(PACKAGES)}: {seconds:.1f} s")
    return ws, env


def test_colcon_installs_the_ros_layout(workspace):
    ws, _ = workspace
    share = ws / "install" / "bore_depth_ros" / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "bore_depth_ros").is_file()
    assert (share / "bore_depth_ros" / "package.xml").is_file()
    for launch in (REPO / "launch").glob("*.launch.py"):
        assert (share / "bore_depth_ros" / "launch" / launch.name).is_file(), launch.name
    for cfg in (
        "mono.yaml",
        "surround.yaml",
        "six_mono.yaml",
        "fastdds_profile.xml",
        "mono.rviz",
        "surround.rviz",
    ):
        assert (share / "bore_depth_ros" / "config" / cfg).is_file(), cfg
    lib = ws / "install" / "bore_depth_ros" / "lib" / "bore_depth_ros"
    for exe in EXECUTABLES:
        assert os.access(lib / exe, os.X_OK), exe
    # every executable a launch file names is installed where launch_ros looks for it
    for launch in (REPO / "launch").glob("*.launch.py"):
        for exe in re.findall(r'package="bore_depth_ros", executable="([\w-]+)"', launch.read_text()):
            assert os.access(lib / exe, os.X_OK), (launch.name, exe)
    msgs = ws / "install" / "bore_depth_ros_msgs" / "share"
    for name in ("ViewConfidence", "ViewOverlap", "RigConfidence"):
        assert (msgs / "bore_depth_ros_msgs" / "msg" / f"{name}.msg").is_file(), name
    assert (msgs / "ament_index" / "resource_index" / "rosidl_interfaces" / "bore_depth_ros_msgs").is_file()


def test_installed_packages_are_imported_from_the_install_space(workspace):
    ws, env = workspace
    # the interpreter of the installed executables (their shebang: python3 from PATH), as ros2 run
    # would start it
    shebang = (
        (ws / "install" / "bore_depth_ros" / "lib" / "bore_depth_ros" / "mono_node")
        .read_text()
        .splitlines()[0]
    )
    assert shebang == "#!/usr/bin/env python3", shebang
    python = shebang[2:]
    code = (
        "import bore_depth_ros, bore_depth_ros_msgs.msg, importlib.metadata as m;"
        "from ament_index_python.packages import get_package_share_directory as s;"
        "print(bore_depth_ros.__file__); print(bore_depth_ros_msgs.msg.__file__);"
        "print(m.distribution('bore_depth_ros').locate_file(''));"
        "print(s('bore_depth_ros')); print(s('bore_depth_ros_msgs'))"
    )
    out = _in_install(ws, env, f"{python} -c {shlex.quote(code)}", timeout=120)
    assert out.returncode == 0, out.stderr
    paths = out.stdout.split()
    assert len(paths) == 5, out.stdout
    for p in paths:
        assert Path(p).resolve().is_relative_to((ws / "install").resolve()), (p, out.stdout)


def test_installed_mono_node_publishes_depth(workspace, ros, tmp_path):
    ws, env = workspace
    ns = "/robot_build"
    params = write_params(
        tmp_path / "mono.yaml",
        dict(backend="torch", input_height=64, input_width=96, publish_points=False, diagnostics_period=0.5),
    )
    exe = ws / "install" / "bore_depth_ros" / "lib" / "bore_depth_ros" / "mono_node"
    command = _sourced(
        ws, f"exec {shlex.quote(str(exe))} --ros-args --params-file {shlex.quote(str(params))} -r __ns:={ns}"
    )
    node = NodeProcess(["bash", "-c", command], tmp_path / "mono_node.log")
    client = DepthProbe(ns, name="robot_build_client", outputs={"depth/image": Image})
    ex = SingleThreadedExecutor()
    ex.add_node(client)
    try:
        assert node.wait_for_output("ready:", timeout=180), node.output()
        # the process is the installed entry script (its python imports the install space: see above)
        cmdline = Path(f"/proc/{node.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert str(exe).encode() in cmdline, cmdline
        assert spin_until(ex, client.connected, timeout=30), "the installed node never connected"
        data, step = encode_image(make_test_image(H, W), "rgb8")
        stamp = Time(sec=7, nanosec=250_000_000)
        deadline = time.monotonic() + 60
        while not client.complete(stamp):  # inputs are best effort: publish again if lost
            assert time.monotonic() < deadline, node.output()[-3000:]
            client.pub_info.publish(camera_info(W, H, FRAME, 60.0, 60.0, 31.5, 23.5, stamp))
            client.pub_image.publish(image_msg(data, W, H, step, "rgb8", FRAME, stamp))
            spin_until(ex, lambda: client.complete(stamp), 5.0)
        depth = client.received[(7, 250_000_000)]["depth/image"]
        assert depth.encoding == "32FC1" and depth.header.frame_id == FRAME
        assert (depth.width, depth.height) == (W, H)
    finally:
        ex.remove_node(client)
        client.destroy_node()
        node.stop()
