"""Pictures a person can look at: colourised depth/confidence, side-by-side panels, PLY clouds."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def colorize(
    values: np.ndarray, vmin: float, vmax: float, cmap: str = "turbo", invalid=(0, 0, 0)
) -> np.ndarray:
    """(H, W) float -> (H, W, 3) uint8 through a matplotlib colormap; non-finite -> ``invalid``."""
    import matplotlib

    lut = (matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    v = np.asarray(values, np.float32)
    finite = np.isfinite(v)
    idx = np.zeros(v.shape, np.int64)
    span = max(vmax - vmin, 1e-9)
    idx[finite] = np.clip((v[finite] - vmin) / span * 255, 0, 255).astype(np.int64)
    out = lut[idx]
    out[~finite] = invalid
    return out


def colorize_depth(depth: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Near = warm, far = cold, using inverse depth so near structure stays visible."""
    d = np.asarray(depth, np.float32)
    finite = np.isfinite(d) & (d > 0)
    if vmax is None:
        vmax = float(np.percentile(d[finite], 95)) if finite.any() else 1.0
    inv = np.where(finite, 1.0 / np.maximum(d, 1e-6), np.nan)
    return colorize(inv, 1.0 / vmax, float(np.nanmax(inv)) if finite.any() else 1.0)


def panel(images: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """Images of equal height side by side, each with a caption strip."""
    from PIL import Image, ImageDraw

    h = max(im.shape[0] for im in images)
    tiles = []
    for im, label in zip(images, labels):
        tile = Image.new("RGB", (im.shape[1], h + 16), (255, 255, 255))
        tile.paste(Image.fromarray(im), (0, 16))
        ImageDraw.Draw(tile).text((3, 2), label, fill=(0, 0, 0))
        tiles.append(np.asarray(tile))
    return np.concatenate(tiles, axis=1)


def save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(rgb)).save(path)


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray | None = None) -> int:
    """ASCII-free binary little-endian PLY of the finite points; returns the point count."""
    pts = xyz.reshape(-1, 3)
    keep = np.isfinite(pts).all(axis=1)
    pts = pts[keep].astype("<f4")
    cols = None if rgb is None else rgb.reshape(-1, 3)[keep].astype(np.uint8)
    props = "property float x\nproperty float y\nproperty float z\n"
    if cols is not None:
        props += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        rec = np.empty(len(pts), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
        rec["p"], rec["c"] = pts, cols
    else:
        rec = pts
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n{props}end_header\n"
    with open(path, "wb") as f:
        f.write(header.encode())
        f.write(rec.tobytes())
    return len(pts)
