"""CompressedImage decoding after image_transport's conventions (no ROS).

``format`` strings, as the image_transport plugins write them:

- compressed_image_transport: ``"<encoding>; <jpeg|png> compressed <compressed encoding>"``, e.g.
  ``"rgb8; jpeg compressed bgr8"`` or ``"mono16; png compressed mono16"``; older drivers write
  only ``"jpeg"`` or ``"png"`` (the data's magic bytes decide when the format names no codec).
  The plugin hands the pixels to OpenCV, which takes them as BGR: an image compressed as ``bgr8``
  holds true colours, one compressed as ``rgb8`` holds red and blue swapped. Both are read back to
  true RGB here. 16-bit PNGs (``mono16``, ``rgb16``...) are read at full depth and scaled to 8 bits
  for colour input.
- compressed_depth_image_transport: ``"<16UC1|32FC1>; compressedDepth [png]"``: a 12-byte header
  (int32 format, float32 quantisation parameters a, b) then a 16-bit PNG: millimetres for 16UC1;
  for 32FC1 quantised inverse depth, ``depth = a / (q - b)`` with ``q = 0`` invalid. RVL data
  (``"compressedDepth rvl"``) is refused with that reason.

Decoders: simplejpeg (libjpeg-turbo) for JPEG, Pillow for PNG, chosen by measurement
(``benchmarks/bench_decode.py``). Bad data raises :class:`~.errors.InputRejected` with a specific
reason: ``compressed_empty``, ``compressed_format_unknown``, ``compressed_truncated`` (no JPEG end
marker / PNG IEND chunk), ``compressed_corrupt`` (the decoder failed), ``image_too_large`` (checked
from the header, before decoding).
"""

from __future__ import annotations

import io
import struct

import numpy as np

from .errors import (
    COMPRESSED_CORRUPT,
    COMPRESSED_EMPTY,
    COMPRESSED_FORMAT_UNKNOWN,
    COMPRESSED_TRUNCATED,
    IMAGE_TOO_LARGE,
    InputRejected,
)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
DEPTH_HEADER = struct.Struct("<iff")  # compressed_depth_image_transport's ConfigHeader


def parse_format(fmt: str) -> tuple[str, str, str]:
    """(original encoding, codec, compressed encoding) of a format string; parts it does not
    name are "" (the codec may then come from the data)."""
    text = (fmt or "").strip()
    if ";" in text:
        original, rest = (part.strip() for part in text.split(";", 1))
    else:
        original, rest = "", text
    words = rest.split()
    if "compressedDepth" in words:
        codec = words[words.index("compressedDepth") + 1] if words[-1] != "compressedDepth" else "png"
        return original, "compressedDepth-" + codec.lower(), original
    codec = next((w.lower() for w in words if w.lower() in ("jpeg", "jpg", "png")), "")
    codec = "jpeg" if codec == "jpg" else codec
    compressed = words[words.index("compressed") + 1] if "compressed" in words[:-1] else ""
    return original, codec, compressed


def _buffer(data) -> bytes | memoryview:
    return (
        data if isinstance(data, (bytes, bytearray, memoryview)) else memoryview(np.asarray(data, np.uint8))
    )


def _codec_of(data, codec: str, fmt: str) -> str:
    head = bytes(data[:8])
    sniffed = "jpeg" if head.startswith(JPEG_MAGIC) else "png" if head.startswith(PNG_MAGIC) else ""
    if codec and sniffed and codec != sniffed:
        raise InputRejected(COMPRESSED_CORRUPT, f"format {fmt!r} says {codec} but the data is {sniffed}")
    if not (codec or sniffed):
        raise InputRejected(
            COMPRESSED_FORMAT_UNKNOWN,
            f"format {fmt!r} names no known codec (jpeg, png) and the data is neither JPEG nor PNG",
        )
    return codec or sniffed


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if max_pixels > 0 and width * height > max_pixels:
        raise InputRejected(
            IMAGE_TOO_LARGE,
            f"compressed image is {width}x{height} = {width * height} pixels > max_input_pixels {max_pixels}",
        )


def _decode_jpeg(data, max_pixels: int) -> np.ndarray:
    import simplejpeg

    if not bytes(data[-2:]) == b"\xff\xd9":
        raise InputRejected(COMPRESSED_TRUNCATED, f"JPEG data ({len(data)} bytes) has no end marker")
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as e:
        raise InputRejected(
            COMPRESSED_CORRUPT, f"JPEG header ({len(data)} bytes) cannot be read: {e}"
        ) from None
    _check_size(width, height, max_pixels)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as e:
        raise InputRejected(
            COMPRESSED_CORRUPT, f"JPEG data ({len(data)} bytes) cannot be decoded: {e}"
        ) from None


def _decode_png(data, max_pixels: int) -> np.ndarray:
    from PIL import Image as PILImage

    if not bytes(data[-8:]) == PNG_END:
        raise InputRejected(COMPRESSED_TRUNCATED, f"PNG data ({len(data)} bytes) has no IEND chunk")
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            _check_size(im.width, im.height, max_pixels)
            a = np.asarray(im)
    except InputRejected:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad data
        raise InputRejected(
            COMPRESSED_CORRUPT, f"PNG data ({len(data)} bytes) cannot be decoded: {type(e).__name__}: {e}"
        ) from None
    if a.dtype == np.int32:  # Pillow's 'I' mode for some 16-bit greyscale files
        a = a.astype(np.uint16)
    return a


def decode_compressed(msg, max_pixels: int = 0) -> tuple[np.ndarray, str]:
    """(pixels, compressed encoding) of a CompressedImage (JPEG or PNG): pixels (H, W), (H, W, 3)
    or (H, W, 4) as decoded (RGB order for colour JPEG; PNG as stored); raises InputRejected."""
    data = _buffer(msg.data)
    fmt = str(msg.format)
    if len(data) == 0:
        raise InputRejected(COMPRESSED_EMPTY, f"CompressedImage with format {fmt!r} holds no data")
    _, codec, compressed = parse_format(fmt)
    if codec.startswith("compressedDepth"):
        raise InputRejected(COMPRESSED_FORMAT_UNKNOWN, f"format {fmt!r} is a depth image: not a camera image")
    codec = _codec_of(data, codec, fmt)
    return (_decode_jpeg(data, max_pixels) if codec == "jpeg" else _decode_png(data, max_pixels)), compressed


def compressed_rgb(msg, max_pixels: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 true-colour RGB of a colour or mono CompressedImage; raises InputRejected."""
    px, compressed = decode_compressed(msg, max_pixels)
    if px.ndim == 2:
        if px.dtype != np.uint8:
            px = (px >> 8).astype(np.uint8)
        return np.repeat(px[:, :, None], 3, axis=2)
    if px.dtype != np.uint8:
        px = (px >> 8).astype(np.uint8)
    px = px[:, :, :3]
    # standard decoders return the file's true colours; OpenCV (the plugin) takes its input as
    # BGR, so an image compressed as rgb8 is stored with red and blue swapped
    return np.ascontiguousarray(px[:, :, ::-1]) if compressed.startswith("rgb") else px


def compressed_depth_metres(msg) -> np.ndarray:
    """(H, W) float32 metres of a compressedDepth message (16UC1 millimetres, 0 = NaN; or 32FC1
    quantised inverse depth); raises InputRejected."""
    data = _buffer(msg.data)
    fmt = str(msg.format)
    original, codec, _ = parse_format(fmt)
    if not codec.startswith("compressedDepth"):
        raise InputRejected(COMPRESSED_FORMAT_UNKNOWN, f"format {fmt!r} is not compressedDepth")
    if codec != "compressedDepth-png":
        raise InputRejected(COMPRESSED_FORMAT_UNKNOWN, f"format {fmt!r}: only the PNG variant is supported")
    if len(data) <= DEPTH_HEADER.size:
        raise InputRejected(COMPRESSED_EMPTY, f"compressedDepth data is {len(data)} bytes: no image")
    _, a, b = DEPTH_HEADER.unpack(bytes(data[: DEPTH_HEADER.size]))
    q = _decode_png(bytes(data[DEPTH_HEADER.size :]), 0)
    if q.ndim != 2:
        raise InputRejected(COMPRESSED_CORRUPT, f"compressedDepth PNG has {q.shape[2]} channels, expected 1")
    q = q.astype(np.uint16, copy=False)
    if original == "16UC1":
        d = q.astype(np.float32) * np.float32(1e-3)
        d[q == 0] = np.nan
        return d
    if original == "32FC1":
        d = np.full(q.shape, np.nan, np.float32)
        valid = q != 0
        d[valid] = np.float32(a) / (q[valid].astype(np.float32) - np.float32(b))
        return d
    raise InputRejected(
        COMPRESSED_FORMAT_UNKNOWN, f"compressedDepth of {original!r}: expected 16UC1 or 32FC1"
    )


# ------------------------------------------------------------------------------ encoding
def encode_compressed(rgb: np.ndarray, codec: str = "jpeg", quality: int = 90) -> tuple[bytes, str]:
    """(data, format) of an (H, W, 3) uint8 RGB image as compressed_image_transport writes it
    (true colours, so the compressed encoding is ``bgr8``)."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if codec == "jpeg":
        import simplejpeg

        return simplejpeg.encode_jpeg(a, quality=int(quality), colorspace="RGB"), "rgb8; jpeg compressed bgr8"
    if codec == "png":
        from PIL import Image as PILImage

        buf = io.BytesIO()
        PILImage.fromarray(a).save(buf, format="PNG", compress_level=1)
        return buf.getvalue(), "rgb8; png compressed bgr8"
    raise ValueError(f"unknown codec {codec!r}: jpeg or png")


def encode_compressed_depth(
    depth: np.ndarray, encoding: str = "16UC1", depth_max: float = 10.0, quantization: float = 100.0
) -> tuple[bytes, str]:
    """(data, format) of metric depth (NaN = invalid) in compressed_depth_image_transport's PNG
    format: 16UC1 millimetres, or 32FC1 as quantised inverse depth (the plugin's defaults)."""
    from PIL import Image as PILImage

    d = np.asarray(depth, np.float32)
    valid = np.isfinite(d) & (d > 0)
    if encoding == "16UC1":
        q = np.where(valid, np.clip(np.round(d * 1000.0), 0, 65535), 0).astype(np.uint16)
        a = b = 0.0
    elif encoding == "32FC1":
        a = quantization * (depth_max + 1.0)
        b = 1.0 - a / depth_max
        valid &= d <= depth_max
        q = np.zeros(d.shape, np.uint16)
        q[valid] = np.clip(a / d[valid] + b, 1, 65535).astype(np.uint16)
    else:
        raise ValueError(f"compressedDepth holds 16UC1 or 32FC1, not {encoding!r}")
    buf = io.BytesIO()
    PILImage.fromarray(q).save(buf, format="PNG", compress_level=1)
    return DEPTH_HEADER.pack(0, a, b) + buf.getvalue(), f"{encoding}; compressedDepth png"
