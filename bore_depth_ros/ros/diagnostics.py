"""/diagnostics helpers (diagnostic_updater is not on PyPI; this is the small part we need)."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR, STALE = (
    DiagnosticStatus.OK,
    DiagnosticStatus.WARN,
    DiagnosticStatus.ERROR,
    DiagnosticStatus.STALE,
)


def recent_summary(recent: dict[str, int], window: float) -> str:
    """'rejected.encoding=3, skipped.overload=2 in the last 10 s'."""
    return ", ".join(f"{k}={v}" for k, v in sorted(recent.items())) + f" in the last {window:g} s"


def status(name: str, hardware_id: str, level: int, message: str, values: dict) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
    )


def diagnostic_array(node, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    arr = DiagnosticArray(status=statuses)
    arr.header.stamp = node.get_clock().now().to_msg()
    return arr


def timing_values(timing: dict) -> dict:
    """Mean and p95 of each RollingStats in ``timing``."""
    out = {}
    for k, s in timing.items():
        out[f"{k}.mean"] = round(s.mean(), 3)
        out[f"{k}.p95"] = round(s.percentile(95), 3)
    return out
