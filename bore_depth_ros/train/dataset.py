"""Training samples read from rosbag2 recordings (the project's own or a robot's), with the
augmentations the papers use.

A *rig sample* is one synchronized set of all cameras: images, intrinsics, camera-to-base
extrinsics from /tf_static, ground-truth depth when the bag has it, the ego pose from /tf, and the
index of the previous sample of the same recording (for temporal losses). Sets are formed with the
same synchroniser the surround node uses, so training sees what the node sees.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.camera import Intrinsics
from ..core.preprocess import resize_unit
from ..core.resize import resize_nearest
from ..core.transforms import Transform


@dataclass
class RigSample:
    images: list[np.ndarray]  # per view (H, W, 3) uint8
    intrinsics: list[Intrinsics]
    base_from_cam: list[Transform | None]  # None when /tf_static lacks the camera
    depth_gt: list[np.ndarray | None]  # per view (H, W) float32 metres, non-finite invalid
    stamp_ns: int
    odom_from_base: Transform | None
    prev: int | None = None  # index of the previous sample of the same bag
    source: str = ""
    cameras: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)  # per view: the image topic (label keys)
    stamps: list[int] = field(default_factory=list)  # per view: the image stamp, ns (label keys)


def load_rig_samples(
    bag: str | Path,
    cameras: list[str] | None = None,
    slop_s: float = 0.03,
    max_sets: int = 0,
    base_frame: str = "base_link",
    odom_frame: str = "odom",
    camera_infos: list[str] | None = None,
) -> tuple[list[RigSample], dict[str, int]]:
    """Synchronized camera sets of one bag (ring order for the project's layout); returns the
    samples and the number of dropped messages by reason. Cameras are Image or CompressedImage
    streams (``bag.reader.discover_cameras``; ``camera_infos`` parallel to ``cameras`` when the
    camera_info is not the image's sibling), decoded by the nodes' decoders."""
    from ..bag.reader import FrameSync, discover_cameras, open_bag
    from ..core.errors import InputRejected
    from ..core.messages import depth_metres, intrinsics, validate_image
    from ..core.sync import ApproximateSynchronizer
    from ..core.tf_buffer import TfBuffer
    from ..sim.rig import ring_ordered

    samples: list[RigSample] = []
    drops: dict[str, int] = {}
    with open_bag(bag) as reader:
        cams = ring_ordered(discover_cameras(reader, cameras, info_topics=camera_infos))
        if not cams:
            raise ValueError(f"{bag}: no camera (Image or CompressedImage + sibling camera_info) found")
        names = [c.namespace.rstrip("/").split("/")[-1] for c in cams]
        index = {c.namespace: i for i, c in enumerate(cams)}
        sync_frames = FrameSync(reader, cams, TfBuffer(cache_time_ns=None))
        rig = ApproximateSynchronizer(len(cams), int(slop_s * 1e9), queue_size=10)
        tf = sync_frames.tf
        for fr in sync_frames:
            img = fr.image
            try:  # the nodes' input checks and decoders: training sees what a node sees
                rgb = validate_image(img)  # Image (a view of the message) or CompressedImage (decoded)
                item = (
                    rgb.copy() if not rgb.flags.owndata else rgb,
                    intrinsics(fr.camera_info, rgb.shape[1], rgb.shape[0]),
                    None if fr.depth_gt is None else depth_metres(fr.depth_gt),
                    img.header.frame_id,
                )
            except InputRejected as e:
                sync_frames.drop(fr.camera.namespace, e.reason, e.detail)
                continue
            ev = rig.add(index[fr.camera.namespace], fr.stamp_ns, item)
            for _, _, reason in ev.drops:
                drops[reason] = drops.get(reason, 0) + 1
            for g in ev.groups:
                t = max(g.stamps)
                samples.append(
                    RigSample(
                        images=[it[0] for it in g.items],
                        intrinsics=[it[1] for it in g.items],
                        base_from_cam=[tf.lookup(base_frame, it[3], s) for it, s in zip(g.items, g.stamps)],
                        depth_gt=[it[2] for it in g.items],
                        stamp_ns=t,
                        odom_from_base=tf.lookup(odom_frame, base_frame, t),
                        prev=len(samples) - 1 if samples and samples[-1].source == str(bag) else None,
                        source=str(bag),
                        cameras=names,
                        topics=[c.image for c in cams],
                        stamps=list(g.stamps),
                    )
                )
                if max_sets and len(samples) >= max_sets:
                    return samples, drops
        for _, _, reason in rig.flush().drops:
            drops[reason] = drops.get(reason, 0) + 1
        for reason, n in sync_frames.drops_by_reason().items():
            drops[reason] = drops.get(reason, 0) + n
    return samples, drops


class RigDataset:
    """All synchronized sets of several bags; ``prev`` links stay within a bag."""

    def __init__(self, bags: list[str | Path], cameras: list[str] | None = None, max_sets_per_bag: int = 0):
        self.samples: list[RigSample] = []
        self.drops: dict[str, int] = {}
        for bag in bags:
            s, d = load_rig_samples(bag, cameras, max_sets=max_sets_per_bag)
            offset = len(self.samples)
            for smp in s:
                smp.prev = None if smp.prev is None else smp.prev + offset
            self.samples += s
            for k, v in d.items():
                self.drops[k] = self.drops.get(k, 0) + v
        if not self.samples:
            raise ValueError(f"no synchronized camera set in {list(map(str, bags))}")
        self.num_views = len(self.samples[0].images)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> RigSample:
        return self.samples[i]

    def fingerprints(self) -> dict[str, str]:
        """Recording (as given) -> a hash of its first synchronized set (stamp, camera names and
        image bytes): two paths with the same fingerprint hold the same recording (e.g. a copy)."""
        out: dict[str, str] = {}
        for s in self.samples:
            if s.source not in out:
                h = hashlib.sha256(f"{s.stamp_ns} {' '.join(s.cameras)}".encode())
                for img in s.images:
                    h.update(str(img.shape).encode())
                    h.update(np.ascontiguousarray(img).tobytes())
                out[s.source] = h.hexdigest()
        return out


@dataclass
class Augment:
    """Paper augmentations: horizontal flip (intrinsics updated), zoom-and-crop, colour jitter."""

    flip: float = 0.5  # probability (per view; off for rig models that use geometry)
    zoom: tuple[float, float] = (1.0, 1.15)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue_shift: float = 0.0


def prepare_view(
    rgb: np.ndarray,
    intr: Intrinsics,
    depth: np.ndarray | None,
    out_hw,
    rng: np.random.Generator | None,
    aug: Augment | None,
    allow_flip: bool = True,
):
    """One view resized (and, if ``aug``, augmented) to the model input; intrinsics follow.

    Returns (rgb float32 (h, w, 3) in [0, 1], Intrinsics at (w, h), depth (h, w) or None,
    flipped). Zoom crops a centred-random window of 1/zoom of the image and resizes it back;
    the flip mirrors the image and sets cx' = W - 1 - cx."""
    h, w = out_hw
    H, W = rgb.shape[:2]
    x0, y0, cw, ch = 0.0, 0.0, float(W), float(H)
    flipped = False
    if aug is not None and rng is not None:
        z = rng.uniform(*aug.zoom)
        cw, ch = W / z, H / z
        x0, y0 = rng.uniform(0, W - cw), rng.uniform(0, H - ch)
        flipped = allow_flip and rng.random() < aug.flip
    xi0, yi0 = int(round(x0)), int(round(y0))
    xi1, yi1 = min(W, xi0 + max(1, int(round(cw)))), min(H, yi0 + max(1, int(round(ch))))
    crop = rgb[yi0:yi1, xi0:xi1]
    img = resize_unit(crop, h, w)
    cropped = Intrinsics(intr.fx, intr.fy, intr.cx - xi0, intr.cy - yi0, xi1 - xi0, yi1 - yi0)
    k = cropped.scaled_to(w, h)
    d = None
    if depth is not None:
        d = resize_nearest(depth[yi0:yi1, xi0:xi1], h, w).astype(np.float32)
    if flipped:
        img = img[:, ::-1]
        d = None if d is None else d[:, ::-1]
        k = Intrinsics(k.fx, k.fy, w - 1 - k.cx, k.cy, w, h)
    if aug is not None and rng is not None:
        img = colour_jitter(img, rng, aug)
    return np.ascontiguousarray(img, np.float32), k, (None if d is None else np.ascontiguousarray(d)), flipped


def colour_jitter(img: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Brightness, contrast and saturation factors drawn uniformly in 1 +- the given amounts."""
    out = img
    if aug.brightness:
        out = out * rng.uniform(1 - aug.brightness, 1 + aug.brightness)
    if aug.contrast:
        m = out.mean()
        out = (out - m) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + m
    if aug.saturation:
        grey = out.mean(axis=-1, keepdims=True)
        out = (out - grey) * rng.uniform(1 - aug.saturation, 1 + aug.saturation) + grey
    return np.clip(out, 0.0, 1.0)


def finite_or_nan(depth: np.ndarray | None, shape) -> np.ndarray:
    if depth is None:
        return np.full(shape, np.nan, np.float32)
    d = depth.astype(np.float32, copy=True)
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return d
