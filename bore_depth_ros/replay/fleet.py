"""Evaluation of many recordings (a fleet): bag lists, per-bag results, resume, the fleet report.

ROS-free orchestration around :func:`evaluate`: every bag is evaluated by :func:`run_bag` into its
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
_NOT_RESULT = ("bag", "report_dir", "force", "output_bag", "cache_dir")
_FRAME_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "n_valid")


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


@contextlib.contextmanager
def _recording_frames(lines: list, bag: str):
    """Collect one line per scored camera frame while :func:`evaluate` runs in this process.

    evaluate() keeps its per-frame comparisons inside its FrameEvaluator; until it offers a
    per-frame callback, its ``complete`` is wrapped here for the duration of one bag."""
    from . import evaluator as ev_mod

    original = ev_mod.FrameEvaluator.complete

    def complete(self, p, res, infer_ms, preprocess_ms):
        n_metric = len(p.acc.metric)
        original(self, p, res, infer_ms, preprocess_ms)
        if len(p.acc.metric) > n_metric:
            lines.append(
                {
                    "bag": bag,
                    "camera": p.frame.camera.namespace,
                    "topic": p.frame.camera.image,
                    "stamp_ns": int(p.frame.stamp_ns),
                    "metrics": {k: p.acc.metric[-1].get(k) for k in _FRAME_KEYS if k in p.acc.metric[-1]},
                    "median": {k: p.acc.median[-1].get(k) for k in _FRAME_KEYS if k in p.acc.median[-1]},
                    "drops": {},
                }
            )

    ev_mod.FrameEvaluator.complete = complete
    try:
        yield
    finally:
        ev_mod.FrameEvaluator.complete = original


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 500 else text[:497] + "..."


def run_bag(config: EvalConfig, bag: str, bag_id: str, bags_dir: str | Path, engine=None) -> dict:
    """Evaluate one bag into ``bags_dir/<bag_id>/`` and write ``<bag_id>.jsonl`` and
    ``<bag_id>.json`` (temporary names, renamed when complete). Returns the bag's summary; a
    failing bag gives ``status: failed`` and its reason. The same code runs serially and on Ray."""
    from .evaluate import evaluate

    bags_dir = Path(bags_dir)
    report = bags_dir / bag_id
    if report.exists():
        shutil.rmtree(report)  # a previous, unfinished attempt
    cfg = dataclasses.replace(config, bag=bag, report_dir=str(report), force=True, output_bag=None)
    lines: list[dict] = []
    t0 = time.perf_counter()
    summary: dict = {"bag": bag, "id": bag_id}
    try:
        with _recording_frames(lines, bag):
            result = evaluate(cfg, progress=False, engine=engine)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 (one bad bag is reported, the others go on)
        lines = []
        summary.update(status="failed", reason=_reason(exc), error=type(exc).__name__)
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
    seconds = time.perf_counter() - t0
    summary["seconds"] = seconds
    _write_atomic(bags_dir / f"{bag_id}.jsonl", "".join(dumps_line(x) + "\n" for x in lines))
    summary["frames_scored"] = len(lines)
    _write_atomic(bags_dir / f"{bag_id}.json", json.dumps(_num(summary), indent=1, sort_keys=True))
    return summary


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _finished(bags_dir: Path, bag_id: str, bag: str) -> dict | None:
    js, jl = bags_dir / f"{bag_id}.json", bags_dir / f"{bag_id}.jsonl"
    if not (js.is_file() and jl.is_file()):
        return None
    try:
        s = json.loads(js.read_text())
    except ValueError:
        return None
    return s if s.get("bag") == bag else None


def prepare_out(out: Path, config: EvalConfig, bags: list[str], force: bool) -> dict:
    """Create or resume ``out``; returns the manifest. Refuses another config unless ``force``."""
    manifest = {"config": config_key(config), "bags": bags, "ids": bag_ids(bags)}
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

    def update(self, summary: dict) -> None:
        self.frames += int(summary.get("frames_scored", 0))
        dt = time.perf_counter() - self.t0
        self.bar.set_postfix_str(f"{self.frames / dt if dt > 0 else 0:.1f} frames/s")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def evaluate_fleet(
    config: EvalConfig,
    bags: list[str],
    out: str | Path,
    force: bool = False,
    progress: bool = True,
    runner=None,
) -> dict:
    """Evaluate ``bags`` into ``out`` (resuming a run there), then write ``frames.jsonl``,
    ``summary.json`` and the fleet report. ``runner(todo, config, bags_dir, on_done)`` schedules
    the unfinished bags (default: serially in this process, one model for all). Ctrl-C keeps the
    finished bags and re-raises."""
    config.validate()
    out = Path(out)
    manifest = prepare_out(out, config, bags, force)
    bags_dir = out / "bags"
    ids = manifest["ids"]
    results: dict[str, dict] = {}
    todo = []
    for bag, bid in zip(bags, ids, strict=True):
        s = _finished(bags_dir, bid, bag)
        if s is None:
            todo.append((bag, bid))
        else:
            results[bid] = s
    bar = _Progress(len(bags), len(results), progress)
    t0 = time.perf_counter()

    def on_done(summary: dict) -> None:
        results[summary["id"]] = summary
        bar.update(summary)

    try:
        (runner or run_serial)(todo, config, bags_dir, on_done)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    return write_fleet_outputs(out, bags, ids, results, wall, resumed=len(bags) - len(todo))


def run_serial(todo, config: EvalConfig, bags_dir: Path, on_done) -> None:
    """One bag after the other in this process; one loaded model reused (mono models)."""
    from ..models import get_model_info

    engine = None
    for bag, bid in todo:
        if engine is None and get_model_info(config.model).num_cameras == 1:
            engine = _load_engine(config)
        on_done(run_bag(config, bag, bid, bags_dir, engine))


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
        "overall": _fleet_means(ok),
        "per_bag": per_bag,
    }
    _write_atomic(out / SUMMARY, json.dumps(_num(summary), indent=1, sort_keys=True))
    summary["paths"] = write_fleet_report(summary, out)
    return summary


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
    """A Ray actor holding one loaded model; evaluates one bag per call with :func:`run_bag`."""

    def __init__(self, config: EvalConfig, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        from ..models import get_model_info

        self.config = config
        self.engine = _load_engine(config) if get_model_info(config.model).num_cameras == 1 else None

    def run(self, bag: str, bag_id: str, bags_dir: str) -> dict:
        return run_bag(self.config, bag, bag_id, bags_dir, self.engine)

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


def ray_runner(
    address: str = "local",
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    workers: int = 0,
    max_retries: int = 3,
    on_actors=None,
):
    """A runner for :func:`evaluate_fleet`: one Ray task per bag on model-holding actors
    (``num_cpus``/``num_gpus`` each; ``workers`` actors, 0: as many as the cluster's CPUs hold).
    A killed actor is restarted and its bag retried (``max_retries``); Ctrl-C kills the actors and
    keeps the finished bags. ``OUT`` must be on a file system every node sees."""

    def run(todo, config: EvalConfig, bags_dir: Path, on_done) -> None:
        if not todo:
            return
        import ray

        started = start_ray(address)
        actors = []
        try:
            n = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(num_cpus, 1e-3)))
            worker = ray.remote(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                max_restarts=max_retries,
                max_task_retries=max_retries,
            )(_BagWorker)
            threads = max(1, int(num_cpus))
            actors = [worker.remote(config, threads) for _ in range(min(n, len(todo)))]
            if on_actors is not None:
                on_actors(actors)
            queue = list(todo)
            running, refs_bag = {}, {}
            idle = list(actors)
            while queue or running:
                while queue and idle:
                    actor = idle.pop(0)
                    bag, bid = queue.pop(0)
                    ref = actor.run.remote(bag, bid, str(bags_dir))
                    running[ref], refs_bag[ref] = actor, (bag, bid)
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    idle.append(running.pop(ref))
                    bag, bid = refs_bag.pop(ref)
                    try:
                        on_done(ray.get(ref))
                    except ray.exceptions.RayError as exc:  # retries spent: this bag fails, not the run
                        on_done({"bag": bag, "id": bid, "status": "failed", "reason": _reason(exc)})
        finally:
            for a in actors:
                ray.kill(a, no_restart=True)
            if started:
                ray.shutdown()

    return run
