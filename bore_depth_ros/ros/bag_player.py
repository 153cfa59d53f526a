"""``bore-depth play BAG``: publish a rosbag2 file's topics over ROS 2 with /clock.

``ros2 bag`` is not available where ROS 2 comes from PyPI; this player gives nodes running with
``use_sim_time:=true`` the same experience as ``ros2 bag play --clock``: messages are published at
their recorded times (scaled by ``rate``) as the original serialized bytes (no decode), latched
topics such as /tf_static are published transient-local, and /clock advances continuously.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

from ..bag.reader import open_bag
from .conversions import message_class


def _is_latched(connection) -> bool:
    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    return connection.topic == "/tf_static" or any(
        getattr(q, "durability", None) is not None and q.durability.name == "TRANSIENT_LOCAL"
        for q in profiles
    )


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    bag_seconds: float = 0.0
    interrupted: bool = False  # stopped by SIGINT/SIGTERM before the end


class BagPlayer(Node):
    """Publishes one bag; ``play()`` blocks until the end (or ``stop()``)."""

    def __init__(
        self,
        bag: str | Path,
        rate: float = 1.0,
        clock_hz: float = 100.0,
        topics: list[str] | None = None,
        name: str = "bore_depth_player",
        linger: float = 1.0,
    ):
        super().__init__(name)

        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate
        self.linger = linger
        self.clock_period = 1.0 / clock_hz if clock_hz > 0 else None
        self.stats = PlayStats()
        self._stop = False
        self._bag = contextlib.ExitStack()
        self._reader = self._bag.enter_context(open_bag(bag, full_check=True))  # fail before publishing
        from rosgraph_msgs.msg import Clock

        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if self.clock_period else None
        self._clock_msg = Clock
        self._connections = []
        self._topic_pubs = {}
        for conn in self._reader.connections:
            if topics and conn.topic not in topics:
                continue
            if conn.topic == "/clock" and self._clock_pub is not None:
                self.stats.skipped_topics[conn.topic] = "the player publishes its own /clock"
                continue
            try:
                cls = message_class(conn.msgtype)
            except (ImportError, AttributeError, ValueError) as e:
                self.stats.skipped_topics[conn.topic] = f"type {conn.msgtype} not available: {e}"
                self.get_logger().warning(
                    f"not playing {conn.topic}: message type {conn.msgtype} is not installed ({e})"
                )
                continue
            latched = _is_latched(conn)
            qos = QoSProfile(
                history=QoSHistoryPolicy.KEEP_LAST,
                depth=1 if latched else 10,
                reliability=QoSReliabilityPolicy.RELIABLE,
                durability=(QoSDurabilityPolicy.TRANSIENT_LOCAL if latched else QoSDurabilityPolicy.VOLATILE),
            )
            if conn.topic not in self._topic_pubs:
                self._topic_pubs[conn.topic] = self.create_publisher(cls, conn.topic, qos)
            self._connections.append(conn)
        in_bag = {c.topic for c in self._reader.connections}
        for t in topics or []:
            if t not in in_bag:
                self.stats.skipped_topics[t] = "not in the bag"
        if topics and not self._connections:
            self._bag.close()
            raise ValueError(
                f"{bag}: none of the topics {list(topics)} can be played; the bag has {sorted(in_bag)}"
            )
        self.start_ns = self._reader.start_time
        self.end_ns = self._reader.end_time

    def wait_for_subscribers(self, topics: list[str], timeout: float, settle: float = 1.0) -> list[str]:
        """Wait until every topic has a matched subscriber; returns the topics still without one.

        Discovery is asymmetric: our writer may see a reader before that reader has matched our
        writer, and a best-effort reader drops data from writers it does not know yet. So after
        the match, wait ``settle`` seconds more (what ``ros2 bag play --delay`` is used for).
        """
        deadline = time.monotonic() + timeout

        def unmatched():
            return [
                t
                for t in topics
                if (
                    self._topic_pubs[t].get_subscription_count() == 0
                    if t in self._topic_pubs
                    else self.count_subscribers(t) == 0
                )
            ]

        missing = unmatched()
        while missing and time.monotonic() < deadline:
            self.publish_clock(self.start_ns)
            time.sleep(0.05)
            missing = unmatched()
        settle_end = time.monotonic() + settle
        while time.monotonic() < settle_end:
            self.publish_clock(self.start_ns)
            time.sleep(0.05)
        return missing

    def publish_clock(self, t_ns: int) -> None:
        if self._clock_pub is not None:
            msg = self._clock_msg()
            msg.clock.sec, msg.clock.nanosec = int(t_ns // 1_000_000_000), int(t_ns % 1_000_000_000)
            self._clock_pub.publish(msg)

    def stop(self) -> None:
        self._stop = True

    def play(self, progress=None) -> PlayStats:
        """Publish the bag (blocks); SIGINT/SIGTERM end it early (``stats.interrupted``)."""
        wall0 = time.monotonic()
        try:
            return self._play(wall0, progress)
        except KeyboardInterrupt:
            self._stop = True
            self.stats.interrupted = True
            return self._finish(wall0)

    def _play(self, wall0: float, progress) -> PlayStats:
        next_clock = wall0
        for conn, t_ns, raw in self._reader.messages(connections=self._connections):
            due = wall0 + (t_ns - self.start_ns) / 1e9 / self.rate
            while True:
                now = time.monotonic()
                if self._stop:
                    return self._finish(wall0)
                if self.clock_period is not None and now >= next_clock:
                    self.publish_clock(self.start_ns + int((now - wall0) * self.rate * 1e9))
                    next_clock += self.clock_period
                if now >= due:
                    break
                wake = due if self.clock_period is None else min(due, next_clock)
                time.sleep(max(0.0, min(wake - now, 0.01)))
            self._topic_pubs[conn.topic].publish(bytes(raw))
            self.stats.published[conn.topic] = self.stats.published.get(conn.topic, 0) + 1
            if progress is not None:
                progress.update(1)
        # Linger before returning: a process that exits right after its last publish can destroy
        # the writer before a best-effort reader has the final messages.
        linger_end = time.monotonic() + self.linger
        while time.monotonic() < linger_end and not self._stop:
            self.publish_clock(self.end_ns)
            time.sleep(0.05)
        return self._finish(wall0)

    def _finish(self, wall0: float) -> PlayStats:
        self.stats.wall_seconds = time.monotonic() - wall0
        self.stats.bag_seconds = (self.end_ns - self.start_ns) / 1e9
        return self.stats

    def destroy_node(self):
        self._bag.close()
        return super().destroy_node()


def run_play(
    bag: str,
    rate: float = 1.0,
    clock_hz: float = 100.0,
    topics=None,
    wait_for=None,
    wait_timeout: float = 30.0,
    loop: bool = False,
    progress: bool = True,
) -> PlayStats:
    """Command-line entry: play ``bag`` once (or in a loop) and print what was published."""
    from .env import ensure_local_ros_env

    ensure_local_ros_env()
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    # no rclpy signal handlers: they would shut the context down under a publish in progress;
    # SIGINT (KeyboardInterrupt) and SIGTERM (the CLI raises it the same way) end play() instead
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    try:
        player = BagPlayer(bag, rate=rate, clock_hz=clock_hz, topics=topics)
        if wait_for:
            missing = player.wait_for_subscribers(list(wait_for), wait_timeout)
            if missing:
                player.get_logger().warning(
                    f"no subscriber on {missing} after {wait_timeout} s; playing anyway"
                )
        while True:
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(
                    total=sum(c.msgcount for c in player._connections),
                    unit="msg",
                    desc=f"play {Path(bag).name}",
                )
            try:
                stats = player.play(bar)
            finally:
                if bar is not None:
                    bar.close()
            if not loop or stats.interrupted:
                break
        total = sum(stats.published.values())
        print(
            f"[play] published {total} messages on {len(stats.published)} topics in "
            f"{stats.wall_seconds:.2f} s (bag span {stats.bag_seconds:.2f} s, rate {rate})"
            + ("; interrupted" if stats.interrupted else "")
        )
        for topic, why in stats.skipped_topics.items():
            print(f"[play] skipped {topic}: {why}")
        player.destroy_node()
        return stats
    finally:
        rclpy.try_shutdown()
