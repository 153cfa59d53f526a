"""Training losses, warping geometry and the PoseNet (bore_depth_ros.train) on small hand-made tensors.

Expected values are worked out by hand in the comments. CPU, one thread.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bore_depth_ros.core.transforms import OPTICAL_IN_BODY, rotation_z
from bore_depth_ros.train import geometry as G
from bore_depth_ros.train import losses as L
from bore_depth_ros.train.posenet import PoseNet, ResNet18

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


def close(x, expected, tol=1e-5):
    x = x.detach() if isinstance(x, torch.Tensor) else x
    return abs(float(x) - float(expected)) <= tol


# --- synthetic scenes ------------------------------------------------------------------------------

H, W, F_PX = 24, 48, 24.0
K1 = torch.tensor([[F_PX, 0.0, (W - 1) / 2], [0.0, F_PX, (H - 1) / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)


def base_from_cam(yaw_deg: float, position) -> torch.Tensor:
    """E = [Rz(yaw) @ OPTICAL_IN_BODY | position] (REP 103 base frame, ROS optical camera frame)."""
    m = np.eye(4)
    m[:3, :3] = rotation_z(np.deg2rad(yaw_deg)) @ OPTICAL_IN_BODY
    m[:3, 3] = position
    return torch.from_numpy(m)


def texture(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smooth RGB texture of two in-plane coordinates (metres): periods ~4 m = ~12 px at 8 m."""
    chans = [
        0.5
        + 0.2 * torch.sin(2 * math.pi * a / 4.2 + ph) * torch.cos(2 * math.pi * b / 3.4 + ph)
        + 0.1 * torch.sin(2 * math.pi * (a + b) / 6.6)
        for ph in (0.0, 1.0, 2.0)
    ]
    return torch.stack(chans)


def render(E: torch.Tensor, axis: int, plane: float):
    """Image [3,H,W] and depth [1,H,W] of the textured plane {p_axis = plane} seen by camera E (world frame).

    Ray r = R K^-1 (u, v, 1) has optical z = 1, so the hit distance t along r is the depth.
    """
    v, u = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    rays = E[:3, :3] @ (torch.linalg.inv(K1) @ torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1))
    c = E[:3, 3:4]
    t = (plane - c[axis]) / rays[axis]
    p = c + t * rays
    others = [i for i in range(3) if i != axis]
    img = texture(p[others[0]], p[others[1]]).reshape(3, H, W)
    return img.float(), t.reshape(1, H, W).float()


def stereo_rig():
    """Two cameras 1 m apart (the second 1 m to the right, yawed -15 deg) facing the plane x = 8 m."""
    E = torch.stack([base_from_cam(0.0, (0.0, 0.0, 1.5)), base_from_cam(-15.0, (0.0, -1.0, 1.5))])
    views = [render(E[i], 0, 8.0) for i in range(2)]
    images = torch.stack([im for im, _ in views])
    depths = torch.stack([d for _, d in views])
    return images, depths, K1.float().expand(2, 3, 3), E.float()


# --- geometry --------------------------------------------------------------------------------------


def test_backproject_and_project_known_pixel():
    K = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]]])
    depth = torch.full((1, 1, 2, 4), 4.0)
    pts = G.backproject(depth, torch.linalg.inv(K))
    assert pts.shape == (1, 3, 8)
    # pixel (row 0, col 3): u = 3, v = 0 -> X = (3 - 1) / 2 * 4 = 4, Y = (0 - 0.5) / 2 * 4 = -1, Z = 4
    assert torch.allclose(pts[0, :, 3], torch.tensor([4.0, -1.0, 4.0]))
    pix, z = G.project(pts, K, torch.eye(4)[None])
    assert torch.allclose(pix[0, :, 3], torch.tensor([3.0, 0.0]), atol=1e-6) and close(z[0, 0, 3], 4.0)
    # a translation of +1 m in x moves the pixel by fx * 1 / Z = 2 / 4 = 0.5 px
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = 1.0
    pix, _ = G.project(pts, K, T)
    assert torch.allclose(pix[0, :, 3], torch.tensor([3.5, 0.0]), atol=1e-6)


def test_inverse_warp_identity_reproduces_image():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 8, 10)
    depth = torch.rand(2, 1, 8, 10) + 1.0
    K = torch.tensor([[5.0, 0, 4.5], [0, 5.0, 3.5], [0, 0, 1]]).expand(2, 3, 3)
    warped, valid = G.inverse_warp(img, depth, torch.eye(4).expand(2, 4, 4), K, K)
    assert warped.shape == img.shape and valid.shape == (2, 1, 8, 10) and valid.dtype == torch.bool
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    assert valid[inner].all()
    assert torch.allclose(warped[inner], img[inner], atol=1e-5)


def test_inverse_warp_pure_translation_shifts_by_expected_pixels():
    # t = (1, 0, 0) m, Z = 5 m, fx = 10 px: u_src = u + fx * tx / Z = u + 2, so warped[j] = src[j + 2]
    torch.manual_seed(0)
    src = torch.rand(1, 3, 6, 12)
    depth = torch.full((1, 1, 6, 12), 5.0)
    K = torch.tensor([[[10.0, 0, 5.5], [0, 10.0, 2.5], [0, 0, 1]]])
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = 1.0
    warped, valid = G.inverse_warp(src, depth, T, K, K)
    assert torch.allclose(warped[..., :-2], src[..., 2:], atol=1e-5)
    assert valid[..., :-2].all() and not valid[..., -2:].any()  # u_src = 10.x, 11.x > W - 1 = 11? only j>=10
    # points behind the source camera are invalid
    T[0, 2, 3] = -6.0
    assert not G.inverse_warp(src, depth, T, K, K)[1].any()


def test_pose_vec_to_mat():
    zero = G.pose_vec_to_mat(torch.zeros(1, 6))
    assert torch.allclose(zero, torch.eye(4)[None])
    th = 0.3
    vec = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0, th]])
    rz = torch.tensor(
        [[math.cos(th), -math.sin(th), 0.0], [math.sin(th), math.cos(th), 0.0], [0.0, 0.0, 1.0]]
    )
    for rotation in ("euler", "axis_angle"):  # a single-axis rotation is the same in both
        m = G.pose_vec_to_mat(vec, rotation)
        assert torch.allclose(m[0, :3, :3], rz, atol=1e-6)
        assert torch.allclose(m[0, :3, 3], torch.tensor([1.0, 2.0, 3.0]))
        assert torch.allclose(m[0, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    # Euler order R = Rx(a) Ry(b) Rz(c): with a = b = c = pi/2 the x axis goes to
    # Rx Ry Rz e_x = Rx Ry e_y = Rx e_y = e_z
    e = G.pose_vec_to_mat(torch.tensor([[0, 0, 0, math.pi / 2, math.pi / 2, math.pi / 2]]))
    assert torch.allclose(e[0, :3, 0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    r = G.pose_vec_to_mat(torch.randn(4, 6), "axis_angle")[:, :3, :3]
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-5)


def test_canonical_camera_motion():
    # vehicle moves 1 m forward: T = base_src_from_base_tgt = translation (-1, 0, 0)
    T = torch.eye(4, dtype=torch.float64)[None].clone()
    T[0, 0, 3] = -1.0
    front = base_from_cam(0.0, (1.6, 0.0, 1.5))[None]
    left = base_from_cam(90.0, (1.5, 0.5, 1.5))[None]
    # front camera: optical z = base x, so the camera sees the scene move by -1 along z
    expected = torch.eye(4, dtype=torch.float64)
    expected[2, 3] = -1.0
    assert torch.allclose(G.camera_motion(T, front)[0], expected, atol=1e-12)
    # left camera (yaw 90): optical x = Rz(90) (0, -1, 0) = (1, 0, 0) = base x, so -1 along optical x
    expected = torch.eye(4, dtype=torch.float64)
    expected[0, 3] = -1.0
    assert torch.allclose(G.camera_motion(T, left)[0], expected, atol=1e-12)
    # relative extrinsics at one instant: E_src^-1 E_tgt maps tgt points into src
    p = torch.tensor([1.0, 2.0, 3.0, 1.0], dtype=torch.float64)
    rel = G.relative_extrinsics(left, front)[0]
    assert torch.allclose(left[0] @ (rel @ p), front[0] @ p)


# --- photometric -----------------------------------------------------------------------------------


def test_photometric_error_identical_and_constant_offset():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 8, 8)
    assert L.photometric_error(a, a).abs().max() < 1e-6
    # constants p = 0.5 and p + c = 0.6: variances 0, so
    # SSIM = (2 p (p + c) + C1) C2 / ((p^2 + (p + c)^2 + C1) C2) and
    # (1 - SSIM) / 2 = c^2 / (2 (p^2 + (p + c)^2 + C1)) = 0.01 / (2 * 0.6101) = 0.0081954
    # pe = 0.85 * 0.0081954 + 0.15 * 0.1 = 0.0069661 + 0.015 = 0.0219661
    x, y = torch.full((1, 3, 8, 8), 0.5), torch.full((1, 3, 8, 8), 0.6)
    for window in (3, 7):
        assert torch.allclose(L.ssim(x, y, window), torch.full_like(x, 0.01 / 1.2202), atol=1e-6)
        pe = L.photometric_error(x, y, window=window)
        assert pe.shape == (1, 1, 8, 8)
        assert torch.allclose(pe, torch.full_like(pe, 0.0219661), atol=1e-6)
    assert torch.allclose(L.photometric_error(x, y, alpha=0.0), torch.full((1, 1, 8, 8), 0.1))


def test_ssim_checkerboard_centre_pixel():
    # 3x3 window at the centre of x = [[0,1,0],[1,0,1],[0,1,0]] and y = 1 - x:
    # mu_x = 4/9, mu_y = 5/9, var_x = var_y = 4/9 - 16/81 = 20/81, cov = E[xy] - mu_x mu_y = 0 - 20/81
    # SSIM = (40/81 + C1)(-40/81 + C2) / ((41/81 + C1)(40/81 + C2)) = -0.97207; (1 - SSIM) / 2 = 0.98604
    x = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]])[None, None]
    c1, c2 = 0.01**2, 0.03**2
    s = (40 / 81 + c1) * (-40 / 81 + c2) / ((41 / 81 + c1) * (40 / 81 + c2))
    assert close(L.ssim(x, 1 - x, 3)[0, 0, 1, 1], (1 - s) / 2)
    assert close((1 - s) / 2, 0.98604, 1e-4)


def test_min_reprojection_selection_validity_and_automask():
    # alpha = 0: pe = |target - warped|; target 0, so pe = the warped values
    target = torch.zeros(1, 1, 2, 2)
    w1 = torch.full((1, 1, 2, 2), 0.1)
    w2 = torch.tensor([[[[0.3, 0.05], [0.3, 0.3]]]])
    ok = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    loss, info = L.min_reprojection_loss(target, [w1, w2], [ok, ok], alpha=0.0)
    # min = [[0.1, 0.05], [0.1, 0.1]] -> mean 0.35 / 4 = 0.0875
    assert close(loss, 0.0875)
    assert info["selected"].flatten().tolist() == [0, 1, 0, 0]
    # source 1 invalid at (1,1): there the min is 0.3 -> (0.1 + 0.05 + 0.1 + 0.3) / 4 = 0.1375
    v1 = ok.clone()
    v1[0, 0, 1, 1] = False
    loss, _ = L.min_reprojection_loss(target, [w1, w2], [v1, ok], alpha=0.0)
    assert close(loss, 0.1375)
    # no valid source at (1,1): excluded -> (0.1 + 0.05 + 0.1) / 3
    v2 = ok.clone()
    v2[0, 0, 1, 1] = False
    loss, info = L.min_reprojection_loss(target, [w1, w2], [v1, v2], alpha=0.0)
    assert close(loss, 0.25 / 3) and not info["mask"][0, 0, 1, 1]
    # auto-mask: identity error [[0.2, 0.2], [0.02, 0.5]]; at (1,0) 0.02 < 0.1 -> ignored;
    # with the (1,1) invalidity of the first case: (0.1 + 0.05 + 0.3) / 3 = 0.15
    ident = torch.tensor([[[[0.2, 0.2], [0.02, 0.5]]]])
    loss, info = L.min_reprojection_loss(target, [w1, w2], [v1, ok], sources_unwarped=[ident], alpha=0.0)
    assert close(loss, 0.15)
    assert info["automask"].flatten().tolist() == [True, True, False, True]
    loss, _ = L.min_reprojection_loss(
        target, [w1, w2], [v1, ok], sources_unwarped=[ident], automask=False, alpha=0.0
    )
    assert close(loss, 0.1375)


def test_edge_aware_smoothness():
    flat = torch.full((1, 3, 4, 4), 0.5)
    assert L.edge_aware_smoothness(torch.full((1, 1, 4, 4), 2.0), flat) == 0
    # disparity 1, 1.5, 2, 2.5 along x: mean 1.75, |dx| = 0.5 -> 0.5 / 1.75 = 0.285714 (dy = 0)
    ramp = (1.0 + 0.5 * torch.arange(4.0)).expand(1, 1, 4, 4)
    assert close(L.edge_aware_smoothness(ramp, flat), 0.5 / 1.75)
    # an image step of 1 between columns 1 and 2 weights that difference by e^-1:
    # mean over the 3 column pairs = (0.5 / 1.75) (1 + e^-1 + 1) / 3
    step = torch.zeros(1, 3, 4, 4)
    step[..., 2:] = 1.0
    assert close(L.edge_aware_smoothness(ramp, step), 0.5 / 1.75 * (2 + math.exp(-1)) / 3)


# --- distillation ----------------------------------------------------------------------------------


def test_semantic_distillation_loss():
    torch.manual_seed(0)
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)]
    for kind in ("cosine", "l2"):
        assert close(L.semantic_distillation_loss(feats, [f.clone() for f in feats], kind), 0.0)
    # level 1 identical (0), level 2 orthogonal (1 - cos = 1): mean over levels = 0.5
    s2 = torch.zeros(1, 2, 3, 3)
    s2[:, 0] = 1.0
    t2 = torch.zeros(1, 2, 3, 3)
    t2[:, 1] = 2.0
    s1 = torch.randn(1, 2, 3, 3)
    assert close(L.semantic_distillation_loss([s1, s2], [s1, t2], "cosine"), 0.5)
    # l2 with an offset of 0.5 everywhere: 0.25
    assert close(L.semantic_distillation_loss([s1], [s1 + 0.5], "l2"), 0.25)


def test_silog_loss():
    torch.manual_seed(0)
    gt = torch.rand(2, 1, 4, 4) * 10 + 0.5
    # pred = 2 gt: g = ln 2 everywhere, mean(g^2) - lam mean(g)^2 = (1 - lam) ln^2 2
    assert float(L.silog_loss(2 * gt, gt, lam=1.0)) < 1e-5
    assert close(L.silog_loss(2 * gt, gt, lam=0.85), math.sqrt(0.15) * math.log(2))  # 0.268468
    assert close(L.silog_loss(2 * gt, gt, lam=0.85, scale=10.0), 10 * math.sqrt(0.15) * math.log(2), 1e-4)
    # two valid pixels with g = (ln 2, 0): mean g^2 = ln^2 2 / 2, mean g = ln 2 / 2,
    # 0.5 ln^2 2 - 0.85 * 0.25 ln^2 2 = 0.2875 ln^2 2 -> sqrt = 0.536190 * 0.693147 = 0.371660
    gt2 = torch.tensor([[[[1.0, 3.0, 0.0, 5.0]]]])
    pred2 = torch.tensor([[[[2.0, 3.0, 9.0, 1.0]]]])
    mask = torch.tensor([[[[True, True, True, False]]]])  # gt = 0 is invalid anyway
    assert close(L.silog_loss(pred2, gt2, mask), 0.371660)


def test_scale_invariant_bin_assignment():
    # log-depth range [0, 4] (d from 1 to e^4): u = log d / 4; K = 4 centres 0.125, 0.375, 0.625, 0.875.
    # d = e^1.5 gives u = 0.375 = centre 1; sigma = 1/4, distances (0.25, 0, 0.25, 0.5) ->
    # logits -(dist / sigma)^2 / 2 = (-0.5, 0, -0.5, -2) -> p proportional to (e^-.5, 1, e^-.5, e^-2)
    depth = torch.tensor([1.0, math.exp(4.0), math.exp(1.5)]).reshape(1, 1, 1, 3)
    p = L.scale_invariant_bin_assignment(depth, 4)
    assert p.shape == (1, 4, 1, 3) and torch.allclose(p.sum(1), torch.ones(1, 1, 3))
    e = torch.tensor([math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2.0)])
    assert torch.allclose(p[0, :, 0, 2], e / e.sum(), atol=1e-6)
    assert int(p[0, :, 0, 0].argmax()) == 0 and int(p[0, :, 0, 1].argmax()) == 3
    # scale invariance: 3.7 x depth gives the same assignment
    assert torch.allclose(L.scale_invariant_bin_assignment(3.7 * depth, 4), p, atol=1e-6)
    # masked-out pixels do not set the range: with pixel 1 masked the range is [0, 1.5], so
    # pixel 2 sits at u = 1 (closest to centre 3) and pixel 1 clamps to u = 1 as well
    m = torch.tensor([True, False, True]).reshape(1, 1, 1, 3)
    pm = L.scale_invariant_bin_assignment(depth, 4, m)
    assert int(pm[0, :, 0, 2].argmax()) == 3


def test_kl_bin_loss():
    torch.manual_seed(0)
    t = torch.softmax(torch.randn(2, 5, 3, 3), dim=1)
    assert close(L.kl_bin_loss(torch.log(t), t), 0.0)
    # t = (0.5, 0.5), s = (0.25, 0.75): 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3) = 0.143841
    t2 = torch.tensor([0.5, 0.5]).reshape(1, 2, 1, 1).expand(1, 2, 2, 2)
    s2 = torch.tensor([0.25, 0.75]).reshape(1, 2, 1, 1).expand(1, 2, 2, 2)
    assert close(L.kl_bin_loss(torch.log(s2), t2), 0.5 * math.log(4 / 3))
    mask = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 0] = True
    s3 = torch.log(s2).clone()
    s3[0, :, 1, 1] = torch.log(torch.tensor([0.9, 0.1]))  # outside the mask: ignored
    assert close(L.kl_bin_loss(s3, t2, mask), 0.5 * math.log(4 / 3))


def test_cross_bin_loss():
    # teacher one-hot on bin 1, student centres (1, 2, 4, 8) m -> D_x = 2 m everywhere
    t = torch.zeros(1, 4, 2, 2)
    t[:, 1] = 1.0
    centres = torch.tensor([[1.0, 2.0, 4.0, 8.0]], requires_grad=True)
    assert close(L.cross_bin_loss(t, centres, torch.full((1, 1, 2, 2), 2.0), kind="l1"), 0.0)
    assert close(L.cross_bin_loss(t, centres, torch.full((1, 1, 2, 2), 1.0), kind="l1"), 1.0)
    # GT 1 m: g = ln 2 -> SILog sqrt(0.15) ln 2; GT at 4x4 needs D_x upsampled (constant: unchanged)
    loss = L.cross_bin_loss(t, centres, torch.ones(1, 1, 4, 4))
    assert close(loss, math.sqrt(0.15) * math.log(2))
    loss.backward()
    assert centres.grad[0, 1] != 0 and (centres.grad[0, [0, 2, 3]] == 0).all()


def test_ring_pairs_and_view_relational_loss():
    x = torch.arange(6.0).reshape(6, 1, 1, 1)  # two rigs of 3 views
    a, b = L.ring_neighbour_pairs(x, 3)
    assert a.flatten().tolist() == [1, 2, 0, 4, 5, 3] and b.flatten().tolist() == [0, 1, 2, 3, 4, 5]
    torch.manual_seed(0)
    s = torch.randn(6, 8, 4, 6)
    sa, sb = L.ring_neighbour_pairs(s, 3)
    for kind in ("mse", "kl"):
        assert close(L.view_relational_loss(sa, sb, sa.clone(), sb.clone(), 2, kind), 0.0)
    # teacher with other channels but the same cosine structure (a fixed rotation): still 0
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    rot = lambda f: torch.einsum("dc,mchw->mdhw", q, f)  # noqa: E731
    assert close(L.view_relational_loss(sa, sb, rot(sa), rot(sb), 2), 0.0)
    # one token per strip: student a (right column) = (1,0), student b (left column) = (1,0): A_s = 1;
    # teacher b = (0,1): A_t = 0 -> (1 - 0)^2 = 1. Other columns do not matter.
    fa = torch.zeros(1, 2, 1, 3)
    fa[0, 0, 0, 2] = 1.0
    fa[0, 1, 0, :2] = 5.0
    fb = torch.zeros(1, 2, 1, 3)
    fb[0, 0, 0, 0] = 1.0
    tb = torch.zeros(1, 2, 1, 3)
    tb[0, 1, 0, 0] = 1.0
    assert close(L.view_relational_loss(fa, fb, fa, tb, 1), 1.0)


# --- Semi-SMD-style --------------------------------------------------------------------------------


def test_sparse_depth_loss():
    pred = torch.full((1, 1, 2, 3), 5.0)
    lidar = torch.tensor([[[[0.0, 4.0, 0.0], [7.0, 0.0, math.inf]]]])
    # returns at 4 and 7 only: (|5 - 4| + |5 - 7|) / 2 = 1.5
    assert close(L.sparse_depth_loss(pred, lidar), 1.5)
    assert close(L.sparse_depth_loss(2 * lidar.nan_to_num(0, 0, 0), lidar, kind="silog", lam=1.0), 0.0, 1e-5)


def test_curvature_loss():
    i, j = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), indexing="ij")
    ramp = torch.exp(0.1 * i + 0.2 * j + 1.0)[None, None]  # linear log-depth
    flat = torch.full_like(ramp, 3.0)
    assert close(L.curvature_loss(ramp, flat), 0.0)  # second differences of a plane are 0
    assert close(L.curvature_loss(2.5 * ramp, ramp), 0.0)  # scale invariant
    # log d = 0.05 j^2: dxx = 0.05 ((j+1)^2 - 2 j^2 + (j-1)^2) = 0.1; vs a ramp teacher: 0.1 (dyy: 0)
    quad = torch.exp(0.05 * j**2)[None, None]
    assert close(L.curvature_loss(quad, ramp), 0.1)
    # match_spread: d and d^2 have the same normalised log-depth
    assert close(L.curvature_loss(quad**2, quad, match_spread=True), 0.0)
    assert L.curvature_loss(quad**2, quad) > 0.09
    # an invalid teacher pixel removes the stencils through it
    mask = torch.ones_like(ramp, dtype=torch.bool)
    mask[..., 2] = False
    bump = quad.clone()
    bump[..., 2] *= 10.0
    assert close(L.curvature_loss(bump, quad, mask), 0.0)


def test_spatial_photometric_loss_metric_scale():
    images, depths, K, E = stereo_rig()
    loss, info = L.spatial_photometric_loss(images, depths, K, E)
    # only bilinear resampling error remains (~0.0014 here)
    assert float(loss) < 0.003
    assert info["mask"].float().mean() > 0.5
    for s in (1.2, 1 / 1.2):
        wrong, _ = L.spatial_photometric_loss(images, depths * s, K, E)
        assert float(wrong) > 5 * float(loss)
    # a global scale error, invisible to a monocular loss, is visible to the rig: over a sweep of
    # scales the loss is smallest at the true (metric) scale
    sweep = [0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25]
    values = [float(L.spatial_photometric_loss(images, depths * s, K, E)[0]) for s in sweep]
    assert sweep[int(np.argmin(values))] == 1.0


def test_temporal_photometric_loss_canonical_ego_motion():
    # two cameras: front (yaw 0) sees the plane x = 8, left (yaw 90) sees the plane y = 8; the vehicle
    # moves (+0.5, +0.5) m, so T = base_src_from_base_tgt = translation (-0.5, -0.5, 0)
    E = torch.stack([base_from_cam(0.0, (0.0, 0.0, 1.5)), base_from_cam(90.0, (0.0, 0.0, 1.5))])
    move = torch.eye(4, dtype=torch.float64)
    move[:2, 3] = 0.5
    tgt = [render(E[0], 0, 8.0), render(E[1], 1, 8.0)]
    src = [render(move @ E[0], 0, 8.0)[0], render(move @ E[1], 1, 8.0)[0]]
    target = torch.stack([im for im, _ in tgt])
    depth = torch.stack([d for _, d in tgt])
    source = torch.stack(src)
    T = torch.linalg.inv(move)[None].float()
    loss, _ = L.temporal_photometric_loss(target, [source], depth, K1.float(), [T], E.float())
    assert float(loss) < 0.003  # ~0.0011: resampling error only
    wrong, _ = L.temporal_photometric_loss(target, [source], depth * 1.3, K1.float(), [T], E.float())
    assert float(wrong) > 3 * float(loss)
    # without the per-camera conversion (T applied in each camera frame) the loss is much higher
    bad, _ = L.temporal_photometric_loss(target, [source], depth, K1.float(), [T.expand(2, 4, 4)], None)
    assert float(bad) > 3 * float(loss)


# --- optimisation smoke tests ----------------------------------------------------------------------


def _optimise(param, loss_fn, steps=20, lr=0.02):
    opt = torch.optim.Adam([param], lr=lr)
    first = None
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    return first, float(loss_fn().detach())


def test_optimising_depth_reduces_photometric_loss():
    images, depths, K, E = stereo_rig()
    log_depth = torch.log(depths * 1.15).clone().requires_grad_(True)
    loss, _ = L.spatial_photometric_loss(images, log_depth.exp(), K, E)
    loss.backward()  # pixels with no valid neighbour hold inf errors: the gradient must stay finite
    assert torch.isfinite(log_depth.grad).all() and log_depth.grad.abs().sum() > 0
    first, last = _optimise(log_depth, lambda: L.spatial_photometric_loss(images, log_depth.exp(), K, E)[0])
    assert last < 0.7 * first
    # and the depth moved towards the truth
    assert (log_depth.exp() / depths).median() < 1.15


def test_optimising_reduces_silog_and_distillation_losses():
    torch.manual_seed(0)
    gt = torch.rand(2, 1, 8, 8) * 10 + 1
    log_pred = torch.zeros(2, 1, 8, 8, requires_grad=True)
    first, last = _optimise(log_pred, lambda: L.silog_loss(log_pred.exp(), gt), lr=0.05)
    assert last < 0.7 * first
    teacher = L.scale_invariant_bin_assignment(gt, 8)
    logits = torch.zeros(2, 8, 8, 8, requires_grad=True)
    first, last = _optimise(logits, lambda: L.kl_bin_loss(torch.log_softmax(logits, 1), teacher), lr=0.1)
    assert last < 0.7 * first
    log_c = torch.zeros(2, 8, requires_grad=True)
    first, last = _optimise(
        log_c, lambda: L.cross_bin_loss(teacher, log_c.exp().cumsum(1), gt, kind="l1"), lr=0.1
    )
    assert last < 0.7 * first


# --- PoseNet ---------------------------------------------------------------------------------------


def test_posenet_layout_and_output():
    net = PoseNet()
    assert sum(p.numel() for p in net.parameters()) == 13_011_950
    sd = net.state_dict()
    shapes = {
        "encoder.encoder.conv1.weight": (64, 6, 7, 7),
        "encoder.encoder.fc.weight": (1000, 512),
        "encoder.encoder.layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "encoder.encoder.layer4.1.bn2.running_var": (512,),
        "decoder.conv_squeeze.weight": (256, 512, 1, 1),
        "decoder.convs_pose.0.weight": (256, 256, 3, 3),
        "decoder.convs_pose.1.bias": (256,),
        "decoder.convs_pose.2.weight": (6, 256, 1, 1),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("decoder.") and "convs_pose.3" in k for k in sd)
    net.eval()
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        vec = net(a, b)
        mats = net.transform(a, b)
    assert vec.shape == (2, 6) and mats.shape == (2, 4, 4)
    assert torch.allclose(mats[:, :3, 3], vec[:, :3])


def test_posenet_imagenet_init_duplicates_and_halves_conv1():
    net = PoseNet()
    src = ResNet18(in_channels=3).state_dict()
    net.load_imagenet_resnet18(src)
    w = net.encoder.encoder.conv1.weight
    assert torch.allclose(w[:, :3], src["conv1.weight"] / 2) and torch.allclose(
        w[:, 3:], src["conv1.weight"] / 2
    )
    assert torch.equal(net.encoder.encoder.fc.weight, src["fc.weight"])


def test_neighbour_pairs_from_the_rig_match_the_ring_default_and_allow_other_rigs():
    x = torch.arange(12.0).reshape(12, 1)  # two rigs of six views
    ring = [((v + 1) % 6, v) for v in range(6)]
    a, b = L.ring_neighbour_pairs(x, 6)
    a2, b2 = L.ring_neighbour_pairs(x, 6, ring)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    # a rig whose views 0 and 3 do not overlap anyone: only the listed pairs
    a3, b3 = L.ring_neighbour_pairs(x, 6, [(2, 1), (5, 4)])
    assert a3.flatten().tolist() == [2.0, 5.0, 8.0, 11.0] and b3.flatten().tolist() == [1.0, 4.0, 7.0, 10.0]
