"""``bore-depth eval``: replay a rosbag2 through the node's depth pipeline and score it against ground truth.

Offline and ROS-free: images are checked and decoded as the nodes do (the same input checks,
camera_info pairing and rejection reasons), run through one :class:`DepthEngine` and a
:class:`ViewProcessor` per camera (the code the live nodes run), then compared with ground-truth
depth images or with LiDAR points projected into each camera through the bag's TF. Metrics per
camera and overall (mean of per-camera means), metric and median-scaled; boundary quality; error
versus distance; optionally an output bag with the node's topics for rviz; a report.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bag.reader import (
    CLOCK_TOPIC,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    CameraFrame,
    FrameSync,
    discover_cameras,
    open_bag,
    topics_of_type,
)
from ..core.camera import Intrinsics
from ..core.errors import InputRejected
from ..core.frame import infer_views, view_outputs
from ..core.messages import IMAGE, cloud_fields, depth_metres, intrinsics, validate_image
from ..core.resize import resize_nearest
from ..core.scale import ScaleResult
from ..core.sync import ApproximateSynchronizer
from ..core.tf_buffer import TfBuffer, TfLookupError
from ..core.view import ViewConfig, ViewProcessor
from ..engine import DepthEngine, EngineConfig
from ..sim.rig import ring_ordered
from .config import (
    CAMERA_HEIGHT_UNAVAILABLE,
    DISTANCE_BINS,
    GT_DEPTH_MISSING,
    LIDAR_CLOUD_MISSING,
    LIDAR_UNSUPPORTED,
    EvalConfig,
)
from .ground_truth import choose_ground_truth, lidar_gt_depth, remove_occluded
from .output_bag import OutputBag
from .scoring import CameraAccumulator, EvalResult, compare_frame, gt_median_ratio, overall_metrics

log = logging.getLogger(__name__)


@dataclass
class _Prepared:
    frame: CameraFrame
    acc: CameraAccumulator
    rgb: np.ndarray
    intr: Intrinsics
    gt: np.ndarray
    view: object
    median: tuple | None = None  # (ratio, source) of the ground-truth scale oracle


class _Evaluator:
    def __init__(
        self,
        config: EvalConfig,
        engine: DepthEngine,
        sync: FrameSync,
        sources: dict,
        out: OutputBag | None,
        report_dir: Path,
        expected: dict[str, int],
    ):
        self.config = config
        self.engine = engine
        self.sync = sync
        self.out = out
        self.report_dir = report_dir
        self.backend_name = getattr(engine.backend, "name", config.backend)  # as the node reports it
        self.needs_extrinsics = bool({"rays", "origins"} & set(engine.info.input_names))
        self.timing: dict[str, float] = collections.defaultdict(float)
        self.evaluated = 0
        self.compensated = 0
        self.no_valid_gt = 0
        self.lidar_points = [0, 0]  # projected, removed as occluded
        nb = len(DISTANCE_BINS) - 1
        self.acc: dict[str, CameraAccumulator] = {}
        for cam in sync.cameras:
            n = max(expected.get(cam.namespace, 1), 1)
            k = max(config.panels_per_camera, 0)
            panel_at = set(np.linspace(0, n - 1, k).round().astype(int).tolist()) if k else set()
            kind, topic = sources[cam.namespace]
            self.acc[cam.namespace] = CameraAccumulator(cam, kind, topic, nb, panel_at)

    def drop(self, ns: str, reason: str, detail: str = "") -> None:
        if reason not in self.sync.drop_details:
            log.warning("dropping frames of %s: %s: %s", ns, reason, detail)
        self.sync.drop(ns, reason, detail)

    def _view(self, acc: CameraAccumulator, frame_id: str, stamp_ns: int) -> ViewProcessor | None:
        if acc.view is not None:
            return acc.view
        cfg = self.config
        height = cfg.camera_height
        if cfg.scale_mode == "ground_plane" and height <= 0:
            t, err = self.sync.tf.resolve(cfg.base_frame, frame_id, stamp_ns)
            if t is None or not t.translation[2] > 0:
                why = (
                    str(err) if err else f"optical origin is {t.translation[2]:.3f} m above {cfg.base_frame}"
                )
                self.drop(
                    acc.cam.namespace,
                    CAMERA_HEIGHT_UNAVAILABLE,
                    f"scale_mode ground_plane needs camera_height or TF {cfg.base_frame} <- "
                    f"{frame_id}: {why}",
                )
                return None
            height = float(t.translation[2])
        acc.height = height if cfg.scale_mode == "ground_plane" else None
        mode = "fixed" if cfg.scale_mode == "median" else cfg.scale_mode
        vc = ViewConfig(
            confidence_threshold=cfg.confidence_threshold,
            min_depth=0.0,
            max_depth=math.inf,
            edge_sensitivity=cfg.edge_sensitivity,
            scale_mode=mode,
            depth_scale=cfg.depth_scale,
            camera_height=height,
        )
        info = self.engine.info
        acc.view = ViewProcessor(vc, info.metric, (info.min_depth, info.max_depth))
        return acc.view

    def _ground_truth(
        self, frame: CameraFrame, acc: CameraAccumulator, intr: Intrinsics
    ) -> np.ndarray | None:
        ns = acc.cam.namespace
        if acc.gt_kind == "depth":
            if frame.depth_gt is None:
                self.drop(ns, GT_DEPTH_MISSING, f"no {acc.gt_topic} message with stamp {frame.stamp_ns}")
                return None
            try:
                gt = depth_metres(frame.depth_gt)
            except InputRejected as e:
                self.drop(ns, e.reason, f"{acc.gt_topic}: {e.detail}")
                return None
            if gt.shape != (intr.height, intr.width):
                gt = resize_nearest(gt, intr.height, intr.width)
            return gt
        cloud, cloud_stamp = self.sync.nearest_cloud(frame.stamp_ns, int(self.config.lidar_max_dt * 1e9))
        if cloud is None:
            self.drop(
                ns,
                LIDAR_CLOUD_MISSING,
                f"no {acc.gt_topic} cloud within {self.config.lidar_max_dt} s of {frame.stamp_ns}",
            )
            return None
        try:
            xyz = cloud_fields(cloud)
        except ValueError as e:
            self.drop(ns, LIDAR_UNSUPPORTED, f"{acc.gt_topic}: {e}")
            return None
        try:
            gt, comp = lidar_gt_depth(
                self.sync.tf,
                xyz,
                cloud.header.frame_id,
                cloud_stamp,
                frame.image.header.frame_id,
                frame.stamp_ns,
                intr,
                self.config.odom_frame,
            )
        except TfLookupError as e:
            self.drop(ns, e.reason, e.detail)
            return None
        self.compensated += int(comp)
        cfg = self.config
        filtered = remove_occluded(gt, cfg.lidar_occlusion_window, cfg.lidar_occlusion_tolerance)
        self.lidar_points[0] += int(np.isfinite(gt).sum())
        self.lidar_points[1] += int(np.isfinite(gt).sum() - np.isfinite(filtered).sum())
        return filtered

    def process(self, frame: CameraFrame) -> None:
        """One camera frame on its own (models that process views independently)."""
        prepared = self.prepare(frame)
        if prepared is None:
            return
        tf = None
        if self.needs_extrinsics:
            tf = self._extrinsic(prepared)
            if tf is None:
                return
        self._infer([prepared], None if tf is None else [tf])

    def process_set(self, prepared: list[_Prepared]) -> None:
        """A synchronized set of all cameras in one batched call (models that fuse views)."""
        tfs = [self._extrinsic(p) for p in prepared] if self.needs_extrinsics else None
        if tfs is not None and any(t is None for t in tfs):
            return
        self._infer(prepared, tfs)

    def _infer(self, prepared: list[_Prepared], tfs) -> None:
        """The nodes' per-frame step (core.frame.infer_views), then scoring of every view."""
        n = len(prepared)
        t0 = time.perf_counter()
        results, eo = infer_views(
            self.engine,
            [p.view for p in prepared],
            [p.rgb for p in prepared],
            [p.intr for p in prepared],
            tfs,
            before_post=lambda i, d: self._median_scale(prepared[i], d),
        )
        post_ms = (time.perf_counter() - t0) * 1e3 - eo.infer_ms - eo.preprocess_ms
        self.timing["postprocess_ms"] += post_ms
        for p, res in zip(prepared, results):
            if p.median is not None:
                res = dataclasses.replace(res, scale=ScaleResult(*p.median))
            self.complete(p, res, eo.infer_ms / n, eo.preprocess_ms / n)

    def _median_scale(self, p: _Prepared, d_model: np.ndarray) -> None:
        """scale_mode median: the per-frame ground-truth oracle sets the view's scale."""
        if self.config.scale_mode != "median":
            return
        cfg, acc = self.config, p.acc
        ratio = gt_median_ratio(d_model, p.gt, cfg.min_depth, cfg.max_depth)
        source = "gt_median"
        if not math.isfinite(ratio) or ratio <= 0:
            ratio, source = (acc.last_ratio, "held") if acc.last_ratio else (1.0, "initial")
        acc.last_ratio = ratio
        p.view.configure(dataclasses.replace(p.view.config, depth_scale=ratio))
        p.median = (ratio, source)

    def _extrinsic(self, p: _Prepared):
        tf, err = self.sync.tf.resolve(
            self.config.base_frame, p.frame.image.header.frame_id, p.frame.stamp_ns
        )
        if err is not None:
            self.drop(p.acc.cam.namespace, err.reason, err.detail)
        return tf

    def prepare(self, frame: CameraFrame) -> _Prepared | None:
        """Decode, check and fetch the ground truth of one frame (None: dropped, with reason)."""
        acc = self.acc[frame.camera.namespace]
        ns = acc.cam.namespace
        img, info = frame.image, frame.camera_info
        t0 = time.perf_counter()
        try:  # the node's checks, so replay rejects (and counts) what the node rejects
            rgb = validate_image(img, self.config.max_input_pixels)
            intr = intrinsics(info, img.width, img.height)
        except InputRejected as e:
            self.drop(ns, e.reason, e.detail)
            return None
        t1 = time.perf_counter()
        gt = self._ground_truth(frame, acc, intr)
        t2 = time.perf_counter()
        self.timing["decode_ms"] += (t1 - t0) * 1e3
        self.timing["ground_truth_ms"] += (t2 - t1) * 1e3
        if gt is None:
            return None
        frame_id = img.header.frame_id
        view = self._view(acc, frame_id, frame.stamp_ns)
        if view is None:
            return None
        return _Prepared(frame, acc, rgb, intr, gt, view)

    def complete(self, p: _Prepared, res, infer_ms: float, preprocess_ms: float) -> None:
        """Compare one post-processed view with its ground truth, record, write outputs."""
        cfg = self.config
        frame, acc, rgb, intr, gt = p.frame, p.acc, p.rgb, p.intr, p.gt
        info = frame.camera_info
        t4 = time.perf_counter()
        cmp = compare_frame(
            res.depth,
            gt,
            min_depth=cfg.min_depth,
            max_depth=cfg.max_depth,
            boundary=acc.gt_kind == "depth",
            edge_threshold=cfg.edge_threshold,
            edge_radius=cfg.edge_radius,
        )
        t5 = time.perf_counter()
        self.evaluated += 1
        acc.frames += 1
        if cmp.metric["n_valid"] == 0:
            self.no_valid_gt += 1  # processed, but left out of the means (not a drop)
        acc.metric.append(cmp.metric)
        acc.median.append(cmp.median)
        if cmp.boundary is not None:
            acc.boundary.append(cmp.boundary)
        acc.sums += cmp.bin_abs_rel_sum
        acc.counts += cmp.bin_pixels
        acc.scales.append(float(res.scale.scale))
        acc.scale_sources[res.scale.source] += 1
        acc.valid.append(res.valid_fraction)
        acc.conf.append(res.mean_confidence)
        if self.out is not None:
            self._write_outputs(frame, info, rgb, intr, res, infer_ms)
        t6 = time.perf_counter()
        shot = (acc.frames - 1, rgb, res.depth, res.confidence, gt, frame.stamp_ns)
        if acc.frames - 1 in acc.panel_at:
            self._panel(acc, shot)
            acc.last_shot = None
        elif len(acc.panels) < cfg.panels_per_camera:
            # the expected frame count includes images that end up dropped, so the last planned
            # panel may never come: keep the latest frame to save at the end instead
            acc.last_shot = (shot[0], np.array(rgb), *shot[2:])
        t7 = time.perf_counter()
        tm = self.timing
        tm["preprocess_ms"] += preprocess_ms
        tm["inference_ms"] += infer_ms
        tm["compare_ms"] += (t5 - t4) * 1e3
        tm["output_bag_ms"] += (t6 - t5) * 1e3
        tm["panels_ms"] += (t7 - t6) * 1e3

    def _panel(self, acc: CameraAccumulator, shot) -> None:
        from .report import save_panel

        index, rgb, depth, conf, gt, stamp_ns = shot
        name = f"panel_{acc.cam.name}_{index:04d}.png"
        save_panel(self.report_dir / name, rgb, depth, conf, gt, self.config.min_depth, self.config.max_depth)
        acc.panels.append(name)

    def finish(self) -> None:
        for acc in self.acc.values():
            if acc.last_shot is not None and len(acc.panels) < self.config.panels_per_camera:
                self._panel(acc, acc.last_shot)
            acc.last_shot = None

    def _write_outputs(
        self, frame: CameraFrame, info, rgb: np.ndarray, intr: Intrinsics, res, infer_ms: float
    ) -> None:
        """The node's per-view messages (:func:`~bore_depth_ros.core.frame.view_outputs`)."""
        header = self.out.factory.header(frame.stamp_ns, frame.image.header.frame_id)
        for suffix, msg in view_outputs(
            self.out.factory,
            header,
            info,
            intr,
            rgb,
            res,
            infer_ms,
            self.engine.config.model,
            self.backend_name,
            self.config.points_decimation,
        ):
            self.out.bag.write(f"{frame.camera.namespace}/{suffix}", msg, frame.log_ns)


def evaluate(config: EvalConfig, progress: bool = True, engine: DepthEngine | None = None) -> EvalResult:
    """Run the evaluation described by ``config``; ``engine`` reuses an already loaded model."""
    from tqdm import tqdm

    from .report import write_report

    config.validate()
    report_dir = Path(config.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    t_load = time.perf_counter()
    out = None
    with open_bag(config.bag) as reader:
        cams = discover_cameras(reader, config.cameras, config.gt_topics)
        if not cams:
            images = topics_of_type(reader, IMAGE)
            raise ValueError(
                "no camera found in the bag (an Image topic with a colour/mono encoding "
                "and a sibling camera_info); image topics: "
                + (", ".join(images) or "none")
                + "; choose with --camera"
            )
        from ..models import get_model_info

        rig_model = get_model_info(config.model).num_cameras > 1
        if rig_model:
            cams = ring_ordered(cams)
        if engine is None:
            engine = DepthEngine(
                EngineConfig(
                    model=config.model,
                    weights=config.weights,
                    backend=config.backend,
                    device=config.device,
                    input_height=config.input_height,
                    input_width=config.input_width,
                    batch=len(cams) if rig_model else 1,
                    cache_dir=config.cache_dir,
                )
            )
        load_s = time.perf_counter() - t_load
        sources, lidar_topic = choose_ground_truth(config, cams, reader)
        copy_topics = {c.image for c in cams} | {c.camera_info for c in cams}
        copy_topics |= {TF_TOPIC, TF_STATIC_TOPIC, CLOCK_TOPIC} | ({lidar_topic} if lidar_topic else set())
        try:
            if config.output_bag:
                out = OutputBag(config.output_bag, config.storage, copy_topics)
            sync = FrameSync(
                reader,
                cams,
                TfBuffer(cache_time_ns=60_000_000_000),
                cloud_topic=lidar_topic,
                extra_topics=[CLOCK_TOPIC],
                window_ns=int(config.sync_window * 1e9),
                on_message=out.copy if out else None,
            )
            counts = {c.image: 0 for c in cams}
            for conn in reader.connections:
                if conn.topic in counts:
                    counts[conn.topic] += conn.msgcount
            expected = {c.namespace: counts[c.image] for c in cams}
            if config.max_frames:
                per_cam = -(-config.max_frames // len(cams))
                expected = {k: min(v, per_cam) for k, v in expected.items()}
            ev = _Evaluator(config, engine, sync, sources, out, report_dir, expected)
            total = sum(counts.values())
            bar = tqdm(
                total=min(total, config.max_frames) if config.max_frames else total,
                file=sys.stderr,
                disable=not progress,
                unit="frame",
                desc="eval",
            )
            t_loop = time.perf_counter()
            stopped = False
            rig = (
                ApproximateSynchronizer(len(cams), int(config.rig_slop * 1e9))
                if engine.info.num_cameras > 1
                else None
            )
            index = {c.namespace: i for i, c in enumerate(cams)}
            for frame in sync:
                if rig is None:
                    ev.process(frame)
                else:
                    # the same synchroniser as the surround node groups the cameras into sets
                    prepared = ev.prepare(frame)
                    if prepared is not None:
                        event = rig.add(index[frame.camera.namespace], frame.stamp_ns, prepared)
                        for stream, _, reason in event.drops:
                            ev.drop(cams[stream].namespace, f"sync_{reason}")
                        for group in event.groups:
                            ev.process_set(group.items)
                bar.update(1)
                if config.max_frames and ev.evaluated >= config.max_frames:
                    stopped = True
                    break
            if rig is not None:
                for stream, _, reason in rig.flush().drops:
                    ev.drop(cams[stream].namespace, f"sync_{reason}")
            ev.finish()
            loop_s = time.perf_counter() - t_loop
            bar.close()
        finally:
            if out is not None:
                out.close()
    by_cam: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (src, reason), n in sorted(sync.drops.items()):
        by_cam[src][reason] = n
    cam_results = [ev.acc[c.namespace].result(DISTANCE_BINS, by_cam.get(c.namespace, {})) for c in cams]
    n = max(ev.evaluated, 1)
    timing = {k: v / n for k, v in sorted(ev.timing.items())}
    stages = sum(ev.timing.values()) / 1e3
    timing.update(
        {
            "engine_load_s": load_s,
            "loop_s": loop_s,
            "read_sync_ms": max(loop_s - stages, 0.0) * 1e3 / n,
            "frames_per_second": ev.evaluated / loop_s if loop_s > 0 else math.nan,
        }
    )
    notes = []
    if "random-init" in engine.weights_source:
        notes.append(
            "No trained weights were given or shipped: the depth is that of an untrained "
            "network, so the numbers measure the pipeline, not the model."
        )
    if stopped:
        notes.append(f"Stopped after max_frames={config.max_frames} evaluated camera frames.")
    if ev.lidar_points[0] and config.lidar_occlusion_window > 0:
        notes.append(
            f"The LiDAR occlusion filter ({config.lidar_occlusion_window} px, "
            f"{config.lidar_occlusion_tolerance:g}) removed {ev.lidar_points[1]} of "
            f"{ev.lidar_points[0]} projected points "
            f"({100 * ev.lidar_points[1] / ev.lidar_points[0]:.1f} %) as hidden from the camera."
        )
    if ev.compensated:
        notes.append(
            f"{ev.compensated} LiDAR frames were motion-compensated through "
            f"'{config.odom_frame}' (cloud and image stamps differ)."
        )
    result = EvalResult(
        config=dataclasses.asdict(config),
        engine={**engine.describe(), "weights_source": engine.weights_source},
        cameras=cam_results,
        overall=overall_metrics(cam_results, DISTANCE_BINS),
        frames={
            "images_read": sync.images_read,
            "evaluated": ev.evaluated,
            "dropped": sum(sync.drops.values()),
            "without_valid_gt": ev.no_valid_gt,
            "messages_read": sync.messages_read,
        },
        drops=sync.drops_by_reason(),
        drop_details=dict(sync.drop_details),
        timing=timing,
        notes=notes,
    )
    if out is not None:
        result.paths["output_bag"] = out.path
    result.paths.update(write_report(result.to_dict(), report_dir))
    return result
