"""The output bag of a replay: the node's per-view output topics plus copies of the inputs rviz needs."""

from __future__ import annotations

from ..bag.messages import TYPESTORE, factory, view_confidence_typestore
from ..bag.reader import TF_STATIC_TOPIC
from ..bag.writer import BagWriter


class OutputBag:
    """The node's output topics per camera plus copies of the inputs rviz needs."""

    def __init__(self, path: str, storage: str, copy_topics: set[str]):
        self.store = view_confidence_typestore()
        self.factory = factory(self.store)
        self.bag = BagWriter(path, storage, typestore=self.store)
        self.bag.__enter__()
        self.copy_topics = copy_topics
        self.path = str(path)

    def close(self) -> None:
        self.bag.__exit__(None, None, None)

    def copy(self, conn, log_ns: int, raw: bytes) -> None:
        if conn.topic in self.copy_topics and conn.msgtype in TYPESTORE.fielddefs:
            self.bag.write_raw(
                conn.topic, conn.msgtype, bytes(raw), log_ns, latched=conn.topic == TF_STATIC_TOPIC
            )
