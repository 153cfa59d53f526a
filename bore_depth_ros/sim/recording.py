"""Render synthetic drives with ground truth into rosbag2 files (topic layout: see ``sim.rig``).

With ``compress`` ("jpeg" or "png") the camera images are written as image_transport's compressed
plugin publishes them: ``sensor_msgs/CompressedImage`` on ``<camera>/image/compressed``, the
camera_info staying at ``<camera>/camera_info``; ground truth stays exact (32FC1 metres).

With ``randomise`` the scene, lighting and camera mounting are drawn from the seed
(``sim.randomise``); the rig actually rendered is what /tf_static describes, and the drawn values
are written next to the bag's metadata.yaml as ``synth_params.json`` (docs/synth.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..bag.messages import BAG
from ..bag.reader import COMPRESSED_SUFFIX
from ..bag.writer import BagWriter
from ..core.pointcloud import FLOAT32, PackedCloud
from ..core.transforms import Transform, rotation_z
from .randomise import PARAMS_FILE, SynthParams, draw
from .rig import (
    BASE_FRAME,
    LIDAR_FRAME,
    LIDAR_POSITION,
    LIDAR_TOPIC,
    ODOM_FRAME,
    CameraSpec,
    camera_topics,
    rig_by_name,
)
from .scene_config import SceneConfig

_LANE_WIGGLE_M = 0.6  # lateral amplitude of the drive around the ego lane centre
_LANE_WIGGLE_PERIOD_M = 40.0
_SCENE_MARGIN_M = 40.0  # scenery kept ahead of the last frame
COMPRESS_CODECS = ("", "jpeg", "png")


@dataclass(frozen=True)
class RecordingConfig:
    """What to record. ``seed`` seeds the scene (it overrides ``scene.seed``) and the camera jitter."""

    rig: str = "surround"
    frames: int = 20
    width: int = 320
    height: int = 192
    rate_hz: float = 10.0
    seed: int = 0
    scene: SceneConfig = field(default_factory=SceneConfig)
    storage: str = "mcap"
    speed: float = 5.0  # m/s along +x
    start_time_ns: int = 1_700_000_000_000_000_000
    camera_jitter_ms: float = 0.0  # > 0: each camera stamped up to this much after the frame
    lidar: bool = True
    compress: str = ""  # "" (sensor_msgs/Image rgb8), "jpeg" or "png" (CompressedImage)
    jpeg_quality: int = 90
    randomise: bool = False  # draw scene, lighting and camera mounting from the seed (sim.randomise)
    keep_density: bool = False  # with randomise: scene.density is kept, not drawn
    camera_height_offset_m: float = 0.0  # added to every camera's z in base_link
    camera_pitch_offset_deg: float = 0.0  # added to every camera's pitch (positive: looks down)


@dataclass
class RecordingSummary:
    path: Path
    frames: int
    cameras: tuple[str, ...]
    topics: dict[str, int]
    render_seconds: float  # camera rendering only
    lidar_seconds: float
    total_seconds: float
    images_per_second: float  # camera images rendered per second of rendering
    rig_frames_per_second: float  # all cameras of one frame per second of rendering
    params: SynthParams | None = None  # the drawn parameters with randomise


def scene_for(config: RecordingConfig) -> SceneConfig:
    """The scene a recording renders: the config's, seeded by its seed and long enough to drive."""
    travel = config.speed * (config.frames - 1) / config.rate_hz
    return replace(config.scene, seed=config.seed, length=max(config.scene.length, travel + _SCENE_MARGIN_M))


def ego_pose(t_s: float, config: RecordingConfig) -> Transform:
    """odom (= world) <- base_link at ``t_s`` seconds after the start: a gentle S-curve in the lane."""
    x = config.speed * t_s
    k = 2.0 * np.pi / _LANE_WIGGLE_PERIOD_M
    y = -config.scene.road_width / 4.0 + _LANE_WIGGLE_M * np.sin(k * x)
    yaw = np.arctan(_LANE_WIGGLE_M * k * np.cos(k * x))
    return Transform(rotation_z(yaw), np.array([x, y, 0.0]))


def randomised(config: RecordingConfig) -> tuple[RecordingConfig, SynthParams | None]:
    """The config actually rendered: with ``randomise``, the seed's drawn scene, lighting and
    camera offsets filled in (``randomise`` then stays set, the fields hold the drawn values)."""
    if not config.randomise:
        return config, None
    params = draw(config.seed, config.scene.density if config.keep_density else None)
    return (
        replace(
            config,
            scene=params.scene(config.scene),
            camera_height_offset_m=params.camera_height_offset_m,
            camera_pitch_offset_deg=params.camera_pitch_offset_deg,
        ),
        params,
    )


def rig_for(config: RecordingConfig) -> tuple[CameraSpec, ...]:
    """The named rig with the config's camera height and pitch offsets applied to every camera."""
    dz, dp = config.camera_height_offset_m, config.camera_pitch_offset_deg
    return tuple(
        replace(
            cam,
            pitch_deg=cam.pitch_deg + dp,
            position=(cam.position[0], cam.position[1], cam.position[2] + dz),
        )
        for cam in rig_by_name(config.rig)
    )


def base_from_lidar() -> Transform:
    return Transform(np.eye(3), np.asarray(LIDAR_POSITION, np.float64))


def lidar_cloud(points: np.ndarray, intensity: np.ndarray) -> PackedCloud:
    """Unorganised (height 1) x, y, z, intensity float32 cloud."""
    buf = np.empty((len(points), 4), np.dtype("<f4"))
    buf[:, :3] = points
    buf[:, 3] = intensity
    fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("intensity", 12, FLOAT32, 1)]
    return PackedCloud(
        fields=fields,
        point_step=16,
        height=1,
        width=len(points),
        row_step=16 * len(points),
        data=buf.reshape(-1).view(np.uint8),
    )


def static_transforms(rig: tuple[CameraSpec, ...], t_ns: int):
    tfs = [
        BAG.transform_stamped(BAG.header(t_ns, BASE_FRAME), cam.optical_frame, cam.base_from_optical())
        for cam in rig
    ]
    tfs.append(BAG.transform_stamped(BAG.header(t_ns, BASE_FRAME), LIDAR_FRAME, base_from_lidar()))
    return BAG.tf_message(tfs)


def _camera_offsets_ns(config: RecordingConfig, n_cameras: int) -> np.ndarray:
    """(frames, cameras) stamp offsets: zero, or seeded uniform in [0, jitter]."""
    if config.camera_jitter_ms <= 0:
        return np.zeros((config.frames, n_cameras), np.int64)
    rng = np.random.default_rng([config.seed, 1])
    return np.round(rng.uniform(0.0, config.camera_jitter_ms * 1e6, (config.frames, n_cameras))).astype(
        np.int64
    )


def record(
    out_path: str | Path, config: RecordingConfig = RecordingConfig(), progress: bool = True
) -> RecordingSummary:
    """Render ``config.frames`` rig frames of a drive and write them as a rosbag2 at ``out_path``."""
    from tqdm import tqdm

    if config.frames < 1 or config.rate_hz <= 0 or config.width < 1 or config.height < 1:
        raise ValueError("frames, rate, width and height must be positive")
    if config.compress not in COMPRESS_CODECS:
        raise ValueError(f"compress must be one of {', '.join(c or repr(c) for c in COMPRESS_CODECS)}")
    if not 1 <= config.jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {config.jpeg_quality}")
    config, params = randomised(config)
    rig = rig_for(config)
    period_ns = 1e9 / config.rate_hz
    stamps = [config.start_time_ns + int(round(i * period_ns)) for i in range(config.frames)]
    offsets = _camera_offsets_ns(config, len(rig))
    scene = scene_for(config)
    intrinsics = [cam.intrinsics(config.width, config.height) for cam in rig]
    topics = [camera_topics(cam.name) for cam in rig]
    render_s = lidar_s = 0.0
    t_start = time.perf_counter()
    from .pybullet_scene import PybulletWorld  # pybullet is only needed to render

    with PybulletWorld(scene) as world, BagWriter(out_path, config.storage) as bag:
        bag.write("/tf_static", static_transforms(rig, config.start_time_ns), config.start_time_ns)
        bar = tqdm(
            total=config.frames,
            unit="frame",
            file=sys.stderr,
            disable=not progress,
            desc=f"synth {config.rig}",
        )
        for i, t_ns in enumerate(stamps):
            t_s = (t_ns - config.start_time_ns) / 1e9
            world_from_base = ego_pose(t_s, config)
            msgs = [
                (t_ns, 0, "/clock", BAG.clock(t_ns)),
                (
                    t_ns,
                    1,
                    "/tf",
                    BAG.tf_message(
                        [BAG.transform_stamped(BAG.header(t_ns, ODOM_FRAME), BASE_FRAME, world_from_base)]
                    ),
                ),
            ]
            extra_tf = set()
            for c, (cam, intr, top) in enumerate(zip(rig, intrinsics, topics)):
                tc = t_ns + int(offsets[i, c])
                pose = world_from_base if tc == t_ns else ego_pose((tc - config.start_time_ns) / 1e9, config)
                if tc != t_ns and tc not in extra_tf:
                    # the ego pose at each camera stamp, so that tf lookups at image stamps are exact
                    extra_tf.add(tc)
                    msgs.append(
                        (
                            tc,
                            1,
                            "/tf",
                            BAG.tf_message(
                                [BAG.transform_stamped(BAG.header(tc, ODOM_FRAME), BASE_FRAME, pose)]
                            ),
                        )
                    )
                t0 = time.perf_counter()
                rgb, depth, labels = world.render_camera(pose @ cam.base_from_optical(), intr)
                render_s += time.perf_counter() - t0
                frame = cam.optical_frame
                msgs += [
                    (tc, 2 + 4 * c, *_camera_image(config, top["image"], BAG.header(tc, frame), rgb)),
                    (tc, 3 + 4 * c, top["camera_info"], BAG.camera_info(BAG.header(tc, frame), intr)),
                    (tc, 4 + 4 * c, top["depth_gt"], BAG.image(BAG.header(tc, frame), depth, "32FC1")),
                    (tc, 5 + 4 * c, top["semantic"], BAG.image(BAG.header(tc, frame), labels, "8UC1")),
                ]
            if config.lidar:
                t0 = time.perf_counter()
                pts, inten = world.lidar_scan(world_from_base @ base_from_lidar())
                lidar_s += time.perf_counter() - t0
                msgs.append(
                    (
                        t_ns,
                        10_000,
                        LIDAR_TOPIC,
                        BAG.pointcloud(BAG.header(t_ns, LIDAR_FRAME), lidar_cloud(pts, inten)),
                    )
                )
            for stamp, _, topic, msg in sorted(msgs, key=lambda e: (e[0], e[1])):
                bag.write(topic, msg, stamp)
            bar.update(1)
        bar.close()
        counts = dict(bag.counts)
    if params is not None:
        (Path(out_path) / PARAMS_FILE).write_text(json.dumps(params.to_json_dict(), indent=2) + "\n")
    total_s = time.perf_counter() - t_start
    n_images = config.frames * len(rig)
    return RecordingSummary(
        path=Path(out_path),
        frames=config.frames,
        cameras=tuple(c.name for c in rig),
        topics=counts,
        render_seconds=render_s,
        lidar_seconds=lidar_s,
        total_seconds=total_s,
        images_per_second=n_images / render_s if render_s > 0 else float("inf"),
        rig_frames_per_second=config.frames / render_s if render_s > 0 else float("inf"),
        params=params,
    )


def _camera_image(config: RecordingConfig, topic: str, header, rgb: np.ndarray) -> tuple[str, object]:
    """(topic, message) of one camera image: raw rgb8, or compressed after image_transport."""
    if not config.compress:
        return topic, BAG.image(header, rgb, "rgb8")
    msg = BAG.compressed_image(header, rgb, config.compress, config.jpeg_quality)
    return topic + COMPRESSED_SUFFIX, msg


def add_synth_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``bore-depth synth OUT ...``."""
    d = RecordingConfig()
    parser.add_argument("out", help="output bag folder (must not exist)")
    parser.add_argument("--rig", default=d.rig, choices=["surround", "mono"])
    parser.add_argument("--frames", type=int, default=d.frames)
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--height", type=int, default=d.height)
    parser.add_argument("--rate", type=float, default=d.rate_hz, help="frames per second")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--storage", default=d.storage, choices=["mcap", "sqlite3"])
    parser.add_argument(
        "--jitter-ms",
        type=float,
        default=d.camera_jitter_ms,
        help="per-camera stamp jitter (0: all cameras share the frame stamp)",
    )
    parser.add_argument("--no-lidar", action="store_true", help="do not write /lidar/points")
    parser.add_argument(
        "--compress",
        default=d.compress,
        choices=[c for c in COMPRESS_CODECS if c],
        help="write camera images as sensor_msgs/CompressedImage on <camera>/image/compressed",
    )
    parser.add_argument(
        "--jpeg-quality", type=int, default=d.jpeg_quality, help="JPEG quality with --compress jpeg (1-100)"
    )
    parser.add_argument(
        "--density",
        type=float,
        default=None,
        help=f"object density multiplier (default {d.scene.density:g}; with --randomise drawn, unless given)",
    )
    parser.add_argument(
        "--randomise",
        action="store_true",
        help="draw clutter density, road width, building heights, lighting, periodic wall textures and "
        "the camera height and pitch from --seed (docs/synth.md); writes synth_params.json into the bag",
    )
    return parser


def run_synth(args: argparse.Namespace) -> int:
    """Record a bag from parsed ``add_synth_arguments`` arguments and print a summary."""
    config = RecordingConfig(
        rig=args.rig,
        frames=args.frames,
        width=args.width,
        height=args.height,
        rate_hz=args.rate,
        seed=args.seed,
        storage=args.storage,
        camera_jitter_ms=args.jitter_ms,
        lidar=not args.no_lidar,
        compress=args.compress,
        jpeg_quality=args.jpeg_quality,
        scene=SceneConfig() if args.density is None else SceneConfig(density=args.density),
        randomise=args.randomise,
        keep_density=args.density is not None,
    )
    s = record(args.out, config, progress=True)
    if s.params is not None:
        print(s.params.summary())
    print(f"wrote {s.path}: {s.frames} frames x {len(s.cameras)} cameras ({', '.join(s.cameras)})")
    for topic, n in sorted(s.topics.items()):
        print(f"  {topic}: {n}")
    print(
        f"render {s.render_seconds:.2f} s: {s.images_per_second:.1f} images/s, "
        f"{s.rig_frames_per_second:.2f} rig frames/s; lidar {s.lidar_seconds:.2f} s; "
        f"total {s.total_seconds:.2f} s"
    )
    return 0
