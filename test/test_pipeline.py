"""Core pipeline pieces written for the nodes: metrics, confidence, view post-processing, renderer."""

import math

import numpy as np
import pytest

from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.confidence import edge_confidence
from bore_depth_ros.core.metrics import depth_metrics, mean_metrics
from bore_depth_ros.core.stats import ReasonCounter
from bore_depth_ros.core.view import ViewConfig, ViewProcessor
from bore_depth_ros.sim.procedural import Scene, camera_rotation, render


def test_metrics_equal_hand_computed_values():
    pred = np.array([1.0, 2.0, 4.0])
    gt = np.array([1.0, 1.0, 2.0])
    m = depth_metrics(pred, gt, min_depth=0.1, max_depth=10.0)
    assert m["n_valid"] == 3
    assert m["abs_rel"] == pytest.approx(2 / 3)
    assert m["sq_rel"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert m["rmse_log"] == pytest.approx(math.log(2) * math.sqrt(2 / 3))
    assert (m["a1"], m["a2"], m["a3"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))


def test_metrics_masks_caps_and_median_scaling():
    # invalid ground truth (NaN, too near, too far) and invalid predictions are ignored
    pred = np.array([1.0, 2.0, 4.0, 5.0, 5.0, 5.0, np.nan, 100.0])
    gt = np.array([1.0, 1.0, 2.0, np.nan, 0.05, 20.0, 3.0, 5.0])
    m = depth_metrics(pred, gt, min_depth=0.1, max_depth=10.0)
    assert m["n_valid"] == 4
    # the last prediction is capped to max_depth before the error: |5 - 10| / 5 = 1
    assert m["abs_rel"] == pytest.approx((0 + 1 + 1 + 1) / 4)
    mask = np.array([True, True, True, True, True, True, True, False])
    assert depth_metrics(pred, gt, 0.1, 10.0, mask=mask)["abs_rel"] == pytest.approx(2 / 3)
    # median scaling: a prediction off by a constant factor becomes exact
    scaled = depth_metrics(
        np.array([3.0, 6.0, 9.0]), np.array([1.0, 2.0, 3.0]), 0.1, 10.0, median_scaling=True
    )
    assert scaled["scale"] == pytest.approx(1 / 3) and scaled["abs_rel"] == pytest.approx(0.0)
    empty = depth_metrics(np.ones(3), np.full(3, np.nan))
    assert empty["n_valid"] == 0 and math.isnan(empty["abs_rel"])
    assert mean_metrics([m, empty])["abs_rel"] == pytest.approx(m["abs_rel"])


def test_edge_confidence_is_low_at_discontinuities_and_scale_free():
    depth = np.full((20, 30), 2.0, np.float32)
    depth[:, 15:] = 6.0
    c = edge_confidence(depth, 8.0)
    assert c[:, 2:12].min() == pytest.approx(1.0) and c[:, 14:16].max() < 0.05
    np.testing.assert_allclose(edge_confidence(depth * 7.3, 8.0), c, rtol=1e-5, atol=1e-6)
    sat = edge_confidence(np.full((4, 4), 100.0, np.float32), 8.0, (0.1, 100.0))
    assert (sat == 0).all()


@pytest.mark.parametrize("shape", [(48, 64), (2, 24, 32), (1, 9), (9, 1), (1, 1)])
def test_edge_confidence_follows_its_definition(shape):
    """exp(-k * max(|np.gradient(log d)| along rows, columns)), bit for bit (NaN/inf/0 depth:
    confidence 0), for single maps, batches and degenerate sizes."""
    rng = np.random.default_rng(1)
    d = (rng.random(shape) * 30).astype(np.float32)
    flat = d.reshape(-1)
    flat[::7] = np.nan
    if flat.size > 3:
        flat[1], flat[2] = np.inf, 0.0
    log_d = np.log(np.maximum(d, 1e-6))
    grads = [np.abs(np.gradient(log_d, axis=a)) for a in (-2, -1) if d.shape[a] > 1]
    grad = np.maximum(*grads) if len(grads) == 2 else (grads[0] if grads else np.zeros_like(log_d))
    expected = np.exp(-8.0 * grad, dtype=np.float32)
    expected[~np.isfinite(d)] = 0.0
    np.testing.assert_array_equal(edge_confidence(d, 8.0), expected)


def test_view_processor_masks_with_nan_scales_and_resizes():
    intr = Intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    model_depth = np.linspace(1.0, 3.0, 32 * 24, dtype=np.float32).reshape(24, 32)
    model_depth[:, 16:] *= 2.0  # a step: low confidence along it
    cfg = ViewConfig(confidence_threshold=0.5, depth_scale=2.0, max_depth=11.0)
    res = ViewProcessor(cfg, model_is_metric=False).process(model_depth, None, intr)
    assert res.depth.shape == (48, 64) and res.depth.dtype == np.float32
    assert res.scale.scale == 2.0 and res.scale.source == "fixed"
    low = res.confidence < 0.5
    assert low.any() and np.isnan(res.depth[low]).all()
    assert np.isnan(res.depth[res.confidence >= 0.5][res.depth[res.confidence >= 0.5] > 11]).all()
    finite = res.depth[np.isfinite(res.depth)]
    assert finite.min() >= 2.0 * 1.0 - 1e-5 and finite.max() <= 11.0
    assert res.valid_fraction == pytest.approx(np.isfinite(res.depth).mean())


def test_ground_plane_mode_needs_a_camera_height():
    with pytest.raises(ValueError, match="camera_height"):
        ViewProcessor(ViewConfig(scale_mode="ground_plane"), model_is_metric=False)


def test_reason_counter_logs_first_and_then_periodically():
    now = [0.0]
    rc = ReasonCounter(log_period=5.0, clock=lambda: now[0])
    assert rc.add("a") is True and rc.add("a") is False and rc.add("b") is True
    now[0] = 6.0
    assert rc.add("a") is True
    assert rc.as_dict() == {"a": 3, "b": 1} and rc.total() == 4


def test_renderer_ground_depth_matches_the_analytic_plane():
    intr = Intrinsics(100.0, 100.0, 39.5, 29.5, 80, 60)
    height, pitch = 1.5, 10.0
    rgb, depth = render(Scene(), intr, (0.0, 0.0, height), camera_rotation(pitch))
    assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8
    v = np.arange(60)[:, None] + np.zeros((1, 80))
    # ray (.., (v-cy)/fy, 1) in optical coordinates; its world z component per unit depth:
    p = np.deg2rad(pitch)
    dz = -np.sin(p) - np.cos(p) * (v - intr.cy) / intr.fy
    expected = np.where(dz < 0, height / -np.where(dz < 0, dz, -1), np.inf)
    np.testing.assert_allclose(depth, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "model,backend,batch", [("bore_depth", "onnxruntime", 1), ("svr", "torch", 6), ("semi_smd", "torch", 6)]
)
def test_engine_warmup_runs_every_model_once(model, backend, batch, torch_one_thread):
    """The configure-time check: one inference with plausible geometry, cached per engine."""
    from bore_depth_ros.engine import DepthEngine, EngineConfig

    eng = DepthEngine(
        EngineConfig(model=model, backend=backend, input_height=64, input_width=96, batch=batch)
    )
    ms = eng.warmup()
    assert ms > 0 and eng.warmup() == ms  # once per engine
    assert not eng._has_prev  # no temporal state left behind


def test_engine_warmup_refuses_weights_that_produce_nan(tmp_path):
    """Unusable weights are refused with their cause: NaN in the file when it loads, a graph that
    loads and still returns NaN at the warm-up inference (configure fails with it)."""
    import torch

    from bore_depth_ros.engine import DepthEngine, EngineConfig
    from bore_depth_ros.models import create_model
    from bore_depth_ros.models.checkpoint import CheckpointError, save_lightning_checkpoint

    torch.manual_seed(0)
    model = create_model("bore_depth").eval()
    with torch.no_grad():
        model.decoder.dispconvs[0].conv.weight.fill_(float("nan"))
    path = tmp_path / "nan.ckpt"
    save_lightning_checkpoint(model, path)
    # NaN in the file itself is refused when it loads, naming the cause
    with pytest.raises(CheckpointError, match="contain NaN or inf"):
        DepthEngine(EngineConfig(weights=str(path), backend="torch", input_height=64, input_width=96))
    # a graph that loads and still returns NaN is caught by the warm-up inference
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["m"], axes=[1], keepdims=1),
            helper.make_node("Abs", ["m"], ["a"]),
            helper.make_node("Add", ["a", "one"], ["b"]),
            helper.make_node("Neg", ["b"], ["c"]),
            helper.make_node("Sqrt", ["c"], ["depth"]),  # sqrt of a negative number: NaN
        ],
        "nan_depth",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 96])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, 64, 96])],
        [one],
    )
    nan_onnx = tmp_path / "nan.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), nan_onnx)
    eng = DepthEngine(EngineConfig(weights=str(nan_onnx), backend="onnxruntime"))
    with pytest.raises(RuntimeError, match="non-finite"):
        eng.warmup()


def test_engine_pool_shares_and_frees_engines():
    from bore_depth_ros.engine import EngineConfig, EnginePool

    pool = EnginePool()
    cfg = EngineConfig(model="bore_depth", backend="torch", input_height=64, input_width=96)
    a, b = pool.get(cfg), pool.get(cfg)
    assert a is b and pool.engines() == [a]
    pool.release(a)
    assert pool.engines() == [a]  # one user left
    pool.release(b)
    assert pool.engines() == []  # the last user freed it
    assert pool.get(cfg) is not a  # a later configure loads it again


def test_view_processor_applies_reconfigure_and_reset_at_its_next_frame():
    """Nodes reconfigure from the executor thread while the worker processes: changes are
    validated at once (ValueError) and take effect at the next process() call."""
    intr = Intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    depth = np.full((24, 32), 2.0, np.float32)
    vp = ViewProcessor(ViewConfig(depth_scale=2.0), model_is_metric=False)
    assert vp.process(depth, None, intr).scale.scale == 2.0
    vp.configure(ViewConfig(depth_scale=3.0))
    assert vp.config.depth_scale == 2.0  # not yet: a frame may be running
    assert vp.process(depth, None, intr).scale.scale == 3.0
    with pytest.raises(ValueError):
        vp.configure(ViewConfig(scale_mode="ground_plane"))  # needs camera_height
    assert vp.process(depth, None, intr).scale.scale == 3.0  # the bad change never applied
    vp.reset()
    assert vp.process(depth, None, intr).scale.scale == 3.0  # fixed scale has no state to lose
