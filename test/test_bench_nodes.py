"""The node benchmarks' building blocks run (benchmarks/bench_surround.py once broke on a changed
return type without any test noticing)."""

from bore_depth_ros.bench.nodes import bench_fusion


def test_bench_fusion_measures_both_cloud_layouts():
    out = bench_fusion(48, 64, repeats=2)
    assert set(out) == {"xyz", "rgb"}
    for v in out.values():
        assert v["fuse_ms"] > 0 and v["copy_ms"] > 0
    # the same points, 12 vs 16 bytes each
    assert out["rgb"]["bytes"] * 12 == out["xyz"]["bytes"] * 16 > 0
