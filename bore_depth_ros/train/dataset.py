"""Training samples read from rosbag2 recordings (the project's own or a robot's), with the
augmentations the papers use.

A *rig sample* is one synchronized set of all cameras: images, intrinsics, camera-to-base
extrinsics from /tf_static, ground-truth depth, the ego pose from /tf, and the index of the
previous sample of the same recording (for temporal losses). Sets are formed with the same
synchroniser the surround node uses, so training sees what the node sees.

- **Any rig**: cameras are in ring order by the azimuth of their optical axes in ``base_link``
  (``core.ring``: most forward first, counter-clockwise, as eval orders them), unless named
  explicitly; ``RigDataset.neighbour_pairs`` are the views whose fields of view overlap.
- **Ground truth**: a camera's dense depth image where the bag has one, else the LiDAR cloud
  projected into the camera through TF by eval's code (``replay.ground_truth``: motion
  compensated, occluded points removed): a sparse metric target, NaN elsewhere.
- **Streaming**: :class:`RigDataset` keeps an index, not frames: per set the stamps and log times
  of its messages, the intrinsics and transforms (built in one pass over each bag, then cached
  on disk under ``$BORE_DEPTH_CACHE/dataset_index``, keyed by the bag's files). ``data[i]``
  re-reads just that set's messages and decodes them, so memory does not grow with the number or
  length of the recordings; decoding can run in DataLoader workers (``batches.step_batches``).
  :func:`load_rig_samples` is the same pass keeping every decoded frame in memory.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import weakref
from array import array
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.camera import Intrinsics
from ..core.preprocess import resize_unit
from ..core.resize import resize_nearest
from ..core.ring import check_order, overlap_pairs, ring_neighbours
from ..core.transforms import Transform

log = logging.getLogger(__name__)

INDEX_VERSION = 1
_NONE = -1  # no message
_TF_CACHE_NS = 60_000_000_000  # TF kept while indexing (as eval): lookups happen within the sync window
_READ_GAP_NS = 500_000_000  # messages of one set further apart in log time are read separately
_OPEN_BAGS = 4  # bags a process keeps open for reading


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


# ---------------------------------------------------------------------------------- the index


def _pack(t: Transform | None) -> list[float]:
    if t is None:
        return [float("nan")] * 12
    return [
        *np.asarray(t.rotation, np.float64).reshape(9).tolist(),
        *np.asarray(t.translation, np.float64).tolist(),
    ]


def _unpack(row: np.ndarray) -> Transform | None:
    if not np.isfinite(row).all():
        return None
    return Transform(row[:9].reshape(3, 3).copy(), row[9:12].copy())


class BagIndex:
    """What ``data[i]`` needs to rebuild the sets of one bag, in flat arrays (no frames).

    Per set ``stamp``; per set and view the image's ``image_log``/``image_stamp``, the dense
    depth's ``depth_log`` (-1: none), the LiDAR cloud's ``cloud_log``/``cloud_stamp`` (-1: none)
    and ``cam_from_cloud`` (camera at the image stamp <- cloud frame at the cloud stamp), indices
    into the tables of intrinsics and extrinsics; ``odom_from_base`` per set."""

    INT_COLUMNS = ("image_log", "image_stamp", "depth_log", "cloud_log", "cloud_stamp", "intr", "base")

    def __init__(self, meta: dict, arrays: dict[str, np.ndarray]):
        self.meta = meta
        self.cameras: list[str] = meta["cameras"]
        self.topics: list[str] = meta["topics"]
        self.depth_topics: list[str | None] = meta["depth_topics"]
        self.lidar_topic: str | None = meta["lidar_topic"]
        self.drops: dict[str, int] = meta["drops"]
        self.no_ground_truth: dict[str, int] = meta["no_ground_truth"]
        self.intr_table = [Intrinsics(*k[:4], int(k[4]), int(k[5])) for k in meta["intrinsics"]]
        self.base_table = [_unpack(np.asarray(r, np.float64)) for r in meta["extrinsics"]]
        self.stamp = arrays["stamp"]
        n = len(self.cameras)
        for name in self.INT_COLUMNS:
            setattr(self, name, arrays[name].reshape(-1, n))
        self.odom_from_base = arrays["odom_from_base"].reshape(-1, 12)
        self.cam_from_cloud = arrays["cam_from_cloud"].reshape(-1, n, 12)

    def __len__(self) -> int:
        return len(self.stamp)

    @property
    def num_views(self) -> int:
        return len(self.cameras)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            "stamp": self.stamp,
            "odom_from_base": self.odom_from_base,
            "cam_from_cloud": self.cam_from_cloud,
        }
        return out | {name: getattr(self, name) for name in self.INT_COLUMNS}

    def intrinsics(self, j: int) -> list[Intrinsics]:
        return [self.intr_table[k] for k in self.intr[j]]

    def base_from_cam(self, j: int) -> list[Transform | None]:
        return [None if k < 0 else self.base_table[k] for k in self.base[j]]

    def odom(self, j: int) -> Transform | None:
        return _unpack(self.odom_from_base[j])

    def neighbour_pairs(self) -> list[tuple[int, int]]:
        """Views whose fields of view overlap (first set's intrinsics and extrinsics), else, without
        every extrinsic, the ring-adjacent pairs."""
        if not len(self):
            return []
        ext = self.base_from_cam(0)
        if any(t is None for t in ext):
            return ring_neighbours(self.num_views)
        return overlap_pairs(self.intrinsics(0), ext)  # type: ignore[arg-type]

    # -------------------------------------------------------------- disk
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(self.meta)), **self.arrays())
        os.replace(tmp, path)

    @staticmethod
    def load(path: Path) -> BagIndex | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") != INDEX_VERSION:
                    return None
                return BagIndex(meta, {k: z[k] for k in z.files if k != "meta"})
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return None  # absent, half-written or of another layout: built again


class _IndexBuilder:
    """Collects the index of one bag while it is read (typed arrays: a few hundred bytes a set)."""

    def __init__(self, n_views: int, lidar: bool):
        self.n = n_views
        self.lidar = lidar
        self.stamp = array("q")
        self.ints = {name: array("q") for name in BagIndex.INT_COLUMNS}
        self.odom = array("d")
        self.cloud_tf = array("d")
        self.intr_table: dict[Intrinsics, int] = {}
        self.base_table: dict[tuple, int] = {}

    def _intr(self, k: Intrinsics) -> int:
        return self.intr_table.setdefault(k, len(self.intr_table))

    def _base(self, t: Transform | None) -> int:
        return _NONE if t is None else self.base_table.setdefault(tuple(_pack(t)), len(self.base_table))

    def add(self, stamp: int, frames: list[_Frame], base_from_cam, odom_from_base) -> None:
        self.stamp.append(stamp)
        for f, base in zip(frames, base_from_cam):
            for name, v in (
                ("image_log", f.image_log),
                ("image_stamp", f.stamp),
                ("depth_log", f.depth_log),
                ("cloud_log", f.cloud_log),
                ("cloud_stamp", f.cloud_stamp),
                ("intr", self._intr(f.intr)),
                ("base", self._base(base)),
            ):
                self.ints[name].append(v)
            if self.lidar:
                self.cloud_tf.extend(_pack(f.cam_from_cloud))
        self.odom.extend(_pack(odom_from_base))

    def build(self, meta: dict) -> BagIndex:
        meta = {
            **meta,
            "version": INDEX_VERSION,
            "intrinsics": [[k.fx, k.fy, k.cx, k.cy, k.width, k.height] for k in self.intr_table],
            "extrinsics": [list(r) for r in self.base_table],
        }
        arrays = {"stamp": np.frombuffer(self.stamp, np.int64).copy()}
        arrays |= {name: np.frombuffer(a, np.int64).copy() for name, a in self.ints.items()}
        arrays["odom_from_base"] = np.frombuffer(self.odom, np.float64).copy()
        cloud = np.frombuffer(self.cloud_tf, np.float64).copy()
        if not self.lidar:
            cloud = np.full(len(self.stamp) * self.n * 12, np.nan)
        arrays["cam_from_cloud"] = cloud
        return BagIndex(meta, arrays)


@dataclass
class _Frame:
    """One camera frame as the index pass sees it (decoded data only for in-memory loading)."""

    image_log: int
    stamp: int
    intr: Intrinsics
    frame_id: str
    depth_log: int = _NONE
    cloud_log: int = _NONE
    cloud_stamp: int = _NONE
    cam_from_cloud: Transform | None = None
    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None


class _LogTimes:
    """Log time of the first message per (topic, header stamp) of some topics, seen while a bag
    is read (FrameSync's ``on_message``); forgets stamps long past."""

    def __init__(self, topics, horizon_ns: int = 30_000_000_000):
        self.topics = {t for t in topics if t}
        self.horizon = horizon_ns
        self.seen: dict[tuple[str, int], int] = {}
        self.newest = 0

    def see(self, conn, log_ns: int, raw) -> None:
        if conn.topic not in self.topics:
            return
        from ..bag.reader import cdr_header_stamp_ns

        try:
            stamp = cdr_header_stamp_ns(raw)
        except Exception:  # noqa: BLE001 - FrameSync counts undecodable messages itself
            return
        self.seen.setdefault((conn.topic, stamp), log_ns)
        if stamp > self.newest:
            self.newest = stamp
            if len(self.seen) > 4096:
                old = [k for k in self.seen if k[1] < stamp - self.horizon]
                for k in old:
                    del self.seen[k]

    def get(self, topic: str, stamp: int) -> int:
        return self.seen.get((topic, stamp), _NONE)


def _scan_bag(
    bag: str | Path,
    cameras: list[str] | None,
    slop_s: float,
    max_sets: int,
    base_frame: str,
    odom_frame: str,
    camera_infos: list[str] | None,
    lidar_topic: str,
    keep: bool,
) -> tuple[BagIndex, list[RigSample]]:
    """One pass over a bag: its index and, with ``keep``, every set decoded (in-memory loading)."""
    from ..bag.reader import FrameSync, discover_cameras, image_topics_for, open_bag
    from ..core.errors import InputRejected
    from ..core.messages import cloud_fields, depth_metres, intrinsics, validate_image
    from ..core.sync import ApproximateSynchronizer
    from ..core.tf_buffer import TfBuffer, TfLookupError
    from ..replay.config import LIDAR_CLOUD_MISSING, LIDAR_UNSUPPORTED
    from ..replay.ground_truth import (
        LIDAR_MAX_DT_S,
        find_lidar_topic,
        lidar_camera_transform,
        ring_ordered_by_tf,
        sparse_lidar_depth,
        static_extrinsics,
    )

    samples: list[RigSample] = []
    drops: dict[str, int] = {}
    no_gt: collections.Counter[str] = collections.Counter()  # LiDAR views kept without ground truth
    with open_bag(bag) as reader:
        cams = discover_cameras(reader, image_topics_for(reader, cameras), info_topics=camera_infos)
        if not cams:
            raise ValueError(f"{bag}: no camera (Image or CompressedImage + sibling camera_info) found")
        names = [c.namespace.rstrip("/").split("/")[-1] for c in cams]
        if cameras:  # the given order; a ring model sees the views in this order
            warning = check_order(names, static_extrinsics(reader, cams, base_frame))
            if warning:
                log.warning("%s: %s", bag, warning)
        else:
            cams, _ = ring_ordered_by_tf(reader, cams, base_frame)
            names = [c.namespace.rstrip("/").split("/")[-1] for c in cams]
        lidar = find_lidar_topic(reader, lidar_topic)
        lidar_views = {i for i, c in enumerate(cams) if not c.depth_gt} if lidar else set()
        index = {c.namespace: i for i, c in enumerate(cams)}
        times = _LogTimes([c.depth_gt for c in cams] + [lidar if lidar_views else None])
        sync_frames = FrameSync(
            reader,
            cams,
            TfBuffer(cache_time_ns=_TF_CACHE_NS),
            cloud_topic=lidar if lidar_views else None,
            on_message=times.see,
        )
        rig = ApproximateSynchronizer(len(cams), int(slop_s * 1e9), queue_size=10)
        tf = sync_frames.tf
        builder = _IndexBuilder(len(cams), bool(lidar_views))
        cloud_cache: dict[int, np.ndarray | ValueError] = {}  # the points of the latest cloud
        for fr in sync_frames:
            img = fr.image
            ns = fr.camera.namespace
            try:  # the nodes' input checks and decoders: training sees what a node sees
                rgb = validate_image(img)  # Image (a view of the message) or CompressedImage (decoded)
                k = intrinsics(fr.camera_info, rgb.shape[1], rgb.shape[0])
                depth = None if fr.depth_gt is None else depth_metres(fr.depth_gt)
            except InputRejected as e:
                sync_frames.drop(ns, e.reason, e.detail)
                continue
            item = _Frame(fr.log_ns, fr.stamp_ns, k, img.header.frame_id)
            if depth is not None:
                item.depth_log = times.get(fr.camera.depth_gt, fr.stamp_ns)
            v = index[ns]
            if v in lidar_views:  # eval's LiDAR ground truth: the nearest cloud, through TF
                cloud, cloud_stamp = sync_frames.nearest_cloud(fr.stamp_ns, int(LIDAR_MAX_DT_S * 1e9), lidar)
                if cloud is None:
                    no_gt[LIDAR_CLOUD_MISSING] += 1
                else:
                    if cloud_stamp not in cloud_cache:
                        cloud_cache.clear()
                        try:
                            cloud_cache[cloud_stamp] = cloud_fields(cloud)
                        except ValueError as e:
                            cloud_cache[cloud_stamp] = e
                    xyz = cloud_cache[cloud_stamp]
                    if isinstance(xyz, ValueError):
                        no_gt[LIDAR_UNSUPPORTED] += 1
                    else:
                        try:
                            cam_from_cloud, _ = lidar_camera_transform(
                                tf, cloud.header.frame_id, cloud_stamp, item.frame_id, fr.stamp_ns, odom_frame
                            )
                        except TfLookupError as e:
                            no_gt[e.reason] += 1
                        else:
                            item.cloud_log = times.get(lidar, cloud_stamp)
                            item.cloud_stamp, item.cam_from_cloud = cloud_stamp, cam_from_cloud
                            if keep:
                                depth = sparse_lidar_depth(xyz, cam_from_cloud, k)
            if keep:
                item.rgb = rgb.copy() if not rgb.flags.owndata else rgb
                item.depth = depth
            ev = rig.add(v, fr.stamp_ns, item)
            for _, _, reason in ev.drops:
                drops[reason] = drops.get(reason, 0) + 1
            for g in ev.groups:
                t = max(g.stamps)
                base_from_cam = [tf.lookup(base_frame, it.frame_id, s) for it, s in zip(g.items, g.stamps)]
                odom_from_base = tf.lookup(odom_frame, base_frame, t)
                builder.add(t, g.items, base_from_cam, odom_from_base)
                if keep:
                    samples.append(
                        RigSample(
                            images=[it.rgb for it in g.items],
                            intrinsics=[it.intr for it in g.items],
                            base_from_cam=base_from_cam,
                            depth_gt=[it.depth for it in g.items],
                            stamp_ns=t,
                            odom_from_base=odom_from_base,
                            prev=len(samples) - 1 if samples else None,
                            source=str(bag),
                            cameras=names,
                            topics=[c.image for c in cams],
                            stamps=list(g.stamps),
                        )
                    )
                if max_sets and len(builder.stamp) >= max_sets:
                    break
            if max_sets and len(builder.stamp) >= max_sets:
                break
        else:
            for _, _, reason in rig.flush().drops:
                drops[reason] = drops.get(reason, 0) + 1
            for reason, n in sync_frames.drops_by_reason().items():
                drops[reason] = drops.get(reason, 0) + n
    meta = {
        "cameras": names,
        "topics": [c.image for c in cams],
        "depth_topics": [c.depth_gt for c in cams],
        "lidar_topic": lidar if lidar_views else None,
        "drops": dict(sorted(drops.items())),
        "no_ground_truth": dict(sorted(no_gt.items())),
    }
    return builder.build(meta), samples


def load_rig_samples(
    bag: str | Path,
    cameras: list[str] | None = None,
    slop_s: float = 0.03,
    max_sets: int = 0,
    base_frame: str = "base_link",
    odom_frame: str = "odom",
    camera_infos: list[str] | None = None,
    lidar_topic: str = "",
) -> tuple[list[RigSample], dict[str, int]]:
    """Synchronized camera sets of one bag, every frame decoded in memory (ring order from TF);
    returns the samples and the number of dropped messages by reason. Cameras are Image or
    CompressedImage streams (``bag.reader.discover_cameras``; ``cameras`` as image topics or
    camera namespaces, ``camera_infos`` parallel to them when the camera_info is not the image's
    sibling), decoded by the nodes' decoders. :class:`RigDataset` streams the same sets."""
    index, samples = _scan_bag(
        bag, cameras, slop_s, max_sets, base_frame, odom_frame, camera_infos, lidar_topic, keep=True
    )
    return samples, dict(index.drops)


# ---------------------------------------------------------------------------------- streaming


def _file_signature(path: Path) -> list:
    """Name, size, mtime and a hash of the head and tail of each file of a bag (cheap, and it
    changes when the bag is rewritten)."""
    from ..bag.reader import bag_files

    files = bag_files(path) + ([path / "metadata.yaml"] if (path / "metadata.yaml").is_file() else [])
    out = []
    for f in files:
        st = f.stat()
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            h.update(fh.read(4096))
            fh.seek(max(0, st.st_size - 65536))
            h.update(fh.read(65536))
        out.append([f.name, st.st_size, st.st_mtime_ns, h.hexdigest()])
    return out


def default_index_dir() -> Path:
    """Where dataset indices are cached: ``$BORE_DEPTH_CACHE/dataset_index`` (see
    ``backends.cache_paths.cache_root``), nowhere near the user's recordings."""
    from ..backends.cache_paths import cache_root

    return cache_root() / "dataset_index"


def _return_freed_memory() -> None:
    """Hand the memory an index pass freed back to the system (glibc keeps freed heap pages when a
    small live block sits above them, and the reads that follow would add to that); a no-op
    elsewhere."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _close_readers(readers: dict) -> None:
    while readers:
        readers.popitem()[1][0].close()


class SampleRef:
    """``data.samples[i]``: ``prev``, ``source``, ``stamp_ns``, ``cameras``, ``topics``, ``stamps``
    from the index; any other attribute (``images``, ``depth_gt``, ...) reads the set (``data[i]``,
    a few kept decoded)."""

    __slots__ = ("_data", "_bag", "_row", "index", "prev")

    def __init__(self, data: RigDataset, i: int, bag: int, row: int):
        self._data, self._bag, self._row = data, bag, row
        self.index = i
        self.prev = i - 1 if row > 0 else None

    @property
    def source(self) -> str:
        return self._data.sources[self._bag]

    @property
    def stamp_ns(self) -> int:
        return int(self._data.indices[self._bag].stamp[self._row])

    @property
    def cameras(self) -> list[str]:
        return list(self._data.indices[self._bag].cameras)

    @property
    def topics(self) -> list[str]:
        return list(self._data.indices[self._bag].topics)

    @property
    def stamps(self) -> list[int]:
        return [int(t) for t in self._data.indices[self._bag].image_stamp[self._row]]

    def __getattr__(self, name: str):
        return getattr(self._data[self.index], name)


class _SampleList(Sequence):
    def __init__(self, data: RigDataset):
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range ({n} sets)")
        i %= n
        return SampleRef(self._data, i, *self._data._locate(i))

    def __iter__(self):
        i = 0
        for b, idx in enumerate(self._data.indices):
            for j in range(len(idx)):
                yield SampleRef(self._data, i, b, j)
                i += 1


class RigDataset:
    """All synchronized sets of several bags, read on demand; ``prev`` links stay within a bag.

    ``data[i]`` is a :class:`RigSample` (the last ``keep_decoded`` are kept); ``len(data)``;
    ``data.samples`` a sequence of light :class:`SampleRef`; ``data.num_views``, ``data.cameras``
    (names, ring order) and ``data.neighbour_pairs`` (views (left, right) whose fields of view
    overlap, for view-relational terms) of the first bag; ``data.drops``: messages not used, by
    reason; ``data.no_ground_truth``: LiDAR views kept without a target, by eval's reason.

    The index of each bag is built by one pass (:func:`_scan_bag`, the same as
    :func:`load_rig_samples`) and cached under ``index_dir`` (default :func:`default_index_dir`;
    ``cache=False``: not cached); bags are opened per process, so the dataset can be handed to
    worker processes."""

    def __init__(
        self,
        bags: list[str | Path],
        cameras: list[str] | None = None,
        max_sets_per_bag: int = 0,
        slop_s: float = 0.03,
        lidar_topic: str = "",
        camera_infos: list[str] | None = None,
        base_frame: str = "base_link",
        odom_frame: str = "odom",
        index_dir: str | Path | None = None,
        cache: bool = True,
        keep_decoded: int = 4,
    ):
        self.sources = [str(b) for b in bags]
        self.indices: list[BagIndex] = []
        self.drops: dict[str, int] = {}
        self.no_ground_truth: dict[str, int] = {}
        self.keep_decoded = max(1, int(keep_decoded))
        options = {
            "cameras": list(cameras or []),
            "camera_infos": list(camera_infos or []),
            "slop_ns": int(slop_s * 1e9),
            "max_sets": int(max_sets_per_bag),
            "base_frame": base_frame,
            "odom_frame": odom_frame,
            "lidar_topic": lidar_topic,
        }
        where = (Path(index_dir) if index_dir else default_index_dir()) if cache else None
        scanned = False
        for bag in bags:
            idx, built = self._index(Path(bag), options, where)
            scanned |= built
            self.indices.append(idx)
            for k, v in idx.drops.items():
                self.drops[k] = self.drops.get(k, 0) + v
            for k, v in idx.no_ground_truth.items():
                self.no_ground_truth[k] = self.no_ground_truth.get(k, 0) + v
        if scanned:
            _return_freed_memory()
        self._offsets = np.cumsum([0] + [len(i) for i in self.indices])
        if not len(self):
            raise ValueError(f"no synchronized camera set in {self.sources}")
        first = next(i for i in self.indices if len(i))
        self.num_views = first.num_views
        self.cameras = first.cameras
        self.neighbour_pairs = first.neighbour_pairs()
        self._decoded: collections.OrderedDict[int, RigSample] = collections.OrderedDict()
        self._open_readers()

    # -------------------------------------------------------------- index
    @staticmethod
    def _index(bag: Path, options: dict, where: Path | None) -> tuple[BagIndex, bool]:
        """(the bag's index, whether it was built now rather than read from the cache)."""
        if not bag.exists():
            raise FileNotFoundError(f"bag not found: {bag}")
        path = None
        if where is not None:
            key = {
                "version": INDEX_VERSION,
                "bag": str(bag.resolve()),
                "files": _file_signature(bag.resolve()),
            }
            digest = hashlib.sha256(json.dumps({**key, **options}, sort_keys=True).encode()).hexdigest()
            path = where / f"{bag.resolve().name}-{digest[:24]}.npz"
            idx = BagIndex.load(path)
            if idx is not None:
                return idx, False
        o = options
        idx, _ = _scan_bag(
            bag,
            o["cameras"] or None,
            o["slop_ns"] / 1e9,
            o["max_sets"],
            o["base_frame"],
            o["odom_frame"],
            o["camera_infos"] or None,
            o["lidar_topic"],
            keep=False,
        )
        if path is not None:
            try:
                idx.save(path)
            except OSError as e:
                log.warning("cannot cache the index of %s in %s: %s", bag, path.parent, e)
        return idx, True

    def _locate(self, i: int) -> tuple[int, int]:
        b = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return b, i - int(self._offsets[b])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def samples(self) -> _SampleList:
        return _SampleList(self)

    def prev_of(self, i: int) -> int | None:
        """The index of the previous set of the same bag (None for a bag's first set)."""
        return i - 1 if self._locate(i)[1] > 0 else None

    def with_previous(self) -> list[int]:
        """Indices of the sets that have a previous set (temporal recipes)."""
        return [
            i
            for b in range(len(self.indices))
            for i in range(int(self._offsets[b]) + 1, int(self._offsets[b + 1]))
        ]

    # -------------------------------------------------------------- reading
    def _open_readers(self) -> None:
        """A fresh table of open bags for this process, closed when the dataset goes or at exit."""
        self._readers: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self._pid = os.getpid()
        weakref.finalize(self, _close_readers, self._readers)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_decoded"] = collections.OrderedDict()
        del state["_readers"], state["_pid"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open_readers()

    def _reader(self, b: int):
        if self._pid != os.getpid():  # a forked worker: its own files (inherited handles share offsets)
            self._open_readers()
        if b in self._readers:
            self._readers.move_to_end(b)
            return self._readers[b][1:]
        from ..bag.reader import open_bag

        stack = ExitStack()
        reader = stack.enter_context(open_bag(self.sources[b]))
        conns: dict[str, list] = collections.defaultdict(list)
        for c in reader.connections:
            conns[c.topic].append(c)
        self._readers[b] = (stack, reader, dict(conns))
        while len(self._readers) > _OPEN_BAGS:
            self._readers.popitem(last=False)[1][0].close()
        return reader, self._readers[b][2]

    def close(self) -> None:
        """Close the bags this process has open (reading again reopens them)."""
        _close_readers(self._readers)
        self._decoded.clear()

    def __getitem__(self, i: int) -> RigSample:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range ({len(self)} sets)")
        if i in self._decoded:
            self._decoded.move_to_end(i)
            return self._decoded[i]
        sample = self._read(i)
        self._decoded[i] = sample
        while len(self._decoded) > self.keep_decoded:
            self._decoded.popitem(last=False)
        return sample

    def _read(self, i: int) -> RigSample:
        from ..bag.reader import cdr_header_stamp_ns
        from ..core.messages import cloud_fields, depth_metres, validate_image
        from ..replay.ground_truth import sparse_lidar_depth

        b, j = self._locate(i)
        idx = self.indices[b]
        reader, conns = self._reader(b)
        wanted: dict[tuple[str, int, int], object] = {}
        for v in range(idx.num_views):
            wanted[(idx.topics[v], int(idx.image_log[j, v]), int(idx.image_stamp[j, v]))] = None
            if idx.depth_log[j, v] >= 0:
                wanted[(idx.depth_topics[v], int(idx.depth_log[j, v]), int(idx.image_stamp[j, v]))] = None
            if idx.cloud_log[j, v] >= 0:
                wanted[(idx.lidar_topic, int(idx.cloud_log[j, v]), int(idx.cloud_stamp[j, v]))] = None
        keys = sorted(wanted, key=lambda k: k[1])
        groups, cur = [], [keys[0]]
        for k in keys[1:]:
            if k[1] - cur[-1][1] > _READ_GAP_NS:
                groups.append(cur)
                cur = []
            cur.append(k)
        groups.append(cur)
        for group in groups:
            topics = {k[0] for k in group}
            sel = [c for t in topics for c in conns.get(t, ())]
            if not sel:  # rosbags reads every topic when given none
                continue
            for conn, log_ns, raw in reader.messages(
                connections=sel, start=group[0][1], stop=group[-1][1] + 1
            ):
                key = (conn.topic, log_ns, cdr_header_stamp_ns(raw))
                if key in wanted and wanted[key] is None:
                    wanted[key] = reader.deserialize(raw, conn.msgtype)
        missing = [k for k, m in wanted.items() if m is None]
        if missing:
            t, ts, st = missing[0]
            raise ValueError(
                f"{self.sources[b]}: the message {t} (log time {ts}, stamp {st}) of its index is not in the "
                "bag: the recording changed since it was indexed"
            )
        intr = idx.intrinsics(j)
        images, depths = [], []
        cloud_xyz: dict[int, np.ndarray] = {}
        for v in range(idx.num_views):
            stamp = int(idx.image_stamp[j, v])
            rgb = validate_image(wanted[(idx.topics[v], int(idx.image_log[j, v]), stamp)])
            images.append(rgb.copy() if not rgb.flags.owndata else rgb)
            depth = None
            if idx.depth_log[j, v] >= 0:
                depth = depth_metres(wanted[(idx.depth_topics[v], int(idx.depth_log[j, v]), stamp)])
                depth = depth.copy() if not depth.flags.owndata else depth
            elif idx.cloud_log[j, v] >= 0:
                key = (idx.lidar_topic, int(idx.cloud_log[j, v]), int(idx.cloud_stamp[j, v]))
                if key[1:] not in cloud_xyz:
                    cloud_xyz[key[1:]] = cloud_fields(wanted[key])
                depth = sparse_lidar_depth(cloud_xyz[key[1:]], _unpack(idx.cam_from_cloud[j, v]), intr[v])
            depths.append(depth)
        return RigSample(
            images=images,
            intrinsics=intr,
            base_from_cam=idx.base_from_cam(j),
            depth_gt=depths,
            stamp_ns=int(idx.stamp[j]),
            odom_from_base=idx.odom(j),
            prev=i - 1 if j > 0 else None,
            source=self.sources[b],
            cameras=list(idx.cameras),
            topics=list(idx.topics),
            stamps=[int(s) for s in idx.image_stamp[j]],
        )

    def fingerprints(self) -> dict[str, str]:
        """Recording (as given) -> a hash of its first synchronized set (stamp, camera names and
        image bytes): two paths with the same fingerprint hold the same recording (e.g. a copy)."""
        out: dict[str, str] = {}
        for b, source in enumerate(self.sources):
            if source in out or not len(self.indices[b]):
                continue
            s = self[int(self._offsets[b])]
            h = hashlib.sha256(f"{s.stamp_ns} {' '.join(s.cameras)}".encode())
            for img in s.images:
                h.update(str(img.shape).encode())
                h.update(np.ascontiguousarray(img).tobytes())
            out[source] = h.hexdigest()
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
