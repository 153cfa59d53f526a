"""Training recipes that need more than independent labelled views: ``self_supervised``,
``distill`` and ``semi_smd`` (specs: bore-depth.md section 4, surround-models.md section B).

A recipe object owns what the plain recipes do not have: how a batch is sampled from a
`RigDataset` (adjacent frames, whole rigs), the trainable modules besides the depth net (the
PoseNet, saved as ``pose_net.*``), a frozen teacher, and the loss. The trainer calls
``recipe.sample(data, rng, out_hw, aug)`` and ``recipe.loss(batch)`` each step; every random
draw comes from the trainer's numpy generator (or torch's), so resuming stays exact.
``TrainConfig.loss`` holds the weights and options listed in `LOSS_OPTIONS`.

Augmentation choices:
- ``self_supervised``: target and source frames are prepared with generators seeded alike, so they
  get the same zoom-crop, flip and colour jitter (intrinsics follow the crop and the flip).
- ``distill``: no flip (it would swap the border strips the view-relational term compares); zoom
  and colour jitter per view. Teacher and student see the same augmented images.
- ``semi_smd``: colour jitter only (no zoom, no flip: the rig geometry must stay as calibrated), with
  the same jitter factors for every view of the rig and for the previous set, so the spatial and
  temporal photometric terms compare like with like.
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import losses as L
from .dataset import Augment, RigDataset, RigSample, finite_or_nan, normalise, prepare_view
from .geometry import inverse_warp
from .posenet import PoseNet
from .trainer import model_forward

# Weights and options of each recipe's loss, with their defaults (TrainConfig.loss overrides).
LOSS_OPTIONS: dict[str, dict] = {
    "self_supervised": {
        "photometric": 1.0,       # min-reprojection SSIM+L1 with auto-masking
        "smoothness": 1e-3,       # edge-aware smoothness of mean-normalised disparity
        "supervised": 0.0,        # SILog (lambda = 1) where ground truth exists
        "semantic": 0.1,          # semantic distillation vs the teacher's encoder (only with a teacher)
        "semantic_kind": "cosine",
        "automask": True,
        "ssim_window": L.DEFAULT_SSIM_WINDOW,
    },
    "distill": {
        "silog": 1.0, "kl": 1.0, "cross": 1.0, "relational": 1.0,
        "lambda": 0.85,           # SILog lambda of the silog and cross terms
        "relational_stride": 8,   # features pooled to (H/stride, W/stride) before the affinities
        "relational_strip": 0.125,  # border strip width, fraction of the pooled width
        "relational_kind": "mse",
    },
    "semi_smd": {
        "spatial": 1.0, "temporal": 1.0, "lidar": 0.5, "curvature": 0.1,
        "smoothness": 1e-3,
        "lidar_row_step": 4,      # every k-th image row of the ground truth acts as a LiDAR scan line
        "lidar_kind": "silog",
        "lambda": 0.85,
        "curvature_match_spread": False,
        "automask": True,
        "ssim_window": L.DEFAULT_SSIM_WINDOW,
    },
}
RECIPE_NAMES = tuple(LOSS_OPTIONS)
PER_VIEW_INPUTS = {"image", "focal"}


def loss_options(cfg) -> dict:
    """The recipe's defaults updated with ``cfg.loss``."""
    return {**LOSS_OPTIONS[cfg.recipe], **(cfg.loss or {})}


def uses_teacher(cfg) -> bool:
    """Whether the recipe with this config runs a teacher."""
    w = loss_options(cfg)
    if cfg.recipe == "distill":
        return True
    key = {"self_supervised": "semantic", "semi_smd": "curvature"}[cfg.recipe]
    return bool(cfg.teacher) and float(w[key]) > 0


def check_config(cfg) -> None:
    """Raise ValueError for settings the recipe cannot run with (called by TrainConfig.validate)."""
    from ..models import get_model_info

    unknown = sorted(set(cfg.loss or {}) - set(LOSS_OPTIONS[cfg.recipe]))
    if unknown:
        raise ValueError(f"recipe '{cfg.recipe}': unknown loss keys {unknown}; known: "
                         f"{sorted(LOSS_OPTIONS[cfg.recipe])}")
    info = get_model_info(cfg.model)
    if cfg.recipe in ("self_supervised", "distill") and set(info.input_names) - PER_VIEW_INPUTS:
        raise ValueError(f"recipe '{cfg.recipe}' trains a per-view model; {cfg.model} needs "
                         f"{sorted(set(info.input_names) - PER_VIEW_INPUTS)}")
    if cfg.recipe == "distill" and not cfg.teacher:
        raise ValueError("recipe 'distill' needs a teacher model ('teacher: bore_depth', 'teacher_weights')")
    if cfg.teacher:
        t = get_model_info(cfg.teacher)
        if set(t.input_names) - PER_VIEW_INPUTS:
            raise ValueError(f"teacher {cfg.teacher} is not a per-view model (needs {list(t.input_names)})")


def load_teacher(cfg):
    """The frozen teacher (eval mode, no gradients) from ``teacher_weights``, else the model's
    embedded default weights; a teacher without weights is refused."""
    from ..engine import embedded_weights_path
    from ..models import get_model_info, load_checkpoint

    path = cfg.teacher_weights or embedded_weights_path(cfg.teacher)
    if not path:
        raise ValueError(f"teacher {cfg.teacher} has no weights: set 'teacher_weights'")
    teacher = load_checkpoint(str(path), model_name=cfg.teacher).eval()
    teacher.requires_grad_(False)
    return teacher, get_model_info(cfg.teacher)


# ----------------------------------------------------------------------------------- helpers
def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def _focal(k, info) -> float:
    return k.fx / info.canonical_focal if info.canonical_focal else 1.0


def _gt_mask(cfg, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gt with invalid pixels set to 1, valid mask) as in the supervised recipes."""
    mask = torch.isfinite(gt) & (gt > cfg.min_depth) & (gt < cfg.max_depth)
    return torch.where(mask, gt, torch.ones_like(gt)), mask


def _normalise_t(rgb: torch.Tensor, info) -> torch.Tensor:
    mean = torch.tensor(info.mean, dtype=rgb.dtype).reshape(1, 3, 1, 1)
    std = torch.tensor(info.std, dtype=rgb.dtype).reshape(1, 3, 1, 1)
    return (rgb - mean) / std


def _resize(x: torch.Tensor, hw) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(hw) else F.interpolate(
        x, size=tuple(hw), mode="bilinear", align_corners=False)


def _to_grid(x: torch.Tensor, hw) -> torch.Tensor:
    """Average-pool larger maps, bilinearly upsample smaller ones, to ``hw``."""
    if x.shape[-2] >= hw[0] and x.shape[-1] >= hw[1]:
        return F.adaptive_avg_pool2d(x, hw)
    return _resize(x, hw)


@contextlib.contextmanager
def _capture(module: nn.Module, pre: bool = False):
    """Record a module's output (or, with ``pre``, its first input) during the block."""
    store: dict = {}
    if pre:
        handle = module.register_forward_pre_hook(lambda m, args: store.__setitem__("x", args[0]))
    else:
        handle = module.register_forward_hook(lambda m, args, out: store.__setitem__("x", out))
    try:
        yield store
    finally:
        handle.remove()


def _teacher_depth_features(teacher, info, rgb: torch.Tensor, fx: np.ndarray, features: bool):
    """Teacher depth [B,1,h,w] and (if ``features``) decoder-side features, under inference mode.

    Features: ``forward_train()["features"]`` when the teacher has it (svr); else the input of the
    BoRe-Depth decoder's last conv (``decoder.dispconvs[0]``, 16 channels at full resolution); else
    the last encoder level (the caller resizes it). Returned as ordinary tensors (cloned).
    """
    focal = torch.tensor([[f / info.canonical_focal if info.canonical_focal else 1.0] for f in fx],
                         dtype=rgb.dtype)
    inputs = {"image": _normalise_t(rgb, info), "focal": focal}
    args = [inputs[n] for n in info.input_names]
    feat = None
    with torch.inference_mode():
        if hasattr(teacher, "forward_train"):
            out = teacher.forward_train(*args)
            depth, feat = out["depth"], out.get("features")
        else:
            grab = contextlib.nullcontext({})
            if features:
                head = getattr(getattr(teacher, "decoder", None), "dispconvs", None)
                if head is None and not hasattr(teacher, "encoder"):
                    raise ValueError("the relational term needs teacher features (forward_train, "
                                     "decoder.dispconvs or encoder)")
                grab = _capture(head[0], pre=True) if head is not None else _capture(teacher.encoder)
            with grab as store:
                out = teacher(*args)
            depth = out[0] if isinstance(out, (tuple, list)) else out
            feat = store.get("x")
            if isinstance(feat, (list, tuple)):
                feat = feat[-1]
    return depth.clone(), (None if feat is None else feat.clone())


def _next_index(data: RigDataset) -> dict[int, int]:
    nxt = {}
    for i, s in enumerate(data.samples):
        if s.prev is not None:
            nxt[s.prev] = i
    return nxt


def _seeded(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------------- recipes
class Recipe:
    """Base: ``modules`` are the trainable modules saved next to the depth net (name -> module)."""

    def __init__(self, cfg, info, model: nn.Module, teacher=None):
        self.cfg, self.info, self.model = cfg, info, model
        self.w = loss_options(cfg)
        self.modules: dict[str, nn.Module] = {}
        self.teacher = self.teacher_info = None
        if teacher is not None:
            self.teacher, self.teacher_info = teacher
        elif uses_teacher(cfg):
            self.teacher, self.teacher_info = load_teacher(cfg)

    def train(self) -> None:
        for m in self.modules.values():
            m.train()

    def sample(self, data: RigDataset, rng: np.random.Generator, out_hw, aug: Augment | None) -> dict:
        raise NotImplementedError

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def _finish(self, parts: dict) -> tuple[torch.Tensor, dict]:
        if not parts:
            raise ValueError(f"recipe '{self.cfg.recipe}': every loss weight is zero")
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}


class SelfSupervised(Recipe):
    """BoRe-Depth/SC-Depth style monocular self-supervision with a jointly trained PoseNet.

    Batch: ``cfg.batch`` target views (random set with a previous set, random camera); sources are the
    same camera in the previous set and in the next set (the previous one again when there is none,
    which leaves the per-pixel minimum unchanged). Loss: min-reprojection photometric (auto-masked),
    edge-aware smoothness, optional SILog (lambda 1) to ground truth and semantic distillation of
    the depth encoder's five levels against the teacher's encoder.
    """

    def __init__(self, cfg, info, model, teacher=None):
        super().__init__(cfg, info, model, teacher)
        if self.teacher is not None and not hasattr(self.teacher, "encoder"):
            raise ValueError(f"teacher {cfg.teacher} has no .encoder for the semantic term")
        self.pose_net = PoseNet()
        self.modules = {"pose_net": self.pose_net}
        self._index: tuple | None = None

    def sample(self, data, rng, out_hw, aug):
        if self._index is None or self._index[0] is not data:
            targets = [i for i, s in enumerate(data.samples) if s.prev is not None]
            if not targets:
                raise ValueError("self_supervised needs recordings with at least two synchronized sets")
            self._index = (data, targets, _next_index(data))
        _, targets, nxt = self._index
        rgb, gts, ks, src_rgb, src_ks = [], [], [], [[], []], [[], []]
        for _ in range(self.cfg.batch):
            i = targets[int(rng.integers(len(targets)))]
            s = data[i]
            v = int(rng.integers(len(s.images)))
            seed = int(rng.integers(2 ** 63))
            img, k, d, _ = prepare_view(s.images[v], s.intrinsics[v], s.depth_gt[v], out_hw, _seeded(seed), aug)
            rgb.append(img)
            ks.append(k)
            gts.append(finite_or_nan(d, out_hw))
            for j, src in enumerate((data[s.prev], data[nxt.get(i, s.prev)])):
                img, k, _, _ = prepare_view(src.images[v], src.intrinsics[v], None, out_hw, _seeded(seed), aug)
                src_rgb[j].append(img)
                src_ks[j].append(k.matrix())
        info = self.info
        return {
            "rgb": np.stack(rgb).transpose(0, 3, 1, 2).astype(np.float32),
            "image": np.stack([normalise(x, info.mean, info.std) for x in rgb]).astype(np.float32),
            "focal": np.asarray([[_focal(k, info)] for k in ks], np.float32),
            "fx": np.asarray([k.fx for k in ks]),
            "K": np.stack([k.matrix() for k in ks]).astype(np.float32),
            "gt": np.stack(gts)[:, None],
            "src_rgb": np.stack([np.stack(x).transpose(0, 3, 1, 2) for x in src_rgb]).astype(np.float32),
            "src_image": np.stack([np.stack([normalise(y, info.mean, info.std) for y in x])
                                   for x in src_rgb]).astype(np.float32),
            "src_K": np.stack([np.stack(x) for x in src_ks]).astype(np.float32),
        }

    def loss(self, batch):
        w, cfg = self.w, self.cfg
        semantic = self.teacher is not None and float(w["semantic"]) > 0
        with (_capture(self.model.encoder) if semantic else contextlib.nullcontext({})) as store:
            depth, _ = model_forward(self.model, self.info, batch, torch)
        rgb, image, K = _t(batch["rgb"]), _t(batch["image"]), _t(batch["K"])
        src_rgb, src_image, src_K = _t(batch["src_rgb"]), _t(batch["src_image"]), _t(batch["src_K"])
        n_src, b = src_rgb.shape[:2]
        poses = self.pose_net.transform(image.repeat(n_src, 1, 1, 1), src_image.flatten(0, 1))
        poses = poses.reshape(n_src, b, 4, 4)
        warped, valid = zip(*(inverse_warp(src_rgb[s], depth, poses[s], K, src_K[s]) for s in range(n_src)))
        parts = {}
        photo, _ = L.min_reprojection_loss(rgb, list(warped), list(valid), list(src_rgb.unbind(0)),
                                           automask=bool(w["automask"]), window=int(w["ssim_window"]))
        parts["photo"] = float(w["photometric"]) * photo
        if float(w["smoothness"]):
            parts["smooth"] = float(w["smoothness"]) * L.edge_aware_smoothness(1.0 / depth, rgb)
        if float(w["supervised"]):
            gt, mask = _gt_mask(cfg, _t(batch["gt"]))
            parts["silog"] = float(w["supervised"]) * L.silog_loss(depth, gt, mask, lam=1.0)
        if semantic:
            student = store["x"]
            with torch.inference_mode():
                teacher = self.teacher.encoder(_normalise_t(rgb, self.teacher_info))
            teacher = [f.clone() for f in teacher]
            parts["semantic"] = float(w["semantic"]) * L.semantic_distillation_loss(
                student, teacher, kind=str(w["semantic_kind"]))
        return self._finish(parts)


def _rig_batch(info, cur: RigSample, prev: RigSample, out_hw, seed: int | None, aug: Augment | None) -> dict:
    """Whole-rig arrays of one set and its previous set (ring order), every image prepared with a
    generator seeded by ``seed`` (same draws for all; no augmentation when None)."""
    from ..core.rays import rig_inputs

    def prep(s: RigSample, v: int, depth: bool):
        rng = None if seed is None else _seeded(seed)
        return prepare_view(s.images[v], s.intrinsics[v], s.depth_gt[v] if depth else None, out_hw,
                            rng, aug, allow_flip=False)

    n = len(cur.images)
    views = [prep(cur, v, True) for v in range(n)]
    prev_views = [prep(prev, v, False) for v in range(n)]
    ks = [x[1] for x in views]
    out = {
        "rgb": np.stack([x[0] for x in views]).transpose(0, 3, 1, 2),
        "prev_rgb": np.stack([x[0] for x in prev_views]).transpose(0, 3, 1, 2),
        "image": np.stack([normalise(x[0], info.mean, info.std) for x in views]),
        "prev_image": np.stack([normalise(x[0], info.mean, info.std) for x in prev_views]),
        "K": np.stack([k.matrix() for k in ks]),
        "fx": np.asarray([k.fx for k in ks]),
        "gt": np.stack([finite_or_nan(x[2], out_hw) for x in views])[:, None],
        "focal": np.asarray([[_focal(k, info)] for k in ks], np.float32),
    }
    if any(e is None for e in cur.base_from_cam):
        if "rays" in info.input_names or "origins" in info.input_names:
            raise ValueError(f"{cur.source}: /tf_static lacks a camera's extrinsics ({cur.cameras})")
    else:
        out["E"] = np.stack([e.matrix() for e in cur.base_from_cam])
        if "rays" in info.input_names or "origins" in info.input_names:
            geo = rig_inputs(ks, cur.base_from_cam, out_hw, info.canonical_focal or 1.0, info.ray_stride)
            out["rays"], out["origins"] = geo["rays"], geo["origins"]
    if cur.odom_from_base is not None and prev.odom_from_base is not None:
        # base_prev_from_base_cur = odom_from_base(prev)^-1 odom_from_base(cur)
        out["ego"] = (prev.odom_from_base.inverse() @ cur.odom_from_base).matrix()[None]
    return {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in out.items()}


def _stack_rigs(rigs: list[dict]) -> dict:
    keys = set.intersection(*(set(r) for r in rigs))
    return {k: np.concatenate([r[k] for r in rigs]) for k in keys}


class Distill(Recipe):
    """SVR-style distillation of a bin student (forward_train with log_probs, bin_centres, features).

    Batch: max(1, batch // N) random whole rigs. Teacher (frozen, inference mode) depth gives the
    scale-invariant bin assignment at the student's map size. Terms: ``silog`` (student depth vs GT),
    ``kl`` (teacher assignment || student probabilities), ``cross`` (teacher probabilities with
    student centres vs GT), ``relational`` (border-strip affinities of ring-adjacent views, student
    decoder features vs teacher features, both pooled to H/stride x W/stride).
    """

    def __init__(self, cfg, info, model, teacher=None):
        super().__init__(cfg, info, model, teacher)
        if not hasattr(model, "forward_train"):
            raise ValueError(f"recipe 'distill' needs a bin student with forward_train (e.g. svr), not {cfg.model}")

    def sample(self, data, rng, out_hw, aug):
        n = data.num_views
        rigs = []
        for _ in range(max(1, self.cfg.batch // n)):
            s = data[int(rng.integers(len(data)))]
            views = [prepare_view(s.images[v], s.intrinsics[v], s.depth_gt[v], out_hw, rng, aug,
                                  allow_flip=False) for v in range(n)]
            rigs.append({
                "rgb": np.stack([x[0] for x in views]).transpose(0, 3, 1, 2).astype(np.float32),
                "image": np.stack([normalise(x[0], self.info.mean, self.info.std) for x in views]),
                "focal": np.asarray([[_focal(x[1], self.info)] for x in views], np.float32),
                "fx": np.asarray([x[1].fx for x in views]),
                "gt": np.stack([finite_or_nan(x[2], out_hw) for x in views])[:, None],
            })
        batch = _stack_rigs(rigs)
        batch["image"] = batch["image"].astype(np.float32)
        batch["num_views"] = n
        return batch

    def loss(self, batch):
        w, cfg, n = self.w, self.cfg, int(batch["num_views"])
        rgb = _t(batch["rgb"])
        out = self.model.forward_train(_t(batch["image"]), _t(batch["focal"]))
        gt, mask = _gt_mask(cfg, _t(batch["gt"]))
        lam = float(w["lambda"])
        parts = {}
        if float(w["silog"]):
            parts["silog"] = float(w["silog"]) * L.silog_loss(out["depth"], gt, mask, lam=lam)
        relational = float(w["relational"]) > 0
        t_depth, t_feat = _teacher_depth_features(self.teacher, self.teacher_info, rgb, batch["fx"], relational)
        log_probs = out["log_probs"]
        t_probs = L.scale_invariant_bin_assignment(_resize(t_depth, log_probs.shape[-2:]), log_probs.shape[1])
        if float(w["kl"]):
            parts["kl"] = float(w["kl"]) * L.kl_bin_loss(log_probs, t_probs)
        if float(w["cross"]):
            parts["cross"] = float(w["cross"]) * L.cross_bin_loss(t_probs, out["bin_centres"], gt, mask, lam=lam)
        if relational:
            if n < 2:
                raise ValueError("the relational term needs rigs of at least two cameras")
            h, wd = rgb.shape[-2:]
            stride = int(w["relational_stride"])
            grid = (max(1, h // stride), max(1, wd // stride))
            strip = max(1, min(grid[1], int(round(grid[1] * float(w["relational_strip"])))))
            sa, sb = L.ring_neighbour_pairs(_to_grid(out["features"], grid), n)
            ta, tb = L.ring_neighbour_pairs(_to_grid(t_feat, grid), n)
            parts["relational"] = float(w["relational"]) * L.view_relational_loss(
                sa, sb, ta, tb, strip, kind=str(w["relational_kind"]))
        return self._finish(parts)


class SemiSMD(Recipe):
    """Semi-SMD-style semi-supervision on whole rigs and their previous set.

    Batch: max(1, batch // N) random sets that have a previous set; model inputs from the
    (colour-jittered) images, `core.rays.rig_inputs` of the intrinsics and ``base_from_cam``. Terms:
    ``spatial`` (ring neighbours at the same instant, known extrinsics: metric scale),
    ``temporal`` (previous set, ego motion from odometry, per-camera E^-1 T E, auto-masked),
    ``lidar`` (sparse depth loss on every k-th ground-truth row, random phase per step: scan
    lines of a LiDAR), ``curvature`` (against a per-view teacher's depth, when configured),
    ``smoothness``.
    """

    def sample(self, data, rng, out_hw, aug):
        with_prev = [i for i, s in enumerate(data.samples) if s.prev is not None]
        if not with_prev:
            raise ValueError("semi_smd needs recordings with at least two synchronized sets")
        aug = None if aug is None else dataclasses.replace(aug, flip=0.0, zoom=(1.0, 1.0))
        rigs = []
        for _ in range(max(1, self.cfg.batch // data.num_views)):
            s = data[with_prev[int(rng.integers(len(with_prev)))]]
            rigs.append(_rig_batch(self.info, s, data[s.prev], out_hw, int(rng.integers(2 ** 63)), aug))
        batch = _stack_rigs(rigs)
        step = max(1, int(self.w["lidar_row_step"]))
        lidar = np.full_like(batch["gt"], np.nan)
        phase = int(rng.integers(step))
        lidar[:, :, phase::step] = batch["gt"][:, :, phase::step]
        batch["lidar"] = lidar
        batch["num_views"] = data.num_views
        return batch

    def loss(self, batch):
        w, cfg, n = self.w, self.cfg, int(batch["num_views"])
        depth, _ = model_forward(self.model, self.info, batch, torch)
        rgb = _t(batch["rgb"])
        window = int(w["ssim_window"])
        parts = {}
        if float(w["spatial"]):
            if "E" not in batch:
                raise ValueError("the spatial term needs every camera's extrinsics (/tf_static)")
            loss, _ = L.spatial_photometric_loss(rgb, depth, _t(batch["K"]), _t(batch["E"]), num_views=n,
                                                 window=window)
            parts["spatial"] = float(w["spatial"]) * loss
        if float(w["temporal"]):
            if "ego" not in batch or "E" not in batch:
                raise ValueError("the temporal term needs odometry (/tf odom -> base_link) and extrinsics")
            loss, _ = L.temporal_photometric_loss(rgb, [_t(batch["prev_rgb"])], depth, _t(batch["K"]),
                                                  [_t(batch["ego"])], _t(batch["E"]), num_views=n,
                                                  automask=bool(w["automask"]), window=window)
            parts["temporal"] = float(w["temporal"]) * loss
        if float(w["lidar"]):
            lidar, mask = _gt_mask(cfg, _t(batch["lidar"]))
            parts["lidar"] = float(w["lidar"]) * L.sparse_depth_loss(
                depth, lidar, mask, kind=str(w["lidar_kind"]), lam=float(w["lambda"]))
        if self.teacher is not None and float(w["curvature"]):
            t_depth, _ = _teacher_depth_features(self.teacher, self.teacher_info, rgb, batch["fx"], False)
            parts["curvature"] = float(w["curvature"]) * L.curvature_loss(
                depth, _resize(t_depth, depth.shape[-2:]), match_spread=bool(w["curvature_match_spread"]))
        if float(w["smoothness"]):
            parts["smooth"] = float(w["smoothness"]) * L.edge_aware_smoothness(1.0 / depth, rgb)
        return self._finish(parts)


_CLASSES = {"self_supervised": SelfSupervised, "distill": Distill, "semi_smd": SemiSMD}


def build_recipe(cfg, info, model: nn.Module, teacher=None) -> Recipe:
    """The recipe object for ``cfg.recipe``; ``teacher`` = (module, ModelInfo) overrides loading."""
    return _CLASSES[cfg.recipe](cfg, info, model, teacher)


# ----------------------------------------------------------------------------------- checkpoints
def state_with_modules(model: nn.Module, info, modules: dict[str, nn.Module]) -> dict:
    """Depth net under its checkpoint prefix plus each module under ``name.`` (Lightning layout)."""
    sd = {info.checkpoint_prefix + k: v for k, v in model.state_dict().items()}
    for name, m in modules.items():
        sd.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    return sd


def load_state_with_modules(state_dict: dict, model: nn.Module, info, modules: dict[str, nn.Module]) -> None:
    """Inverse of `state_with_modules`, strict for the depth net and every module."""
    from ..models.checkpoint import extract_state_dict, match_state_dict

    rest = dict(state_dict)
    for name, m in modules.items():
        p = name + "."
        m.load_state_dict({k[len(p):]: rest.pop(k) for k in list(rest) if k.startswith(p)}, strict=True)
    weights, prefix = extract_state_dict(rest, info.checkpoint_prefix)
    model.load_state_dict(match_state_dict(model, weights, strict=True, key_prefix=prefix), strict=True)


# ----------------------------------------------------------------------------------- evaluation
def evaluate_rigs(model, info, dataset: RigDataset, cfg) -> dict:
    """`trainer.evaluate_views` for rig models: every set as one batch with its previous set (the set
    itself when it has none), no augmentation; the same metrics."""
    from ..core.metrics import depth_metrics, mean_metrics
    from ..core.resize import resize_bilinear

    rows_metric, rows_median = [], []
    out_hw = (cfg.input_height, cfg.input_width)
    model.eval()
    with torch.inference_mode():
        for s in dataset.samples:
            if all(d is None for d in s.depth_gt):
                continue
            prev = s if s.prev is None else dataset[s.prev]
            batch = _rig_batch(info, s, prev, out_hw, None, None)
            depth, _ = model_forward(model, info, batch, torch)
            for v, gt in enumerate(s.depth_gt):
                if gt is None:
                    continue
                pred = resize_bilinear(depth[v, 0].numpy(), gt.shape[0], gt.shape[1])
                rows_metric.append(depth_metrics(pred, gt, cfg.min_depth, cfg.max_depth))
                rows_median.append(depth_metrics(pred, gt, cfg.min_depth, cfg.max_depth, median_scaling=True))
    model.train()
    return {"views": len(rows_metric), "metric": mean_metrics(rows_metric),
            "median_scaled": mean_metrics(rows_median)}


__all__ = ["RECIPE_NAMES", "LOSS_OPTIONS", "Recipe", "SelfSupervised", "Distill", "SemiSMD", "build_recipe",
           "check_config", "load_teacher", "loss_options", "state_with_modules", "load_state_with_modules",
           "evaluate_rigs"]
