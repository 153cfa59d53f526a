"""rclpy side of the message layer (:mod:`bore_depth_ros.core.messages`): ``RCLPY`` builds rclpy
messages with the one set of encoders; CDR helpers for bytes read from bags."""

from __future__ import annotations

import importlib
from functools import cache

from ..core.messages import MessageFactory, byte_array


@cache
def message_class(msgtype: str):
    """The rclpy class of ``pkg/msg/Type`` (for example ``sensor_msgs/msg/Image``)."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def from_cdr(data, msgtype: str):
    """An rclpy message from CDR bytes (e.g. a rosbags-serialized message)."""
    from rclpy.serialization import deserialize_message

    return deserialize_message(bytes(data), message_class(msgtype))


def _float64s(values) -> list[float]:
    return [float(v) for v in values]


RCLPY = MessageFactory(message_class, byte_array, _float64s)
