"""Tests for bore_depth_ros.core.resize, camera and pointcloud."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bore_depth_ros.core import errors
from bore_depth_ros.core.camera import Intrinsics, fit_intrinsics_to_image, scale_camera_info_arrays
from bore_depth_ros.core.errors import InputRejected
from bore_depth_ros.core.pointcloud import (
    FLOAT32,
    PackedCloud,
    backproject,
    depth_cloud,
    pack_points,
    ray_tables,
    rgb_to_float,
    transform_points,
)
from bore_depth_ros.core.resize import resize_bilinear, resize_nearest

torch.set_num_threads(1)


def torch_resize(img: np.ndarray, out_h: int, out_w: int, mode: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img))
    t = t[None, None] if img.ndim == 2 else t.permute(2, 0, 1)[None]
    kwargs = {"align_corners": False, "antialias": False} if mode == "bilinear" else {}
    r = F.interpolate(t, size=(out_h, out_w), mode=mode, **kwargs)[0]
    return (r[0] if img.ndim == 2 else r.permute(1, 2, 0)).numpy()


SIZES = [
    ((7, 9), (13, 4)),
    ((16, 16), (5, 7)),
    ((5, 3), (5, 11)),
    ((4, 6), (8, 12)),
    ((31, 17), (9, 30)),
    ((48, 64), (37, 50)),
    ((3, 2), (1, 1)),
    ((1, 5), (4, 2)),
]


@pytest.mark.parametrize("src,dst", SIZES)
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_resize_bilinear_matches_torch(src, dst, channels):
    rng = np.random.default_rng(0)
    shape = src if channels is None else src + (channels,)
    f = rng.normal(size=shape).astype(np.float32) * 10
    out = resize_bilinear(f, *dst)
    assert out.dtype == np.float32 and out.shape == dst + shape[2:]
    np.testing.assert_allclose(out, torch_resize(f, *dst, "bilinear"), atol=1e-4, rtol=0)
    u8 = rng.integers(0, 256, size=shape, dtype=np.uint8)
    out = resize_bilinear(u8, *dst)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, torch_resize(u8.astype(np.float32), *dst, "bilinear"), atol=1e-4, rtol=0)


def test_resize_bilinear_identity_and_non_contiguous_input():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(6, 5, 3)).astype(np.float32)
    out = resize_bilinear(f, 6, 5)
    np.testing.assert_array_equal(out, f)
    assert out.dtype == np.float32 and not np.shares_memory(out, f)
    u8 = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_bilinear(u8, 6, 5), u8.astype(np.float32))
    view = u8[..., ::-1]  # e.g. a bgr8 -> rgb view
    np.testing.assert_allclose(
        resize_bilinear(view, 4, 9), torch_resize(view.astype(np.float32), 4, 9, "bilinear"), atol=1e-4
    )


def test_resize_bilinear_nan_propagates_like_torch():
    rng = np.random.default_rng(2)
    f = rng.uniform(1, 5, size=(9, 11)).astype(np.float32)
    f[2, 3] = f[7, 10] = f[0, 0] = np.nan
    for dst in ((18, 22), (9, 11), (4, 5), (13, 7)):
        ours, ref = resize_bilinear(f, *dst), torch_resize(f, *dst, "bilinear")
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("src,dst", SIZES + [((6, 9), (9, 6)), ((100, 37), (37, 100)), ((12, 12), (36, 5))])
def test_resize_nearest_matches_torch_nearest_exact(src, dst):
    img = np.arange(src[0] * src[1], dtype=np.float32).reshape(src)
    np.testing.assert_array_equal(resize_nearest(img, *dst), torch_resize(img, *dst, "nearest-exact"))
    mask = img.astype(np.int64) % 3 == 0
    out = resize_nearest(np.stack([mask, ~mask], axis=2), *dst)
    assert out.dtype == bool and out.shape == dst + (2,)
    ref = torch_resize(mask.astype(np.float32), *dst, "nearest-exact") > 0.5
    np.testing.assert_array_equal(out[..., 0], ref)
    np.testing.assert_array_equal(out[..., 1], ~ref)


def test_resize_rejects_bad_sizes():
    with pytest.raises(ValueError):
        resize_bilinear(np.zeros((4, 4), np.float32), 0, 3)
    with pytest.raises(ValueError):
        resize_nearest(np.zeros(4, np.float32), 2, 2)


# ---------------------------------------------------------------- camera

K = [500.0, 0.0, 320.0, 0.0, 505.0, 240.0, 0.0, 0.0, 1.0]
P = [480.0, 0.0, 318.0, -24.0, 0.0, 482.0, 236.0, 1.5, 0.0, 0.0, 1.0, 0.0]


def test_intrinsics_prefer_p_and_fall_back_to_k():
    i = Intrinsics.from_camera_info(K, P, 640, 480)
    assert i == Intrinsics(480.0, 482.0, 318.0, 236.0, 640, 480)
    assert Intrinsics.from_camera_info(K, [0.0] * 12, 640, 480) == Intrinsics(
        500.0, 505.0, 320.0, 240.0, 640, 480
    )
    p_no_fy = list(P)
    p_no_fy[5] = 0.0
    assert Intrinsics.from_camera_info(K, p_no_fy, 640, 480).fx == 500.0
    p_nan = list(P)
    p_nan[0] = math.nan
    assert Intrinsics.from_camera_info(np.array(K), np.array(p_nan), 640, 480).fx == 500.0
    np.testing.assert_array_equal(i.matrix(), [[480, 0, 318], [0, 482, 236], [0, 0, 1]])
    assert i.matrix().dtype == np.float64


def invalid(k, p, w=640, h=480):
    with pytest.raises(InputRejected) as info:
        Intrinsics.from_camera_info(k, p, w, h)
    assert info.value.reason == errors.CAMERA_INFO_INVALID
    return info.value.detail


def test_intrinsics_rejections():
    k0 = list(K)
    k0[0] = 0.0
    assert "fx is 0 (K[0]=0, P[0]=0)" in invalid(k0, [0.0] * 12)
    knan = list(K)
    knan[4] = math.nan
    assert "fy is nan" in invalid(knan, [0.0] * 12)
    pnan = list(P)
    pnan[6] = math.nan
    assert "cy is nan" in invalid(K, pnan)
    kinf = list(K)
    kinf[2] = math.inf
    assert "cx is inf" in invalid(kinf, None)
    assert "0x480" in invalid(K, P, 0, 480)
    assert "K has 4" in invalid(K[:4], P)
    assert "P has 3" in invalid(K, P[:3])


def test_scaled_to_keeps_pixel_rays():
    i = Intrinsics(480.0, 482.0, 318.3, 236.7, 640, 480)
    for w, h in ((320, 240), (517, 391), (1280, 960), (640, 480)):
        s = i.scaled_to(w, h)
        assert (s.width, s.height) == (w, h)
        u = np.arange(w) + 0.0
        v = np.arange(h) + 0.0
        # pixel centre u in the new image covers u_src = (u + 0.5) / sx - 0.5 in the source image
        u_src = (u + 0.5) * 640 / w - 0.5
        v_src = (v + 0.5) * 480 / h - 0.5
        np.testing.assert_allclose((u - s.cx) / s.fx, (u_src - i.cx) / i.fx, atol=1e-12)
        np.testing.assert_allclose((v - s.cy) / s.fy, (v_src - i.cy) / i.fy, atol=1e-12)
    assert i.scaled_to(640, 480) == i
    back = i.scaled_to(517, 391).scaled_to(640, 480)
    for a, b in zip((back.fx, back.fy, back.cx, back.cy), (i.fx, i.fy, i.cx, i.cy)):
        assert a == pytest.approx(b, abs=1e-9)


def test_scale_camera_info_arrays_matches_scaled_to():
    k2, p2 = scale_camera_info_arrays(K, P, 640, 480, 320, 200)
    assert len(k2) == 9 and len(p2) == 12 and all(isinstance(x, float) for x in k2 + p2)
    expected = Intrinsics.from_camera_info(K, P, 640, 480).scaled_to(320, 200)
    assert Intrinsics.from_camera_info(k2, p2, 320, 200) == expected
    assert Intrinsics.from_camera_info(k2, [0.0] * 12, 320, 200) == Intrinsics.from_camera_info(
        K, [0.0] * 12, 640, 480
    ).scaled_to(320, 200)
    sx, sy = 0.5, 200 / 480
    assert p2[3] == pytest.approx(-24.0 * sx) and p2[7] == pytest.approx(1.5 * sy)
    assert p2[8:] == P[8:] and k2[6:] == K[6:] and k2[3] == 0.0 and p2[4] == 0.0
    # an unset P stays unset
    assert scale_camera_info_arrays(K, [0.0] * 12, 640, 480, 320, 240)[1] == [0.0] * 12


def test_fit_intrinsics_to_image():
    i = Intrinsics(480.0, 482.0, 318.0, 236.0, 640, 480)
    assert fit_intrinsics_to_image(i, 640, 480) is i
    assert fit_intrinsics_to_image(i, 320, 240) == i.scaled_to(320, 240)
    assert fit_intrinsics_to_image(i, 321, 240) == i.scaled_to(321, 240)  # aspect within 1 %
    with pytest.raises(InputRejected) as info:
        fit_intrinsics_to_image(i, 640, 360)
    assert info.value.reason == errors.CAMERA_INFO_SIZE_MISMATCH
    assert "640x480" in info.value.detail and "640x360" in info.value.detail
    with pytest.raises(InputRejected) as info:
        fit_intrinsics_to_image(Intrinsics(480.0, 482.0, 318.0, 236.0, 0, 0), 640, 480)
    assert info.value.reason == errors.CAMERA_INFO_INVALID


# ---------------------------------------------------------------- point clouds

INTR = Intrinsics(5.5, 6.2, 4.7, 3.1, 11, 7)


def depth_with_holes(seed=0):
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.5, 10.0, size=(7, 11)).astype(np.float32)
    d[rng.random(d.shape) < 0.2] = np.nan
    d[0, 0], d[3, 4], d[6, 10] = np.inf, -np.inf, np.nan
    return d


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_backproject_matches_per_pixel_loop(stride):
    d = depth_with_holes()
    pts = backproject(d, INTR, stride)
    assert pts.shape == (math.ceil(7 / stride), math.ceil(11 / stride), 3) and pts.dtype == np.float32
    for i in range(pts.shape[0]):
        for j in range(pts.shape[1]):
            v, u = i * stride, j * stride
            z = float(d[v, u])
            if not math.isfinite(z):
                assert np.isnan(pts[i, j]).all()
                continue
            exp = ((u - INTR.cx) / INTR.fx * z, (v - INTR.cy) / INTR.fy * z, z)
            np.testing.assert_allclose(pts[i, j], exp, rtol=1e-6, atol=1e-6)


def test_backproject_out_buffer_cache_and_size_check():
    d = depth_with_holes(1)
    buf = np.full((3, 4, 3), 7.0, np.float32)
    res = backproject(d, INTR, 3, out=buf)
    assert res is buf
    np.testing.assert_array_equal(buf, backproject(d, INTR, 3))
    assert ray_tables(INTR, 3)[0] is ray_tables(INTR, 3)[0]
    with pytest.raises(ValueError):
        backproject(d, INTR, 2, out=buf)
    with pytest.raises(ValueError):
        backproject(d.T, INTR)
    with pytest.raises(ValueError):
        backproject(d, INTR.scaled_to(22, 14))


def test_rgb_to_float_bits():
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [12, 34, 56]]], np.uint8)
    bits = rgb_to_float(rgb).view(np.uint32)
    np.testing.assert_array_equal(bits, [[0xFF0000, 0x00FF00], [0x0000FF, 0x0C2238]])


@pytest.mark.parametrize("stride", [1, 3])
@pytest.mark.parametrize("with_rgb", [False, True])
def test_depth_cloud_equals_packed_backprojection(stride, with_rgb):
    depth = depth_with_holes(4)
    xyz = backproject(depth, INTR, stride)
    rgb = None
    if with_rgb:
        rgb = np.random.default_rng(5).integers(0, 256, (*xyz.shape[:2], 3), dtype=np.uint8)
    a, b = pack_points(xyz, rgb), depth_cloud(depth, INTR, stride, rgb)
    assert (a.fields, a.point_step, a.height, a.width, a.row_step) == (
        b.fields,
        b.point_step,
        b.height,
        b.width,
        b.row_step,
    )
    np.testing.assert_array_equal(a.data, b.data)  # byte for byte, NaN points included


@pytest.mark.parametrize("with_rgb", [False, True])
def test_pack_points_layout_and_payload(with_rgb):
    rng = np.random.default_rng(3)
    xyz = backproject(depth_with_holes(2), INTR, 2)
    h, w = xyz.shape[:2]
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if with_rgb else None
    cloud = pack_points(xyz, rgb)
    assert isinstance(cloud, PackedCloud)
    n = 4 if with_rgb else 3
    expected_fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]
    if with_rgb:
        expected_fields.append(("rgb", 12, 7, 1))
    assert cloud.fields == expected_fields and FLOAT32 == 7
    assert cloud.point_step == 4 * n and (cloud.height, cloud.width) == (h, w)
    assert cloud.row_step == w * cloud.point_step and cloud.is_dense is False and cloud.is_bigendian is False
    assert (
        cloud.data.dtype == np.uint8
        and cloud.data.flags.c_contiguous
        and cloud.data.size == h * cloud.row_step
    )
    floats = cloud.data.view(np.float32).reshape(h, w, n)
    np.testing.assert_array_equal(floats[..., :3].view(np.uint32), xyz.view(np.uint32))  # bit-exact, NaN too
    if with_rgb:
        r, g, b = (rgb[..., c].astype(np.uint32) for c in range(3))
        np.testing.assert_array_equal(floats[..., 3].view(np.uint32), (r << 16) | (g << 8) | b)
        np.testing.assert_array_equal(floats[..., 3].view(np.uint32), rgb_to_float(rgb).view(np.uint32))


def test_transform_points():
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    t = rng.normal(size=3)
    pts = rng.normal(size=(4, 5, 3)).astype(np.float32)
    pts[1, 2] = np.nan
    out = transform_points(pts, q, t)
    assert out.shape == (4, 5, 3) and out.dtype == np.float32
    for i in range(4):
        for j in range(5):
            exp = q @ pts[i, j].astype(np.float64) + t
            if i == 1 and j == 2:
                assert np.isnan(out[i, j]).all()
            else:
                np.testing.assert_allclose(out[i, j], exp, rtol=1e-5, atol=1e-5)
    # NaN survives zeros in the rotation
    np.testing.assert_array_equal(np.isnan(transform_points(pts, np.eye(3), np.zeros(3))), np.isnan(pts))


def test_tf_buffer_forgets_dynamic_edges_that_stopped():
    """Hours of /tf with ever-new frame names (tracked objects) must not grow the buffer."""
    from bore_depth_ros.core.tf_buffer import TfBuffer
    from bore_depth_ros.core.transforms import Transform

    buf = TfBuffer(cache_time_ns=10**9)
    buf.set_transform("base_link", "cam", 0, Transform.identity(), static=True)
    for k in range(5000):  # 100 Hz; every object frame lives for one sample
        buf.set_transform("odom", f"object_{k}", k * 10**7, Transform.identity())
        buf.set_transform("odom", "base_link", k * 10**7, Transform.identity())
    frames = buf.frames()
    assert len(frames) < 1200 and {"cam", "base_link", "odom"} <= frames
    assert buf.lookup("odom", "cam", 4999 * 10**7) is not None
