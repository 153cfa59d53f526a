"""Errors raised when an input message cannot be used; ``reason`` is a stable code for diagnostics."""

UNKNOWN_ENCODING = "unknown_encoding"
EMPTY_IMAGE = "empty_image"
STEP_TOO_SMALL = "step_too_small"
SIZE_MISMATCH = "size_mismatch"
TRUNCATED_DATA = "truncated_data"
BIG_ENDIAN_UNSUPPORTED = "big_endian_unsupported"
CAMERA_INFO_MISSING = "camera_info_missing"
CAMERA_INFO_INVALID = "camera_info_invalid"
CAMERA_INFO_SIZE_MISMATCH = "camera_info_size_mismatch"
IMAGE_TOO_LARGE = "image_too_large"
INVALID_FRAME_ID = "invalid_frame_id"
INVALID_TRANSFORM = "invalid_transform"
COMPRESSED_EMPTY = "compressed_empty"
COMPRESSED_FORMAT_UNKNOWN = "compressed_format_unknown"
COMPRESSED_TRUNCATED = "compressed_truncated"
COMPRESSED_CORRUPT = "compressed_corrupt"

DEFAULT_MAX_INPUT_PIXELS = 7680 * 4320  # 8K; larger images are rejected as image_too_large

REASONS = (
    UNKNOWN_ENCODING,
    EMPTY_IMAGE,
    STEP_TOO_SMALL,
    SIZE_MISMATCH,
    TRUNCATED_DATA,
    BIG_ENDIAN_UNSUPPORTED,
    CAMERA_INFO_MISSING,
    CAMERA_INFO_INVALID,
    CAMERA_INFO_SIZE_MISMATCH,
    IMAGE_TOO_LARGE,
    INVALID_FRAME_ID,
    INVALID_TRANSFORM,
    COMPRESSED_EMPTY,
    COMPRESSED_FORMAT_UNKNOWN,
    COMPRESSED_TRUNCATED,
    COMPRESSED_CORRUPT,
)


class ReasonError(Exception):
    """An error with a short stable ``reason`` code (for counting) and a readable ``detail``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"

    def __reduce__(self):
        return (type(self), (self.reason, self.detail))


class InputRejected(ReasonError, ValueError):
    """An input (image or camera_info) was rejected; ``reason`` is one of the module's codes."""
