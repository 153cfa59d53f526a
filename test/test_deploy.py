"""Deployment path on CPU: export + ONNX Runtime parity for every model, the engine self-check's
accept/refuse decisions with real numbers, TensorRT-absent errors, and the benchmark table.

No TensorRT here: the self-check is exercised through the same ``verify_backend`` call the TensorRT
backend makes, with real ONNX Runtime / PyTorch candidates (exact, fp16-rounded, half-precision
PyTorch, and a "broken engine" whose scale drifts from call to call like TensorRT 10.3 on Orin).
"""

import argparse
import contextlib
import csv
import importlib.util
import io
import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from bore_depth_ros import deploy
from bore_depth_ros.backends import BackendUnavailable, EngineSelfCheckFailed, create_backend, ensure_onnx
from bore_depth_ros.backends.export import onnx_cache_path
from bore_depth_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
from bore_depth_ros.backends.selfcheck import (
    TOLERANCES,
    check_inputs,
    onnxruntime_reference,
    refuse,
    self_check,
    verify_backend,
)
from bore_depth_ros.bench import table
from bore_depth_ros.cli import bench as bench_cli
from bore_depth_ros.cli import export as export_cli
from bore_depth_ros.cli import prebuild as prebuild_cli
from bore_depth_ros.deploy import export as deploy_export
from bore_depth_ros.deploy import prebuild as deploy_prebuild
from bore_depth_ros.models import create_model, get_model_info, list_models

H, W = 64, 96


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


def _model(name):
    """The weights a node would load by default (embedded if shipped, else seeded random)."""
    return deploy.load_model(name)[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``bore-depth export`` of every model at 64x96 into a temporary folder: (exit code, stdout, results).

    The checked files also prime the ONNX cache (the export is deterministic: same weights, shapes and
    opset give the same bytes), so later tests do not export the same graphs again.
    """
    out_dir = tmp_path_factory.mktemp("export")
    results = []
    real = deploy_export.export_all
    p = argparse.ArgumentParser()
    export_cli.add_arguments(p)
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()) as out:
        mp.setattr(deploy_export, "export_all", lambda *a, **k: results.extend(real(*a, **k)) or results)
        code = export_cli.run(
            p.parse_args(["--out-dir", str(out_dir), "--height", str(H), "--width", str(W)])
        )
    for r in results:
        if r.ok:
            target = onnx_cache_path(
                _model(r.model), r.model, r.input_shapes, output_names=get_model_info(r.model).output_names
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copyfile(r.path, target)
    return code, out.getvalue(), results, out_dir


@pytest.fixture(scope="module")
def bore(exported):
    """(model, shapes, ONNX path) of a seeded BoRe-Depth at 1x3x64x96, from the shared ONNX cache."""
    model = _model("bore_depth")
    shapes = deploy.deployment_shapes("bore_depth", H, W)
    return model, shapes, ensure_onnx(model, "bore_depth", shapes, ("depth",))


def _tensorrt_usable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


# ------------------------------------------------------------------------------------------ export


def test_export_every_registered_model_checked_against_pytorch(exported):
    code, out, results, out_dir = exported
    assert code == 0
    assert [r.model for r in results] == list_models() == ["bore_depth", "semi_smd", "svr"]
    for r in results:
        assert r.ok, r.error
        info = get_model_info(r.model)
        want = info.input_shapes(1 if r.model == "bore_depth" else 6, H, W)
        assert r.path == out_dir / f"{r.model}_{want['image'][0]}x3x{H}x{W}.onnx" and r.path.is_file()
        onnx.checker.check_model(str(r.path))
        shapes, outputs = deploy_prebuild.onnx_io(r.path)
        assert shapes == want and list(shapes) == list(info.input_names) and outputs == info.output_names
        assert set(r.report.max_abs_err) == set(info.output_names)
        assert all(v < 1e-3 for v in r.report.max_rel_err.values()), r.report.max_rel_err
        assert r.weights.startswith(("embedded:", "random-init"))
        assert f"{r.model}: {r.path}" in out
    assert out.count("ONNX Runtime vs PyTorch max err") == 3


def test_run_export_argument_errors(tmp_path, capsys):
    p = argparse.ArgumentParser()
    export_cli.add_arguments(p)
    assert (
        export_cli.run(p.parse_args(["--models", "bore_depth", "svr", "--output", str(tmp_path / "x.onnx")]))
        == 2
    )
    assert "exactly one" in capsys.readouterr().err
    assert export_cli.run(p.parse_args(["--models", "bore_depth", "--height", "65"])) == 2
    assert "multiple of 32" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # checked while parsing the arguments now
        p.parse_args(["--models", "nope"])
    assert stop.value.code == 2 and "unknown model 'nope'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_export_never_replaces_a_file_unless_forced(tmp_path, capsys):
    p = argparse.ArgumentParser()
    export_cli.add_arguments(p)
    target = tmp_path / "mine.onnx"
    target.write_bytes(b"a user's file")
    args = ["--models", "bore_depth", "--height", "64", "--width", "96", "--output", str(target)]
    assert export_cli.run(p.parse_args(args)) == 2
    err = capsys.readouterr().err
    assert "mine.onnx already exists" in err and "--force" in err
    assert target.read_bytes() == b"a user's file"
    assert export_cli.run(p.parse_args([*args, "--force"])) == 0
    assert target.read_bytes() != b"a user's file" and target.stat().st_size > 1_000_000


# -------------------------------------------------------------------------------------- self-check


def _ort(path, shapes, names):
    return OnnxRuntimeBackend(path, shapes, names)


def test_self_check_accepts_onnxruntime_and_pytorch_fp32(bore):
    model, shapes, path = bore
    report = verify_backend(_ort(path, shapes, ("depth",)).infer, path, shapes, ("depth",), "fp32")
    assert report.passed and report.frames == 4 and report.outputs["depth"].max_abs == 0.0
    torch_be = create_backend("torch", model=model, input_shapes=shapes, output_names=("depth",))
    report = verify_backend(torch_be.infer, path, shapes, ("depth",), "fp32")
    assert report.passed, report.summary()
    assert report.outputs["depth"].abs_rel < 1e-5
    json.dumps(report.to_dict())  # stored in the engine cache sidecar


def test_fp16_rounding_passes_fp16_tolerance_and_is_refused_under_fp32(bore):
    _, shapes, path = bore
    ref = onnxruntime_reference(path, check_inputs(shapes), ("depth",))
    rounded = [{k: v.astype(np.float16).astype(np.float32) for k, v in o.items()} for o in ref]
    assert self_check(rounded, ref, "fp16").passed
    strict = self_check(rounded, ref, "fp32")
    assert not strict.passed and any("AbsRel" in f for f in strict.failures)
    assert 1e-4 < strict.outputs["depth"].abs_rel < 5e-4  # fp16 has an 11-bit significand


def test_half_precision_pytorch_passes_fp16_and_is_refused_under_fp32(bore):
    model, shapes, path = bore
    half = create_model("bore_depth")
    half.load_state_dict(model.state_dict())
    half = half.eval().half()

    def infer(x):
        with torch.no_grad():
            return {"depth": half(torch.from_numpy(x["image"]).half()).float().numpy()}

    inputs = check_inputs(shapes, (0, 1))
    candidate, reference = [infer(x) for x in inputs], onnxruntime_reference(path, inputs, ("depth",))
    report = self_check(candidate, reference, "fp16")
    assert report.passed, report.summary()
    refused = self_check(candidate, reference, "fp32")
    assert not refused.passed and refused.outputs["depth"].abs_rel > TOLERANCES["fp32"].abs_rel


class DriftingEngine:
    """An engine that runs correctly but multiplies its output by a factor that changes per call."""

    def __init__(self, backend, factors):
        self.backend, self.factors, self.calls = backend, factors, 0

    def infer(self, x):
        out = self.backend.infer(x)
        f = self.factors[self.calls % len(self.factors)]
        self.calls += 1
        return {k: v * np.float32(f) if k == "depth" else v for k, v in out.items()}


@pytest.mark.parametrize(
    "factors",
    [
        (1.0, 1.06, 0.95, 1.03),  # scale varies frame to frame
        (1.0, 1.0, 1.0, 1.01),
    ],
)  # the same input drifts on its repeat
def test_scale_drift_is_refused_with_a_clear_message(bore, factors):
    _, shapes, path = bore
    engine = DriftingEngine(_ort(path, shapes, ("depth",)), factors)
    report = verify_backend(engine.infer, path, shapes, ("depth",), "fp16")
    assert not report.passed and engine.calls == 4
    scales = report.outputs["depth"].frame_scales
    assert np.allclose(scales, factors, rtol=1e-6)
    with pytest.raises(EngineSelfCheckFailed) as info:
        refuse(report, trt_version="10.3.0", subject="TensorRT fp16 engine built from bd.onnx")
    msg = str(info.value)
    for part in (
        "TensorRT fp16 engine built from bd.onnx",
        "output 'depth'",
        "scale vs reference off by",
        "> 0.002",
        "fp16 tolerance",
        "TensorRT 10.3.0",
        "frame-varying depth scale",
        "10.14",
        "not cached",
    ):
        assert part in msg, (part, msg)
    assert info.value.report is report


def test_wrong_missing_and_nonfinite_outputs_are_refused(bore):
    _, shapes, path = bore
    ref = onnxruntime_reference(path, check_inputs(shapes, (0, 1)), ("depth",))
    patch = [{"depth": o["depth"].copy()} for o in ref]
    for o in patch:
        o["depth"][..., :8, :8] *= 3.0  # a wrong block of 64 pixels (1 %): like a miscompiled layer
    bad = self_check(patch, ref, "fp16")
    assert not bad.passed and any("max relative error" in f for f in bad.failures)
    nan = [
        {"depth": np.where(np.arange(o["depth"].size).reshape(o["depth"].shape) == 5, np.nan, o["depth"])}
        for o in ref
    ]
    nan_report = self_check(nan, ref, "fp16")
    assert not nan_report.passed and "2 NaN/Inf values" in nan_report.failures[0]
    missing = self_check([{}, {}], ref, "fp16")
    assert not missing.passed and "missing" in missing.failures[0]
    shape = self_check([{"depth": o["depth"][:, :, 1:]} for o in ref], ref, "fp16")
    assert not shape.passed and "shape" in shape.failures[0]
    with pytest.raises(EngineSelfCheckFailed, match="upgrade TensorRT"):
        refuse(bad, trt_version="10.7.0")


def test_confidence_is_judged_by_absolute_error_over_its_range():
    rng = np.random.default_rng(0)
    ref = {
        "depth": rng.uniform(1, 10, (1, 1, 8, 8)).astype(np.float32),
        "confidence": rng.uniform(0.0, 0.02, (1, 1, 8, 8)).astype(np.float32),
    }
    small = dict(ref, confidence=ref["confidence"] + 3e-4)  # 1.5-30 % relative, 3e-4 absolute
    assert self_check(small, ref, "fp16").passed and not self_check(small, ref, "fp32").passed
    big = dict(ref, confidence=np.clip(ref["confidence"] + 0.05, 0, 1))
    report = self_check(big, ref, "fp16")
    assert not report.passed and report.failures[0].startswith("output 'confidence'")


@pytest.mark.slow
def test_multi_input_model_self_check_through_onnxruntime_backend(exported):
    info = get_model_info("svr")
    shapes = deploy.deployment_shapes("svr", H, W)
    path = ensure_onnx(_model("svr"), "svr", shapes, info.output_names)
    be = OnnxRuntimeBackend(path, shapes, info.output_names, self_check=True)
    assert be.self_check_report.passed and set(be.self_check_report.outputs) == {"depth", "confidence"}


# --------------------------------------------------------------------------- TensorRT not installed


@pytest.mark.skipif(_tensorrt_usable(), reason="TensorRT and a GPU are present")
def test_tensorrt_absent_is_a_clear_error_before_any_work(tmp_path, bore):
    from bore_depth_ros.backends.tensorrt_backend import build_engine, probe_target

    model, shapes, path = bore
    with pytest.raises(BackendUnavailable, match="pip install tensorrt") as info:
        create_backend(
            "tensorrt",
            model=model,
            model_name="bore_depth",
            input_shapes=shapes,
            output_names=("depth",),
            device="cuda",
            precision="fp16",
            force_rebuild=True,
            engine_cache_dir=tmp_path / "engines",
            cache_dir=tmp_path / "onnx",
        )
    assert "JetPack" in str(info.value)
    assert list(tmp_path.iterdir()) == [], "no export and no cache directory for an unavailable backend"
    for call in (lambda: probe_target("cuda"), lambda: build_engine(path, "fp16")):
        with pytest.raises(BackendUnavailable, match="TensorRT"):
            call()


@pytest.mark.skipif(_tensorrt_usable(), reason="TensorRT and a GPU are present")
def test_run_prebuild_fails_cleanly_here(tmp_path, capsys):
    p = argparse.ArgumentParser()
    prebuild_cli.add_arguments(p)
    code = prebuild_cli.run(
        p.parse_args(["--model", "semi_smd", "--precision", "fp16", "--engine-cache-dir", str(tmp_path)])
    )
    err = capsys.readouterr().err
    assert code == 2 and "bore-depth prebuild: error: backend 'tensorrt' needs NVIDIA TensorRT" in err
    assert "pip install tensorrt" in err and "Traceback" not in err


def test_prebuild_list_shows_cached_engines(tmp_path, capsys):
    from bore_depth_ros.backends.engine_cache import EngineCache, EngineKey

    p = argparse.ArgumentParser()
    prebuild_cli.add_arguments(p)
    assert prebuild_cli.run(p.parse_args(["--list", "--engine-cache-dir", str(tmp_path)])) == 0
    assert "no cached engines" in capsys.readouterr().out
    key = EngineKey("0" * 64, "10.3.0", "Orin", "8.7", "fp16", {"image": (1, 3, 256, 320)}, 1)
    EngineCache(tmp_path).store(key, b"engine", build_seconds=1.0, self_check={"passed": True})
    assert prebuild_cli.run(p.parse_args(["--list", "--engine-cache-dir", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert "fp16 image=1x3x256x320 TensorRT 10.3.0 Orin sm8.7" in out and "self-check passed" in out


def test_onnxruntime_fp16_needs_the_tensorrt_provider(bore):
    _, shapes, path = bore
    with pytest.raises(ValueError, match="fp32"):
        create_backend(
            "onnxruntime", onnx_path=path, input_shapes=shapes, output_names=("depth",), precision="fp16"
        )
    with pytest.raises(ValueError, match="device='tensorrt'"):
        OnnxRuntimeBackend(path, shapes, ("depth",), precision="fp16")


# ------------------------------------------------------------------------------------------- bench


@pytest.mark.slow
def test_bench_table_rows_for_every_model_and_backend(exported):
    rows = table.bench_table(sizes=[(H, W)], repeats=2, warmup=1, isolate=False, threads=1)
    assert [(r.model, r.backend) for r in rows] == [
        (m, b) for m in list_models() for b in ("torch", "onnxruntime")
    ]
    for r in rows:
        assert not r.note, r.note
        assert r.batch == (1 if r.model == "bore_depth" else 6) and (r.height, r.width) == (H, W)
        assert 0 < r.p50_ms <= r.p95_ms and r.fps == pytest.approx(r.batch * 1e3 / r.p50_ms)
        assert r.repeats == 2 and r.infer_mb is not None and r.infer_mb >= 0 and r.peak_rss_mb is None
    md = table.to_markdown(rows, caption="")
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(rows) and lines[0].startswith("| model | backend |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    parsed = list(csv.DictReader(io.StringIO(table.to_csv(rows))))
    assert len(parsed) == len(rows) and parsed[0]["model"] == "bore_depth" and float(parsed[0]["p50_ms"]) > 0


def test_bench_isolated_measures_memory_and_reports_unavailable_backends(bore):
    rows = table.bench_table(
        models=["bore_depth"],
        backends=("onnxruntime", "tensorrt"),
        sizes=[(H, W)],
        repeats=2,
        warmup=1,
        isolate=True,
        threads=1,
    )
    ort, trt = rows
    assert not ort.note and ort.load_rss_mb > 10 and ort.peak_rss_mb >= ort.load_rss_mb
    assert ort.infer_mb == pytest.approx(ort.peak_rss_mb - ort.load_rss_mb)
    if not _tensorrt_usable():
        assert trt.p50_ms is None and "BackendUnavailable" in trt.note and "pip install tensorrt" in trt.note
        assert "note" in table.to_markdown(rows)


def test_run_bench_writes_markdown_and_csv(tmp_path, capsys, bore):
    p = argparse.ArgumentParser()
    bench_cli.add_arguments(p)
    md, csv_path = tmp_path / "out" / "b.md", tmp_path / "out" / "b.csv"
    args = p.parse_args(
        [
            "--models",
            "bore_depth",
            "--backends",
            "onnxruntime",
            "--sizes",
            "64x96",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--in-process",
            "--threads",
            "1",
            "--md",
            str(md),
            "--csv",
            str(csv_path),
        ]
    )
    assert bench_cli.run(args) == 0
    assert md.read_text().startswith("Measured on ") and "| bore_depth | onnxruntime |" in md.read_text()
    assert md.read_text() in capsys.readouterr().out
    assert (
        csv_path.read_text().splitlines()[0].startswith("model,backend,device,precision,height,width,batch")
    )
    with pytest.raises(SystemExit):
        p.parse_args(["--sizes", "64by96"])
