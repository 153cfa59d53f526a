"""What a training run writes: the resumable ``last.ckpt`` and the deployable ``weights.pt``.

``last.ckpt`` holds the depth net under its checkpoint prefix and each extra trainable module of the
recipe under ``<name>.`` (e.g. ``pose_net.``, Lightning layout), the optimiser, the step and every
RNG state, so resuming continues exactly; it loads with ``torch.load(weights_only=True)``.
``weights.pt`` holds the depth net only, in the layout ``models.load_checkpoint`` reads.
Both record the network's architecture options (``model_options``: bins, width, output stride,
...) in their "bore_depth_ros" metadata, so ``load_checkpoint`` (nodes, eval, export, teachers)
rebuilds the same network from the file alone.

With ``ema`` (:class:`ModelEMA`), ``last.ckpt`` also holds the averaged depth net under
``ema_state_dict`` (same prefix as ``state_dict``), and ``weights.pt`` holds the average.

Both are written only when every tensor they would hold is finite (:class:`TrainingDiverged`
otherwise, nothing written), and atomically (:func:`atomic_save`): a good file is replaced by a
complete good file or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or non-finite weights; nothing non-finite was saved."""


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, flushed to disk, then ``os.replace``:
    a crash mid-write leaves the previous file intact (and no half-written file under its name)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def refuse_non_finite(tensors: dict, path: Path, what: str = "NaN or inf") -> None:
    """Raise :class:`TrainingDiverged` naming ``path`` (not touched) when any tensor of ``tensors``
    holds a non-finite value."""
    from ..models.checkpoint import non_finite_keys

    bad = non_finite_keys(tensors)
    if bad:
        count = f"{len(bad)} of {len(tensors)} tensors"
        raise TrainingDiverged(f"{path} not saved: {count} hold {what} (e.g. {bad[0]})")


def _optimiser_tensors(state: dict) -> dict:
    """The optimiser's per-parameter state tensors (Adam moments, ...) under flat names."""
    return {
        f"optimizer.state.{i}.{k}": v
        for i, per_param in state.get("state", {}).items()
        for k, v in per_param.items()
        if isinstance(v, torch.Tensor)
    }


def state_with_modules(model: nn.Module, info, modules: dict[str, nn.Module]) -> dict:
    """Depth net under its checkpoint prefix plus each module under ``name.`` (Lightning layout)."""
    sd = {info.checkpoint_prefix + k: v for k, v in model.state_dict().items()}
    for name, m in modules.items():
        sd.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    return sd


def load_state_with_modules(
    state_dict: dict, model: nn.Module, info, modules: dict[str, nn.Module], label: str = "checkpoint"
) -> None:
    """Inverse of `state_with_modules`, strict for the depth net and every module; NaN or inf in any
    of them is refused first (``models.CheckpointError``)."""
    from ..models.checkpoint import check_finite, extract_state_dict, match_state_dict

    check_finite(state_dict, label)
    rest = dict(state_dict)
    for name, m in modules.items():
        p = name + "."
        m.load_state_dict({k[len(p) :]: rest.pop(k) for k in list(rest) if k.startswith(p)}, strict=True)
    weights, prefix = extract_state_dict(rest, info.checkpoint_prefix, label)
    model.load_state_dict(
        match_state_dict(model, weights, strict=True, key_prefix=prefix, label=label), strict=True
    )


def model_options_of(model: nn.Module) -> dict:
    """The architecture options of ``model`` (its ``model_options()``; {} for models without)."""
    get = getattr(model, "model_options", None)
    return dict(get()) if callable(get) else {}


class ModelEMA:
    """An exponential moving average of a model's parameters (its buffers copied).

    After optimiser step ``k`` (1-based, the global step): p_ema <- d p_ema + (1 - d) p with
    d = min(decay, (1 + k) / (10 + k)), so the first updates follow the model closely and a short
    run is not an average dominated by the initial weights; buffers (batch-norm statistics, ...)
    are copied. ``module`` is a frozen copy of the model in eval mode."""

    def __init__(self, model: nn.Module, decay: float):
        import copy

        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average in ``model`` (the same architecture) after optimiser step ``step``."""
        d = self.decay_at(step)
        mine, theirs = list(self.module.parameters()), [p.detach() for p in model.parameters()]
        if len(mine) != len(theirs):
            raise ValueError(f"EMA of {len(mine)} parameters updated from a model with {len(theirs)}")
        # e + (1 - d)(p - e) = d e + (1 - d) p, all tensors in one call (one launch per group on a GPU)
        torch._foreach_lerp_(mine, theirs, 1.0 - d)
        for e, b in zip(self.module.buffers(), model.buffers(), strict=True):
            e.copy_(b)

    def state_dict(self, info) -> dict:
        return {info.checkpoint_prefix + k: v for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state_dict: dict, info, label: str = "checkpoint") -> None:
        """Strict, NaN and inf refused (``models.CheckpointError``)."""
        from ..models.checkpoint import check_finite, extract_state_dict, match_state_dict

        check_finite(state_dict, label)
        weights, prefix = extract_state_dict(state_dict, info.checkpoint_prefix, label)
        self.module.load_state_dict(
            match_state_dict(self.module, weights, strict=True, key_prefix=prefix, label=label), strict=True
        )


def save_training_state(
    path: Path,
    model: nn.Module,
    optimiser,
    step: int,
    rng: np.random.Generator,
    cfg,
    info,
    modules: dict[str, nn.Module] | None = None,
    ema: ModelEMA | None = None,
) -> None:
    """Everything needed to resume exactly, in a weights_only-loadable file (atomic write).
    Refused (:class:`TrainingDiverged`, ``path`` untouched) when a weight, an averaged weight or an
    optimiser state is not finite."""
    state_dict = state_with_modules(model, info, modules or {})
    optimiser_state = optimiser.state_dict()
    ema_state = ema.state_dict(info) if ema is not None else {}
    refuse_non_finite(
        {
            **state_dict,
            **{"ema." + k: v for k, v in ema_state.items()},
            **_optimiser_tensors(optimiser_state),
        },
        path,
    )
    state = {
        "state_dict": state_dict,
        "optimizer": optimiser_state,
        "global_step": step,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "config": json.dumps(asdict(cfg)),
        "bore_depth_ros": json.dumps({"model": cfg.model, "model_options": model_options_of(model)}),
    }
    if ema is not None:
        state["ema_state_dict"] = ema_state
    atomic_save(state, path)


def save_weights(path: Path, model: nn.Module, info, fp16: bool, meta: dict) -> None:
    """Model weights only, in the layout ``models.load_checkpoint`` reads (fp16 halves the size).
    Refused (:class:`TrainingDiverged`, ``path`` untouched) when a weight is not finite, or does
    not fit in fp16 (beyond +-65504) when ``fp16``. ``meta`` gets the model's ``model_options``
    (unless it has them already)."""
    full = {info.checkpoint_prefix + k: v for k, v in model.state_dict().items()}
    refuse_non_finite(full, path)
    sd = {k: (v.half() if fp16 and v.is_floating_point() else v) for k, v in full.items()}
    if fp16:
        refuse_non_finite(sd, path, "values beyond the fp16 range (save_fp16: false keeps fp32)")
    meta = {**meta, "model_options": meta.get("model_options", model_options_of(model))}
    atomic_save({"state_dict": sd, "bore_depth_ros": json.dumps(meta)}, path)
