"""``bore-depth eval``: replay a rosbag2 through the node's depth pipeline and score it against ground truth.

Offline and ROS-free: images are decoded, run through one :class:`DepthEngine` and a
:class:`ViewProcessor` per camera (the code the live nodes run), then compared with ground-truth
depth images or with LiDAR points projected into each camera through the bag's TF. Metrics per
camera and overall (mean of per-camera means), metric and median-scaled; boundary quality; error
versus distance; optionally an output bag with the node's topics for rviz; a report.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bag import messages as bm
from ..bag.reader import (CLOCK_TOPIC, TF_STATIC_TOPIC, TF_TOPIC, CameraFrame, CameraStreams,
                          FrameSync, depth_gt_to_metres, discover_cameras, open_bag,
                          topics_of_type)
from ..bag.writer import BagWriter
from ..core.boundary import boundary_metrics
from ..core.sync import ApproximateSynchronizer
from ..core.camera import Intrinsics, fit_intrinsics_to_image, scale_camera_info_arrays
from ..core.errors import InputRejected
from ..core.images import image_to_rgb
from ..core.metrics import METRIC_NAMES, depth_metrics, mean_metrics
from ..engine import DepthEngine, EngineConfig
from ..core.view import ViewConfig, ViewProcessor
from ..core.pointcloud import FLOAT32, backproject, pack_points, transform_points
from ..core.resize import resize_nearest
from ..core.scale import ScaleResult
from ..core.tf_buffer import TfBuffer, TfLookupError

log = logging.getLogger(__name__)

GT_MODES = ("auto", "depth", "lidar")
SCALE_MODES = ("fixed", "ground_plane", "median")
DISTANCE_BINS = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0)
BOUNDARY_KEYS = ("precision", "recall", "f1", "dbe_acc", "dbe_comp")
VIEW_CONFIDENCE = "bore_depth_ros_msgs/msg/ViewConfidence"
LIDAR_DEFAULT_TOPIC = "/lidar/points"

# reasons a synchronised frame is not evaluated (besides the reader's and core.errors' codes)
GT_DEPTH_MISSING = "gt_depth_missing"
LIDAR_CLOUD_MISSING = "lidar_cloud_missing"
LIDAR_UNSUPPORTED = "lidar_unsupported_fields"
CAMERA_HEIGHT_UNAVAILABLE = "camera_height_unavailable"


@dataclass
class EvalConfig:
    """What to evaluate and how; defaults follow the node's defaults and the KITTI caps."""

    bag: str
    cameras: list[str] | None = None        # image topics; None = auto-detect
    gt: str = "auto"                        # auto | depth | lidar
    gt_topics: list[str] | None = None      # depth GT topic per entry of ``cameras``
    lidar_topic: str = ""                   # "" = /lidar/points or the only PointCloud2 topic
    model: str = "bore_depth"
    weights: str = ""
    backend: str = "onnxruntime"
    device: str = "cpu"
    input_height: int = 0                   # 0: the weights' training size, else the model default
    input_width: int = 0
    scale_mode: str = "fixed"               # fixed | ground_plane | median (per-frame GT oracle)
    depth_scale: float = 1.0
    camera_height: float = 0.0              # 0 = z of the optical origin in base_frame, from TF
    min_depth: float = 0.1                  # metric caps (GT range; predictions are clamped)
    max_depth: float = 80.0
    confidence_threshold: float = 0.0
    edge_sensitivity: float = 8.0
    max_frames: int = 0                     # camera frames to evaluate; 0 = all
    output_bag: str | None = None
    report_dir: str = "bore_depth_eval"
    points_decimation: int = 4
    storage: str = "mcap"
    base_frame: str = "base_link"
    odom_frame: str = "odom"                # fixed frame for LiDAR motion compensation
    lidar_max_dt: float = 0.1               # seconds between an image and its LiDAR cloud
    lidar_occlusion_window: int = 4         # px half-window of the occlusion filter; 0 = off
    lidar_occlusion_tolerance: float = 0.1
    sync_window: float = 0.5                # seconds of log time to wait for a frame's messages
    rig_slop: float = 0.03                  # seconds: camera sets for rig models (as the node's slop)
    edge_threshold: float = 0.05            # boundary metric: relative depth jump
    edge_radius: float = 1.0                # boundary metric: match tolerance in pixels
    panels_per_camera: int = 3
    cache_dir: str | None = None

    def validate(self) -> None:
        checks = [
            (self.gt in GT_MODES, f"gt must be one of {', '.join(GT_MODES)}, got {self.gt!r}"),
            (self.scale_mode in SCALE_MODES,
             f"scale_mode must be one of {', '.join(SCALE_MODES)}, got {self.scale_mode!r}"),
            (0 < self.min_depth < self.max_depth,
             f"need 0 < min_depth < max_depth, got {self.min_depth} and {self.max_depth}"),
            (self.max_frames >= 0, f"max_frames must be >= 0, got {self.max_frames}"),
            (1 <= self.points_decimation <= 64,
             f"points_decimation must be in [1, 64], got {self.points_decimation}"),
            (self.camera_height >= 0, f"camera_height must be >= 0, got {self.camera_height}"),
            (self.lidar_max_dt >= 0 and self.sync_window >= 0, "lidar_max_dt and sync_window must be >= 0"),
            (self.lidar_occlusion_window >= 0 and self.lidar_occlusion_tolerance >= 0,
             "lidar_occlusion_window and lidar_occlusion_tolerance must be >= 0"),
            (self.gt_topics is None or (self.cameras is not None and len(self.gt_topics) == len(self.cameras)),
             "gt_topics needs one entry per camera topic given in cameras"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


# ---------------------------------------------------------------------------- comparison
@dataclass
class FrameComparison:
    """One frame compared with its ground truth."""

    metric: dict[str, float]                 # prediction as published
    median: dict[str, float]                 # median-scaled per frame
    boundary: dict[str, float] | None        # dense GT only
    bin_abs_rel_sum: np.ndarray              # (2, bins): metric, median-scaled
    bin_pixels: np.ndarray                   # (bins,)


def compare_frame(pred: np.ndarray, gt: np.ndarray, *, min_depth: float = 0.1,
                  max_depth: float = 80.0, boundary: bool = True, edge_threshold: float = 0.05,
                  edge_radius: float = 1.0, bins=DISTANCE_BINS) -> FrameComparison:
    """Metrics of ``pred`` (metres, NaN invalid) against ``gt`` (metres; NaN/inf invalid), same shape.

    Valid pixels: GT finite in (min_depth, max_depth) and prediction finite > 0; predictions are
    clamped to the caps (core.metrics). Error versus distance: AbsRel summed per GT-distance bin.
    """
    pred = np.asarray(pred, np.float32)
    gt = np.asarray(gt, np.float32)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    metric = depth_metrics(pred, gt, min_depth, max_depth)
    median = depth_metrics(pred, gt, min_depth, max_depth, median_scaling=True)
    edges = np.asarray(bins, np.float64)
    nb = len(edges) - 1
    sums = np.zeros((2, nb))
    counts = np.zeros(nb)
    with np.errstate(invalid="ignore"):
        gt_range = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
        valid = gt_range & np.isfinite(pred) & (pred > 0)
    if valid.any():
        g = gt[valid].astype(np.float64)
        p = pred[valid].astype(np.float64)
        idx = np.searchsorted(edges, g, side="right") - 1
        inside = (idx >= 0) & (idx < nb)
        idx, g, p = idx[inside], g[inside], p[inside]
        counts = np.bincount(idx, minlength=nb).astype(np.float64)
        for row, s in enumerate((1.0, median["scale"])):
            err = np.abs(g - np.clip(p * s, min_depth, max_depth)) / g
            sums[row] = np.bincount(idx, weights=err, minlength=nb)
    bnd = None
    if boundary:
        bnd = boundary_metrics(pred, gt, edge_threshold, edge_radius, mask=gt_range)
    return FrameComparison(metric, median, bnd, sums, counts)


def project_points(points: np.ndarray, intr: Intrinsics, min_z: float = 1e-3) -> np.ndarray:
    """Sparse (H, W) float32 depth of optical-frame points (nearest point per pixel), NaN elsewhere."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    p = p[np.isfinite(p).all(axis=1) & (p[:, 2] > min_z)]
    z = p[:, 2]
    col = np.rint(intr.fx * p[:, 0] / z + intr.cx)
    row = np.rint(intr.fy * p[:, 1] / z + intr.cy)
    inside = (col >= 0) & (col < intr.width) & (row >= 0) & (row < intr.height)
    flat = row[inside].astype(np.intp) * intr.width + col[inside].astype(np.intp)
    depth = np.full(intr.width * intr.height, np.inf)
    np.minimum.at(depth, flat, z[inside])
    depth[np.isinf(depth)] = np.nan
    return depth.reshape(intr.height, intr.width).astype(np.float32)


def _min_filter(a: np.ndarray, k: int) -> np.ndarray:
    """Minimum over a (2k+1) x (2k+1) window (separable; borders see the part inside the image)."""
    out = a.copy()
    for axis in (0, 1):
        src = out.copy()
        n = a.shape[axis]
        for d in range(1, min(k, n - 1) + 1):
            lo, hi = [slice(None)] * 2, [slice(None)] * 2
            lo[axis], hi[axis] = slice(0, n - d), slice(d, n)
            np.minimum(out[tuple(lo)], src[tuple(hi)], out=out[tuple(lo)])
            np.minimum(out[tuple(hi)], src[tuple(lo)], out=out[tuple(hi)])
    return out


def remove_occluded(depth: np.ndarray, window: int = 4, tolerance: float = 0.1) -> np.ndarray:
    """Sparse depth without points hidden from the camera: NaN where a point is more than
    ``tolerance`` (relative) farther than the nearest point within ``window`` pixels.

    A LiDAR sits elsewhere than the camera, so it sees background the camera cannot see past a
    nearer object; projected, those points land on the object's pixels. The sparse scan usually
    hits the object nearby, which is what this test relies on.
    """
    if window <= 0:
        return depth
    z = np.where(np.isfinite(depth), depth, np.inf)
    out = depth.copy()
    out[z > (1.0 + tolerance) * _min_filter(z, int(window))] = np.nan
    return out


def lidar_gt_depth(tf: TfBuffer, xyz: np.ndarray, cloud_frame: str, cloud_stamp_ns: int,
                   camera_frame: str, stamp_ns: int, intr: Intrinsics,
                   fixed_frame: str = "odom") -> tuple[np.ndarray, bool]:
    """(sparse GT depth image, motion compensated?) of LiDAR points seen by a camera at ``stamp_ns``.

    When the stamps differ and ``fixed_frame`` is known, the points go lidar(t_cloud) -> fixed ->
    camera(t_image), which removes the ego motion between the two stamps (static world).
    Raises TfLookupError when a transform is missing.
    """
    compensated = cloud_stamp_ns != stamp_ns and tf.has_frame(fixed_frame)
    if compensated:
        t = tf.lookup_full(camera_frame, stamp_ns, cloud_frame, cloud_stamp_ns, fixed_frame)
    else:
        t = tf.lookup_transform(camera_frame, cloud_frame, stamp_ns)
    cam_pts = transform_points(xyz, t.rotation, t.translation)
    return project_points(cam_pts, intr), compensated


def _gt_median_ratio(depth_model: np.ndarray, gt: np.ndarray, min_depth: float,
                     max_depth: float) -> float:
    """median(GT) / median(model depth) over valid GT pixels, sampled at the model's resolution."""
    h, w = depth_model.shape
    H, W = gt.shape
    with np.errstate(invalid="ignore"):
        rows, cols = np.nonzero(np.isfinite(gt) & (gt > min_depth) & (gt < max_depth))
    if rows.size == 0:
        return math.nan
    r = np.clip(np.floor((rows + 0.5) * h / H).astype(np.intp), 0, h - 1)
    c = np.clip(np.floor((cols + 0.5) * w / W).astype(np.intp), 0, w - 1)
    d = depth_model[r, c]
    ok = np.isfinite(d) & (d > 0)
    if not ok.any():
        return math.nan
    return float(np.median(gt[rows[ok], cols[ok]]) / np.median(d[ok]))


# ---------------------------------------------------------------------------- results
@dataclass
class CameraResult:
    namespace: str
    image_topic: str
    gt_source: str                          # "depth:<topic>" or "lidar:<topic>"
    frames: int = 0
    metric: dict[str, float] = field(default_factory=dict)
    median: dict[str, float] = field(default_factory=dict)
    boundary: dict[str, float] | None = None
    distance_bins: list[dict] = field(default_factory=list)
    scale: dict = field(default_factory=dict)
    camera_height: float | None = None
    valid_fraction: float = math.nan
    mean_confidence: float = math.nan
    drops: dict[str, int] = field(default_factory=dict)
    panels: list[str] = field(default_factory=list)


@dataclass
class EvalResult:
    config: dict
    engine: dict
    cameras: list[CameraResult]
    overall: dict
    frames: dict[str, int]
    drops: dict[str, int]
    drop_details: dict[str, str]
    timing: dict[str, float]
    paths: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    return float(v.mean()) if v.size else math.nan


def _bin_rows(sums: np.ndarray, counts: np.ndarray, bins) -> list[dict]:
    rows = []
    for i in range(len(bins) - 1):
        n = counts[i]
        rows.append({"lo": float(bins[i]), "hi": float(bins[i + 1]), "pixels": int(n),
                     "abs_rel_metric": float(sums[0, i] / n) if n else math.nan,
                     "abs_rel_median": float(sums[1, i] / n) if n else math.nan})
    return rows


class _CameraAcc:
    def __init__(self, cam: CameraStreams, gt_kind: str, gt_topic: str, nbins: int, panel_at: set[int]):
        self.cam = cam
        self.gt_kind = gt_kind
        self.gt_topic = gt_topic
        self.view: ViewProcessor | None = None
        self.height: float | None = None
        self.frames = 0
        self.metric: list[dict] = []
        self.median: list[dict] = []
        self.boundary: list[dict] = []
        self.sums = np.zeros((2, nbins))
        self.counts = np.zeros(nbins)
        self.scales: list[float] = []
        self.scale_sources: collections.Counter[str] = collections.Counter()
        self.valid: list[float] = []
        self.conf: list[float] = []
        self.panel_at = panel_at
        self.panels: list[str] = []
        self.last_ratio: float | None = None
        self.last_shot: tuple | None = None

    def result(self, bins, drops: dict[str, int]) -> CameraResult:
        bnd = None
        if self.boundary:
            bnd = {k: _nanmean(b[k] for b in self.boundary) for k in BOUNDARY_KEYS}
            for k in ("n_pred", "n_gt", "matched_pred", "matched_gt"):
                bnd[k] = int(sum(b[k] for b in self.boundary))
        s = np.asarray(self.scales) if self.scales else np.asarray([math.nan])
        return CameraResult(
            namespace=self.cam.namespace, image_topic=self.cam.image,
            gt_source=f"{self.gt_kind}:{self.gt_topic}", frames=self.frames,
            metric=mean_metrics(self.metric), median=mean_metrics(self.median), boundary=bnd,
            distance_bins=_bin_rows(self.sums, self.counts, bins),
            scale={"mean": float(np.mean(s)), "min": float(np.min(s)), "max": float(np.max(s)),
                   "sources": dict(self.scale_sources)},
            camera_height=self.height, valid_fraction=_nanmean(self.valid),
            mean_confidence=_nanmean(self.conf), drops=drops, panels=list(self.panels))


def _overall(cams: list[CameraResult], bins) -> dict:
    """Mean of per-camera means (DDAD / nuScenes convention); cameras without frames are skipped."""
    used = [c for c in cams if c.frames and any(math.isfinite(c.metric.get(k, math.nan))
                                                for k in METRIC_NAMES)]
    out = {"cameras": len(used)}
    for mode in ("metric", "median"):
        out[mode] = {k: _nanmean(getattr(c, mode)[k] for c in used) for k in METRIC_NAMES}
    bnd = [c.boundary for c in used if c.boundary]
    out["boundary"] = {k: _nanmean(b[k] for b in bnd) for k in BOUNDARY_KEYS} if bnd else None
    rows = []
    for i in range(len(bins) - 1):
        per = [c.distance_bins[i] for c in used if c.distance_bins and c.distance_bins[i]["pixels"]]
        rows.append({"lo": float(bins[i]), "hi": float(bins[i + 1]),
                     "pixels": int(sum(r["pixels"] for r in per)),
                     "abs_rel_metric": _nanmean(r["abs_rel_metric"] for r in per),
                     "abs_rel_median": _nanmean(r["abs_rel_median"] for r in per)})
    out["distance_bins"] = rows
    return out


# ---------------------------------------------------------------------------- output bag
def _find_msg_file(name: str = "ViewConfidence.msg") -> Path:
    here = Path(__file__).resolve().parents[2] / "bore_depth_ros_msgs" / "msg" / name   # source checkout
    candidates = [here]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "bore_depth_ros_msgs" / "msg" / name)
    candidates.append(Path(sys.prefix) / "share" / "bore_depth_ros_msgs" / "msg" / name)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{name} not found (looked in {', '.join(str(c) for c in candidates)})")


def view_confidence_typestore():
    """A copy of the Jazzy typestore with bore_depth_ros_msgs/msg/ViewConfidence registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)   # a new instance: the shared TYPESTORE stays as is
    store.register(get_types_from_msg(_find_msg_file().read_text(), VIEW_CONFIDENCE))
    return store


class _OutputBag:
    """The node's output topics per camera plus copies of the inputs rviz needs."""

    def __init__(self, path: str, storage: str, copy_topics: set[str]):
        self.store = view_confidence_typestore()
        self.bag = BagWriter(path, storage, typestore=self.store)
        self.bag.__enter__()
        self.copy_topics = copy_topics
        self.path = str(path)

    def close(self) -> None:
        self.bag.__exit__(None, None, None)

    def copy(self, conn, log_ns: int, raw: bytes) -> None:
        if conn.topic in self.copy_topics and conn.msgtype in bm.TYPESTORE.fielddefs:
            self.bag.write_raw(conn.topic, conn.msgtype, bytes(raw), log_ns,
                               latched=conn.topic == TF_STATIC_TOPIC)

    def write_custom(self, topic: str, msg, t_ns: int) -> None:
        self.bag.write(topic, msg, t_ns)


def _camera_info_out(info, stamp_ns: int, frame_id: str, width: int, height: int):
    k, p = scale_camera_info_arrays(list(info.k), list(info.p), info.width, info.height, width, height)
    roi = bm.T["sensor_msgs/msg/RegionOfInterest"](
        x_offset=int(info.roi.x_offset), y_offset=int(info.roi.y_offset), height=int(info.roi.height),
        width=int(info.roi.width), do_rectify=bool(info.roi.do_rectify))
    return bm.T[bm.CAMERA_INFO](
        header=bm.header(stamp_ns, frame_id), height=height, width=width,
        distortion_model=info.distortion_model, d=np.asarray(info.d, np.float64),
        k=np.asarray(k, np.float64), r=np.asarray(info.r, np.float64), p=np.asarray(p, np.float64),
        binning_x=int(info.binning_x), binning_y=int(info.binning_y), roi=roi)


# ---------------------------------------------------------------------------- evaluation
def _choose_gt(config: EvalConfig, cams: list[CameraStreams], reader) -> tuple[dict, str | None]:
    clouds = topics_of_type(reader, bm.POINTCLOUD2)
    lidar = config.lidar_topic or None
    if lidar is None:
        if LIDAR_DEFAULT_TOPIC in clouds:
            lidar = LIDAR_DEFAULT_TOPIC
        elif len(clouds) == 1:
            lidar = clouds[0]
    elif lidar not in clouds:
        raise ValueError(f"LiDAR topic {lidar} is not a PointCloud2 topic of the bag "
                         f"(PointCloud2 topics: {', '.join(clouds) or 'none'})")
    sources = {}
    for cam in cams:
        if config.gt == "depth" or (config.gt == "auto" and cam.depth_gt):
            if not cam.depth_gt:
                raise ValueError(f"camera {cam.namespace} has no ground-truth depth topic (an Image "
                                 f"topic under {cam.namespace}/ named *depth_gt*, 32FC1/16UC1); "
                                 "give one with --gt-topic or use --gt lidar")
            sources[cam.namespace] = ("depth", cam.depth_gt)
        else:
            if lidar is None:
                why = ("several PointCloud2 topics: " + ", ".join(clouds) + "; choose with --lidar-topic"
                       if clouds else "no PointCloud2 topic in the bag")
                raise ValueError(f"no ground truth for camera {cam.namespace}: no depth_gt topic and "
                                 f"no LiDAR ({why})")
            sources[cam.namespace] = ("lidar", lidar)
    used_lidar = lidar if any(k == "lidar" for k, _ in sources.values()) else None
    return sources, used_lidar


@dataclass
class _Prepared:
    frame: CameraFrame
    acc: "_CameraAcc"
    rgb: np.ndarray
    intr: Intrinsics
    gt: np.ndarray
    view: object


def _ring_ordered(cams: list[CameraStreams]) -> list[CameraStreams]:
    """Cameras in the rig's ring order when their names are the recording layout's."""
    from ..sim.rig import RING_ORDER

    by_name = {c.namespace.rstrip("/").split("/")[-1]: c for c in cams}
    if set(by_name) == set(RING_ORDER):
        return [by_name[n] for n in RING_ORDER]
    return cams


class _Evaluator:
    def __init__(self, config: EvalConfig, engine: DepthEngine, sync: FrameSync, sources: dict,
                 out: _OutputBag | None, report_dir: Path, expected: dict[str, int]):
        self.config = config
        self.engine = engine
        self.sync = sync
        self.out = out
        self.report_dir = report_dir
        self.backend_name = getattr(engine.backend, "name", config.backend)   # as the node reports it
        self.needs_extrinsics = bool({"rays", "origins"} & set(engine.info.input_names))
        self.timing: dict[str, float] = collections.defaultdict(float)
        self.evaluated = 0
        self.compensated = 0
        self.no_valid_gt = 0
        self.lidar_points = [0, 0]   # projected, removed as occluded
        nb = len(DISTANCE_BINS) - 1
        self.acc: dict[str, _CameraAcc] = {}
        for cam in sync.cameras:
            n = max(expected.get(cam.namespace, 1), 1)
            k = max(config.panels_per_camera, 0)
            panel_at = set(np.linspace(0, n - 1, k).round().astype(int).tolist()) if k else set()
            kind, topic = sources[cam.namespace]
            self.acc[cam.namespace] = _CameraAcc(cam, kind, topic, nb, panel_at)

    def drop(self, ns: str, reason: str, detail: str = "") -> None:
        if reason not in self.sync.drop_details:
            log.warning("dropping frames of %s: %s: %s", ns, reason, detail)
        self.sync.drop(ns, reason, detail)

    def _view(self, acc: _CameraAcc, frame_id: str, stamp_ns: int) -> ViewProcessor | None:
        if acc.view is not None:
            return acc.view
        cfg = self.config
        height = cfg.camera_height
        if cfg.scale_mode == "ground_plane" and height <= 0:
            t, err = self.sync.tf.resolve(cfg.base_frame, frame_id, stamp_ns)
            if t is None or not t.translation[2] > 0:
                why = str(err) if err else f"optical origin is {t.translation[2]:.3f} m above {cfg.base_frame}"
                self.drop(acc.cam.namespace, CAMERA_HEIGHT_UNAVAILABLE,
                          f"scale_mode ground_plane needs camera_height or TF {cfg.base_frame} <- "
                          f"{frame_id}: {why}")
                return None
            height = float(t.translation[2])
        acc.height = height if cfg.scale_mode == "ground_plane" else None
        mode = "fixed" if cfg.scale_mode == "median" else cfg.scale_mode
        vc = ViewConfig(confidence_threshold=cfg.confidence_threshold, min_depth=0.0,
                        max_depth=math.inf, edge_sensitivity=cfg.edge_sensitivity, scale_mode=mode,
                        depth_scale=cfg.depth_scale, camera_height=height)
        info = self.engine.info
        acc.view = ViewProcessor(vc, info.metric, (info.min_depth, info.max_depth))
        return acc.view

    def _ground_truth(self, frame: CameraFrame, acc: _CameraAcc, intr: Intrinsics) -> np.ndarray | None:
        ns = acc.cam.namespace
        if acc.gt_kind == "depth":
            if frame.depth_gt is None:
                self.drop(ns, GT_DEPTH_MISSING, f"no {acc.gt_topic} message with stamp {frame.stamp_ns}")
                return None
            gt = depth_gt_to_metres(frame.depth_gt)
            if gt.shape != (intr.height, intr.width):
                gt = resize_nearest(gt, intr.height, intr.width)
            return gt
        cloud, cloud_stamp = self.sync.nearest_cloud(frame.stamp_ns, int(self.config.lidar_max_dt * 1e9))
        if cloud is None:
            self.drop(ns, LIDAR_CLOUD_MISSING,
                      f"no {acc.gt_topic} cloud within {self.config.lidar_max_dt} s of {frame.stamp_ns}")
            return None
        types = {f.name: f.datatype for f in cloud.fields}
        if any(types.get(c) != FLOAT32 for c in "xyz") or cloud.is_bigendian:
            self.drop(ns, LIDAR_UNSUPPORTED, f"{acc.gt_topic} needs little-endian float32 x, y, z fields "
                                             f"(has {types}, big-endian {bool(cloud.is_bigendian)})")
            return None
        try:
            gt, comp = lidar_gt_depth(self.sync.tf, bm.pointcloud_fields(cloud), cloud.header.frame_id,
                                      cloud_stamp, frame.image.header.frame_id, frame.stamp_ns, intr,
                                      self.config.odom_frame)
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
        eo = self.engine.infer([prepared.rgb], [prepared.intr], [tf] if tf is not None else None)
        self.complete(prepared, eo.depth[0], None if eo.confidence is None else eo.confidence[0],
                      eo.infer_ms, eo.preprocess_ms)

    def process_set(self, prepared: list["_Prepared"]) -> None:
        """A synchronized set of all cameras in one batched call (models that fuse views)."""
        tfs = [self._extrinsic(p) for p in prepared] if self.needs_extrinsics else None
        if tfs is not None and any(t is None for t in tfs):
            return
        eo = self.engine.infer([p.rgb for p in prepared], [p.intr for p in prepared], tfs)
        for i, p in enumerate(prepared):
            self.complete(p, eo.depth[i], None if eo.confidence is None else eo.confidence[i],
                          eo.infer_ms / len(prepared), eo.preprocess_ms / len(prepared))

    def _extrinsic(self, p: "_Prepared"):
        tf, err = self.sync.tf.resolve(self.config.base_frame, p.frame.image.header.frame_id,
                                       p.frame.stamp_ns)
        if err is not None:
            self.drop(p.acc.cam.namespace, err.reason, err.detail)
        return tf

    def prepare(self, frame: CameraFrame) -> "_Prepared | None":
        """Decode, check and fetch the ground truth of one frame (None: dropped, with reason)."""
        acc = self.acc[frame.camera.namespace]
        ns = acc.cam.namespace
        img, info = frame.image, frame.camera_info
        t0 = time.perf_counter()
        try:
            rgb = image_to_rgb(img.data, img.width, img.height, img.step, img.encoding, img.is_bigendian)
            intr = fit_intrinsics_to_image(
                Intrinsics.from_camera_info(list(info.k), list(info.p), info.width, info.height),
                img.width, img.height)
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

    def complete(self, p: "_Prepared", d_model: np.ndarray, c_model, infer_ms: float,
                 preprocess_ms: float) -> None:
        """Post-process one view's model output as the node does, compare, record, write."""
        cfg = self.config
        frame, acc, rgb, intr, gt, view = p.frame, p.acc, p.rgb, p.intr, p.gt, p.view
        info = frame.camera_info
        t3 = time.perf_counter()
        if cfg.scale_mode == "median":
            ratio = _gt_median_ratio(d_model, gt, cfg.min_depth, cfg.max_depth)
            source = "gt_median"
            if not math.isfinite(ratio) or ratio <= 0:
                ratio, source = (acc.last_ratio, "held") if acc.last_ratio else (1.0, "initial")
            acc.last_ratio = ratio
            view.configure(dataclasses.replace(view.config, depth_scale=ratio))
        res = view.process(d_model, c_model, intr)
        if cfg.scale_mode == "median":
            res = dataclasses.replace(res, scale=ScaleResult(ratio, source))
        t4 = time.perf_counter()
        cmp = compare_frame(res.depth, gt, min_depth=cfg.min_depth, max_depth=cfg.max_depth,
                            boundary=acc.gt_kind == "depth", edge_threshold=cfg.edge_threshold,
                            edge_radius=cfg.edge_radius)
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
        tm["postprocess_ms"] += (t4 - t3) * 1e3
        tm["compare_ms"] += (t5 - t4) * 1e3
        tm["output_bag_ms"] += (t6 - t5) * 1e3
        tm["panels_ms"] += (t7 - t6) * 1e3

    def _panel(self, acc: _CameraAcc, shot) -> None:
        from .report import save_panel

        index, rgb, depth, conf, gt, stamp_ns = shot
        name = f"panel_{acc.cam.name}_{index:04d}.png"
        save_panel(self.report_dir / name, rgb, depth, conf, gt, self.config.min_depth,
                   self.config.max_depth)
        acc.panels.append(name)

    def finish(self) -> None:
        for acc in self.acc.values():
            if acc.last_shot is not None and len(acc.panels) < self.config.panels_per_camera:
                self._panel(acc, acc.last_shot)
            acc.last_shot = None

    def _write_outputs(self, frame: CameraFrame, info, rgb: np.ndarray, intr: Intrinsics, res,
                       infer_ms: float) -> None:
        ns = frame.camera.namespace
        t, fid = frame.log_ns, frame.image.header.frame_id
        stamp = frame.stamp_ns
        bag = self.out.bag
        bag.write(f"{ns}/depth/image", bm.image(stamp, fid, res.depth, "32FC1"), t)
        bag.write(f"{ns}/depth/camera_info", _camera_info_out(info, stamp, fid, intr.width, intr.height), t)
        bag.write(f"{ns}/confidence/image", bm.image(stamp, fid, res.confidence, "32FC1"), t)
        s = self.config.points_decimation
        xyz = backproject(res.depth, intr, stride=s)
        colors = np.ascontiguousarray(rgb[::s, ::s])
        bag.write(f"{ns}/points", bm.pointcloud(stamp, fid, pack_points(xyz, colors)), t)
        VC = self.out.store.types[VIEW_CONFIDENCE]
        summary = VC(header=bm.header(stamp, fid), camera_frame=fid, model=self.engine.config.model,
                     backend=self.backend_name, mean_confidence=float(res.mean_confidence),
                     valid_fraction=float(res.valid_fraction), depth_scale=float(res.scale.scale),
                     scale_source=res.scale.source, min_depth=float(res.min_depth),
                     median_depth=float(res.median_depth), max_depth=float(res.max_depth),
                     inference_time_ms=float(infer_ms))
        self.out.write_custom(f"{ns}/view_confidence", summary, t)


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
            images = topics_of_type(reader, bm.IMAGE)
            raise ValueError("no camera found in the bag (an Image topic with a colour/mono encoding "
                             "and a sibling camera_info); image topics: " + (", ".join(images) or "none")
                             + "; choose with --camera")
        from ..models import get_model_info

        rig_model = get_model_info(config.model).num_cameras > 1
        if rig_model:
            cams = _ring_ordered(cams)
        if engine is None:
            engine = DepthEngine(EngineConfig(
                model=config.model, weights=config.weights, backend=config.backend,
                device=config.device, input_height=config.input_height,
                input_width=config.input_width, batch=len(cams) if rig_model else 1,
                cache_dir=config.cache_dir))
        load_s = time.perf_counter() - t_load
        sources, lidar_topic = _choose_gt(config, cams, reader)
        copy_topics = {c.image for c in cams} | {c.camera_info for c in cams}
        copy_topics |= {TF_TOPIC, TF_STATIC_TOPIC, CLOCK_TOPIC} | ({lidar_topic} if lidar_topic else set())
        try:
            if config.output_bag:
                out = _OutputBag(config.output_bag, config.storage, copy_topics)
            sync = FrameSync(reader, cams, TfBuffer(cache_time_ns=60_000_000_000), cloud_topic=lidar_topic,
                             extra_topics=[CLOCK_TOPIC], window_ns=int(config.sync_window * 1e9),
                             on_message=out.copy if out else None)
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
            bar = tqdm(total=min(total, config.max_frames) if config.max_frames else total,
                       file=sys.stderr, disable=not progress, unit="frame", desc="eval")
            t_loop = time.perf_counter()
            stopped = False
            rig = (ApproximateSynchronizer(len(cams), int(config.rig_slop * 1e9))
                   if engine.info.num_cameras > 1 else None)
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
    timing.update({
        "engine_load_s": load_s, "loop_s": loop_s,
        "read_sync_ms": max(loop_s - stages, 0.0) * 1e3 / n,
        "frames_per_second": ev.evaluated / loop_s if loop_s > 0 else math.nan,
    })
    notes = []
    if "random-init" in engine.weights_source:
        notes.append("No trained weights were given or shipped: the depth is that of an untrained "
                     "network, so the numbers measure the pipeline, not the model.")
    if stopped:
        notes.append(f"Stopped after max_frames={config.max_frames} evaluated camera frames.")
    if ev.lidar_points[0] and config.lidar_occlusion_window > 0:
        notes.append(f"The LiDAR occlusion filter ({config.lidar_occlusion_window} px, "
                     f"{config.lidar_occlusion_tolerance:g}) removed {ev.lidar_points[1]} of "
                     f"{ev.lidar_points[0]} projected points "
                     f"({100 * ev.lidar_points[1] / ev.lidar_points[0]:.1f} %) as hidden from the camera.")
    if ev.compensated:
        notes.append(f"{ev.compensated} LiDAR frames were motion-compensated through "
                     f"'{config.odom_frame}' (cloud and image stamps differ).")
    result = EvalResult(
        config=dataclasses.asdict(config),
        engine={**engine.describe(), "weights_source": engine.weights_source},
        cameras=cam_results, overall=_overall(cam_results, DISTANCE_BINS),
        frames={"images_read": sync.images_read, "evaluated": ev.evaluated,
                "dropped": sum(sync.drops.values()), "without_valid_gt": ev.no_valid_gt,
                "messages_read": sync.messages_read},
        drops=sync.drops_by_reason(), drop_details=dict(sync.drop_details), timing=timing, notes=notes)
    if out is not None:
        result.paths["output_bag"] = out.path
    result.paths.update(write_report(result.to_dict(), report_dir))
    return result


# ---------------------------------------------------------------------------- command line
def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bore-depth eval BAG``."""
    d = EvalConfig(bag="")
    a = parser.add_argument
    a("bag", help="rosbag2 directory, .mcap or .db3 file")
    a("--camera", dest="cameras", action="append", metavar="TOPIC",
      help="image topic of a camera (repeat for several; default: auto-detect)")
    a("--gt", default=d.gt, choices=GT_MODES, help="ground truth: depth images, LiDAR, or auto")
    a("--gt-topic", dest="gt_topics", action="append", metavar="TOPIC",
      help="ground-truth depth topic for each --camera, in the same order")
    a("--lidar-topic", default=d.lidar_topic, help="PointCloud2 ground truth (default /lidar/points)")
    a("--model", default=d.model)
    a("--weights", default=d.weights, help="checkpoint or .onnx (default: embedded)")
    a("--backend", default=d.backend, choices=["torch", "onnxruntime", "tensorrt"])
    a("--device", default=d.device)
    a("--input-height", type=int, default=d.input_height)
    a("--input-width", type=int, default=d.input_width)
    a("--scale-mode", default=d.scale_mode, choices=SCALE_MODES,
      help="fixed (--depth-scale), ground_plane (camera height) or median (per-frame GT oracle)")
    a("--depth-scale", type=float, default=d.depth_scale)
    a("--camera-height", type=float, default=d.camera_height,
      help="metres above the ground; 0 = from TF (optical origin z in --base-frame)")
    a("--min-depth", type=float, default=d.min_depth)
    a("--max-depth", type=float, default=d.max_depth)
    a("--confidence-threshold", type=float, default=d.confidence_threshold)
    a("--max-frames", type=int, default=d.max_frames, help="camera frames to evaluate (0 = all)")
    a("--out", dest="report_dir", default=d.report_dir, help="report folder")
    a("--output-bag", default=None, help="write the node's output topics to this new bag")
    a("--storage", default=d.storage, choices=["mcap", "sqlite3"], help="output bag storage")
    a("--points-decimation", type=int, default=d.points_decimation)
    a("--base-frame", default=d.base_frame)
    a("--odom-frame", default=d.odom_frame)
    a("--lidar-max-dt", type=float, default=d.lidar_max_dt, help="seconds")
    a("--lidar-occlusion-window", type=int, default=d.lidar_occlusion_window,
      help="drop LiDAR points farther than the nearest one within this many pixels (0 = off)")
    a("--rig-slop", type=float, default=d.rig_slop,
      help="seconds; rig models (semi_smd) get synchronized camera sets within this spread")
    a("--panels", dest="panels_per_camera", type=int, default=d.panels_per_camera,
      help="picture panels per camera in the report")
    a("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    return EvalConfig(**{k: v for k, v in vars(args).items() if k in names})


def run_eval(args: argparse.Namespace) -> int:
    """Run ``bore-depth eval`` from parsed arguments; prints a summary; 0 if any frame was evaluated."""
    try:
        result = evaluate(config_from_args(args), progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"bore-depth eval: {e}", file=sys.stderr)
        return 2
    fmt = lambda v: "nan" if v is None or not math.isfinite(v) else f"{v:.3f}"  # noqa: E731
    print(f"model {result.engine.get('model')} ({result.engine['weights_source']}), "
          f"backend {result.engine.get('backend')}")
    for c in result.cameras + [None]:
        name, m, md = (c.namespace, c.metric, c.median) if c else \
            ("overall", result.overall["metric"], result.overall["median"])
        print(f"{name:<28} metric AbsRel {fmt(m.get('abs_rel'))} RMSE {fmt(m.get('rmse'))} "
              f"d1 {fmt(m.get('a1'))} | median-scaled AbsRel {fmt(md.get('abs_rel'))} "
              f"d1 {fmt(md.get('a1'))}")
    f = result.frames
    print(f"frames: {f['evaluated']} evaluated of {f['images_read']} images read, {f['dropped']} dropped"
          + ("".join(f"\n  {k}: {v}" for k, v in result.drops.items())))
    print(f"{result.timing['frames_per_second']:.2f} frames/s, model {result.timing.get('inference_ms', 0):.1f} "
          f"ms/frame; report: {result.paths.get('report_html')}")
    for note in result.notes:
        print(f"note: {note}")
    return 0 if f["evaluated"] else 1
