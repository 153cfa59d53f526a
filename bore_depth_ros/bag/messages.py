"""rosbags side of the message layer (:mod:`bore_depth_ros.core.messages`): ``BAG`` builds
rosbags messages (Jazzy typestore) with the one set of encoders, so the bag tools need no running
ROS 2. Their CDR is the wire format rclpy uses, in both directions."""
from __future__ import annotations

import numpy as np
from rosbags.typesys import Stores, get_typestore

from ..core.messages import MessageFactory

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)


def _uint8(buffer) -> np.ndarray:
    return np.ascontiguousarray(buffer).reshape(-1).view(np.uint8)


def _float64s(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def factory(typestore=TYPESTORE) -> MessageFactory:
    """A factory building messages of ``typestore`` (an extended copy knows custom types)."""
    return MessageFactory(typestore.types.__getitem__, _uint8, _float64s)


BAG = factory()
