"""Scoring: one frame against its ground truth, per-camera accumulation and the overall figures."""

from __future__ import annotations

import collections
import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..bag.reader import CameraStreams
from ..core.boundary import boundary_metrics
from ..core.metrics import METRIC_NAMES, depth_metrics, mean_metrics
from ..core.view import ViewProcessor
from .config import BOUNDARY_KEYS, CONFIDENCE_KEEP, DISTANCE_BINS
from .stability import StabilityTracker


@dataclass
class FrameComparison:
    """One frame compared with its ground truth."""

    metric: dict[str, float]  # prediction as published
    median: dict[str, float]  # median-scaled per frame
    boundary: dict[str, float] | None  # dense GT only
    bin_abs_rel_sum: np.ndarray  # (2, bins): metric, median-scaled
    bin_pixels: np.ndarray  # (bins,)
    # (2, len(keep)): metric and median-scaled AbsRel of the most confident fractions (NaN: no
    # confidence given or no valid pixel)
    confidence_abs_rel: np.ndarray = field(default_factory=lambda: np.full((2, len(CONFIDENCE_KEEP)), np.nan))


def compare_frame(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    min_depth: float = 0.1,
    max_depth: float = 80.0,
    boundary: bool = True,
    edge_threshold: float = 0.05,
    edge_radius: float = 1.0,
    bins=DISTANCE_BINS,
    confidence: np.ndarray | None = None,
    keep=CONFIDENCE_KEEP,
) -> FrameComparison:
    """Metrics of ``pred`` (metres, NaN invalid) against ``gt`` (metres; NaN/inf invalid), same shape.

    Valid pixels: GT finite in (min_depth, max_depth) and prediction finite > 0; predictions are
    clamped to the caps (core.metrics). Error versus distance: AbsRel summed per GT-distance bin.
    ``confidence`` (same shape): AbsRel of the ``keep`` fractions of valid pixels with the highest
    confidence (a sparsification curve: informative confidence gives lower figures for smaller
    fractions).
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
    conf_rows = np.full((2, len(keep)), np.nan)
    if confidence is not None and np.shape(confidence) != pred.shape:
        raise ValueError(f"confidence {np.shape(confidence)} and prediction {pred.shape} differ in shape")
    if valid.any():
        g = gt[valid].astype(np.float64)
        p = pred[valid].astype(np.float64)
        # per-pixel AbsRel, metric and median-scaled: the distance bins and the confidence curve
        errs = [np.abs(g - np.clip(p * s, min_depth, max_depth)) / g for s in (1.0, median["scale"])]
        if confidence is not None:
            conf_rows = _confidence_abs_rel(errs, np.asarray(confidence)[valid], keep)
        idx = np.searchsorted(edges, g, side="right") - 1
        inside = (idx >= 0) & (idx < nb)
        idx = idx[inside]
        counts = np.bincount(idx, minlength=nb).astype(np.float64)
        for row, err in enumerate(errs):
            sums[row] = np.bincount(idx, weights=err[inside], minlength=nb)
    bnd = None
    if boundary:
        bnd = boundary_metrics(pred, gt, edge_threshold, edge_radius, mask=gt_range)
    return FrameComparison(metric, median, bnd, sums, counts, conf_rows)


def _confidence_abs_rel(errs: list[np.ndarray], conf: np.ndarray, keep) -> np.ndarray:
    """(len(errs), len(keep)): mean of each per-pixel error over the most confident pixels."""
    conf = np.where(np.isfinite(conf), conf, -np.inf)  # a NaN confidence counts as the lowest
    order = np.argsort(-conf, kind="stable")  # most confident first; ties keep pixel order
    ks = [max(1, int(round(f * len(conf)))) for f in keep]
    out = np.empty((len(errs), len(keep)))
    for row, err in enumerate(errs):
        csum = np.cumsum(err[order])
        out[row] = [csum[k - 1] / k for k in ks]
    return out


def gt_median_ratio(depth_model: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float) -> float:
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


@dataclass
class CameraResult:
    namespace: str
    image_topic: str
    gt_source: str  # "depth:<topic>" or "lidar:<topic>"
    # the topics paired for this camera: camera_info, ground truth (kind "depth" or "lidar")
    camera_info_topic: str = ""
    gt_topic: str = ""
    gt_kind: str = ""
    image_type: str = ""  # sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage
    image_encoding: str = ""  # the first image's encoding (Image) or format (CompressedImage)
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
    # change of the prediction between consecutive frames (replay.stability.StabilityTracker.summary)
    temporal_stability: dict = field(default_factory=dict)
    # mean over frames of the AbsRel of each frame's most confident pixels (_confidence_rows)
    confidence_curve: list[dict] = field(default_factory=list)


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
        rows.append(
            {
                "lo": float(bins[i]),
                "hi": float(bins[i + 1]),
                "pixels": int(n),
                "abs_rel_metric": float(sums[0, i] / n) if n else math.nan,
                "abs_rel_median": float(sums[1, i] / n) if n else math.nan,
            }
        )
    return rows


class CameraAccumulator:
    def __init__(
        self,
        cam: CameraStreams,
        gt_kind: str,
        gt_topic: str,
        nbins: int,
        panel_at: set[int],
        stability: StabilityTracker | None = None,
    ):
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
        self.confidence_abs_rel: list[np.ndarray] = []  # per frame, (2, keep)
        self.scales: list[float] = []
        self.scale_sources: collections.Counter[str] = collections.Counter()
        self.valid: list[float] = []
        self.conf: list[float] = []
        self.panel_at = panel_at
        self.panels: list[str] = []
        self.last_ratio: float | None = None
        self.last_shot: tuple | None = None
        self.stability = stability if stability is not None else StabilityTracker()

    def result(self, bins, drops: dict[str, int]) -> CameraResult:
        bnd = None
        if self.boundary:
            bnd = {k: _nanmean(b[k] for b in self.boundary) for k in BOUNDARY_KEYS}
            for k in ("n_pred", "n_gt", "matched_pred", "matched_gt"):
                bnd[k] = int(sum(b[k] for b in self.boundary))
        s = np.asarray(self.scales) if self.scales else np.asarray([math.nan])
        return CameraResult(
            namespace=self.cam.namespace,
            image_topic=self.cam.image,
            gt_source=f"{self.gt_kind}:{self.gt_topic}",
            camera_info_topic=self.cam.camera_info,
            gt_topic=self.gt_topic,
            gt_kind=self.gt_kind,
            image_type=self.cam.msgtype,
            image_encoding=self.cam.encoding,
            frames=self.frames,
            metric=mean_metrics(self.metric),
            median=mean_metrics(self.median),
            boundary=bnd,
            distance_bins=_bin_rows(self.sums, self.counts, bins),
            scale={
                "mean": float(np.mean(s)),
                "min": float(np.min(s)),
                "max": float(np.max(s)),
                "sources": dict(self.scale_sources),
            },
            camera_height=self.height,
            valid_fraction=_nanmean(self.valid),
            mean_confidence=_nanmean(self.conf),
            drops=drops,
            panels=list(self.panels),
            temporal_stability=self.stability.summary(),
            confidence_curve=_confidence_rows(self.confidence_abs_rel),
        )


def _confidence_rows(curves: list[np.ndarray], keep=CONFIDENCE_KEEP) -> list[dict]:
    """One row per kept fraction: the mean over ``curves`` (frames of a camera, or cameras; each
    (2, keep): metric, median-scaled) of its AbsRel."""
    if not curves:
        return []
    a = np.stack(curves)  # (n, 2, keep)
    rows = []
    for j, f in enumerate(keep):
        rows.append(
            {
                "keep": float(f),
                "abs_rel_metric": _nanmean(a[:, 0, j].tolist()),
                "abs_rel_median": _nanmean(a[:, 1, j].tolist()),
            }
        )
    return rows


def overall_metrics(cams: list[CameraResult], bins) -> dict:
    """Mean of per-camera means (DDAD / nuScenes convention); cameras without frames are skipped."""
    used = [
        c for c in cams if c.frames and any(math.isfinite(c.metric.get(k, math.nan)) for k in METRIC_NAMES)
    ]
    out = {"cameras": len(used)}
    for mode in ("metric", "median"):
        out[mode] = {k: _nanmean(getattr(c, mode)[k] for c in used) for k in METRIC_NAMES}
    bnd = [c.boundary for c in used if c.boundary]
    out["boundary"] = {k: _nanmean(b[k] for b in bnd) for k in BOUNDARY_KEYS} if bnd else None
    rows = []
    for i in range(len(bins) - 1):
        per = [c.distance_bins[i] for c in used if c.distance_bins and c.distance_bins[i]["pixels"]]
        rows.append(
            {
                "lo": float(bins[i]),
                "hi": float(bins[i + 1]),
                "pixels": int(sum(r["pixels"] for r in per)),
                "abs_rel_metric": _nanmean(r["abs_rel_metric"] for r in per),
                "abs_rel_median": _nanmean(r["abs_rel_median"] for r in per),
            }
        )
    out["distance_bins"] = rows
    out["temporal_stability"] = overall_stability(cams)
    out["confidence_curve"] = _confidence_rows(
        [
            np.array(
                [
                    [r["abs_rel_metric"] for r in c.confidence_curve],
                    [r["abs_rel_median"] for r in c.confidence_curve],
                ]
            )
            for c in used
            if c.confidence_curve
        ]
    )
    return out


def overall_stability(cams: list[CameraResult]) -> dict | None:
    """Mean over cameras of their temporal-stability median and p90, when all cameras with
    scored pairs used one method (tf_warp or scale_change); None otherwise."""
    used = [c.temporal_stability for c in cams if c.temporal_stability.get("pairs")]
    methods = {s["method"] for s in used}
    if len(methods) != 1:
        return None
    return {
        "method": methods.pop(),
        "cameras": len(used),
        "median": _nanmean(s["median"] for s in used),
        "p90": _nanmean(s["p90"] for s in used),
        "pairs": int(sum(s["pairs"] for s in used)),
    }
