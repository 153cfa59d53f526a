"""CompressedImage decoding after image_transport's conventions (ROS-free message layer)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from bore_depth_ros.bag.messages import BAG
from bore_depth_ros.core import errors
from bore_depth_ros.core import messages as M
from bore_depth_ros.core.compressed import encode_compressed, parse_format
from bore_depth_ros.core.errors import InputRejected

RGB = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
HEADER = BAG.header(5, "cam_optical_frame")


def msg(data: bytes, fmt: str):
    return BAG.new(M.COMPRESSED_IMAGE, header=HEADER, format=fmt, data=np.frombuffer(data, np.uint8))


@pytest.mark.parametrize(
    "fmt,expected",
    [
        ("rgb8; jpeg compressed bgr8", ("rgb8", "jpeg", "bgr8")),
        ("bgr8; png compressed rgb8", ("bgr8", "png", "rgb8")),
        ("mono16; png compressed mono16", ("mono16", "png", "mono16")),
        ("jpeg", ("", "jpeg", "")),
        ("", ("", "", "")),
        ("16UC1; compressedDepth png", ("16UC1", "compressedDepth-png", "16UC1")),
        ("32FC1; compressedDepth", ("32FC1", "compressedDepth-png", "32FC1")),
        ("16UC1; compressedDepth rvl", ("16UC1", "compressedDepth-rvl", "16UC1")),
    ],
)
def test_format_strings_are_read_as_image_transport_writes_them(fmt, expected):
    assert parse_format(fmt) == expected


def test_png_is_lossless_and_the_compressed_channel_order_is_honoured():
    data, fmt = encode_compressed(RGB, "png")
    assert np.array_equal(M.image_rgb(msg(data, fmt)), RGB)
    # an image compressed as rgb8 went through OpenCV as if it were BGR: stored swapped
    swapped = io.BytesIO()
    PILImage.fromarray(RGB[:, :, ::-1].copy()).save(swapped, format="PNG")
    assert np.array_equal(M.image_rgb(msg(swapped.getvalue(), "rgb8; png compressed rgb8")), RGB)
    # a format that names no codec: the magic bytes decide
    assert np.array_equal(M.image_rgb(msg(data, "")), RGB)


def test_jpeg_decodes_to_true_colours_and_mono16_png_to_grey():
    data, fmt = encode_compressed(RGB, "jpeg", quality=95)
    out = M.validate_image(msg(data, fmt), 10**6)
    assert out.shape == RGB.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - RGB).mean() < 8
    grey = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, format="PNG")
    out = M.image_rgb(msg(buf.getvalue(), "mono16; png compressed mono16"))
    assert out.shape == (48, 64, 3) and np.array_equal(out[:, :, 1], (grey >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda d: b"", errors.COMPRESSED_EMPTY),
        (lambda d: d[: len(d) // 2], errors.COMPRESSED_TRUNCATED),
        (lambda d: d[:200] + bytes(range(256)) * 4 + d[-2:], errors.COMPRESSED_CORRUPT),
        (lambda d: b"GIF89a" + d[6:], errors.COMPRESSED_FORMAT_UNKNOWN),
    ],
)
def test_bad_jpeg_data_is_rejected_with_its_reason(mutate, reason):
    data, _ = encode_compressed(RGB, "jpeg")
    fmt = "" if reason == errors.COMPRESSED_FORMAT_UNKNOWN else "rgb8; jpeg compressed bgr8"
    with pytest.raises(InputRejected) as e:
        M.validate_image(msg(mutate(data), fmt))
    assert e.value.reason == reason, e.value


def test_truncated_png_and_oversized_images_are_rejected_before_decoding():
    data, fmt = encode_compressed(RGB, "png")
    with pytest.raises(InputRejected, match="no IEND chunk"):
        M.image_rgb(msg(data[:-20], fmt))
    jpg, jfmt = encode_compressed(RGB, "jpeg")
    with pytest.raises(InputRejected) as e:
        M.validate_image(msg(jpg, jfmt), max_pixels=1000)
    assert e.value.reason == errors.IMAGE_TOO_LARGE and "64x48" in str(e.value)


@pytest.mark.parametrize("encoding,tolerance", [("16UC1", 1e-3), ("32FC1", 1e-2)])
def test_compressed_depth_decodes_to_the_metres_of_the_raw_image(encoding, tolerance):
    depth = np.random.default_rng(2).uniform(0.5, 9.5, (48, 64)).astype(np.float32)
    depth[3, 4] = np.nan
    raw = M.depth_metres(
        BAG.image(HEADER, np.where(np.isnan(depth), 0, np.round(depth * 1000)).astype(np.uint16), "16UC1")
    )
    got = M.depth_metres(BAG.compressed_depth(HEADER, depth, encoding))
    assert np.isnan(got[3, 4]) and np.array_equal(np.isnan(got), np.isnan(raw))
    ok = ~np.isnan(raw)
    assert np.max(np.abs(got[ok] - raw[ok]) / raw[ok]) < tolerance
    if encoding == "16UC1":
        assert np.array_equal(got[ok], raw[ok])  # the same millimetres
    rvl = BAG.new(
        M.COMPRESSED_IMAGE, header=HEADER, format="16UC1; compressedDepth rvl", data=np.zeros(20, np.uint8)
    )
    with pytest.raises(InputRejected, match="only the PNG variant"):
        M.depth_metres(rvl)
