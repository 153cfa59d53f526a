"""Procedural meshes and textures of the street scenes (numpy only): box and ground-grid meshes
with texture coordinates, and seeded road, terrain, facade, vehicle and pattern textures."""

from __future__ import annotations

import numpy as np


def box_mesh(half, tile=None):
    """Vertices, normals, uvs, indices of a box; uvs in metres / tile when given, else 0..1 per face."""
    ext = np.asarray(half, np.float64)
    verts, norms, uvs, idx = [], [], [], []
    # (normal axis, sign, in-plane axes a and b)
    for axis, sign, a, b in (
        (0, 1, 1, 2),
        (0, -1, 1, 2),
        (1, 1, 0, 2),
        (1, -1, 0, 2),
        (2, 1, 0, 1),
        (2, -1, 0, 1),
    ):
        base = len(verts)
        for ua, vb in ((0, 0), (1, 0), (1, 1), (0, 1)):
            q = np.zeros(3)
            q[axis] = sign * ext[axis]
            q[a] = (2 * ua - 1) * ext[a]
            q[b] = (2 * vb - 1) * ext[b]
            n = np.zeros(3)
            n[axis] = sign
            verts.append(q.tolist())
            norms.append(n.tolist())
            if tile is None:
                uvs.append([float(ua), float(vb)])
            else:
                uvs.append([ua * 2 * ext[a] / tile[0], vb * 2 * ext[b] / tile[1]])
        # TinyRenderer culls back faces: wind counter-clockwise seen from outside
        if sign * np.cross(np.eye(3)[a], np.eye(3)[b])[axis] > 0:
            idx += [base, base + 1, base + 2, base, base + 2, base + 3]
        else:
            idx += [base, base + 2, base + 1, base, base + 3, base + 2]
    return verts, norms, uvs, idx


def grid_mesh(x0, x1, y0, y1, cell, tile, uv_origin):
    """Horizontal quad grid at z = 0 with uvs (y - oy) / tile_y, (x - ox) / tile_x (kept positive)."""
    xs = np.linspace(x0, x1, max(2, int(np.ceil((x1 - x0) / cell)) + 1))
    ys = np.linspace(y0, y1, max(2, int(np.ceil((y1 - y0) / cell)) + 1))
    verts, uvs = [], []
    for x in xs:
        for y in ys:
            verts.append([float(x), float(y), 0.0])
            uvs.append([(y - uv_origin[1]) / tile[1], (x - uv_origin[0]) / tile[0]])
    ny = len(ys)
    idx = []
    for i in range(len(xs) - 1):
        for j in range(ny - 1):
            a, b, c, d = i * ny + j, i * ny + j + 1, (i + 1) * ny + j + 1, (i + 1) * ny + j
            idx += [a, c, b, a, d, c]  # counter-clockwise seen from above
    return verts, [[0.0, 0.0, 1.0]] * len(verts), uvs, idx


# --- procedural textures (uint8 RGB, light so that rgba tints act as colours) -------------------


def smooth_noise(rng, h, w, cells):
    """Value noise: a coarse random grid upsampled bilinearly to (h, w), values in [0, 1]."""
    ch, cw = max(2, h // cells), max(2, w // cells)
    g = rng.random((ch + 1, cw + 1))
    yy = np.linspace(0, ch, h, endpoint=False)
    xx = np.linspace(0, cw, w, endpoint=False)
    y0, x0 = yy.astype(int), xx.astype(int)
    fy, fx = (yy - y0)[:, None], (xx - x0)[None, :]
    top = g[y0][:, x0] * (1 - fx) + g[y0][:, x0 + 1] * fx
    bot = g[y0 + 1][:, x0] * (1 - fx) + g[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def to_rgb(gray, tint=(1.0, 1.0, 1.0)):
    return np.clip(gray[..., None] * np.asarray(tint)[None, None, :], 0, 255).astype(np.uint8)


def road_texture(rng, road_width, span, tile_len, px_per_m=32):
    """Road strip across y in [-span/2, span/2] (columns) repeating every tile_len along x (rows)."""
    h, w = int(tile_len * px_per_m), int(span * px_per_m)
    y = (np.arange(w) + 0.5) / px_per_m - span / 2
    x = (np.arange(h) + 0.5) / px_per_m
    asphalt = 70 + 25 * smooth_noise(rng, h, w, 24) + 18 * rng.random((h, w))
    img = np.repeat(asphalt[..., None], 3, axis=2)
    ay = np.abs(y)[None, :].repeat(h, 0)
    half = road_width / 2
    walk = ay > half + 2.4
    paving = 175 + 20 * smooth_noise(rng, h, w, 8) + 10 * rng.random((h, w))
    joints = ((x[:, None] % 1.5) < 0.05) | ((ay % 1.5) < 0.05)
    paving = np.where(joints, paving - 60, paving)
    img[walk] = np.stack([paving, paving * 0.97, paving * 0.92], -1)[walk]
    kerb = (ay > half + 2.25) & (ay <= half + 2.4)
    img[kerb] = 215
    edge = np.abs(ay - (half - 0.3)) < 0.08
    img[edge] = 235
    dash = (np.abs(y)[None, :] < 0.07) & ((x[:, None] % 8.0) < 4.0)
    img[dash] = 235
    park = (np.abs(ay - (half + 0.0)) < 0.05) & ((x[:, None] % 6.0) < 0.6)
    img[park] = 225
    return np.clip(img, 0, 255).astype(np.uint8)


def terrain_texture(rng, size=256):
    g = 150 + 60 * smooth_noise(rng, size, size, 16) + 30 * rng.random((size, size))
    return to_rgb(g, (0.75, 0.95, 0.6))


def facade_texture(rng, size=256):
    """Wall with a window grid; the tile is 12 m x 12.8 m (4 bays, 4 floors)."""
    wall = 200 + 30 * smooth_noise(rng, size, size, 12) + 15 * rng.random((size, size))
    img = np.repeat(wall[..., None], 3, axis=2)
    u = (np.arange(size) + 0.5) / size * 12.0
    v = (np.arange(size) + 0.5) / size * 12.8
    win_w, win_h = rng.uniform(0.9, 1.8), rng.uniform(1.2, 2.0)
    win = (np.abs(u % 3.0 - 1.5)[None, :] < win_w / 2) & (np.abs(v % 3.2 - 1.6)[:, None] < win_h / 2)
    glass = 60 + 50 * smooth_noise(rng, size, size, 4)
    img[win] = np.stack([glass * 0.8, glass * 0.9, glass * 1.15], -1)[win]
    return np.clip(img, 0, 255).astype(np.uint8)


def vehicle_texture(rng, size=128):
    """Side view: paint, a dark window band in the upper part, dark wheel arches."""
    paint = 215 + 25 * smooth_noise(rng, size, size, 8)
    img = np.repeat(paint[..., None], 3, axis=2)
    vv, uu = np.mgrid[0:size, 0:size] / size
    top = rng.uniform(0.1, 0.2)
    band = (vv > top) & (vv < top + rng.uniform(0.25, 0.35)) & (uu > 0.12) & (uu < 0.88)
    img[band] = (50, 55, 65)
    for cu in (0.2, 0.8):
        img[(uu - cu) ** 2 + (vv - 0.95) ** 2 < 0.11**2] = 30
    img[np.abs(vv - (top + 0.45)) < 0.01] = 120
    return np.clip(img, 0, 255).astype(np.uint8)


def pattern_texture(rng, size=128):
    """Stripes, checkers or blotches."""
    vv, uu = np.mgrid[0:size, 0:size] / size
    kind = rng.integers(3)
    if kind == 0:
        g = np.where((vv * rng.integers(3, 9)) % 1.0 < 0.5, 235.0, 120.0)
    elif kind == 1:
        k = rng.integers(3, 8)
        g = np.where(((np.floor(uu * k) + np.floor(vv * k)) % 2) == 0, 235.0, 110.0)
    else:
        g = 120 + 120 * (smooth_noise(rng, size, size, 6) > 0.5)
    g = g - 25 * rng.random((size, size))
    return to_rgb(g)


PERIODIC_KINDS = ("stripes", "checkers", "bricks")


def periodic_texture(rng, size=256, kind: str | None = None):
    """A strong periodic pattern that tiles seamlessly: stripes of random period and orientation,
    a (possibly skewed) checkerboard or a brick grid, in two high-contrast random colours.

    Used by ``--randomise`` on flat walls so that texture frequency carries no depth cue; ``kind``
    (one of PERIODIC_KINDS) forces the pattern, else it is drawn."""
    vv, uu = np.mgrid[0:size, 0:size] / size
    drawn = PERIODIC_KINDS[rng.integers(3)]
    kind = drawn if kind is None else kind
    if kind not in PERIODIC_KINDS:
        raise ValueError(f"unknown periodic texture kind {kind!r}, known: {', '.join(PERIODIC_KINDS)}")
    if kind == "stripes":  # stripes: integer frequencies keep the tile seamless
        kx, ky = 0, 0
        while kx == 0 and ky == 0:
            kx, ky = rng.integers(-10, 11, 2)
        on = ((kx * uu + ky * vv) % 1.0) < rng.uniform(0.3, 0.7)
    elif kind == "checkers":  # checkerboard, sometimes skewed
        k1, k2 = rng.integers(2, 13, 2)
        skew = rng.integers(0, 3) if rng.random() < 0.3 else 0
        on = ((np.floor(uu * k1 + skew * vv) + np.floor(vv * k2)) % 2) == 0
    else:  # bricks: rows of bricks offset by half a brick, dark mortar
        rows, cols = rng.integers(4, 17), rng.integers(2, 9)
        row = np.floor(vv * rows)
        x = uu * cols + 0.5 * (row % 2)
        mortar = rng.uniform(0.06, 0.15)
        on = ((x % 1.0) > mortar / 2) & (((vv * rows) % 1.0) > mortar)
    light = rng.uniform(180, 255, 3)
    dark = rng.uniform(0, 70, 3)
    if rng.random() < 0.5:
        light, dark = dark, light  # dark pattern on light background or the other way round
    img = np.where(on[..., None], light, dark) + rng.normal(0, 4, (size, size, 1))
    return np.clip(img, 0, 255).astype(np.uint8)
