"""On-disk cache of TensorRT engines, keyed by everything an engine depends on (pure Python, no TensorRT).

An engine only runs on the TensorRT version and GPU that built it and only computes the ONNX graph,
precision and input shapes it was built for, so :class:`EngineKey` holds exactly those facts. A cache
entry is ``<stem>.engine`` plus a ``<stem>.json`` sidecar (the full key, engine size and SHA-256,
build time, self-check report); both are written atomically, the sidecar last. A lookup hits only if
the sidecar's key equals the wanted key and the engine file matches the recorded size and hash;
anything else is a miss whose reason is logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .cache_paths import default_engine_dir

log = logging.getLogger(__name__)

# Bump when build_engine's flags change in a way the key cannot see: old entries then miss.
CACHE_FORMAT = 1
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class TargetInfo:
    """The build target: TensorRT version, GPU name and CUDA compute capability ("8.7" on Orin)."""

    trt_version: str
    gpu_name: str
    compute_capability: str


def _freeze_shapes(shapes: Mapping[str, Sequence[int]] | Sequence) -> tuple[tuple[str, tuple[int, ...]], ...]:
    items = shapes.items() if isinstance(shapes, Mapping) else shapes
    frozen = tuple((str(n), tuple(int(d) for d in s)) for n, s in items)
    if not frozen or any(not n or not s for n, s in frozen):
        raise ValueError(f"input_shapes must name at least one input with a non-empty shape, got {shapes!r}")
    return frozen


@dataclasses.dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on; two engines are interchangeable iff their keys are equal.

    ``input_shapes``: every named input with its static shape, in the model's argument order (a mapping
    is accepted and frozen). ``batch``: views per call (the first dimension of the inputs).
    """

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...]
    batch: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shapes", _freeze_shapes(self.input_shapes))
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive int, got {self.batch!r}")
        for f in ("onnx_sha256", "trt_version", "gpu_name", "compute_capability", "precision"):
            if not isinstance(getattr(self, f), str) or not getattr(self, f):
                raise ValueError(f"EngineKey.{f} must be a non-empty string, got {getattr(self, f)!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (input shapes as ``{name: [dims]}``, order kept)."""
        d = dataclasses.asdict(self)
        d["input_shapes"] = {n: list(s) for n, s in self.input_shapes}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EngineKey:
        """Inverse of :meth:`to_dict`; raises KeyError/TypeError/ValueError on a malformed dict."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(d) != fields:
            raise ValueError(f"engine key fields {sorted(d)} differ from {sorted(fields)}")
        return cls(**{k: d[k] for k in fields})

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the key (input order kept) and :data:`CACHE_FORMAT`."""
        d = dataclasses.asdict(self)
        d["input_shapes"] = [[n, list(s)] for n, s in self.input_shapes]
        text = json.dumps({"format": CACHE_FORMAT, "key": d}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def stem(self) -> str:
        """Readable, unique file stem, e.g. ``fp16_b6_192x320_trt10.3.0_sm87_<16 hex>``."""
        shape = self.input_shapes[0][1]
        hw = "x".join(str(d) for d in shape[2:]) or "x".join(str(d) for d in shape)
        sm = self.compute_capability.replace(".", "")
        text = f"{self.precision}_b{self.batch}_{hw}_trt{self.trt_version}_sm{sm}"
        return f"{re.sub(r'[^A-Za-z0-9_.-]+', '', text)}_{self.digest()[:16]}"

    def differences(self, other: EngineKey) -> list[str]:
        """``["trt_version: 10.3.0 != 10.7.0", ...]`` for every field that differs."""
        a, b = self.to_dict(), other.to_dict()
        return [
            f"{f.name}: {a[f.name]} != {b[f.name]}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]  # tuples: input order counts


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def make_key(
    onnx_path: str | os.PathLike,
    target: TargetInfo,
    precision: str,
    input_shapes: Mapping[str, Sequence[int]],
    batch: int | None = None,
) -> EngineKey:
    """The key of an engine built from ``onnx_path`` on ``target`` (batch defaults to the first input's N)."""
    shapes = _freeze_shapes(input_shapes)
    return EngineKey(
        onnx_sha256=file_sha256(onnx_path),
        trt_version=target.trt_version,
        gpu_name=target.gpu_name,
        compute_capability=target.compute_capability,
        precision=precision,
        input_shapes=shapes,
        batch=int(shapes[0][1][0]) if batch is None else batch,
    )


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and ``os.replace`` it into place (mode 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@dataclasses.dataclass(frozen=True)
class CacheLookup:
    """Result of :meth:`EngineCache.check`: ``hit``, the engine path (whether or not it exists) and why."""

    hit: bool
    path: Path
    reason: str


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One cached engine as listed by :meth:`EngineCache.entries` (``key`` is None if the sidecar is
    unreadable)."""

    path: Path
    key: EngineKey | None
    sidecar: dict[str, Any]


class EngineCache:
    """Engines under ``root`` (default :func:`default_engine_dir`) as ``<stem>.engine`` + ``<stem>.json``."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_engine_dir()

    def engine_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.stem()}.engine"

    def sidecar_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.stem()}.json"

    def _read_sidecar(self, key: EngineKey) -> tuple[dict[str, Any] | None, str]:
        path = self.sidecar_path(key)
        if not path.is_file():
            return None, f"no sidecar {path.name}"
        try:
            meta = json.loads(path.read_text())
            cached = EngineKey.from_dict(meta["key"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            return None, f"sidecar {path.name} is unreadable ({type(e).__name__}: {e})"
        if cached != key:
            return (
                None,
                f"sidecar {path.name} describes a different engine ({'; '.join(cached.differences(key))})",
            )
        return meta, ""

    def _verify(self, key: EngineKey, force_rebuild: bool, read: bool) -> tuple[CacheLookup, bytes | None]:
        path = self.engine_path(key)
        if force_rebuild:
            return CacheLookup(False, path, "force_rebuild requested"), None
        if not path.is_file():
            return CacheLookup(False, path, f"no cached engine {path.name}"), None
        meta, reason = self._read_sidecar(key)
        if meta is None:
            return CacheLookup(False, path, reason), None
        data = path.read_bytes() if read else None
        size = len(data) if data is not None else path.stat().st_size
        if size != meta.get("engine_bytes"):
            return CacheLookup(
                False,
                path,
                f"engine file {path.name} has {size} bytes, sidecar says "
                f"{meta.get('engine_bytes')} (truncated or replaced)",
            ), None
        digest = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(path)
        if digest != meta.get("engine_sha256"):
            return CacheLookup(
                False, path, f"engine file {path.name} does not match its recorded SHA-256 (corrupt)"
            ), None
        return CacheLookup(True, path, "cached engine matches the key"), data

    def check(self, key: EngineKey, force_rebuild: bool = False) -> CacheLookup:
        """Whether a valid engine for ``key`` is cached, and the reason if not (the engine is hashed)."""
        return self._verify(key, force_rebuild, read=False)[0]

    def lookup(self, key: EngineKey, force_rebuild: bool = False) -> Path | None:
        """Path of the valid cached engine for ``key``, else None (the miss reason is logged)."""
        result = self.check(key, force_rebuild)
        self._log(result)
        return result.path if result.hit else None

    def load(self, key: EngineKey, force_rebuild: bool = False) -> bytes | None:
        """The verified engine bytes for ``key``, else None (the miss reason is logged)."""
        result, data = self._verify(key, force_rebuild, read=True)
        self._log(result)
        return data

    @staticmethod
    def _log(result: CacheLookup) -> None:
        if result.hit:
            log.info("reusing TensorRT engine %s", result.path)
        else:
            log.info("TensorRT engine cache miss for %s: %s", result.path.name, result.reason)

    def store(
        self,
        key: EngineKey,
        engine: bytes,
        *,
        build_seconds: float | None = None,
        self_check: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the engine, then its sidecar (both atomically); returns the engine path."""
        path = self.engine_path(key)
        atomic_write(path, engine)
        meta = {
            "format": CACHE_FORMAT,
            "digest": key.digest(),
            "key": key.to_dict(),
            "engine_file": path.name,
            "engine_bytes": len(engine),
            "engine_sha256": hashlib.sha256(engine).hexdigest(),
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": build_seconds,
            "self_check": dict(self_check) if self_check is not None else None,
        }
        atomic_write(self.sidecar_path(key), (json.dumps(meta, indent=2) + "\n").encode())
        log.info("cached TensorRT engine %s (%.1f MB)", path, len(engine) / 1e6)
        return path

    def invalidate(self, key: EngineKey) -> bool:
        """Delete the entry for ``key`` (engine and sidecar); True if anything was removed."""
        removed = False
        for p in (self.sidecar_path(key), self.engine_path(key)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed = True
        return removed

    def entries(self) -> list[CacheEntry]:
        """Every ``*.engine`` under ``root`` with its sidecar (if readable), sorted by name."""
        out = []
        for path in sorted(self.root.glob("*.engine")) if self.root.is_dir() else []:
            meta: dict[str, Any] = {}
            key = None
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                meta = json.loads(path.with_suffix(".json").read_text())
                key = EngineKey.from_dict(meta["key"])
            out.append(CacheEntry(path, key, meta))
        return out

    @contextlib.contextmanager
    def lock(self, key: EngineKey) -> Iterator[None]:
        """Exclusive inter-process lock for building ``key`` (so two nodes starting together build once)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key.stem()}.lock", "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
