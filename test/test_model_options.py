"""Architecture options of the surround models (``model_options`` in the training YAML): validated
against what each model accepts, recorded in the weights file, and rebuilt from the file alone by
``load_checkpoint`` and the depth engine (torch and ONNX Runtime). CPU, one thread, 64x96."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bore_depth_ros.engine import DepthEngine, EngineConfig
from bore_depth_ros.models import CheckpointError, create_model, get_model_info, load_checkpoint
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.train.config import TrainConfig
from bore_depth_ros.train.state import save_weights
from bore_depth_ros.train.trainer import train

HW = (64, 96)
SVR_OPTIONS = {"bins": 48, "width": 32, "output_stride": 2}

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("options") / "rec"
    record(
        path,
        RecordingConfig(rig="surround", frames=2, width=96, height=64, lidar=False, seed=3),
        progress=False,
    )
    return str(path)


def config(bag, out, **kw) -> TrainConfig:
    base = dict(
        model="svr",
        recipe="supervised_metric",
        train=[bag],
        out_dir=str(out),
        input_height=HW[0],
        input_width=HW[1],
        batch=2,
        steps=2,
        lr=1e-3,
        lr_final=1e-3,
        threads=1,
        log_every=1000,
        checkpoint_every=1000,
        save_fp16=False,
        model_options=dict(SVR_OPTIONS),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_unknown_options_are_refused_in_one_line_listing_the_known_ones(bag, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^unknown model_options \['bin'\] for model svr; known: "
        r"backbone, bins, output_stride, width$",
    ):
        create_model("svr", options={"bin": 48})
    with pytest.raises(ValueError, match="known: none"):
        create_model("bore_depth", options={"width": 32})
    with pytest.raises(ValueError, match="known: backbone, blocks, embed_dim, heads, output_stride, width"):
        get_model_info("semi_smd").resolve_options({"bins": 4})
    for bad, what in (
        ({"width": 30}, "multiple of 8"),
        ({"output_stride": 3}, "one of"),
        ({"bins": "9"}, "int"),
    ):
        with pytest.raises(ValueError, match=what):
            create_model("svr", options=bad)
    with pytest.raises(ValueError, match=r"unknown model_options \['depth_bins'\]"):
        train(config(bag, tmp_path / "run", model_options={"depth_bins": 8}), progress=False)
    assert not (tmp_path / "run" / "weights.pt").exists()


@pytest.mark.parametrize(
    "name,options",
    [
        ("svr", {"bins": 16, "backbone": "resnet18", "width": 16, "output_stride": 4}),
        ("semi_smd", {"width": 16, "backbone": "resnet18", "output_stride": 4, "embed_dim": 32, "heads": 2}),
    ],
)
def test_options_shape_the_network_and_outputs_stay_full_resolution(name, options):
    info = get_model_info(name)
    model = create_model(name, options=options).eval()
    assert model.model_options() == info.resolve_options(options)
    assert model.encoder.num_ch_enc == [16, 16, 32, 64, 128]
    default = create_model(name)
    assert default.model_options() == info.resolve_options()
    n = 6
    shapes = info.input_shapes(n, *HW)
    g = torch.Generator().manual_seed(0)
    args = [torch.rand(shapes[k], generator=g) + (0.5 if k == "focal" else 0.0) for k in info.input_names]
    with torch.no_grad():
        depth, confidence = model(*args)
    assert depth.shape == confidence.shape == (n, 1, *HW)
    assert torch.isfinite(depth).all()
    if name == "svr":
        assert model.pixel_head[-1].out_channels == 16


def test_mpvit_width_scales_every_stage_and_the_default_is_the_published_encoder():
    from bore_depth_ros.models.svr import mpvit_dims

    assert mpvit_dims(64) == (64, 96, 176, 216)
    assert mpvit_dims(32) == (32, 48, 88, 112)
    assert create_model("svr", options={"width": 32}).encoder.num_ch_enc == [32, 48, 88, 112, 112]


def engine_input(seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {
        "image": g.standard_normal((1, 3, *HW)).astype(np.float32),
        "focal": np.full((1, 1), 0.4, np.float32),
    }


@pytest.mark.slow
def test_trained_options_round_trip_through_the_weights_file(bag, tmp_path):
    res = train(config(bag, tmp_path / "run"), progress=False)
    path = f"{res.out_dir}/weights.pt"
    meta = json.loads(torch.load(path, weights_only=True)["bore_depth_ros"])
    assert meta["model_options"] == {**get_model_info("svr").resolve_options(), **SVR_OPTIONS}

    # the trained module, rebuilt by hand from the options and the exact fp32 state of last.ckpt
    trained = create_model("svr", options=SVR_OPTIONS)
    state = torch.load(f"{res.out_dir}/last.ckpt", weights_only=True)["state_dict"]
    trained.load_state_dict({k.removeprefix("depth_net."): v for k, v in state.items()}, strict=True)
    trained.eval()
    feed = engine_input()
    with torch.no_grad():
        want = trained(*(torch.from_numpy(feed[k]) for k in ("image", "focal")))

    # nothing but the file: same architecture, strict load, same output
    loaded = load_checkpoint(path, model_name="svr")
    assert loaded.model_options() == trained.model_options()
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {
        k: v.shape for k, v in trained.state_dict().items()
    }
    assert load_checkpoint(f"{res.out_dir}/last.ckpt", model_name="svr").num_bins == 48
    for backend in ("torch", "onnxruntime"):
        engine = DepthEngine(
            EngineConfig(model="svr", weights=path, backend=backend, cache_dir=str(tmp_path / "cache"))
        )
        assert engine.input_hw == HW
        assert "bins=48" in engine.weights_source and "width=32" in engine.weights_source
        if backend == "torch":
            assert engine.backend.model.model_options() == trained.model_options()
        out = engine.backend.infer(feed)
        tol = dict(rtol=1e-5, atol=1e-5) if backend == "torch" else dict(rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(out["depth"], want[0].numpy(), **tol)
        np.testing.assert_allclose(out["confidence"], want[1].numpy(), **tol)
        engine.backend.close()


def test_a_file_with_other_options_or_of_another_model_is_refused(tmp_path):
    info = get_model_info("semi_smd")
    options = {"backbone": "resnet18", "width": 8, "embed_dim": 16, "heads": 2, "blocks": 1}
    model = create_model("semi_smd", options=options)
    path = tmp_path / "weights.pt"
    save_weights(path, model, info, fp16=True, meta={"model": "semi_smd"})
    loaded = load_checkpoint(path, model_name="semi_smd")  # strict, options from the file
    assert loaded.model_options() == info.resolve_options(options)
    assert load_checkpoint(path, model_name="semi_smd", options=options).width == 8
    with pytest.raises(CheckpointError, match=r"other model_options \(width: 8 in the file, 16 asked\)"):
        load_checkpoint(path, model_name="semi_smd", options={**options, "width": 16})
    with pytest.raises(CheckpointError, match="holds weights of model 'semi_smd', not 'svr'"):
        load_checkpoint(path, model_name="svr")
    # a file without recorded options is the default network (the embedded defaults, older files)
    torch.save({"state_dict": create_model("svr", options={"bins": 8}).state_dict()}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(tmp_path / "plain.pt", model_name="svr")
    assert load_checkpoint(tmp_path / "plain.pt", model_name="svr", options={"bins": 8}).num_bins == 8
