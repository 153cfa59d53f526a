"""The input size defaults to the one the weights were trained at; forcing another one warns."""

from __future__ import annotations

import logging

from bore_depth_ros.engine import DepthEngine, EngineConfig, input_size_warning, resolve_input_size


def test_the_embedded_weights_run_at_their_training_size_and_other_sizes_warn(caplog):
    default = EngineConfig(model="bore_depth", backend="torch")
    assert resolve_input_size(default) == (128, 224)
    assert input_size_warning(default, (128, 224)) is None
    forced = EngineConfig(model="bore_depth", backend="torch", input_height=64, input_width=96)
    with caplog.at_level(logging.WARNING, logger="bore_depth_ros.engine"):
        engine = DepthEngine(forced)
    assert engine.input_hw == (64, 96)
    assert (
        engine.size_warning and "differs from the 128x224 the weights were trained at" in engine.size_warning
    )
    assert engine.size_warning in caplog.text
    # an ONNX file is fixed-size: nothing to compare with
    assert input_size_warning(EngineConfig(model="bore_depth", weights="x.onnx"), (64, 96)) is None


def test_export_bench_and_prebuild_default_to_the_training_size():
    from bore_depth_ros.deploy import deployment_shapes, deployment_size

    assert deployment_shapes("bore_depth")["image"] == (1, 3, 128, 224)
    assert deployment_size("bore_depth") == ((128, 224), None)
    (hw, warning) = deployment_size("bore_depth", 256, 320)
    assert hw == (256, 320) and "128x224 the weights were trained at" in warning
