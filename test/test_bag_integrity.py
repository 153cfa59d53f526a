"""Integrity of bags: the project's MCAP files carry real CRCs, and damage is a one-line BagError.

Real files throughout: a small pybullet recording written by BagWriter, damaged on disk (4 KiB of
garbage inside a chunk, a cut in the middle of a chunk), read back with open_bag, rosbags' own
reader and the ``bore-depth eval`` / ``play`` commands. The test walks the MCAP records itself
(its own few lines, not the package's) to know where the chunks are and what their CRCs must be.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import zlib

import pytest
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer

from bore_depth_ros.bag.integrity import check_mcap, seal_mcap
from bore_depth_ros.bag.messages import TYPESTORE
from bore_depth_ros.bag.reader import BagError, FrameSync, discover_cameras, open_bag
from bore_depth_ros.sim.recording import RecordingConfig, record
from harness import entry_point

SMALL = dict(frames=3, width=96, height=64)  # about 2 MB: two chunks (rosbags closes one at 1 MiB)
FOOTER = 37  # footer record (1 + 8 + 20 bytes) and the closing magic


def mcap_layout(data: bytes):
    """([(chunk offset, record length, stored CRC, its records)], (Data End offset, its CRC),
    (summary start, footer CRC)) read straight from the bytes of an uncompressed MCAP file."""
    summary_start, _, summary_crc = struct.unpack_from("<QQI", data, len(data) - FOOTER + 9)
    chunks, pos = [], 8
    while True:
        op, length = struct.unpack_from("<BQ", data, pos)
        body = pos + 9
        if op == 0x06:
            crc = struct.unpack_from("<I", data, body + 24)[0]
            (n,) = struct.unpack_from("<I", data, body + 28)
            assert data[body + 32 : body + 32 + n] == b""  # BagWriter's chunks are not compressed
            (size,) = struct.unpack_from("<Q", data, body + 32 + n)
            records = data[body + 40 + n : body + 40 + n + size]
            chunks.append((pos, 9 + length, crc, records))
        elif op == 0x0F:
            return chunks, (pos, struct.unpack_from("<I", data, body)[0]), (summary_start, summary_crc)
        pos = body + length


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("integrity") / "bag"
    record(path, RecordingConfig(**SMALL), progress=False)
    return path


def copy_of(bag, dst):
    shutil.copytree(bag, dst)
    return dst, next(dst.glob("*.mcap"))


def damage_chunk(mcap, which: int) -> int:
    """Overwrite 4 KiB inside chunk ``which`` (its records, past the header) with garbage; its offset."""
    data = bytearray(mcap.read_bytes())
    offset, length, _, _ = mcap_layout(bytes(data))[0][which]
    assert length > 5000 + 4096
    data[offset + 5000 : offset + 5000 + 4096] = random.Random(which).randbytes(4096)
    mcap.write_bytes(bytes(data))
    return offset


def read_everything(path, **kwargs) -> int:
    """Frames FrameSync yields from the bag (every message read and the camera ones decoded)."""
    with open_bag(path, **kwargs) as reader:
        return sum(1 for _ in FrameSync(reader, discover_cameras(reader)))


def test_written_mcap_bags_carry_correct_crcs(bag):
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    chunks, (data_end, data_crc), (summary_start, summary_crc) = mcap_layout(data)
    assert len(chunks) >= 2
    for _, _, crc, records in chunks:
        assert crc != 0 and crc == zlib.crc32(records)
    assert data_crc != 0 and data_crc == zlib.crc32(data[:data_end])
    # the footer's CRC covers the summary through the footer's summary_offset_start field
    assert summary_crc != 0 and summary_crc == zlib.crc32(data[summary_start : len(data) - FOOTER + 25])

    check = check_mcap(mcap, full=True)
    assert check.sealed and check.full and check.chunks == len(chunks)
    # rosbags' own reader compares every non-zero chunk CRC as it loads the chunk
    with Reader(bag) as reader:
        assert sum(1 for _ in reader.messages()) == reader.message_count > 0
    with open_bag(bag) as reader:
        assert [c.sealed for c in reader.integrity] == [True]
    assert read_everything(bag) == SMALL["frames"] * 6


@pytest.mark.parametrize("which", [0, -1], ids=["first_chunk", "last_chunk"])
def test_garbage_inside_a_chunk_is_an_error_naming_the_file_and_the_chunk(bag, tmp_path, which):
    path, mcap = copy_of(bag, tmp_path / "bag")
    offset = damage_chunk(mcap, which)
    expected = f"{mcap}: chunk at byte {offset} fails its CRC check (stored 0x"
    # open_bag's quick check passes (footer, summary, record layout intact); the chunk fails its
    # CRC as it is read, before any of its messages is used
    with pytest.raises(BagError) as err:
        read_everything(path)
    assert str(err.value).startswith(expected) and str(err.value).endswith("the file is corrupt")
    assert "\n" not in str(err.value)
    # a full check finds it before reading, for the bag folder and for the bare file alike
    for p in (path, mcap):
        with pytest.raises(BagError) as err:
            read_everything(p, full_check=True)
        assert str(err.value).startswith(expected)


def test_a_bag_cut_in_the_middle_of_a_chunk_is_a_one_line_error(bag, tmp_path):
    path, mcap = copy_of(bag, tmp_path / "bag")
    data = mcap.read_bytes()
    offset, length, _, _ = mcap_layout(data)[0][-1]
    mcap.write_bytes(data[: offset + length // 2])
    for p in (path, mcap):
        with pytest.raises(BagError) as err:
            read_everything(p)
        msg = str(err.value)
        assert str(mcap) in msg and "truncated" in msg and "\n" not in msg, msg


def test_a_bag_without_crcs_is_read_as_before_and_sealing_it_gives_the_written_file(bag, tmp_path):
    path, mcap = copy_of(bag, tmp_path / "bag")
    sealed = mcap.read_bytes()
    data = bytearray(sealed)
    chunks, (data_end, _), _ = mcap_layout(sealed)
    for offset, _, _, _ in chunks:
        struct.pack_into("<I", data, offset + 9 + 24, 0)
    struct.pack_into("<I", data, data_end + 9, 0)
    struct.pack_into("<I", data, len(data) - FOOTER + 25, 0)
    mcap.write_bytes(bytes(data))  # what rosbags writes: every CRC 0, "not computed"

    with open_bag(path, full_check=True) as reader:
        (check,) = reader.integrity
        assert (check.chunks, check.chunks_with_crc, check.sealed) == (len(chunks), 0, False)
    assert read_everything(path) == SMALL["frames"] * 6
    assert seal_mcap(mcap) == len(chunks)
    assert mcap.read_bytes() == sealed


def test_compressed_chunks_are_sealed_and_checked_over_their_uncompressed_records(tmp_path):
    string = TYPESTORE.types["std_msgs/msg/String"]
    writer = Writer(tmp_path / "zstd", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)  # rosbags' own writer
    with writer:
        conn = writer.add_connection("/text", string.__msgtype__, typestore=TYPESTORE)
        for i in range(2500):  # two chunks
            writer.write(conn, i, bytes(TYPESTORE.serialize_cdr(string(f"{i:0500d}"), string.__msgtype__)))
    (mcap,) = (tmp_path / "zstd").glob("*.mcap")
    assert check_mcap(mcap).chunks_with_crc == 0
    assert seal_mcap(mcap) == 2
    assert check_mcap(mcap, full=True).sealed
    with open_bag(mcap) as reader:  # rosbags decompresses and compares the CRCs too
        assert sum(1 for _ in reader.messages()) == 2500


def test_sqlite_bags_are_checked_by_sqlite(tmp_path):
    path = tmp_path / "bag"
    record(path, RecordingConfig(rig="mono", storage="sqlite3", **SMALL), progress=False)
    (db,) = path.glob("*.db3")
    with open_bag(path) as reader:  # PRAGMA quick_check passes
        assert reader.integrity == []  # no MCAP files: nothing with CRCs
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError) as err:
        read_everything(path)
    assert str(db) in str(err.value) and "the file is corrupt" in str(err.value)
    assert "\n" not in str(err.value)


def test_eval_and_play_of_a_bag_with_a_damaged_chunk_are_one_line_errors(bag, tmp_path):
    path, mcap = copy_of(bag, tmp_path / "bag")
    damage_chunk(mcap, -1)  # the last chunk: eval has evaluated frames by the time it is read
    for args in (
        ["eval", str(path), "--out", str(tmp_path / "report"), "--no-progress"],
        ["play", str(path), "--no-progress"],
    ):
        proc = subprocess.run([entry_point("bore-depth"), *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"bore-depth {args[0]}: error: {mcap}: chunk at byte "), proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
