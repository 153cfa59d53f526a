"""Foundation-model teachers: Hugging Face ``transformers`` depth models, found locally, run with our
own preprocessing.

Supported: ``DepthAnythingForDepthEstimation`` checkpoints (Depth Anything V1/V2 Small/Base/Large
and compatible ones, ``model_type: depth_anything``), given as a local folder (``config.json`` and
the weights) or as a hub id resolved from the local Hugging Face cache only: nothing is downloaded
here, and a model that is not there is a one-line error naming the cache folder it would be in.
``transformers`` is imported only when a model is loaded.

Preprocessing (ours, numpy/torch; no processor download): the checkpoint's
``preprocessor_config.json`` when it has one (``size``, ``keep_aspect_ratio``,
``ensure_multiple_of``, ``image_mean``/``image_std``), else Depth Anything's published settings
(518 x 518, keep the aspect ratio, multiple of 14, ImageNet mean/std). The input size rule is the
processor's: per axis the scale size/image, with ``keep_aspect_ratio`` the one of the two nearer to
1 for both axes, each side then rounded to the nearest multiple (at least one multiple). Resizing
is bicubic with antialiasing (torch), clamped to [0, 1].

Output: ``inverse_depth`` [B, h, w] at the input size: the model's relative inverse depth
(``depth_estimation_type: relative``), or 1 / its depth for metric checkpoints, so every label is
an inverse depth.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHITECTURE = "DepthAnythingForDepthEstimation"
MODEL_TYPES = ("depth_anything",)
WEIGHT_SUFFIXES = (".safetensors", ".bin")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def is_hub_id(spec: str) -> bool:
    """``org/name`` (and not an existing path)."""
    return bool(HUB_ID.match(spec)) and not Path(spec).exists()


def is_foundation_spec(spec: str) -> bool:
    """Whether ``spec`` names a foundation-model teacher (a folder, or a hub id), not a registered
    model of the project (the caller checks the registry first)."""
    return bool(spec) and (Path(spec).expanduser().exists() or is_hub_id(spec) or "/" in spec)


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, ``HF_HOME``/hub or ~/.cache/huggingface/hub)."""
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_folder(spec: str, cache_dir: str | Path | None = None) -> Path:
    """The folder holding ``config.json`` and the weights of ``spec`` (a folder, or a hub id in the
    local cache). FileNotFoundError (one line, naming where to put the model) when it is missing."""
    p = Path(spec).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").is_file():
            raise FileNotFoundError(
                f"teacher {spec}: expected a folder with config.json and the weights of a "
                f"{ARCHITECTURE} checkpoint"
            )
        return p
    if not is_hub_id(spec):
        raise FileNotFoundError(f"teacher {spec}: no such folder (a model folder or a hub id org/name)")
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir(cache_dir)
    found = try_to_load_from_cache(spec, "config.json", cache_dir=cache)
    if not isinstance(found, str):
        where = cache / ("models--" + spec.replace("/", "--"))
        raise FileNotFoundError(
            f"teacher {spec} is not in the local Hugging Face cache (looked for {where}); nothing is "
            f"downloaded at run time: put it there (e.g. `hf download {spec}` on a machine with network, "
            f"then copy {where}) or pass a local folder with config.json and the weights"
        )
    return Path(found).parent


def weight_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix in WEIGHT_SUFFIXES and f.is_file())


_HASHES: dict[tuple, str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (cached per path, size and modification time in this process)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def folder_hash(folder: Path) -> str:
    """``sha256:<hex>`` over config.json and the weight files (names and contents): the teacher's
    identity in its labels."""
    files = [folder / "config.json", *weight_files(folder)]
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{file_digest(f)}\n".encode())
    return "sha256:" + h.hexdigest()


def teacher_name(spec: str) -> str:
    """A hub id as given; a folder by its name."""
    return spec if is_hub_id(spec) else Path(spec).expanduser().resolve().name


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int] = (518, 518)
    keep_aspect_ratio: bool = True
    multiple: int = 14
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    normalize: bool = True

    @staticmethod
    def from_folder(folder: Path, patch: int = 14) -> Preprocessing:
        """From ``preprocessor_config.json`` when present, else Depth Anything's defaults."""
        p = folder / "preprocessor_config.json"
        d = Preprocessing(multiple=patch)
        if not p.is_file():
            return d
        try:
            raw = json.loads(p.read_text())
        except ValueError as e:
            raise ValueError(f"{p}: invalid JSON ({e})") from None
        size = raw.get("size") or {}
        if isinstance(size, dict) and "height" in size and "width" in size:
            hw = (int(size["height"]), int(size["width"]))
        elif isinstance(size, dict) and "shortest_edge" in size:
            hw = (int(size["shortest_edge"]),) * 2
        elif isinstance(size, int):
            hw = (size, size)
        else:
            hw = d.size
        return Preprocessing(
            size=hw,
            keep_aspect_ratio=bool(raw.get("keep_aspect_ratio", d.keep_aspect_ratio)),
            multiple=int(raw.get("ensure_multiple_of") or patch),
            mean=tuple(float(v) for v in raw.get("image_mean", d.mean)),
            std=tuple(float(v) for v in raw.get("image_std", d.std)),
            normalize=bool(raw.get("do_normalize", True)),
        )

    def input_size(self, image_hw) -> tuple[int, int]:
        """The model input (h, w) for an image of ``image_hw`` (see the module docstring)."""
        H, W = int(image_hw[0]), int(image_hw[1])
        sh, sw = self.size[0] / H, self.size[1] / W
        if self.keep_aspect_ratio:
            sh = sw = sw if abs(1 - sw) < abs(1 - sh) else sh
        m = self.multiple
        return max(m, int(round(H * sh / m)) * m), max(m, int(round(W * sw / m)) * m)

    def describe(self) -> dict:
        return {
            "size": list(self.size),
            "keep_aspect_ratio": self.keep_aspect_ratio,
            "multiple": self.multiple,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": "bicubic, antialiased",
        }


class FoundationTeacher:
    """A loaded Hugging Face depth model with its preprocessing (labelling interface: ``name``,
    ``kind``, ``hash``, ``input_size``, ``resize``, ``inverse_depth``)."""

    kind = "huggingface"

    def __init__(self, spec: str, folder: Path, model, prep: Preprocessing, metric: bool, device: str):
        self.spec, self.folder, self.model, self.prep = spec, folder, model, prep
        self.metric, self.device = metric, device
        self.name = teacher_name(spec)
        self.hash = folder_hash(folder)
        self.fixed_size: tuple[int, int] | None = None  # set: every image goes in at this size

    @property
    def output(self) -> str:
        return "metric inverse depth (1/m)" if self.metric else "relative inverse depth"

    def input_size(self, image_hw) -> tuple[int, int]:
        return self.fixed_size if self.fixed_size else self.prep.input_size(image_hw)

    def resize(self, rgb: np.ndarray, hw) -> np.ndarray:
        """(h, w, 3) float32 in [0, 1] of an (H, W, 3) uint8 image (bicubic, antialiased)."""
        import torch

        x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
        return self.resize_tensor(x, hw)[0].permute(1, 2, 0).numpy()

    @staticmethod
    def resize_tensor(x, hw):
        """[B, 3, h, w] of [B, 3, H, W] images in [0, 1] (bicubic, antialiased, clamped to [0, 1])."""
        from torch.nn import functional as F

        if tuple(x.shape[-2:]) != tuple(hw):
            x = F.interpolate(x, size=tuple(hw), mode="bicubic", align_corners=False, antialias=True)
        return x.clamp(0.0, 1.0)

    def inverse_depth(self, rgb01, fx=None):
        """[B, h, w] float32 inverse depth of [B, 3, h, w] images in [0, 1] at an input size
        (multiples of the patch size); ``fx`` is unused (the model takes no intrinsics)."""
        import torch

        x = rgb01.to(self.device, torch.float32)
        if self.prep.normalize:
            mean = torch.tensor(self.prep.mean, device=x.device).reshape(1, 3, 1, 1)
            std = torch.tensor(self.prep.std, device=x.device).reshape(1, 3, 1, 1)
            x = (x - mean) / std
        with torch.inference_mode():
            out = self.model(pixel_values=x).predicted_depth
        if out.dim() == 4:
            out = out[:, 0]
        out = out.float()
        if self.metric:
            out = 1.0 / out.clamp_min(1e-6)
        return out.cpu()


def check_config(folder: Path) -> dict:
    """config.json of a supported checkpoint (ValueError naming what it is otherwise)."""
    p = folder / "config.json"
    try:
        cfg = json.loads(p.read_text())
    except ValueError as e:
        raise ValueError(f"{p}: invalid JSON ({e})") from None
    if cfg.get("model_type") not in MODEL_TYPES and ARCHITECTURE not in (cfg.get("architectures") or []):
        raise ValueError(
            f"{p}: a {cfg.get('model_type') or 'unknown'} model; teachers from transformers must be "
            f"{ARCHITECTURE} checkpoints (Depth Anything V1/V2)"
        )
    if not weight_files(folder):
        raise FileNotFoundError(f"{folder}: config.json but no weights (*.safetensors or *.bin)")
    return cfg


def load_foundation_teacher(
    spec: str, cache_dir: str | Path | None = None, device: str = "cpu"
) -> FoundationTeacher:
    """The model of ``spec`` (folder or cached hub id) in eval mode, never downloading anything."""
    folder = resolve_folder(spec, cache_dir)
    cfg = check_config(folder)
    try:
        import transformers
        from transformers import DepthAnythingForDepthEstimation
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ImportError(
            "foundation-model teachers need transformers (pip install 'transformers>=4.45', see "
            "requirements.txt)"
        ) from None
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = DepthAnythingForDepthEstimation.from_pretrained(str(folder), local_files_only=True)
    except OSError as e:
        raise OSError(
            f"teacher {spec}: cannot load {folder} with transformers {transformers.__version__}: {e}"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    model = model.to(device).eval()
    model.requires_grad_(False)
    patch = int(cfg.get("patch_size") or (cfg.get("backbone_config") or {}).get("patch_size") or 14)
    metric = cfg.get("depth_estimation_type", "relative") == "metric"
    return FoundationTeacher(spec, folder, model, Preprocessing.from_folder(folder, patch), metric, device)
