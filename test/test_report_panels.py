"""eval's panels: a relative model's frame is shown and scored median-scaled, like its figures.

A relative model (BoRe-Depth) predicts depth up to scale; its report figures are median-scaled, and
its panel must be too, or the error column is saturated everywhere and the depth colours do not
match the ground truth's.
"""

import numpy as np
from PIL import Image

from bore_depth_ros.replay.report import save_panel

H, W = 48, 64


def _columns(path):
    """The five image columns of a panel, without their caption strips."""
    a = np.asarray(Image.open(path).convert("RGB")).astype(np.float32)
    return [a[16:, i * W : (i + 1) * W] for i in range(5)]


def test_a_relative_frame_is_shown_median_scaled(tmp_path):
    rng = np.random.default_rng(0)
    gt = np.linspace(2.0, 40.0, H * W, dtype=np.float32).reshape(H, W)
    relative = gt / 7.5  # right up to scale
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    conf = np.full((H, W), 0.8, np.float32)
    save_panel(tmp_path / "raw.png", rgb, relative, conf, gt, 0.5, 80.0)
    save_panel(tmp_path / "scaled.png", rgb, relative, conf, gt, 0.5, 80.0, median_scale=7.5)
    raw, scaled = _columns(tmp_path / "raw.png"), _columns(tmp_path / "scaled.png")
    # error 0 shows as the colour map's dark end, a saturated error (>= 0.5) as its bright end
    assert scaled[4].mean() < 20 < 200 < raw[4].mean()
    # the scaled prediction is coloured like the ground truth
    assert np.abs(scaled[1] - scaled[3]).mean() < 1.0 < np.abs(raw[1] - raw[3]).mean()


def test_a_metric_frame_and_a_bad_scale_are_shown_as_they_are(tmp_path):
    gt = np.linspace(2.0, 40.0, H * W, dtype=np.float32).reshape(H, W)
    rgb = np.zeros((H, W, 3), np.uint8)
    conf = np.ones((H, W), np.float32)
    save_panel(tmp_path / "m.png", rgb, gt, conf, gt, 0.5, 80.0)
    for bad in (float("nan"), 0.0, -1.0):
        save_panel(tmp_path / "b.png", rgb, gt, conf, gt, 0.5, 80.0, median_scale=bad)
        assert np.array_equal(_columns(tmp_path / "b.png")[4], _columns(tmp_path / "m.png")[4])
    assert _columns(tmp_path / "m.png")[4].mean() < 20
