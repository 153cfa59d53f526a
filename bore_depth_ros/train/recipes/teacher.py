"""The frozen teacher of the distilling recipes: loading it, and reading its depth and features."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from .tensors import normalise_tensor


def load_teacher(cfg):
    """The frozen teacher (eval mode, no gradients) from ``teacher_weights``, else the model's
    embedded default weights; a teacher without weights is refused. Returns (module, ModelInfo)."""
    from ...engine import embedded_weights_path
    from ...models import get_model_info, load_checkpoint

    path = cfg.teacher_weights or embedded_weights_path(cfg.teacher)
    if not path:
        raise ValueError(f"teacher {cfg.teacher} has no weights: set 'teacher_weights'")
    teacher = load_checkpoint(str(path), model_name=cfg.teacher).eval()
    teacher.requires_grad_(False)
    return teacher, get_model_info(cfg.teacher)


@contextlib.contextmanager
def capture(module: nn.Module, pre: bool = False):
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


def teacher_depth_features(teacher, info, rgb: torch.Tensor, fx: np.ndarray, features: bool):
    """Teacher depth [B,1,h,w] and (if ``features``) decoder-side features, under inference mode.

    Features: ``forward_train()["features"]`` when the teacher has it (svr); else the input of the
    BoRe-Depth decoder's last conv (``decoder.dispconvs[0]``, 16 channels at full resolution); else
    the last encoder level (the caller resizes it). Returned as ordinary tensors (cloned).
    """
    focal = torch.tensor(
        [[f / info.canonical_focal if info.canonical_focal else 1.0] for f in fx], dtype=rgb.dtype
    )
    inputs = {"image": normalise_tensor(rgb, info), "focal": focal}
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
                    raise ValueError(
                        "the relational term needs teacher features (forward_train, "
                        "decoder.dispconvs or encoder)"
                    )
                grab = capture(head[0], pre=True) if head is not None else capture(teacher.encoder)
            with grab as store:
                out = teacher(*args)
            depth = out[0] if isinstance(out, (tuple, list)) else out
            feat = store.get("x")
            if isinstance(feat, (list, tuple)):
                feat = feat[-1]
    return depth.clone(), (None if feat is None else feat.clone())
