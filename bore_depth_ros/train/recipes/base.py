"""The one interface every training recipe implements; the trainer knows nothing else about recipes.

A recipe is a class with a ``name`` and its ``loss_defaults`` (the weights and options
``TrainConfig.loss`` may override). The trainer builds it as ``Recipe(cfg, info, model)`` and each
step calls ``sample(data, rng, out_hw, aug)`` then ``loss(batch)``; ``modules`` are the trainable
modules besides the depth net (saved in ``last.ckpt`` as ``<name>.*``, never in ``weights.pt``).
Every random draw comes from the trainer's numpy generator (or torch's), so resuming stays exact.
``check_config`` (a classmethod, no model needed) refuses settings the recipe cannot run with.

Teacher labels (``labels: [...]``, ``bore-depth label``): the teacher is a
:class:`~.teacher.LabelTeacher` and is never loaded. ``sample`` is then seen through a
:class:`~.teacher.DrawRecorder`, so the batch's views are known by their (recording, topic,
stamp) keys (``batch["label_views"]``), and ``loss`` hands them to ``teacher_depth_features``. A
recipe that puts ``batch["label_views"]`` itself (with each view's crop window,
``labels.view_window``) sets ``label_views = True``; for the others the labels cover whole images,
so zoom-and-crop and flip augmentation are turned off (colour jitter stays).
"""

from __future__ import annotations

import abc
import dataclasses
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..batches import PER_VIEW_INPUTS
from ..dataset import Augment, RigDataset
from .teacher import DrawRecorder, LabelTeacher, check_labels, drawn_label_views, is_registered, load_teacher


class Recipe(abc.ABC):
    """Base of the recipes: options, teacher, trainable modules; subclasses define sample and loss."""

    name: ClassVar[str]
    loss_defaults: ClassVar[dict[str, Any]]
    per_view: ClassVar[bool] = False  # the model must take views independently (image, focal)
    requires_teacher: ClassVar[bool] = False
    teacher_weight: ClassVar[str | None] = None  # the loss weight whose term uses the teacher (if any)
    label_views: ClassVar[bool] = False  # sample() puts batch["label_views"] (with crop windows) itself

    def __init__(self, cfg, info, model: nn.Module | None, teacher=None):
        """``teacher``: (module, ModelInfo) to use instead of loading ``cfg.teacher``."""
        self.cfg, self.info, self.model = cfg, info, model
        self.w = self.loss_options(cfg)
        self.modules: dict[str, nn.Module] = {}
        self.teacher = self.teacher_info = None
        if teacher is not None:
            self.teacher, self.teacher_info = teacher
        elif self.uses_teacher(cfg):
            self.teacher, self.teacher_info = load_teacher(cfg)
        if isinstance(self.teacher, LabelTeacher):
            self._read_labels()

    def _read_labels(self) -> None:
        """Wrap this recipe's ``sample`` and ``loss`` so that the teacher's depth comes from labels."""
        sample, loss, teacher = self.sample, self.loss, self.teacher

        def sample_with_keys(data, rng, out_hw, aug):
            teacher.check_complete(data)
            if self.label_views:
                return sample(data, rng, out_hw, aug)
            if aug is not None and (tuple(aug.zoom) != (1.0, 1.0) or aug.flip):
                if not getattr(self, "_warned_aug", False):
                    warnings.warn(
                        f"recipe '{self.name}' with labels: zoom-and-crop and flip augmentation are off "
                        "(labels cover whole images and the recipe does not pass its crop windows)",
                        stacklevel=2,
                    )
                    self._warned_aug = True
                aug = dataclasses.replace(aug, zoom=(1.0, 1.0), flip=0.0)
            recorder = DrawRecorder(data)
            batch = sample(recorder, rng, out_hw, aug)
            if "label_views" not in batch:
                rows = len(batch["rgb"] if "rgb" in batch else batch["image"])
                batch["label_views"] = drawn_label_views(recorder, rows, self.name)
            return batch

        def loss_with_keys(batch):
            teacher.current = batch.get("label_views")
            try:
                return loss(batch)
            finally:
                teacher.current = None

        self.sample, self.loss = sample_with_keys, loss_with_keys

    @classmethod
    def loss_options(cls, cfg) -> dict:
        """The recipe's defaults updated with ``cfg.loss``."""
        return {**cls.loss_defaults, **(cfg.loss or {})}

    @classmethod
    def uses_teacher(cls, cfg) -> bool:
        """Whether the recipe with this config uses a teacher (run, or read from its labels)."""
        if cls.requires_teacher:
            return True
        return (
            cls.teacher_weight is not None
            and bool(cfg.teacher)
            and float(cls.loss_options(cfg)[cls.teacher_weight]) > 0
        )

    @classmethod
    def check_config(cls, cfg, info) -> None:
        """Raise ValueError for settings the recipe cannot run with (``info``: the model's ModelInfo)."""
        from ...models import get_model_info

        unknown = sorted(set(cfg.loss or {}) - set(cls.loss_defaults))
        if unknown:
            raise ValueError(
                f"recipe '{cls.name}': unknown loss keys {unknown}; known: {sorted(cls.loss_defaults)}"
            )
        if cls.per_view and set(info.input_names) - PER_VIEW_INPUTS:
            raise ValueError(
                f"recipe '{cls.name}' trains a per-view model; {cfg.model} needs "
                f"{sorted(set(info.input_names) - PER_VIEW_INPUTS)}"
            )
        if cls.requires_teacher and not cfg.teacher:
            raise ValueError(
                f"recipe '{cls.name}' needs a teacher model ('teacher: bore_depth', 'teacher_weights')"
            )
        if cfg.teacher:
            from ..foundation import is_foundation_spec

            if is_registered(cfg.teacher) or not is_foundation_spec(cfg.teacher):
                t = get_model_info(cfg.teacher)  # KeyError naming the registered models
                if set(t.input_names) - PER_VIEW_INPUTS:
                    raise ValueError(
                        f"teacher {cfg.teacher} is not a per-view model (needs {list(t.input_names)})"
                    )
        if getattr(cfg, "labels", None):
            if not cls.uses_teacher(cfg):
                raise ValueError(
                    f"labels {', '.join(map(str, cfg.labels))} given, but recipe '{cls.name}' with this "
                    "config uses no teacher (set teacher and its loss weight, or remove labels)"
                )
            check_labels(cfg)

    def train(self) -> None:
        """Put the recipe's own trainable modules in training mode (after loading a checkpoint)."""
        for m in self.modules.values():
            m.train()

    @abc.abstractmethod
    def sample(self, data: RigDataset, rng: np.random.Generator, out_hw, aug: Augment | None) -> dict:
        """One training batch (numpy arrays) drawn from ``data`` with ``rng``."""

    @abc.abstractmethod
    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """(total loss, ``{term: float}``) of the model on ``batch``."""

    def _finish(self, parts: dict) -> tuple[torch.Tensor, dict]:
        if not parts:
            raise ValueError(f"recipe '{self.name}': every loss weight is zero")
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}
