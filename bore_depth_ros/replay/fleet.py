"""Evaluation of many recordings (a fleet): bag lists, per-bag results, resume, the fleet report.

ROS-free orchestration around :func:`evaluate`: every bag is evaluated by :func:`run_task` into its
own folder under ``OUT/bags/``; its per-frame metrics (JSON Lines) and its summary (JSON) are
written to temporary names and renamed when complete, so a bag counts as finished only when both
files exist. ``OUT/manifest.json`` records the evaluation config; a later run into the same
``OUT`` with the same config resumes (finished bags are kept, the others rerun), with another
config it is refused unless ``force``. A bag that fails (corrupt file, no camera, no ground truth)
is recorded with its reason and does not stop the others.

The per-frame lines are deterministic: bags in the order given, frames in the order the
evaluation scores them, floats rounded to 6 significant digits, keys sorted; two runs over the
same bags compare line for line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from ..core.files import claim_outputs
from .config import EvalConfig

BAG_SUFFIXES = (".mcap", ".db3")
MANIFEST = "manifest.json"
FRAMES = "frames.jsonl"
SUMMARY = "summary.json"
# config fields that do not change the results (where they go, whether to replace them)
_SEGMENT_KEYS = ("segment", "start_s", "end_s", "status", "reason", "frames_scored", "seconds", "process")
_NOT_RESULT = ("bag", "report_dir", "force", "output_bag", "cache_dir", "threads")


def is_bag(p: Path) -> bool:
    """A rosbag2 bag: a folder with metadata.yaml, a folder holding one .mcap/.db3 file and no
    bag folder, or such a file."""
    if p.is_dir():
        if (p / "metadata.yaml").is_file():
            return True
        kids = list(p.iterdir())
        files = [c for c in kids if c.is_file() and c.suffix in BAG_SUFFIXES]
        return len(files) == 1 and not any(c.is_dir() and (c / "metadata.yaml").is_file() for c in kids)
    return p.is_file() and p.suffix in BAG_SUFFIXES


def expand_bags(items, keep_unknown_folders: bool = False) -> list[str]:
    """Bag paths from ``items``: bags; folders holding bags (each subfolder or file that is a bag,
    sorted by name); text files listing them (one path a line, ``#`` comments, relative to the
    list's folder). Order kept, duplicates dropped. Raises FileNotFoundError / ValueError; a folder
    holding no bag is kept as given with ``keep_unknown_folders`` (its reader then says why)."""
    out: list[str] = []

    def add(p: Path, depth: int = 0) -> None:
        if not p.exists():
            raise FileNotFoundError(f"bag not found: {p}")
        if is_bag(p):
            out.append(str(p))
        elif p.is_dir():
            found = sorted(c for c in p.iterdir() if is_bag(c))
            if not found and keep_unknown_folders:
                found = [p]
            elif not found:
                raise ValueError(f"{p}: no rosbag2 bag in this folder")
            out.extend(str(c) for c in found)
        elif depth == 0:
            for line in p.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    q = Path(line).expanduser()
                    add(q if q.is_absolute() else p.parent / q, 1)
        else:
            raise ValueError(f"{p}: not a rosbag2 bag")

    for item in items:
        add(Path(item))
    seen: set[str] = set()
    return [b for b in out if not (b in seen or seen.add(b))]


def bag_ids(bags: list[str]) -> list[str]:
    """A unique, file-name-safe id per bag (its name; a number added where names repeat)."""
    ids, used = [], set()
    for b in bags:
        p = Path(b)
        base = "".join(
            ch if ch.isalnum() or ch in "-_." else "_"
            for ch in (p.stem if p.suffix in BAG_SUFFIXES else p.name)
        )
        name, k = base or "bag", 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        ids.append(name)
    return ids


def _num(v):
    """A float for JSON: 6 significant digits, None for nan/inf (deterministic text)."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return float(f"{v:.6g}") if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _num(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_num(x) for x in v]
    try:  # numpy scalars
        return _num(v.item())
    except AttributeError:
        return v


def dumps_line(obj) -> str:
    return json.dumps(_num(obj), sort_keys=True, separators=(",", ":"))


def config_key(config: EvalConfig) -> dict:
    """The part of ``config`` that decides the results (recorded in the manifest)."""
    return {k: v for k, v in sorted(dataclasses.asdict(config).items()) if k not in _NOT_RESULT}


def short_reason(exc: BaseException) -> str:
    """One line of at most 500 characters saying why ``exc`` happened (for reports and indexes)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 500 else text[:497] + "..."


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of work: a whole bag, or segment ``k`` of ``n`` of it ([start_s, end_s) seconds of
    log time from the bag's first message; end_s 0 = to the end)."""

    bag: str
    bag_id: str
    k: int = 0
    n: int = 1
    start_s: float = 0.0
    end_s: float = 0.0

    @property
    def name(self) -> str:
        return self.bag_id if self.n == 1 else f"{self.bag_id}.seg{self.k:03d}"

    def failed(self, reason: str) -> dict:
        """The summary of a task that could not run at all (a worker's retries spent)."""
        return {**self.keys(), "status": "failed", "reason": reason}

    def keys(self) -> dict:
        d = {"bag": self.bag, "id": self.bag_id}
        if self.n > 1:
            d.update(segment=self.k, segments=self.n, start_s=self.start_s, end_s=self.end_s)
        return d


def run_task(config: EvalConfig, task: Task, bags_dir: str | Path, engine=None) -> dict:
    """Evaluate one bag or segment into ``bags_dir/<bag_id>/`` and write ``<name>.jsonl`` and
    ``<name>.json`` (temporary names, renamed when complete). Returns the summary; a failing bag
    gives ``status: failed`` and its reason. The same code runs serially and on Ray."""
    from .evaluate import evaluate

    bags_dir = Path(bags_dir)
    report = bags_dir / task.bag_id
    if task.n > 1:
        report = report / f"seg{task.k:03d}"
    if report.exists():
        shutil.rmtree(report)  # a previous, unfinished attempt
    cfg = dataclasses.replace(
        config,
        bag=task.bag,
        report_dir=str(report),
        force=True,
        output_bag=None,
        start_s=task.start_s,
        end_s=task.end_s,
    )
    lines: list[dict] = []
    t0 = time.perf_counter()
    summary: dict = task.keys()

    def on_frame(record: dict) -> None:
        lines.append({"bag": task.bag, **record})

    try:
        result = evaluate(cfg, progress=False, engine=engine, on_frame=on_frame)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 (one bad bag is reported, the others go on)
        lines = []
        summary.update(status="failed", reason=short_reason(exc), error=type(exc).__name__)
    else:
        d = result.to_dict()
        summary.update(
            status="ok" if d["frames"]["evaluated"] else "failed",
            reason="" if d["frames"]["evaluated"] else "no frame was evaluated",
            frames=d["frames"],
            drops=d["drops"],
            overall={"metric": d["overall"].get("metric", {}), "median": d["overall"].get("median", {})},
            cameras=[
                {
                    "camera": c["namespace"],
                    "topic": c["image_topic"],
                    "frames": c["frames"],
                    "metric": c["metric"],
                    "median": c["median"],
                    "drops": c["drops"],
                }
                for c in d["cameras"]
            ],
            engine={k: d["engine"].get(k) for k in ("model", "backend", "weights_source")},
            report=str(report / "report.html"),
        )
    summary["seconds"] = time.perf_counter() - t0
    summary["process"] = _process_facts()
    _write_atomic(bags_dir / f"{task.name}.jsonl", "".join(dumps_line(x) + "\n" for x in lines))
    summary["frames_scored"] = len(lines)
    _write_atomic(bags_dir / f"{task.name}.json", json.dumps(_num(summary), indent=1, sort_keys=True))
    return summary


def _process_facts() -> dict:
    """The process that ran a task (the driver or a Ray worker): pid, host, peak RSS so far."""
    import resource
    import socket

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"pid": os.getpid(), "host": socket.gethostname(), "peak_rss_mb": round(peak_kb / 1024, 1)}


def bag_duration_s(bag: str) -> float | None:
    """Seconds from the bag's first to its last message (None if it cannot be opened: the bag's
    task then reports why)."""
    from ..bag.reader import open_bag

    try:
        with open_bag(bag) as reader:
            return (reader.end_time - reader.start_time) / 1e9
    except Exception:  # noqa: BLE001 (reported by the bag's own task)
        return None


def plan_tasks(bag: str, bag_id: str, segment_s: float) -> list[Task]:
    """The tasks of one bag: the whole bag, or ``segment_s``-second segments of a longer one."""
    if segment_s <= 0:
        return [Task(bag, bag_id)]
    duration = bag_duration_s(bag)
    n = 1 if duration is None else max(1, math.ceil(duration / segment_s - 1e-9))
    if n == 1:
        return [Task(bag, bag_id)]
    return [
        Task(bag, bag_id, k, n, k * segment_s, (k + 1) * segment_s if k < n - 1 else 0.0) for k in range(n)
    ]


def _mean_rows(rows: list[dict]) -> dict:
    keep = [r for r in rows if (r.get("n_valid") or 0) > 0]
    keys = [k for k in (rows[0] if rows else {}) if k != "n_valid"]
    return {k: (sum(r[k] for r in keep if r.get(k) is not None) / len(keep) if keep else None) for k in keys}


def merge_segments(bags_dir: Path, bag: str, bag_id: str, segs: list[dict]) -> dict:
    """Join a bag's segment results into ``<bag_id>.jsonl`` and ``<bag_id>.json``: lines in
    segment order; per-camera means recomputed from the lines (frames with valid ground truth),
    overall = mean of the per-camera means, counts and drops summed."""
    segs = sorted(segs, key=lambda s: s["segment"])
    text = ""
    for s in segs:
        p = bags_dir / f"{bag_id}.seg{s['segment']:03d}.jsonl"
        text += p.read_text() if p.is_file() else ""
    lines = [json.loads(x) for x in text.splitlines()]
    by_cam: dict[str, list[dict]] = {}
    for x in lines:
        by_cam.setdefault(x["camera"], []).append(x)
    cam_drops: dict[str, dict] = {}
    for s in segs:
        for c in s.get("cameras", []):
            d = cam_drops.setdefault(c["camera"], {})
            for r, n in c.get("drops", {}).items():
                d[r] = d.get(r, 0) + n
    cameras = [
        {
            "camera": cam,
            "topic": rows[0]["topic"],
            "frames": len(rows),
            "metric": _mean_rows([r["metrics"] for r in rows]),
            "median": _mean_rows([r["median"] for r in rows]),
            "drops": dict(sorted(cam_drops.get(cam, {}).items())),
        }
        for cam, rows in by_cam.items()
    ]

    def over(mode: str) -> dict:
        keys = {k for c in cameras for k in c[mode]}
        out = {}
        for k in sorted(keys):
            v = [c[mode][k] for c in cameras if c[mode].get(k) is not None]
            out[k] = sum(v) / len(v) if v else None
        return out

    def total(key: str) -> dict:
        out: dict = {}
        for s in segs:
            for k, v in s.get(key, {}).items():
                out[k] = out.get(k, 0) + v
        return dict(sorted(out.items()))

    ok = [s for s in segs if s.get("status") == "ok"]
    bad = [s for s in segs if s.get("status") != "ok"]
    summary = {
        "bag": bag,
        "id": bag_id,
        "status": "ok" if ok else "failed",
        "reason": "; ".join(f"segment {s['segment']}: {s.get('reason', '')}" for s in bad),
        "frames": total("frames"),
        "drops": total("drops"),
        "overall": {"metric": over("metric"), "median": over("median")},
        "cameras": cameras,
        "engine": next((s["engine"] for s in ok), {}),
        "segments": [{k: s.get(k) for k in _SEGMENT_KEYS} for s in segs],
        "seconds": sum(float(s.get("seconds", 0.0)) for s in segs),
        "frames_scored": len(lines),
    }
    _write_atomic(bags_dir / f"{bag_id}.jsonl", text)
    _write_atomic(bags_dir / f"{bag_id}.json", json.dumps(_num(summary), indent=1, sort_keys=True))
    for s in segs:
        for ext in (".jsonl", ".json"):
            (bags_dir / f"{bag_id}.seg{s['segment']:03d}{ext}").unlink(missing_ok=True)
    return summary


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _finished(bags_dir: Path, name: str, task: Task) -> dict | None:
    """The summary of a finished bag or segment (None: not finished, or another bag's)."""
    js, jl = bags_dir / f"{name}.json", bags_dir / f"{name}.jsonl"
    if not (js.is_file() and jl.is_file()):
        return None
    try:
        s = json.loads(js.read_text())
    except ValueError:
        return None
    if s.get("bag") != task.bag:
        return None
    if name != task.bag_id and (s.get("segment"), s.get("segments")) != (task.k, task.n):
        return None
    return s


def prepare_out(out: Path, config: EvalConfig, bags: list[str], force: bool, segment_s: float = 0.0) -> dict:
    """Create or resume ``out``; returns the manifest. Refuses another config unless ``force``."""
    key = config_key(config)
    if segment_s:
        key["segment_s"] = segment_s
    manifest = {"config": key, "bags": bags, "ids": bag_ids(bags)}
    mpath = out / MANIFEST
    if mpath.is_file() and not force:
        old = json.loads(mpath.read_text())
        if old.get("config") != manifest["config"]:
            changed = sorted(
                k
                for k in set(old.get("config", {})) | set(manifest["config"])
                if old.get("config", {}).get(k) != manifest["config"].get(k)
            )
            raise FileExistsError(
                f"{out} holds a fleet run with another config ({', '.join(changed)} differ): "
                "choose another --out or pass --force to replace it"
            )
    elif not mpath.is_file():
        claim_outputs([out], force)
    else:  # force: start again
        claim_outputs([out], True)
    (out / "bags").mkdir(parents=True, exist_ok=True)
    _write_atomic(mpath, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


class _Progress:
    def __init__(self, total: int, done: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total, initial=done, unit="bag", desc="fleet", file=sys.stderr, disable=not enabled
        )
        self.frames, self.t0 = 0, time.perf_counter()

    def update(self, task_summary: dict, bag_done: bool) -> None:
        self.frames += int(task_summary.get("frames_scored", 0))
        dt = time.perf_counter() - self.t0
        self.bar.set_postfix_str(f"{self.frames / dt if dt > 0 else 0:.1f} frames/s")
        if bag_done:
            self.bar.update(1)
        else:
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def evaluate_fleet(
    config: EvalConfig,
    bags: list[str],
    out: str | Path,
    force: bool = False,
    progress: bool = True,
    runner=None,
    segment_s: float = 0.0,
) -> dict:
    """Evaluate ``bags`` into ``out`` (resuming a run there), then write ``frames.jsonl``,
    ``summary.json`` and the fleet report. A bag longer than ``segment_s`` seconds (0: never) is
    split into segments evaluated as separate tasks and joined when all are done. ``runner(todo,
    config, bags_dir, on_done)`` schedules the unfinished :class:`Task` objects (default: serially
    in this process, one model for all). Ctrl-C keeps the finished bags and segments and re-raises."""
    config.validate()
    if segment_s < 0:
        raise ValueError(f"segment must be >= 0 seconds (0 = whole bags), got {segment_s}")
    if segment_s and (config.start_s or config.end_s):
        raise ValueError("start_s/end_s select a window of one bag; a fleet splits its bags by segment")
    out = Path(out)
    manifest = prepare_out(out, config, bags, force, segment_s)
    bags_dir = out / "bags"
    ids = manifest["ids"]
    results: dict[str, dict] = {}
    segs: dict[str, dict[int, dict]] = {}
    todo: list[Task] = []
    for bag, bid in zip(bags, ids, strict=True):
        whole = _finished(bags_dir, bid, Task(bag, bid))
        if whole is not None:
            results[bid] = whole
            continue
        for task in plan_tasks(bag, bid, segment_s):
            done = _finished(bags_dir, task.name, task) if task.n > 1 else None
            if done is None:
                todo.append(task)
            else:
                segs.setdefault(bid, {})[task.k] = done
    bar = _Progress(len(bags), len(results), progress)
    t0 = time.perf_counter()

    def on_done(summary: dict) -> None:
        bid = summary["id"]
        n = summary.get("segments", 1)
        if n == 1:
            results[bid] = summary
            bar.update(summary, True)
            return
        parts = segs.setdefault(bid, {})
        parts[summary["segment"]] = summary
        complete = len(parts) == n
        if complete:
            results[bid] = merge_segments(bags_dir, summary["bag"], bid, list(parts.values()))
        bar.update(summary, complete)

    try:
        (runner or run_serial)(todo, config, bags_dir, on_done)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    resumed = len(bags) - len({t.bag_id for t in todo})
    return write_fleet_outputs(out, bags, ids, results, wall, resumed=resumed)


def run_serial(todo: list[Task], config: EvalConfig, bags_dir: Path, on_done) -> None:
    """One task after the other in this process; one loaded model reused (mono models)."""
    from ..models import get_model_info

    engine = None
    for task in todo:
        if engine is None and get_model_info(config.model).num_cameras == 1:
            engine = _load_engine(config)
        on_done(run_task(config, task, bags_dir, engine))


def _load_engine(config: EvalConfig):
    from ..engine import DepthEngine

    return DepthEngine(config.engine_config(batch=1))


def write_fleet_outputs(out: Path, bags, ids, results: dict, wall_s: float, resumed: int = 0) -> dict:
    """Concatenate the per-bag lines in bag order, write summary.json and the fleet report."""
    bags_dir = out / "bags"
    with open(out / (FRAMES + ".tmp"), "w") as f:
        for bid in ids:
            p = bags_dir / f"{bid}.jsonl"
            if p.is_file():
                f.write(p.read_text())
    os.replace(out / (FRAMES + ".tmp"), out / FRAMES)
    per_bag = [results[b] for b in ids if b in results]
    ok = [s for s in per_bag if s.get("status") == "ok"]
    frames = sum(int(s.get("frames_scored", 0)) for s in per_bag)
    busy = sum(float(s.get("seconds", 0.0)) for s in per_bag)
    summary = {
        "bags": len(bags),
        "finished": len(per_bag),
        "ok": len(ok),
        "failed": [
            {"bag": s["bag"], "reason": s.get("reason", "")} for s in per_bag if s.get("status") != "ok"
        ],
        "unfinished": [b for b, i in zip(bags, ids, strict=True) if i not in results],
        "frames_scored": frames,
        "wall_s": wall_s,
        "bag_seconds": busy,
        "resumed_bags": resumed,
        "peak_rss_mb": _peak_rss(per_bag),
        "overall": _fleet_means(ok),
        "per_bag": per_bag,
    }
    _write_atomic(out / SUMMARY, json.dumps(_num(summary), indent=1, sort_keys=True))
    summary["paths"] = write_fleet_report(summary, out)
    return summary


def _peak_rss(per_bag: list[dict]) -> dict:
    """Peak RSS (MB) of each process that ran tasks, by host:pid."""
    peaks: dict[str, float] = {}
    procs = [s.get("process") for s in per_bag] + [
        g.get("process") for s in per_bag for g in s.get("segments", [])
    ]
    for p in procs:
        if p:
            k = f"{p['host']}:{p['pid']}"
            peaks[k] = max(peaks.get(k, 0.0), float(p["peak_rss_mb"]))
    return dict(sorted(peaks.items()))


def _fleet_means(ok: list[dict]) -> dict:
    keys = ("abs_rel", "rmse", "a1")
    res = {}
    for mode in ("metric", "median"):
        vals = {k: [s["overall"][mode].get(k) for s in ok] for k in keys}
        res[mode] = {
            k: (sum(v) / len(v) if v else None)
            for k, v in ((k, [x for x in vs if x is not None and math.isfinite(x)]) for k, vs in vals.items())
        }
    return res


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _f(v, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _fleet_tables(summary: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    per_bag = summary["per_bag"]
    rows = []
    for s in per_bag:
        m = s.get("overall", {}).get("metric", {})
        fr = s.get("frames", {})
        fps = s.get("frames_scored", 0) / s["seconds"] if s.get("seconds") else None
        rows.append(
            [
                s["id"],
                s.get("status", ""),
                str(len(s.get("cameras", []))),
                str(fr.get("evaluated", 0)),
                str(fr.get("dropped", 0)),
                _f(m.get("abs_rel")),
                _f(m.get("rmse")),
                _f(m.get("a1")),
                _f(fps, 1),
                s.get("reason", ""),
            ]
        )
    ok = [s for s in per_bag if s.get("status") == "ok"]
    key = lambda v: -v if v is not None and math.isfinite(v) else math.inf  # noqa: E731
    worst_bags = sorted(ok, key=lambda s: key(s["overall"]["metric"].get("abs_rel")))[:5]
    cams = [(s["id"], c) for s in ok for c in s.get("cameras", [])]
    worst_cams = sorted(cams, key=lambda sc: key(sc[1]["metric"].get("abs_rel")))[:5]
    return [
        (
            "Bags",
            ["bag", "status", "cameras", "frames", "dropped", "AbsRel", "RMSE", "d1", "frames/s", "reason"],
            rows,
        ),
        (
            "Worst bags (metric AbsRel)",
            ["bag", "AbsRel", "RMSE", "d1"],
            [
                [s["id"], *(_f(s["overall"]["metric"].get(k)) for k in ("abs_rel", "rmse", "a1"))]
                for s in worst_bags
            ],
        ),
        (
            "Worst cameras (metric AbsRel)",
            ["bag", "camera", "frames", "AbsRel", "RMSE", "d1"],
            [
                [
                    b,
                    c["camera"],
                    str(c["frames"]),
                    *(_f(c["metric"].get(k)) for k in ("abs_rel", "rmse", "a1")),
                ]
                for b, c in worst_cams
            ],
        ),
    ]


def _totals(summary: dict) -> list[str]:
    wall = summary["wall_s"]
    return [
        f"{summary['bags']} bags: {summary['ok']} evaluated, {len(summary['failed'])} failed, "
        f"{len(summary['unfinished'])} unfinished ({summary['resumed_bags']} kept from an earlier run)",
        f"{summary['frames_scored']} camera frames scored; this run {wall:.1f} s wall, "
        f"{summary['bag_seconds']:.1f} s in bags; "
        f"{(summary['finished'] - summary['resumed_bags']) / wall if wall > 0 else 0:.3f} bags/s",
        (
            f"{len(summary['peak_rss_mb'])} process(es) ran the bags; peak RSS "
            f"{max(summary['peak_rss_mb'].values()):.0f} MB"
            if summary.get("peak_rss_mb")
            else "no bag ran in this run"
        ),
        "fleet mean of per-bag means, metric: "
        + ", ".join(f"{k} {_f(v)}" for k, v in summary["overall"]["metric"].items()),
    ]


def plot_distributions(frames_path: Path, path: Path) -> bool:
    """Histograms of the per-frame metric AbsRel, RMSE and d1; False when there is no frame."""
    vals = {"abs_rel": [], "rmse": [], "a1": []}
    with open(frames_path) as f:
        for line in f:
            m = json.loads(line)["metrics"]
            for k, v in vals.items():
                if m.get(k) is not None:
                    v.append(m[k])
    if not any(vals.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (k, v) in zip(axes, vals.items(), strict=True):
        ax.hist(v, bins=30, color="tab:blue")
        ax.set_title(f"per-frame {k} (metric)")
        ax.set_ylabel("frames")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def write_fleet_report(summary: dict, out: Path) -> dict[str, str]:
    """fleet.md and fleet.html (tables, totals, the distribution plot) in ``out``."""
    import html

    plot = "fleet_metrics.png" if plot_distributions(out / FRAMES, out / "fleet_metrics.png") else None
    tables = _fleet_tables(summary)
    totals = _totals(summary)
    md = ["# Fleet evaluation", ""] + [f"- {t}" for t in totals] + [""]
    if plot:
        md += [f"![metric distributions]({plot})", ""]
    for title, head, rows in tables:
        md += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        md += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows] + [""]
    e = html.escape
    h = ["<!doctype html><html><head><meta charset='utf-8'><title>Fleet evaluation</title></head><body>"]
    h += ["<h1>Fleet evaluation</h1><ul>"] + [f"<li>{e(t)}</li>" for t in totals] + ["</ul>"]
    if plot:
        h.append(f"<img src='{plot}' alt='metric distributions'>")
    for title, head, rows in tables:
        h.append(
            f"<h2>{e(title)}</h2><table border='1'><tr>" + "".join(f"<th>{e(c)}</th>" for c in head) + "</tr>"
        )
        h += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        h.append("</table>")
    h.append("</body></html>")
    (out / "fleet.md").write_text("\n".join(md))
    (out / "fleet.html").write_text("\n".join(h))
    return {
        "fleet_md": str(out / "fleet.md"),
        "fleet_html": str(out / "fleet.html"),
        "summary": str(out / SUMMARY),
    }


class _BagWorker:
    """A Ray actor holding one loaded model; runs one task per call with :func:`run_task`, on
    the CPUs Ray gave it (``threads`` for torch and ONNX Runtime alike)."""

    def __init__(self, config: EvalConfig, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        from ..models import get_model_info

        self.config = dataclasses.replace(config, threads=max(1, threads))
        mono = get_model_info(config.model).num_cameras == 1
        self.engine = _load_engine(self.config) if mono else None

    def run(self, task: Task, bags_dir: str) -> dict:
        return run_task(self.config, task, bags_dir, self.engine)

    def pid(self) -> int:
        return os.getpid()


def start_ray(address: str = "local", num_cpus: int | None = None) -> bool:
    """Connect to Ray: ``local`` starts one on this machine, bound to 127.0.0.1, without dashboard
    or usage statistics; else join the cluster at ``address``. False if already connected."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "local" and "ray" not in sys.modules:
        # Ray replaces a node address of 127.0.0.1 by the machine's routable one unless it believes
        # it runs outside a cluster (read when ray is imported): a local run stays on loopback
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            configure_logging=False,
            log_to_driver=False,
        )
    else:
        ray.init(address=address, configure_logging=False, log_to_driver=False)
    return True


def on_actors_as_done(actors: list, items: list, submit):
    """Ray scheduling for model-holding actors: every idle actor takes the next item
    (``submit(actor, item)`` returns its object ref); yields ``(item, result)`` as each finishes,
    the result being a ``ray.exceptions.RayError`` when the item failed (after Ray's retries)."""
    import ray

    queue, running, idle = list(items), {}, list(actors)
    while queue or running:
        while queue and idle:
            actor, item = idle.pop(0), queue.pop(0)
            running[submit(actor, item)] = (actor, item)
        done, _ = ray.wait(list(running), num_returns=1)
        for ref in done:
            actor, item = running.pop(ref)
            idle.append(actor)
            try:
                yield item, ray.get(ref)
            except ray.exceptions.RayError as exc:
                yield item, exc


@dataclasses.dataclass(frozen=True)
class RayPool:
    """Where and how big the Ray actors of a fleet command are: ``address`` ("local": a Ray on
    this machine, :func:`start_ray`), ``num_cpus``/``num_gpus`` per actor, ``workers`` actors (0: as
    many as the cluster's CPUs hold), ``max_retries`` restarts of a killed actor and retries of
    its task."""

    address: str = "local"
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    workers: int = 0
    max_retries: int = 3

    @property
    def threads(self) -> int:
        """CPU threads of one actor's runtime: its whole CPUs."""
        return max(1, int(self.num_cpus))

    def run(self, actor_class, args: tuple, items: list, submit, on_actors=None):
        """Yield ``(item, result)`` for every item as the actors finish them (:func:`on_actors_as_done`;
        a ``RayError`` result is an item whose retries are spent). ``actor_class(*args)`` is
        started on min(workers, len(items)) actors, which ``on_actors`` gets once started. When the
        iteration ends, fails or is closed (Ctrl-C), the actors are killed and a Ray started here
        shut down."""
        import ray

        started = start_ray(self.address)
        actors = []
        try:
            n = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.num_cpus, 1e-3)))
            worker = ray.remote(
                num_cpus=self.num_cpus,
                num_gpus=self.num_gpus,
                max_restarts=self.max_retries,
                max_task_retries=self.max_retries,
            )(actor_class)
            actors = [worker.remote(*args) for _ in range(min(n, len(items)))]
            if on_actors is not None:
                on_actors(actors)
            yield from on_actors_as_done(actors, items, submit)
        finally:
            for a in actors:
                ray.kill(a, no_restart=True)
            if started:
                ray.shutdown()


def ray_runner(pool: RayPool, on_actors=None):
    """A runner for :func:`evaluate_fleet`: one Ray task per bag or segment on model-holding actors
    of ``pool``. A killed actor is restarted and its bag retried (``max_retries``); Ctrl-C kills the
    actors and keeps the finished bags. ``OUT`` must be on a file system every node sees."""

    def run(todo, config: EvalConfig, bags_dir: Path, on_done) -> None:
        if not todo:
            return
        import ray

        results = pool.run(
            _BagWorker,
            (config, pool.threads),
            list(todo),
            lambda a, t: a.run.remote(t, str(bags_dir)),
            on_actors,
        )
        with contextlib.closing(results):
            for task, value in results:
                # a RayError: retries spent or the task raised; this task fails, not the run
                failed = isinstance(value, ray.exceptions.RayError)
                on_done(task.failed(short_reason(value)) if failed else value)

    return run
