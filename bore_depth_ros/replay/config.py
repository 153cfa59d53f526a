"""What an evaluation runs on and how: ``EvalConfig`` and the reasons a frame is not scored."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import DEFAULT_MAX_INPUT_PIXELS

GT_MODES = ("auto", "depth", "lidar")
SCALE_MODES = ("fixed", "ground_plane", "median")
DISTANCE_BINS = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0)
BOUNDARY_KEYS = ("precision", "recall", "f1", "dbe_acc", "dbe_comp")
# Does the confidence output mean something? AbsRel over the most confident fraction of each
# frame's valid pixels (a sparsification curve): it should fall as the fraction shrinks.
CONFIDENCE_KEEP = (1.0, 0.5, 0.2)
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
    cameras: list[str] | None = None  # image topics (Image or CompressedImage); None = auto-detect
    camera_infos: list[str] | None = None  # camera_info topic per entry of ``cameras``; None = siblings
    gt: str = "auto"  # auto | depth | lidar
    # ground-truth topic per entry of ``cameras``: a depth image (Image, compressedDepth) or a
    # PointCloud2 in any TF frame; one PointCloud2 without ``cameras`` serves every camera
    gt_topics: list[str] | None = None
    lidar_topic: str = ""  # "" = /lidar/points or the only PointCloud2 topic
    model: str = "bore_depth"
    weights: str = ""
    backend: str = "onnxruntime"
    device: str = "cpu"
    input_height: int = 0  # 0: the weights' training size, else the model default
    input_width: int = 0
    scale_mode: str = "fixed"  # fixed | ground_plane | median (per-frame GT oracle)
    depth_scale: float = 1.0
    camera_height: float = 0.0  # 0 = z of the optical origin in base_frame, from TF
    scale_smoothing: float = 0.3  # ground_plane: weight of each new frame's scale (1 = none)
    min_depth: float = 0.1  # metric caps (GT range; predictions are clamped)
    max_depth: float = 80.0
    confidence_threshold: float = 0.0
    edge_sensitivity: float = 8.0
    max_frames: int = 0  # camera frames to evaluate; 0 = all
    output_bag: str | None = None
    report_dir: str = "bore_depth_eval"
    points_decimation: int = 4
    storage: str = "mcap"
    base_frame: str = "base_link"
    odom_frame: str = "odom"  # fixed frame for LiDAR motion compensation
    lidar_max_dt: float = 0.1  # seconds between an image and its LiDAR cloud
    lidar_occlusion_window: int = 4  # px half-window of the occlusion filter; 0 = off
    lidar_occlusion_tolerance: float = 0.1
    sync_window: float = 0.5  # seconds of log time to wait for a frame's messages
    rig_slop: float = 0.03  # seconds: camera sets for rig models (as the node's slop)
    edge_threshold: float = 0.05  # boundary metric: relative depth jump
    edge_radius: float = 1.0  # boundary metric: match tolerance in pixels
    panels_per_camera: int = 3
    cache_dir: str | None = None
    force: bool = False  # replace an existing report in report_dir
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS  # as the nodes' parameter: larger is rejected
    threads: int = 0  # CPU threads of one inference (ONNX Runtime); 0 = the runtime's default
    # a time segment of the bag, seconds of log time from its first message (end 0 = to the end):
    # frames whose images were logged in [start_s, end_s), with all TF and camera_info before it
    start_s: float = 0.0
    end_s: float = 0.0

    def engine_config(self, batch: int = 1):
        """The EngineConfig of this evaluation, for ``batch`` views per call (the one place eval,
        fleet runs and their Ray workers build it)."""
        from ..engine import EngineConfig

        return EngineConfig(
            model=self.model,
            weights=self.weights,
            backend=self.backend,
            device=self.device,
            input_height=self.input_height,
            input_width=self.input_width,
            batch=batch,
            threads=self.threads,
            cache_dir=self.cache_dir,
        )

    def validate(self) -> None:
        checks = [
            (self.gt in GT_MODES, f"gt must be one of {', '.join(GT_MODES)}, got {self.gt!r}"),
            (
                self.scale_mode in SCALE_MODES,
                f"scale_mode must be one of {', '.join(SCALE_MODES)}, got {self.scale_mode!r}",
            ),
            (
                0 < self.min_depth < self.max_depth,
                f"need 0 < min_depth < max_depth, got {self.min_depth} and {self.max_depth}",
            ),
            (self.max_frames >= 0, f"max_frames must be >= 0, got {self.max_frames}"),
            (self.threads >= 0, f"threads must be >= 0 (0 = the runtime's default), got {self.threads}"),
            (
                self.start_s >= 0 and (self.end_s == 0 or self.end_s > self.start_s),
                f"need 0 <= start_s < end_s (end_s 0 = to the end), got {self.start_s} and {self.end_s}",
            ),
            (
                1 <= self.points_decimation <= 64,
                f"points_decimation must be in [1, 64], got {self.points_decimation}",
            ),
            (self.max_input_pixels >= 1, f"max_input_pixels must be >= 1, got {self.max_input_pixels}"),
            (self.camera_height >= 0, f"camera_height must be >= 0, got {self.camera_height}"),
            (
                0 < self.scale_smoothing <= 1,
                f"scale_smoothing must be in (0, 1], got {self.scale_smoothing}",
            ),
            (self.lidar_max_dt >= 0 and self.sync_window >= 0, "lidar_max_dt and sync_window must be >= 0"),
            (
                self.lidar_occlusion_window >= 0 and self.lidar_occlusion_tolerance >= 0,
                "lidar_occlusion_window and lidar_occlusion_tolerance must be >= 0",
            ),
            (
                self.gt_topics is None
                or (self.cameras is None and len(self.gt_topics) == 1)
                or (self.cameras is not None and len(self.gt_topics) == len(self.cameras)),
                "--gt-topic needs one entry per --camera, in the same order (or a single PointCloud2 "
                f"topic for all cameras); got {len(self.gt_topics or [])} for "
                f"{len(self.cameras or [])} cameras",
            ),
            (
                self.camera_infos is None
                or (self.cameras is not None and len(self.camera_infos) == len(self.cameras)),
                "--camera-info needs one entry per --camera, in the same order; got "
                f"{len(self.camera_infos or [])} for {len(self.cameras or [])} cameras",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
