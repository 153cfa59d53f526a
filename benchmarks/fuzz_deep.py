"""Deep fuzz: tens of thousands of broken messages into real node processes (not in the test run).

    . tools/env.sh && python benchmarks/fuzz_deep.py [--messages 10000] [--seed 1]
        [--nodes mono,surround] [--out fuzz_deep.json [--force]]

The in-CI fuzz test (``test/test_fuzz.py``, hypothesis, about 3000 messages) checks the same
contract on a smaller scale; this script sends at least ``--messages`` image messages to each
node, generated with a seeded numpy RNG (fast, reproducible from ``--seed``), and counts every
one. Each node runs in its own process through its console script (``bore-depth-mono-node``,
``bore-depth-surround-node``, onnxruntime, 64x96 model input, 64x48 images) with its inputs made
reliable through ``qos_overrides``, so nothing is lost in transport and counts compare exactly.

What goes in, in rounds. Each round ends with a valid frame (mono) or set (surround) whose
output is awaited, which paces the input so the reliable queues never fill; a message whose
stamp makes the node restart (stamps jumping back by more than a second) is sent between two
barriers (the node's ``frames_in`` has caught up), because a restart clears what the node holds
and the node may read camera_info ahead of images. The surround node runs with a long
``camera_timeout``: the bursty rounds must not leave cameras out as silent (the degraded rig is
not what is fuzzed here). Valid mono frames never carry a stamp that restarts the node on the
image topic but not on camera_info (``MonoStamps.loses_info``): that restart clears the frame's
own camera_info, and the frame waits (counted) for the next one.
- broken images of every kind: unknown or random encodings, zero and huge sizes, steps too
  small, truncated or oversized data (sometimes a megabyte), whitespace frame ids, random
  layouts and bytes, random big-endian flags; stamps fresh, zero, jumping back (a restart),
  slightly back, or repeating the previous one;
- valid images with broken camera_info: NaN/inf/zero/negative intrinsics (in K, P or both),
  zero sizes, sizes of another aspect ratio, ROIs outside the image, binning that leaves no
  pixel or changes the aspect ratio (mono: every pair; surround: one camera of a complete set);
- valid frames in every supported encoding with padded rows, odd frame ids, big-endian flags
  (meaningless for 8-bit samples), camera_info that describes the same pixels through binning,
  a ROI or twice the resolution, and zero, backward or repeated stamps;
- surround only: broken images on random cameras, complete sets with a repeated stamp (dropped
  by the synchroniser as late), and ``/tf_static`` messages with non-finite or zero-length
  transforms, on the rig's own edges and on others.

Checks (exit code 0 only if all pass, per node): the process stayed alive; ``/diagnostics``
counts every image (``frames_in``), every rejection under the reason the generator put in (per
camera on the rig), every late set, broken set and bad transform, with nothing unaccounted,
skipped, degraded, lost or failed; nothing was published for rejected input; every valid
frame's output equals the output of the same pixels before the fuzzing (and the baseline
inputs, sent again at the end, still give it); resident memory grew less than ``--rss-growth``
(fraction) plus 16 MiB; the log names every reason and has no traceback, and its rejection and
restart lines are throttled (at most one per reason and camera every 5 s: no line per bad
message). A compact table goes to stdout and the full result to ``--out`` (JSON); the node logs
stay in the temporary folder printed at the start.

Run time on two cores for the default 10,000 images per node: about 2 minutes for the mono
node and 3 to 9 for the surround node, whose batch-of-six inference of every valid set dominates
(the first full run, seed 1, on a shared two-core machine: 100 s and 526 s, 11 minutes in all).
"""

from __future__ import annotations

import argparse
import array
import collections
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bore_depth_ros.core import errors as E
from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.messages import intrinsics as decode_intrinsics

W, H = 64, 48  # input images (cheap inference)
MODEL_H, MODEL_W = 64, 96
MAX_PIXELS = 7680 * 4320
JUMP_NS = 1_000_000_000  # the nodes' restart threshold (core.frame.BACKWARDS_JUMP_NS)
STEP_NS = 20_000_000  # fresh stamps advance 20 ms per message
LOG_PERIOD_S = 5.0  # the nodes' per-reason log throttle (core.stats.ReasonCounter)
DIAG_PERIOD = 0.1  # the nodes' /diagnostics period: barriers wait for it
BPP = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
COLOUR = ("rgb8", "bgr8", "rgba8", "bgra8")  # decode to the same RGB pixels
KNOWN_BAD_ENCODINGS = (
    "yuv422", "bayer_rggb8", "16UC1", "32FC1", "8UC1", "8UC3", "rgb16", "mono16", "RGB8", "Rgb8",
    "jpeg", "png", "", " ", "rgb8 ", "nv12", "uyvy", "64FC1",
)  # fmt: skip
WHITESPACE_IDS = ("", " ", "\t", "  \n", "\r\n", "\u00a0", "\u3000", " \t \u2003")
ODD_FRAME_IDS = ("cam/optical", "/leading_slash", "kamera_ü_光", "x" * 500, "trailing space ", "fuzz_optical")
TEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./ \t\n:;!?äöü光Ωé\u200b🙂"
MIB = 1024 * 1024
CAMERAS = ("front", "front_left", "back_left", "back", "back_right", "front_right")


# ------------------------------------------------------------------ environment
def set_environment(domain: int | None) -> Path:
    """Local-only DDS on a domain of our own, temporary ROS logs; before rclpy is imported."""
    from bore_depth_ros.ros.env import ensure_local_ros_env

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    # 201..230: neither tools/env.sh's shells (101..200) nor test sessions (1..100)
    os.environ["ROS_DOMAIN_ID"] = str(domain if domain is not None else 201 + os.getpid() % 30)
    work = Path(tempfile.mkdtemp(prefix="bore_depth_fuzz_deep_"))
    os.environ["ROS_LOG_DIR"] = str(work / "ros_logs")
    os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"
    os.environ["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    ensure_local_ros_env()  # the project's Fast DDS profile for large messages
    return work


class NodeProc:
    """A node started through its console script; console output goes to ``log``."""

    def __init__(self, exe: str, params: dict, ns: str, work: Path, name: str):
        path = shutil.which(exe, path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        if path is None:
            raise SystemExit(f"fuzz_deep: {exe} is not installed (run tools/bootstrap.sh)")
        pfile = work / f"{name}.params.yaml"
        pfile.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
        self.log = work / f"{name}.log"
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen(
            [path, "--ros-args", "--params-file", str(pfile), "-r", f"__ns:={ns}"],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


def reliable_inputs(topics) -> dict:
    return {t: {"subscription": {"reliability": "reliable", "depth": 5000}} for t in topics}


# ------------------------------------------------------------------ stamps (what the nodes will do)
class MonoStamps:
    """The mono node's restart rule: image and camera_info stamps are judged per topic, and a
    restart on either clears both. camera_info is read first (the barriers and the gap before a
    valid image make sure), so its newest stamp never exceeds the images'."""

    def __init__(self):
        self.image: int | None = None
        self.info: int | None = None
        self.restarts = 0

    @staticmethod
    def _jumps(last: int | None, t: int) -> bool:
        return last is not None and t < last - JUMP_NS

    def jumps(self, t: int) -> bool:
        return self._jumps(self.image, t)

    def loses_info(self, t: int) -> bool:
        """A pair at ``t`` restarts on its image but not on its camera_info: the restart clears
        that camera_info, and the image waits for the next one (see the report)."""
        return self._jumps(self.image, t) and not self._jumps(self.info, t)

    def observe(self, t: int, with_info: bool) -> None:
        if with_info:
            if self._jumps(self.info, t):
                self.restarts += 1
                self.info, self.image = t, None
            else:
                self.info = t if self.info is None else max(self.info, t)
        if self._jumps(self.image, t):
            self.restarts += 1
            self.image, self.info = t, None
        else:
            self.image = t if self.image is None else max(self.image, t)


class RigStamps:
    """The surround node's restart rule (per camera, a restart clears all) and its synchroniser's
    late rule (a set not newer than the last emitted one is dropped per camera as late)."""

    def __init__(self, n: int):
        self.n = n
        self.last: list[int | None] = [None] * n
        self.emitted: int | None = None
        self.restarts = 0

    def jumps(self, cam: int, t: int) -> bool:
        last = self.last[cam]
        return last is not None and t < last - JUMP_NS

    def broken(self, cam: int, t: int) -> None:
        if self.jumps(cam, t):
            self.restarts += 1
            self.last, self.emitted = [None] * self.n, None
            self.last[cam] = t
        else:
            self.last[cam] = t if self.last[cam] is None else max(self.last[cam], t)

    def set_outcome(self, t: int) -> str:
        """restart | late | ok | mixed (some cameras would restart, others not: never sent,
        a restart in the middle of a set would drop its first images)."""
        jumps = [self.jumps(c, t) for c in range(self.n)]
        if all(jumps):
            return "restart"
        if any(jumps):
            return "mixed"
        return "late" if self.emitted is not None and t <= self.emitted else "ok"

    def commit_set(self, t: int, outcome: str) -> None:
        if outcome == "restart":
            self.restarts += 1
            self.last, self.emitted = [t] * self.n, t
            return
        self.last = [t if v is None else max(v, t) for v in self.last]
        if outcome == "ok":
            self.emitted = t


# ------------------------------------------------------------------ message generation
def encode(rgb: np.ndarray, encoding: str, pad: int) -> tuple[bytes, int]:
    """Bytes and step of an RGB picture in a supported encoding, rows padded by ``pad`` bytes."""
    if encoding == "mono8":
        px = rgb[..., :1]
    else:
        px = rgb[..., ::-1] if encoding.startswith("bgr") else rgb
        if encoding.endswith("a8"):
            px = np.concatenate([px, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], axis=-1)
    rows = np.ascontiguousarray(px).reshape(rgb.shape[0], -1)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return rows.tobytes(), rows.shape[1]


def image_reason(frame_id: str, w: int, h: int, step: int, enc: str, nbytes: int) -> str | None:
    """The rejection reason of an image, in the order the nodes check (None: usable)."""
    if not frame_id.strip():
        return E.INVALID_FRAME_ID
    if w * h > MAX_PIXELS:
        return E.IMAGE_TOO_LARGE
    if enc not in BPP:
        return E.UNKNOWN_ENCODING
    if w <= 0 or h <= 0:
        return E.EMPTY_IMAGE
    if step < w * BPP[enc]:
        return E.STEP_TOO_SMALL
    if nbytes < step * h:
        return E.TRUNCATED_DATA
    if nbytes > step * h:
        return E.SIZE_MISMATCH
    return None


def aspect_differs(w: int, h: int, w2: int, h2: int, margin: float = 0.02) -> bool:
    return abs((w / h) / (w2 / h2) - 1.0) > margin


class Generator:
    """Seeded generator of broken and valid image / camera_info fields (plain dicts)."""

    def __init__(self, seed: int, picture: np.ndarray):
        self.rng = np.random.default_rng(seed)
        self.picture = picture

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def text(self, max_len: int) -> str:
        n = int(self.rng.integers(0, max_len + 1))
        return "".join(self.pick(TEXT) for _ in range(n))

    def blob(self, n: int) -> bytes:
        return self.rng.bytes(int(n))

    def flag(self) -> int:
        return int(self.pick((0, 0, 0, 1, 255)))

    def bad_image(self, frame_id: str) -> tuple[dict, str, str]:
        """(image fields, kind, expected reason): one broken image."""
        r = self.rng
        kind = self.pick(
            ("encoding", "empty", "step", "truncated", "oversized", "huge", "frame_id", "random", "random")
        )
        enc = self.pick(tuple(BPP))
        f = dict(frame_id=frame_id, encoding=enc, is_bigendian=self.flag())
        if kind == "encoding":
            bad = self.pick(KNOWN_BAD_ENCODINGS) if r.random() < 0.6 else self.text(24)
            if bad in BPP:
                bad += "?"
            data, step = encode(self.picture, "rgb8", 0)
            f.update(encoding=bad, width=W, height=H, step=step, data=data)
        elif kind == "empty":
            w, h = self.pick(((0, 0), (0, H), (W, 0), (0, 2**32 - 1)))
            f.update(width=w, height=h, step=int(r.integers(0, 400)), data=self.blob(r.integers(0, 600)))
        elif kind in ("step", "truncated", "oversized"):
            w, h = int(r.integers(1, 97)), int(r.integers(1, 97))
            min_step = w * BPP[enc]
            if kind == "step":
                step = int(r.integers(0, min_step))
                f.update(width=w, height=h, step=step, data=self.blob(step * h))
            else:
                step = min_step + int(r.integers(0, 9))
                if kind == "truncated":
                    size = int(r.integers(0, step * h))
                elif r.random() < 0.02:
                    size = step * h + int(r.integers(MIB // 2, 2 * MIB))  # a big message now and then
                else:
                    size = step * h + int(r.integers(1, 200))
                f.update(width=w, height=h, step=step, data=self.blob(size))
        elif kind == "huge":
            w = int(r.integers(8000, 2**32))
            h = int(r.integers(MAX_PIXELS // w + 1, 2**32))
            f.update(width=w, height=h, step=int(r.integers(0, 2**32)), data=self.blob(r.integers(0, 600)))
        elif kind == "frame_id":
            data, step = encode(self.picture, enc, int(r.integers(0, 4)))
            f.update(frame_id=self.pick(WHITESPACE_IDS), width=W, height=H, step=step, data=data)
        else:  # random layout and bytes
            big = r.random() < 0.1
            w = int(r.integers(0, 2**32 if big else 129))
            h = int(r.integers(0, 2**32 if big else 129))
            if r.random() < 0.2:
                f["encoding"] = self.text(12)
            if r.random() < 0.05:
                f["frame_id"] = self.pick(WHITESPACE_IDS)
            f.update(width=w, height=h, step=int(r.integers(0, 2**32 if big else 600)))
            f["data"] = self.blob(r.integers(0, 5000))
        reason = image_reason(
            f["frame_id"], f["width"], f["height"], f["step"], f["encoding"], len(f["data"])
        )
        if reason is None:  # random bytes that happen to be a usable image: one byte too many
            f["data"] += b"\0"
            reason = E.SIZE_MISMATCH
        return f, kind, reason

    def good_intrinsics(self, variant: str, base: Intrinsics) -> dict:
        """camera_info fields (size, K/P values, binning, ROI) that describe ``base``'s pixels."""
        fx, fy, cx, cy, w, h = base.fx, base.fy, base.cx, base.cy, base.width, base.height
        f = dict(width=w, height=h, fx=fx, fy=fy, cx=cx, cy=cy, binning=(0, 0), roi=(0, 0, 0, 0))
        if variant == "binning2":  # calibrated at twice the resolution, binned 2x2
            f.update(width=2 * w, height=2 * h, fx=2 * fx, fy=2 * fy, cx=2 * cx + 0.5, cy=2 * cy + 0.5)
            f["binning"] = (2, 2)
        elif variant == "roi":  # a window of a larger calibrated image
            x0, y0 = int(self.rng.integers(1, 20)), int(self.rng.integers(1, 20))
            f.update(width=w + x0 + 3, height=h + y0 + 5, cx=cx + x0, cy=cy + y0, roi=(x0, y0, w, h))
        elif variant == "double":  # the same camera at twice the resolution (rescaled by the node)
            f.update(width=2 * w, height=2 * h, fx=2 * fx, fy=2 * fy, cx=2 * cx + 0.5, cy=2 * cy + 0.5)
        return f

    def bad_info(self, base: Intrinsics) -> tuple[dict, str, str]:
        """(camera_info fields, kind, expected reason) for images of ``base``'s size."""
        r = self.rng
        f = self.good_intrinsics("plain", base)
        kind = self.pick(
            (
                "intrinsics",
                "intrinsics",
                "size_zero",
                "size",
                "roi_outside",
                "binning_empty",
                "binning_aspect",
            )
        )
        if kind == "intrinsics":
            name = self.pick(("fx", "fy", "cx", "cy"))
            values = (math.nan, math.inf, -math.inf) + (
                (0.0, -float(f[name]), -1e-300) if name[0] == "f" else ()
            )
            where = self.pick(("both", "k_only", "p_only"))
            if where == "p_only" and name[0] == "f":
                values = (math.inf,)  # P is used when its fx and fy are > 0: only +inf passes that
            f["bad"] = (name, float(self.pick(values)), where)
            return f, kind, E.CAMERA_INFO_INVALID
        if kind == "size_zero":
            f["width"], f["height"] = self.pick(((0, base.height), (base.width, 0), (0, 0)))
            return f, kind, E.CAMERA_INFO_INVALID
        if kind == "size":
            while True:
                w, h = int(r.integers(1, 2**31)), int(r.integers(1, 2**31))
                if r.random() < 0.5:
                    w, h = int(r.integers(1, 400)), int(r.integers(1, 400))
                if aspect_differs(w, h, base.width, base.height):
                    break
            f.update(width=w, height=h)
            return f, kind, E.CAMERA_INFO_SIZE_MISMATCH
        if kind == "roi_outside":
            x0 = int(r.integers(1, 100))
            f["roi"] = self.pick(((x0, 0, base.width, base.height), (0, x0, base.width, base.height),
                                  (0, 0, 0, base.height), (5, 5, base.width * 3, 1)))  # fmt: skip
            return f, kind, E.CAMERA_INFO_INVALID
        if kind == "binning_empty":
            big = int(r.integers(base.width + 1, 2**32))
            f["binning"] = self.pick(((big, 1), (1, int(r.integers(base.height + 1, 2**32))), (big, big)))
            return f, kind, E.CAMERA_INFO_INVALID
        while True:  # binning_aspect: a binned size of another aspect ratio
            bx, by = int(r.integers(1, 9)), int(r.integers(1, 9))
            bw, bh = base.width // bx, base.height // by
            if bw and bh and aspect_differs(bw, bh, base.width, base.height):
                break
        f["binning"] = (bx, by)
        return f, kind, E.CAMERA_INFO_SIZE_MISMATCH


class Messages:
    """rclpy messages from the generator's fields, through the project's message factory."""

    def __init__(self):
        from bore_depth_ros.core.messages import CAMERA_INFO, IMAGE
        from bore_depth_ros.ros.conversions import RCLPY

        self.F, self.IMAGE, self.CAMERA_INFO = RCLPY, IMAGE, CAMERA_INFO

    def header(self, t_ns: int, frame_id: str):
        return self.F.header(t_ns, frame_id)

    def image(self, t_ns: int, f: dict):
        return self.F.new(
            self.IMAGE,
            header=self.header(t_ns, f["frame_id"]),
            height=int(f["height"]),
            width=int(f["width"]),
            encoding=f["encoding"],
            is_bigendian=int(f["is_bigendian"]),
            step=int(f["step"]),
            data=array.array("B", f["data"]),
        )

    def info(self, t_ns: int, frame_id: str, f: dict):
        fx, fy, cx, cy = f["fx"], f["fy"], f["cx"], f["cy"]
        msg = self.F.camera_info(self.header(t_ns, frame_id), Intrinsics(fx, fy, cx, cy, 1, 1))
        msg.width, msg.height = int(f["width"]), int(f["height"])
        msg.binning_x, msg.binning_y = (int(v) for v in f["binning"])
        (msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height) = (int(v) for v in f["roi"])
        if "bad" in f:
            name, value, where = f["bad"]
            ik, ip = {"fx": (0, 0), "fy": (4, 5), "cx": (2, 2), "cy": (5, 6)}[name]
            k, p = list(msg.k), list(msg.p)
            if where in ("both", "k_only"):
                k[ik] = value
            if where in ("both", "p_only"):
                p[ip] = value
            if where == "k_only":
                p = [0.0] * 12  # P unset: K is used
            msg.k, msg.p = k, p
        return msg


def exact_variants(gen: Generator, msgs: Messages, base: Intrinsics) -> list[str]:
    """The good camera_info variants that decode to exactly ``base`` (so outputs must not change)."""
    ok = []
    for v in ("plain", "binning2", "roi", "double"):
        info = msgs.info(0, "x", gen.good_intrinsics(v, base))
        if decode_intrinsics(info, base.width, base.height) == base:
            ok.append(v)
    return ok


# ------------------------------------------------------------------ shared bookkeeping
class Book:
    """What one node was sent, and what it must report."""

    def __init__(self, name: str):
        self.name = name
        self.images = 0
        self.infos = 0
        self.tf_messages = 0
        self.valid = 0
        self.kinds = collections.Counter()  # generator kind -> count
        self.reasons = collections.Counter()  # expected rejected.<reason> (summed over cameras)
        self.failures: list[str] = []
        self.rss: list[tuple[float, int]] = []
        self.mismatches = 0
        self.barriers = 0

    def fail(self, what: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(what)
        print(f"  [{self.name}] FAIL: {what}", flush=True)


def log_records(text: str) -> list[str]:
    """One entry per log record (a message may span lines: frame ids with newlines)."""
    return [line for line in text.splitlines() if re.match(r"\[(DEBUG|INFO|WARN|ERROR|FATAL)\]", line)]


def log_summary(text: str, keys: int, elapsed_s: float, restarts: int) -> tuple[dict, dict]:
    recs = log_records(text)
    cats = collections.Counter()
    for rec in recs:
        if "rejected image" in rec:
            cats["rejection"] += 1
        elif "stamps jumped back" in rec:
            cats["restart"] += 1
        elif "ignored transform" in rec:
            cats["transform"] += 1
        elif "dropped a synchronized set" in rec:
            cats["set_drop"] += 1
        elif "synchroniser dropped" in rec:
            cats["sync_drop"] += 1
        else:
            cats["other"] += 1
    per_key = 1 + int(elapsed_s // LOG_PERIOD_S) + 1  # first line, then one per period (and an edge)
    budget = keys * per_key
    checks = {
        "log_rejections_throttled": cats["rejection"] <= budget,
        # restarts: said (at least once), and throttled like the rejections
        "log_restarts_said_and_throttled": (cats["restart"] >= 1 if restarts else cats["restart"] == 0)
        and cats["restart"] <= per_key,
        "log_no_traceback": "Traceback" not in text,
    }
    out = dict(records=len(recs), lines=len(text.splitlines()), rejection_budget=budget, **cats)
    return out, checks


def rss_check(book: Book, growth: float) -> tuple[dict, bool]:
    if len(book.rss) < 2:
        return {}, False
    start, end = book.rss[0][1], book.rss[-1][1]
    peak = max(kb for _, kb in book.rss)
    info = dict(start_mib=start / 1024, end_mib=end / 1024, peak_mib=peak / 1024)
    return info, end <= start * (1 + growth) + 16 * 1024


def spin_until(ex, pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        ex.spin_once(timeout_sec=0.02)
    return pred()


def odd_stamp(gen: Generator, fresh, last: int) -> int:
    """A broken message's stamp: mostly fresh; else zero, far back (a restart), slightly back,
    or the previous message's."""
    u = gen.rng.random()
    if u < 0.02:
        return 0
    if u < 0.04:
        return max(0, last - int(gen.rng.integers(11, 3000)) * 100_000_000)
    if u < 0.14:
        return max(0, last - int(gen.rng.integers(1, 9)) * 100_000_000)
    if u < 0.3:
        return last
    return fresh()


def key_of(t_ns: int) -> tuple[int, int]:
    return divmod(int(t_ns), 1_000_000_000)


# ------------------------------------------------------------------ mono node
def run_mono(a, work: Path) -> dict:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import Image

    from bore_depth_ros.core.messages import image_array
    from bore_depth_ros.testing.probe import DepthProbe
    from bore_depth_ros.testing.rig_load import rig_picture, rss_kb

    ns = "/fuzz_deep_mono"
    reliable = QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST, depth=5000, reliability=QoSReliabilityPolicy.RELIABLE
    )
    node = NodeProc(
        "bore-depth-mono-node",
        dict(
            backend=a.backend,
            input_height=MODEL_H,
            input_width=MODEL_W,
            scale_mode="fixed",
            depth_scale=2.0,
            diagnostics_period=DIAG_PERIOD,
            camera_timeout=3600.0,  # no staleness verdicts on bursty test input
            points_decimation=2,
            max_input_pixels=MAX_PIXELS,
            qos_overrides=reliable_inputs([f"{ns}/image", f"{ns}/camera_info"]),
        ),
        ns,
        work,
        "mono",
    )
    book = Book("mono")
    picture = rig_picture(H, W, seed=11)
    gen = Generator(a.seed, picture)
    msgs = Messages()
    base = Intrinsics(56.0, 56.0, 31.5, 23.5, W, H)
    variants = exact_variants(gen, msgs, base)
    stamps = MonoStamps()
    clock = [1000 * 1_000_000_000]
    probe = DepthProbe(ns, name="fuzz_deep_mono_probe", input_qos=reliable, keep=100)
    depth_count = [0]
    probe.create_subscription(
        Image,
        f"{ns}/depth/image",
        lambda m: depth_count.__setitem__(0, depth_count[0] + 1),
        QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE),
    )
    ex = SingleThreadedExecutor()
    ex.add_node(probe)
    result: dict = dict(node="mono")
    try:
        if not spin_until(ex, lambda: "ready:" in node.text() or not node.alive(), 300) or not node.alive():
            book.fail("node did not start: " + node.text()[-2000:])
            return finish_mono(a, book, node, probe, ex, result, stamps, 0.0)
        if not spin_until(ex, probe.connected, 60):
            book.fail("probe did not connect")
            return finish_mono(a, book, node, probe, ex, result, stamps, 0.0)

        def fresh() -> int:
            clock[0] += STEP_NS
            return clock[0]

        def barrier() -> None:
            """Until the node has handled every image sent so far (its frames_in says so)."""
            book.barriers += 1
            diag_name = f"{ns}/bore_depth_mono"
            if not spin_until(
                ex, lambda: probe.latest_diagnostic_values(diag_name).get("frames_in") == str(book.images), 30
            ):
                book.fail(f"barrier: frames_in {probe.latest_diagnostic_values(diag_name).get('frames_in')}"
                          f" != {book.images} sent")  # fmt: skip

        def send_valid(enc, pad, frame_id, big, variant, t, info_frame=None) -> np.ndarray | None:
            data, step = encode(picture, enc, pad)
            img = msgs.image(
                t,
                dict(
                    frame_id=frame_id, encoding=enc, is_bigendian=big, width=W, height=H, step=step, data=data
                ),
            )
            info = msgs.info(
                t, frame_id if info_frame is None else info_frame, gen.good_intrinsics(variant, base)
            )
            probe.received.pop(key_of(t), None)
            stamps.observe(t, True)
            probe.pub_info.publish(info)
            time.sleep(0.002)  # its camera_info first: the pairing is then exact whatever the stamp
            probe.pub_image.publish(img)
            book.images += 1
            book.infos += 1
            book.valid += 1
            book.kinds[f"valid.{variant}"] += 1
            stamp = img.header.stamp
            if not spin_until(ex, lambda: probe.complete(stamp) or not node.alive(), 60):
                book.fail(f"valid frame t={t} ({enc}, pad {pad}, {variant}) got no output")
                return None
            if not node.alive():
                book.fail("node died")
                return None
            out = probe.received.pop(key_of(t))
            if any(m.header.frame_id != frame_id or m.header.stamp != stamp for m in out.values()):
                book.fail(f"valid frame t={t}: output header differs from the input's")
            return np.array(image_array(out["depth/image"]))

        baseline = {}
        for enc in ("rgb8", "mono8"):
            baseline[enc] = send_valid(enc, 0, "fuzz_optical", 0, "plain", fresh())
            if baseline[enc] is None:
                return finish_mono(a, book, node, probe, ex, result, stamps, 0.0)
        book.rss.append((0.0, rss_kb(node.proc.pid) or 0))
        t0 = time.monotonic()
        last_valid = clock[0]
        last_stamp = clock[0]
        report_every = max(a.messages // 10, 1)
        next_report = report_every
        print(f"mono: node up (pid {node.proc.pid}); fuzzing {a.messages} images", flush=True)
        while book.images < a.messages:
            if not node.alive():
                book.fail("node died")
                break
            # stamps of this round's broken camera_info: no other camera_info may replace one
            # before its image is paired (the node may read camera_info ahead of images)
            bad_info_stamps = set()
            for _ in range(int(gen.rng.integers(3, 41))):
                if gen.rng.random() < 0.7:
                    fields, kind, reason = gen.bad_image("fuzz_optical")
                    if kind != "frame_id" and fields["frame_id"].strip():
                        fields["frame_id"] = gen.pick(ODD_FRAME_IDS)
                    t = odd_stamp(gen, fresh, last_stamp)
                    # a restart clears the camera_info cache: let the node see it on its own
                    restart = stamps.jumps(t)
                    if restart:
                        barrier()
                    # with camera_info, but never when it restarts the node (its order then matters)
                    with_info = gen.rng.random() < 0.7 and t not in bad_info_stamps and not restart
                    stamps.observe(t, with_info)
                    if with_info:
                        probe.pub_info.publish(
                            msgs.info(t, "fuzz_optical", gen.good_intrinsics("plain", base))
                        )
                        book.infos += 1
                    probe.pub_image.publish(msgs.image(t, fields))
                    book.images += 1
                    if restart:
                        barrier()
                else:
                    t = fresh()  # broken camera_info pairs keep stamps in order (no fallback pairing)
                    ifields, kind, reason = gen.bad_info(base)
                    enc = gen.pick(tuple(BPP))
                    data, step = encode(picture, enc, int(gen.rng.integers(0, 4)))
                    stamps.observe(t, True)
                    bad_info_stamps.add(t)
                    probe.pub_info.publish(msgs.info(t, "fuzz_optical", ifields))
                    fields = dict(frame_id="fuzz_optical", encoding=enc, is_bigendian=gen.flag(),
                                  width=W, height=H, step=step, data=data)  # fmt: skip
                    probe.pub_image.publish(msgs.image(t, fields))
                    book.infos += 1
                    book.images += 1
                    kind = "info." + kind
                last_stamp = t
                book.kinds[kind] += 1
                book.reasons[reason] += 1
            # the round's valid frame
            enc = gen.pick(tuple(BPP))
            u = gen.rng.random()
            if u < 0.03:
                t = 0
            elif u < 0.06:
                t = max(0, last_stamp - int(gen.rng.integers(11, 5000)) * 100_000_000)
            elif u < 0.16:
                t = last_valid
            else:
                t = fresh() + int(gen.rng.integers(0, 1_000_000))
            if stamps.loses_info(t):
                t = fresh()  # a known node behaviour, not what is fuzzed: see loses_info
            if stamps.jumps(t) or t in bad_info_stamps:
                barrier()  # its camera_info must not be cleared by a restart of an earlier image
            depth = send_valid(
                enc,
                int(gen.rng.integers(0, 6)),
                gen.pick(ODD_FRAME_IDS),
                gen.flag(),
                gen.pick(variants),
                t,
                info_frame="" if gen.rng.random() < 0.1 else None,
            )
            last_valid = last_stamp = t
            if depth is None:
                break
            if not np.array_equal(depth, baseline["mono8" if enc == "mono8" else "rgb8"], equal_nan=True):
                book.mismatches += 1
                book.fail(f"valid frame t={t} ({enc}): depth differs from the pre-fuzz output")
            if book.images >= next_report:
                next_report += report_every
                el = time.monotonic() - t0
                book.rss.append((el, rss_kb(node.proc.pid) or 0))
                print(
                    f"  mono: {book.images} images ({book.valid} valid), {el:.0f} s, "
                    f"RSS {book.rss[-1][1] / 1024:.1f} MiB",
                    flush=True,
                )
        elapsed = time.monotonic() - t0
        # the baseline inputs once more, after all the fuzzing
        if node.alive() and not book.failures:
            for enc in ("rgb8", "mono8"):
                again = send_valid(enc, 0, "fuzz_optical", 0, "plain", fresh())
                if again is None or not np.array_equal(again, baseline[enc], equal_nan=True):
                    book.mismatches += 1
                    book.fail(f"post-fuzz {enc} baseline input: output differs")
        book.rss.append((time.monotonic() - t0, rss_kb(node.proc.pid) or 0))
        result["depth_published"] = depth_count
        return finish_mono(a, book, node, probe, ex, result, stamps, elapsed)
    finally:
        if node.alive():
            node.stop()
        ex.remove_node(probe)
        probe.destroy_node()


def finish_mono(a, book: Book, node: NodeProc, probe, ex, result: dict, stamps: MonoStamps, elapsed: float):
    ns_name = "/fuzz_deep_mono/bore_depth_mono"
    expected = {k: v for k, v in book.reasons.items() if v}

    def values():
        return probe.latest_diagnostic_values(ns_name)

    def rejected(v):
        return {k[len("rejected.") :]: int(x) for k, x in v.items() if k.startswith("rejected.")}

    settled = spin_until(
        ex,
        lambda: (
            rejected(values()) == expected
            and values().get("frames_in") == str(book.images)
            and values().get("frames_out") == str(book.valid)
            and values().get("in_worker") == "0"
        ),
        20 if not book.failures else 3,
    )
    v = values()
    depth_count = result.pop("depth_published", [None])[0]
    spin_until(ex, lambda: False, 0.3)
    alive = node.alive()
    log = node.text()
    code = node.stop()
    logs, log_checks = log_summary(log, len(expected), elapsed, stamps.restarts)
    rss, rss_ok = rss_check(book, a.rss_growth)
    got = rejected(v)
    checks = {
        "alive_throughout": alive and not any("died" in f for f in book.failures),
        "frames_in_counted": v.get("frames_in") == str(book.images),
        "rejections_by_reason": got == expected,
        "valid_frames_published": v.get("frames_out") == str(book.valid) and depth_count == book.valid,
        "nothing_unaccounted": v.get("unaccounted") == "0"
        and v.get("skipped_total") == "0"
        and v.get("processing_errors") == "0"
        and v.get("lost_in_transport") == "0",
        "outputs_equal_prefuzz": book.mismatches == 0 and book.valid > 0,
        "every_reason_logged": all(f"{r}:" in log for r in expected),
        "rss_bounded": rss_ok,
        **log_checks,
        "no_other_failure": not book.failures,
    }
    result.update(
        images=book.images,
        camera_infos=book.infos,
        valid_frames=book.valid,
        broken=book.images - book.valid,
        restarts_expected=stamps.restarts,
        seconds=elapsed,
        images_per_s=book.images / elapsed if elapsed else 0.0,
        messages_per_s=(book.images + book.infos) / elapsed if elapsed else 0.0,
        rejections_expected=dict(sorted(expected.items())),
        rejections_reported=dict(sorted(got.items())),
        kinds=dict(sorted(book.kinds.items())),
        diagnostics=v,
        depth_messages_received=depth_count,
        settled=settled,
        rss=rss,
        rss_samples=book.rss,
        logs=logs,
        log_file=str(node.log),
        exit_code=code,
        checks=checks,
        failures=book.failures,
    )
    return result


# ------------------------------------------------------------------ surround node
def run_surround(a, work: Path) -> dict:
    from geometry_msgs.msg import TransformStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    from bore_depth_ros.core.messages import image_array, intrinsics
    from bore_depth_ros.testing.rig_load import RigLoad, rss_kb
    from bore_depth_ros_msgs.msg import RigConfidence

    ns = "/fuzz_deep_rig"
    n = len(CAMERAS)
    reliable = QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST, depth=5000, reliability=QoSReliabilityPolicy.RELIABLE
    )
    node = NodeProc(
        "bore-depth-surround-node",
        dict(
            model="svr",
            backend=a.backend,
            cameras=list(CAMERAS),
            input_height=MODEL_H,
            input_width=MODEL_W,
            slop=0.01,
            diagnostics_period=DIAG_PERIOD,
            camera_timeout=3600.0,  # bursty test input: no camera is ever left out as silent
            max_input_pixels=MAX_PIXELS,
            qos_overrides=reliable_inputs(
                [f"{ns}/{c}/{t}" for c in CAMERAS for t in ("image", "camera_info")]
            ),
        ),
        ns,
        work,
        "surround",
    )
    book = Book("surround")
    load = RigLoad(ns, cameras=CAMERAS, height=H, width=W, name="fuzz_deep_rig_load", qos=reliable)
    pictures = [np.array(image_array(m)) for m in load.images]
    frames = [m.header.frame_id for m in load.images]
    bases = [intrinsics(m) for m in load.infos]
    gen = Generator(a.seed + 1, pictures[0])
    msgs = Messages()
    variants = [exact_variants(gen, msgs, b) for b in bases]
    stamps = RigStamps(n)
    expected = [collections.Counter() for _ in CAMERAS]
    sent = [0] * n
    late_sets = [0]
    bad_sets = collections.Counter()
    bad_tf = [0]
    rig: dict = {}
    depth: dict = {}
    reliable_out = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
    rig_count = [0]

    def on_rig(m):
        rig_count[0] += 1
        rig[(m.header.stamp.sec, m.header.stamp.nanosec)] = m

    load.create_subscription(RigConfidence, f"{ns}/rig_confidence", on_rig, reliable_out)
    for k, cam in enumerate(CAMERAS):
        load.create_subscription(
            Image,
            f"{ns}/{cam}/depth/image",
            lambda m, k=k: depth.__setitem__((k, m.header.stamp.sec, m.header.stamp.nanosec), m),
            reliable_out,
        )
    ex = SingleThreadedExecutor()
    ex.add_node(load)
    clock = [5000 * 1_000_000_000]
    result: dict = dict(node="surround")

    def fresh() -> int:
        clock[0] += STEP_NS
        return clock[0]

    def barrier() -> None:
        """Until the node has handled every image sent so far (per-camera frames_in says so)."""
        book.barriers += 1
        diag = f"{ns}/bore_depth_surround: "

        def done():
            return all(
                load.diag.get(diag + c, {}).get("frames_in") == str(sent[k]) for k, c in enumerate(CAMERAS)
            )

        if not spin_until(ex, done, 30):
            book.fail(
                f"barrier: frames_in {[load.diag.get(diag + c, {}).get('frames_in') for c in CAMERAS]}"
                f" != {sent}"
            )

    def publish_set(t, encs=None, info_fields=None, big=None) -> None:
        """Six camera_info first, then six images, one stamp."""
        for k in range(n):
            f = info_fields[k] if info_fields else gen.good_intrinsics("plain", bases[k])
            load.pubs[k][1].publish(msgs.info(t, frames[k], f))
        time.sleep(0.002)
        for k in range(n):
            enc, pad = encs[k] if encs else ("rgb8", 0)
            data, step = encode(pictures[k], enc, pad)
            fields = dict(frame_id=frames[k], encoding=enc, is_bigendian=big[k] if big else 0,
                          width=W, height=H, step=step, data=data)  # fmt: skip
            load.pubs[k][0].publish(msgs.image(t, fields))
            sent[k] += 1
        book.images += n
        book.infos += n

    def valid_set(t, outcome, encs=None, info_fields=None, big=None):
        key = key_of(t)
        rig.pop(key, None)
        for k in range(n):
            depth.pop((k, *key), None)
        stamps.commit_set(t, outcome)
        publish_set(t, encs, info_fields, big)
        book.valid += 1
        book.kinds[f"valid_set.{outcome}"] += 1
        done = spin_until(
            ex, lambda: (key in rig and all((k, *key) in depth for k in range(n))) or not node.alive(), 60
        )
        if not done or not node.alive():
            book.fail(f"valid set t={t} ({outcome}) got no output; alive={node.alive()}")
            return None
        r = rig.pop(key)
        if not r.fused or len(r.views) != n:
            book.fail(f"valid set t={t}: fused={r.fused}, {len(r.views)} views ({r.fusion_status})")
        return [np.array(image_array(depth.pop((k, *key)))) for k in range(n)]

    try:
        if not spin_until(ex, lambda: "ready:" in node.text() or not node.alive(), 300) or not node.alive():
            book.fail("node did not start: " + node.text()[-2000:])
            return finish_surround(a, book, node, load, ex, result, stamps, expected, sent, late_sets,
                                   bad_sets, bad_tf, rig_count, 0.0)  # fmt: skip
        if not spin_until(ex, load.connected, 60):
            book.fail("rig load did not connect")
            return finish_surround(a, book, node, load, ex, result, stamps, expected, sent, late_sets,
                                   bad_sets, bad_tf, rig_count, 0.0)  # fmt: skip
        base_out = None
        for _ in range(10):  # /tf_static may reach the node after the first sets: until fused
            t = fresh()
            key = key_of(t)
            stamps.commit_set(t, "ok")
            publish_set(t)
            book.valid += 1
            book.kinds["valid_set.warmup"] += 1
            if spin_until(ex, lambda key=key: key in rig and all((k, *key) in depth for k in range(n)), 60):
                if rig[key].fused:
                    base_out = [np.array(image_array(depth[(k, *key)])) for k in range(n)]
                    break
        if base_out is None:
            book.fail(f"no fused set during warm-up: rig {load.rig_values()}; log: {node.text()[-1500:]}")
            return finish_surround(a, book, node, load, ex, result, stamps, expected, sent, late_sets,
                                   bad_sets, bad_tf, rig_count, 0.0)  # fmt: skip
        rig.clear()
        depth.clear()
        book.rss.append((0.0, rss_kb(node.proc.pid) or 0))
        t0 = time.monotonic()
        last_stamp = clock[0]
        report_every = max(a.messages // 10, 1)
        next_report = report_every
        print(f"surround: node up (pid {node.proc.pid}); fuzzing {a.messages} images", flush=True)
        while book.images < a.messages:
            if not node.alive():
                book.fail("node died")
                break
            for _ in range(int(gen.rng.integers(3, 31))):
                cam = int(gen.rng.integers(n))
                fields, kind, reason = gen.bad_image(frames[cam])
                t = odd_stamp(gen, fresh, last_stamp)
                last_stamp = max(last_stamp, t)
                # a restart resets the synchroniser: let the node see it on its own
                restart = stamps.jumps(cam, t)
                if restart:
                    barrier()
                stamps.broken(cam, t)
                if gen.rng.random() < 0.5:  # sometimes with a (good) camera_info of the same stamp
                    info = msgs.info(t, frames[cam], gen.good_intrinsics("plain", bases[cam]))
                    load.pubs[cam][1].publish(info)
                    book.infos += 1
                load.pubs[cam][0].publish(msgs.image(t, fields))
                sent[cam] += 1
                book.images += 1
                if restart:
                    barrier()
                book.kinds[kind] += 1
                book.reasons[reason] += 1
                expected[cam][reason] += 1
            bad_info_set = gen.rng.random() < 0.25
            if bad_info_set:  # a complete set, one camera's camera_info broken
                t = fresh()
                cam = int(gen.rng.integers(n))
                infos = [gen.good_intrinsics("plain", b) for b in bases]
                infos[cam], kind, reason = gen.bad_info(bases[cam])
                stamps.commit_set(t, "ok")  # emitted by the synchroniser, dropped by the node
                publish_set(t, info_fields=infos)
                last_stamp = max(last_stamp, t)
                expected[cam][reason] += 1
                book.reasons[reason] += 1
                bad_sets[reason] += 1
                book.kinds["info." + kind] += 1
            if gen.rng.random() < 0.1:  # /tf_static with non-finite or zero-length transforms
                tf = TFMessage()
                for _ in range(int(gen.rng.integers(1, 4))):
                    ts = TransformStamped()
                    own = gen.rng.random() < 0.5
                    ts.header.frame_id = "base_link" if own else gen.pick(("base_link", "fuzz_parent", "map"))
                    ts.child_frame_id = gen.pick(frames) if own else f"fuzz_child_{int(gen.rng.integers(5))}"
                    tr, q = ts.transform.translation, ts.transform.rotation
                    q.w = 1.0
                    what = gen.pick(("tx", "ty", "tz", "qx", "qw", "zero_q"))
                    bad = float(gen.pick((math.nan, math.inf, -math.inf)))
                    if what == "zero_q":
                        q.w = 0.0
                    elif what[0] == "t":
                        setattr(tr, what[1], bad)
                    else:
                        setattr(q, what[1], bad)
                    tf.transforms.append(ts)
                    bad_tf[0] += 1
                load.pub_tf.publish(tf)
                book.tf_messages += 1
                book.kinds["tf_static.invalid"] += 1
            if stamps.emitted is not None and gen.rng.random() < 0.05:
                t = stamps.emitted  # a repeated set: late for the synchroniser
                if stamps.set_outcome(t) == "late":
                    if bad_info_set:
                        barrier()  # its camera_info must not replace the broken one before use
                    stamps.commit_set(t, "late")
                    publish_set(t)
                    late_sets[0] += 1
                    book.kinds["late_set"] += 1
            # the round's valid set
            u = gen.rng.random()
            t = fresh()
            if u < 0.05:
                t = 0
            elif u < 0.1 and all(v is not None for v in stamps.last):
                t = max(0, min(stamps.last) - int(gen.rng.integers(20, 5000)) * 100_000_000)
            outcome = stamps.set_outcome(t)
            if outcome != "ok" and outcome != "restart":
                t = fresh()
                outcome = stamps.set_outcome(t)
            if outcome == "restart":
                barrier()  # no earlier image may be handled after the set's first one
            encs = [(gen.pick(COLOUR), int(gen.rng.integers(0, 6))) for _ in range(n)]
            infos = [gen.good_intrinsics(gen.pick(variants[k]), bases[k]) for k in range(n)]
            out = valid_set(t, outcome, encs, infos, [gen.flag() for _ in range(n)])
            last_stamp = max(last_stamp, t)
            if out is None:
                break
            for k in range(n):
                if not np.array_equal(out[k], base_out[k], equal_nan=True):
                    book.mismatches += 1
                    book.fail(f"valid set t={t}: {CAMERAS[k]} depth differs from the pre-fuzz output")
            if book.images >= next_report:
                next_report += report_every
                el = time.monotonic() - t0
                book.rss.append((el, rss_kb(node.proc.pid) or 0))
                print(
                    f"  surround: {book.images} images ({book.valid} valid sets), {el:.0f} s, "
                    f"RSS {book.rss[-1][1] / 1024:.1f} MiB",
                    flush=True,
                )
        elapsed = time.monotonic() - t0
        if node.alive() and not book.failures:
            t = fresh()
            again = valid_set(t, stamps.set_outcome(t))
            if again is None or any(
                not np.array_equal(x, y, equal_nan=True) for x, y in zip(again, base_out)
            ):
                book.mismatches += 1
                book.fail("post-fuzz baseline set: output differs")
        book.rss.append((time.monotonic() - t0, rss_kb(node.proc.pid) or 0))
        return finish_surround(a, book, node, load, ex, result, stamps, expected, sent, late_sets,
                               bad_sets, bad_tf, rig_count, elapsed)  # fmt: skip
    finally:
        if node.alive():
            node.stop()
        ex.remove_node(load)
        load.destroy_node()


def finish_surround(
    a, book, node, load, ex, result, stamps, expected, sent, late_sets, bad_sets, bad_tf, rig_count, elapsed
):
    name = "/fuzz_deep_rig/bore_depth_surround"
    want = [dict(c) for c in expected]

    def cam_values(k):
        return load.diag.get(f"{name}: {CAMERAS[k]}", {})

    def rejected(k):
        return {
            kk[len("rejected.") :]: int(v) for kk, v in cam_values(k).items() if kk.startswith("rejected.")
        }

    def settled():
        rv = load.rig_values()
        return (
            all(rejected(k) == want[k] for k in range(len(CAMERAS)))
            and all(cam_values(k).get("frames_in") == str(sent[k]) for k in range(len(CAMERAS)))
            and rv.get("sets_out") == str(book.valid)
            and rv.get("in_worker") == "0"
        )

    ok_settled = spin_until(ex, settled, 20 if not book.failures else 3)
    spin_until(ex, lambda: False, 0.3)
    rv = load.rig_values()
    cams = {c: cam_values(k) for k, c in enumerate(CAMERAS)}
    alive = node.alive()
    log = node.text()
    code = node.stop()
    keys = sum(len(c) for c in want)
    tf_keys = 1 if bad_tf[0] else 0
    drop_keys = len(bad_sets)
    logs, log_checks = log_summary(log, keys, elapsed, stamps.restarts)
    per_key = 2 + int(elapsed // LOG_PERIOD_S)
    log_checks["log_transforms_throttled"] = logs.get("transform", 0) <= tf_keys * per_key
    log_checks["log_set_drops_throttled"] = logs.get("set_drop", 0) <= drop_keys * per_key
    rss, rss_ok = rss_check(book, a.rss_growth)
    got = [rejected(k) for k in range(len(CAMERAS))]
    dropped = {k[len("dropped.") :]: int(v) for k, v in rv.items() if k.startswith("dropped.")}
    late_ok = all(
        int(c.get("sync_dropped.late", 0)) == late_sets[0]
        and c.get("sync_dropped_total") == str(late_sets[0])
        for c in cams.values()
    )
    checks = {
        "alive_throughout": alive and not any("died" in f for f in book.failures),
        "frames_in_counted": all(cams[c].get("frames_in") == str(sent[k]) for k, c in enumerate(CAMERAS)),
        "rejections_by_camera_and_reason": got == want,
        "bad_sets_dropped_by_reason": dropped == dict(bad_sets)
        and rv.get("sets_dropped") == str(sum(bad_sets.values())),
        "late_sets_counted": late_ok,
        "bad_transforms_counted": int(rv.get("tf_failures.invalid_transform", 0)) == bad_tf[0],
        "valid_sets_published": rv.get("sets_out") == str(book.valid) and rig_count[0] == book.valid,
        "nothing_unaccounted": rv.get("unaccounted_frames") == "0"
        and rv.get("unaccounted_sets") == "0"
        and rv.get("processing_errors") == "0"
        and rv.get("skipped_total") == "0"
        and rv.get("sets_degraded", "0") == "0"
        and all(c.get("lost_in_transport") == "0" for c in cams.values()),
        "outputs_equal_prefuzz": book.mismatches == 0 and book.valid > 0,
        "every_reason_logged": all(f"{r}:" in log for r in book.reasons),
        "rss_bounded": rss_ok,
        **log_checks,
        "no_other_failure": not book.failures,
    }
    total = {}
    for c in want:
        for r, v in c.items():
            total[r] = total.get(r, 0) + v
    result.update(
        images=book.images,
        camera_infos=book.infos,
        tf_static_messages=book.tf_messages,
        invalid_transforms=bad_tf[0],
        valid_sets=book.valid,
        broken=sum(total.values()),
        late_sets=late_sets[0],
        bad_info_sets=dict(bad_sets),
        restarts_expected=stamps.restarts,
        seconds=elapsed,
        images_per_s=book.images / elapsed if elapsed else 0.0,
        messages_per_s=(book.images + book.infos + book.tf_messages) / elapsed if elapsed else 0.0,
        rejections_expected=dict(sorted(total.items())),
        rejections_by_camera_expected=dict(zip(CAMERAS, want)),
        rejections_by_camera_reported=dict(zip(CAMERAS, got)),
        kinds=dict(sorted(book.kinds.items())),
        rig_diagnostics=rv,
        camera_diagnostics=cams,
        rig_messages_received=rig_count[0],
        settled=ok_settled,
        rss=rss,
        rss_samples=book.rss,
        logs=logs,
        log_file=str(node.log),
        exit_code=code,
        checks=checks,
        failures=book.failures,
    )
    return result


# ------------------------------------------------------------------ report
def print_summary(results: dict, wall: float) -> None:
    print(f"\nfuzz_deep summary ({wall:.0f} s wall)")
    head = f"{'node':9} {'images':>7} {'infos':>7} {'valid':>6} {'broken':>7} {'msg/s':>7} " + (
        f"{'RSS start->end MiB':>19} {'log recs':>8} {'restarts':>8}"
    )
    print(head)
    for name, r in results.items():
        rss = r.get("rss") or {}
        rss_txt = f"{rss.get('start_mib', 0):.1f}->{rss.get('end_mib', 0):.1f}" if rss else "-"
        valid = r.get("valid_frames", r.get("valid_sets", 0))
        print(
            f"{name:9} {r.get('images', 0):7d} {r.get('camera_infos', 0):7d} {valid:6d} "
            f"{r.get('broken', 0):7d} {r.get('messages_per_s', 0):7.0f} {rss_txt:>19} "
            f"{r.get('logs', {}).get('records', 0):8d} {r.get('restarts_expected', 0):8d}"
        )
    reasons = sorted({k for r in results.values() for k in r.get("rejections_expected", {})})
    if reasons:
        print(f"\n{'rejected.<reason> sent / reported':36}" + "".join(f" {n:>16}" for n in results))
        for reason in reasons:
            cells = []
            for r in results.values():
                want = r.get("rejections_expected", {}).get(reason, 0)
                if "rejections_reported" in r:
                    got = r["rejections_reported"].get(reason, 0)
                else:
                    got = sum(c.get(reason, 0) for c in r.get("rejections_by_camera_reported", {}).values())
                cells.append(f"{want}/{got}")
            print(f"{reason:36}" + "".join(f" {c:>16}" for c in cells))
    for name, r in results.items():
        extra = ""
        if name == "surround":
            extra = (
                f"; late sets {r.get('late_sets')}, bad-info sets "
                f"{sum(r.get('bad_info_sets', {}).values())}, "
                f"invalid transforms {r.get('invalid_transforms')}"
            )
        logs = r.get("logs", {})
        print(
            f"\n{name}: {r.get('seconds', 0):.0f} s fuzzing, {r.get('images_per_s', 0):.0f} images/s; log "
            f"records {logs.get('records')} (rejection {logs.get('rejection', 0)} <= budget "
            f"{logs.get('rejection_budget')}, restart {logs.get('restart', 0)}){extra}"
        )
        for check, ok in r.get("checks", {}).items():
            print(f"  {'PASS' if ok else 'FAIL'} {check}")
        for f in r.get("failures", [])[:10]:
            print(f"    {f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10000, help="image messages per node (at least)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nodes", default="mono,surround", help="comma-separated: mono, surround")
    ap.add_argument("--out", default=None, help="JSON result file (not overwritten without --force)")
    ap.add_argument("--force", action="store_true", help="overwrite --out")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID (default from the pid)")
    ap.add_argument(
        "--rss-growth", type=float, default=0.10, help="allowed RSS growth (fraction, plus 16 MiB)"
    )
    a = ap.parse_args()
    nodes = [s.strip() for s in a.nodes.split(",") if s.strip()]
    if not nodes or any(s not in ("mono", "surround") for s in nodes):
        ap.error(f"--nodes takes mono and/or surround, got {a.nodes!r}")
    if a.messages < 1:
        ap.error("--messages must be >= 1")
    out = Path(a.out) if a.out else None
    if out is not None and out.exists() and not a.force:
        print(f"fuzz_deep: {out} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    work = set_environment(a.domain)
    print(
        f"fuzz_deep: seed {a.seed}, {a.messages} images per node, nodes {nodes}, ROS_DOMAIN_ID "
        f"{os.environ['ROS_DOMAIN_ID']}, logs in {work}",
        flush=True,
    )
    import rclpy

    rclpy.init()
    t0 = time.monotonic()
    results = {}
    try:
        for name in nodes:
            results[name] = (run_mono if name == "mono" else run_surround)(a, work)
    finally:
        rclpy.try_shutdown()
    wall = time.monotonic() - t0
    passed = all(all(r["checks"].values()) for r in results.values())
    print_summary(results, wall)
    print(f"\nfuzz_deep: {'PASS' if passed else 'FAIL'}")
    if out is not None:
        if out.exists() and not a.force:
            print(f"fuzz_deep: {out} appeared meanwhile; not overwritten", file=sys.stderr)
            return 2
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = dict(args=vars(a), wall_s=wall, passed=passed, log_dir=str(work), nodes=results)
        out.write_text(json.dumps(doc, indent=1, default=str))
        print(f"fuzz_deep: result in {out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
