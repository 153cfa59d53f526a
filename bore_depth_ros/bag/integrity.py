"""Integrity of bag files: MCAP CRCs written when a bag is closed and checked when it is read.

MCAP has three CRC32 fields, each 0 when its writer did not compute it: every Chunk record's
``uncompressed_crc`` (over the chunk's records, after decompression), the Data End record's
``data_section_crc`` (every byte from the start of the file up to the Data End record) and the
Footer's ``summary_crc`` (from the summary's first byte through the footer's
``summary_offset_start`` field). ``rosbags`` writes all three as 0, so :func:`seal_mcap` fills
them in once the file is complete.

:func:`check_mcap` is the reader's side. The quick check (what ``open_bag`` does) costs
milliseconds: the closing footer is there (else the file is truncated), the summary matches its
CRC, and every record of the data section fits in it. The chunks themselves are verified as they
are read: ``rosbags`` compares each chunk's CRC when it loads the chunk, and ``open_bag``'s
reader turns a mismatch into a :class:`BagError` naming the file and the chunk's byte offset
(found by a full check). ``full=True`` verifies every chunk and the data section up front (one
more pass over the file). sqlite3 bags have no checksums: :func:`check_sqlite` runs sqlite's
``PRAGMA quick_check`` (page and b-tree structure, one read of the file; a changed byte inside a
message's blob goes unnoticed by it).
"""

from __future__ import annotations

import mmap
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x89MCAP0\r\n"
OP_FOOTER = 0x02
OP_CHUNK = 0x06
OP_DATA_END = 0x0F

_RECORD = struct.Struct("<BQ")  # opcode, content length
_CHUNK = struct.Struct("<QQQI")  # message start and end time, uncompressed size, uncompressed CRC
_CHUNK_CRC_AT = _RECORD.size + 24  # the CRC field, from the start of the chunk record
_FOOTER = struct.Struct("<BQQQI")  # opcode, length (20), summary start, summary offset start, CRC
_FOOTER_LEN = _FOOTER.size + len(MAGIC)  # the footer record and the closing magic
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class BagError(ValueError):
    """A bag that cannot be opened or read (corrupt, truncated, empty, not a rosbag2)."""


@dataclass(frozen=True)
class McapCheck:
    """What :func:`check_mcap` found in one file."""

    path: Path
    chunks: int  # Chunk records in the data section
    chunks_with_crc: int  # of them, those whose writer stored a CRC (0: not computed)
    data_section_crc: bool  # the Data End record holds a CRC
    summary_crc: bool  # the footer holds a CRC (always verified)
    full: bool  # the chunk and data section CRCs were verified too (not only as chunks are read)

    @property
    def sealed(self) -> bool:
        """Every CRC the file can carry is there."""
        return self.chunks_with_crc == self.chunks and self.data_section_crc and self.summary_crc


def _corrupt(path: Path, what: str) -> BagError:
    return BagError(f"{path}: {what}: the file is corrupt")


def _decompress(path: Path, offset: int, compression: str, data) -> bytes:
    try:
        if compression == "zstd":
            try:
                from compression import zstd  # Python 3.14
            except ImportError:
                from backports import zstd
            return zstd.decompress(data)
        if compression == "lz4":
            import lz4.frame

            return lz4.frame.decompress(data)
    except Exception as e:  # noqa: BLE001 - any failure to decompress is a damaged chunk
        raise _corrupt(path, f"chunk at byte {offset} does not decompress ({compression}: {e})") from None
    raise BagError(f"{path}: chunk at byte {offset} uses compression '{compression}', which cannot be read")


@contextmanager
def _mapped(path: Path, write: bool = False) -> Iterator[mmap.mmap]:
    with open(path, "r+b" if write else "rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            raise BagError(f"cannot read bag {path}: the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE if write else mmap.ACCESS_READ) as mm:
            yield mm


@dataclass(frozen=True)
class _Layout:
    data_end: int  # where the data section's records end at the latest (summary or footer start)
    footer: int  # offset of the footer record
    summary_start: int
    summary_crc: int


def _layout(path: Path, mm: mmap.mmap) -> _Layout:
    size = len(mm)
    if mm[: len(MAGIC)] != MAGIC:
        raise BagError(f"cannot read bag {path}: not an MCAP file (it does not start with the MCAP magic)")
    footer = size - _FOOTER_LEN
    op, length, summary_start, summary_offset_start, summary_crc = (
        _FOOTER.unpack_from(mm, footer) if footer >= len(MAGIC) else (0, 0, 0, 0, 0)
    )
    if footer < len(MAGIC) or mm[size - len(MAGIC) :] != MAGIC or op != OP_FOOTER or length != 20:
        raise BagError(
            f"cannot read bag {path}: no MCAP footer at the end of its {size} bytes: the file is truncated"
            " (or its writer did not finish)"
        )
    if not len(MAGIC) <= summary_start <= footer and summary_start != 0:
        raise _corrupt(path, f"the footer's summary offset {summary_start} lies outside the file")
    if not len(MAGIC) <= summary_offset_start <= footer and summary_offset_start != 0:
        raise _corrupt(
            path, f"the footer's summary offset section at {summary_offset_start} lies outside the file"
        )
    return _Layout(summary_start or footer, footer, summary_start, summary_crc)


def _records(path: Path, mm: mmap.mmap, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(offset, opcode, content start, content end) of each record of the data section."""
    pos = len(MAGIC)
    while pos < end:
        if pos + _RECORD.size > end:
            raise _corrupt(path, f"a record header at byte {pos} runs past the end of the data section")
        op, length = _RECORD.unpack_from(mm, pos)
        start = pos + _RECORD.size
        if op == 0 or length > end - start:
            what = "chunk" if op == OP_CHUNK else f"record (opcode 0x{op:02x})"
            raise _corrupt(
                path,
                f"{what} at byte {pos} says it is {length} bytes long, which does not fit the data"
                f" section (it ends at byte {end})",
            )
        yield pos, op, start, start + length
        pos = start + length


def _chunk_crcs(
    path: Path, mm: mmap.mmap, offset: int, start: int, end: int, compute: bool, verify: bool = True
) -> tuple[int, int]:
    """(stored CRC, CRC of the uncompressed records) of the chunk record at ``offset`` (content
    ``start:end``). The records are read only when ``verify`` and the stored CRC is not 0, or when
    ``compute``; otherwise the second value repeats the first (only the layout is checked)."""
    if end - start < _CHUNK.size + 4:
        raise _corrupt(path, f"chunk at byte {offset} is too short ({end - start} bytes)")
    _, _, size, crc = _CHUNK.unpack_from(mm, start)
    pos = start + _CHUNK.size
    (n,) = _U32.unpack_from(mm, pos)
    if n > end - pos - 12:
        raise _corrupt(path, f"chunk at byte {offset} has a compression name of {n} bytes")
    compression = bytes(mm[pos + 4 : pos + 4 + n]).decode("utf-8", "replace")
    pos += 4 + n
    (stored,) = _U64.unpack_from(mm, pos)
    pos += 8
    if stored > end - pos:
        raise _corrupt(path, f"chunk at byte {offset} says it holds {stored} bytes, more than its record")
    if not compression and stored != size:
        raise _corrupt(path, f"chunk at byte {offset} stores {stored} bytes of records, not {size}")
    if not compute and not (verify and crc):
        return crc, crc
    with memoryview(mm)[pos : pos + stored] as data:
        records = data if not compression else _decompress(path, offset, compression, data)
        if len(records) != size:
            raise _corrupt(path, f"chunk at byte {offset} holds {len(records)} bytes of records, not {size}")
        return crc, zlib.crc32(records)


def _crc(mm: mmap.mmap, start: int, end: int) -> int:
    with memoryview(mm)[start:end] as view:
        return zlib.crc32(view)


def check_mcap(path: str | Path, full: bool = False) -> McapCheck:
    """Check an MCAP file: its footer (a truncated file has none), its summary CRC, that every
    record of the data section fits; with ``full`` also every chunk CRC and the data section CRC
    (a CRC of 0 means not computed and is skipped, per the MCAP spec).

    Raises :class:`BagError` naming the file (and the chunk's byte offset) for whatever fails.
    Constant memory: the file is mapped read-only and walked a record at a time.
    """
    path = Path(path)
    with _mapped(path) as mm:
        layout = _layout(path, mm)
        if layout.summary_crc:
            computed = _crc(mm, layout.summary_start or layout.footer, layout.footer + _FOOTER.size - 4)
            if computed != layout.summary_crc:
                raise _corrupt(
                    path,
                    f"the summary at byte {layout.summary_start} fails its CRC check (stored"
                    f" 0x{layout.summary_crc:08x}, computed 0x{computed:08x})",
                )
        chunks = with_crc = 0
        data_crc = False
        for offset, op, start, end in _records(path, mm, layout.data_end):
            if op == OP_CHUNK:
                chunks += 1
                crc, computed = _chunk_crcs(path, mm, offset, start, end, compute=False, verify=full)
                if computed != crc:
                    raise _corrupt(
                        path,
                        f"chunk at byte {offset} fails its CRC check (stored 0x{crc:08x},"
                        f" computed 0x{computed:08x})",
                    )
                with_crc += bool(crc)
            elif op == OP_DATA_END:
                (crc,) = _U32.unpack_from(mm, start) if end - start >= 4 else (0,)
                data_crc = bool(crc)
                if crc and full:
                    computed = _crc(mm, 0, offset)
                    if computed != crc:
                        raise _corrupt(
                            path,
                            f"the data section (bytes 0 to {offset}) fails its CRC check (stored"
                            f" 0x{crc:08x}, computed 0x{computed:08x})",
                        )
                break
        return McapCheck(path, chunks, with_crc, data_crc, bool(layout.summary_crc), full)


def seal_mcap(path: str | Path) -> int:
    """Write the chunk, data section and summary CRCs of a finished MCAP file in place.

    For files whose writer left them 0 (``rosbags``); a CRC already there is checked, not
    rewritten. Returns the number of chunks sealed.
    """
    path = Path(path)
    sealed = 0
    with _mapped(path, write=True) as mm:
        layout = _layout(path, mm)
        for offset, op, start, end in _records(path, mm, layout.data_end):
            if op == OP_CHUNK:
                crc, computed = _chunk_crcs(path, mm, offset, start, end, compute=True)
                if crc and crc != computed:
                    raise _corrupt(path, f"chunk at byte {offset} fails its CRC check while being sealed")
                if not crc:
                    _U32.pack_into(mm, offset + _CHUNK_CRC_AT, computed)
                    sealed += 1
            elif op == OP_DATA_END:
                if end - start >= 4 and not _U32.unpack_from(mm, start)[0]:
                    _U32.pack_into(mm, start, _crc(mm, 0, offset))
                break
        if not layout.summary_crc:
            crc = _crc(mm, layout.summary_start or layout.footer, layout.footer + _FOOTER.size - 4)
            _U32.pack_into(mm, layout.footer + _FOOTER.size - 4, crc)
        mm.flush()
    return sealed


def check_sqlite(path: str | Path) -> None:
    """sqlite's ``PRAGMA quick_check`` on a .db3 file, read-only; BagError naming the file (on one
    line) when it fails or the file is not an SQLite database."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise BagError(f"cannot read bag {path}: not an SQLite database (it lacks sqlite's header)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = [str(r[0]) for r in db.execute("PRAGMA quick_check(3)")]
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise _corrupt(path, f"sqlite cannot read it ({e})") from None
    if rows != ["ok"]:
        report = " ".join(" ".join(rows).split()).replace("*** in database main *** ", "")
        raise _corrupt(path, f"sqlite's quick_check reports: {report}")
