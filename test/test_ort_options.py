"""ONNX Runtime session options (backends.onnxruntime_backend.SessionConfig): every option set the
benchmark compared gives today's outputs (a plain ``InferenceSession`` at ORT_ENABLE_ALL with
``session.run``) exactly or within 1e-5 of the output's largest value; the I/O binding path returns
the same bits as ``session.run``, in fresh float32 arrays; bad options are refused by name.

Real exported models (BoRe-Depth, and SVR for two inputs and two outputs) at 64x96; no timing here:
the speed of each option set is measured by the benchmark (docs/benchmarks.md). ``device="openvino"``
(an optional package) gives the same outputs where the plugin is installed and a clear error where not.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import onnxruntime as ort
import pytest

from bore_depth_ros import deploy
from bore_depth_ros.backends import BackendUnavailable, create_backend, ensure_onnx, seeded_inputs
from bore_depth_ros.backends.onnxruntime_backend import OnnxRuntimeBackend, SessionConfig
from bore_depth_ros.models import get_model_info

H, W = 64, 96

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored

# The option sets compared in docs/benchmarks.md ("ONNX Runtime session options").
OPTION_SETS = {
    "default": {},
    "previous default": {"allow_spinning": True, "io_binding": False},
    "basic": {"graph_optimization": "basic"},
    "extended": {"graph_optimization": "extended"},
    "layout": {"graph_optimization": "layout"},
    "one thread": {"intra_op_threads": 1},
    "parallel": {"execution_mode": "parallel", "inter_op_threads": 2},
    "no arena": {"memory_arena": False},
    "no memory pattern": {"memory_pattern": False},
    "spinning": {"allow_spinning": True},
    "no I/O binding": {"io_binding": False},
}


def _exported(name: str):
    model, _ = deploy.load_model(name)
    shapes = deploy.deployment_shapes(name, H, W)
    names = get_model_info(name).output_names
    return ensure_onnx(model, name, shapes, names), shapes, tuple(names)


@pytest.fixture(scope="module")
def bore():
    return _exported("bore_depth")


@pytest.fixture(scope="module")
def svr():
    return _exported("svr")


def _today(path, feed, names):
    """What the backend returned before the session options: plain session, level ALL, session.run."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(list(names), feed)))


@pytest.mark.parametrize("model", ["bore", "svr"])
@pytest.mark.parametrize("label", list(OPTION_SETS))
def test_every_option_set_gives_todays_outputs(model, label, request):
    path, shapes, names = request.getfixturevalue(model)
    feed = seeded_inputs(shapes, seed=3)
    want = _today(path, feed, names)
    backend = OnnxRuntimeBackend(path, shapes, names, **OPTION_SETS[label])
    got = backend.infer(feed if len(feed) > 1 else feed["image"])
    assert list(got) == list(names)
    for n in names:
        assert got[n].dtype == np.float32 and got[n].shape == want[n].shape
        scale = float(np.abs(want[n]).max())
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-5 * scale, err_msg=f"{label}: {n}")
    opts = OPTION_SETS[label]
    if opts.get("graph_optimization", "all") == "all" and "intra_op_threads" not in opts:
        # the same graph, kernels and thread split: the same bits, whatever the arena, spinning or
        # binding (another thread count may split a reduction differently: last-bit differences)
        for n in names:
            assert np.array_equal(got[n], want[n]), f"{label}: {n}"


@pytest.mark.parametrize("model", ["bore", "svr"])
def test_io_binding_returns_the_same_bits_in_fresh_arrays(model, request):
    path, shapes, names = request.getfixturevalue(model)
    bound = OnnxRuntimeBackend(path, shapes, names, io_binding=True)
    plain = OnnxRuntimeBackend(path, shapes, names, io_binding=False)
    a, b = seeded_inputs(shapes, seed=1), seeded_inputs(shapes, seed=2)
    first = bound.infer(a)
    kept = {n: v.copy() for n, v in first.items()}
    second = bound.infer(b)
    for n in names:
        assert first[n].dtype == np.float32 and first[n].flags.c_contiguous and first[n].flags.owndata
        assert np.array_equal(first[n], plain.infer(a)[n])
        assert np.array_equal(second[n], plain.infer(b)[n])
        # a later call never writes into arrays already handed out
        assert np.array_equal(first[n], kept[n]) and not np.shares_memory(first[n], second[n])
        assert not np.array_equal(first[n], second[n])
    # the caller's input is read, never changed
    again = seeded_inputs(shapes, seed=1)
    assert all(np.array_equal(a[k], again[k]) for k in a)


def test_options_reach_the_session_and_describe(bore):
    path, shapes, names = bore
    backend = create_backend(
        "onnxruntime",
        onnx_path=path,
        input_shapes=shapes,
        output_names=names,
        graph_optimization="extended",
        intra_op_threads=1,
        io_binding=False,
    )
    assert backend.config == SessionConfig(
        graph_optimization="extended", intra_op_threads=1, io_binding=False
    )
    opts = backend.session.get_session_options()
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert "graph_optimization=extended" in backend.describe()["session"]
    # a SessionConfig as a whole, with a keyword on top
    other = OnnxRuntimeBackend(
        path, shapes, names, session=SessionConfig(memory_arena=False), io_binding=False
    )
    assert other.config == SessionConfig(memory_arena=False, io_binding=False)
    assert not other.session.get_session_options().enable_cpu_mem_arena


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"graph_optimization": "max"}, ["graph_optimization", "basic", "'max'"]),
        ({"execution_mode": "async"}, ["execution_mode", "sequential", "'async'"]),
        ({"inter_op_threads": -1}, ["inter_op_threads", ">= 0"]),
        ({"intra_op_threads": 1.5}, ["intra_op_threads", "1.5"]),
        ({"io_binding": "yes"}, ["io_binding", "true or false", "'yes'"]),
    ],
)
def test_bad_options_are_refused_by_name(kw, words):
    with pytest.raises(ValueError) as e:
        SessionConfig(**kw)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_unknown_keyword_is_refused(bore):
    path, shapes, names = bore
    with pytest.raises(TypeError, match="graph_optimisation"):
        OnnxRuntimeBackend(path, shapes, names, graph_optimisation="all")


def _openvino_installed() -> bool:
    return (
        importlib.util.find_spec("onnxruntime_ep_openvino") is not None
        or "OpenVINOExecutionProvider" in ort.get_available_providers()
    )


@pytest.mark.parametrize("model", ["bore", "svr"])
def test_openvino_device_gives_todays_outputs_or_a_clear_error(model, request):
    path, shapes, names = request.getfixturevalue(model)
    kw = dict(onnx_path=path, input_shapes=shapes, output_names=names, device="openvino")
    if not _openvino_installed():
        with pytest.raises(BackendUnavailable, match="pip install onnxruntime-ep-openvino"):
            create_backend("onnxruntime", **kw)
        return
    backend = create_backend("onnxruntime", **kw)
    assert backend.session.get_providers()[0] == "OpenVINOExecutionProvider"
    assert backend.self_check_report is not None and backend.self_check_report.passed
    feed = seeded_inputs(shapes, seed=4)
    want = _today(path, feed, names)
    got = backend.infer(feed)
    for n in names:
        scale = float(np.abs(want[n]).max())
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-5 * scale, err_msg=n)


@pytest.mark.slow
def test_session_sweep_times_every_set_against_the_first(bore, tmp_path):
    import csv
    import subprocess

    from bore_depth_ros.bench import table
    from harness import entry_point

    sets = {k: table.SESSION_SWEEP[k] for k in list(table.SESSION_SWEEP)[:3]}
    rows = table.session_sweep(["bore_depth"], [(H, W)], rounds=2, per_round=1, sets=sets)
    assert [r.options for r in rows] == list(sets)
    assert all(r.runs == 2 and 0 < r.min_ms <= r.median_ms for r in rows)
    assert rows[0].ratio == 1.0 and rows[1].ratio == pytest.approx(rows[1].median_ms / rows[0].median_ms)
    assert all(r.max_rel_diff == 0.0 for r in rows)  # level "all", same threads: the same bits
    md = table.sweep_markdown(rows, caption="")
    assert md.count("\n") == 2 + len(rows) and "| bore_depth | 64x96 | 1 | defaults (all" in md

    out_csv = tmp_path / "sweep.csv"
    args = ["bench", "--models", "bore_depth", "--sizes", "64x96", "--session-sweep", "1"]
    done = subprocess.run(
        [entry_point("bore-depth"), *args, "--csv", str(out_csv)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Measured on ")
    parsed = list(csv.DictReader(out_csv.open()))
    assert [r["options"] for r in parsed] == list(table.SESSION_SWEEP)
    assert all(float(r["median_ms"]) > 0 for r in parsed)
