"""The torch backend's CPU paths: channels_last against the default layout, and bf16 against fp32.

Tolerances (measured on the embedded defaults, seeded inputs: channels_last differs from the default
layout by at most 4e-6 relative in depth and 8e-7 absolute in confidence; float32 rounding of other
convolution algorithms):

- channels_last vs contiguous: depth max relative difference <= 1e-4, confidence max absolute
  difference <= 1e-5;
- bf16 vs fp32 (the accuracy gate): median relative depth difference <= 1 % on rendered frames
  (the held-out sim recording's first frame, six cameras) with the EMBEDDED default weights of
  bore_depth and svr, through the engine (real preprocessing). On a CPU without native bf16 the
  same test checks that bf16 is refused instead.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from bore_depth_ros.backends import create_backend, seeded_inputs
from bore_depth_ros.backends.torch_backend import (
    BF16_MAX_MEDIAN_REL,
    PrecisionCheckFailed,
    TorchBackend,
    check_precision,
    cpu_bf16_support,
    keep_bf16_weights,
    precision_gap,
)
from bore_depth_ros.engine import DepthEngine, EngineConfig, embedded_weights_path
from bore_depth_ros.models import get_model_info, load_checkpoint

LAYOUT_DEPTH_MAX_REL = 1e-4
LAYOUT_CONFIDENCE_MAX_ABS = 1e-5
NATIVE_BF16, CPU_BF16 = cpu_bf16_support()


def embedded(name: str) -> nn.Module:
    path = embedded_weights_path(name)
    assert path is not None, f"no embedded default weights for {name}"
    return load_checkpoint(str(path), model_name=name)


@pytest.mark.parametrize("name", ["bore_depth", "svr"])
def test_channels_last_matches_default_layout(name):
    info = get_model_info(name)
    shapes = info.input_shapes(1, *info.default_input_size)
    feed = seeded_inputs(shapes, seed=5)
    out = {}
    for layout in ("contiguous", "channels_last"):
        backend = create_backend(
            "torch",
            model=embedded(name),
            input_shapes=shapes,
            output_names=info.output_names,
            memory_format=layout,
        )
        assert backend.describe()["memory_format"] == layout
        out[layout] = backend.infer(feed)
    for n in info.output_names:
        a, b = out["contiguous"][n].astype(np.float64), out["channels_last"][n].astype(np.float64)
        assert out["channels_last"][n].flags.c_contiguous and out["channels_last"][n].dtype == np.float32
        if n == "confidence":
            assert np.abs(a - b).max() <= LAYOUT_CONFIDENCE_MAX_ABS, n
        else:
            assert (np.abs(a - b) / np.abs(a)).max() <= LAYOUT_DEPTH_MAX_REL, n


def test_channels_last_is_the_cpu_default_and_can_be_turned_off():
    model = embedded("bore_depth")
    backend = TorchBackend(model, (1, 3, 64, 96), ("depth",))
    assert backend.memory_format == "channels_last"
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    plain = embedded("bore_depth")
    TorchBackend(plain, (1, 3, 64, 96), ("depth",), memory_format="contiguous")
    assert all(m.weight.is_contiguous() for m in plain.modules() if isinstance(m, nn.Conv2d))
    with pytest.raises(ValueError, match="memory_format must be one of"):
        TorchBackend(plain, (1, 3, 64, 96), ("depth",), memory_format="nhwc")


def _rendered_rig(width: int = 320, height: int = 192):
    """Six camera images and intrinsics of the held-out recording's first frame (seed 99, density
    1.3: the recording the default weights' cards were measured on, tools/train_defaults.sh)."""
    from bore_depth_ros.sim.pybullet_scene import PybulletWorld
    from bore_depth_ros.sim.recording import RecordingConfig, ego_pose, scene_for
    from bore_depth_ros.sim.rig import rig_by_name
    from bore_depth_ros.sim.scene_config import SceneConfig

    config = RecordingConfig(
        rig="surround", frames=1, seed=99, width=width, height=height, scene=SceneConfig(density=1.3)
    )
    pose = ego_pose(0.0, config)
    images, intrinsics = [], []
    with PybulletWorld(scene_for(config)) as world:
        for cam in rig_by_name("surround"):
            intr = cam.intrinsics(width, height)
            rgb, _, _ = world.render_camera(pose @ cam.base_from_optical(), intr)
            images.append(rgb)
            intrinsics.append(intr)
    return images, intrinsics


@pytest.fixture(scope="module")
def rig_frame():
    return _rendered_rig()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bore_depth", "svr"])
def test_bf16_accuracy_gate_on_rendered_frames(rig_frame, name):
    images, intrinsics = rig_frame
    config = EngineConfig(model=name, backend="torch", batch=len(images))
    if not NATIVE_BF16:  # this CPU cannot run bf16 natively: the gate is the refusal
        with pytest.raises(ValueError, match="native bf16"):
            DepthEngine(replace(config, precision="bf16"))
        return
    fp32 = DepthEngine(config)
    bf16 = DepthEngine(replace(config, precision="bf16"))
    assert fp32.weights_source.startswith("embedded:") and bf16.weights_source.startswith("embedded:")
    ref = fp32.infer(images, intrinsics=intrinsics)
    got = bf16.infer(images, intrinsics=intrinsics)
    gap = precision_gap({"depth": got.depth}, {"depth": ref.depth})["depth"]
    rel = np.abs(got.depth.astype(np.float64) - ref.depth) / np.abs(ref.depth)
    print(
        f"\n{name} bf16 vs fp32 on six rendered views: median relative depth difference {gap:.3%} "
        f"(plain |d|/|r| median {np.median(rel):.3%}, p99 {np.percentile(rel, 99):.3%})"
    )
    assert np.isfinite(got.depth).all()
    assert gap <= BF16_MAX_MEDIAN_REL and np.median(rel) <= BF16_MAX_MEDIAN_REL
    desc = bf16.describe()
    assert desc["precision"] == "bf16" and "limit 1%" in desc["bf16_check"], desc
    if got.confidence is not None:
        assert np.median(np.abs(got.confidence - ref.confidence)) <= BF16_MAX_MEDIAN_REL


class RoundsAwayTheSignal(nn.Module):
    """A 1x1 conv that adds 1000 before subtracting it again: bf16 keeps ~3 significant digits of
    the sum, so the small signal is lost (the start check must catch it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / 3.0)
            self.conv.bias.fill_(1000.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).float() - 1000.0 + 5.0


def test_bf16_start_check_refuses_a_model_that_loses_precision():
    if not NATIVE_BF16:
        with pytest.raises(ValueError, match="native bf16"):
            TorchBackend(RoundsAwayTheSignal(), (1, 3, 32, 32), ("depth",), precision="bf16")
        return
    refused = RoundsAwayTheSignal()
    with pytest.raises(PrecisionCheckFailed, match=r"refusing precision 'bf16'.*more than the 1% allowed"):
        TorchBackend(refused, (1, 3, 32, 32), ("depth",), precision="bf16")
    assert refused.conv.weight.dtype == torch.float32  # a refused model is left in fp32
    # without the check the backend starts (and computes what bf16 gives)
    backend = TorchBackend(
        RoundsAwayTheSignal(), (1, 3, 32, 32), ("depth",), precision="bf16", bf16_check=False
    )
    assert backend.bf16_gap is None and "bf16_check" not in backend.describe()


def test_bf16_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="bf16.*backend 'onnxruntime' takes 'fp32'"):
        create_backend(
            "onnxruntime",
            model=RoundsAwayTheSignal(),
            input_shape=(1, 3, 32, 32),
            output_names=("depth",),
            precision="bf16",
        )
    with pytest.raises(ValueError, match="backend 'tensorrt' takes 'fp32' or 'fp16'"):
        create_backend(
            "tensorrt",
            onnx_path="x.onnx",
            input_shape=(1, 3, 32, 32),
            output_names=("d",),
            precision="bf16",
            device="cuda",
        )
    with pytest.raises(ValueError, match="precision 'bf16' is for the torch backend on CPU"):
        check_precision("bf16", torch.device("cuda"))
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("int8", torch.device("cpu"))
    # the engine refuses before loading a model
    with pytest.raises(ValueError, match="runs on backend 'torch' with device 'cpu'"):
        DepthEngine(EngineConfig(backend="onnxruntime", precision="bf16"))
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16"):
        DepthEngine(EngineConfig(backend="torch", precision="half"))


def test_bf16_support_follows_torch_cpu_probes():
    expected = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert NATIVE_BF16 == expected
    assert ("AVX512-BF16" in CPU_BF16 or "AMX" in CPU_BF16) == expected


def test_precision_gap_measures_median_relative_difference():
    ref = {"depth": np.array([1.0, 2.0, 4.0, 8.0]), "confidence": np.array([0.0, 0.5, 1.0, 1.0])}
    cand = {"depth": np.array([1.01, 2.0, 4.4, 8.0]), "confidence": np.array([0.02, 0.5, 1.0, 1.0])}
    gaps = precision_gap(cand, ref)
    assert gaps["depth"] == pytest.approx(0.005)  # relative errors 1 %, 0, 10 %, 0: median 0.5 %
    assert gaps["confidence"] == pytest.approx(0.0)  # absolute over the [0, 1] range
    assert (
        precision_gap({"depth": np.array([np.nan, 2.0])}, {"depth": np.array([1.0, 2.0])})["depth"] == np.inf
    )


def test_bf16_weights_cast_once_give_the_same_outputs():
    """keep_bf16_weights stores conv/linear weights in bf16: autocast then skips their per-call
    cast, with bit-identical outputs (the same rounding)."""
    import copy

    plain = embedded("svr").eval()
    cast = copy.deepcopy(plain)
    keep_bf16_weights(cast)
    convs = [m for m in cast.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    norms = [m for m in cast.modules() if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d))]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    x, focal = torch.from_numpy(seeded_inputs({"image": (1, 3, 64, 96)})["image"]), torch.ones(1, 1)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = plain(x, focal), cast(x, focal)
    for ta, tb in zip(a, b):
        assert torch.equal(ta, tb)
