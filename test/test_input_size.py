"""The input size defaults to the one the weights were trained at; forcing another one warns."""

from __future__ import annotations

import logging

from bore_depth_ros.engine import (
    DepthEngine,
    EngineConfig,
    embedded_weights_path,
    input_size_warning,
    resolve_input_size,
)
from bore_depth_ros.models.checkpoint import read_checkpoint_file, recorded_metadata


def _trained_size() -> tuple[int, int]:
    """The size the embedded BoRe-Depth weights record (their training size), not the 256x320
    the model falls back to without such a record."""
    hw = tuple(recorded_metadata(read_checkpoint_file(embedded_weights_path("bore_depth")))["input_size"])
    assert hw != (256, 320), "the embedded weights should be trained at another size than the fallback"
    return hw


def test_the_embedded_weights_run_at_their_training_size_and_other_sizes_warn(caplog):
    trained = _trained_size()
    default = EngineConfig(model="bore_depth", backend="torch")
    assert resolve_input_size(default) == trained
    assert input_size_warning(default, trained) is None
    forced = EngineConfig(model="bore_depth", backend="torch", input_height=64, input_width=96)
    with caplog.at_level(logging.WARNING, logger="bore_depth_ros.engine"):
        engine = DepthEngine(forced)
    assert engine.input_hw == (64, 96)
    said = f"differs from the {trained[0]}x{trained[1]} the weights were trained at"
    assert engine.size_warning and said in engine.size_warning
    assert engine.size_warning in caplog.text
    # an ONNX file is fixed-size: nothing to compare with
    assert input_size_warning(EngineConfig(model="bore_depth", weights="x.onnx"), (64, 96)) is None


def test_export_bench_and_prebuild_default_to_the_training_size():
    from bore_depth_ros.deploy import deployment_shapes, deployment_size

    trained = _trained_size()
    assert deployment_shapes("bore_depth")["image"] == (1, 3, *trained)
    assert deployment_size("bore_depth") == (trained, None)
    (hw, warning) = deployment_size("bore_depth", 256, 320)
    assert hw == (256, 320) and f"{trained[0]}x{trained[1]} the weights were trained at" in warning
