"""Surround depth node: N synchronized cameras, one batched inference, per-view and fused outputs.

For every camera name ``c`` in the ``cameras`` parameter (ring order: neighbours are adjacent,
the last one neighbours the first):
  in  (best effort):  ``c/image``, ``c/camera_info``
  out (reliable):     ``c/depth/image``, ``c/depth/camera_info``, ``c/confidence/image``,
                      ``c/points``, ``c/view_confidence`` (the mono node's contract, same headers)
and for the rig: ``points`` (all views fused in ``target_frame``, unorganized) and
``rig_confidence`` (bore_depth_ros/RigConfidence), plus ``/diagnostics``.
Extrinsics come from ``/tf_static`` and ``/tf`` at each image's stamp. A missing transform is
reported and the per-view outputs keep flowing; only the fused cloud (and the overlap check)
waits, and resumes as soon as the transform arrives. Models whose inputs need the extrinsics
(semi_smd) wait for TF as a whole; those groups are counted as dropped.
With the node in namespace ``/cameras`` the topics match the project's recordings.

About 480 lines: one class wires the whole rig (N cameras' inputs, synchronisation, TF, per-view
and fused outputs, rig summary); its ``/diagnostics`` live in :mod:`.rig_diagnostics`, and every
step it shares with the mono node and replay lives in ``core`` (messages, pairing, frame).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from bore_depth_ros_msgs.msg import RigConfidence, ViewOverlap

from ..core.errors import CAMERA_INFO_MISSING, InputRejected
from ..core.frame import RestartDetector, infer_views
from ..core.fusion import fuse_views, pack_unorganized, view_consistency
from ..core.messages import intrinsics, stamp_ns, transform, validate_image
from ..core.pairing import InfoPairer
from ..core.stats import RateMeter, ReasonCounter, RollingStats, SequenceGaps
from ..core.sync import ApproximateSynchronizer, SyncEvent
from ..core.tf_buffer import TfBuffer
from ..core.transforms import Transform
from ..core.view import ViewProcessor
from ..engine import DepthEngine, EnginePool
from . import params as P
from .conversions import RCLPY
from .managed import ManagedDepthNode
from .rig_diagnostics import RigDiagnostics
from .runner import run_node
from .view_io import OUTPUT_QOS, ViewOutputs, geometry_change, input_qos

TF_STATIC_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
)
TF_QOS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=100, reliability=QoSReliabilityPolicy.RELIABLE)


class SurroundDepthNode(RigDiagnostics, ManagedDepthNode):
    """Depth for a rig of N cameras; ``engine`` (a DepthEngine or an EnginePool) shares a model.

    A managed (lifecycle) node like the mono node. Frame accounting per camera:
    ``frames_in = rejected + sync drops + frames in emitted sets + sync queue``, and per set:
    ``emitted = published + skipped + dropped + errors + waiting`` (``unaccounted`` in
    ``/diagnostics``, 0 when idle).
    """

    default_model = "svr"
    params = P.SURROUND

    def __init__(
        self,
        node_name: str = "bore_depth_surround",
        *,
        engine: DepthEngine | EnginePool | None = None,
        **node_kwargs,
    ):
        super().__init__(node_name, engine=engine, **node_kwargs)

    def declare_node_parameters(self) -> None:
        self.cameras = [str(c) for c in self.get_parameter("cameras").value]
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be distinct names, got {self.cameras}")
        self.target_frame = str(self.get_parameter("target_frame").value)
        self.tf = TfBuffer()
        self._reset_counters()

    def engine_batch(self) -> int:
        return len(self.cameras)

    def _reset_counters(self) -> None:
        n = len(self.cameras)
        self.sync = ApproximateSynchronizer(
            n, int(float(self.get_parameter("slop").value) * 1e9), int(self.get_parameter("queue_size").value)
        )
        self.rejections = [ReasonCounter() for _ in self.cameras]
        self.sync_drops = [ReasonCounter() for _ in self.cameras]
        self.set_drops = ReasonCounter()  # whole synchronized sets not published (executor)
        self.set_skips = ReasonCounter()  # sets skipped (overload, no subscribers...), as the mono node's
        self._worker_logs = ReasonCounter()  # log throttling of drops decided by the worker
        self.tf_failures = ReasonCounter()
        self.frames_in = [0] * n
        self.rate_in = [RateMeter() for _ in self.cameras]
        self.rate_out = RateMeter()
        self.gaps = [SequenceGaps() for _ in self.cameras]
        self.sets_emitted = 0
        self.fused_out = 0
        self.fusion_waiting = 0
        self.fusion_status = "no frames yet"
        self._fusion_ok: bool | None = None
        self.timing = {
            k: RollingStats()
            for k in ("e2e_ms", "infer_ms", "preprocess_ms", "post_ms", "publish_ms", "fuse_ms", "latency_ms")
        }
        self._infos = [InfoPairer() for _ in self.cameras]
        self._pending_group = None  # a complete set waiting for a camera's first camera_info
        self._restarts = RestartDetector()  # per camera image and per /tf edge
        self._set_rejects = [0] * n  # rejections of frames already inside emitted sets
        self._geometry = [None] * n

    # ---------------------------------------------------------------- lifecycle hooks
    def configure_node(self) -> None:
        n = len(self.cameras)
        if self.engine.config.batch < n:
            raise ValueError(
                f"the shared engine takes {self.engine.config.batch} views per call, the rig has {n}"
            )
        info = self.engine.info
        if info.num_cameras not in (0, 1) and info.num_cameras != n:
            raise ValueError(
                f"model {info.name} needs exactly {info.num_cameras} cameras in ring "
                f"order, got {n}: {self.cameras}"
            )
        self.needs_extrinsics = any(k in info.input_names for k in ("rays", "origins"))
        view_cfg = P.view_config_from_values(P.values_of(self, P.VIEW))
        self.views = [
            ViewProcessor(view_cfg, info.metric, (info.min_depth, info.max_depth)) for _ in self.cameras
        ]
        self._reset_counters()

    def activate_node(self) -> None:
        from tf2_msgs.msg import TFMessage

        overrides = QoSOverridingOptions.with_default_policies()
        qdepth = int(self.get_parameter("queue_size").value)
        # TF first: the executor serves ready subscriptions in creation order, so transforms that
        # arrive together with images (a bag starting) are known before the images are processed
        self.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), TF_STATIC_QOS)
        self.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), TF_QOS)
        self.outputs = []
        for i, cam in enumerate(self.cameras):
            # camera_info before image: served first when both are ready (as in the mono node)
            self.create_subscription(
                CameraInfo,
                f"{cam}/camera_info",
                lambda m, i=i: self._on_camera_info(i, m),
                input_qos(max(qdepth, 5)),
                qos_overriding_options=overrides,
            )
            self.create_subscription(
                Image,
                f"{cam}/image",
                lambda m, mi, i=i: self._on_image(i, m, mi),
                input_qos(qdepth),
                qos_overriding_options=overrides,
            )
            self.outputs.append(ViewOutputs(self, f"{cam}/"))
        self.pub_fused = self.create_publisher(
            PointCloud2, "points", OUTPUT_QOS, qos_overriding_options=overrides
        )
        self.pub_rig = self.create_publisher(RigConfidence, "rig_confidence", OUTPUT_QOS)

    def ready_message(self) -> str:
        return (
            f"{len(self.cameras)} cameras {self.cameras} -> {self.target_frame}; " + super().ready_message()
        )

    def output_publishers(self) -> list:
        if self.state != "active" or not getattr(self, "outputs", None):
            return []
        pubs = [self.pub_fused, self.pub_rig]
        for o in self.outputs:
            pubs += list(o.publishers.values())
        return pubs

    def release_node(self) -> None:
        self._pending_group = None
        self.tf.clear_dynamic()

    def drop_pending(self, reason: str) -> int:
        if self._pending_group is None:
            return 0
        self._pending_group = None
        self.set_drops.add(reason)
        return 1

    # ---------------------------------------------------------------- parameters
    def on_parameters(self, params, values: dict):
        if not any(p.name in P.VIEW for p in params):
            return P.accepted()  # e.g. lazy, decimation or fused ranges: keep the scale state
        cfg = P.view_config_from_values(values)
        for v in getattr(self, "views", []):
            v.configure(cfg)
        return P.accepted()

    def _param(self, name):
        return self.get_parameter(name).value

    # ---------------------------------------------------------------- inputs (executor thread)
    def _on_tf(self, msg, static: bool) -> None:
        if not static:
            # a bag restart may show on /tf first (TF is served before images): reset here,
            # once. Judged per edge, so another /tf publisher on its own clock is no restart.
            for ts in msg.transforms:
                child, t = ts.child_frame_id, stamp_ns(ts.header)
                last = self._restarts.observe(("tf", child), t)
                if last is not None:
                    self._restart(f"/tf ({ts.header.frame_id} -> {child})", last, t)
                    self._restarts.observe(("tf", child), t)
        for ts in msg.transforms:
            try:
                self.tf.set_transform(
                    ts.header.frame_id, ts.child_frame_id, stamp_ns(ts.header), transform(ts), static=static
                )
            except ValueError as e:
                if self.tf_failures.add("invalid_transform"):
                    self.get_logger().warning(
                        f"ignored transform {ts.header.frame_id} -> {ts.child_frame_id}: {e}"
                    )

    def _on_camera_info(self, i: int, msg: CameraInfo) -> None:
        self._infos[i].add_info(stamp_ns(msg.header), msg)
        if self._pending_group is not None and all(len(c) for c in self._infos):
            group, self._pending_group = self._pending_group, None
            self._prepare_group(group)

    def _restart(self, source: str, last: int, t: int) -> None:
        """Stamps jumped back (a bag restarted): one log line, every time-dependent cache reset."""
        ev = SyncEvent()
        self.sync.reset(ev)
        for stream, _, reason in ev.drops:
            self.sync_drops[stream].add(reason)
        if self._pending_group is not None:
            self._pending_group = None
            self.set_drops.add("reset")
        self.discard_waiting("reset")  # a set of the old epoch must not follow
        self.tf.clear_dynamic()
        self.engine.reset_temporal()  # under the engine lock: after the set in progress
        for v in self.views:
            v.reset()  # applied by the worker before its next set
        self._restarts.clear()
        self.get_logger().warning(
            f"{source}: stamps jumped back by {(last - t) / 1e9:.3f} s (bag "
            f"restarted?): reset synchronisation ({len(ev.drops)} queued frames dropped), "
            "dynamic TF cache, temporal and scale state"
        )

    def _on_image(self, i: int, msg: Image, msg_info) -> None:
        self.frames_in[i] += 1
        self.rate_in[i].tick()
        self.gaps[i].add(msg_info.get("publication_sequence_number"))
        t = stamp_ns(msg.header)
        last = self._restarts.observe(("image", i), t)
        if last is not None:
            self._restart(self.cameras[i], last, t)
            self._restarts.observe(("image", i), t)
        try:
            rgb = validate_image(msg, int(self._param("max_input_pixels")))
        except InputRejected as e:
            self._reject(i, e, msg)
            return
        ev = self.sync.add(i, t, (msg, rgb))
        for stream, stamp, reason in ev.drops:
            if self.sync_drops[stream].add(reason) and self.sync_drops[stream].counts[reason] == 1:
                self.get_logger().warning(
                    f"synchroniser dropped {self.cameras[stream]} frame {stamp / 1e9:.3f}: {reason}"
                    " (reported once per camera and reason; counts in /diagnostics)"
                )
        for group in ev.groups:
            self.sets_emitted += 1
            missing = [c for c, infos in zip(self.cameras, self._infos) if not len(infos)]
            if not missing:
                self._prepare_group(group)
                continue
            # some camera has never sent camera_info: wait (one set) for it, as the mono node does
            if self._pending_group is not None:
                self._drop_group(
                    CAMERA_INFO_MISSING, f"no camera_info yet from {missing} before the next synchronized set"
                )
            self._pending_group = group

    def _reject(self, i: int, err: InputRejected, msg: Image) -> None:
        if self.rejections[i].add(err.reason):
            self.get_logger().warning(
                f"{self.cameras[i]}: rejected image (stamp {msg.header.stamp.sec}."
                f"{msg.header.stamp.nanosec:09d}, frame '{msg.header.frame_id}'): {err} "
                f"[{self.rejections[i].counts[err.reason]} '{err.reason}' so far]"
            )

    def _drop_group(self, reason: str, detail: str) -> None:
        if self.set_drops.add(reason):
            self.get_logger().warning(
                f"dropped a synchronized set: {reason}: {detail} [{self.set_drops.counts[reason]} so far]"
            )

    def count_skip(self, reason: str, item) -> None:
        self.set_skips.add(reason)

    def _prepare_group(self, group) -> None:
        """Pair every view with its camera_info (executor thread), then hand the set to the worker."""
        msgs = [m for m, _ in group.items]
        infos, intr_in = [], []
        for i, m in enumerate(msgs):
            info = self._infos[i].pair_now(stamp_ns(m.header))
            try:
                if info is None:
                    raise InputRejected(
                        CAMERA_INFO_MISSING,
                        f"no camera_info on {self.resolve_topic_name(self.cameras[i] + '/camera_info')}",
                    )
                intr = intrinsics(info, m.width, m.height)
            except InputRejected as e:
                self._reject(i, e, m)
                self._set_rejects[i] += 1
                self._drop_group(e.reason, f"camera {self.cameras[i]}: {e.detail}")
                return
            self._note_geometry(i, m, intr)
            infos.append(info)
            intr_in.append(intr)
        self.submit((group, infos, intr_in))

    def _note_geometry(self, i: int, msg: Image, intr) -> None:
        self._geometry[i], what = geometry_change(self._geometry[i], intr)
        if what is not None:
            self.get_logger().info(
                f"{self.cameras[i]}: camera {what}: outputs follow the new geometry, scale state reset"
            )
            self.views[i].reset()

    # ---------------------------------------------------------------- processing (worker thread)
    def _extrinsics(self, msgs) -> tuple[list[Transform | None], str]:
        tfs, problems = [], []
        for m in msgs:
            tf, err = self.tf.resolve(self.target_frame, m.header.frame_id, stamp_ns(m.header))
            tfs.append(tf)
            if err is not None:
                problems.append(f"{m.header.frame_id}: {err}")
                self.tf_failures.add(err.reason)
        return tfs, "; ".join(problems)

    def process(self, item) -> str:
        group, infos, intr_in = item
        t0 = time.perf_counter()
        msgs = [m for m, _ in group.items]
        rgbs = [rgb for _, rgb in group.items]
        tfs, tf_problem = self._extrinsics(msgs)
        have_tf = not tf_problem
        if self.needs_extrinsics and not have_tf:
            if self._worker_logs.add("waiting_for_tf"):
                self.get_logger().warning(
                    f"dropped a synchronized set: model "
                    f"{self.engine.info.name} needs extrinsics; {tf_problem}"
                )
            self.fusion_status = f"waiting for TF: {tf_problem}"
            return "dropped.waiting_for_tf"
        results, eo = infer_views(self.engine, self.views, rgbs, intr_in, tfs if have_tf else None)
        t2 = time.perf_counter()
        t1 = t2 - (eo.infer_ms + eo.preprocess_ms) / 1e3  # post-processing took t2 - t1
        model, backend = self.engine.config.model, self.engine.backend.name
        summaries = [
            self.outputs[i].publish(
                msgs[i].header,
                infos[i],
                intr_in[i],
                rgbs[i],
                results[i],
                eo.infer_ms / len(msgs),
                model,
                backend,
                int(self._param("points_decimation")),
                self._param("publish_points"),
                self._param("points_rgb"),
            )
            for i in range(len(msgs))
        ]
        t3 = time.perf_counter()
        newest = max(group.stamps)
        header = msgs[int(np.argmax(group.stamps))].header
        fused = False
        overlaps = []
        if have_tf:
            fused = self._publish_fused(header, [r.depth for r in results], intr_in, tfs, rgbs)
            overlaps = self._overlaps(msgs, results, intr_in, tfs)
            if self._fusion_ok is False:
                self.get_logger().info(
                    f"all camera transforms to '{self.target_frame}' are available again: fused cloud resumed"
                )
            self._fusion_ok, self.fusion_status = True, "ok"
        else:
            if self._fusion_ok is not False:
                self.get_logger().warning(
                    f"fused cloud waits for TF (per-view outputs continue): {tf_problem}"
                )
            self._fusion_ok, self.fusion_status = False, f"waiting for TF: {tf_problem}"
            self.fusion_waiting += 1
        t4 = time.perf_counter()
        rig = RigConfidence(
            views=summaries,
            overlaps=overlaps,
            sync_spread_ms=group.spread / 1e6,
            mean_confidence=float(np.mean([r.mean_confidence for r in results])),
            valid_fraction=float(np.mean([r.valid_fraction for r in results])),
            inference_time_ms=float(eo.infer_ms),
            fused=fused,
            fusion_status=self.fusion_status,
        )
        rig.header.stamp = header.stamp
        rig.header.frame_id = self.target_frame
        self.pub_rig.publish(rig)
        self.timing["latency_ms"].add(self.latency_ms(newest))
        self.rate_out.tick()
        self.timing["e2e_ms"].add((time.perf_counter() - t0) * 1e3)
        self.timing["infer_ms"].add(eo.infer_ms)
        self.timing["preprocess_ms"].add(eo.preprocess_ms)
        self.timing["post_ms"].add((t2 - t1) * 1e3)
        self.timing["publish_ms"].add((t3 - t2) * 1e3)
        self.timing["fuse_ms"].add((t4 - t3) * 1e3)
        return "published"

    def _publish_fused(self, header, depths, intrs, tfs, rgbs) -> bool:
        cloud = fuse_views(
            depths,
            intrs,
            tfs,
            stride=int(self._param("fused_decimation")),
            min_range=float(self._param("fused_min_range")),
            max_range=float(self._param("fused_max_range")),
            colors=rgbs if self._param("fused_rgb") else None,
        )
        fused_header = RCLPY.new("std_msgs/msg/Header", stamp=header.stamp, frame_id=self.target_frame)
        self.pub_fused.publish(RCLPY.pointcloud(fused_header, pack_unorganized(cloud)))
        self.fused_out += 1
        return True

    def _overlaps(self, msgs, results, intrs, tfs) -> list[ViewOverlap]:
        n = len(msgs)
        if n < 2:
            return []
        stride = int(self._param("consistency_decimation"))
        pairs = [(i, (i + 1) % n) for i in range(n if n > 2 else 1)]
        out = []
        for a, b in pairs:
            ov = view_consistency(
                results[a].depth,
                intrs[a],
                results[b].depth,
                intrs[b],
                tfs[b].inverse() @ tfs[a],
                stride=stride,
            )
            out.append(
                ViewOverlap(
                    camera_a=msgs[a].header.frame_id,
                    camera_b=msgs[b].header.frame_id,
                    n_points=ov.n_points,
                    overlap_fraction=ov.overlap_fraction,
                    median_rel_diff=ov.median_rel_diff,
                )
            )
        return out

    # ---------------------------------------------------------------- diagnostics


def main(argv=None) -> int:
    """Entry point: ``bore-depth-surround-node --ros-args --params-file config/surround.yaml``."""
    return run_node(SurroundDepthNode, "bore_depth_surround", argv)


if __name__ == "__main__":
    sys.exit(main())
