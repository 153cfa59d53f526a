"""Surround depth node: N synchronized cameras, one batched inference, per-view and fused outputs.

For every camera name ``c`` in the ``cameras`` parameter (ring order: neighbours are adjacent,
the last one neighbours the first):
  in  (best effort):  ``c/image``, ``c/camera_info``
  out (reliable):     ``c/depth/image``, ``c/depth/camera_info``, ``c/confidence/image``,
                      ``c/points``, ``c/view_confidence`` (the mono node's contract, same headers)
and for the rig: ``points`` (all views fused in ``target_frame``, unorganized) and
``rig_confidence`` (bore_depth_ros/RigConfidence), plus ``/diagnostics``.
Degraded rig: a camera that delivers no usable image for ``camera_timeout`` (default: three of
its frame periods), or whose stamps are off the rig's by more than ``slop`` while its images stop
joining sets (a clock offset; ``time_offset.<camera>`` compensates one), is left out: sets are
formed from the other cameras, which keep their depth, confidence and clouds, the fused cloud holds
them, ``rig_confidence.missing_cameras`` names the missing ones and ``/diagnostics`` shows that
camera at ERROR. It rejoins with its next usable image. Models that fuse the whole rig (semi_smd)
run with the missing view masked: a neutral image with its last known camera_info and transform;
its depth is neither published nor fused (a camera never seen cannot be masked: those sets are
dropped as ``camera_missing``).
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

import math
import sys
import time

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from bore_depth_ros_msgs.msg import RigConfidence, ViewOverlap

from ..core.errors import CAMERA_INFO_MISSING, InputRejected
from ..core.frame import RestartDetector, infer_views
from ..core.fusion import fuse_views, pack_unorganized, view_consistency
from ..core.messages import intrinsics, stamp_ns, transform, validate_image
from ..core.pairing import InfoPairer
from ..core.rig_health import RigHealth
from ..core.ring import check_order, ring_order
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
from .view_io import OUTPUT_QOS, ViewOutputs, geometry_change, image_input, input_qos

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
        for cam in self.cameras:
            self.declare_parameter(
                f"time_offset.{cam}",
                0.0,
                ParameterDescriptor(
                    description=f"seconds subtracted from {cam}'s stamps for synchronisation and "
                    "the clock check (its outputs keep the input header): compensates a camera "
                    "whose clock is off"
                ),
            )
        self.time_offsets = [self._offset_ns(cam) for cam in self.cameras]
        self.tf = TfBuffer()
        self._reset_counters()

    def _offset_ns(self, cam: str, value=None) -> int:
        v = float(self.get_parameter(f"time_offset.{cam}").value if value is None else value)
        if not math.isfinite(v):
            raise ValueError(f"time_offset.{cam} must be finite, got {v}")
        return int(round(v * 1e9))

    def engine_batch(self) -> int:
        return len(self.cameras)

    def _reset_counters(self) -> None:
        n = len(self.cameras)
        slop_ns = int(float(self.get_parameter("slop").value) * 1e9)
        self.sync = ApproximateSynchronizer(n, slop_ns, int(self.get_parameter("queue_size").value))
        self.health = RigHealth(
            self.cameras, slop_ns, int(float(self.get_parameter("camera_timeout").value) * 1e9)
        )
        self._absent: dict[int, str] = {}
        self._offset_named: set[int] = set()
        self.in_sets = [0] * n  # frames of each camera inside emitted sets
        self._last_view: list[tuple[str, object] | None] = [None] * n  # frame_id, intrinsics
        self._logs = ReasonCounter()  # throttles restart and geometry-change lines (5 s)
        self._order_checked = False  # the cameras' ring order against TF, checked once
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
        self.degraded_sets = 0  # published sets with cameras missing
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
        self.image_topics = []
        for i, cam in enumerate(self.cameras):
            # camera_info before image: served first when both are ready (as in the mono node)
            self.create_subscription(
                CameraInfo,
                f"{cam}/camera_info",
                lambda m, i=i: self._on_camera_info(i, m),
                input_qos(max(qdepth, 5)),
                qos_overriding_options=overrides,
            )
            msg_type, topic = image_input(self, f"{cam}/image")
            self.image_topics.append(topic)
            self.create_subscription(
                msg_type,
                topic,
                lambda m, mi, i=i: self._on_image(i, m, mi),
                input_qos(qdepth),
                qos_overriding_options=overrides,
            )
            self.outputs.append(ViewOutputs(self, f"{cam}/"))
        self.pub_fused = self.create_publisher(
            PointCloud2, "points", OUTPUT_QOS, qos_overriding_options=overrides
        )
        self.pub_rig = self.create_publisher(RigConfidence, "rig_confidence", OUTPUT_QOS)

    def input_topics(self) -> list[str]:
        return list(self.image_topics)

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
        self.health.timeout_ns = int(float(values["camera_timeout"]) * 1e9)
        offsets = {}
        for p in params:
            if p.name.startswith("time_offset.") and p.name[len("time_offset.") :] in self.cameras:
                cam = p.name[len("time_offset.") :]
                try:
                    offsets[self.cameras.index(cam)] = self._offset_ns(cam, p.value)
                except (TypeError, ValueError) as e:
                    return P.rejected(str(e))
        for i, off in offsets.items():
            self.time_offsets[i] = off
            self.health.forget_clock(i)  # judge the clock afresh with the new offset
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
        self.health.reset()
        if self._logs.add("restart"):
            self.get_logger().warning(
                f"{source}: stamps jumped back by {(last - t) / 1e9:.3f} s (bag "
                f"restarted?): reset synchronisation ({len(ev.drops)} queued frames dropped), "
                f"dynamic TF cache, temporal and scale state [{self._logs.counts['restart']} "
                "restarts so far; logged at most every 5 s]"
            )

    def _on_image(self, i: int, msg: Image, msg_info) -> None:
        self.frames_in[i] += 1
        self.rate_in[i].tick()
        self.gaps[i].add(msg_info.get("publication_sequence_number"))
        t_in = stamp_ns(msg.header)
        last = self._restarts.observe(("image", i), t_in)
        if last is not None:
            self._restart(self.cameras[i], last, t_in)
            self._restarts.observe(("image", i), t_in)
        self.check_stamp(self.image_topics[i], t_in)
        try:
            rgb = validate_image(msg, int(self._param("max_input_pixels")))
        except InputRejected as e:
            self._reject(i, e, msg)
            return
        now = self.now_ns()
        t = t_in - self.time_offsets[i]  # the rig's time base (time_offset.<camera>)
        self.health.arrived(i, t, now)
        self._update_absent(now)
        ev = self.sync.add(i, t, (msg, rgb))
        self._count_sync_drops(ev)
        for group in ev.groups:
            self.sets_emitted += 1
            for k in group.present:
                self.in_sets[k] += 1
                self.health.in_set(k, now)
            missing = [self.cameras[k] for k in group.present if not len(self._infos[k])]
            if not missing:
                self._prepare_group(group)
                continue
            # some camera has never sent camera_info: wait (one set) for it, as the mono node does
            if self._pending_group is not None:
                self._drop_group(
                    CAMERA_INFO_MISSING, f"no camera_info yet from {missing} before the next synchronized set"
                )
            self._pending_group = group

    def _count_sync_drops(self, ev: SyncEvent) -> None:
        for stream, stamp, reason in ev.drops:
            if self.sync_drops[stream].add(reason) and self.sync_drops[stream].counts[reason] == 1:
                self.get_logger().warning(
                    f"synchroniser dropped {self.cameras[stream]} frame {stamp / 1e9:.3f}: {reason}"
                    " (reported once per camera and reason; counts in /diagnostics)"
                )

    def _update_absent(self, now: int) -> None:
        """Leave silent and out-of-sync cameras out of the sets; log each change once."""
        self._name_offsets()
        absent = self.health.absent(now)
        if absent == self._absent:
            return
        self._count_sync_drops(self.sync.set_absent(absent))
        n = len(self.cameras)
        for i, reason in absent.items():
            if self._absent.get(i) != reason:
                self.get_logger().warning(
                    f"{self.health.describe(i, reason, now)}: left out of the sets, which continue "
                    f"with {n - len(absent)} of {n} cameras"
                )
        for i in self._absent.keys() - absent.keys():
            self.get_logger().info(
                f"{self.cameras[i]} delivers usable images again: back in the sets "
                f"({n - len(absent)} of {n} cameras)"
            )
        self._absent = absent

    def _name_offsets(self) -> None:
        """Name each camera whose stamps are off the rig's (once per episode)."""
        offsets = self.health.clock_offsets()
        for i in offsets.keys() - self._offset_named:
            self.get_logger().warning(
                f"{self.health.describe(i, 'clock_offset', 0)} (judged from arrival times; left out "
                "of the sets if its images stop synchronising)"
            )
        self._offset_named = set(offsets)

    def _reject(self, i: int, err: InputRejected, msg: Image) -> None:
        self.rejections[i].add(err.reason)
        # logged at most every 5 s per reason for the whole rig (not per camera: six cameras
        # times nine reasons made up to 54 lines every 5 s under fuzzing), counts per camera
        if self._logs.add(f"rejected.{err.reason}"):
            per_camera = {
                c: r.counts[err.reason] for c, r in zip(self.cameras, self.rejections) if r.counts[err.reason]
            }
            self.get_logger().warning(
                f"{self.cameras[i]}: rejected image (stamp {msg.header.stamp.sec}."
                f"{msg.header.stamp.nanosec:09d}, frame '{msg.header.frame_id}'): {err} "
                f"['{err.reason}' so far: {per_camera}]"
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
        n = len(self.cameras)
        infos, intr_in = [None] * n, [None] * n
        for i in group.present:
            m = group.items[i][0]
            info = self._infos[i].pair_now(stamp_ns(m.header))
            try:
                if info is None:
                    raise InputRejected(
                        CAMERA_INFO_MISSING,
                        f"no camera_info on {self.resolve_topic_name(self.cameras[i] + '/camera_info')}",
                    )
                rgb = group.items[i][1]
                intr = intrinsics(info, rgb.shape[1], rgb.shape[0])
            except InputRejected as e:
                self._reject(i, e, m)
                self._set_rejects[i] += 1
                self._drop_group(e.reason, f"camera {self.cameras[i]}: {e.detail}")
                return
            self._note_geometry(i, m, intr)
            infos[i], intr_in[i] = info, intr
            self._last_view[i] = (m.header.frame_id, intr)
        self.submit((group, infos, intr_in))

    def _note_geometry(self, i: int, msg: Image, intr) -> None:
        self._geometry[i], what = geometry_change(self._geometry[i], intr)
        if what is not None and self._logs.add(f"geometry.{i}.{what.split()[0]}"):
            self.get_logger().info(
                f"{self.cameras[i]}: camera {what}: outputs follow the new geometry, scale state "
                "reset (logged at most every 5 s)"
            )
        if what is not None:
            self.views[i].reset()

    # ---------------------------------------------------------------- processing (worker thread)
    def _extrinsics(self, frames: list[tuple[str, int]]) -> tuple[list[Transform | None], str]:
        """target_frame <- each (frame_id, stamp); the problems in words ("" when all resolve)."""
        tfs, problems = [], []
        for frame_id, t in frames:
            tf, err = self.tf.resolve(self.target_frame, frame_id, t)
            tfs.append(tf)
            if err is not None:
                problems.append(f"{frame_id}: {err}")
                self.tf_failures.add(err.reason)
        return tfs, "; ".join(problems)

    def process(self, item) -> str:
        group, infos, intr_in = item
        t0 = time.perf_counter()
        present = group.present
        missing = [i for i in range(len(self.cameras)) if i not in present]
        # models that fuse the whole rig get every slot; a missing view is masked (neutral image,
        # its last known geometry); per-view models run on the views present
        slots = list(range(len(self.cameras))) if self.engine.info.num_cameras > 1 else present
        unseen = [self.cameras[i] for i in slots if i in missing and self._last_view[i] is None]
        if unseen:
            if self._worker_logs.add("camera_missing"):
                self.get_logger().warning(
                    f"dropped a synchronized set: model {self.engine.info.name} fuses the whole rig "
                    f"and {unseen} never delivered an image to stand in for (a masked view needs its "
                    "last camera_info and frame)"
                )
            return "dropped.camera_missing"
        newest = group.newest
        frames = [
            (group.items[i][0].header.frame_id, group.stamps[i] + self.time_offsets[i])
            if i in present
            else (self._last_view[i][0], newest + self.time_offsets[i])
            for i in slots
        ]
        tfs, tf_problem = self._extrinsics(frames)
        have_tf = not tf_problem
        if self.needs_extrinsics and not have_tf:
            if self._worker_logs.add("waiting_for_tf"):
                self.get_logger().warning(
                    f"dropped a synchronized set: model "
                    f"{self.engine.info.name} needs extrinsics; {tf_problem}"
                )
            self.fusion_status = f"waiting for TF: {tf_problem}"
            return "dropped.waiting_for_tf"
        images = [group.items[i][1] if i in present else None for i in slots]
        intrs = [intr_in[i] if i in present else self._last_view[i][1] for i in slots]
        results, eo = infer_views(
            self.engine, [self.views[i] for i in slots], images, intrs, tfs if have_tf else None
        )
        t2 = time.perf_counter()
        t1 = t2 - (eo.infer_ms + eo.preprocess_ms) / 1e3  # post-processing took t2 - t1
        # from here on: the views present, in camera order
        pos = [slots.index(i) for i in present]
        msgs = [group.items[i][0] for i in present]
        rgbs = [group.items[i][1] for i in present]
        results = [results[k] for k in pos]
        tfs = [tfs[k] for k in pos]
        intrs = [intr_in[i] for i in present]
        model, backend = self.engine.config.model, self.engine.backend.name
        lazy, with_points = bool(self._param("lazy")), bool(self._param("publish_points"))
        points = {
            i: with_points and self.builds(self.outputs[i].publishers["points"], "points", lazy)
            for i in present
        }
        summaries = [
            self.outputs[i].publish(
                msgs[k].header,
                infos[i],
                intrs[k],
                rgbs[k],
                results[k],
                eo.infer_ms / len(slots),
                model,
                backend,
                int(self._param("points_decimation")),
                points[i],
                self._param("points_rgb"),
            )
            for k, i in enumerate(present)
        ]
        t3 = time.perf_counter()
        header = msgs[int(np.argmax([group.stamps[i] for i in present]))].header
        fused = False
        overlaps = []
        if have_tf and not self._order_checked and not missing:
            self._order_checked = True  # once: the rig's geometry does not change
            wrong = check_order(self.cameras, tfs)
            n = len(self.cameras)
            order = ring_order(tfs) if wrong else []
            if wrong and not any(order == [(k + r) % n for k in range(n)] for r in range(n)):
                # (a ring started at another camera has the same neighbours: nothing to say)
                self.get_logger().warning(
                    f"the 'cameras' parameter is not in ring order by TF ({wrong}): models that "
                    "fuse neighbours (semi_smd) and the overlap check pair the wrong views"
                )
        fuse = self.builds(self.pub_fused, "fused_points", lazy)
        if have_tf:
            if fuse:
                fused = self._publish_fused(header, [r.depth for r in results], intrs, tfs, rgbs)
            overlaps = self._overlaps(present, msgs, results, intrs, tfs)
            if self._fusion_ok is False:
                self.get_logger().info(
                    f"all camera transforms to '{self.target_frame}' are available again: fused cloud resumed"
                )
            self._fusion_ok = True
            self.fusion_status = "ok" if fuse else "not built: lazy and nobody subscribes to points"
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
            missing_cameras=[self.cameras[i] for i in missing],
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
        latency = self.latency_ms(stamp_ns(header))
        if latency is not None:
            self.timing["latency_ms"].add(latency)
        self.rate_out.tick()
        if missing:
            self.degraded_sets += 1
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

    def _overlaps(self, present, msgs, results, intrs, tfs) -> list[ViewOverlap]:
        """Consistency of ring-adjacent camera pairs that are both in the set."""
        n = len(self.cameras)
        if n < 2:
            return []
        stride = int(self._param("consistency_decimation"))
        at = {cam: k for k, cam in enumerate(present)}
        pairs = [(i, (i + 1) % n) for i in range(n if n > 2 else 1)]
        out = []
        for ca, cb in pairs:
            if ca not in at or cb not in at:
                continue
            a, b = at[ca], at[cb]
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
