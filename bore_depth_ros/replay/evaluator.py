"""The per-frame work of a replay (``bore-depth eval``): the nodes' input checks, ground truth,
the shared per-frame step, scoring, output bag and panels for each camera frame or set."""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bag.reader import (
    CameraFrame,
    FrameSync,
)
from ..core.camera import Intrinsics
from ..core.errors import InputRejected
from ..core.frame import infer_views, view_outputs
from ..core.messages import cloud_fields, depth_metres, intrinsics, validate_image
from ..core.metrics import METRIC_NAMES
from ..core.resize import resize_nearest
from ..core.scale import ScaleResult
from ..core.tf_buffer import TfLookupError
from ..core.view import ViewConfig, ViewProcessor
from ..engine import DepthEngine
from .config import (
    CAMERA_HEIGHT_UNAVAILABLE,
    DISTANCE_BINS,
    GT_DEPTH_MISSING,
    LIDAR_CLOUD_MISSING,
    LIDAR_UNSUPPORTED,
    EvalConfig,
)
from .ground_truth import lidar_gt_depth, remove_occluded
from .output_bag import OutputBag
from .scoring import CameraAccumulator, compare_frame, gt_median_ratio
from .stability import StabilityTracker

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


class FrameEvaluator:
    """Scores the frames of one replay: checks and decodes each as the nodes do, fetches its
    ground truth, runs the per-frame step (``core.frame.infer_views``), compares, records, and
    writes the output bag and panels."""

    def __init__(
        self,
        config: EvalConfig,
        engine: DepthEngine,
        sync: FrameSync,
        sources: dict,
        out: OutputBag | None,
        report_dir: Path,
        expected: dict[str, int],
        on_frame: Callable[[dict], None] | None = None,
    ):
        self.config = config
        self.on_frame = on_frame
        self._drops_told: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
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
            tracker = StabilityTracker(config.min_depth, config.max_depth, fixed_frame=config.odom_frame)
            self.acc[cam.namespace] = CameraAccumulator(cam, kind, topic, nb, panel_at, tracker)

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
            scale_smoothing=cfg.scale_smoothing,
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
        cloud, cloud_stamp = self.sync.nearest_cloud(
            frame.stamp_ns, int(self.config.lidar_max_dt * 1e9), acc.gt_topic
        )
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
            rgb = validate_image(img, self.config.max_input_pixels)  # Image or CompressedImage
            intr = intrinsics(info, rgb.shape[1], rgb.shape[0])
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
            confidence=res.confidence,
        )
        t5 = time.perf_counter()
        # temporal stability: the camera's pose in the fixed frame (None without TF ego motion)
        pose = self.sync.tf.lookup(cfg.odom_frame, frame.image.header.frame_id, frame.stamp_ns)
        acc.stability.add(
            frame.stamp_ns,
            res.depth,
            intr,
            pose,
            scale=cmp.median["scale"] if cmp.median["n_valid"] else math.nan,
            gt=gt,
            dense_gt=acc.gt_kind == "depth",
        )
        t5s = time.perf_counter()
        self.evaluated += 1
        acc.frames += 1
        if cmp.metric["n_valid"] == 0:
            self.no_valid_gt += 1  # processed, but left out of the means (not a drop)
        acc.metric.append(cmp.metric)
        acc.median.append(cmp.median)
        if self.on_frame is not None:
            self.on_frame(self.frame_record(p, cmp))
        if cmp.boundary is not None:
            acc.boundary.append(cmp.boundary)
        acc.sums += cmp.bin_abs_rel_sum
        acc.confidence_abs_rel.append(cmp.confidence_abs_rel)
        acc.counts += cmp.bin_pixels
        acc.scales.append(float(res.scale.scale))
        acc.scale_sources[res.scale.source] += 1
        acc.valid.append(res.valid_fraction)
        acc.conf.append(res.mean_confidence)
        if self.out is not None:
            self._write_outputs(frame, info, rgb, intr, res, infer_ms)
        t6 = time.perf_counter()
        # a relative model's depth is shown and scored median-scaled, like its figures
        shown_scale = None
        if not self.engine.info.metric and cmp.median["n_valid"]:
            shown_scale = float(cmp.median["scale"])
        shot = (acc.frames - 1, rgb, res.depth, res.confidence, gt, frame.stamp_ns, shown_scale)
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
        tm["stability_ms"] += (t5s - t5) * 1e3
        tm["output_bag_ms"] += (t6 - t5s) * 1e3
        tm["panels_ms"] += (t7 - t6) * 1e3

    def frame_record(self, p: _Prepared, cmp) -> dict:
        """One scored camera frame: camera, topic, stamp, metric and median-scaled metrics, and the
        frames of this camera dropped since its previous scored frame, by reason."""
        ns = p.acc.cam.namespace
        now = collections.Counter({r: n for (src, r), n in self.sync.drops.items() if src == ns})
        told = self._drops_told[ns]
        new = {r: n - told[r] for r, n in sorted(now.items()) if n > told[r]}
        self._drops_told[ns] = now
        keys = (*METRIC_NAMES, "n_valid")
        return {
            "camera": ns,
            "topic": p.frame.camera.image,
            "stamp_ns": int(p.frame.stamp_ns),
            "metrics": {k: cmp.metric[k] for k in keys if k in cmp.metric},
            "median": {k: cmp.median[k] for k in keys if k in cmp.median},
            "drops": new,
        }

    def _panel(self, acc: CameraAccumulator, shot) -> None:
        from .report import save_panel

        index, rgb, depth, conf, gt, stamp_ns, scale = shot
        name = f"panel_{acc.cam.name}_{index:04d}.png"
        cfg = self.config
        save_panel(self.report_dir / name, rgb, depth, conf, gt, cfg.min_depth, cfg.max_depth, scale)
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
