"""Held-out figures of one set of weights over several recordings, through ``bore-depth eval``.

The one way the project scores weights on held-out data: the trainer's card at the end of a run
(``train.trainer``) and the cards of the embedded defaults (``tools/make_cards.py``) both call
:func:`heldout_figures`, which runs :func:`~.evaluate.evaluate` (the per-frame path of the nodes:
decoding, the engine, the view post-processing) on each recording and averages its overall
figures: metric and median-scaled depth metrics, depth-boundary F1 and temporal stability.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .config import EvalConfig
from .evaluate import evaluate

KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def _finite(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _mean(values):
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def report_folders(bags: list[str | Path], report_root: Path) -> list[Path]:
    """One report folder per recording under ``report_root``, named after the recording (prefixed
    with its position when two recordings share a name)."""
    names = [Path(b).name for b in bags]
    return [report_root / (n if names.count(n) == 1 else f"{k}_{n}") for k, n in enumerate(names)]


def heldout_figures(
    model: str,
    weights: str,
    bags: list[str | Path],
    report_root: Path,
    *,
    cameras: list[str] | None = None,
    force: bool = False,
    progress: bool = False,
    **eval_options,
) -> dict:
    """Figures of ``weights`` on each recording of ``bags`` and their mean over recordings.

    Every recording gets ``bore-depth eval``'s report in its folder of :func:`report_folders`
    (``force`` replaces one that exists). ``cameras``: image topics or camera namespaces
    (resolved per recording, :func:`~bore_depth_ros.bag.reader.image_topics_for`); ``None``:
    every camera. ``eval_options``: further :class:`~.config.EvalConfig` fields (backend,
    input_height, min_depth, max_frames, ...).
    """
    from ..bag.reader import image_topics_for, open_bag

    per = {}
    for bag, folder in zip(bags, report_folders(bags, report_root), strict=True):
        topics = None
        if cameras:
            with open_bag(str(bag)) as reader:
                topics = image_topics_for(reader, cameras)
        res = evaluate(
            EvalConfig(
                bag=str(bag),
                model=model,
                weights=str(weights),
                cameras=topics,
                report_dir=str(folder),
                force=force,
                **eval_options,
            ),
            progress=progress,
        )
        o = res.overall
        ts = o.get("temporal_stability") or {}
        per[folder.name] = {
            "views": res.frames["evaluated"],
            "input": res.engine.get("input"),
            "metric": {k: _finite(o["metric"].get(k)) for k in KEYS},
            "median_scaled": {k: _finite(o["median"].get(k)) for k in KEYS},
            "boundary_f1": _finite((o.get("boundary") or {}).get("f1")),
            "temporal_stability": {k: _finite(ts.get(k)) for k in ("method", "median", "p90", "pairs")},
            "report": str(folder / "report.html"),
        }
    rows = list(per.values())
    return {
        "views": sum(r["views"] for r in rows),
        "input": rows[0]["input"] if rows else None,
        "metric": {k: _mean(r["metric"][k] for r in rows) for k in KEYS},
        "median_scaled": {k: _mean(r["median_scaled"][k] for r in rows) for k in KEYS},
        "boundary_f1": _mean(r["boundary_f1"] for r in rows),
        "temporal_stability_median": _mean(r["temporal_stability"]["median"] for r in rows),
        "per_recording": per,
    }
