"""Backends with real torch and real ONNX Runtime: parity, export cache, refusals and error messages."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

from bore_depth_ros.backends import (
    BACKENDS,
    Backend,
    BackendUnavailable,
    ExportMismatch,
    ExportReport,
    create_backend,
    ensure_onnx,
    export_onnx,
    seeded_inputs,
)
from bore_depth_ros.backends.export import check_onnx_parity, onnx_cache_path
from bore_depth_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
from bore_depth_ros.backends.seeded import seeded_input
from bore_depth_ros.backends.torch_backend import TorchBackend

SHAPE = (2, 3, 32, 48)


class TinyDepth(nn.Module):
    """One-output stand-in for a depth network: positive depth like BoRe-Depth's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 / (10 * torch.sigmoid(self.head(torch.relu(self.bn(self.conv(x))))) + 0.01)


class TinyMulti(TinyDepth):
    """Two outputs returned as a dict whose insertion order differs from the declared output names."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        depth = super().forward(x)
        return {"confidence": torch.sigmoid(self.conv(x).mean(1, keepdim=True)), "depth": depth}


class TinyTuple(TinyDepth):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depth = super().forward(x)
        return depth, torch.sigmoid(depth)


class CallCounting(TinyDepth):
    """Adds its own call count to the output: tracing freezes the count, so the ONNX graph cannot match."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x) + float(self.calls)


def tiny(cls: type[nn.Module] = TinyDepth, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls().eval()


def torch_reference(model: nn.Module, batch: np.ndarray) -> torch.Tensor | tuple | dict:
    with torch.no_grad():
        return model(torch.from_numpy(batch))


def errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(diff.max()), float((diff / np.maximum(np.abs(b), 1e-6)).max())


# --- torch backend -----------------------------------------------------------------------------------


def test_torch_backend_matches_model_and_returns_float32():
    model = tiny()
    batch = seeded_input(SHAPE)
    with TorchBackend(model, SHAPE, ("depth",)) as backend:
        out = backend.infer(batch)
        assert isinstance(backend, Backend) and backend.name == "torch"
        assert list(out) == ["depth"]
        assert out["depth"].dtype == np.float32 and out["depth"].shape == (2, 1, 32, 48)
        np.testing.assert_array_equal(out["depth"], torch_reference(model, batch).numpy())
        info = backend.describe()
        assert info["backend"] == "torch" and info["device"] == "cpu" and info["precision"] == "fp32"
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.items())


def test_torch_backend_accepts_read_only_input():
    batch = seeded_input(SHAPE)
    batch.flags.writeable = False
    out = TorchBackend(tiny(), SHAPE, ("depth",)).infer(batch)
    assert np.isfinite(out["depth"]).all()


@pytest.mark.parametrize("cls", [TinyMulti, TinyTuple])
def test_torch_backend_normalises_multiple_outputs(cls):
    model = tiny(cls)
    batch = seeded_input(SHAPE)
    out = TorchBackend(model, SHAPE, ("depth", "confidence")).infer(batch)
    assert list(out) == ["depth", "confidence"]
    ref = torch_reference(model, batch)
    ref_depth, ref_conf = (ref["depth"], ref["confidence"]) if isinstance(ref, dict) else ref
    np.testing.assert_array_equal(out["depth"], ref_depth.numpy())
    np.testing.assert_array_equal(out["confidence"], ref_conf.numpy())


def test_torch_backend_output_count_mismatch():
    backend = TorchBackend(tiny(TinyTuple), SHAPE, ("depth",))
    with pytest.raises(ValueError, match="2 outputs"):
        backend.infer(seeded_input(SHAPE))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_torch_backend_cuda_unavailable_is_clear():
    with pytest.raises(BackendUnavailable, match="CUDA"):
        TorchBackend(tiny(), SHAPE, ("depth",), device="cuda")


def test_torch_backend_fp16_only_on_cuda():
    with pytest.raises(ValueError, match="fp16"):
        TorchBackend(tiny(), SHAPE, ("depth",), precision="fp16")


# --- input validation --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(tiny(), path, SHAPE, ("depth",))
    return path


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_wrong_input_raises_value_error(kind, tiny_onnx):
    backend = (
        TorchBackend(tiny(), SHAPE, ("depth",))
        if kind == "torch"
        else OnnxRuntimeBackend(tiny_onnx, SHAPE, ("depth",))
    )
    good = seeded_input(SHAPE)
    with pytest.raises(ValueError, match=r"shape 2x3x32x48.*got 1x3x32x48"):
        backend.infer(good[:1])
    with pytest.raises(ValueError, match="float32"):
        backend.infer(good.astype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        backend.infer(np.asfortranarray(good))
    with pytest.raises(ValueError, match="numpy array"):
        backend.infer(torch.from_numpy(good))


@pytest.mark.parametrize("shape", [(1, 3, 32), (1, 1, 32, 48), (0, 3, 32, 48), (1, 3, 32.0, 48)])
def test_bad_input_shape_config(shape):
    with pytest.raises(ValueError, match="input_shape"):
        TorchBackend(tiny(), shape, ("depth",))


# --- export and ONNX Runtime -------------------------------------------------------------------------


def test_export_report_and_ort_parity(tmp_path):
    model = tiny()
    model.train()
    path = tmp_path / "sub" / "tiny.onnx"
    report = export_onnx(model, path, SHAPE, ("depth",))
    assert model.training, "export must restore the caller's train/eval mode"
    assert isinstance(report, ExportReport) and report.path == path and path.is_file()
    assert report.input_shape == SHAPE and report.output_names == ("depth",) and report.opset == 17
    assert report.max_abs_err["depth"] < 1e-4 and report.max_rel_err["depth"] < 1e-4 and report.seconds > 0
    assert sorted(os.listdir(path.parent)) == ["tiny.onnx"], "temporary file left behind"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)

    batch = seeded_input(SHAPE, seed=1)
    ort_backend = OnnxRuntimeBackend(path, SHAPE, ("depth",), intra_op_threads=1)
    got = ort_backend.infer(batch)["depth"]
    assert got.dtype == np.float32
    abs_err, rel_err = errors(got, torch_reference(model.eval(), batch).numpy())
    assert abs_err < 1e-4 and rel_err < 1e-4
    info = ort_backend.describe()
    assert info["backend"] == "onnxruntime" and info["providers"] == "CPUExecutionProvider"
    assert info["onnx_path"] == str(path)
    ort_backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        ort_backend.infer(batch)


@pytest.mark.parametrize("cls", [TinyMulti, TinyTuple])
def test_multi_output_export_and_ort(tmp_path, cls):
    model = tiny(cls)
    names = ("depth", "confidence")
    report = export_onnx(model, tmp_path / "multi.onnx", SHAPE, names)
    assert set(report.max_abs_err) == set(names)
    batch = seeded_input(SHAPE, seed=2)
    ort_out = OnnxRuntimeBackend(report.path, SHAPE, names).infer(batch)
    torch_out = TorchBackend(model, SHAPE, names).infer(batch)
    assert list(ort_out) == list(names)
    for n in names:
        abs_err, rel_err = errors(ort_out[n], torch_out[n])
        assert abs_err < 1e-4 and rel_err < 1e-4, (n, abs_err, rel_err)
    # A subset of the graph's outputs may be served.
    assert list(OnnxRuntimeBackend(report.path, SHAPE, ("confidence",)).infer(batch)) == ["confidence"]


def test_ort_backend_validates_graph(tiny_onnx):
    with pytest.raises(ValueError, match=r"2x3x32x48.*configured for 1x3x32x48"):
        OnnxRuntimeBackend(tiny_onnx, (1, 3, 32, 48), ("depth",))
    with pytest.raises(ValueError, match="lacking.*confidence"):
        OnnxRuntimeBackend(tiny_onnx, SHAPE, ("depth", "confidence"))


def test_export_mismatch_from_untraceable_model(tmp_path):
    path = tmp_path / "counting.onnx"
    with pytest.raises(ExportMismatch) as info:
        export_onnx(tiny(CallCounting), path, SHAPE, ("depth",))
    # The trace froze an earlier call count; the reference run adds a later one: off by a whole number.
    assert info.value.max_abs_err["depth"] >= 0.999
    assert str(info.value).startswith(f"refusing to export {path}: ") and "depth: max abs err" in str(
        info.value
    )
    assert not path.exists() and os.listdir(tmp_path) == [], "a refused export must write nothing"


def test_parity_check_catches_other_weights(tiny_onnx):
    # The ONNX file holds seed-0 weights; a seed-1 model is a different network with the same graph.
    with pytest.raises(ExportMismatch, match="depth"):
        check_onnx_parity(tiny(seed=1), tiny_onnx, SHAPE, ("depth",))
    abs_err, _ = check_onnx_parity(tiny(seed=0), tiny_onnx, SHAPE, ("depth",))
    assert abs_err["depth"] < 1e-4


def test_export_mismatch_with_zero_tolerance_on_changed_output(tmp_path):
    class Shifted(TinyDepth):
        def forward(self, x):
            return super().forward(x) + 1e-3

    onnx_path = tmp_path / "shifted.onnx"
    export_onnx(tiny(Shifted), onnx_path, SHAPE, ("depth",))
    with pytest.raises(ExportMismatch):
        check_onnx_parity(tiny(TinyDepth), onnx_path, SHAPE, ("depth",), rtol=0, atol=0)
    # Within a loose enough tolerance the same pair passes: the check is about the bound, not identity.
    check_onnx_parity(tiny(TinyDepth), onnx_path, SHAPE, ("depth",), rtol=0, atol=2e-3)


# --- cache -------------------------------------------------------------------------------------------


def test_ensure_onnx_reuses_cache(tmp_path):
    model = tiny()
    first = ensure_onnx(model, "tiny", SHAPE, ("depth",), cache_dir=tmp_path)
    st = first.stat()
    second = ensure_onnx(model, "tiny", SHAPE, ("depth",), cache_dir=tmp_path)
    assert second == first == onnx_cache_path(model, "tiny", SHAPE, tmp_path)
    st2 = second.stat()
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), "second call re-exported"
    assert len(list(tmp_path.iterdir())) == 1


def test_a_swapped_or_modified_cache_file_is_exported_again(tmp_path, caplog):
    import logging
    import shutil

    import onnx

    model = tiny(seed=0)
    path = ensure_onnx(model, "tiny", SHAPE, ("depth",), cache_dir=tmp_path / "cache")
    other = ensure_onnx(tiny(seed=1), "tiny", SHAPE, ("depth",), cache_dir=tmp_path / "other")
    shutil.copy(other, path)  # another export (other weights) under this key's name
    with caplog.at_level(logging.WARNING, logger="bore_depth_ros.backends.export"):
        again = ensure_onnx(model, "tiny", SHAPE, ("depth",), cache_dir=tmp_path / "cache")
    assert again == path and "was not exported for this key" in caplog.text
    check_onnx_parity(tiny(seed=0), again, SHAPE, ("depth",))  # the right weights again
    # a file whose graph was changed after it was written (its metadata copied along)
    proto = onnx.load(str(path))
    proto.graph.initializer[0].raw_data = bytes(len(proto.graph.initializer[0].raw_data))
    onnx.save(proto, str(path))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bore_depth_ros.backends.export"):
        ensure_onnx(model, "tiny", SHAPE, ("depth",), cache_dir=tmp_path / "cache")
    assert "does not match the graph hash" in caplog.text
    check_onnx_parity(tiny(seed=0), path, SHAPE, ("depth",))


def test_cache_key(tmp_path):
    model = tiny()
    key = onnx_cache_path(model, "tiny", SHAPE, tmp_path)
    assert key == onnx_cache_path(tiny(), "tiny", SHAPE, tmp_path), "same weights must give the same file"
    assert key.parent == tmp_path and key.suffix == ".onnx" and "tiny_2x3x32x48" in key.name
    assert onnx_cache_path(model, "tiny", (1, 3, 32, 48), tmp_path) != key
    assert onnx_cache_path(model, "other", SHAPE, tmp_path) != key
    assert onnx_cache_path(model, "tiny", SHAPE, tmp_path, opset=18) != key
    assert onnx_cache_path(model, "tiny", SHAPE, tmp_path, output_names=("depth", "confidence")) != key
    assert onnx_cache_path(tiny(seed=1), "tiny", SHAPE, tmp_path) != key
    with torch.no_grad():
        model.bn.running_mean[0] += 1e-3  # buffers count, not only parameters
    assert onnx_cache_path(model, "tiny", SHAPE, tmp_path) != key


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BORE_DEPTH_CACHE", str(tmp_path))
    assert onnx_cache_path(tiny(), "tiny", SHAPE).parent == tmp_path / "onnx"
    monkeypatch.delenv("BORE_DEPTH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_cache_path(tiny(), "tiny", SHAPE).parent == tmp_path / "xdg" / "bore_depth_ros" / "onnx"


# --- create_backend and unavailable runtimes ----------------------------------------------------------


def test_create_backend_torch_and_onnxruntime(tmp_path):
    model = tiny(TinyMulti)
    names = ("depth", "confidence")
    batch = seeded_input(SHAPE, seed=3)
    torch_backend = create_backend("torch", model=model, input_shape=SHAPE, output_names=names)
    ort_backend = create_backend(
        "onnxruntime",
        model=model,
        model_name="tiny_multi",
        input_shape=SHAPE,
        output_names=names,
        cache_dir=tmp_path,
        intra_op_threads=1,
    )
    assert isinstance(ort_backend, OnnxRuntimeBackend) and ort_backend.onnx_path.parent == tmp_path
    a, b = torch_backend.infer(batch), ort_backend.infer(batch)
    for n in names:
        assert errors(b[n], a[n])[0] < 1e-4
    from_file = create_backend(
        "onnxruntime", onnx_path=ort_backend.onnx_path, input_shape=SHAPE, output_names=names
    )
    np.testing.assert_array_equal(from_file.infer(batch)["depth"], b["depth"])


def test_create_backend_argument_errors():
    with pytest.raises(ValueError, match="torch, onnxruntime, tensorrt"):
        create_backend("openvino", model=tiny(), input_shape=SHAPE, output_names=("depth",))
    assert BACKENDS == ("torch", "onnxruntime", "tensorrt")
    with pytest.raises(ValueError, match="needs model"):
        create_backend("torch", input_shape=SHAPE, output_names=("depth",))
    with pytest.raises(ValueError, match="onnx_path or model"):
        create_backend("onnxruntime", input_shape=SHAPE, output_names=("depth",))
    with pytest.raises(ValueError, match="fp32"):
        create_backend(
            "onnxruntime", model=tiny(), input_shape=SHAPE, output_names=("depth",), precision="fp16"
        )


def _tensorrt_usable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.mark.skipif(_tensorrt_usable(), reason="TensorRT and a GPU are present: nothing is unavailable")
def test_tensorrt_unavailable_names_what_to_install(tmp_path):
    with pytest.raises(BackendUnavailable, match="pip install tensorrt") as info:
        create_backend(
            "tensorrt",
            model=tiny(),
            model_name="tiny",
            input_shape=SHAPE,
            output_names=("depth",),
            device="cuda",
            cache_dir=tmp_path,
        )
    assert "JetPack" in str(info.value) and "CUDA GPU" in str(info.value)
    assert list(tmp_path.iterdir()) == [], "nothing should be exported for an unavailable backend"
    from bore_depth_ros.backends.tensorrt_backend import TensorRTBackend

    with pytest.raises(BackendUnavailable, match="TensorRT"):
        TensorRTBackend(tmp_path / "x.onnx", SHAPE, ("depth",))


def _ort_has(provider: str) -> bool:
    import onnxruntime

    return provider in onnxruntime.get_available_providers()


@pytest.mark.skipif(_ort_has("CUDAExecutionProvider"), reason="onnxruntime-gpu is installed")
def test_onnxruntime_cuda_unavailable_names_onnxruntime_gpu(tiny_onnx, tmp_path):
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        OnnxRuntimeBackend(tiny_onnx, SHAPE, ("depth",), device="cuda")
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        create_backend(
            "onnxruntime",
            model=tiny(),
            input_shape=SHAPE,
            output_names=("depth",),
            device="cuda",
            cache_dir=tmp_path,
        )
    assert list(tmp_path.iterdir()) == [], "the provider check must come before the export"
    with pytest.raises(BackendUnavailable, match="TensorrtExecutionProvider.*onnxruntime-gpu"):
        OnnxRuntimeBackend(tiny_onnx, SHAPE, ("depth",), device="tensorrt")
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        OnnxRuntimeBackend(tiny_onnx, SHAPE, ("depth",), providers=["CUDAExecutionProvider"])


def test_onnxruntime_unknown_device(tiny_onnx):
    with pytest.raises(ValueError, match="'cpu', 'cuda\\[:N\\]'"):
        OnnxRuntimeBackend(tiny_onnx, SHAPE, ("depth",), device="npu")


def test_onnxruntime_missing_package(monkeypatch, tiny_onnx):
    monkeypatch.setitem(
        sys.modules, "onnxruntime", None
    )  # makes `import onnxruntime` fail like a missing package
    with pytest.raises(BackendUnavailable, match="pip install onnxruntime"):
        OnnxRuntimeBackend(tiny_onnx, SHAPE, ("depth",))
    with pytest.raises(BackendUnavailable, match="onnxruntime"):
        export_onnx(tiny(), tiny_onnx.parent / "never.onnx", SHAPE, ("depth",))


# --- BoRe-Depth ----------------------------------------------------------------------------------------

BORE_SHAPE = (2, 3, 64, 96)
BORE_TOL = 1e-3  # max abs and max elementwise relative error on depth, ORT CPU vs torch eager


@pytest.mark.slow
def test_bore_depth_torch_vs_onnxruntime(tmp_path, record_property):
    models = pytest.importorskip("bore_depth_ros.models")
    info = models.get_model_info("bore_depth")
    assert info.output_names == ("depth",)
    torch.manual_seed(0)
    model = models.create_model("bore_depth").eval()
    report = export_onnx(
        model, tmp_path / "bore_depth.onnx", BORE_SHAPE, info.output_names, rtol=BORE_TOL, atol=BORE_TOL
    )

    batch = seeded_input(BORE_SHAPE, seed=7)  # not the export's own check input
    torch_out = create_backend("torch", model=model, input_shape=BORE_SHAPE, output_names=info.output_names)
    ort_out = create_backend(
        "onnxruntime", onnx_path=report.path, input_shape=BORE_SHAPE, output_names=info.output_names
    )
    a, b = torch_out.infer(batch)["depth"], ort_out.infer(batch)["depth"]
    assert a.shape == b.shape == (2, 1, 64, 96)
    abs_err, rel_err = errors(b, a)
    record_property("bore_depth_max_abs_err", abs_err)
    record_property("bore_depth_max_rel_err", rel_err)
    print(
        f"\nBoRe-Depth {BORE_SHAPE} ORT vs torch: max abs err {abs_err:.3g} (depth range "
        f"{a.min():.3g}..{a.max():.3g}), max rel err {rel_err:.3g}; export check: "
        f"abs {report.max_abs_err['depth']:.3g}, rel {report.max_rel_err['depth']:.3g}, "
        f"{report.seconds:.1f} s"
    )
    assert abs_err < BORE_TOL and rel_err < BORE_TOL


# --- multi-input models ----------------------------------------------------------------------------------

NAMED = {"image": SHAPE, "focal": (2, 1)}
SURROUND_DEPTH_TOL = 1e-3  # max elementwise relative error on depth, ORT CPU vs torch eager
SURROUND_CONF_TOL = 1e-4  # max abs error on confidence


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class TinyTwoInput(TinyDepth):
    """Two inputs (image, focal) like the `svr` model; two outputs."""

    def forward(self, image: torch.Tensor, focal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depth = super().forward(image) * focal.reshape(-1, 1, 1, 1)
        return depth, torch.sigmoid(self.conv(image).mean(1, keepdim=True))


class IgnoresFocal(TinyDepth):
    def forward(self, image: torch.Tensor, focal: torch.Tensor) -> torch.Tensor:
        return super().forward(image)


@pytest.fixture(scope="module")
def two_input_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx2") / "two.onnx"
    report = export_onnx(tiny(TinyTwoInput), path, NAMED, ("depth", "confidence"))
    return report


def seeded_inputs_named(seed: int) -> dict[str, np.ndarray]:
    return seeded_inputs(NAMED, seed)


def test_seeded_inputs():
    x = seeded_inputs(
        {
            "image": SHAPE,
            "prev_image": SHAPE,
            "rays": (2, 3, 1, 2),
            "origins": (2, 3),
            "focal": (2, 1),
            "other": (4,),
        },
        seed=3,
    )
    assert list(x) == ["image", "prev_image", "rays", "origins", "focal", "other"]
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in x.values())
    np.testing.assert_array_equal(x["image"], seeded_input(SHAPE, 3))
    assert not np.array_equal(x["prev_image"], x["image"])
    np.testing.assert_allclose(np.linalg.norm(x["rays"], axis=1), 1.0, atol=1e-6)
    assert x["focal"].min() >= 0.5 and x["focal"].max() < 2.0 and np.abs(x["origins"]).max() <= 2.0
    np.testing.assert_array_equal(seeded_inputs(SHAPE)["image"], seeded_input(SHAPE))


def test_torch_backend_named_inputs():
    model = tiny(TinyTwoInput)
    feed = seeded_inputs_named(1)
    backend = TorchBackend(model, NAMED, ("depth", "confidence"))
    assert backend.input_names == ("image", "focal") and backend.input_shape == SHAPE and backend.named_inputs
    out = backend.infer(feed)
    ref = model(torch.from_numpy(feed["image"]), torch.from_numpy(feed["focal"]))
    np.testing.assert_array_equal(out["depth"], ref[0].detach().numpy())
    np.testing.assert_array_equal(out["confidence"], ref[1].detach().numpy())
    assert backend.describe()["input_shape"] == "image=2x3x32x48,focal=2x1"
    # A single-input deployment also accepts the dict form.
    single = TorchBackend(tiny(), SHAPE, ("depth",))
    np.testing.assert_array_equal(
        single.infer({"image": feed["image"]})["depth"], single.infer(feed["image"])["depth"]
    )


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_named_input_validation(kind, two_input_onnx):
    names = ("depth", "confidence")
    backend = (
        TorchBackend(tiny(TinyTwoInput), NAMED, names)
        if kind == "torch"
        else OnnxRuntimeBackend(two_input_onnx.path, NAMED, names)
    )
    feed = seeded_inputs_named(2)
    with pytest.raises(ValueError, match=r"inputs \['image', 'focal'\]: pass a dict"):
        backend.infer(feed["image"])
    with pytest.raises(ValueError, match=r"missing \['focal'\], unexpected \[\]"):
        backend.infer({"image": feed["image"]})
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['extra'\]"):
        backend.infer({**feed, "extra": feed["focal"]})
    with pytest.raises(ValueError, match=r"input 'focal' of shape 2x1, got 1x1"):
        backend.infer({**feed, "focal": feed["focal"][:1]})
    with pytest.raises(ValueError, match=r"float32 input 'focal'"):
        backend.infer({**feed, "focal": feed["focal"].astype(np.float64)})
    with pytest.raises(ValueError, match=r"numpy array 'image'"):
        backend.infer({**feed, "image": torch.from_numpy(feed["image"])})


@pytest.mark.parametrize(
    "shapes, message",
    [
        ({}, "at least one"),
        ({"image": (2, 1, 32, 48)}, "input 'image'.*3 channels"),
        ({"image": SHAPE, "focal": (2, 0)}, r"input_shapes\['focal'\]"),
        ({"image": SHAPE, "": (1,)}, "non-empty"),
    ],
)
def test_bad_input_shapes_config(shapes, message):
    with pytest.raises(ValueError, match=message):
        TorchBackend(tiny(), shapes, ("depth",))


def test_multi_input_export_and_ort(two_input_onnx, tmp_path):
    report = two_input_onnx
    assert report.input_shapes == NAMED and report.input_shape == SHAPE
    assert set(report.max_abs_err) == {"depth", "confidence"} and max(report.max_abs_err.values()) < 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [(i.name, tuple(i.shape)) for i in session.get_inputs()] == list(NAMED.items())
    names = ("depth", "confidence")
    feed = seeded_inputs_named(4)
    ort_out = OnnxRuntimeBackend(report.path, NAMED, names, intra_op_threads=1).infer(feed)
    torch_out = TorchBackend(tiny(TinyTwoInput), NAMED, names).infer(feed)
    for n in names:
        abs_err, rel_err = errors(ort_out[n], torch_out[n])
        assert abs_err < 1e-4 and rel_err < 1e-4, (n, abs_err, rel_err)
    # The graph's input names and order follow the mapping; the parity check feeds every input.
    check_onnx_parity(tiny(TinyTwoInput), report.path, NAMED, names)


def test_ort_backend_validates_named_graph(two_input_onnx):
    names = ("depth",)
    with pytest.raises(ValueError, match=r"has 2 inputs.*input_shapes="):
        OnnxRuntimeBackend(two_input_onnx.path, SHAPE, names)
    with pytest.raises(ValueError, match=r"has inputs \['image', 'focal'\].*configured for \['image', 'f'\]"):
        OnnxRuntimeBackend(two_input_onnx.path, {"image": SHAPE, "f": (2, 1)}, names)
    with pytest.raises(ValueError, match=r"'focal' of shape 2x1.*configured for 2x2"):
        OnnxRuntimeBackend(two_input_onnx.path, {"image": SHAPE, "focal": (2, 2)}, names)


def test_export_refuses_a_dropped_input(tmp_path):
    path = tmp_path / "ignores.onnx"
    with pytest.raises(ValueError, match=r"graph inputs \['image'\] differ from \['image', 'focal'\]"):
        export_onnx(tiny(IgnoresFocal), path, NAMED, ("depth",))
    assert list(tmp_path.iterdir()) == [], "a refused export must write nothing"


def test_named_cache_key_and_create_backend(tmp_path):
    model = tiny(TinyTwoInput)
    names = ("depth", "confidence")
    key = onnx_cache_path(model, "two", NAMED, tmp_path, output_names=names)
    assert "two_2x3x32x48" in key.name
    assert (
        onnx_cache_path(model, "two", {"image": SHAPE, "focal": (2, 2)}, tmp_path, output_names=names) != key
    )
    assert (
        onnx_cache_path(model, "two", {"focal": (2, 1), "image": SHAPE}, tmp_path, output_names=names) != key
    )
    ort_backend = create_backend(
        "onnxruntime",
        model=model,
        model_name="two",
        input_shapes=NAMED,
        output_names=names,
        cache_dir=tmp_path,
        intra_op_threads=1,
    )
    assert ort_backend.onnx_path == key == ensure_onnx(model, "two", NAMED, names, cache_dir=tmp_path)
    torch_backend = create_backend("torch", model=model, input_shapes=NAMED, output_names=names)
    feed = seeded_inputs_named(5)
    a, b = torch_backend.infer(feed), ort_backend.infer(feed)
    assert all(errors(b[n], a[n])[0] < 1e-4 for n in names)
    with pytest.raises(ValueError, match="exactly one of input_shape"):
        create_backend("torch", model=model, input_shape=SHAPE, input_shapes=NAMED, output_names=names)
    with pytest.raises(ValueError, match="exactly one of input_shape"):
        create_backend("torch", model=model, output_names=names)
    with pytest.raises(ValueError, match="mapping"):
        create_backend("torch", model=model, input_shapes=[SHAPE], output_names=names)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["svr", "semi_smd"])
def test_surround_model_torch_vs_onnxruntime(name, tmp_path, one_thread, record_property):
    """The surround models at six views of 64x96, through create_backend's cache and parity check."""
    models = pytest.importorskip("bore_depth_ros.models")
    info = models.get_model_info(name)
    torch.manual_seed(0)
    model = models.create_model(name).eval()
    shapes = info.input_shapes(6, 64, 96)
    ort_backend = create_backend(
        "onnxruntime",
        model=model,
        model_name=name,
        input_shapes=shapes,
        output_names=info.output_names,
        cache_dir=tmp_path,
        intra_op_threads=1,
    )
    torch_backend = create_backend("torch", model=model, input_shapes=shapes, output_names=info.output_names)
    feed = seeded_inputs(shapes, seed=7)  # not the export's own check input
    a, b = torch_backend.infer(feed), ort_backend.infer(feed)
    assert a["depth"].shape == b["depth"].shape == b["confidence"].shape == (6, 1, 64, 96)
    depth_rel = errors(b["depth"], a["depth"])[1]
    conf_abs = errors(b["confidence"], a["confidence"])[0]
    record_property(f"{name}_depth_max_rel_err", depth_rel)
    record_property(f"{name}_confidence_max_abs_err", conf_abs)
    assert depth_rel < SURROUND_DEPTH_TOL and conf_abs < SURROUND_CONF_TOL, (depth_rel, conf_abs)
