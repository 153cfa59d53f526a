"""Mono depth node: one camera in; depth, confidence, point cloud and a view summary out.

A managed (lifecycle) node, see :mod:`bore_depth_ros.ros.managed`; with ``autostart`` (default)
it configures and activates itself.
Subscribes (best-effort sensor QoS): ``image``, ``camera_info``.
Publishes (reliable, depth 5, ``qos_overrides`` honoured): ``depth/image`` (32FC1 metres, NaN
invalid), ``depth/camera_info`` (same header, scaled intrinsics), ``confidence/image`` (32FC1 in
[0, 1]), ``points`` (organized PointCloud2 in the optical frame), ``view_confidence``
(bore_depth_ros/ViewConfidence), and ``/diagnostics``.
Topic names change by remapping (``-r image:=/cam/image_rect``), never by parameters.
The class can share a process, an executor and a loaded ``DepthEngine`` with other nodes.

Every image is accounted for: ``frames_in = frames_out + rejected + skipped + processing errors
+ waiting`` (``unaccounted`` in ``/diagnostics`` is that difference, 0 when idle).
"""

from __future__ import annotations

import sys
import time

from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image

from ..core.errors import CAMERA_INFO_MISSING, InputRejected
from ..core.frame import FrameLedger, RestartDetector, infer_views
from ..core.messages import intrinsics, stamp_ns, validate_image
from ..core.pairing import InfoPairer
from ..core.rig_health import RigHealth
from ..core.stats import RateMeter, ReasonCounter, RollingStats, SequenceGaps
from ..core.view import ViewProcessor
from ..engine import DepthEngine, EnginePool
from . import diagnostics as diag
from . import params as P
from .managed import ManagedDepthNode
from .runner import run_node
from .view_io import ViewOutputs, geometry_change, image_input, input_qos

TIMING_KEYS = ("e2e_ms", "infer_ms", "preprocess_ms", "post_ms", "publish_ms", "latency_ms")


class MonoDepthNode(ManagedDepthNode):
    """Depth for one camera; ``engine`` (a DepthEngine or an EnginePool) shares a loaded model."""

    def __init__(
        self,
        node_name: str = "bore_depth_mono",
        *,
        engine: DepthEngine | EnginePool | None = None,
        **node_kwargs,
    ):
        super().__init__(node_name, engine=engine, **node_kwargs)

    def declare_node_parameters(self) -> None:
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.ledger = FrameLedger()
        self.rate_in, self.rate_out = RateMeter(), RateMeter()
        self.gaps = SequenceGaps()
        self.timing = {k: RollingStats() for k in TIMING_KEYS}
        self._pairer = InfoPairer()
        self._restarts = RestartDetector()
        self._geometry: tuple | None = None
        self.health = RigHealth(["image"], 0, self._timeout_ns())
        self._logs = ReasonCounter()  # throttles restart and geometry-change lines (5 s)

    def _timeout_ns(self) -> int:
        return int(float(self.get_parameter("camera_timeout").value) * 1e9)

    # ---------------------------------------------------------------- lifecycle hooks
    def configure_node(self) -> None:
        info = self.engine.info
        self.view = ViewProcessor(
            P.view_config_from_values(P.values_of(self, P.VIEW)),
            info.metric,
            (info.min_depth, info.max_depth),
        )
        self._reset_counters()

    def activate_node(self) -> None:
        overrides = QoSOverridingOptions.with_default_policies()
        qdepth = int(self.get_parameter("queue_size").value)
        # camera_info first: when both are ready the executor serves subscriptions in creation
        # order, so an image's camera_info is usually known before the image is handled
        self.create_subscription(
            CameraInfo,
            "camera_info",
            self._on_camera_info,
            input_qos(max(qdepth, 5)),
            qos_overriding_options=overrides,
        )
        msg_type, self.image_topic = image_input(self, "image")
        self.create_subscription(
            msg_type, self.image_topic, self._on_image, input_qos(qdepth), qos_overriding_options=overrides
        )
        self.outputs = ViewOutputs(self)

    def input_topics(self) -> list[str]:
        return [self.image_topic]

    def ready_message(self) -> str:
        return super().ready_message() + f"; subscribed to {self.image_topic}"

    def output_publishers(self) -> list:
        o = getattr(self, "outputs", None)
        return [] if o is None or self.state != "active" else list(o.publishers.values())

    def release_node(self) -> None:
        self._pairer = InfoPairer()

    def drop_pending(self, reason: str) -> int:
        dropped = self._pairer.drop_waiting()
        for _ in dropped:
            self.ledger.skipped.add(reason)
        return len(dropped)

    # ---------------------------------------------------------------- parameters
    def on_parameters(self, params, values: dict):
        self.health.timeout_ns = int(float(values["camera_timeout"]) * 1e9)
        if not any(p.name in P.VIEW for p in params):
            return P.accepted()  # e.g. lazy or decimation: the scale state must not be reset
        if getattr(self, "view", None) is not None:
            self.view.configure(P.view_config_from_values(values))
        return P.accepted()

    # ---------------------------------------------------------------- inputs (executor thread)
    def _on_camera_info(self, msg: CameraInfo) -> None:
        t = stamp_ns(msg.header)
        # camera_info is served before images, so a restarting bag usually shows here first
        last = self._restarts.observe("camera_info", t)
        if last is not None:
            self._restart("camera_info", last, t)
        for item, info in self._pairer.add_info(t, msg):
            self._paired(item, info)

    def _restart(self, source: str, last: int, t: int) -> None:
        """Stamps jumped back (a bag restarted): one log line, time-dependent state reset."""
        # a restart seen on the image first keeps its own camera_info (served just before it)
        dropped = self._pairer.clear(keep_stamp=t if source == "image" else None)
        for _ in dropped:
            self.ledger.skipped.add("reset")
        self.discard_waiting("reset")  # a frame of the old epoch must not follow
        self.view.reset()  # applied by the worker before its next frame
        self._restarts.clear()
        self._restarts.observe(source, t)
        self.health.reset()
        if self._logs.add("restart"):
            self.get_logger().warning(
                f"{source} stamps jumped back by {(last - t) / 1e9:.3f} s (bag restarted?): cleared "
                f"camera_info cache ({len(dropped)} waiting images dropped) and scale state "
                f"[{self._logs.counts['restart']} restarts so far; logged at most every 5 s]"
            )

    def _on_image(self, msg: Image, msg_info) -> None:
        self.ledger.frames_in += 1
        self.rate_in.tick()
        self.gaps.add(msg_info.get("publication_sequence_number"))
        t = stamp_ns(msg.header)
        last = self._restarts.observe("image", t)
        if last is not None:
            self._restart("image", last, t)
        self.health.arrived(0, t, self.now_ns())
        self.check_stamp(self.image_topic, t)
        try:
            rgb = validate_image(msg, int(self.get_parameter("max_input_pixels").value))
        except InputRejected as e:
            self._reject(e, msg)
            return
        exact = self._pairer.exact
        for item, info in self._pairer.add_image(t, (msg, rgb)):
            self._paired(item, info)
        if exact and not self._pairer.exact:
            self.get_logger().warning(
                f"camera_info stamps on {self.resolve_topic_name('camera_info')} do not match the "
                "image stamps: pairing each image with the newest camera_info from now on"
            )

    def _paired(self, item, info) -> None:
        msg, rgb = item
        if info is None:
            self._reject(
                InputRejected(
                    CAMERA_INFO_MISSING,
                    "no camera_info received on "
                    f"{self.resolve_topic_name('camera_info')} before the next image",
                ),
                msg,
            )
            return
        try:
            intr_in = intrinsics(info, rgb.shape[1], rgb.shape[0])
        except InputRejected as e:
            self._reject(e, msg)
            return
        self._note_geometry(msg, intr_in)
        self.submit((msg, rgb, info, intr_in))

    def _note_geometry(self, msg: Image, intr) -> None:
        """Log resolution and intrinsics changes (once per change); reset the scale state."""
        self._geometry, what = geometry_change(self._geometry, intr)
        if what is not None and self._logs.add(f"geometry.{what.split()[0]}"):
            self.get_logger().info(
                f"camera {what} (frame '{msg.header.frame_id}'): outputs follow "
                "the new geometry, scale state reset (logged at most every 5 s)"
            )
        if what is not None:
            self.view.reset()

    def _reject(self, err: InputRejected, msg: Image) -> None:
        rejections = self.ledger.rejected
        if rejections.add(err.reason):
            self.get_logger().warning(
                f"rejected image (stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}, "
                f"frame '{msg.header.frame_id}'): {err} [{rejections.counts[err.reason]} "
                f"'{err.reason}' so far]"
            )

    def count_skip(self, reason: str, item) -> None:
        self.ledger.skipped.add(reason)

    # ---------------------------------------------------------------- processing (worker thread)
    def _output_size(self, width: int, height: int) -> tuple[int, int]:
        w = int(self.get_parameter("output_width").value) or width
        h = int(self.get_parameter("output_height").value) or height
        return w, h

    def process(self, item) -> str:
        msg, rgb, info, intr_in = item
        t0 = time.perf_counter()
        height, width = rgb.shape[:2]
        out_w, out_h = self._output_size(width, height)
        intr_out = intr_in if (out_w, out_h) == (width, height) else intr_in.scaled_to(out_w, out_h)
        (res,), eo = infer_views(self.engine, [self.view], [rgb], [intr_in], out_intrinsics=[intr_out])
        t1 = time.perf_counter()
        with_points = bool(self.get_parameter("publish_points").value) and self.builds(
            self.outputs.publishers["points"], "points", bool(self.get_parameter("lazy").value)
        )
        self.outputs.publish(
            msg.header,
            info,
            intr_out,
            rgb,
            res,
            eo.infer_ms,
            self.engine.config.model,
            self.engine.backend.name,
            int(self.get_parameter("points_decimation").value),
            with_points,
            self.get_parameter("points_rgb").value,
        )
        t2 = time.perf_counter()
        latency = self.latency_ms(stamp_ns(msg.header))
        if latency is not None:
            self.timing["latency_ms"].add(latency)
        self.rate_out.tick()
        self.timing["e2e_ms"].add((t2 - t0) * 1e3)
        self.timing["infer_ms"].add(eo.infer_ms)
        self.timing["preprocess_ms"].add(eo.preprocess_ms)
        self.timing["post_ms"].add((t1 - t0) * 1e3 - eo.infer_ms - eo.preprocess_ms)
        self.timing["publish_ms"].add((t2 - t1) * 1e3)
        return "published"

    # ---------------------------------------------------------------- diagnostics
    def accounting(self) -> dict:
        waiting_info = self._pairer.waiting
        in_worker, outcomes = self.worker_counts()
        published, errors = outcomes.get("published", 0), outcomes.get("error", 0)
        ledger = self.ledger
        return {
            "frames_in": ledger.frames_in,
            "frames_out": published,
            "rejected_total": ledger.rejected.total(),
            "skipped_total": ledger.skipped.total(),
            "processing_errors": errors,
            "waiting_for_camera_info": waiting_info,
            "in_worker": in_worker,
            "unaccounted": ledger.unaccounted(published, errors, waiting_info + in_worker),
        }

    def node_statuses(self, common: dict) -> list:
        name = f"{self.get_fully_qualified_name()}: depth"
        st = self.state_status(name)
        if st is not None:
            return [st]
        values = self.accounting()
        values.update(
            {
                "input_rate_hz": round(self.rate_in.rate(), 2),
                "output_rate_hz": round(self.rate_out.rate(), 2),
                "lost_in_transport": self.gaps.lost,
                "camera_info_pairing": "exact stamps" if self._pairer.exact else "newest",
                "camera_info_fallbacks": self._pairer.fallbacks,
            }
        )
        rejections, skips = self.ledger.rejected, self.ledger.skipped
        values.update({f"rejected.{k}": v for k, v in rejections.as_dict().items()})
        values.update({f"skipped.{k}": v for k, v in skips.as_dict().items()})
        values.update(diag.timing_values(self.timing))
        values.update(common)
        window = self.recent.window
        recent = self.recent.update(
            {
                **values_with(values, "rejected.", "processing_error."),
                "skipped.overload": skips.counts.get("overload", 0),
            }
        )
        now = self.now_ns()
        silent = self.health.silent(now) if self.ledger.frames_in else {}
        if self.ledger.frames_in:
            values["silent_for_s"] = round((self.health.silent_for(0, now) or 0) / 1e9, 3)
        overload = recent.pop("skipped.overload", 0)
        if self._lazy_idle:
            level, message = diag.OK, "idle: lazy mode and nobody subscribes to any output"
        elif self._pairer.waiting and not len(self._pairer):
            level, message = diag.WARN, "waiting for camera_info"
        elif silent:
            topic = self.image_topic
            n = self.count_publishers(topic)
            timeout = self.health.camera_timeout_ns(0) / 1e9
            level = diag.STALE
            message = (
                f"no image on {topic} for {silent[0] / 1e9:.1f} s "
                f"({n} publisher{'' if n == 1 else 's'}; timeout {timeout:.2f} s)"
            )
        elif recent:
            level, message = diag.WARN, "recent problems: " + diag.recent_summary(recent, window)
        elif self.ledger.frames_in == 0:
            message = self.silent_input(self.image_topic)
            level = diag.WARN if "nobody publishes" in message else diag.OK
        else:
            level, message = diag.OK, "ok"
        if overload:
            level = max(level, diag.WARN)
            message += f"; overloaded: skipped {overload} frames in the last {window:g} s (newest wins)"
        return [diag.status(name, self.engine.config.device, level, message, values)]


def values_with(values: dict, *prefixes: str) -> dict:
    """The entries of ``values`` whose keys start with one of ``prefixes``."""
    return {k: v for k, v in values.items() if k.startswith(prefixes)}


def main(argv=None) -> int:
    """Entry point: ``bore-depth-mono-node --ros-args --params-file config/mono.yaml``."""
    return run_node(MonoDepthNode, "bore_depth_mono", argv)


if __name__ == "__main__":
    sys.exit(main())
