"""Lifecycle (managed) base of the depth nodes: states, autostart, lazy mode, worker, diagnostics.

States follow the ROS 2 managed-node design (``lifecycle_msgs``; services ``~/change_state``,
``~/get_state``, ``~/get_available_states``, ``~/get_available_transitions``):

- **unconfigured**: parameters declared, ``/diagnostics`` published (it says why nothing comes
  out: not configured yet, or the last configure's error). Engine parameters may change.
- **configure**: builds and checks the model and backend (checkpoint loads strictly, input size,
  backend available, one warm-up inference on a grey batch returns finite depth). Failure leaves
  the node unconfigured with the reason in the log and in ``/diagnostics``; fix the parameter and
  configure again.
- **inactive**: model loaded, no topics.
- **activate**: creates the subscriptions and publishers and starts the worker thread.
- **deactivate** / **cleanup** / **shutdown**: the reverse, in order.

``autostart`` (default true) runs configure and activate in the constructor, so ``ros2 run``
and in-process users get a serving node; a failure there raises (the executables exit with
code 2 and ``cannot start: <reason>``). With ``autostart:=false`` a lifecycle manager drives it.

Subscription callbacks only validate, pair and synchronise; complete frames (sets) go to a
:class:`~bore_depth_ros.core.worker.LatestWorker` that runs inference on the newest one, so
inputs faster than inference never queue up and every skipped frame is counted.

``/diagnostics`` levels describe the node's health now: they follow what happened within the
last ``diagnostics_window`` seconds (rejections, drops, overload; totals stay in the values), a
silent input goes STALE, and problems of the ROS graph (two publishers on an input topic, two
nodes with this node's name) and stamps that are zero or far from the node's clock are warned
about once in the log (graph problems are also shown as WARN while they last; stamp problems are
counted as ``stamps.<kind>`` in the values).
"""

from __future__ import annotations

import collections

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from ..core.stats import ReasonCounter, RecentCounts
from ..core.worker import LatestWorker
from ..engine import DepthEngine, EnginePool, resolve_engine
from . import diagnostics as diag
from . import params as P

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
FAR_STAMP_NS = 10_000_000_000  # stamps further than this from the node's clock: no latency


class ManagedDepthNode(LifecycleNode):
    """Shared lifecycle, worker, lazy-mode and diagnostics plumbing of the depth nodes.

    Subclasses implement ``declare_node_parameters``, ``configure_node`` (after the engine is
    loaded), ``activate_node`` (create subscriptions and publishers), ``process`` (one work item,
    on the worker thread), ``output_publishers`` (for lazy mode) and ``node_statuses``.
    """

    default_model = "bore_depth"
    params: dict = P.MONO  # the node's parameter table (ros.params)

    def __init__(self, node_name: str, *, engine: DepthEngine | EnginePool | None = None, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self._engine_source = engine
        self.engine: DepthEngine | None = None
        self.worker: LatestWorker | None = None
        self.last_error = ""
        self.errors = ReasonCounter()
        self.lazy_not_built = ReasonCounter()  # outputs not built: lazy and nobody subscribes
        self._entities: tuple[list, list] = ([], [])
        self._lazy_idle = False
        P.declare(self, self.params, {"model": self.default_model})
        self.declare_node_parameters()
        self._outcomes_done: collections.Counter = collections.Counter()
        self.stamp_warnings = ReasonCounter()  # images with zero stamps or stamps far from the clock
        self._stamp_logged: set[tuple[str, str]] = set()
        self._graph_logged: set[str] = set()
        self.recent = RecentCounts(float(self.get_parameter("diagnostics_window").value))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        period = float(self.get_parameter("diagnostics_period").value)
        err = self.params["diagnostics_period"].check(period)
        if err:
            raise ValueError(err)
        # /diagnostics lives in every state: it is how an operator learns why nothing comes out
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(period, self.publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        if self.get_parameter("autostart").value:
            self.start()
        else:
            self.get_logger().info(
                "unconfigured (autostart is false): waiting for configure and "
                f"activate on {self.get_fully_qualified_name()}/change_state"
            )

    # ---------------------------------------------------------------- hooks
    def declare_node_parameters(self) -> None:
        """Declare the node's own parameters (called from the constructor)."""

    def engine_batch(self) -> int:
        return 1

    def validate_parameters(self) -> None:
        """Raise ValueError for parameter values that cannot work (checked on configure, so
        values from a YAML file are checked as well as ``ros2 param set`` ones)."""
        P.check_values(self.params, P.values_of(self, self.params))

    def configure_node(self) -> None:
        """Build per-node state once ``self.engine`` is loaded; raise to fail configure."""

    def activate_node(self) -> None:
        """Create subscriptions and publishers."""

    def process(self, item) -> None:
        """Handle one work item on the worker thread."""
        raise NotImplementedError

    def output_publishers(self) -> list:
        return []

    def node_statuses(self, common: dict) -> list:
        return []

    def release_node(self) -> None:
        """Forget per-configuration state (cleanup)."""

    def drop_pending(self, reason: str) -> int:
        """Drop inputs held outside the worker (waiting for camera_info or peers); return how
        many were dropped (counted by the subclass under ``reason``)."""
        return 0

    # ---------------------------------------------------------------- lifecycle
    @property
    def state(self) -> str:
        return self._state_machine.current_state[1]

    def start(self) -> None:
        """configure + activate; raise RuntimeError with the reason if either fails."""
        for trigger, what in ((self.trigger_configure, "configure"), (self.trigger_activate, "activate")):
            if trigger() != SUCCESS:
                reason = self.last_error or f"{what} failed"
                self.destroy_node()  # nobody holds this half-started node: free the model
                raise RuntimeError(reason)

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.validate_parameters()
            self.engine = resolve_engine(
                self._engine_source,
                P.engine_config_from_values(P.values_of(self, P.ENGINE), batch=self.engine_batch()),
            )
            self.errors = ReasonCounter()
            self.lazy_not_built = ReasonCounter()
            self._outcomes_done = collections.Counter()
            self.configure_node()
            warm_ms = self.engine.warmup()
        except Exception as e:  # noqa: BLE001 - reported, the node stays unconfigured
            self._release_engine()
            self.last_error = f"{type(e).__name__}: {e}"
            self.get_logger().error(f"configure failed: {self.last_error}")
            return FAILURE
        self.last_error = ""
        if self.engine.size_warning:
            self.get_logger().warning(self.engine.size_warning)
        desc = ", ".join(f"{k}={v}" for k, v in self.engine.describe().items())
        self.get_logger().info(f"configured: {desc}; first inference {warm_ms:.0f} ms")
        return SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        pubs0, subs0 = set(self.publishers), set(self.subscriptions)
        try:
            self.activate_node()
        except Exception as e:  # noqa: BLE001
            self.last_error = f"{type(e).__name__}: {e}"
            self.get_logger().error(f"activate failed: {self.last_error}")
            self._destroy_entities(
                [p for p in self.publishers if p not in pubs0],
                [s for s in self.subscriptions if s not in subs0],
            )
            return FAILURE
        self._entities = (
            [p for p in self.publishers if p not in pubs0],
            [s for s in self.subscriptions if s not in subs0],
        )
        self.worker = LatestWorker(self.process, self._on_worker_error, name=f"{self.get_name()}_worker")
        self.worker.start()
        self.last_error = ""
        self.get_logger().info(f"ready: {self.ready_message()}")
        return SUCCESS

    def ready_message(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.engine.describe().items())

    def _transition(self, what: str, body) -> TransitionCallbackReturn:
        """Run a transition body; an exception fails it with the reason logged and reported
        (rclpy would otherwise turn it into a silent ERROR transition)."""
        try:
            result = body()
        except Exception as e:  # noqa: BLE001
            self.last_error = f"{what} failed: {type(e).__name__}: {e}"
            self.get_logger().error(self.last_error)
            return FAILURE
        return SUCCESS if result is None else result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        def body():
            if not self._stop_worker():
                return FAILURE
            self._destroy_entities(*self._entities)
            self._entities = ([], [])
            dropped = self.drop_pending("deactivated")
            self.get_logger().info(
                "deactivated: subscriptions and publishers removed, model "
                f"kept ({dropped} waiting inputs dropped)"
            )

        return self._transition("deactivate", body)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        def body():
            self.release_node()
            self._release_engine()
            self.get_logger().info("cleaned up: model released")

        return self._transition("cleanup", body)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        def body():
            self._stop_worker()
            self._destroy_entities(*self._entities)
            self._entities = ([], [])
            self.drop_pending("shutdown")
            self.release_node()
            self._release_engine()
            self.get_logger().info("shut down")

        return self._transition("shutdown", body)

    def on_error(self, state) -> TransitionCallbackReturn:
        self.get_logger().error(
            f"error processing from state '{state.label}': cleaning up ({self.last_error or 'no detail'})"
        )
        self.on_shutdown(state)
        return SUCCESS

    def _release_engine(self) -> None:
        if self.engine is not None and isinstance(self._engine_source, EnginePool):
            self._engine_source.release(self.engine)
        self.engine = None

    def _stop_worker(self) -> bool:
        """Stop the worker; False if its thread is still busy after the timeout."""
        if self.worker is None:
            return True
        w = self.worker
        left = w.stop()
        if left is not None:
            self.count_skip("deactivated", left)
        if not w.stopped():
            self.last_error = "the worker is still running an inference after 60 s; deactivate again later"
            self.get_logger().error(self.last_error)
            return False
        self._outcomes_done.update(w.outcomes)
        self.worker = None
        return True

    def worker_counts(self) -> tuple[int, dict]:
        """(items waiting or in progress, outcome counts of every worker so far), consistent."""
        if self.worker is None:
            return 0, dict(self._outcomes_done)
        waiting, busy, outcomes = self.worker.snapshot()
        total = collections.Counter(self._outcomes_done)
        total.update(outcomes)
        return waiting + int(busy), dict(total)

    def discard_waiting(self, reason: str) -> None:
        """Drop the item waiting for the worker (a restart made it stale), counted as skipped."""
        if self.worker is not None:
            item = self.worker.discard()
            if item is not None:
                self.count_skip(reason, item)

    def _destroy_entities(self, pubs, subs) -> None:
        for s in subs:
            self.destroy_subscription(s)
        for p in pubs:
            self.destroy_publisher(p)

    def destroy_node(self):
        self._stop_worker()
        super().destroy_node()
        self._release_engine()

    # ---------------------------------------------------------------- parameters
    def _on_set_parameters(self, params):
        """Run-time changes, checked against the same table as configure."""
        values = P.values_of(self, self.params)
        for p in params:
            spec = self.params.get(p.name)
            if spec is None:
                continue
            if spec.change == P.UNCONFIGURED and self.state != "unconfigured":
                return P.rejected(
                    f"engine parameter '{p.name}' can change only while the node is "
                    f"unconfigured (it is {self.state}: deactivate and clean up first)"
                )
            values[p.name] = p.value
        try:
            P.check_values(self.params, values)
        except ValueError as e:
            return P.rejected(str(e))
        return self.on_parameters(params, values)

    def on_parameters(self, params, values: dict):
        """Apply accepted changes (``values``: every parameter with the changes in)."""
        return P.accepted()

    # ---------------------------------------------------------------- work
    def submit(self, item) -> None:
        """Hand a complete frame (set) to the worker; count what it replaces or what lazy skips."""
        if self.worker is None:
            self.count_skip("inactive", item)
            return
        if self.lazy_idle():
            self.count_skip("no_subscribers", item)
            return
        replaced = self.worker.submit(item)
        if replaced is not None:
            self.count_skip("overload", replaced)

    def count_skip(self, reason: str, item) -> None:
        """A complete, valid input that was not processed (subclasses count per view)."""

    def lazy_idle(self) -> bool:
        """True when lazy mode is on and nobody subscribes to any output (logged on changes)."""
        idle = bool(self.get_parameter("lazy").value) and self.output_subscribers() == 0
        if idle != self._lazy_idle:
            self._lazy_idle = idle
            if idle:
                self.get_logger().info(
                    "lazy mode: no subscribers to any output, inference "
                    "paused (frames counted as skipped.no_subscribers)"
                )
            else:
                self.get_logger().info("lazy mode: a subscriber appeared, inference resumed")
        return idle

    def builds(self, publisher, what: str, lazy: bool) -> bool:
        """Whether to build the output of ``publisher``: always, unless ``lazy`` (the parameter,
        read once per frame) and nobody subscribes to it; a skipped one is counted as
        ``not_built_lazy.<what>`` in /diagnostics."""
        if not lazy or publisher.get_subscription_count() > 0:
            return True
        self.lazy_not_built.add(what)
        return False

    def output_subscribers(self) -> int:
        return sum(p.get_subscription_count() for p in self.output_publishers())

    def _on_worker_error(self, exc: BaseException, item) -> None:
        reason = f"processing_error.{type(exc).__name__}"
        if self.errors.add(reason):
            self.get_logger().error(
                f"processing failed, frame dropped: {type(exc).__name__}: "
                f"{exc} [{self.errors.counts[reason]} so far; the node keeps "
                "serving]"
            )

    def silent_input(self, relative_topic: str) -> str:
        """Why a subscribed topic has delivered nothing yet, in words for /diagnostics."""
        topic = self.resolve_topic_name(relative_topic)
        n = self.count_publishers(topic)
        if n == 0:
            return f"no messages yet on {topic}: nobody publishes it (check remapping/namespace)"
        return f"no messages yet on {topic} ({n} publisher{'s' if n > 1 else ''})"

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def latency_ms(self, stamp_ns: int) -> float | None:
        """Stamp-to-publish latency on the node's clock (sim time when use_sim_time); None for a
        zero stamp or one further than ``FAR_STAMP_NS`` from the clock (see :meth:`check_stamp`)."""
        dt = self.now_ns() - stamp_ns
        return None if stamp_ns == 0 or abs(dt) > FAR_STAMP_NS else dt / 1e6

    def check_stamp(self, relative_topic: str, stamp_ns: int) -> None:
        """Count an input stamp that is zero or far from the node's clock; warn once per topic
        and kind (latency is not reported for such frames)."""
        if stamp_ns == 0:
            kind = "zero"
        else:
            dt = self.now_ns() - stamp_ns
            if abs(dt) <= FAR_STAMP_NS:
                return
            kind = "far_from_clock"
        self.stamp_warnings.add(kind)
        if (relative_topic, kind) in self._stamp_logged:
            return
        self._stamp_logged.add((relative_topic, kind))
        topic = self.resolve_topic_name(relative_topic)
        if kind == "zero":
            why = "the camera driver should stamp each frame with its capture time"
            what = f"images on {topic} have zero stamps"
        else:
            side = "behind" if dt > 0 else "ahead of"
            what = f"stamps on {topic} are {abs(dt) / 1e9:.3g} s {side} this node's clock"
            why = "replaying a recording? set use_sim_time and publish /clock (bore-depth play does)"
        self.get_logger().warning(
            f"{what}: latency is not reported for them ({why}); counted as stamps.{kind}, said once"
        )

    # ---------------------------------------------------------------- graph checks
    def input_topics(self) -> list[str]:
        """Relative names of the image topics this node subscribes (for the graph checks)."""
        return []

    def graph_problems(self) -> list[str]:
        """Problems of the ROS graph around this node, each logged once: two nodes with this
        node's name, several publishers on one input image topic."""
        problems: list[tuple[str, str]] = []
        me = (self.get_name(), self.get_namespace())
        twins = sum(1 for nn in self.get_node_names_and_namespaces() if tuple(nn) == me)
        if twins > 1:
            problems.append(
                (
                    "node_name",
                    f"{twins} nodes are named {self.get_fully_qualified_name()}: its parameters, "
                    "services and lifecycle are ambiguous (rename one: -r __node:=<name>)",
                )
            )
        if self.state == "active":
            for rel in self.input_topics():
                topic = self.resolve_topic_name(rel)
                n = self.count_publishers(topic)
                if n > 1:
                    problems.append(
                        (
                            topic,
                            f"{n} publishers on {topic}: their frames interleave (mixed stamps, "
                            "sizes and scale state); one camera per topic",
                        )
                    )
        for key, text in problems:
            if key not in self._graph_logged:
                self._graph_logged.add(key)
                self.get_logger().warning(f"{text} (said once; shown in /diagnostics while it lasts)")
        return [text for _, text in problems]

    # ---------------------------------------------------------------- diagnostics
    def common_diagnostics(self) -> dict:
        eng = self.engine
        v = {
            "lifecycle_state": self.state,
            "lazy": bool(self.get_parameter("lazy").value),
            "idle_no_subscribers": self._lazy_idle,
            "output_subscribers": self.output_subscribers() if self.state == "active" else 0,
            "worker_busy": int(self.worker.busy()) if self.worker else 0,
        }
        if self.last_error:
            v["last_error"] = self.last_error
        if eng is not None:
            v.update({f"engine.{k}": val for k, val in eng.describe().items()})
            v["backend"] = eng.backend.name
            v["precision"] = eng.config.precision
        v.update({k: c for k, c in self.errors.as_dict().items()})
        v.update({f"stamps.{k}": c for k, c in self.stamp_warnings.as_dict().items()})
        v.update({f"not_built_lazy.{k}": c for k, c in self.lazy_not_built.as_dict().items()})
        return v

    def state_status(self, name: str):
        """A status for a node that is not active (None when active)."""
        st = self.state
        if st == "active":
            return None
        if self.last_error:
            return diag.status(name, "", diag.ERROR, f"{st}: {self.last_error}", self.common_diagnostics())
        why = {
            "unconfigured": "unconfigured: waiting for configure",
            "inactive": "inactive: configured, waiting for activate",
        }.get(st, st)
        return diag.status(name, "", diag.WARN, why, self.common_diagnostics())

    def publish_diagnostics(self) -> None:
        try:
            common = self.common_diagnostics()
            problems = self.graph_problems()
            statuses = self.node_statuses(common)
            if problems and statuses:
                first = statuses[0]
                first.level = max(first.level, diag.WARN)  # STALE and ERROR stay
                first.message = "; ".join(problems) + "; " + first.message
        except Exception as e:  # noqa: BLE001 - diagnostics must never take the node down
            statuses = [
                diag.status(
                    f"{self.get_fully_qualified_name()}",
                    "",
                    diag.ERROR,
                    f"diagnostics failed: {type(e).__name__}: {e}",
                    {},
                )
            ]
        self.pub_diag.publish(diag.diagnostic_array(self, statuses))
