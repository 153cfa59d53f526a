"""Evaluation report: metrics.json, report.md, a self-contained report.html, plots and picture panels.

Everything is written from the summary dictionary of an evaluation (``EvalResult.to_dict()``), so a
report can be regenerated from metrics.json alone.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from ..core.metrics import METRIC_NAMES

METRIC_LABELS = {
    "abs_rel": "AbsRel",
    "sq_rel": "SqRel",
    "rmse": "RMSE",
    "rmse_log": "RMSElog",
    "a1": "δ<1.25",
    "a2": "δ<1.25²",
    "a3": "δ<1.25³",
}
BOUNDARY_LABELS = {
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "dbe_acc": "DBE acc (px)",
    "dbe_comp": "DBE comp (px)",
}
PLOT_NAME = "error_vs_distance.png"
STABILITY_PLOT_NAME = "temporal_stability.png"
STABILITY_TITLE = "Temporal stability"
STABILITY_METHODS = {
    "tf_warp": "TF-warped depth change",
    "scale_change": "median-scale change",
}


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def _json_safe(obj):
    """NaN/inf become null (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def save_panel(
    path: Path,
    rgb: np.ndarray,
    pred: np.ndarray,
    conf: np.ndarray,
    gt: np.ndarray,
    min_depth: float,
    max_depth: float,
    median_scale: float | None = None,
) -> None:
    """input | predicted depth | confidence | ground truth | abs-rel error (0-0.5), one PNG.

    ``median_scale``: a relative model's frame, shown and scored after median scaling (the factor
    its median-scaled figures use), so depth colours and error match the ground truth's scale."""
    from ..viz import colorize, colorize_depth, panel, save_png

    scaled = median_scale is not None and math.isfinite(median_scale) and median_scale > 0
    if scaled:
        pred = pred * np.float32(median_scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        gt_ok = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
        err = np.where(
            gt_ok & np.isfinite(pred), np.abs(np.clip(pred, min_depth, max_depth) - gt) / gt, np.nan
        )
    finite = gt[gt_ok]
    vmax = float(np.percentile(finite, 95)) if finite.size else None
    images = [
        np.ascontiguousarray(rgb),
        colorize_depth(pred, vmax),
        colorize(conf, 0.0, 1.0, "viridis"),
        colorize_depth(np.where(gt_ok, gt, np.nan), vmax),
        colorize(err, 0.0, 0.5, "magma"),
    ]
    labels = ["input", "predicted depth", "confidence", "ground truth", "abs rel error 0-0.5"]
    if scaled:
        labels[1] = f"predicted depth, median-scaled (x{median_scale:.3g})"
        labels[4] = "abs rel error, median-scaled, 0-0.5"
    save_png(Path(path), panel(images, labels))


def plot_error_vs_distance(summary: dict, path: Path) -> None:
    """AbsRel per GT-distance bin, per camera; solid = metric, dashed = median-scaled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    series = [(c["namespace"], c["distance_bins"]) for c in summary["cameras"] if c["frames"]]
    if len(series) > 1:
        series.append(("overall", summary["overall"]["distance_bins"]))
    labels = None
    for i, (name, rows) in enumerate(series):
        labels = [f"{r['lo']:g}-{r['hi']:g}" for r in rows]
        x = np.arange(len(rows))
        colour = f"C{i % 10}"
        for key, style, tag in (("abs_rel_metric", "-o", "metric"), ("abs_rel_median", "--s", "median")):
            y = np.array([np.nan if r[key] is None else r[key] for r in rows], np.float64)
            ax.plot(
                x,
                y,
                style,
                color=colour,
                label=f"{name} ({tag})",
                linewidth=2.5 if name == "overall" else 1.5,
            )
    if labels:
        ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_xlabel("ground-truth distance (m)")
    ax.set_ylabel("AbsRel")
    ax.set_title("Error versus distance")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def _stability_series(summary: dict) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(camera, method, t, value) of every camera with scored pairs."""
    out = []
    for c in summary["cameras"]:
        s = c.get("temporal_stability") or {}
        if s.get("pairs"):
            t = np.array([np.nan if x is None else x for x in s["t"]], np.float64)
            v = np.array([np.nan if x is None else x for x in s["value"]], np.float64)
            out.append((c["namespace"], s["method"], t, v))
    return out


def plot_temporal_stability(summary: dict, path: Path) -> None:
    """Per camera, the change of the prediction between consecutive frames over time (one line
    each; dashed = median-scale change, where the camera had no TF ego motion)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    series = _stability_series(summary)
    t0 = min((float(np.nanmin(t)) for _, _, t, _ in series if np.isfinite(t).any()), default=0.0)
    for i, (name, method, t, v) in enumerate(series):
        ax.plot(
            t - t0,
            100.0 * v,
            "-o" if method == "tf_warp" else "--s",
            color=f"C{i % 10}",
            markersize=3,
            linewidth=1.5,
            label=f"{name} ({STABILITY_METHODS.get(method, method)})",
        )
    ax.set_xlabel("stamp of the later frame (s after the first pair)")
    ax.set_ylabel("change between frames (%)")
    ax.set_title("Temporal stability (0 = the same depth for the same static surface)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def _stability_table(summary: dict) -> tuple[str, list[str], list[list[str]], str]:
    rows = []
    for c in summary["cameras"]:
        s = c.get("temporal_stability") or {}
        if not s:
            continue
        sc = s.get("scale_change") or {}
        skipped = ", ".join(f"{k} {n}" for k, n in (s.get("skipped") or {}).items())
        rows.append(
            [
                c["namespace"],
                s["method"],
                str(s.get("pairs", 0)),
                _fmt(s.get("median"), 4),
                _fmt(s.get("p90"), 4),
                _fmt(s.get("mean"), 4),
                _fmt(sc.get("median"), 4),
                s.get("moving_excluded", "none") if s["method"] == "tf_warp" else "–",
                skipped,
            ]
        )
    o = summary["overall"].get("temporal_stability")
    if o and len(rows) > 1:
        rows.append(
            [
                f"overall ({o['cameras']} cameras)",
                o["method"],
                str(o["pairs"]),
                _fmt(o["median"], 4),
                _fmt(o["p90"], 4),
                "",
                "",
                "",
                "",
            ]
        )
    fixed = summary["config"].get("odom_frame", "odom")
    note = (
        "Change of the predicted depth between consecutive frames of a camera, per pair of frames, "
        "median and p90 over the pairs (0 = stable). tf_warp: the previous prediction "
        f"back-projected, moved by the camera's ego motion in '{fixed}' from TF, projected into "
        "the current image; median |z_warped − d_cur| / d_cur over pixels valid in both. Moving "
        "objects are left out where dense ground truth shows them (moving excluded: ground_truth); "
        "with LiDAR ground truth they add to the figure. scale_change (cameras without TF ego "
        "motion; also given for every camera): |s_t / s_t−1 − 1| of the per-frame median-scaling "
        "factor s = median(GT) / median(prediction)."
    )
    head = ["camera", "method", "pairs", "median", "p90", "mean", "scale change median", "moving excluded"]
    return (STABILITY_TITLE, head + ["pairs not scored"], rows, note)


def _metric_rows(summary: dict, mode: str) -> list[list[str]]:
    rows = []
    for c in summary["cameras"]:
        rows.append(
            [c["namespace"], str(c["frames"]), c["gt_source"]] + [_fmt(c[mode].get(k)) for k in METRIC_NAMES]
        )
    o = summary["overall"]
    rows.append(
        [
            f"overall ({o['cameras']} cameras)",
            str(sum(c["frames"] for c in summary["cameras"])),
            "mean of cameras",
        ]
        + [_fmt(o[mode].get(k)) for k in METRIC_NAMES]
    )
    return rows


def _image_kind(c: dict) -> str:
    kind = "CompressedImage" if c.get("image_type", "").endswith("CompressedImage") else "Image"
    enc = c.get("image_encoding", "")
    return f"{kind} ({enc})" if enc else kind


def _gt_kind(c: dict) -> str:
    kind = c.get("gt_kind") or c["gt_source"].split(":", 1)[0]
    return "LiDAR points (PointCloud2)" if kind == "lidar" else "dense depth image"


def _tables(summary: dict) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(title, header, rows, note) for every table of the report."""
    cfg, eng = summary["config"], summary["engine"]
    run = [
        ["bag", str(cfg["bag"])],
        ["cameras", ", ".join(c["image_topic"] for c in summary["cameras"])],
        ["ground truth", ", ".join(f"{c['namespace']}: {c['gt_source']}" for c in summary["cameras"])],
        ["model", str(eng.get("model", cfg["model"]))],
        ["weights", str(eng.get("weights_source", ""))],
        ["backend", f"{eng.get('backend', cfg['backend'])} ({eng.get('providers', eng.get('device', ''))})"],
        ["model input", str(eng.get("input", f"{cfg['input_height']}x{cfg['input_width']}"))],
        [
            "scale mode",
            f"{cfg['scale_mode']} (depth_scale {cfg['depth_scale']:g}, camera_height "
            f"{cfg['camera_height']:g} m{' = from TF' if not cfg['camera_height'] else ''}, scale_smoothing "
            f"{cfg.get('scale_smoothing', 0.3):g})",
        ],
        ["depth caps", f"{cfg['min_depth']:g} – {cfg['max_depth']:g} m"],
        ["confidence threshold", f"{cfg['confidence_threshold']:g}"],
        ["max frames", str(cfg["max_frames"] or "all")],
    ]
    tables = [("Run", ["setting", "value"], run, "")]
    topics = [
        [
            c["namespace"],
            c["image_topic"],
            _image_kind(c),
            c.get("camera_info_topic", ""),
            c.get("gt_topic", c["gt_source"].split(":", 1)[-1]),
            _gt_kind(c),
        ]
        for c in summary["cameras"]
    ]
    tables.append(
        (
            "Topics",
            ["camera", "image", "image type", "camera_info", "ground truth", "ground-truth kind"],
            topics,
            "What was paired per camera: images with camera_info by the nodes' policy (exact stamp, "
            "else the newest), depth ground truth by exact stamp, LiDAR by nearest stamp within "
            f"{cfg.get('lidar_max_dt', 0.1):g} s, projected through TF.",
        )
    )
    head = ["camera", "frames", "ground truth"] + [METRIC_LABELS[k] for k in METRIC_NAMES]
    tables.append(
        (
            "Metrics – prediction as published (metric)",
            head,
            _metric_rows(summary, "metric"),
            "Overall = mean of the per-camera means (each camera: mean of per-frame metrics).",
        )
    )
    tables.append(("Metrics – median-scaled per frame", head, _metric_rows(summary, "median"), ""))
    brows = [
        [c["namespace"]]
        + [_fmt(c["boundary"].get(k)) for k in BOUNDARY_LABELS]
        + [str(c["boundary"]["n_gt"]), str(c["boundary"]["n_pred"])]
        for c in summary["cameras"]
        if c["boundary"]
    ]
    if summary["overall"].get("boundary"):
        brows.append(
            ["overall"] + [_fmt(summary["overall"]["boundary"].get(k)) for k in BOUNDARY_LABELS] + ["", ""]
        )
    tables.append(
        (
            "Depth boundaries",
            ["camera"] + list(BOUNDARY_LABELS.values()) + ["GT edge px", "pred edge px"],
            brows,
            f"Edges: relative depth jump > {cfg['edge_threshold']:g} between 4-neighbours; "
            f"matched within {cfg['edge_radius']:g} px; DBE as iBims-1 (10 px cap). "
            "Dense depth ground truth only."
            if brows
            else "No dense depth ground truth: boundary metrics not computed.",
        )
    )
    drow = []
    for c in summary["cameras"]:
        for reason, n in c["drops"].items():
            drow.append([c["namespace"], reason, str(n), summary["drop_details"].get(reason, "")])
    f = summary["frames"]
    tables.append(
        (
            "Frames and drops",
            ["camera", "reason", "count", "example"],
            drow,
            f"{f['images_read']} images read, {f['evaluated']} frames evaluated, {f['dropped']} "
            f"messages dropped, {f.get('without_valid_gt', 0)} evaluated frames without valid "
            "ground truth.",
        )
    )
    tables.append(_stability_table(summary))
    t = summary["timing"]
    stage = [(k, v) for k, v in t.items() if k.endswith("_ms")]
    total = sum(v for _, v in stage)
    trow = [
        [k[:-3].replace("_", " "), _fmt(v, 2), _fmt(100 * v / total, 1) if total else "–"]
        for k, v in sorted(stage, key=lambda kv: -kv[1])
    ]
    tables.append(
        (
            "Timing per evaluated frame",
            ["stage", "ms", "%"],
            trow,
            f"{_fmt(t.get('frames_per_second'), 2)} camera frames per second over "
            f"{_fmt(t.get('loop_s'), 1)} s; engine load {_fmt(t.get('engine_load_s'), 1)} s.",
        )
    )
    bins_head = ["camera", "bin (m)", "pixels", "AbsRel metric", "AbsRel median-scaled"]
    bins_rows = []
    for c in summary["cameras"] + [
        {"namespace": "overall", "distance_bins": summary["overall"]["distance_bins"]}
    ]:
        for r in c["distance_bins"]:
            bins_rows.append(
                [
                    c["namespace"],
                    f"{r['lo']:g}–{r['hi']:g}",
                    str(r["pixels"]),
                    _fmt(r["abs_rel_metric"]),
                    _fmt(r["abs_rel_median"]),
                ]
            )
    tables.append(
        (
            "Error versus distance",
            bins_head,
            bins_rows,
            "Pixel-weighted AbsRel per ground-truth distance bin; overall = mean over cameras.",
        )
    )
    conf_rows = []
    for c in summary["cameras"] + [
        {"namespace": "overall", "confidence_curve": summary["overall"].get("confidence_curve", [])}
    ]:
        for r in c.get("confidence_curve") or []:
            conf_rows.append(
                [
                    c["namespace"],
                    f"{100 * r['keep']:g} %",
                    _fmt(r["abs_rel_metric"]),
                    _fmt(r["abs_rel_median"]),
                ]
            )
    tables.append(
        (
            "Confidence: error of the most confident pixels",
            ["camera", "most confident", "AbsRel metric", "AbsRel median-scaled"],
            conf_rows,
            "AbsRel over each frame's most confident fraction of the valid pixels, mean over "
            "frames (a sparsification curve): a confidence worth thresholding gives lower figures "
            "for smaller fractions.",
        )
    )
    return tables


def _markdown(summary: dict, tables, plot: str | None, stability_plot: str | None = None) -> str:
    out = ["# bore-depth evaluation", ""]
    for note in summary.get("notes", []):
        out += [f"> {note}", ""]
    for title, head, rows, note in tables:
        out += [f"## {title}", ""]
        if rows:
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            out += ["| " + " | ".join(r.replace("|", "\\|") for r in row) + " |" for row in rows]
            out.append("")
        if note:
            out += [note, ""]
        if title == "Error versus distance" and plot:
            out += [f"![error versus distance]({plot})", ""]
        if title == STABILITY_TITLE and stability_plot:
            out += [f"![temporal stability]({stability_plot})", ""]
    out += ["## Panels", "", "input | predicted depth | confidence | ground truth | abs-rel error", ""]
    for c in summary["cameras"]:
        for p in c["panels"]:
            out += [f"![{c['namespace']}]({p})", ""]
    paths = summary.get("paths", {})
    if paths.get("output_bag"):
        out += [f"Output bag: `{paths['output_bag']}`", ""]
    return "\n".join(out)


def _html(summary: dict, tables, plot: str | None, stability_plot: str | None = None) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>bore-depth evaluation</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#eee}"
        ".note{color:#555}img{max-width:100%;margin:4px 0}</style></head><body>",
        "<h1>bore-depth evaluation</h1>",
    ]
    for note in summary.get("notes", []):
        parts.append(f"<p class='note'><b>Note:</b> {e(note)}</p>")
    for title, head, rows, note in tables:
        parts.append(f"<h2>{e(title)}</h2>")
        if rows:
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in rows]
            parts.append("</table>")
        if note:
            parts.append(f"<p class='note'>{e(note)}</p>")
        if title == "Error versus distance" and plot:
            parts.append(f"<img src='{e(plot)}' alt='error versus distance'>")
        if title == STABILITY_TITLE and stability_plot:
            parts.append(f"<img src='{e(stability_plot)}' alt='temporal stability'>")
    parts.append(
        "<h2>Panels</h2><p class='note'>input | predicted depth | confidence | ground truth | "
        "abs-rel error (0–0.5)</p>"
    )
    for c in summary["cameras"]:
        for p in c["panels"]:
            parts.append(f"<div><img src='{e(p)}' alt='{e(c['namespace'])}'></div>")
    if summary.get("paths", {}).get("output_bag"):
        parts.append(f"<p>Output bag: <code>{e(summary['paths']['output_bag'])}</code></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(summary: dict, out_dir: str | Path) -> dict[str, str]:
    """Write metrics.json, error_vs_distance.png, temporal_stability.png, report.md and
    report.html; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics_json": str(out / "metrics.json"),
        "report_md": str(out / "report.md"),
        "report_html": str(out / "report.html"),
    }
    plot = None
    if any(c["frames"] for c in summary["cameras"]):
        plot_error_vs_distance(summary, out / PLOT_NAME)
        plot = PLOT_NAME
        paths["plot"] = str(out / PLOT_NAME)
    stability_plot = None
    if _stability_series(summary):
        plot_temporal_stability(summary, out / STABILITY_PLOT_NAME)
        stability_plot = STABILITY_PLOT_NAME
        paths["stability_plot"] = str(out / STABILITY_PLOT_NAME)
    paths["panels"] = [str(out / p) for c in summary["cameras"] for p in c["panels"]]
    summary = dict(summary)
    summary["paths"] = {**summary.get("paths", {}), **paths}
    tables = _tables(summary)
    (out / "metrics.json").write_text(json.dumps(_json_safe(summary), indent=2, ensure_ascii=False))
    (out / "report.md").write_text(_markdown(summary, tables, plot, stability_plot), encoding="utf-8")
    (out / "report.html").write_text(_html(summary, tables, plot, stability_plot), encoding="utf-8")
    return paths
