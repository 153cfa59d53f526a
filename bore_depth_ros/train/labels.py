"""Teacher labels: a teacher's inverse depth for every camera frame of recordings, computed once by
``bore-depth label`` and read by training instead of running the teacher.

A label store is a folder::

    LABELS/labels.json               the index, written last: a folder without it is incomplete
    LABELS/<r>_<topic>.npy           float16 [n, h, w]: inverse depth of one image topic of recording r
    LABELS/<r>_<topic>.stamps.npy    int64 [n]: the image header stamps (ns) of those rows

Each array is written through a memory map while the recording streams by (memory stays bounded by
the batch), and read the same way (``np.load(mmap_mode="r")``), so a store can be larger than
memory. ``labels.json`` holds ``format``/``version``, the ``teacher`` (``name``: hub id, folder name
or registered model; ``kind``: huggingface or registered; ``hash``: sha256 over config.json and
the weight files, or over the registered model's name and weights file; ``output``: relative
inverse depth, or 1/m for metric models; its preprocessing), ``dtype``, ``input_size`` (the
teacher's input and the labels' size, [h, w], when every array has the same), ``recordings``
(path as given, content ``fingerprint``, views, dropped messages) and ``arrays`` (recording,
topic, files, views, ``image_size``, ``input_size``).

Keys: (recording, image topic, header stamp), the recording identified by content: sha256 of the
first message of every image topic of the bag (topic names and bytes), so a moved or copied bag
keeps its labels, and two recordings that share topics and stamps (the project's sim recordings
all start at the same time) are not confused. A label covers the whole image; training crops and
resizes it to the view it trains on (``view_window``: the crop window of a zoom augmentation, the
flip) and turns it into depth, 1 / max(inverse depth, 1e-3 x the label's largest value).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.camera import Intrinsics

FORMAT = "bore_depth_labels"
VERSION = 1
INDEX = "labels.json"
FP16_MAX = 65504.0
DEPTH_RANGE = 1e3  # labels turned into depth span at most this ratio (far and sky pixels)


# ---------------------------------------------------------------------------------- keys
def recording_fingerprint(reader) -> str:
    """sha256 of the first message of every image topic of an open bag (topic names and bytes)."""
    from ..core.messages import COMPRESSED_IMAGE, IMAGE

    topics = sorted({c.topic for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED_IMAGE)})
    h = hashlib.sha256()
    for topic in topics:
        conns = [c for c in reader.connections if c.topic == topic]
        for _, _, raw in reader.messages(connections=conns):
            h.update(topic.encode() + b"\0" + bytes(raw))
            break
    return h.hexdigest()


_FINGERPRINTS: dict[tuple, str] = {}


def bag_fingerprint(bag: str | Path) -> str:
    """:func:`recording_fingerprint` of a bag path (cached per path and modification time)."""
    from ..bag.reader import bag_files, open_bag

    p = Path(bag)
    files = bag_files(p) if p.exists() else []
    key = (str(p.resolve()), tuple((str(f), f.stat().st_mtime_ns) for f in files))
    if key not in _FINGERPRINTS:
        with open_bag(p) as reader:
            _FINGERPRINTS[key] = recording_fingerprint(reader)
    return _FINGERPRINTS[key]


@dataclass(frozen=True)
class LabelView:
    """One trained view: its recording, image topic and stamp, and the part of the image it shows
    (normalised window x0, y0, x1, y1; mirrored when ``flipped``)."""

    source: str
    topic: str
    stamp: int
    window: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    flipped: bool = False


def view_window(intr_in: Intrinsics, intr_out: Intrinsics, flipped: bool = False):
    """The normalised crop window (x0, y0, x1, y1) of the image of ``intr_in`` that a view with
    ``intr_out`` shows (``dataset.prepare_view``: an integer crop resized, then maybe mirrored)."""
    k = intr_out
    cx = (k.width - 1 - k.cx) if flipped else k.cx
    cw = k.width * intr_in.fx / k.fx
    ch = k.height * intr_in.fy / k.fy
    x0 = intr_in.cx - ((cx + 0.5) * cw / k.width - 0.5)
    y0 = intr_in.cy - ((k.cy + 0.5) * ch / k.height - 0.5)
    x0, y0, cw, ch = round(x0), round(y0), round(cw), round(ch)
    W, H = intr_in.width, intr_in.height
    return (x0 / W, y0 / H, (x0 + cw) / W, (y0 + ch) / H)


# ---------------------------------------------------------------------------------- writing
def _slug(topic: str) -> str:
    s = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in topic.strip("/"))
    return s or "topic"


class _TopicWriter:
    """Rows of one topic of one recording, written through a memory map sized by the bag's count."""

    def __init__(self, folder: Path, name: str, capacity: int, hw, image_hw):
        self.folder, self.name, self.hw, self.image_hw = folder, name, tuple(hw), list(image_hw)
        self.path = folder / f"{name}.npy"
        self.arr = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float16, shape=(capacity, *hw))
        self.stamps: list[int] = []

    def append(self, stamp: int, inv: np.ndarray) -> None:
        self.arr[len(self.stamps)] = inv
        self.stamps.append(int(stamp))

    def close(self) -> dict:
        n = len(self.stamps)
        self.arr.flush()
        if n < self.arr.shape[0]:  # frames the bag had but could not be used: copy to the exact size
            tmp = self.folder / f"{self.name}.tmp.npy"
            exact = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, *self.hw))
            for i in range(0, n, 256):
                exact[i : i + 256] = self.arr[i : i + 256]
            exact.flush()
            del exact
            self.arr = None
            os.replace(tmp, self.path)
        self.arr = None
        np.save(self.folder / f"{self.name}.stamps.npy", np.asarray(self.stamps, np.int64))
        return {"file": f"{self.name}.npy", "stamps": f"{self.name}.stamps.npy", "views": n}


class _BagLabeller:
    """One recording's frames batched by input size through the teacher into topic writers."""

    def __init__(self, teacher, out: Path, prefix: str, bag, counts: dict[str, int], batch: int):
        self.teacher, self.out, self.prefix, self.bag = teacher, out, prefix, bag
        self.counts, self.batch = counts, batch
        self.writers: dict[str, _TopicWriter] = {}
        self.pending: dict[tuple, list] = {}
        self.views = 0
        self.teacher_s = 0.0

    def add(self, topic: str, stamp: int, rgb: np.ndarray, fx: float, hw) -> None:
        items = self.pending.setdefault(hw, [])
        items.append((topic, stamp, self.teacher.resize(rgb, hw), fx, list(rgb.shape[:2])))
        if len(items) >= self.batch:
            self.run(hw)

    def run(self, hw) -> None:
        import torch

        items = self.pending.pop(hw)
        x = torch.from_numpy(np.stack([it[2] for it in items])).permute(0, 3, 1, 2)
        t0 = time.perf_counter()
        inv = self.teacher.inverse_depth(x, np.asarray([it[3] for it in items])).numpy()
        self.teacher_s += time.perf_counter() - t0
        for (topic, stamp, _, _, image_hw), row in zip(items, inv):
            big = float(np.abs(row).max()) if row.size else 0.0
            if not np.isfinite(big) or big > FP16_MAX:
                raise ValueError(
                    f"teacher {self.teacher.name}: the inverse depth of {topic} stamp {stamp} in {self.bag} "
                    f"is {'not finite' if not np.isfinite(big) else f'up to {big:.3g}'}, outside float16"
                )
            w = self.writers.get(topic)
            if w is None:
                name = f"{self.prefix}_{_slug(topic)}"
                w = self.writers[topic] = _TopicWriter(self.out, name, self.counts[topic], hw, image_hw)
            w.append(stamp, row)
            self.views += 1

    def finish(self, recording: int) -> list[dict]:
        for hw in list(self.pending):
            self.run(hw)
        return [
            {
                "recording": recording,
                "topic": topic,
                **w.close(),
                "image_size": w.image_hw,
                "input_size": list(w.hw),
            }
            for topic, w in self.writers.items()
        ]


def label_one_bag(ri: int, bag, teacher, out: str | Path, batch: int = 6) -> dict:
    """Label recording number ``ri`` (``bag``) into the store folder ``out``: its arrays are named
    after ``ri``, so bags can be labelled in any order or place. Returns its index entries:
    ``recording``, ``arrays``, ``teacher_s`` and a ``line`` to show."""
    from ..bag.reader import FrameSync, discover_cameras, open_bag
    from ..core.errors import InputRejected
    from ..core.messages import intrinsics, validate_image

    out = Path(out)
    t_bag = time.perf_counter()
    with open_bag(bag) as reader:
        fp = recording_fingerprint(reader)
        cams = discover_cameras(reader)
        if not cams:
            raise ValueError(f"{bag}: no camera (Image or CompressedImage + its camera_info) found")
        counts = {c.image: sum(k.msgcount for k in reader.connections if k.topic == c.image) for c in cams}
        labeller = _BagLabeller(teacher, out, f"{ri:03d}", bag, counts, batch)
        sync = FrameSync(reader, cams)
        for fr in sync:
            try:
                rgb = validate_image(fr.image)
                hw = tuple(int(v) for v in teacher.input_size(rgb.shape[:2]))
                k = intrinsics(fr.camera_info, rgb.shape[1], rgb.shape[0]).scaled_to(hw[1], hw[0])
            except InputRejected as e:
                sync.drop(fr.camera.namespace, e.reason, e.detail)
                continue
            labeller.add(fr.camera.image, fr.stamp_ns, rgb, k.fx, hw)
        arrays = labeller.finish(ri)
        drops = sync.drops_by_reason()
    n = labeller.views
    dt = time.perf_counter() - t_bag
    return {
        "recording": {"bag": str(bag), "fingerprint": fp, "views": n, "dropped": drops},
        "arrays": arrays,
        "teacher_s": labeller.teacher_s,
        "line": f"{bag}: {n} views of {len(labeller.writers)} camera(s) in {dt:.1f} s "
        f"({n / max(dt, 1e-9):.2f} views/s)" + (f"; dropped {drops}" if drops else ""),
    }


def label_bags(
    bags, teacher, out: str | Path, force: bool = False, batch: int = 6, say=None, runner=None
) -> dict:
    """Run ``teacher`` over every camera frame of ``bags`` and write the label store ``out``.

    ``teacher``: a labelling teacher (``recipes.teacher.open_labelling_teacher``): ``name``,
    ``kind``, ``hash``, ``output``, ``input_size(image_hw)``, ``resize(rgb, hw)``,
    ``inverse_depth(rgb01 [B,3,h,w], fx)``. Cameras and frames are those training sees (camera
    discovery and camera_info pairing of ``bag.reader``; the nodes' input checks). An existing
    ``out`` is refused unless ``force``; a failed run leaves nothing behind. ``runner(jobs, out,
    batch)`` labels ``jobs`` ((number, bag) pairs) elsewhere (:func:`ray_label_runner`) and
    yields :func:`label_one_bag`'s results in order; by default they run here with ``teacher``.
    Returns the index."""
    from ..core.files import claim_outputs

    say = say or (lambda *_: None)
    out = Path(out)
    claim_outputs([out], force)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    teacher_s = 0.0
    recordings, arrays, seen = [], [], {}
    jobs = list(enumerate(bags))
    results = None
    try:
        if runner is None:
            results = (label_bag_or_failure(ri, bag, teacher, out, batch) for ri, bag in jobs)
        else:
            results = runner(jobs, out, batch)
        failed = []
        for (_, bag), r in zip(jobs, results, strict=True):
            if "failed" in r:
                failed.append(r["failed"])
                say(f"failed: {bag}: {r['failed']['reason']}")
                continue
            fp = r["recording"]["fingerprint"]
            if fp in seen:
                raise ValueError(f"{bag} holds the same recording as {seen[fp]} (same first images)")
            seen[fp] = bag
            # arrays point at their recording's place in the index (failed bags are not there)
            arrays += [{**a, "recording": len(recordings)} for a in r["arrays"]]
            teacher_s += r["teacher_s"]
            recordings.append(r["recording"])
            say(r["line"])
        if not recordings:
            raise ValueError(
                "no bag could be labelled: " + "; ".join(f"{f['bag']}: {f['reason']}" for f in failed)
            )
        sizes = {tuple(a["input_size"]) for a in arrays}
        index = {
            "format": FORMAT,
            "version": VERSION,
            "teacher": {
                "name": teacher.name,
                "kind": teacher.kind,
                "hash": teacher.hash,
                "output": teacher.output,
                **({"spec": teacher.spec} if getattr(teacher, "spec", None) else {}),
                **({"preprocessing": teacher.prep.describe()} if getattr(teacher, "prep", None) else {}),
            },
            "dtype": "float16",
            "input_size": list(next(iter(sizes))) if len(sizes) == 1 else None,
            "recordings": recordings,
            "arrays": arrays,
            "views": sum(r["views"] for r in recordings),
            "failed": failed,  # bags left out, with the reason
            "seconds": round(time.perf_counter() - t_start, 3),
            "teacher_seconds": round(teacher_s, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = out / (INDEX + ".tmp")
        tmp.write_text(json.dumps(index, indent=1) + "\n")
        os.replace(tmp, out / INDEX)
    except BaseException:
        if results is not None:
            results.close()  # a runner's workers stop (Ray actors killed) before the folder goes
        shutil.rmtree(out, ignore_errors=True)
        raise
    return index


class _LabelWorker:
    """A Ray actor holding one labelling teacher (opened once) for :func:`label_one_bag`."""

    def __init__(self, open_teacher, teacher_args: tuple, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        self.teacher = open_teacher(*teacher_args)

    def run(self, ri: int, bag: str, out: str, batch: int) -> dict:
        return label_bag_or_failure(ri, bag, self.teacher, out, batch)


def _failed_bag(bag, exc: BaseException) -> dict:
    from ..replay.fleet import short_reason

    return {"failed": {"bag": str(bag), "reason": short_reason(exc)}}


def label_bag_or_failure(ri: int, bag, teacher, out: str | Path, batch: int = 6) -> dict:
    """:func:`label_one_bag`, or ``{"failed": {bag, reason}}`` when the bag cannot be labelled
    (corrupt file, no camera): its partial arrays are removed and the other bags go on."""
    try:
        return label_one_bag(ri, bag, teacher, out, batch)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 (one bad bag is reported, the others go on)
        for f in Path(out).glob(f"{ri:03d}_*"):
            f.unlink(missing_ok=True)
        return _failed_bag(bag, exc)


def ray_label_runner(open_teacher, teacher_args: tuple, pool):
    """A ``runner`` for :func:`label_bags`: one Ray task per bag on the actors of ``pool``
    (:class:`~bore_depth_ros.replay.fleet.RayPool`), which open the teacher
    (``open_teacher(*teacher_args)``, e.g. ``recipes.teacher.open_labelling_teacher``) once
    each; results in bag order. ``out`` must be on a file system every node sees."""

    def run(jobs, out: Path, batch: int):
        import contextlib

        import ray

        # idle actors take the next bag; results are handed on in bag order
        done, next_ri = {}, 0
        order = [ri for ri, _ in jobs]
        results = pool.run(
            _LabelWorker,
            (open_teacher, teacher_args, pool.threads),
            list(jobs),
            lambda a, job: a.run.remote(job[0], str(job[1]), str(out), batch),
        )
        with contextlib.closing(results):
            for (ri, bag), r in results:
                done[ri] = _failed_bag(bag, r) if isinstance(r, ray.exceptions.RayError) else r
                while next_ri < len(order) and order[next_ri] in done:
                    yield done.pop(order[next_ri])
                    next_ri += 1

    return run


# ---------------------------------------------------------------------------------- reading
class LabelStore:
    """One label store (read only): its index, and memory-mapped rows by (fingerprint, topic, stamp)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        idx = self.path / INDEX
        if not self.path.exists():
            raise FileNotFoundError(f"label store not found: {self.path}")
        if not idx.is_file():
            raise ValueError(
                f"{self.path} is not a complete label store (no {INDEX}): an interrupted bore-depth label "
                "run? label again with --force"
            )
        try:
            self.index = json.loads(idx.read_text())
        except ValueError as e:
            raise ValueError(f"{idx}: invalid JSON ({e})") from None
        if self.index.get("format") != FORMAT or self.index.get("version") != VERSION:
            raise ValueError(
                f"{idx}: not a {FORMAT} version {VERSION} index (format {self.index.get('format')!r}, "
                f"version {self.index.get('version')!r})"
            )
        self.teacher: dict = self.index["teacher"]
        self._arrays: dict[tuple[str, str], dict] = {}
        for a in self.index["arrays"]:
            fp = self.index["recordings"][a["recording"]]["fingerprint"]
            self._arrays[(fp, a["topic"])] = dict(a)

    @property
    def fingerprints(self) -> dict[str, str]:
        """fingerprint -> the bag as labelled."""
        return {r["fingerprint"]: r["bag"] for r in self.index["recordings"]}

    def input_sizes(self) -> set[tuple[int, int]]:
        return {tuple(a["input_size"]) for a in self.index["arrays"]}

    def _open(self, a: dict) -> dict:
        if "rows" not in a:
            arr = np.load(self.path / a["file"], mmap_mode="r")
            stamps = np.load(self.path / a["stamps"])
            want = (a["views"], *a["input_size"])
            if arr.shape != want or arr.dtype != np.float16 or len(stamps) != len(arr):
                raise ValueError(
                    f"{self.path / a['file']}: {arr.dtype} {list(arr.shape)} with {len(stamps)} stamps, "
                    f"the index says float16 {list(want)}: the store is damaged; label again"
                )
            a["array"], a["rows"] = arr, {int(s): i for i, s in enumerate(stamps)}
        return a

    def get(self, fingerprint: str, topic: str, stamp: int) -> np.ndarray | None:
        """The float16 [h, w] label of the key, or None."""
        a = self._arrays.get((fingerprint, topic))
        if a is None:
            return None
        a = self._open(a)
        row = a["rows"].get(int(stamp))
        return None if row is None else a["array"][row]


class Labels:
    """The label stores of a training config (``labels: [...]``), all from one teacher."""

    def __init__(self, paths):
        self.paths = [str(p) for p in paths]
        self.stores = [LabelStore(p) for p in self.paths]
        first = self.stores[0]
        for s in self.stores[1:]:
            if s.teacher.get("hash") != first.teacher.get("hash"):
                raise ValueError(
                    f"label stores from two teachers: {first.path} ({describe_teacher(first.teacher)}) and "
                    f"{s.path} ({describe_teacher(s.teacher)})"
                )
        self.teacher = first.teacher
        self._fp: dict[str, str] = {}  # recording (as given to training) -> fingerprint

    def input_sizes(self) -> set[tuple[int, int]]:
        return set().union(*(s.input_sizes() for s in self.stores))

    def check_teacher(self, name: str, kind: str, teacher_hash: str | None) -> None:
        """ValueError unless the labels come from this teacher (by hash where known, else name)."""
        same = teacher_hash == self.teacher.get("hash") if teacher_hash else name == self.teacher.get("name")
        if not same:
            wanted = describe_teacher({"name": name, "kind": kind, "hash": teacher_hash})
            raise ValueError(
                f"labels {', '.join(self.paths)} come from teacher {describe_teacher(self.teacher)}, but the "
                f"config asks for {wanted}: label with that teacher or set teacher to the labels' one"
            )

    def check_size(self, hw) -> None:
        """ValueError unless every label was made at teacher input size ``hw``."""
        sizes = self.input_sizes()
        if sizes != {tuple(hw)}:
            made = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
            raise ValueError(
                f"labels {', '.join(self.paths)} were made at teacher input size {made}, but the config asks "
                f"for {hw[0]}x{hw[1]}: label again with --label-height {hw[0]} --label-width {hw[1]}"
            )

    def fingerprint(self, source: str) -> str:
        if source not in self._fp:
            self._fp[source] = bag_fingerprint(source)
        return self._fp[source]

    def _find(self, view: LabelView):
        fp = self.fingerprint(view.source)
        for s in self.stores:
            lab = s.get(fp, view.topic, view.stamp)
            if lab is not None:
                return lab
        return None

    def check_complete(self, samples) -> None:
        """ValueError naming the first (topic, stamp) of ``samples`` (RigSamples) without a label."""
        missing, first, total = 0, None, 0
        for s in samples:
            for topic, stamp in zip(s.topics, s.stamps):
                total += 1
                if self._find(LabelView(s.source, topic, stamp)) is None:
                    missing += 1
                    first = first or (s.source, topic, stamp)
        if missing:
            source, topic, stamp = first
            labelled = any(self.fingerprint(source) in st.fingerprints for st in self.stores)
            why = (
                f"no label for {topic} stamp {stamp} of {source}"
                if labelled
                else f"no labels for recording {source} (labelled: "
                + ", ".join(b for st in self.stores for b in st.fingerprints.values())
                + ")"
            )
            raise ValueError(
                f"labels {', '.join(self.paths)}: {why} ({missing} of {total} training views unlabelled); "
                "label the recordings with bore-depth label"
            )

    def inverse_depth(self, views, out_hw):
        """[B, 1, h, w] float32 inverse depth of ``views`` (LabelView), cropped and resized."""
        import torch

        out = []
        for v in views:
            lab = self._find(v)
            if lab is None:
                raise ValueError(
                    f"labels {', '.join(self.paths)}: no label for {v.topic} stamp {v.stamp} of {v.source}"
                )
            out.append(crop_resize(lab, v.window, v.flipped, out_hw))
        return torch.stack(out)

    def depth(self, views, out_hw):
        """[B, 1, h, w] depth of ``views``: 1 / inverse depth, far pixels limited to DEPTH_RANGE
        times the nearest (per view)."""
        return inverse_to_depth(self.inverse_depth(views, out_hw))


def crop_resize(label: np.ndarray, window, flipped: bool, out_hw):
    """[1, h, w] float32: the normalised ``window`` (x0, y0, x1, y1) of a whole-image ``label`` [H, W]
    resampled bilinearly to ``out_hw`` (pixel centres at +0.5, as the views are), mirrored if
    ``flipped``."""
    import torch
    from torch.nn import functional as F

    h, w = int(out_hw[0]), int(out_hw[1])
    x0, y0, x1, y1 = window
    xs = x0 + (torch.arange(w, dtype=torch.float32) + 0.5) / w * (x1 - x0)
    ys = y0 + (torch.arange(h, dtype=torch.float32) + 0.5) / h * (y1 - y0)
    if flipped:
        xs = xs.flip(0)
    gy, gx = torch.meshgrid(ys * 2 - 1, xs * 2 - 1, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None]
    src = torch.from_numpy(np.asarray(label, dtype=np.float32))[None, None]
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def inverse_to_depth(inv):
    """Depth [B, 1, h, w] of a teacher's inverse depth: 1 / max(inv, its per-image maximum / DEPTH_RANGE)."""
    import torch

    top = inv.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None, None]
    return 1.0 / torch.maximum(inv, top / DEPTH_RANGE)


def describe_teacher(t: dict) -> str:
    """``name (kind, sha256:abcd1234…)`` for messages."""
    h = t.get("hash") or ""
    short = h.split(":")[-1][:12]
    return f"{t.get('name')} ({t.get('kind')}" + (f", {h.split(':')[0]}:{short}" if short else "") + ")"
