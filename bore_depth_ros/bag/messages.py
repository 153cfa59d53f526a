"""rosbags side of the message layer (:mod:`bore_depth_ros.core.messages`): ``BAG`` builds
rosbags messages (Jazzy typestore) with the one set of encoders, so the bag tools need no running
ROS 2. Their CDR is the wire format rclpy uses, in both directions."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from ..core.messages import VIEW_CONFIDENCE, MessageFactory

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)


def _uint8(buffer) -> np.ndarray:
    return np.ascontiguousarray(buffer).reshape(-1).view(np.uint8)


def _float64s(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def factory(typestore=TYPESTORE) -> MessageFactory:
    """A factory building messages of ``typestore`` (an extended copy knows custom types)."""
    return MessageFactory(typestore.types.__getitem__, _uint8, _float64s)


BAG = factory()


def _find_msg_file(name: str = "ViewConfidence.msg") -> Path:
    here = Path(__file__).resolve().parents[2] / "bore_depth_ros_msgs" / "msg" / name  # source checkout
    candidates = [here]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "bore_depth_ros_msgs" / "msg" / name)
    candidates.append(Path(sys.prefix) / "share" / "bore_depth_ros_msgs" / "msg" / name)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{name} not found (looked in {', '.join(str(c) for c in candidates)})")


def view_confidence_typestore():
    """A copy of the Jazzy typestore with bore_depth_ros_msgs/msg/ViewConfidence registered."""
    store = get_typestore(Stores.ROS2_JAZZY)  # a new instance: the shared TYPESTORE stays as is
    store.register(get_types_from_msg(_find_msg_file().read_text(), VIEW_CONFIDENCE))
    return store
