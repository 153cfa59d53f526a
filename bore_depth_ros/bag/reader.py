"""Read any rosbag2 (MCAP or sqlite3) without ROS: camera discovery, TF, synchronised camera frames.

Cameras are ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` topics, named after
image_transport: a compressed stream ``<base>/compressed`` stands for the image ``<base>``, and a
camera's camera_info is the sibling of its (base) image topic, ``<namespace>/camera_info``, unless
given. Messages are handed out undecoded: the users decode them through the one message layer
(:mod:`~bore_depth_ros.core.messages`), so a compressed image is checked and rejected with the
same reasons as in the nodes.

``open_bag(path)`` opens a bag directory or a bare .mcap/.db3 file with ``rosbags``' AnyReader (the
bag's own message definitions, the Jazzy typestore when it has none), after checking the files'
integrity (:mod:`~bore_depth_ros.bag.integrity`: MCAP CRCs, sqlite's quick_check); anything that
goes wrong reading it later is a :class:`BagError` naming the bag too. ``discover_cameras`` finds
camera streams; ``FrameSync`` streams the bag once, in log-time order, and yields one
:class:`CameraFrame` per image with its camera_info (paired by the nodes' policy,
:class:`~bore_depth_ros.core.pairing.InfoPairer`) and ground-truth depth matched by header stamp,
feeding /tf and /tf_static into a :class:`~bore_depth_ros.core.tf_buffer.TfBuffer` on the way and
counting every message it cannot use, by reason.
"""

from __future__ import annotations

import collections
import heapq
import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.highlevel import AnyReader, AnyReaderError

from ..core.compressed import parse_format
from ..core.errors import CAMERA_INFO_MISSING, INVALID_TRANSFORM, InputRejected
from ..core.images import SUPPORTED_ENCODINGS
from ..core.messages import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    DEPTH_ENCODINGS,
    IMAGE,
    POINTCLOUD2,
    TF_MESSAGE,
    stamp_ns,
    transform,
)
from ..core.pairing import InfoPairer
from ..core.tf_buffer import TfBuffer
from .integrity import BagError, McapCheck, check_mcap, check_sqlite
from .messages import TYPESTORE

COLOR_ENCODINGS = tuple(SUPPORTED_ENCODINGS)
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
CLOCK_TOPIC = "/clock"
IMAGE_SUFFIXES = ("image", "image_raw", "image_rect", "image_rect_color", "image_color")
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
COMPRESSED_SUFFIX = "/compressed"  # image_transport's compressed plugin: <base>/compressed

# reasons a message is not turned into an evaluated frame (stable codes, counted per camera)
GT_WITHOUT_IMAGE = "gt_depth_without_image"
INFO_WITHOUT_IMAGE = "camera_info_without_image"
DUPLICATE_IMAGE = "duplicate_image_stamp"
UNDECODABLE = "undecodable_message"


def bag_files(path: Path) -> list[Path]:
    """The storage files of a bag: the file itself, or a bag directory's .mcap and .db3 files."""
    if path.is_file():
        return [path]
    return sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))


def check_bag(path: str | Path, full: bool = False) -> list[McapCheck]:
    """Check every storage file of a bag (:mod:`.integrity`); BagError naming the damaged file (and,
    for a chunk, its byte offset). MCAP: the footer, summary CRC and record layout (milliseconds),
    with ``full`` also every chunk and data section CRC (one more pass over the file); sqlite3:
    ``PRAGMA quick_check`` (one read of the file). Returns what was found in the MCAP files."""
    checks = []
    for f in bag_files(Path(path)):
        if f.suffix == ".mcap":
            checks.append(check_mcap(f, full=full))
        elif f.suffix == ".db3":
            check_sqlite(f)
    return checks


class BagReader(AnyReader):
    """rosbags' AnyReader that fails with a :class:`BagError` naming the bag: a chunk whose CRC does
    not match as it is read (rosbags checks each chunk it loads; the error names the chunk's byte
    offset) or any other failure of rosbags reading the file (its own errors, or plain struct and
    index errors on garbage), and a message that does not deserialize.
    ``integrity`` holds what :func:`check_bag` found when the bag was opened."""

    def __init__(self, path: Path, integrity: list[McapCheck]):
        super().__init__([path], default_typestore=TYPESTORE)
        self.bag_path = path
        self.integrity = integrity

    def messages(self, *args, **kwargs):
        try:
            yield from super().messages(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - raised by rosbags reading the file, not by the caller
            check_bag(self.bag_path, full=True)  # names the damaged chunk, if one is
            detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            raise BagError(f"cannot read bag {self.bag_path}: reading its messages failed ({detail})") from e

    def deserialize(self, rawdata, typ: str):
        try:
            return super().deserialize(rawdata, typ)
        except Exception as e:  # noqa: BLE001 - garbage bytes fail in many ways
            raise BagError(
                f"cannot read bag {self.bag_path}: a {len(rawdata)}-byte {typ} message does not decode ({e})"
            ) from e


@contextmanager
def open_bag(path: str | Path, full_check: bool = False) -> Iterator[BagReader]:
    """``with open_bag(p) as reader``: an open AnyReader (:class:`BagReader`) on a bag directory,
    .mcap or .db3 file. FileNotFoundError for a missing path; BagError naming the bag (or the
    damaged file and the byte offset) for one that is truncated, corrupt or otherwise unreadable,
    raised here or, for a damaged chunk, when reading reaches it. ``full_check``: verify every
    CRC before returning (:func:`check_bag`), at the cost of one more pass over the files."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"bag not found: {p}")
    integrity = check_bag(p, full=full_check)
    try:
        reader = BagReader(p, integrity)
        reader.open()
    except AnyReaderError as e:
        raise BagError(f"cannot read bag {p}: {e}") from None
    try:
        yield reader
    finally:
        reader.close()


def cdr_header_stamp_ns(raw: bytes | memoryview) -> int:
    """header.stamp of a serialized message whose first field is a std_msgs/Header.

    Read straight from the CDR bytes (4-byte encapsulation, then int32 sec and uint32 nanosec) so
    that stamps can be matched without deserializing whole images.
    """
    little = raw[1] & 1  # encapsulation kind: CDR_BE = 0, CDR_LE = 1 (PL variants keep the bit)
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def namespace_of(topic: str) -> str:
    return topic.rsplit("/", 1)[0]


def base_topic(topic: str) -> str:
    """The image topic a CompressedImage topic stands for, after image_transport
    (``/cam/image_raw/compressed`` -> ``/cam/image_raw``); other names are their own base."""
    return topic[: -len(COMPRESSED_SUFFIX)] if topic.endswith(COMPRESSED_SUFFIX) else topic


def camera_namespace(topic: str) -> str:
    """The namespace of the camera an image topic belongs to (where its camera_info lives)."""
    return namespace_of(base_topic(topic))


@dataclass(frozen=True)
class CameraStreams:
    """The topics of one camera; ``namespace`` names it (e.g. /cameras/front). ``encoding`` is the
    first image's encoding (Image) or format (CompressedImage); ``depth_gt`` a depth image topic
    (Image or compressedDepth) and ``gt_cloud`` a PointCloud2 given as this camera's ground truth."""

    namespace: str
    image: str
    camera_info: str
    depth_gt: str | None = None
    encoding: str = ""
    msgtype: str = IMAGE
    gt_cloud: str | None = None

    @property
    def name(self) -> str:
        return self.namespace.strip("/").replace("/", "_") or "camera"

    @property
    def compressed(self) -> bool:
        return self.msgtype == COMPRESSED_IMAGE


def _connections_by_topic(reader: AnyReader) -> dict[str, list]:
    out: dict[str, list] = collections.defaultdict(list)
    for c in reader.connections:
        out[c.topic].append(c)
    return out


def first_message(reader: AnyReader, topic: str):
    """The first deserialized message on ``topic``, or None if it has none."""
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns or not sum(c.msgcount for c in conns):
        return None
    for conn, _, raw in reader.messages(connections=conns):
        return reader.deserialize(raw, conn.msgtype)
    return None


def topics_of_type(reader: AnyReader, msgtype: str) -> list[str]:
    return sorted({c.topic for c in reader.connections if c.msgtype == msgtype})


def is_compressed_depth(fmt: str) -> bool:
    """True for compressed_depth_image_transport's format strings (``16UC1; compressedDepth png``)."""
    return parse_format(fmt)[1].startswith("compressedDepth")


def _depth_kind(reader: AnyReader, topic: str, msgtype: str) -> str:
    """Why ``topic`` cannot be depth ground truth ("" when it can): a 32FC1/16UC1 Image or a
    compressedDepth CompressedImage (judged by its first message; an empty topic passes)."""
    msg = first_message(reader, topic)
    if msg is None:
        return ""
    if msgtype == IMAGE:
        ok = msg.encoding in DEPTH_ENCODINGS
        return "" if ok else f"an Image of encoding '{msg.encoding}', not {' or '.join(DEPTH_ENCODINGS)}"
    ok = is_compressed_depth(msg.format)
    return "" if ok else f"a CompressedImage of format '{msg.format}', not compressedDepth"


def _find_depth_gt(reader: AnyReader, namespace: str, depth_like: dict[str, str]) -> str | None:
    """A depth ground-truth topic of the camera in ``namespace``: an Image (32FC1/16UC1) or
    compressedDepth topic under it whose name contains ``depth_gt``; raw before compressed."""
    candidates = [t for t in depth_like if t.startswith(namespace + "/") and "depth_gt" in t]
    for t in sorted(candidates, key=lambda t: (len(t), t)):
        if first_message(reader, t) is not None and not _depth_kind(reader, t, depth_like[t]):
            return t
    return None


def _camera_kind(reader: AnyReader, topic: str, msgtype: str) -> tuple[str, str]:
    """(encoding or format of the first image, why it is no camera image or "")."""
    msg = first_message(reader, topic)
    if msg is None:
        return "", ""
    if msgtype == IMAGE:
        if msg.encoding not in COLOR_ENCODINGS:
            return msg.encoding, (
                f"{topic} has encoding '{msg.encoding}'; cameras need one of {', '.join(COLOR_ENCODINGS)}"
            )
        return msg.encoding, ""
    if is_compressed_depth(msg.format):
        return msg.format, f"{topic} holds compressed depth (format '{msg.format}'), not camera images"
    return msg.format, ""


def image_topics_for(reader, cameras: list[str] | None) -> list[str] | None:
    """Image topics for ``cameras`` given as image topics or camera namespaces (a namespace's raw
    Image topic is preferred to its compressed stream); None for no ``cameras`` (every camera).
    Training recordings and held-out evaluation resolve a config's ``cameras`` with this."""
    if not cameras:
        return None
    by_topic = {c.topic: c.msgtype for c in reader.connections}
    images = sorted(t for t, m in by_topic.items() if m in IMAGE_TYPES)
    out = []
    for cam in cameras:
        if by_topic.get(cam) in IMAGE_TYPES:
            out.append(cam)
            continue
        ns = cam.rstrip("/")
        found = [t for t in images if camera_namespace(t) == ns]
        if not found:
            raise ValueError(
                f"camera {cam} is neither an image topic nor a camera namespace of the bag "
                f"(image topics: {', '.join(images) or 'none'})"
            )

        def rank(t: str) -> tuple:
            base = t[: -len(COMPRESSED_SUFFIX)] if t.endswith(COMPRESSED_SUFFIX) else t
            suffix = base.rsplit("/", 1)[-1]
            pos = IMAGE_SUFFIXES.index(suffix) if suffix in IMAGE_SUFFIXES else len(IMAGE_SUFFIXES)
            return (t.endswith(COMPRESSED_SUFFIX), pos, t)

        out.append(min(found, key=rank))
    return out


def discover_cameras(
    reader: AnyReader,
    image_topics: Iterable[str] | None = None,
    gt_topics: Iterable[str | None] | None = None,
    info_topics: Iterable[str | None] | None = None,
) -> list[CameraStreams]:
    """Camera streams of a bag.

    Auto mode (``image_topics`` None): every Image topic whose first message has a colour/mono
    encoding, and every CompressedImage topic that is not compressed depth, which has a sibling
    camera_info (``<namespace>/camera_info`` next to the image topic, or next to the base topic of
    ``<base>/compressed``); a compressed stream whose base Image topic is in the bag too is left
    out (the raw one is used). Explicit mode: the given image topics, with ``info_topics``
    (parallel, None entries = the sibling) as their camera_info. Ground truth: ``gt_topics``
    (parallel to ``image_topics``, None entries = auto; in auto mode a single entry naming a
    PointCloud2 serves every camera): a depth image (32FC1/16UC1 Image or compressedDepth) or a
    PointCloud2; else a depth image topic under the camera's namespace whose name contains
    ``depth_gt``. Raises ValueError on a bad request, naming what the bag has.
    """
    by_topic = _connections_by_topic(reader)
    raw_images = topics_of_type(reader, IMAGE)
    compressed = topics_of_type(reader, COMPRESSED_IMAGE)
    images = sorted(raw_images + compressed)
    infos = set(topics_of_type(reader, CAMERA_INFO))
    clouds = set(topics_of_type(reader, POINTCLOUD2))
    depth_like = {t: IMAGE for t in raw_images} | {t: COMPRESSED_IMAGE for t in compressed}
    explicit = image_topics is not None
    wanted = list(image_topics) if explicit else images
    info_given = list(info_topics) if info_topics is not None else [None] * len(wanted)
    if len(info_given) != len(wanted):
        raise ValueError(f"{len(info_given)} camera_info topics given for {len(wanted)} cameras")
    gts = list(gt_topics) if gt_topics is not None else [None] * len(wanted)
    shared_gt = None
    if not explicit and gt_topics is not None and len(gts) == 1:
        shared_gt = gts[0]
        if shared_gt not in clouds:
            raise ValueError(
                f"a single ground-truth topic without --camera must be a {POINTCLOUD2} topic (for every "
                f"camera); {shared_gt} is "
                + (f"a {by_topic[shared_gt][0].msgtype}" if shared_gt in by_topic else "not in the bag")
                + "; give the cameras with --camera, one --gt-topic each"
            )
        gts = [shared_gt] * len(wanted)
    if len(gts) != len(wanted):
        raise ValueError(f"{len(gts)} ground-truth topics given for {len(wanted)} cameras")
    cams = []
    for topic, gt, info in zip(wanted, gts, info_given):
        if topic not in by_topic:
            raise ValueError(f"topic {topic} is not in the bag (image topics: {', '.join(images) or 'none'})")
        msgtype = by_topic[topic][0].msgtype
        if msgtype not in IMAGE_TYPES:
            raise ValueError(f"topic {topic} is a {msgtype}, not an {IMAGE} or {COMPRESSED_IMAGE}")
        if not explicit and msgtype == COMPRESSED_IMAGE and base_topic(topic) in raw_images:
            continue  # the compressed copy of an Image stream the bag holds as well
        ns = camera_namespace(topic)
        if info is None:
            info = f"{ns}/camera_info"
            if info not in infos:
                if explicit:
                    raise ValueError(
                        f"no camera_info next to {topic} (expected {info}); give its topic with "
                        f"--camera-info (CameraInfo topics: {', '.join(sorted(infos)) or 'none'})"
                    )
                continue
        elif info not in infos:
            raise ValueError(
                f"camera_info topic {info} is not a {CAMERA_INFO} topic of the bag "
                f"(CameraInfo topics: {', '.join(sorted(infos)) or 'none'})"
            )
        encoding, why_not = _camera_kind(reader, topic, msgtype)
        if why_not:
            if explicit:
                raise ValueError(why_not)
            continue
        depth_gt = gt_cloud = None
        if gt is not None:
            if gt not in by_topic:
                raise ValueError(f"ground-truth topic {gt} is not in the bag")
            gt_type = by_topic[gt][0].msgtype
            if gt_type == POINTCLOUD2:
                gt_cloud = gt
            elif gt_type in IMAGE_TYPES:
                why = _depth_kind(reader, gt, gt_type)
                if why:
                    raise ValueError(f"ground-truth topic {gt} is {why}")
                depth_gt = gt
            else:
                raise ValueError(
                    f"ground-truth topic {gt} is a {gt_type}: expected a depth image ({IMAGE} 32FC1/16UC1 "
                    f"or a compressedDepth {COMPRESSED_IMAGE}) or a {POINTCLOUD2}"
                )
        else:
            depth_gt = _find_depth_gt(reader, ns, depth_like)
        cams.append(CameraStreams(ns, topic, info, depth_gt, encoding, msgtype, gt_cloud))
    names = [c.namespace for c in cams]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        topics = ", ".join(c.image for c in cams if c.namespace in dup)
        raise ValueError(
            f"several image topics share a camera namespace ({', '.join(dup)}: {topics}); "
            "choose one per camera with --camera"
        )
    return cams


def add_tf_message(buffer: TfBuffer, msg, static: bool) -> list[InputRejected]:
    """Store every valid transform of a tf2_msgs/TFMessage in ``buffer``; return the rejected
    ones' errors (non-finite components, a frame to itself), as the surround node rejects them."""
    rejected = []
    for ts in msg.transforms:
        try:
            buffer.set_transform(
                ts.header.frame_id, ts.child_frame_id, stamp_ns(ts.header), transform(ts), static=static
            )
        except ValueError as e:
            rejected.append(e if isinstance(e, InputRejected) else InputRejected(INVALID_TRANSFORM, str(e)))
    return rejected


def read_tf(reader: AnyReader, buffer: TfBuffer | None = None) -> TfBuffer:
    """All of /tf_static and /tf of a bag in one buffer (no cache limit unless ``buffer`` has one)."""
    buffer = buffer if buffer is not None else TfBuffer(cache_time_ns=None)
    conns = [
        c for c in reader.connections if c.topic in (TF_TOPIC, TF_STATIC_TOPIC) and c.msgtype == TF_MESSAGE
    ]
    if not conns:  # rosbags reads every topic for an empty connection list
        return buffer
    for conn, _, raw in reader.messages(connections=conns):
        add_tf_message(buffer, reader.deserialize(raw, conn.msgtype), conn.topic == TF_STATIC_TOPIC)
    return buffer


@dataclass
class CameraFrame:
    """One image with what belongs to it; messages are deserialized rosbags objects (``image`` an
    Image or CompressedImage, ``depth_gt`` an Image or compressedDepth CompressedImage: decode them
    with ``core.messages.validate_image`` / ``depth_metres``)."""

    camera: CameraStreams
    stamp_ns: int
    log_ns: int
    image: object
    camera_info: object
    info_exact: bool  # False: the image fell back to the newest camera_info
    depth_gt: object | None


_UNPAIRED = object()  # an image whose camera_info is not decided yet


@dataclass
class _Slot:
    first_log: int
    image: tuple | None = None  # (log_ns, raw, msgtype)
    info: object = _UNPAIRED  # the camera_info the pairer gave the image (None: none exists)
    info_seen: bool = False  # a camera_info with this stamp was read
    gt: tuple | None = None  # (raw, msgtype)


@dataclass
class _CameraState:
    cam: CameraStreams
    index: int
    slots: dict[int, _Slot] = field(default_factory=dict)
    pairer: InfoPairer = field(default_factory=InfoPairer)


@dataclass
class Cloud:
    stamp_ns: int
    log_ns: int
    raw: bytes
    msgtype: str
    _msg: object | None = None


class FrameSync:
    """Single pass over a bag yielding :class:`CameraFrame` objects in header-stamp order.

    Images are paired with camera_info by the nodes' policy (:class:`InfoPairer`: exact stamp,
    tolerant of reordering, else the newest), so replay pairs what a node would pair; an image
    with no camera_info at all is counted under ``camera_info_missing``, as the node rejects it.
    Ground-truth depth is matched by exact header stamp. A frame is handed out ``window_ns`` of
    log time after its image arrived (once paired); that lag also lets /tf samples after the
    image stamp arrive first, so lookups interpolate instead of extrapolating.
    ``drops`` counts every unused message as (camera namespace, reason). ``on_message(conn, log_ns,
    raw)`` sees every message read (to copy topics into another bag). PointCloud2 messages of
    ``cloud_topic`` (one topic or several) and of the cameras' ``gt_cloud`` topics are kept for
    :meth:`nearest_cloud`. Topics may be shared: two cameras may use one camera_info topic.

    A time segment (``start_ns``/``stop_ns``, log time, stop exclusive) yields only the frames whose
    images were logged in it, with the history a node would have had: every /tf and /tf_static
    message before ``start_ns`` fills the TF buffer first, and each camera's newest camera_info
    before it is offered to its pairing. Messages up to ``window_ns`` after ``stop_ns`` are still
    read for TF and ground-truth clouds; images, camera_info and depth after it belong to the next
    segment and are neither used nor counted as drops.
    """

    def __init__(
        self,
        reader: AnyReader,
        cameras: list[CameraStreams],
        tf: TfBuffer | None = None,
        cloud_topic: str | Iterable[str] | None = None,
        extra_topics: Iterable[str] = (),
        window_ns: int = 500_000_000,
        on_message: Callable[[object, int, bytes], None] | None = None,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ):
        self.reader = reader
        self.start_ns = start_ns
        self.stop_ns = stop_ns
        self.cameras = cameras
        self.tf = tf if tf is not None else TfBuffer()
        given = [cloud_topic] if isinstance(cloud_topic, str) else list(cloud_topic or ())
        given += [c.gt_cloud for c in cameras if c.gt_cloud]
        self.cloud_topics = list(dict.fromkeys(given))  # ordered, unique
        self.cloud_topic = self.cloud_topics[0] if self.cloud_topics else None
        self.window_ns = int(window_ns)
        self.on_message = on_message
        self.drops: collections.Counter[tuple[str, str]] = collections.Counter()
        self.drop_details: dict[str, str] = {}  # reason -> first example
        self.messages_read = 0
        self.images_read = 0
        self._states = [_CameraState(c, i) for i, c in enumerate(cameras)]
        self._role: dict[str, list[tuple[str, _CameraState | None]]] = collections.defaultdict(list)
        for st in self._states:
            self._role[st.cam.image].append(("image", st))
            self._role[st.cam.camera_info].append(("info", st))
            if st.cam.depth_gt:
                self._role[st.cam.depth_gt].append(("gt", st))
        self._role[TF_TOPIC] = [("tf", None)]
        self._role[TF_STATIC_TOPIC] = [("tf_static", None)]
        for t in self.cloud_topics:
            self._role[t] = [("cloud", None)]
        for t in extra_topics:
            if t not in self._role:
                self._role[t] = [("extra", None)]
        self._role = dict(self._role)
        self._clouds: dict[str, collections.deque[Cloud]] = {
            t: collections.deque() for t in self.cloud_topics
        }
        self._ready: list[tuple[int, int, int, CameraFrame]] = []
        self._seq = 0

    def image_count(self) -> int:
        """Image messages of the selected cameras in the bag (for progress bars)."""
        topics = {c.image for c in self.cameras}
        return sum(c.msgcount for c in self.reader.connections if c.topic in topics)

    def drops_by_reason(self) -> dict[str, int]:
        out: collections.Counter[str] = collections.Counter()
        for (_, reason), n in self.drops.items():
            out[reason] += n
        return dict(sorted(out.items()))

    def drop(self, source: str, reason: str, detail: str = "") -> None:
        """Count one unused message of ``source`` (a camera namespace or topic) under ``reason``."""
        self.drops[(source, reason)] += 1
        if detail and reason not in self.drop_details:
            self.drop_details[reason] = f"{source}: {detail}"

    # ------------------------------------------------------------------ clouds
    def nearest_cloud(self, stamp_ns: int, max_dt_ns: int, topic: str | None = None):
        """(deserialized cloud, its stamp) of ``topic`` (default: the first cloud topic) nearest in
        stamp to ``stamp_ns`` within ``max_dt_ns``; (None, None) when there is none."""
        clouds = self._clouds.get(topic if topic is not None else self.cloud_topic, ())
        best = min(clouds, key=lambda c: abs(c.stamp_ns - stamp_ns), default=None)
        if best is None or abs(best.stamp_ns - stamp_ns) > max_dt_ns:
            return None, None
        if best._msg is None:
            best._msg = self.reader.deserialize(best.raw, best.msgtype)
        return best._msg, best.stamp_ns

    # ------------------------------------------------------------------ streaming
    def __iter__(self) -> Iterator[CameraFrame]:
        conns = [c for c in self.reader.connections if c.topic in self._role]
        if self.start_ns is not None:
            self._history(conns)
        stop = None if self.stop_ns is None else self.stop_ns + self.window_ns
        for conn, log_ns, raw in self.reader.messages(connections=conns, start=self.start_ns, stop=stop):
            if self.stop_ns is not None and log_ns >= self.stop_ns:
                if self._role[conn.topic][0][0] in ("image", "info", "gt"):
                    continue  # the next segment's
            self.messages_read += 1
            if self.on_message is not None:
                self.on_message(conn, log_ns, raw)
            self._handle(conn, log_ns, raw)
            self._finalise(log_ns - self.window_ns)
            yield from self._emit()
        self._finalise(None)
        yield from self._emit()

    def _history(self, conns) -> None:
        """What came before ``start_ns``: all TF, and the newest camera_info of each camera."""
        before = [c for c in conns if self._role[c.topic][0][0] in ("tf", "tf_static", "info")]
        newest: dict[str, tuple[object, bytes]] = {}
        for conn, log_ns, raw in self.reader.messages(connections=before, stop=self.start_ns):
            if self._role[conn.topic][0][0] == "info":
                newest[conn.topic] = (conn, raw)
            else:
                self._handle(conn, log_ns, raw)
        for topic, (conn, raw) in newest.items():
            info = self.reader.deserialize(raw, conn.msgtype)
            for role, st in self._role[topic]:
                if role == "info":
                    self._paired(st, st.pairer.add_info(stamp_ns(info.header), info))

    def _handle(self, conn, log_ns: int, raw: bytes) -> None:
        roles = self._role[conn.topic]
        role, st = roles[0]
        if role in ("tf", "tf_static"):
            if conn.msgtype == TF_MESSAGE:
                msg = self.reader.deserialize(raw, conn.msgtype)
                for err in add_tf_message(self.tf, msg, role == "tf_static"):
                    self.drop(conn.topic, err.reason, err.detail)
            return
        if role == "extra":
            return
        try:
            stamp = cdr_header_stamp_ns(raw)
        except (struct.error, IndexError):
            self.drop(
                st.cam.namespace if st else conn.topic,
                UNDECODABLE,
                f"{conn.topic}: no header stamp in a {len(raw)}-byte message",
            )
            return
        if role == "cloud":
            if conn.msgtype == POINTCLOUD2:
                self._clouds[conn.topic].append(Cloud(stamp, log_ns, raw, conn.msgtype))
            return
        info = None
        for role, st in roles:
            if role == "info" and info is None:  # one message object for the cameras sharing it
                info = self.reader.deserialize(raw, conn.msgtype)
            self._camera_message(role, st, conn, log_ns, raw, stamp, info)

    def _camera_message(self, role: str, st: _CameraState, conn, log_ns: int, raw, stamp: int, info) -> None:
        slot = st.slots.get(stamp)
        if slot is None:
            slot = st.slots[stamp] = _Slot(log_ns)
        if role == "image":
            self.images_read += 1
            if slot.image is not None:
                self.drop(st.cam.namespace, DUPLICATE_IMAGE, f"second image with stamp {stamp}")
                return
            slot.image = (log_ns, raw, conn.msgtype)
            self._paired(st, st.pairer.add_image(stamp, stamp))
        elif role == "info":
            slot.info_seen = True
            self._paired(st, st.pairer.add_info(stamp, info))
        elif role == "gt":
            if slot.gt is None:
                slot.gt = (raw, conn.msgtype)

    @staticmethod
    def _paired(st: _CameraState, pairs) -> None:
        for image_stamp, info in pairs:
            st.slots[image_stamp].info = info

    def _finalise(self, before_log_ns: int | None) -> None:
        for st in self._states:
            if before_log_ns is None:  # end of the bag: images still waiting get the newest
                self._paired(st, [(t, st.pairer.latest()) for t in st.pairer.drop_waiting()])
            done = [
                s
                for s, slot in st.slots.items()
                if before_log_ns is None
                or (
                    slot.image[0] < before_log_ns and slot.info is not _UNPAIRED
                    if slot.image
                    else slot.first_log < before_log_ns
                )
            ]
            for stamp in done:
                slot = st.slots.pop(stamp)
                ns = st.cam.namespace
                if slot.image is None:
                    if slot.gt is not None:
                        self.drop(ns, GT_WITHOUT_IMAGE, f"{st.cam.depth_gt} stamp {stamp} has no image")
                    if slot.info_seen:
                        self.drop(ns, INFO_WITHOUT_IMAGE, f"{st.cam.camera_info} stamp {stamp} has no image")
                    continue
                info = slot.info
                if info is None or info is _UNPAIRED:
                    self.drop(
                        ns,
                        CAMERA_INFO_MISSING,
                        f"image stamp {stamp}: no {st.cam.camera_info} received before the next image",
                    )
                    if slot.gt is not None:
                        self.drop(
                            ns, GT_WITHOUT_IMAGE, f"{st.cam.depth_gt} stamp {stamp}: its image was dropped"
                        )
                    continue
                log_ns, raw, msgtype = slot.image
                image = self.reader.deserialize(raw, msgtype)
                gt = None if slot.gt is None else self.reader.deserialize(*slot.gt)
                exact = stamp_ns(info.header) == stamp
                frame = CameraFrame(st.cam, stamp, log_ns, image, info, exact, gt)
                heapq.heappush(self._ready, (stamp, st.index, self._seq, frame))
                self._seq += 1

    def _emit(self) -> Iterator[CameraFrame]:
        pending = [s for st in self._states for s, slot in st.slots.items() if slot.image is not None]
        horizon = min(pending) if pending else None
        while self._ready and (horizon is None or self._ready[0][0] <= horizon):
            frame = heapq.heappop(self._ready)[3]
            self._prune_clouds(frame.stamp_ns)
            yield frame

    def _prune_clouds(self, stamp_ns: int) -> None:
        # clouds far older than the frames still to come can never be the nearest one again
        for clouds in self._clouds.values():
            while clouds and clouds[0].stamp_ns < stamp_ns - 4 * self.window_ns:
                clouds.popleft()
