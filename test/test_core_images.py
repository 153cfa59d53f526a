"""Tests for bore_depth_ros.core.images and errors (decoding sensor_msgs/Image buffers)."""

import array
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bore_depth_ros.core import errors
from bore_depth_ros.core.errors import InputRejected
from bore_depth_ros.core.images import SUPPORTED_ENCODINGS, image_to_rgb, rgb_contiguous

# 2 rows x 3 columns of distinct RGB values
RGB = np.array(
    [[[10, 20, 30], [40, 50, 60], [70, 80, 90]], [[11, 21, 31], [41, 51, 61], [71, 81, 91]]], dtype=np.uint8
)
GRAY = np.array([[0, 127, 255], [1, 2, 3]], dtype=np.uint8)
BPP = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def encode(encoding, pad=0, pad_byte=0xEE):
    """Pixels of the 2x3 test image in ``encoding`` with ``pad`` extra bytes per row, and the expected RGB."""
    alpha = np.full((2, 3, 1), 200, np.uint8)
    if encoding == "mono8":
        pix, expected = GRAY[..., None], np.repeat(GRAY[..., None], 3, axis=2)
    else:
        pix = {
            "rgb8": RGB,
            "bgr8": RGB[..., ::-1],
            "rgba8": np.concatenate([RGB, alpha], axis=2),
            "bgra8": np.concatenate([RGB[..., ::-1], alpha], axis=2),
        }[encoding]
        expected = RGB
    rows = pix.reshape(2, -1)
    rows = np.concatenate([rows, np.full((2, pad), pad_byte, np.uint8)], axis=1)
    return bytearray(rows.tobytes()), rows.shape[1], expected


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("pad", [0, 5])
def test_each_encoding_decodes_to_rgb(encoding, pad):
    buf, step, expected = encode(encoding, pad)
    assert step == 3 * BPP[encoding] + pad
    out = image_to_rgb(buf, 3, 2, step, encoding)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_result_is_a_view_of_the_input(encoding, pad):
    buf, step, expected = encode(encoding, pad)
    for data in (buf, bytes(buf), array.array("B", buf), memoryview(buf), np.frombuffer(buf, np.uint8)):
        out = image_to_rgb(data, 3, 2, step, encoding)
        np.testing.assert_array_equal(out, expected)
        assert np.shares_memory(out, np.frombuffer(data, np.uint8))
    # a write to the first byte of the buffer shows through the view
    out = image_to_rgb(buf, 3, 2, step, encoding)
    buf[0] = 99
    channel = {"rgb8": 0, "rgba8": 0, "mono8": 1, "bgr8": 2, "bgra8": 2}[encoding]
    assert out[0, 0, channel] == 99
    assert not out.flags.writeable


def test_numpy_2d_and_non_contiguous_input():
    buf, step, expected = encode("rgb8", 2)
    arr2d = np.frombuffer(buf, np.uint8).reshape(2, step)
    out = image_to_rgb(arr2d, 3, 2, step, "rgb8")
    np.testing.assert_array_equal(out, expected)
    assert np.shares_memory(out, arr2d)
    strided = np.repeat(np.frombuffer(buf, np.uint8), 2)[::2]  # not contiguous: decoded from a copy
    np.testing.assert_array_equal(image_to_rgb(strided, 3, 2, step, "rgb8"), expected)


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_big_endian_flag_is_irrelevant_for_8_bit_encodings(encoding):
    buf, step, expected = encode(encoding)
    np.testing.assert_array_equal(image_to_rgb(buf, 3, 2, step, encoding, is_bigendian=1), expected)


def reject(*args, **kwargs):
    with pytest.raises(InputRejected) as info:
        image_to_rgb(*args, **kwargs)
    assert str(info.value) == f"{info.value.reason}: {info.value.detail}"
    assert isinstance(info.value, ValueError)
    return info.value


def test_rejections_carry_reason_and_numbers():
    buf, step, _ = encode("rgb8")  # step 9, 18 bytes
    e = reject(buf, 3, 2, step, "yuv422")
    assert e.reason == errors.UNKNOWN_ENCODING == "unknown_encoding"
    assert "yuv422" in e.detail and all(enc in e.detail for enc in SUPPORTED_ENCODINGS)
    e = reject(buf, 0, 2, step, "rgb8")
    assert e.reason == errors.EMPTY_IMAGE and "0x2" in e.detail
    e = reject(buf, 3, -1, step, "rgb8")
    assert e.reason == errors.EMPTY_IMAGE and "3x-1" in e.detail
    e = reject(buf, 3, 2, 8, "rgb8")
    assert (
        e.reason == errors.STEP_TOO_SMALL
        and "step 8" in e.detail
        and "width 3" in e.detail
        and "= 9" in e.detail
    )
    e = reject(buf[:-1], 3, 2, step, "rgb8")
    assert (
        e.reason == errors.TRUNCATED_DATA and "17 bytes" in e.detail and "step 9 * height 2 = 18" in e.detail
    )
    e = reject(buf + b"\0", 3, 2, step, "rgb8")
    assert e.reason == errors.SIZE_MISMATCH and "19 bytes" in e.detail and "= 18" in e.detail
    e = reject(b"", 3, 2, step, "rgb8")
    assert e.reason == errors.TRUNCATED_DATA and "0 bytes" in e.detail
    # the order of checks: encoding before size, size before step, step before length
    assert reject(b"", 0, 0, 0, "nv12").reason == errors.UNKNOWN_ENCODING
    assert reject(b"", 0, 2, 0, "rgb8").reason == errors.EMPTY_IMAGE
    assert reject(b"", 3, 2, 2, "rgb8").reason == errors.STEP_TOO_SMALL


def test_error_constants_and_pickling():
    import pickle

    assert errors.BIG_ENDIAN_UNSUPPORTED == "big_endian_unsupported"
    assert errors.CAMERA_INFO_MISSING == "camera_info_missing"
    assert errors.CAMERA_INFO_INVALID == "camera_info_invalid"
    assert errors.CAMERA_INFO_SIZE_MISMATCH == "camera_info_size_mismatch"
    e = pickle.loads(pickle.dumps(InputRejected(errors.SIZE_MISMATCH, "x")))
    assert (e.reason, e.detail, str(e)) == ("size_mismatch", "x", "size_mismatch: x")


def test_rgb_contiguous_copies_only_when_needed():
    buf, step, expected = encode("rgb8")
    view = image_to_rgb(buf, 3, 2, step, "rgb8")
    assert view.flags.c_contiguous
    assert rgb_contiguous(view) is view
    for enc, pad in (("bgr8", 0), ("rgb8", 4), ("mono8", 0)):
        buf, step, expected = encode(enc, pad)
        c = rgb_contiguous(image_to_rgb(buf, 3, 2, step, enc))
        assert c.flags.c_contiguous and c.dtype == np.uint8
        np.testing.assert_array_equal(c, expected)


@settings(max_examples=300, deadline=None)
@given(
    encoding=st.sampled_from(SUPPORTED_ENCODINGS + ("mono16", "RGB8", "")),
    width=st.integers(-2, 7),
    height=st.integers(-2, 5),
    step=st.integers(-3, 32),
    extra=st.integers(-4, 4),
    big=st.integers(0, 1),
    seed=st.integers(0, 2**16),
)
def test_random_geometry_decodes_or_is_rejected(encoding, width, height, step, extra, big, seed):
    n = max(0, step * height + extra)
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    try:
        out = image_to_rgb(data, width, height, step, encoding, big)
    except InputRejected as e:
        assert e.reason in errors.REASONS
        return
    bpp = BPP[encoding]
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    pix = np.frombuffer(data, np.uint8).reshape(height, step)[:, : width * bpp].reshape(height, width, bpp)
    ref = {
        "rgb8": pix,
        "bgr8": pix[..., ::-1],
        "rgba8": pix[..., :3],
        "bgra8": pix[..., 2::-1],
        "mono8": np.repeat(pix, 3, axis=2),
    }[encoding]
    np.testing.assert_array_equal(out, ref)


def test_core_modules_import_neither_torch_nor_ros():
    code = (
        "import sys, bore_depth_ros; before = set(sys.modules);"
        "import bore_depth_ros.core.errors, bore_depth_ros.core.images, bore_depth_ros.core.resize,"
        " bore_depth_ros.core.camera, bore_depth_ros.core.pointcloud, bore_depth_ros.core.scale;"
        "new = set(sys.modules) - before;"
        "bad = sorted(m for m in new if m.split('.')[0] in ('torch', 'rclpy', 'sensor_msgs', 'geometry_msgs',"
        " 'std_msgs', 'rosidl_runtime_py', 'builtin_interfaces'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
