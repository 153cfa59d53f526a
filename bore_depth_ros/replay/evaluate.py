"""``bore-depth eval``: replay a rosbag2 through the node's depth pipeline and score it against ground truth.

Offline and ROS-free: images are checked and decoded as the nodes do (the same input checks,
camera_info pairing and rejection reasons), run through one :class:`DepthEngine` and a
:class:`ViewProcessor` per camera (the code the live nodes run), then compared with ground-truth
depth images or with LiDAR points projected into each camera through the bag's TF. Metrics per
camera and overall (mean of per-camera means), metric and median-scaled; boundary quality; error
versus distance; optionally an output bag with the node's topics for rviz; a report.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..bag.reader import (
    CLOCK_TOPIC,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    FrameSync,
    discover_cameras,
    open_bag,
    topics_of_type,
)
from ..core.files import claim_outputs
from ..core.messages import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE
from ..core.sync import ApproximateSynchronizer
from ..core.tf_buffer import TfBuffer
from ..engine import DepthEngine
from .config import (
    DISTANCE_BINS,
    LIDAR_DEFAULT_TOPIC,
    EvalConfig,
)
from .evaluator import FrameEvaluator
from .ground_truth import choose_ground_truth, ring_ordered_by_tf
from .output_bag import OutputBag
from .scoring import EvalResult, overall_metrics

log = logging.getLogger(__name__)


def evaluate(
    config: EvalConfig,
    progress: bool = True,
    engine: DepthEngine | None = None,
    on_frame: Callable[[dict], None] | None = None,
) -> EvalResult:
    """Run the evaluation described by ``config``; ``engine`` reuses an already loaded model;
    ``on_frame`` receives one record per scored camera frame (:meth:`FrameEvaluator.frame_record`)."""
    from tqdm import tqdm

    from .report import write_report

    config.validate()
    report_dir = Path(config.report_dir)
    claim_outputs([report_dir], config.force)
    t_load = time.perf_counter()
    out = None
    with open_bag(config.bag, full_check=True) as reader:  # a damaged chunk fails before any work
        cams = discover_cameras(reader, config.cameras, config.gt_topics, config.camera_infos)
        if not cams:
            images = sorted(topics_of_type(reader, IMAGE) + topics_of_type(reader, COMPRESSED_IMAGE))
            infos = topics_of_type(reader, CAMERA_INFO)
            raise ValueError(
                "no camera found in the bag (an Image topic with a colour/mono encoding, or a "
                "CompressedImage topic such as <camera>/image/compressed, with a sibling camera_info); "
                "image topics: "
                + (", ".join(images) or "none")
                + "; camera_info topics: "
                + (", ".join(infos) or "none")
                + "; choose with --camera (and --camera-info)"
            )
        sources, cloud_topics = choose_ground_truth(config, cams, reader)  # before loading a model
        from ..models import get_model_info

        rig_model = get_model_info(config.model).num_cameras > 1
        if rig_model:  # ring order from TF (most forward first, counter-clockwise), as training's
            cams, _ = ring_ordered_by_tf(reader, cams, config.base_frame)
        if engine is None:
            engine = DepthEngine(config.engine_config(batch=len(cams) if rig_model else 1))
        load_s = time.perf_counter() - t_load
        copy_topics = {c.image for c in cams} | {c.camera_info for c in cams}
        copy_topics |= {TF_TOPIC, TF_STATIC_TOPIC, CLOCK_TOPIC} | set(cloud_topics)
        try:
            if config.output_bag:
                out = OutputBag(config.output_bag, config.storage, copy_topics)
            t_first = reader.start_time  # the bag's first log time: segments count from it
            sync = FrameSync(
                reader,
                cams,
                TfBuffer(cache_time_ns=60_000_000_000),
                cloud_topic=cloud_topics,
                extra_topics=[CLOCK_TOPIC],
                window_ns=int(config.sync_window * 1e9),
                on_message=out.copy if out else None,
                start_ns=t_first + round(config.start_s * 1e9) if config.start_s else None,
                stop_ns=t_first + round(config.end_s * 1e9) if config.end_s else None,
            )
            counts = {c.image: 0 for c in cams}
            for conn in reader.connections:
                if conn.topic in counts:
                    counts[conn.topic] += conn.msgcount
            expected = {c.namespace: counts[c.image] for c in cams}
            if config.max_frames:
                per_cam = -(-config.max_frames // len(cams))
                expected = {k: min(v, per_cam) for k, v in expected.items()}
            report_dir.mkdir(parents=True, exist_ok=True)  # only once the bag and model are usable
            ev = FrameEvaluator(config, engine, sync, sources, out, report_dir, expected, on_frame)
            total = sum(counts.values())
            bar = tqdm(
                total=min(total, config.max_frames) if config.max_frames else total,
                file=sys.stderr,
                disable=not progress,
                unit="frame",
                desc="eval",
            )
            t_loop = time.perf_counter()
            stopped = False
            rig = (
                ApproximateSynchronizer(len(cams), int(config.rig_slop * 1e9))
                if engine.info.num_cameras > 1
                else None
            )
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
    timing.update(
        {
            "engine_load_s": load_s,
            "loop_s": loop_s,
            "read_sync_ms": max(loop_s - stages, 0.0) * 1e3 / n,
            "frames_per_second": ev.evaluated / loop_s if loop_s > 0 else math.nan,
        }
    )
    notes = []
    if "random-init" in engine.weights_source:
        notes.append(
            "No trained weights were given or shipped: the depth is that of an untrained "
            "network, so the numbers measure the pipeline, not the model."
        )
    if stopped:
        notes.append(f"Stopped after max_frames={config.max_frames} evaluated camera frames.")
    if ev.lidar_points[0] and config.lidar_occlusion_window > 0:
        notes.append(
            f"The LiDAR occlusion filter ({config.lidar_occlusion_window} px, "
            f"{config.lidar_occlusion_tolerance:g}) removed {ev.lidar_points[1]} of "
            f"{ev.lidar_points[0]} projected points "
            f"({100 * ev.lidar_points[1] / ev.lidar_points[0]:.1f} %) as hidden from the camera."
        )
    if not config.lidar_topic:
        auto = [t for t in cloud_topics if t != LIDAR_DEFAULT_TOPIC and t not in (config.gt_topics or [])]
        if auto:  # chosen as the bag's only cloud
            notes.append(
                f"LiDAR ground truth from {auto[0]}, the bag's only PointCloud2 topic "
                f"(there is no {LIDAR_DEFAULT_TOPIC})."
            )
    if ev.compensated:
        notes.append(
            f"{ev.compensated} LiDAR frames were motion-compensated through "
            f"'{config.odom_frame}' (cloud and image stamps differ)."
        )
    result = EvalResult(
        config=dataclasses.asdict(config),
        engine={**engine.describe(), "weights_source": engine.weights_source},
        cameras=cam_results,
        overall=overall_metrics(cam_results, DISTANCE_BINS),
        frames={
            "images_read": sync.images_read,
            "evaluated": ev.evaluated,
            "dropped": sum(sync.drops.values()),
            "without_valid_gt": ev.no_valid_gt,
            "messages_read": sync.messages_read,
        },
        drops=sync.drops_by_reason(),
        drop_details=dict(sync.drop_details),
        timing=timing,
        notes=notes,
    )
    if out is not None:
        result.paths["output_bag"] = out.path
    result.paths.update(write_report(result.to_dict(), report_dir))
    return result
