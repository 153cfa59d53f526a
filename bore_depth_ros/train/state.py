"""What a training run writes: the resumable ``last.ckpt`` and the deployable ``weights.pt``.

``last.ckpt`` holds the depth net under its checkpoint prefix and each extra trainable module of the
recipe under ``<name>.`` (e.g. ``pose_net.``, Lightning layout), the optimiser, the step and every
RNG state, so resuming continues exactly; it loads with ``torch.load(weights_only=True)``.
``weights.pt`` holds the depth net only, in the layout ``models.load_checkpoint`` reads.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn


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
        m.load_state_dict({k[len(p) :]: rest.pop(k) for k in list(rest) if k.startswith(p)}, strict=True)
    weights, prefix = extract_state_dict(rest, info.checkpoint_prefix)
    model.load_state_dict(match_state_dict(model, weights, strict=True, key_prefix=prefix), strict=True)


def save_training_state(
    path: Path,
    model: nn.Module,
    optimiser,
    step: int,
    rng: np.random.Generator,
    cfg,
    info,
    modules: dict[str, nn.Module] | None = None,
) -> None:
    """Everything needed to resume exactly, in a weights_only-loadable file (atomic write)."""
    state = {
        "state_dict": state_with_modules(model, info, modules or {}),
        "optimizer": optimiser.state_dict(),
        "global_step": step,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "config": json.dumps(asdict(cfg)),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def save_weights(path: Path, model: nn.Module, info, fp16: bool, meta: dict) -> None:
    """Model weights only, in the layout ``models.load_checkpoint`` reads (fp16 halves the size)."""
    sd = {
        info.checkpoint_prefix + k: (v.half() if fp16 and v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": sd, "bore_depth_ros": json.dumps(meta)}, tmp)
    tmp.replace(path)
