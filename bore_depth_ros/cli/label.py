"""``bore-depth label BAG... --teacher MODEL --out LABELS``: run a teacher over every camera frame of
rosbag2 recordings and store its inverse depth (float16) keyed by recording, image topic and stamp,
so that training (``labels: [LABELS]``) reads it instead of running the teacher.

MODEL is a registered model (``bore_depth``, ``svr``; ``--teacher-weights`` or its embedded
weights) or a Hugging Face ``DepthAnythingForDepthEstimation`` model: a local folder, or a hub id
found in the local Hugging Face cache (nothing is downloaded: ``HF_HUB_OFFLINE`` is set). The store
format is in ``bore_depth_ros/train/labels.py`` and docs/training.md. An existing LABELS is
replaced only with ``--force``; a failed run leaves none behind.
"""

from __future__ import annotations

import argparse
import os

from .argtypes import non_negative_int, positive_int
from .errors import UsageError, command

HELP = "store a teacher's depth for every camera frame of recordings (training reads it)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "bags",
        nargs="+",
        metavar="BAG",
        help="rosbag2 recordings (folders or .mcap/.db3), folders of bags, or text files listing them",
    )
    p.add_argument(
        "--teacher",
        required=True,
        metavar="MODEL",
        help="registered model (bore_depth, svr), Hugging Face model folder, or hub id in the local cache",
    )
    p.add_argument(
        "--teacher-weights", default="", help="weights of a registered teacher (default: embedded)"
    )
    p.add_argument("--out", required=True, metavar="LABELS", help="label store folder to create")
    p.add_argument(
        "--label-height",
        type=positive_int,
        default=None,
        help="teacher input and label height (default: registered: the weights' training size; "
        "Hugging Face: the processor's size rule per image)",
    )
    p.add_argument("--label-width", type=positive_int, default=None, help="teacher input and label width")
    p.add_argument("--batch", type=positive_int, default=6, help="views per teacher call (default 6)")
    p.add_argument("--device", default="cpu", help="torch device of a Hugging Face teacher (default cpu)")
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--force", action="store_true", help="replace an existing LABELS")
    p.add_argument("--quiet", action="store_true", help="no per-recording lines")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="one task per bag on Ray (no ADDRESS: a local Ray on this machine; else join it); "
        "LABELS must be on a file system every node sees",
    )
    p.add_argument("--ray-num-cpus", type=float, default=1.0, help="CPUs per Ray teacher actor (default 1)")
    p.add_argument("--ray-num-gpus", type=float, default=0.0, help="GPUs per Ray teacher actor (default 0)")
    p.add_argument(
        "--ray-workers", type=non_negative_int, default=0, help="Ray actors (0: as the CPUs allow)"
    )


@command("label")
def run(args: argparse.Namespace) -> int:
    if (args.label_height is None) != (args.label_width is None):
        raise UsageError("argument --label-height: give --label-height and --label-width together")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: never download
    from ..core.files import claim_outputs

    if not args.force:
        claim_outputs([args.out])  # refused before the teacher is loaded (nothing is touched)
    from ..replay.fleet import expand_bags

    # folders of bags and bag lists; a missing bag is named before the teacher loads
    args.bags = expand_bags(args.bags, keep_unknown_folders=True)
    import torch

    from ..train.labels import describe_teacher, label_bags
    from ..train.recipes.teacher import open_labelling_teacher

    if args.threads:
        torch.set_num_threads(args.threads)
    size = (args.label_height, args.label_width) if args.label_height else None
    teacher = open_labelling_teacher(args.teacher, args.teacher_weights, size, args.device)
    say = (lambda *_: None) if args.quiet else (lambda line: print(f"bore-depth label: {line}", flush=True))
    runner = None
    if args.ray:
        from ..replay.fleet import RayPool
        from ..train.labels import ray_label_runner

        teacher_args = (args.teacher, args.teacher_weights, size, args.device)
        pool = RayPool(args.ray, args.ray_num_cpus, args.ray_num_gpus, args.ray_workers)
        runner = ray_label_runner(open_labelling_teacher, teacher_args, pool)
    index = label_bags(
        args.bags, teacher, args.out, force=args.force, batch=args.batch, say=say, runner=runner
    )
    views, secs, tsecs = index["views"], index["seconds"], index["teacher_seconds"]
    sizes = sorted({tuple(a["input_size"]) for a in index["arrays"]})
    print(
        f"{args.out}: {views} views of {len(index['recordings'])} recording(s), teacher "
        f"{describe_teacher(index['teacher'])}, {index['teacher']['output']} at "
        f"{', '.join(f'{h}x{w}' for h, w in sizes)} (float16); {views / max(secs, 1e-9):.2f} views/s "
        f"({views / max(tsecs, 1e-9):.2f} views/s in the teacher)"
    )
    for f in index["failed"]:
        print(f"failed: {f['bag']}: {f['reason']} (left out of the store)")
    return 1 if index["failed"] else 0
