"""Tests of the BoRe-Depth network, the model registry and checkpoint loading (CPU, small inputs)."""

from __future__ import annotations

import argparse
import dataclasses
import io
import warnings

import numpy as np
import pytest
import torch

from bore_depth_ros.models import (
    BoReDepthNet,
    CheckpointError,
    ModelInfo,
    check_input_size,
    create_model,
    get_model_info,
    list_models,
    load_checkpoint,
    register_model,
)
from bore_depth_ros.models.checkpoint import pose_net_state_shapes, save_lightning_checkpoint

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class OpaqueTrainerState:
    """A pickled non-tensor object that weights-only loading must refuse."""


def spec_depth_net_shapes() -> dict[str, tuple[int, ...]]:
    """Every depth_net key and shape, built independently from the tables of spec section 3."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, ch: int) -> None:
        for suffix in BN:
            shapes[f"{prefix}.{suffix}"] = () if suffix == "num_batches_tracked" else (ch,)

    def dw_bias(prefix: str, ch: int, k: int) -> None:
        shapes[prefix + ".weight"] = (ch, 1, k, k)
        shapes[prefix + ".bias"] = (ch,)

    e = "encoder."
    shapes[e + "stem.0.conv.weight"] = (32, 3, 3, 3)
    bn(e + "stem.0.bn", 32)
    shapes[e + "stem.1.conv.weight"] = (64, 32, 3, 3)
    bn(e + "stem.1.bn", 64)
    dims, paths, layers, outs = (64, 96, 176, 216), (2, 3, 3, 3), (1, 2, 4, 1), (96, 176, 216, 216)
    for s, (c, n_paths, n_layers, c_out) in enumerate(zip(dims, paths, layers, outs)):
        ch = c // 8
        for p in range(n_paths):
            pe = f"{e}patch_embed_stages.{s}.patch_embeds.{p}.patch_conv."
            shapes[pe + "dwconv.weight"] = (c, 1, 3, 3)
            shapes[pe + "pwconv.weight"] = (c, c, 1, 1)
            bn(pe + "bn", c)
            blk = f"{e}mhca_stages.{s}.mhca_blks.{p}."
            shared_prefixes = [blk]
            for layer in range(n_layers):
                lay = f"{blk}MHCA_layers.{layer}."
                shapes[lay + "factoratt_crpe.qkv.weight"] = (3 * c, c)
                shapes[lay + "factoratt_crpe.qkv.bias"] = (3 * c,)
                shapes[lay + "factoratt_crpe.proj.weight"] = (c, c)
                shapes[lay + "factoratt_crpe.proj.bias"] = (c,)
                shapes[lay + "mlp.fc1.weight"] = (2 * c, c)
                shapes[lay + "mlp.fc1.bias"] = (2 * c,)
                shapes[lay + "mlp.fc2.weight"] = (c, 2 * c)
                shapes[lay + "mlp.fc2.bias"] = (c,)
                for norm in ("norm1", "norm2"):
                    shapes[lay + norm + ".weight"] = (c,)
                    shapes[lay + norm + ".bias"] = (c,)
                shared_prefixes.append(lay)
                dw_bias(lay + "factoratt_crpe.crpe.conv_list.0", 2 * ch, 3)
                dw_bias(lay + "factoratt_crpe.crpe.conv_list.1", 3 * ch, 5)
                dw_bias(lay + "factoratt_crpe.crpe.conv_list.2", 3 * ch, 7)
            for prefix in shared_prefixes:
                dw_bias(prefix + "cpe.proj", c, 3)
                dw_bias(prefix + "crpe.conv_list.0", 2 * ch, 3)
                dw_bias(prefix + "crpe.conv_list.1", 3 * ch, 5)
                dw_bias(prefix + "crpe.conv_list.2", 3 * ch, 7)
        inv = f"{e}mhca_stages.{s}.InvRes."
        shapes[inv + "conv1.conv.weight"] = (c, c, 1, 1)
        bn(inv + "conv1.bn", c)
        shapes[inv + "dwconv.weight"] = (c, 1, 3, 3)
        bn(inv + "norm", c)
        shapes[inv + "conv2.conv.weight"] = (c, c, 1, 1)
        bn(inv + "conv2.bn", c)
        shapes[f"{e}mhca_stages.{s}.aggregate.conv.weight"] = (c_out, (n_paths + 1) * c, 1, 1)
        bn(f"{e}mhca_stages.{s}.aggregate.bn", c_out)

    d = "decoder."

    def sce(prefix: str, ch: int) -> None:
        dw_bias(prefix + "conv_0.0", 2 * ch, 3)
        shapes[prefix + "conv_0.1.weight"] = (2 * ch, 2 * ch, 1, 1)
        shapes[prefix + "conv_0.1.bias"] = (2 * ch,)
        shapes[prefix + "conv_1.weight"] = (ch, 2 * ch, 1, 1)
        shapes[prefix + "conv_1.bias"] = (ch,)

    deconv_in, dec, skip = (216, 256, 128, 64, 32), (256, 128, 64, 32, 16), (216, 176, 96, 64, 216)
    up_in = (472, 304, 160, 96, 16)
    for cnt in range(5):
        shapes[f"{d}deconvs.{cnt}.conv.weight"] = (dec[cnt], deconv_in[cnt], 1, 1)
        shapes[f"{d}deconvs.{cnt}.conv.bias"] = (dec[cnt],)
        sce(f"{d}localattentions.{cnt}.", dec[cnt])
        sce(f"{d}globalattentions.{cnt}.", skip[cnt])
        shapes[f"{d}upconvs3.{cnt}.conv.conv.weight"] = (dec[cnt], up_in[cnt], 3, 3)
        shapes[f"{d}upconvs3.{cnt}.conv.conv.bias"] = (dec[cnt],)
    shapes[d + "dispconvs.0.conv.weight"] = (1, 16, 3, 3)
    shapes[d + "dispconvs.0.conv.bias"] = (1,)
    return shapes


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every tensor (incl. BN statistics) non-default values so weight transfer is observable."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.01)
    return model.eval()


def fixed_input(height: int = 64, width: int = 96) -> torch.Tensor:
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(123))


def to_bytes(obj) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


@pytest.fixture(scope="module")
def model(torch_one_thread) -> BoReDepthNet:
    torch.manual_seed(0)
    return randomise(BoReDepthNet(), seed=1)


@pytest.fixture(scope="module")
def lightning_ckpt(model, tmp_path_factory):
    """(path, loaded dict) of a checkpoint in the official layout, written once for the module."""
    path = tmp_path_factory.mktemp("ckpt") / "nyu.ckpt"
    hparams = argparse.Namespace(dataset_name="nyu", model_version="bore", lr=1e-4, batch_size=8)
    save_lightning_checkpoint(model, path, extra={"hyper_parameters": hparams})
    with torch.serialization.safe_globals([argparse.Namespace]):
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    return path, loaded


@pytest.fixture(scope="module")
def target() -> BoReDepthNet:
    """A model reused as the load target by tests that expect failure (a failed load changes nothing)."""
    return BoReDepthNet()


def depth_net_only(ckpt: dict) -> dict:
    """The checkpoint with pose_net tensors dropped, so modified copies stay small in memory."""
    state = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("depth_net.")}
    return {**{k: v for k, v in ckpt.items() if k != "state_dict"}, "state_dict": state}


# --- architecture ------------------------------------------------------------------------------


def test_parameter_counts(model):
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model) == 8_664_945
    assert count(model.encoder) == 5_626_736
    assert count(model.decoder) == 3_038_209
    assert count(model.decoder.globalattentions[4]) == 284_904  # built but unused, as upstream


def test_state_dict_matches_spec_tables(model):
    state = model.state_dict()
    assert len(state) == 953
    expected = spec_depth_net_shapes()
    assert len(expected) == 953
    assert set(state) == set(expected)
    wrong = {k: (tuple(v.shape), expected[k]) for k, v in state.items() if tuple(v.shape) != expected[k]}
    assert not wrong


@pytest.mark.parametrize(
    "key, shape",
    [
        ("encoder.mhca_stages.2.mhca_blks.1.crpe.conv_list.2.weight", (66, 1, 7, 7)),
        ("decoder.upconvs3.0.conv.conv.weight", (256, 472, 3, 3)),
        ("decoder.globalattentions.4.conv_0.0.weight", (432, 1, 3, 3)),
        ("encoder.mhca_stages.3.aggregate.conv.weight", (216, 864, 1, 1)),
        (
            "encoder.mhca_stages.1.mhca_blks.2.MHCA_layers.1.factoratt_crpe.crpe.conv_list.1.weight",
            (36, 1, 5, 5),
        ),
        ("decoder.deconvs.0.conv.weight", (256, 216, 1, 1)),
        ("decoder.dispconvs.0.conv.weight", (1, 16, 3, 3)),
    ],
)
def test_spot_check_keys(model, key, shape):
    assert tuple(model.state_dict()[key].shape) == shape


def test_shared_cpe_crpe_are_one_tensor(model):
    blk = model.encoder.mhca_stages[2].mhca_blks[0]
    for layer in blk.MHCA_layers:
        assert layer.cpe is blk.cpe and layer.crpe is blk.crpe and layer.factoratt_crpe.crpe is blk.crpe
    state = model.state_dict()
    canonical = state["encoder.mhca_stages.2.mhca_blks.0.crpe.conv_list.1.weight"]
    alias = state["encoder.mhca_stages.2.mhca_blks.0.MHCA_layers.3.factoratt_crpe.crpe.conv_list.1.weight"]
    assert alias.data_ptr() == canonical.data_ptr()


def test_encoder_feature_levels(model):
    with torch.no_grad():
        features = model.encoder(fixed_input(64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 48),
        (96, 16, 24),
        (176, 8, 12),
        (216, 4, 6),
        (216, 2, 3),
    ]


def test_output_shape_and_range(model):
    with torch.no_grad():
        depth = model(fixed_input(64, 96))
    info = get_model_info("bore_depth")
    assert depth.shape == (1, 1, 64, 96) and depth.dtype == torch.float32
    assert torch.isfinite(depth).all()
    assert depth.min() >= info.min_depth - 1e-6 and depth.max() <= info.max_depth + 1e-4
    # The output transform spans exactly [1/10.01, 100].
    assert info.min_depth == pytest.approx(1 / 10.01) and info.max_depth == pytest.approx(100.0)


def test_drop_path_is_training_only():
    torch.manual_seed(0)
    net = BoReDepthNet(drop_path_rate=0.2).eval()
    x = fixed_input(64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


@pytest.mark.parametrize(
    "height, width, bad", [(250, 320, "height 250"), (256, 330, "width 330"), (0, 320, "height 0")]
)
def test_check_input_size_errors(height, width, bad):
    with pytest.raises(ValueError, match=bad):
        check_input_size(height, width)


def test_check_input_size_accepts_presets():
    for height, width in get_model_info("bore_depth").input_presets.values():
        check_input_size(height, width)


def test_forward_rejects_bad_size(model):
    with pytest.raises(ValueError, match="width 100 is not a multiple of 32"):
        model(torch.zeros(1, 3, 64, 100))


# --- registry ------------------------------------------------------------------------------------


def test_registry():
    assert "bore_depth" in list_models()
    info = get_model_info("bore_depth")
    assert isinstance(info, ModelInfo)
    assert info.output_names == ("depth",) and info.metric is False
    assert info.mean == (0.485, 0.456, 0.406) and info.std == (0.229, 0.224, 0.225)
    assert info.input_presets == {"nyu": (256, 320), "kitti": (256, 832)}
    assert info.default_input_size == (256, 320)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.metric = True  # frozen
    assert isinstance(create_model("bore_depth"), BoReDepthNet)
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        create_model("nope")


def test_register_another_model(monkeypatch):
    from bore_depth_ros.models import registry

    # the registry is process-global: the model registered here must not outlive the test
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.setattr(registry, "_INFOS", dict(registry._INFOS))
    info = ModelInfo(name="test_tiny", metric=True, num_cameras=6, default_input_size=(32, 64))
    register_model("test_tiny", lambda **kw: torch.nn.Conv2d(3, 1, 1), info, replace=True)
    assert "test_tiny" in list_models()
    assert get_model_info("test_tiny").num_cameras == 6
    assert isinstance(create_model("test_tiny"), torch.nn.Conv2d)
    with pytest.raises(ValueError, match="already registered"):
        register_model("test_tiny", lambda: None, info)
    with pytest.raises(ValueError, match="does not match"):
        register_model("other", lambda: None, info)


# --- checkpoints ---------------------------------------------------------------------------------


def test_pose_net_shapes_match_spec():
    shapes = pose_net_state_shapes()
    params = sum(
        int(np.prod(shape))
        for shape, kind in shapes.values()
        if kind not in ("bn_mean", "bn_var", "bn_count")
    )
    assert params == 13_011_950
    assert shapes["encoder.encoder.conv1.weight"][0] == (64, 6, 7, 7)
    assert shapes["encoder.encoder.fc.weight"][0] == (1000, 512)
    assert shapes["encoder.encoder.layer3.0.downsample.0.weight"][0] == (256, 128, 1, 1)
    assert "encoder.encoder.layer1.0.downsample.0.weight" not in shapes


def test_lightning_checkpoint_layout(lightning_ckpt):
    _, ckpt = lightning_ckpt
    assert {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "hyper_parameters"} <= set(
        ckpt
    )
    assert isinstance(ckpt["hyper_parameters"], argparse.Namespace)
    keys = ckpt["state_dict"].keys()
    assert sum(k.startswith("depth_net.") for k in keys) == 953
    assert "depth_net.encoder.mhca_stages.0.mhca_blks.1.MHCA_layers.0.cpe.proj.weight" in keys
    assert "depth_net.decoder.globalattentions.4.conv_1.bias" in keys
    assert "pose_net.encoder.encoder.conv1.weight" in keys and "pose_net.decoder.convs_pose.2.bias" in keys


def test_lightning_checkpoint_roundtrip_exact(model, lightning_ckpt):
    path, _ = lightning_ckpt
    fresh = load_checkpoint(path)
    assert isinstance(fresh, BoReDepthNet) and not fresh.training
    x = fixed_input(64, 96)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    loaded = fresh.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_plain_state_dict_without_prefix_loads(model):
    fresh = load_checkpoint(to_bytes(model.state_dict()))
    loaded = fresh.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def test_model_key_and_prefixed_plain_dict(model, lightning_ckpt):
    _, ckpt = lightning_ckpt
    fresh = load_checkpoint(to_bytes({"model": depth_net_only(ckpt)["state_dict"]}), model=BoReDepthNet())
    assert torch.equal(
        fresh.state_dict()["decoder.dispconvs.0.conv.bias"],
        model.state_dict()["decoder.dispconvs.0.conv.bias"],
    )


def test_missing_key_is_named(lightning_ckpt, target):
    ckpt = depth_net_only(lightning_ckpt[1])
    key = "depth_net.decoder.upconvs3.2.conv.conv.bias"
    del ckpt["state_dict"][key]
    with pytest.raises(CheckpointError, match="1 missing keys") as err:
        load_checkpoint(to_bytes(ckpt), model=target)
    assert key in str(err.value)


def test_unexpected_key_is_named(lightning_ckpt, target):
    ckpt = depth_net_only(lightning_ckpt[1])
    key = "depth_net.decoder.upconvs3.5.conv.conv.weight"
    ckpt["state_dict"][key] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="1 unexpected keys") as err:
        load_checkpoint(to_bytes(ckpt), model=target)
    assert key in str(err.value)


def test_shape_mismatch_is_named(lightning_ckpt, target):
    ckpt = depth_net_only(lightning_ckpt[1])
    key = "depth_net.decoder.deconvs.1.conv.weight"
    ckpt["state_dict"][key] = torch.zeros(128, 216, 1, 1)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(to_bytes(ckpt), model=target)
    assert f"{key}: expected [128, 256, 1, 1], found [128, 216, 1, 1]" in str(err.value)


def test_alias_conflict_fails_and_missing_alias_is_tolerated(lightning_ckpt, target):
    alias = "depth_net.encoder.mhca_stages.1.mhca_blks.0.MHCA_layers.1.crpe.conv_list.0.weight"
    ckpt = depth_net_only(lightning_ckpt[1])
    ckpt["state_dict"][alias] = ckpt["state_dict"][alias] + 1.0
    with pytest.raises(CheckpointError, match="alias") as err:
        load_checkpoint(to_bytes(ckpt), model=target)
    assert alias in str(err.value)

    ckpt = depth_net_only(lightning_ckpt[1])
    del ckpt["state_dict"][alias]  # the tensor is still present under its other names
    load_checkpoint(to_bytes(ckpt), model=target)


def test_non_strict_skips_problems(model, lightning_ckpt, target):
    ckpt = depth_net_only(lightning_ckpt[1])
    del ckpt["state_dict"]["depth_net.decoder.dispconvs.0.conv.bias"]
    ckpt["state_dict"]["depth_net.extra.weight"] = torch.zeros(1)
    fresh = load_checkpoint(to_bytes(ckpt), strict=False, model=target)
    assert torch.equal(
        fresh.state_dict()["decoder.dispconvs.0.conv.weight"],
        model.state_dict()["decoder.dispconvs.0.conv.weight"],
    )


def test_truncated_file_fails_clearly(lightning_ckpt, tmp_path, target):
    path, _ = lightning_ckpt
    data = path.read_bytes()
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated.ckpt is not a readable PyTorch checkpoint: "):
        load_checkpoint(bad, model=target)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(empty, model=target)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt", model=target)


def test_foreign_pickled_objects_are_refused(model, target):
    ckpt = {
        "state_dict": {"depth_net." + k: v for k, v in model.state_dict().items()},
        "callbacks": OpaqueTrainerState(),
    }
    with pytest.raises(CheckpointError, match="non-tensor Python objects") as err:
        load_checkpoint(to_bytes(ckpt), model=target)
    assert "OpaqueTrainerState" in str(err.value) and "torch.save" in str(err.value)


def test_not_a_state_dict(target):
    with pytest.raises(CheckpointError, match="not tensors"):
        load_checkpoint(to_bytes({"epoch": 3, "note": "hello"}), model=target)


# --- ONNX export -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_export_matches_torch(model, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    x = fixed_input(64, 64)
    path = tmp_path / "bore_depth.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript exporter; the dynamo exporter needs the onnxscript package.
        torch.onnx.export(
            model,
            (x,),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["image"],
            output_names=["depth"],
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_depth,) = session.run(["depth"], {"image": x.numpy()})
    with torch.no_grad():
        torch_depth = model(x).numpy()
    assert onnx_depth.shape == (1, 1, 64, 64)
    np.testing.assert_allclose(onnx_depth, torch_depth, rtol=1e-4, atol=1e-4)
