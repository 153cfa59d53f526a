"""Bilinear and nearest resizing with the half-pixel-centre convention, in numpy only.

``resize_bilinear`` matches ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
antialias=False)`` (and OpenCV ``INTER_LINEAR``); ``resize_nearest`` matches torch ``"nearest-exact"``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # cached tables are shared between calls
    return a


def _axis_linear(n_in: int, n_out: int):
    """Source indices (i0, i1) and float32 weights (w0, w1) along one axis, bit-identical to torch's.

    torch evaluates scale * (dst + 0.5) - 0.5 with a float32 scale and a single rounding (fused
    multiply-add); the exact product in float64 rounded once to float32 reproduces that.
    """
    f32 = np.float32
    scale = np.float64(f32(n_in) / f32(n_out))
    src = (scale * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5).astype(f32)
    np.maximum(src, f32(0.0), out=src)
    i0 = np.minimum(src.astype(np.intp), n_in - 1)  # src >= 0, so truncation is floor
    lam = np.clip(src - i0.astype(f32), f32(0.0), f32(1.0))
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return _frozen(i0), _frozen(i1), _frozen(f32(1.0) - lam), _frozen(lam)


@lru_cache(maxsize=64)
def bilinear_tables(in_h: int, in_w: int, out_h: int, out_w: int):
    """((y0, y1, wy0, wy1), (x0, x1, wx0, wx1)) for resizing (in_h, in_w) to (out_h, out_w)."""
    return _axis_linear(in_h, out_h), _axis_linear(in_w, out_w)


def _axis_nearest(n_in: int, n_out: int) -> np.ndarray:
    # torch: floorf((dst + 0.5) * scale) with a float32 scale and a double product rounded to float32;
    # replicated so exact ties (e.g. 48 -> 37) resolve to the same source pixel as torch.
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    src = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale).astype(np.float32)
    return _frozen(np.minimum(np.floor(src).astype(np.intp), n_in - 1))


@lru_cache(maxsize=64)
def nearest_tables(in_h: int, in_w: int, out_h: int, out_w: int):
    """(rows, cols) source indices, floor((dst + 0.5) * in / out) clamped, as torch "nearest-exact"."""
    return _axis_nearest(in_h, out_h), _axis_nearest(in_w, out_w)


def _check(img: np.ndarray, out_h: int, out_w: int):
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {img.shape}")
    out_h, out_w = int(out_h), int(out_w)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive, got {out_h}x{out_w}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"cannot resize an empty image of shape {img.shape}")
    return out_h, out_w


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) uint8/float image to (out_h, out_w[, C]) float32, bilinearly.

    Half-pixel centres, no antialiasing. As in torch, a non-finite neighbour makes the output
    non-finite even where its weight is 0 (NaN * 0 is NaN), so NaN holes grow by up to one source
    pixel; at identity size the result is a float32 copy of the input.
    """
    img = np.asarray(img)
    out_h, out_w = _check(img, out_h, out_w)
    in_h, in_w = img.shape[:2]
    if (in_h, in_w) == (out_h, out_w):
        return img.astype(np.float32, copy=True)
    (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = bilinear_tables(in_h, in_w, out_h, out_w)
    if img.dtype != np.uint8 and img.dtype != np.float32:
        img = img.astype(np.float32)
    # Broadcast the weights over the trailing (channel) axis when there is one.
    ch = (slice(None),) + (None,) * (img.ndim - 1)
    cw = (slice(None),) + (None,) * (img.ndim - 2)
    # Separable: interpolate along the axis whose pass leaves less intermediate work first.
    if out_h * in_w <= in_h * out_w:  # rows first
        tmp = np.multiply(img[y0], wy0[ch], dtype=np.float32)
        tmp += np.multiply(img[y1], wy1[ch], dtype=np.float32)
        out = np.take(tmp, x0, axis=1)
        out *= wx0[cw]
        part = np.take(tmp, x1, axis=1)
        part *= wx1[cw]
    else:  # columns first
        tmp = np.multiply(np.take(img, x0, axis=1), wx0[cw], dtype=np.float32)
        tmp += np.multiply(np.take(img, x1, axis=1), wx1[cw], dtype=np.float32)
        out = tmp[y0]
        out *= wy0[ch]
        part = tmp[y1]
        part *= wy1[ch]
    out += part
    return out


def resize_nearest(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) array of any dtype by nearest neighbour (half-pixel centres).

    The dtype is kept (masks, labels); at identity size a copy is returned.
    """
    img = np.asarray(img)
    out_h, out_w = _check(img, out_h, out_w)
    in_h, in_w = img.shape[:2]
    if (in_h, in_w) == (out_h, out_w):
        return img.copy()
    rows, cols = nearest_tables(in_h, in_w, out_h, out_w)
    return img[rows[:, None], cols]
