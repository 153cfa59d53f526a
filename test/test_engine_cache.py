"""TensorRT engine cache: the key (every component matters) and reuse/invalidation on disk.

The key takes an explicit TargetInfo (TensorRT version, GPU, compute capability), so the cache logic
is tested for real without TensorRT; only the bytes stored are not a real engine.
"""

import dataclasses
import json

import pytest

from bore_depth_ros.backends.cache_paths import default_engine_dir
from bore_depth_ros.backends.engine_cache import (
    CACHE_FORMAT,
    EngineCache,
    EngineKey,
    TargetInfo,
    file_sha256,
    make_key,
)

ORIN = TargetInfo(trt_version="10.3.0", gpu_name="Orin (nvgpu)", compute_capability="8.7")
SHAPES = {
    "image": (6, 3, 192, 320),
    "prev_image": (6, 3, 192, 320),
    "rays": (6, 3, 6, 10),
    "origins": (6, 3),
    "focal": (6, 1),
}
ENGINE = b"\x00fake serialized engine\xff" * 1000


def key(**changes) -> EngineKey:
    base = dict(
        onnx_sha256="a" * 64,
        trt_version=ORIN.trt_version,
        gpu_name=ORIN.gpu_name,
        compute_capability=ORIN.compute_capability,
        precision="fp16",
        input_shapes=SHAPES,
        batch=6,
    )
    base.update(changes)
    return EngineKey(**base)


def test_same_inputs_same_digest_and_a_readable_stem():
    assert key().digest() == key().digest() and key() == key()
    assert key(input_shapes=tuple(SHAPES.items())) == key()  # mapping and pairs freeze alike
    stem = key().stem()
    assert stem.startswith("fp16_b6_192x320_trt10.3.0_sm87_") and stem.endswith(key().digest()[:16])
    assert EngineKey.from_dict(json.loads(json.dumps(key().to_dict()))) == key()


@pytest.mark.parametrize(
    "change",
    [
        dict(onnx_sha256="b" * 64),
        dict(trt_version="10.7.0"),
        dict(gpu_name="NVIDIA GeForce RTX 4090"),
        dict(compute_capability="8.9"),
        dict(precision="fp32"),
        dict(input_shapes={**SHAPES, "image": (6, 3, 384, 640)}),
        dict(input_shapes={k: SHAPES[k] for k in reversed(SHAPES)}),  # input order
        dict(input_shapes={("img" if k == "image" else k): v for k, v in SHAPES.items()}),  # input name
        dict(batch=12),
    ],
)
def test_every_component_changes_the_digest_and_stem(change):
    changed = key(**change)
    assert changed.digest() != key().digest()
    assert changed.stem() != key().stem()
    assert changed != key()
    assert key().differences(changed)


def test_key_validation():
    with pytest.raises(ValueError, match="batch"):
        key(batch=0)
    with pytest.raises(ValueError, match="trt_version"):
        key(trt_version="")
    with pytest.raises(ValueError, match="input_shapes"):
        key(input_shapes={})


def test_make_key_hashes_the_onnx_content(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"graph v1")
    k1 = make_key(onnx, ORIN, "fp32", {"image": (1, 3, 64, 96)})
    assert k1.onnx_sha256 == file_sha256(onnx) and k1.batch == 1 and k1.trt_version == "10.3.0"
    onnx.write_bytes(b"graph v2")
    assert make_key(onnx, ORIN, "fp32", {"image": (1, 3, 64, 96)}).digest() != k1.digest()


def test_store_then_hit_reuses_the_engine(tmp_path):
    cache = EngineCache(tmp_path)
    assert not cache.check(key()).hit and cache.lookup(key()) is None and cache.load(key()) is None
    path = cache.store(key(), ENGINE, build_seconds=182.5, self_check={"passed": True})
    assert path == tmp_path / f"{key().stem()}.engine"
    hit = cache.check(key())
    assert hit.hit and hit.path == path
    assert cache.lookup(key()) == path and cache.load(key()) == ENGINE
    meta = json.loads(cache.sidecar_path(key()).read_text())
    assert meta["key"] == key().to_dict() and meta["format"] == CACHE_FORMAT
    assert meta["build_seconds"] == 182.5 and meta["self_check"] == {"passed": True}
    assert meta["engine_bytes"] == len(ENGINE)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, f"{key().stem()}.json"]), (
        "no temporary files left behind"
    )


def test_a_tensorrt_upgrade_misses_and_both_engines_coexist(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store(key(), ENGINE)
    upgraded = key(trt_version="10.14.1")
    miss = cache.check(upgraded)
    assert not miss.hit and "no cached engine" in miss.reason
    cache.store(upgraded, ENGINE + b"new")
    assert cache.load(key()) == ENGINE and cache.load(upgraded) == ENGINE + b"new"
    assert len(cache.entries()) == 2 and {e.key for e in cache.entries()} == {key(), upgraded}


def test_sidecar_with_a_different_key_is_a_miss_with_the_reason(tmp_path, caplog):
    cache = EngineCache(tmp_path)
    cache.store(key(), ENGINE)
    sidecar = cache.sidecar_path(key())
    meta = json.loads(sidecar.read_text())
    meta["key"]["gpu_name"] = "Xavier"
    sidecar.write_text(json.dumps(meta))
    result = cache.check(key())
    assert (
        not result.hit and "different engine" in result.reason and "gpu_name: Xavier != Orin" in result.reason
    )
    with caplog.at_level("INFO", logger="bore_depth_ros.backends.engine_cache"):
        assert cache.lookup(key()) is None
    assert "gpu_name: Xavier" in caplog.text


@pytest.mark.parametrize(
    "damage,reason",
    [
        (lambda e, s: e.write_bytes(ENGINE[:-10]), "bytes"),  # truncated
        (lambda e, s: e.write_bytes(b"X" + ENGINE[1:]), "SHA-256"),  # same size, corrupt
        (lambda e, s: e.unlink(), "no cached engine"),
        (lambda e, s: s.unlink(), "no sidecar"),
        (lambda e, s: s.write_text("{not json"), "unreadable"),
        (lambda e, s: s.write_text(json.dumps({"key": {"precision": "fp16"}})), "unreadable"),
    ],
)
def test_damaged_entries_are_misses(tmp_path, damage, reason):
    cache = EngineCache(tmp_path)
    cache.store(key(), ENGINE)
    damage(cache.engine_path(key()), cache.sidecar_path(key()))
    result = cache.check(key())
    assert not result.hit and reason in result.reason, result.reason
    assert cache.load(key()) is None
    cache.store(key(), ENGINE)  # a rebuild repairs the entry
    assert cache.load(key()) == ENGINE


def test_force_rebuild_and_invalidate(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store(key(), ENGINE)
    forced = cache.check(key(), force_rebuild=True)
    assert not forced.hit and "force_rebuild" in forced.reason
    assert cache.load(key(), force_rebuild=True) is None and cache.load(key()) == ENGINE
    assert cache.invalidate(key()) is True
    assert not cache.engine_path(key()).exists() and not cache.sidecar_path(key()).exists()
    assert cache.invalidate(key()) is False and cache.entries() == []


def test_lock_is_reentrant_across_calls_and_default_root(tmp_path, monkeypatch):
    cache = EngineCache(tmp_path / "new")
    for _ in range(2):
        with cache.lock(key()):
            cache.store(key(), ENGINE)
    assert cache.load(key()) == ENGINE
    monkeypatch.setenv("BORE_DEPTH_CACHE", str(tmp_path / "root"))
    assert (
        default_engine_dir() == tmp_path / "root" / "engines" and EngineCache().root == default_engine_dir()
    )


def test_entries_report_unreadable_sidecars(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store(key(), ENGINE)
    (tmp_path / "stray.engine").write_bytes(b"x")
    entries = {e.path.name: e for e in cache.entries()}
    assert entries["stray.engine"].key is None and entries[f"{key().stem()}.engine"].key == key()


def test_onnxruntime_tensorrt_provider_cache_options(tmp_path):
    import onnxruntime

    from bore_depth_ros.backends.onnxruntime_backend import tensorrt_provider_options

    opts = tensorrt_provider_options(1, "fp16", tmp_path)
    assert (
        opts["device_id"] == 1 and opts["trt_engine_cache_enable"] is True and opts["trt_fp16_enable"] is True
    )
    assert opts["trt_engine_cache_path"].startswith(
        str(tmp_path / "ort_trt" / f"ort{onnxruntime.__version__}_trt")
    )
    assert tensorrt_provider_options(None, "fp32", tmp_path)["trt_fp16_enable"] is False
    with pytest.raises(ValueError, match="fp32"):
        tensorrt_provider_options(0, "int8", tmp_path)


def test_key_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        key().precision = "fp32"
