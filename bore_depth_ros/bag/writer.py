"""Write rosbag2 files (MCAP by default, sqlite3 on request) with Jazzy types and type hashes.

MCAP files are sealed on close: ``rosbags`` leaves their CRCs 0 (not computed), so
:func:`~bore_depth_ros.bag.integrity.seal_mcap` writes the chunk, data section and summary CRCs
that readers (``open_bag``, the ros2 bag tools) check.
"""

from __future__ import annotations

from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from .integrity import seal_mcap
from .messages import TYPESTORE

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_INFINITE = QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF)


def offered_qos(latched: bool = False, reliable: bool = True) -> Qos:
    """The QoS recorded for a topic; latched topics (/tf_static) are transient local, like robots'."""
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1 if latched else 10,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        deadline=_INFINITE,
        lifespan=_INFINITE,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_INFINITE,
        avoid_ros_namespace_conventions=False,
    )


class BagWriter:
    """``with BagWriter(path) as bag: bag.write(topic, msg, t_ns)``; connections are added lazily.

    The message type is taken from the rosbags message object; /tf_static is written latched.
    ``typestore`` defaults to the Jazzy store; pass an extended copy to write custom messages.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", typestore=None):
        if storage not in STORAGES:
            raise ValueError(f"unknown storage '{storage}', use one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; choose a new output path")
        self.storage = storage
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._connections: dict[str, object] = {}
        self.typestore = typestore if typestore is not None else TYPESTORE
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()
        if self.storage == "mcap":
            for f in sorted(self.path.glob("*.mcap")):
                seal_mcap(f)

    def write(self, topic: str, msg, t_ns: int, latched: bool | None = None) -> None:
        conn = self._connections.get(topic)
        if conn is None:
            latched = topic == "/tf_static" if latched is None else latched
            conn = self._writer.add_connection(
                topic, msg.__msgtype__, typestore=self.typestore, offered_qos_profiles=[offered_qos(latched)]
            )
            self._connections[topic] = conn
        self._writer.write(conn, int(t_ns), bytes(self.typestore.serialize_cdr(msg, msg.__msgtype__)))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_raw(self, topic: str, msgtype: str, data: bytes, t_ns: int, latched: bool = False) -> None:
        """Write already serialized CDR (copying topics from another bag)."""
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(
                topic, msgtype, typestore=self.typestore, offered_qos_profiles=[offered_qos(latched)]
            )
            self._connections[topic] = conn
        self._writer.write(conn, int(t_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1
