"""The distillation maths of issue 14 on hand-made tensors: robust per-image alignment of a relative
teacher to metric depth, teacher bins that are the student's bins (the first and last agree), and
SILog scale-invariant per image. CPU, one thread."""

from __future__ import annotations

import math

import pytest
import torch

from bore_depth_ros.train import losses as L
from bore_depth_ros.train.recipes.distill import teacher_bin_targets

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored

A_TRUE = torch.tensor([0.3, 2.0, 0.05])
B_TRUE = torch.tensor([0.01, -0.05, 0.002])


def affine_scene(seed=0, b=3, h=24, w=40, noise=0.0, outliers=0.0, coverage=1.0):
    """Teacher depth t and ground truth with 1 / gt = a / t + b per image (a, b above); a fraction
    ``outliers`` of the GT pixels is replaced by gross errors (x 0.2 .. 0.5 or x 2 .. 5), GT valid
    on a random fraction ``coverage`` of the pixels (LiDAR-like)."""
    g = torch.Generator().manual_seed(seed)
    inv_t = 0.1 + 0.9 * torch.rand(b, 1, h, w, generator=g)
    a, bb = A_TRUE[:b].reshape(-1, 1, 1, 1), B_TRUE[:b].reshape(-1, 1, 1, 1)
    gt = 1.0 / (a * inv_t + bb)
    gt = gt * (1.0 + noise * torch.randn(gt.shape, generator=g))
    bad = torch.rand(gt.shape, generator=g) < outliers
    far = torch.rand(gt.shape, generator=g) < 0.5
    factor = torch.where(
        far, 2.0 + 3.0 * torch.rand(gt.shape, generator=g), 0.2 + 0.3 * torch.rand(gt.shape, generator=g)
    )
    gt = torch.where(bad, gt * factor, gt)
    mask = torch.rand(gt.shape, generator=g) < coverage
    return 1.0 / inv_t, gt, mask, bad


# --- alignment -------------------------------------------------------------------------------------


def test_alignment_recovers_a_known_affine_map_exactly_without_noise():
    t, gt, _, _ = affine_scene()
    a, b, ok = L.fit_inverse_depth_alignment(t, gt)
    assert ok.all()
    assert torch.allclose(a, A_TRUE, rtol=1e-4) and torch.allclose(b, B_TRUE, atol=1e-5)
    metric = L.apply_inverse_depth_alignment(t, a, b, 0.1, 1000.0)
    assert torch.allclose(metric, gt, rtol=1e-4)


def test_alignment_ignores_gross_outliers_in_sparse_lidar_like_gt():
    # 10 % of the pixels carry GT (~96 per image), 30 % of those are gross outliers, 1 % noise
    t, gt, mask, bad = affine_scene(seed=3, noise=0.01, outliers=0.3, coverage=0.1)
    assert (mask & bad).sum() > 60  # the outliers are there
    a, b, ok = L.fit_inverse_depth_alignment(t, gt, mask)
    assert ok.all()
    # scale within 2 %, shift within 2 % of the inverse-depth range (a * [0.1, 1])
    assert ((a - A_TRUE).abs() / A_TRUE).max() < 0.02, (a, A_TRUE)
    assert ((b - B_TRUE).abs() / A_TRUE).max() < 0.02, (b, B_TRUE)
    # ordinary least squares on the same pixels is far off: the robust weights matter
    x, y = (1.0 / t)[0][mask[0]], (1.0 / gt)[0][mask[0]]
    slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum()
    assert abs(float(slope) - 0.3) / 0.3 > 0.1


def test_alignment_flags_images_it_cannot_fit():
    t, gt, mask, _ = affine_scene(b=3)
    mask[1] = False
    mask[1, 0, 0, :5] = True  # 5 pixels: fewer than min_points
    mask[2] = False  # none
    a, b, ok = L.fit_inverse_depth_alignment(t, gt, mask, min_points=32)
    assert ok.tolist() == [True, False, False]
    assert a[1:].tolist() == [1.0, 1.0] and b[1:].tolist() == [0.0, 0.0]  # teacher left unchanged
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    # a teacher without any spread, and one whose depth order is reversed, are refused as well
    flat = torch.full_like(t[:1], 4.0)
    assert not L.fit_inverse_depth_alignment(flat, gt[:1])[2].any()
    reversed_t = 1.0 / (1.5 - 1.0 / t[:1])  # inverse depth 1.5 - x: a < 0
    assert not L.fit_inverse_depth_alignment(reversed_t, gt[:1])[2].any()


def test_applied_alignment_clamps_to_the_depth_range():
    t = torch.tensor([1.0, 2.0, 100.0, math.inf]).reshape(1, 1, 1, 4)
    # 1/d = 1 / t - 0.1: t = 1 -> 1/0.9, t = 2 -> 2.5, t = 100 -> negative -> max_depth; inf -> max
    out = L.apply_inverse_depth_alignment(t, torch.tensor([1.0]), torch.tensor([-0.1]), 0.5, 80.0)
    assert torch.allclose(out.flatten(), torch.tensor([1.0 / 0.9, 2.5, 80.0, 80.0]))


# --- bins ------------------------------------------------------------------------------------------


def test_a_teacher_at_the_student_centres_maps_to_exactly_those_bins_including_the_ends():
    # two views with different (increasing, uneven) centres, K read from the centres
    centres = torch.tensor([[0.6, 1.5, 4.0, 11.0, 30.0, 150.0], [1.0, 2.0, 3.0, 7.0, 20.0, 90.0]])
    k = centres.shape[1]
    depth = centres[:, None, None, :]  # pixel j holds centre j: [2,1,1,K]
    p = L.metric_bin_assignment(depth, centres)
    assert p.shape == (2, k, 1, k)
    assert torch.equal(p[:, :, 0, :], torch.eye(k).expand(2, k, k))  # exactly one-hot, bins 0 .. K-1
    # beyond the ends: the first and last bins; between two centres: linear weights, and the
    # student's depth formula sum_k p_k c_k gives the depth back
    d = torch.tensor([[0.1, 1000.0, 2.75, 13.0]]).reshape(1, 1, 1, 4)
    q = L.metric_bin_assignment(d, centres[:1])
    assert q[0, 0, 0, 0] == 1.0 and q[0, -1, 0, 1] == 1.0
    assert torch.allclose(q[0, 1:3, 0, 2], torch.tensor([0.5, 0.5]))
    expected = torch.tensor([0.6, 150.0, 2.75, 13.0])
    assert torch.allclose((q[0, :, 0, :] * centres[0, :, None]).sum(0), expected)


def test_relative_teacher_aligned_to_lidar_lands_in_the_student_first_and_last_bins():
    # student bins as SVRStudent makes them (log bins from min_depth to max_depth, uneven widths)
    edges = torch.exp(torch.linspace(math.log(0.5), math.log(200.0), 9))[None]
    edges = edges * torch.tensor([1.0, 1.0, 1.1, 0.9, 1.0, 1.2, 0.95, 1.0, 1.0])  # still increasing
    centres = torch.sqrt(edges[:, :-1] * edges[:, 1:])  # [1, 8]
    k = centres.shape[1]
    # the scene: each of 4 rows holds the K centre depths; the teacher is relative, an affine map
    # of the inverse depth (scale 7, shift 0.3), and GT covers only rows 0 and 2 (sparse)
    truth = centres[0].repeat(4, 1).reshape(1, 1, 4, k)
    teacher = 1.0 / (7.0 / truth + 0.3)
    gt = torch.full_like(truth, math.nan)
    gt[:, :, ::2] = truth[:, :, ::2]
    mask = torch.isfinite(gt)
    t = teacher_bin_targets(
        teacher, torch.nan_to_num(gt, nan=1.0), mask, centres, (4, k), 0.1, 500.0, min_points=8
    )
    assert t.gt_aligned.all() and t.kl_mask.all() and t.cross_probs is None
    onehot = torch.eye(k)[:, None, :].expand(k, 4, k)  # bin j at column j of every row
    assert torch.allclose(t.kl_probs[0], onehot, atol=1e-4), t.kl_probs[0, :, 1]
    assert t.kl_probs[0, 0, :, 0].min() > 0.9999 and t.kl_probs[0, -1, :, -1].min() > 0.9999  # the ends
    # the student's depth formula on these probabilities gives the truth back, first and last
    # columns included (issue 14: the per-image normalised assignment was 0.28 .. 0.82 off in log
    # depth at the ends)
    depth = (t.kl_probs * centres[0, :, None, None]).sum(1)
    assert torch.allclose(depth.log(), truth[0, 0].log(), atol=1e-4)


def test_images_without_enough_gt_are_masked_or_aligned_to_the_student():
    centres = torch.tensor([[1.0, 2.0, 4.0, 8.0]]).repeat(2, 1)
    truth = torch.tensor([1.0, 2.0, 4.0, 8.0]).repeat(2, 8, 1).reshape(2, 1, 8, 4)
    teacher = 1.0 / (3.0 / truth + 0.1)
    mask = torch.ones_like(truth, dtype=torch.bool)
    mask[1] = False  # view 1 has no GT
    args = (teacher, truth, mask, centres, (8, 4), 0.5, 80.0, 8)
    t = teacher_bin_targets(*args, "mask")
    assert t.gt_aligned.tolist() == [True, False]
    assert t.kl_mask[0].all() and not t.kl_mask[1].any()
    # "student": view 1 takes the student's scale (here the student predicts 2 x truth)
    t = teacher_bin_targets(*args, "student", 2.0 * truth)
    assert t.gt_aligned.tolist() == [True, False] and t.kl_mask.all()
    depth = (t.kl_probs * centres[:, :, None, None]).sum(1, keepdim=True)
    assert torch.allclose(depth[0], truth[0], rtol=1e-4)
    # 2 x truth on the bins 1 .. 8 m: 2, 4, 8 and 16 -> clamped to the last centre, 8
    assert torch.allclose(depth[1], (2.0 * truth[1]).clamp_max(8.0), rtol=1e-4)
    # a hole in the teacher (NaN, e.g. in stored labels) is no target
    holed = teacher.clone()
    holed[0, 0, 3, 2] = math.nan
    t = teacher_bin_targets(holed, *args[1:], "mask")
    assert t.gt_aligned.tolist() == [True, False] and t.kl_mask[0].sum() == 31 and not t.kl_mask[0, 0, 3, 2]
    with pytest.raises(ValueError, match="align_fallback"):
        teacher_bin_targets(*args, "nearest")
    with pytest.raises(ValueError, match="student's depth"):
        teacher_bin_targets(*args, "student")


def test_cross_targets_carry_the_teacher_shape_at_the_student_scale():
    # Aligned to GT, sum_k t_k c_k would equal the aligned teacher whatever the centres; aligned to
    # the student's depth, the cross term sees the student's scale error and not the teacher's
    centres = torch.tensor([[0.5, 1.0, 2.0, 4.0, 8.0, 16.0]]).repeat(2, 1)
    truth = torch.tensor([1.0, 2.0, 4.0, 8.0]).repeat(2, 8, 1).reshape(2, 1, 8, 4)
    teacher = 1.0 / (3.0 / truth + 0.1)
    mask = torch.ones_like(truth, dtype=torch.bool)
    student = truth * torch.tensor([1.0, 2.0]).reshape(2, 1, 1, 1)  # view 1: twice too far
    t = teacher_bin_targets(teacher, truth, mask, centres, (8, 4), 0.1, 80.0, 8, "mask", student, cross=True)
    assert t.cross_ok.tolist() == [True, True]
    d_x = (t.cross_probs * centres[:, :, None, None]).sum(1, keepdim=True)
    assert torch.allclose(d_x, student, rtol=1e-4)
    # the KL targets stay on GT whatever the student predicts
    assert torch.allclose((t.kl_probs * centres[:, :, None, None]).sum(1, keepdim=True), truth, rtol=1e-4)
    per_view = [
        float(L.cross_bin_loss(t.cross_probs[i : i + 1], centres[i : i + 1], truth[i : i + 1], lam=0.0))
        for i in (0, 1)
    ]
    c = centres.clone().requires_grad_(True)
    assert per_view[0] < 1e-4 and abs(per_view[1] - math.log(2)) < 1e-4
    # the gradient moves view 1's centres down (towards GT), view 0's not at all
    L.cross_bin_loss(t.cross_probs, c, truth, lam=0.0).backward()
    assert (c.grad[1] >= 0).all() and c.grad[1].sum() > 0 and c.grad[0].abs().max() < 1e-4


# --- SILog per image -------------------------------------------------------------------------------


def test_silog_is_scale_invariant_per_image():
    torch.manual_seed(0)
    gt = torch.rand(2, 1, 6, 6) * 10 + 0.5
    pred = gt * torch.tensor([2.0, 3.0]).reshape(2, 1, 1, 1)  # perfect shapes at scales 2 and 3
    # issue 14: pooled over the batch this cost sqrt(var(g)) = (ln 3 - ln 2) / 2 = 0.2027
    assert float(L.silog_loss(pred, gt, lam=1.0)) == 0.0
    # lam < 1 charges each image's own scale: sqrt(0.15 (ln^2 2 + ln^2 3) / 2) = 0.355746
    assert (
        abs(
            float(L.silog_loss(pred, gt, lam=0.85))
            - math.sqrt(0.15 * (math.log(2) ** 2 + math.log(3) ** 2) / 2)
        )
        < 1e-5
    )
    # shape errors still cost: one pixel of image 1 at 2x its own scale. Image 1 (36 pixels,
    # g = ln 3 + ln 2 at one pixel): var = ln^2 2 * (1/36)(35/36); image 0 costs 0; mean of the two
    bent = pred.clone()
    bent[1, 0, 0, 0] *= 2.0
    expected = math.sqrt(math.log(2) ** 2 * 35 / 36**2 / 2)
    assert abs(float(L.silog_loss(bent, gt, lam=1.0)) - expected) < 1e-5


def test_silog_averages_only_images_with_valid_pixels_and_keeps_a_finite_gradient():
    gt = torch.tensor([1.0, 2.0, 4.0, 8.0]).reshape(1, 1, 1, 4).repeat(3, 1, 1, 1)
    log_pred = torch.log(gt * torch.tensor([2.0, 1.0, 1.0]).reshape(3, 1, 1, 1))
    log_pred[1, 0, 0, 0] += math.log(2.0)  # image 1: g = (ln 2, 0, 0, 0)
    log_pred.requires_grad_(True)
    mask = torch.ones_like(gt, dtype=torch.bool)
    mask[2] = False  # image 2 has no valid pixel: it counts neither in the mean nor the gradient
    loss = L.silog_loss(log_pred.exp(), gt, mask, lam=1.0)
    # image 0: 0; image 1: var of (ln 2, 0, 0, 0) = ln^2 2 * 3/16; mean over two images
    assert abs(float(loss.detach()) - math.log(2) * math.sqrt(3 / 32)) < 1e-6
    loss.backward()
    assert torch.isfinite(log_pred.grad).all() and (log_pred.grad[2] == 0).all()
    # every image perfect up to scale: exactly 0, a zero (not NaN) gradient
    p = torch.log(2.0 * gt).requires_grad_(True)
    zero = L.silog_loss(p.exp(), gt, lam=1.0)
    zero.backward()
    assert float(zero.detach()) == 0.0 and torch.equal(p.grad, torch.zeros_like(p))
    # nothing valid at all: a zero still attached to the graph
    empty = L.silog_loss(p.exp(), gt, torch.zeros_like(mask))
    assert float(empty.detach()) == 0.0 and empty.requires_grad
