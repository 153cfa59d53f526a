"""CompressedImage decoding: milliseconds per library and size, and the per-frame overhead of
compressed input over raw input on the nodes' path; ratios measured in one run.

tools/env.sh-activated shell:  python benchmarks/bench_decode.py [--repeats 30]

Libraries: simplejpeg (libjpeg-turbo; the package's JPEG decoder), Pillow (the PNG decoder, and
its JPEG path for comparison), OpenCV if installed (not a dependency). The per-frame path is the
mono node's: ``validate_image`` (zero-copy view for raw rgb8, decode for JPEG) then one inference
(``infer_views``) with the embedded default BoRe-Depth weights on ONNX Runtime.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image as PILImage

from bore_depth_ros.bag.messages import BAG
from bore_depth_ros.core import messages as M
from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.compressed import encode_compressed
from bore_depth_ros.core.frame import infer_views
from bore_depth_ros.core.view import ViewConfig, ViewProcessor
from bore_depth_ros.testing.rig_load import rig_picture as street_picture


def _ms(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1e3


def decoders(rgb: np.ndarray, repeats: int) -> dict[str, float]:
    import simplejpeg

    jpg, _ = encode_compressed(rgb, "jpeg", 90)
    png, _ = encode_compressed(rgb, "png")
    out = {
        "jpeg simplejpeg": _ms(lambda: simplejpeg.decode_jpeg(jpg, colorspace="RGB"), repeats),
        "jpeg Pillow": _ms(lambda: np.asarray(PILImage.open(io.BytesIO(jpg)).convert("RGB")), repeats),
        "png Pillow": _ms(lambda: np.asarray(PILImage.open(io.BytesIO(png))), repeats),
    }
    try:
        import cv2

        buf_j, buf_p = np.frombuffer(jpg, np.uint8), np.frombuffer(png, np.uint8)
        out["jpeg OpenCV"] = _ms(lambda: cv2.imdecode(buf_j, cv2.IMREAD_COLOR), repeats)
        out["png OpenCV"] = _ms(lambda: cv2.imdecode(buf_p, cv2.IMREAD_UNCHANGED), repeats)
    except ImportError:
        pass
    return out


def node_path(rgb: np.ndarray, repeats: int) -> tuple[float, float]:
    """ms per frame of the mono node's path for raw rgb8 and for JPEG input."""
    from bore_depth_ros.engine import DepthEngine, EngineConfig

    engine = DepthEngine(EngineConfig(model="bore_depth", backend="onnxruntime"))
    engine.warmup()
    h, w = rgb.shape[:2]
    intr = Intrinsics(0.8 * w, 0.8 * w, (w - 1) / 2, (h - 1) / 2, w, h)
    view = ViewProcessor(ViewConfig(), model_is_metric=False)
    header = BAG.header(1, "cam_optical_frame")
    raw, jpeg = BAG.image(header, rgb, "rgb8"), BAG.compressed_image(header, rgb, "jpeg", 90)

    def frame(msg) -> float:
        t0 = time.perf_counter()
        infer_views(engine, [view], [M.validate_image(msg)], [intr])
        return (time.perf_counter() - t0) * 1e3

    frame(raw), frame(jpeg)
    # interleaved, medians: both inputs see the same machine load
    times = [(frame(raw), frame(jpeg)) for _ in range(repeats)]
    return float(np.median([r for r, _ in times])), float(np.median([j for _, j in times]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    print("decode ms per image (one thread, JPEG quality 90, PNG compress level 1)")
    sizes = [(480, 640), (1080, 1920)]
    rows = {f"{w}x{h}": decoders(street_picture(h, w, seed=1), a.repeats) for h, w in sizes}
    libs = list(next(iter(rows.values())))
    print(f"{'size':>10} " + " ".join(f"{k:>16}" for k in libs))
    for size, r in rows.items():
        print(f"{size:>10} " + " ".join(f"{r[k]:16.2f}" for k in libs))
    raw_ms, jpeg_ms = node_path(street_picture(480, 640, seed=2), max(5, a.repeats // 3))
    print(
        f"\nmono node per-frame path at 640x480 (decode + inference, default weights, ONNX Runtime): "
        f"raw {raw_ms:.1f} ms, JPEG {jpeg_ms:.1f} ms, ratio {jpeg_ms / raw_ms:.3f}"
    )


if __name__ == "__main__":
    main()
