"""Drive a running surround node with a six-camera rig at a chosen rate and measure it.

Used by the overload test (a minute at three times the node's processing rate) and by the soak
script (``benchmarks/soak.py``, ten minutes). This process publishes, per tick, one image and
one camera_info per camera with a shared stamp (sensor QoS, as camera drivers do), latches the
rig's ``/tf_static``, records every ``rig_confidence`` the node publishes (stamp-to-arrival
latency on the shared wall clock), the node's ``/diagnostics`` and the node process's resident
memory (``/proc/<pid>/status``).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from bore_depth_ros_msgs.msg import RigConfidence

from ..core.transforms import Transform
from ..ros.conversions import RCLPY
from ..ros.surround_node import TF_QOS, TF_STATIC_QOS
from ..sim.rig import RING_ORDER, SURROUND_RIG, optical_frame


def rss_kb(pid: int) -> int | None:
    """Resident set size of a process in KiB (Linux), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rig_picture(height: int, width: int, seed: int) -> np.ndarray:
    """A textured street-like picture (sky gradient, noisy ground, boxes), different per seed."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 90 + 90 * v / height
    img[..., 1] = 110 + 70 * u / width
    img[..., 2] = 210 - 90 * v / height
    ground = v > height * 0.5
    img[ground] = rng.uniform(50, 150, size=(int(ground.sum()), 3))
    for _ in range(4):
        y0, x0 = rng.integers(height // 4, height // 2), rng.integers(0, width - width // 5)
        img[y0 : y0 + height // 3, x0 : x0 + width // 6] = rng.uniform(0, 255, size=3)
    return img.clip(0, 255).astype(np.uint8)


@dataclass
class LoadResult:
    rate_hz: float
    duration_s: float
    sent: list[int]
    latencies_s: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, KiB)
    diagnostics: dict[str, dict[str, str]] = field(default_factory=dict)  # status name -> values

    def latency_p(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    def rss_growth(self, warmup_s: float, window_s: float = 10.0) -> tuple[float, float]:
        """Median RSS (KiB) just after ``warmup_s`` and over the last ``window_s`` seconds."""
        if not self.rss:
            return float("nan"), float("nan")
        t_end = self.rss[-1][0]
        first = [kb for t, kb in self.rss if warmup_s <= t < warmup_s + window_s]
        last = [kb for t, kb in self.rss if t >= t_end - window_s]
        return float(np.median(first)), float(np.median(last))


class RigLoad(Node):
    """Publishes ``<ns>/<camera>/image`` + ``camera_info`` for the ring and records outputs."""

    def __init__(
        self,
        ns: str,
        cameras=RING_ORDER,
        height: int = 192,
        width: int = 320,
        name: str = "rig_load",
        moving_mounts=(),
        qos=qos_profile_sensor_data,
        **kw,
    ):
        """``moving_mounts``: cameras whose pose comes from ``/tf`` (base_link -> <camera>_mount,
        stamped with every set, as a gimbal would publish) instead of ``/tf_static``."""
        super().__init__(name, **kw)
        self.ns = ns.rstrip("/")
        self.cameras = list(cameras)
        self.moving = [c for c in moving_mounts if c in self.cameras]
        specs = {s.name: s for s in SURROUND_RIG}
        self._specs = specs
        self.images, self.infos = [], []
        self.pubs = []
        for k, cam in enumerate(self.cameras):
            frame = optical_frame(cam)
            img = RCLPY.image(Header(frame_id=frame), rig_picture(height, width, seed=k), "rgb8")
            info = RCLPY.camera_info(Header(frame_id=frame), specs[cam].intrinsics(width, height))
            self.images.append(img)
            self.infos.append(info)
            self.pubs.append(
                (
                    self.create_publisher(Image, f"{self.ns}/{cam}/image", qos),
                    self.create_publisher(CameraInfo, f"{self.ns}/{cam}/camera_info", qos),
                )
            )
        self.pub_tf = self.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.pub_tf_dynamic = self.create_publisher(TFMessage, "/tf", TF_QOS)
        self.sent = [0] * len(self.cameras)
        self.latencies: list[float] = []
        self.rig_msgs: collections.deque[RigConfidence] = collections.deque(maxlen=2000)
        self.diag: dict[str, dict[str, str]] = {}
        self.diag_status: dict[str, tuple[int, str]] = {}  # status name -> (level, message), newest
        reliable = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
        self.create_subscription(RigConfidence, f"{self.ns}/rig_confidence", self._on_rig, reliable)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self._publish_tf_static(specs)

    def _publish_tf_static(self, specs) -> None:
        msg = TFMessage()
        for cam in self.cameras:
            if cam in self.moving:
                msg.transforms.append(_tf_msg(f"{cam}_mount", optical_frame(cam), Transform.identity()))
            else:
                msg.transforms.append(
                    _tf_msg("base_link", optical_frame(cam), specs[cam].base_from_optical())
                )
        self.pub_tf.publish(msg)

    def _on_rig(self, msg: RigConfidence) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.latencies.append(time.time() - stamp)
        self.rig_msgs.append(msg)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.startswith(self.ns + "/"):
                self.diag[st.name] = {kv.key: kv.value for kv in st.values}
                self.diag_status[st.name] = (ord(st.level), st.message)

    def connected(self) -> bool:
        return all(p.get_subscription_count() > 0 for pair in self.pubs for p in pair)

    def publish_set(self, stamp_ns: int | None = None, silent=(), offsets: dict | None = None) -> None:
        """One synchronized set: every camera, one shared stamp (default now, wall clock).
        ``silent``: cameras that publish nothing this time (a failed camera); ``offsets``:
        camera -> ns added to its stamps (a camera whose clock is off)."""
        now = time.time_ns() if stamp_ns is None else int(stamp_ns)
        offsets = offsets or {}
        if self.moving:
            msg = TFMessage(
                transforms=[
                    _tf_msg("base_link", f"{cam}_mount", self._specs[cam].base_from_optical(), now)
                    for cam in self.moving
                ]
            )
            self.pub_tf_dynamic.publish(msg)
        for k, ((pub_img, pub_info), img, info) in enumerate(
            zip(self.pubs, self.images, self.infos, strict=True)
        ):
            if self.cameras[k] in silent:
                continue
            t = now + int(offsets.get(self.cameras[k], 0))
            img.header.stamp.sec, img.header.stamp.nanosec = divmod(t, 1_000_000_000)
            info.header.stamp = img.header.stamp
            pub_info.publish(info)
            pub_img.publish(img)
            self.sent[k] += 1

    def rig_values(self) -> dict[str, str]:
        return next((v for k, v in self.diag.items() if k.endswith(": rig")), {})


def _tf_msg(parent: str, child: str, tf: Transform, stamp_ns: int = 0) -> TransformStamped:
    x, y, z, w = tf.quat()
    ts = TransformStamped()
    ts.header.frame_id, ts.child_frame_id = parent, child
    ts.header.stamp.sec, ts.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    ts.transform.translation.x, ts.transform.translation.y, ts.transform.translation.z = (
        float(v) for v in tf.translation
    )
    ts.transform.rotation.x, ts.transform.rotation.y = float(x), float(y)
    ts.transform.rotation.z, ts.transform.rotation.w = float(z), float(w)
    return ts


def run_load(
    executor,
    load: RigLoad,
    node_pid: int,
    rate_hz: float,
    duration_s: float,
    rss_period: float = 1.0,
    progress=None,
) -> LoadResult:
    """Publish sets at ``rate_hz`` for ``duration_s`` (spinning ``executor`` in between)."""
    load.latencies.clear()
    sent0 = list(load.sent)
    res = LoadResult(rate_hz, duration_s, [])
    t0 = time.monotonic()
    next_pub, next_rss, next_progress = t0, t0, t0 + 60
    while True:
        now = time.monotonic()
        if now - t0 >= duration_s:
            break
        if now >= next_pub:
            load.publish_set()
            next_pub += 1.0 / rate_hz
            if next_pub < now - 1.0:  # fell far behind (machine stalled): do not burst
                next_pub = now
        if now >= next_rss:
            kb = rss_kb(node_pid)
            if kb is not None:
                res.rss.append((now - t0, kb))
            next_rss += rss_period
        if progress is not None and now >= next_progress:
            progress(now - t0, load, res)
            next_progress += 60
        executor.spin_once(timeout_sec=max(0.0, min(next_pub, next_rss) - time.monotonic()))
    res.sent = [b - a for a, b in zip(sent0, load.sent, strict=True)]
    res.latencies_s = list(load.latencies)
    return res
