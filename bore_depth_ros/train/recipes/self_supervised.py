"""``self_supervised``: BoRe-Depth / SC-Depth style monocular self-supervision with a jointly trained PoseNet
(spec: bore-depth.md section 4).

Augmentation: target and source frames are prepared with generators seeded alike, so they get the
same zoom-crop, flip and colour jitter (intrinsics follow the crop and the flip).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ...core.preprocess import normalise_into
from .. import losses as L
from ..batches import model_forward, seeded, view_focal
from ..dataset import RigDataset, finite_or_nan, prepare_view
from ..geometry import inverse_warp
from ..posenet import PoseNet
from .base import Recipe
from .teacher import capture
from .tensors import as_tensor, gt_and_mask, normalise_tensor


def _next_index(data: RigDataset) -> dict[int, int]:
    nxt = {}
    for i, s in enumerate(data.samples):
        if s.prev is not None:
            nxt[s.prev] = i
    return nxt


class SelfSupervised(Recipe):
    """BoRe-Depth/SC-Depth style monocular self-supervision with a jointly trained PoseNet.

    Batch: ``cfg.batch`` target views (random set with a previous set, random camera); sources are the
    same camera in the previous set and in the next set (the previous one again when there is none,
    which leaves the per-pixel minimum unchanged). Loss: min-reprojection photometric (auto-masked),
    edge-aware smoothness, optional SILog (lambda 1) to ground truth and semantic distillation of
    the depth encoder's five levels against the teacher's encoder.
    """

    name = "self_supervised"
    per_view = True
    teacher_weight = "semantic"
    loss_defaults = {
        "photometric": 1.0,  # min-reprojection SSIM+L1 with auto-masking
        "smoothness": 1e-3,  # edge-aware smoothness of mean-normalised disparity
        "supervised": 0.0,  # SILog (lambda = 1) where ground truth exists
        "semantic": 0.1,  # semantic distillation vs the teacher's encoder (only with a teacher)
        "semantic_kind": "cosine",
        "automask": True,
        "ssim_window": L.DEFAULT_SSIM_WINDOW,
    }

    @classmethod
    def check_config(cls, cfg, info) -> None:
        super().check_config(cfg, info)
        if cfg.labels and float(cls.loss_options(cfg)["semantic"]) > 0:
            raise ValueError(
                "recipe 'self_supervised': its semantic term compares encoder features, which teacher "
                "labels do not hold; drop 'labels' (use teacher + teacher_weights) or set loss.semantic: 0"
            )

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
            seed = int(rng.integers(2**63))
            img, k, d, _ = prepare_view(
                s.images[v], s.intrinsics[v], s.depth_gt[v], out_hw, seeded(seed), aug
            )
            rgb.append(img)
            ks.append(k)
            gts.append(finite_or_nan(d, out_hw))
            for j, src in enumerate((data[s.prev], data[nxt.get(i, s.prev)])):
                img, k, _, _ = prepare_view(src.images[v], src.intrinsics[v], None, out_hw, seeded(seed), aug)
                src_rgb[j].append(img)
                src_ks[j].append(k.matrix())
        info = self.info
        return {
            "rgb": np.stack(rgb).transpose(0, 3, 1, 2).astype(np.float32),
            "image": np.stack([normalise_into(x, info.mean, info.std) for x in rgb]).astype(np.float32),
            "focal": np.asarray([[view_focal(k, info)] for k in ks], np.float32),
            "fx": np.asarray([k.fx for k in ks]),
            "K": np.stack([k.matrix() for k in ks]).astype(np.float32),
            "gt": np.stack(gts)[:, None],
            "src_rgb": np.stack([np.stack(x).transpose(0, 3, 1, 2) for x in src_rgb]).astype(np.float32),
            "src_image": np.stack(
                [np.stack([normalise_into(y, info.mean, info.std) for y in x]) for x in src_rgb]
            ).astype(np.float32),
            "src_K": np.stack([np.stack(x) for x in src_ks]).astype(np.float32),
        }

    def loss(self, batch):
        w, cfg = self.w, self.cfg
        semantic = self.teacher is not None and float(w["semantic"]) > 0
        with capture(self.model.encoder) if semantic else contextlib.nullcontext({}) as store:
            depth, _ = model_forward(self.model, self.info, batch, torch)
        rgb, image, K = as_tensor(batch["rgb"]), as_tensor(batch["image"]), as_tensor(batch["K"])
        src_rgb, src_image, src_K = (
            as_tensor(batch["src_rgb"]),
            as_tensor(batch["src_image"]),
            as_tensor(batch["src_K"]),
        )
        n_src, b = src_rgb.shape[:2]
        poses = self.pose_net.transform(image.repeat(n_src, 1, 1, 1), src_image.flatten(0, 1))
        poses = poses.reshape(n_src, b, 4, 4)
        warped, valid = zip(*(inverse_warp(src_rgb[s], depth, poses[s], K, src_K[s]) for s in range(n_src)))
        parts = {}
        photo, _ = L.min_reprojection_loss(
            rgb,
            list(warped),
            list(valid),
            list(src_rgb.unbind(0)),
            automask=bool(w["automask"]),
            window=int(w["ssim_window"]),
        )
        parts["photo"] = float(w["photometric"]) * photo
        if float(w["smoothness"]):
            parts["smooth"] = float(w["smoothness"]) * L.edge_aware_smoothness(1.0 / depth, rgb)
        if float(w["supervised"]):
            gt, mask = gt_and_mask(cfg, as_tensor(batch["gt"]))
            parts["silog"] = float(w["supervised"]) * L.silog_loss(depth, gt, mask, lam=1.0)
        if semantic:
            student = store["x"]
            with torch.inference_mode():
                teacher = self.teacher.encoder(normalise_tensor(rgb, self.teacher_info))
            teacher = [f.clone() for f in teacher]
            parts["semantic"] = float(w["semantic"]) * L.semantic_distillation_loss(
                student, teacher, kind=str(w["semantic_kind"])
            )
        return self._finish(parts)
