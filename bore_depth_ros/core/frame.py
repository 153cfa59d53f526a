"""The per-frame path shared by the nodes and replay (no ROS): input checks and camera_info
pairing (:mod:`.messages`, :mod:`.pairing`), then ``infer_views`` (one batched inference and
each view's post-processing), then ``view_outputs`` (the messages a view publishes); the frame
ledger that accounts for every input, and the restart detector.

``view_outputs`` turns one view's result into its five output messages (depth, depth
camera_info, confidence, points, view summary) with any :class:`~.messages.MessageFactory`, so a
node publishes and replay writes to a bag exactly the same messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .camera import Intrinsics
from .messages import MessageFactory
from .pointcloud import depth_cloud
from .resize import resize_nearest
from .stats import ReasonCounter

BACKWARDS_JUMP_NS = 1_000_000_000  # a stamp this far behind the previous one means a restart
VIEW_TOPICS = ("depth/image", "depth/camera_info", "confidence/image", "points", "view_confidence")


def infer_views(
    engine,
    views: Sequence,
    images: Sequence[np.ndarray],
    intrinsics: Sequence[Intrinsics],
    extrinsics: Sequence | None = None,
    out_intrinsics: Sequence[Intrinsics] | None = None,
    before_post: Callable[[int, np.ndarray], None] | None = None,
):
    """One batched inference of ``images`` (the engine: any object with the
    :class:`~bore_depth_ros.engine.DepthEngine` ``infer``) and each view's post-processing
    (:class:`~.view.ViewProcessor`) at the output intrinsics (default: the inputs').
    ``before_post(i, model_depth)`` may adjust view i first (replay's ground-truth scale
    oracle). An image may be None for a model that fuses the whole rig: that view is masked (see
    ``DepthEngine.infer``) and its result is None. Returns (view results, engine output)."""
    eo = engine.infer(images, intrinsics=intrinsics, extrinsics=extrinsics)
    outs = intrinsics if out_intrinsics is None else out_intrinsics
    results = []
    for i, view in enumerate(views):
        if images[i] is None:  # a masked view (rig models): no result
            results.append(None)
            continue
        if before_post is not None:
            before_post(i, eo.depth[i])
        conf = None if eo.confidence is None else eo.confidence[i]
        results.append(view.process(eo.depth[i], conf, outs[i]))
    return results, eo


def view_outputs(
    factory: MessageFactory,
    header,
    info,
    intr_out: Intrinsics,
    rgb: np.ndarray,
    res,
    infer_ms: float,
    model: str,
    backend: str,
    decimation: int,
    with_points: bool = True,
    with_rgb: bool = True,
) -> list[tuple[str, object]]:
    """(topic suffix, message) of one view, all with ``header`` (copied from the input image):
    32FC1 depth in metres (REP 118, NaN invalid), its camera_info scaled to the output size,
    confidence, the organized cloud (every ``decimation``-th pixel, rgb from the input image)
    unless ``with_points`` is False, and the ViewConfidence summary."""
    out_w, out_h = intr_out.width, intr_out.height
    msgs = [
        ("depth/image", factory.image(header, res.depth, "32FC1")),
        ("depth/camera_info", factory.scaled_camera_info(header, info, out_w, out_h)),
        ("confidence/image", factory.image(header, res.confidence, "32FC1")),
    ]
    if with_points:
        colors = None
        if with_rgb:
            same = rgb.shape[:2] == (out_h, out_w)
            colors = (rgb if same else resize_nearest(rgb, out_h, out_w))[::decimation, ::decimation]
        msgs.append(
            ("points", factory.pointcloud(header, depth_cloud(res.depth, intr_out, decimation, colors)))
        )
    msgs.append(("view_confidence", factory.view_confidence(header, res, infer_ms, model, backend)))
    return msgs


class RestartDetector:
    """Notices stamps jumping back by more than ``BACKWARDS_JUMP_NS`` on any of several sources
    (a bag restarted, a simulator reset). Each source (an image topic, a camera_info topic, a /tf
    edge) is judged on its own, so another publisher on its own clock is no restart."""

    def __init__(self, jump_ns: int = BACKWARDS_JUMP_NS):
        self.jump_ns = int(jump_ns)
        self._last: dict[object, int] = {}

    def observe(self, source, t_ns: int) -> int | None:
        """Record ``t_ns`` for ``source``; return the previous newest stamp when this one jumps
        back (the caller resets and calls :meth:`clear`), else None."""
        last = self._last.get(source)
        if last is not None and t_ns < last - self.jump_ns:
            return last
        self._last[source] = t_ns if last is None else max(last, t_ns)
        return None

    def clear(self) -> None:
        self._last.clear()


class FrameLedger:
    """Where every input frame went: ``frames_in = out + rejected + skipped + errors + waiting``.

    ``rejected`` (bad input, by reason), ``skipped`` (by reason: overload, reset, ...) and the
    worker's outcomes are kept here; ``unaccounted`` is what is missing and reads 0 when idle.
    """

    def __init__(self):
        self.frames_in = 0
        self.rejected = ReasonCounter()
        self.skipped = ReasonCounter()

    def unaccounted(self, published: int, errors: int, waiting: int) -> int:
        done = published + self.rejected.total() + self.skipped.total() + errors + waiting
        return self.frames_in - done
