"""Surround models (`svr`, `semi_smd`: our designs after the SVR and Semi-SMD papers), their registry
entries and the viewing-ray geometry. CPU, one thread, six views at 64x96."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.rays import focal_ratio, rig_inputs, viewing_rays
from bore_depth_ros.core.transforms import OPTICAL_IN_BODY
from bore_depth_ros.models import ModelInfo, create_model, get_model_info, list_models
from bore_depth_ros.sim.rig import RING_ORDER, SURROUND_RIG, CameraSpec

N, H, W = 6, 64, 96
BATCH_TOL = 1e-5  # batched vs per-view: max abs diff relative to the depth magnitude
ONNX_TOL = 1e-3  # ORT vs torch: max elementwise relative error (depth), max abs error (confidence)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


def sharpen(model: torch.nn.Module) -> torch.nn.Module:
    """Amplify the last layers of an untrained model so its outputs vary across pixels and views."""
    with torch.no_grad():
        if hasattr(model, "pixel_head"):
            model.pixel_head[-1].weight.mul_(30.0)
            model.bin_mlp[-1].weight.mul_(30.0)
        if hasattr(model, "depth_head"):
            model.depth_head.conv.weight.mul_(30.0)
            model.confidence_head.conv.weight.mul_(30.0)
        if hasattr(model, "token_out"):
            model.token_out.weight.mul_(10.0)
    return model.eval()


def build(name: str, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return sharpen(create_model(name, **kw))


@pytest.fixture(scope="module")
def svr(torch_one_thread):
    return build("svr")


@pytest.fixture(scope="module")
def semi_smd(torch_one_thread):
    return build("semi_smd")


def rig_geometry(height: int = H, width: int = W) -> dict[str, torch.Tensor]:
    """rays/origins/focal of the simulated six-camera rig in RING_ORDER."""
    specs = {c.name: c for c in SURROUND_RIG}
    cams = [specs[n] for n in RING_ORDER]
    info = get_model_info("semi_smd")
    geo = rig_inputs(
        [c.intrinsics(640, 384) for c in cams],
        [c.base_from_optical() for c in cams],
        (height, width),
        info.canonical_focal,
    )
    return {k: torch.from_numpy(v) for k, v in geo.items()}


def images(seed: int, n: int = N, height: int = H, width: int = W) -> torch.Tensor:
    return torch.randn(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def inputs_for(name: str, seed: int = 1) -> dict[str, torch.Tensor]:
    geo = rig_geometry()
    all_inputs = {"image": images(seed), "prev_image": images(seed + 100), **geo}
    return {n: all_inputs[n] for n in get_model_info(name).input_names}


def run(model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model(*inputs.values())


# --- registry ----------------------------------------------------------------------------------------


def test_registry_entries():
    assert {"bore_depth", "svr", "semi_smd"} <= set(list_models())
    bore = get_model_info("bore_depth")
    assert bore.input_names == ("image",) and not bore.needs_previous_frame and bore.canonical_focal == 0
    assert bore.input_shapes(2, 64, 96) == {"image": (2, 3, 64, 96)}

    svr = get_model_info("svr")
    assert (
        isinstance(svr, ModelInfo)
        and "SVR-style" in svr.description
        and "not the official" in svr.description
    )
    assert svr.input_names == ("image", "focal") and svr.output_names == ("depth", "confidence")
    assert svr.metric and svr.num_cameras == 0 and not svr.needs_previous_frame
    assert svr.canonical_focal == 250.0 and (svr.min_depth, svr.max_depth) == (0.5, 200.0)
    assert svr.input_presets == {"ddad": (384, 640), "nuscenes": (352, 640), "small": (192, 320)}
    assert svr.default_input_size == (192, 320)
    assert svr.mean == (0.485, 0.456, 0.406) and svr.std == (0.229, 0.224, 0.225)
    assert svr.input_shapes(5, 64, 96) == {"image": (5, 3, 64, 96), "focal": (5, 1)}  # any number of views

    smd = get_model_info("semi_smd")
    assert "Semi-SMD-style" in smd.description and "not the official" in smd.description
    assert smd.input_names == ("image", "prev_image", "rays", "origins", "focal")
    assert smd.output_names == ("depth", "confidence") and smd.metric
    assert smd.num_cameras == 6 and smd.needs_previous_frame and smd.ray_stride == 32
    assert smd.input_shapes(12, 64, 96) == {
        "image": (12, 3, 64, 96),
        "prev_image": (12, 3, 64, 96),
        "rays": (12, 3, 2, 3),
        "origins": (12, 3),
        "focal": (12, 1),
    }
    with pytest.raises(ValueError, match="whole rigs of 6"):
        smd.input_shapes(5, 64, 96)
    with pytest.raises(ValueError, match="width 100"):
        smd.input_shapes(6, 64, 100)
    with pytest.raises(ValueError, match="unique"):
        ModelInfo(name="x", input_names=("image", "image"))


def test_registry_imports_no_torch():
    code = (
        "import sys; from bore_depth_ros.models import get_model_info; "
        "get_model_info('semi_smd').input_shapes(6, 64, 96); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- outputs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["svr", "semi_smd"])
def test_output_shapes_and_ranges(name, request):
    model = request.getfixturevalue(name)
    info = get_model_info(name)
    inputs = inputs_for(name)
    inputs["focal"] = torch.linspace(0.5, 1.5, N).reshape(N, 1)
    depth, conf = run(model, inputs)
    assert depth.shape == conf.shape == (N, 1, H, W) and depth.dtype == conf.dtype == torch.float32
    assert torch.isfinite(depth).all() and torch.isfinite(conf).all()
    f = inputs["focal"].reshape(N, 1, 1, 1)
    assert (depth >= info.min_depth * f * (1 - 1e-5)).all() and (
        depth <= info.max_depth * f * (1 + 1e-5)
    ).all()
    assert conf.min() >= 0 and conf.max() <= 1
    assert depth.std() > 1e-3, "the sharpened model should not predict a constant"


@pytest.mark.parametrize("name", ["bore_depth", "svr"])
def test_batched_equals_per_view(name, svr):
    model = svr if name == "svr" else build(name)
    inputs = inputs_for(name)
    batched = run(model, inputs)
    per_view = [run(model, {k: v[i : i + 1] for k, v in inputs.items()}) for i in range(N)]
    outs = batched if isinstance(batched, tuple) else (batched,)
    for j, out in enumerate(outs):
        single = torch.cat([p[j] if isinstance(p, tuple) else p for p in per_view])
        err = (out - single).abs().max() / out.abs().max()
        assert err < BATCH_TOL, (name, j, float(err))


def _view_change(model, inputs, name: str, view: int, seed: int = 99) -> torch.Tensor:
    """Per-view max relative change of the depth output when input `name` of `view` changes."""
    base, _ = run(model, inputs)
    changed = {k: v.clone() for k, v in inputs.items()}
    if name == "rays":
        changed["rays"][view] = -changed["rays"][view]
    else:
        changed[name][view] = images(seed, n=1)[0]
    depth, _ = run(model, changed)
    return (depth - base).abs().amax(dim=(1, 2, 3)) / base.abs().amax(dim=(1, 2, 3))


ZERO = 1e-7  # "no influence": views beyond the attention's ring reach come out bit-identical in practice
SOME = 1e-5  # "influence": observed 1e-4 .. 1e-2 relative at random init


def test_semi_smd_fuses_ring_neighbours_only(semi_smd):
    """Default model: with two blocks view v sees views within ring distance 2, never the opposite one.

    The untrained MPViT-tiny's stride-32 features barely depend on the image (about 1e-6 relative), so
    here the neighbour's geometry (its rays) is changed; image influence is shown with ResNet-18 below.
    """
    inputs = inputs_for("semi_smd")
    change = _view_change(semi_smd, inputs, "rays", 1)
    assert change[0] > SOME and change[2] > SOME, change  # ring neighbours of view 1
    assert change[4] < ZERO, change  # ring distance 3 from view 1
    assert _view_change(semi_smd, inputs, "rays", 5)[0] > SOME  # the ring wraps: view 5 is next to view 0
    assert _view_change(semi_smd, inputs, "image", 3)[0] < ZERO  # opposite view: no influence


@pytest.mark.parametrize("num_blocks", [1, 2])
def test_semi_smd_image_fusion_is_ring_local(num_blocks):
    model = build("semi_smd", backbone="resnet18", num_blocks=num_blocks)
    inputs = inputs_for("semi_smd")
    change = _view_change(model, inputs, "image", 1)
    assert change[0] > SOME and change[2] > SOME, change
    beyond = [3, 4, 5] if num_blocks == 1 else [4]  # ring distance > num_blocks from view 1
    assert all(change[v] < ZERO for v in beyond), change
    change = _view_change(model, inputs, "prev_image", 0)  # temporal attention, same camera
    assert change[0] > SOME, change
    assert all(change[v] < ZERO for v in ([1, 2, 3, 4, 5] if num_blocks == 1 else [2, 3, 4])), change


def test_semi_smd_rejects_partial_rigs_and_bad_shapes(semi_smd):
    inputs = inputs_for("semi_smd")
    with pytest.raises(ValueError, match="6-camera rigs"):
        run(semi_smd, {k: v[:4] for k, v in inputs.items()})
    with pytest.raises(ValueError, match="rays"):
        run(semi_smd, {**inputs, "rays": inputs["rays"][:, :, :1]})


def test_svr_focal_scales_depth(svr):
    inputs = inputs_for("svr")
    depth, conf = run(svr, inputs)
    depth2, conf2 = run(svr, {**inputs, "focal": inputs["focal"] * 2})
    torch.testing.assert_close(depth2, 2 * depth, rtol=1e-5, atol=0)
    torch.testing.assert_close(conf2, conf, rtol=0, atol=0)


def test_svr_forward_train(svr):
    inputs = inputs_for("svr")
    with torch.no_grad():
        out = svr.forward_train(*inputs.values())
        depth, conf = run(svr, inputs)
    k = svr.num_bins
    assert k == 64
    assert out["logits"].shape == out["probs"].shape == out["log_probs"].shape == (N, k, H, W)
    assert out["bin_centres"].shape == out["bin_centres_canonical"].shape == (N, k)
    assert out["bin_edges"].shape == (N, k + 1)
    assert out["features"].shape == (N, 16, H, W) and out["bottleneck"].shape == (N, 216, H // 32, W // 32)
    torch.testing.assert_close(out["probs"].sum(1), torch.ones(N, H, W))
    centres = out["bin_centres_canonical"]
    assert (centres.diff(dim=1) > 0).all() and centres.min() >= 0.5 and centres.max() <= 200.0
    torch.testing.assert_close(out["bin_centres"], centres * inputs["focal"])
    expected = torch.einsum("nkhw,nk->nhw", out["probs"], out["bin_centres"])[:, None]
    torch.testing.assert_close(out["depth"], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["depth"], depth)
    torch.testing.assert_close(out["confidence"], conf)
    edges = out["bin_edges"] / inputs["focal"]
    torch.testing.assert_close(edges[:, 0], torch.full((N,), 0.5))
    torch.testing.assert_close(edges[:, -1], torch.full((N,), 200.0))


def test_svr_resnet18_half_resolution():
    model = build("svr", backbone="resnet18", output_stride=2, num_bins=32, log_bins=False)
    inputs = inputs_for("svr")
    with torch.no_grad():
        out = model.forward_train(*inputs.values())
    assert out["probs"].shape == (N, 32, H // 2, W // 2) and out["features"].shape == (N, 32, H // 2, W // 2)
    assert out["depth"].shape == out["confidence"].shape == (N, 1, H, W)
    assert out["bottleneck"].shape == (N, 512, H // 32, W // 32)
    with pytest.raises(ValueError, match="backbone"):
        create_model("svr", backbone="vgg")


# --- viewing rays --------------------------------------------------------------------------------------


def test_viewing_rays_hand_computation():
    k = Intrinsics(fx=100.0, fy=100.0, cx=47.5, cy=47.5, width=96, height=96)
    rays = viewing_rays(k, OPTICAL_IN_BODY, (96, 96), stride=32)
    assert rays.shape == (3, 3, 3) and rays.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rays, axis=0), 1.0, atol=1e-6)
    # Top-left cell: centre pixel (15.5, 15.5); optical ray (-0.32, -0.32, 1) = forward, left, up in
    # base_link.
    np.testing.assert_allclose(
        rays[:, 0, 0], np.array([1.0, 0.32, 0.32]) / np.sqrt(1 + 2 * 0.32**2), atol=1e-6
    )
    np.testing.assert_allclose(rays[:, 1, 1], [1.0, 0.0, 0.0], atol=1e-6)
    # The same camera described at twice the resolution gives the same rays.
    k2 = Intrinsics(fx=200.0, fy=200.0, cx=95.5, cy=95.5, width=192, height=192)
    np.testing.assert_allclose(viewing_rays(k2, OPTICAL_IN_BODY, (96, 96), 32), rays, atol=1e-6)


def test_viewing_rays_rig_directions():
    hw = (96, 160)  # 3 x 5 cells: the middle cell's centre is the principal point
    front = CameraSpec("front", 0.0, 70.0)
    left = CameraSpec("left", 90.0, 70.0)
    for cam, axis in ((front, [1.0, 0.0, 0.0]), (left, [0.0, 1.0, 0.0])):
        rays = viewing_rays(cam.intrinsics(1280, 768), cam.base_from_optical().rotation, hw, 32)
        assert rays.shape == (3, 3, 5)
        np.testing.assert_allclose(rays[:, 1, 2], axis, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of stride"):
        viewing_rays(front.intrinsics(1280, 768), np.eye(3), (100, 160), 32)


def test_rig_inputs():
    geo = rig_geometry()
    assert geo["rays"].shape == (N, 3, H // 32, W // 32) and geo["origins"].shape == (N, 3)
    assert geo["focal"].shape == (N, 1)
    assert all(v.dtype == torch.float32 for v in geo.values())
    specs = {c.name: c for c in SURROUND_RIG}
    np.testing.assert_allclose(geo["origins"][0].numpy(), specs[RING_ORDER[0]].position, rtol=1e-6)
    fx = specs["front"].intrinsics(640, 384).scaled_to(W, H).fx
    assert geo["focal"][0, 0] == pytest.approx(fx / 250.0)
    assert focal_ratio(specs["front"].intrinsics(640, 384), (H, W), 250.0) == pytest.approx(fx / 250.0)


# --- ONNX --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kw",
    [
        ("svr", {"backbone": "resnet18", "output_stride": 2}),
        ("semi_smd", {"backbone": "resnet18", "num_blocks": 1}),
    ],
)
def test_onnx_export_and_ort_parity(name, kw, tmp_path):
    pytest.importorskip("onnxruntime")
    from bore_depth_ros.backends import create_backend, export_onnx

    info = get_model_info(name)
    model = build(name, **kw)
    shapes = info.input_shapes(N, H, W)
    report = export_onnx(
        model, tmp_path / f"{name}.onnx", shapes, info.output_names, rtol=ONNX_TOL, atol=ONNX_TOL
    )
    assert report.input_shapes == shapes and set(report.max_abs_err) == {"depth", "confidence"}
    ort = create_backend(
        "onnxruntime",
        onnx_path=report.path,
        input_shapes=shapes,
        output_names=info.output_names,
        intra_op_threads=1,
    )
    feed = {k: np.ascontiguousarray(v.numpy()) for k, v in inputs_for(name, seed=5).items()}
    got = ort.infer(feed)
    ref = run(model, {k: torch.from_numpy(v) for k, v in feed.items()})
    depth_rel = float((np.abs(got["depth"] - ref[0].numpy()) / ref[0].numpy()).max())
    conf_abs = float(np.abs(got["confidence"] - ref[1].numpy()).max())
    assert depth_rel < ONNX_TOL and conf_abs < ONNX_TOL, (depth_rel, conf_abs)
