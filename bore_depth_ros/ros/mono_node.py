"""Mono depth node: one camera in; depth, confidence, point cloud and a view summary out.

Subscribes (best-effort sensor QoS): ``image``, ``camera_info``.
Publishes (reliable, depth 5, ``qos_overrides`` honoured): ``depth/image`` (32FC1 metres, NaN
invalid), ``depth/camera_info`` (same header, scaled intrinsics), ``confidence/image`` (32FC1 in
[0, 1]), ``points`` (organized PointCloud2 in the optical frame), ``view_confidence``
(bore_depth_ros/ViewConfidence), and ``/diagnostics``.
Topic names change by remapping (``-r image:=/cam/image_rect``), never by parameters.
The class can share a process, an executor and a loaded ``DepthEngine`` with other nodes.
"""
from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos_overriding_options import QoSOverridingOptions
from rcl_interfaces.msg import ParameterDescriptor
from sensor_msgs.msg import CameraInfo, Image

from ..core.errors import CAMERA_INFO_MISSING, InputRejected
from ..core.pipeline import DepthEngine, EnginePool, ViewProcessor, resolve_engine
from ..core.stats import ReasonCounter, RollingStats
from . import conversions as conv
from . import diagnostics as diag
from .runner import run_node
from .view_io import CameraInfoCache, ViewOutputs, input_qos, stamp_ns
from .params import (declare_engine_params, declare_view_params, engine_config_from_params,
                     accepted, rejected, view_config_from_values, view_values)

BACKWARDS_JUMP_NS = 1_000_000_000  # a stamp this far behind the previous one means a restart


class MonoDepthNode(Node):
    """Depth for one camera; ``engine`` (a DepthEngine or an EnginePool) shares a loaded model."""

    def __init__(self, node_name: str = "bore_depth_mono", *,
                 engine: DepthEngine | EnginePool | None = None, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        declare_engine_params(self)
        declare_view_params(self)
        self.declare_parameter("output_width", 0, ParameterDescriptor(
            description="published depth width; 0 = input image width", read_only=True))
        self.declare_parameter("output_height", 0, ParameterDescriptor(
            description="published depth height; 0 = input image height", read_only=True))
        self.declare_parameter("points_decimation", 1, ParameterDescriptor(
            description="publish every n-th pixel (rows and columns) in points"))
        self.declare_parameter("points_rgb", True, ParameterDescriptor(
            description="add the packed rgb field to points"))
        self.declare_parameter("publish_points", True, ParameterDescriptor(
            description="publish the organized point cloud"))
        self.declare_parameter("queue_size", 2, ParameterDescriptor(
            description="input subscription depth (small: newest frames win)", read_only=True))
        self.declare_parameter("diagnostics_period", 1.0, ParameterDescriptor(
            description="seconds between /diagnostics messages", read_only=True))

        self.engine = resolve_engine(engine, engine_config_from_params(self))
        info = self.engine.info
        self.view = ViewProcessor(view_config_from_values(view_values(self)), info.metric,
                                  (info.min_depth, info.max_depth))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.rejections = ReasonCounter()
        self.frames_in = 0
        self.frames_out = 0
        self.timing = {k: RollingStats() for k in ("e2e_ms", "infer_ms", "preprocess_ms",
                                                   "post_ms", "publish_ms")}
        self._infos = CameraInfoCache()
        self._pending: Image | None = None
        self._last_stamp_ns: int | None = None

        overrides = QoSOverridingOptions.with_default_policies()
        qdepth = int(self.get_parameter("queue_size").value)
        self.create_subscription(Image, "image", self._on_image, input_qos(qdepth),
                                 qos_overriding_options=overrides)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                 input_qos(max(qdepth, 5)), qos_overriding_options=overrides)
        self.outputs = ViewOutputs(self)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        period = float(self.get_parameter("diagnostics_period").value)
        self.create_timer(period, self.publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        desc = ", ".join(f"{k}={v}" for k, v in self.engine.describe().items())
        self.get_logger().info(f"ready: {desc}; subscribed to {self.resolve_topic_name('image')}")

    # ---------------------------------------------------------------- parameters
    def _on_set_parameters(self, params):
        values = view_values(self)
        for p in params:
            if p.name in values:
                values[p.name] = p.value
            if p.name == "points_decimation" and not 1 <= int(p.value) <= 64:
                return rejected("points_decimation must be in [1, 64]")
        try:
            self.view.configure(view_config_from_values(values))
        except ValueError as e:
            return rejected(str(e))
        return accepted()

    # ---------------------------------------------------------------- inputs
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._infos.add(msg)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._process(pending, self._infos.for_stamp(stamp_ns(pending.header)))

    def _on_image(self, msg: Image) -> None:
        self.frames_in += 1
        t = stamp_ns(msg.header)
        if self._last_stamp_ns is not None and t < self._last_stamp_ns - BACKWARDS_JUMP_NS:
            self.get_logger().warning(
                f"image stamps jumped back by {(self._last_stamp_ns - t) / 1e9:.3f} s "
                "(bag restarted?): clearing camera_info cache and scale state")
            self._infos.clear()
            self.view.reset()
        self._last_stamp_ns = t
        info = self._infos.for_stamp(t)
        if info is None:
            if self._pending is not None:
                self._reject(InputRejected(CAMERA_INFO_MISSING, "no camera_info received on "
                             f"{self.resolve_topic_name('camera_info')} before the next image"),
                             self._pending)
            self._pending = msg
            return
        self._process(msg, info)

    def _reject(self, err: InputRejected, msg: Image) -> None:
        if self.rejections.add(err.reason):
            self.get_logger().warning(
                f"rejected image (stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}, "
                f"frame '{msg.header.frame_id}'): {err} [{self.rejections.counts[err.reason]} "
                f"'{err.reason}' so far]")

    # ---------------------------------------------------------------- processing
    def _output_size(self, width: int, height: int) -> tuple[int, int]:
        w = int(self.get_parameter("output_width").value) or width
        h = int(self.get_parameter("output_height").value) or height
        return w, h

    def _process(self, msg: Image, info: CameraInfo) -> None:
        t0 = time.perf_counter()
        try:
            rgb = conv.image_msg_to_rgb(msg)
            intr_in = conv.camera_info_to_intrinsics(info, msg.width, msg.height)
        except InputRejected as e:
            self._reject(e, msg)
            return
        out_w, out_h = self._output_size(msg.width, msg.height)
        intr_out = intr_in if (out_w, out_h) == (msg.width, msg.height) else intr_in.scaled_to(out_w, out_h)
        eo = self.engine.infer([rgb])
        res = self.view.process(eo.depth[0], None if eo.confidence is None else eo.confidence[0],
                                intr_out)
        t1 = time.perf_counter()
        self.outputs.publish(
            msg, info, intr_in, intr_out, rgb, res, eo.infer_ms, self.engine.config.model,
            self.engine.backend.name, int(self.get_parameter("points_decimation").value),
            self.get_parameter("publish_points").value, self.get_parameter("points_rgb").value)
        t2 = time.perf_counter()
        self.frames_out += 1
        e2e = (t2 - t0) * 1e3
        self.timing["e2e_ms"].add(e2e)
        self.timing["infer_ms"].add(eo.infer_ms)
        self.timing["preprocess_ms"].add(eo.preprocess_ms)
        self.timing["post_ms"].add((t1 - t0) * 1e3 - eo.infer_ms - eo.preprocess_ms)
        self.timing["publish_ms"].add((t2 - t1) * 1e3)

    # ---------------------------------------------------------------- diagnostics
    def publish_diagnostics(self) -> None:
        values = {"frames_in": self.frames_in, "frames_out": self.frames_out,
                  "rejected_total": self.rejections.total(),
                  "waiting_for_camera_info": int(self._pending is not None)}
        values.update({f"rejected.{k}": v for k, v in self.rejections.as_dict().items()})
        values.update(diag.timing_values(self.timing))
        values.update({f"engine.{k}": v for k, v in self.engine.describe().items()})
        if self._pending is not None and not len(self._infos):
            level, message = diag.WARN, "waiting for camera_info"
        elif self.rejections.total():
            level = diag.WARN
            message = "rejected inputs: " + ", ".join(f"{k}={v}" for k, v in
                                                      self.rejections.as_dict().items())
        elif self.frames_in == 0:
            level, message = diag.OK, "no images received yet"
        else:
            level, message = diag.OK, "ok"
        st = diag.status(f"{self.get_fully_qualified_name()}: depth", self.engine.config.device,
                         level, message, values)
        self.pub_diag.publish(diag.diagnostic_array(self, [st]))


def main(argv=None) -> int:
    """Entry point: ``bore-depth-mono-node --ros-args --params-file config/mono.yaml``."""
    return run_node(MonoDepthNode, "bore_depth_mono", argv)


if __name__ == "__main__":
    sys.exit(main())
