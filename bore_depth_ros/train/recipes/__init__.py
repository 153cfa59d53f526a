"""Training recipes: each one class behind the :class:`~.base.Recipe` interface, all listed here.

``RECIPES`` maps a ``TrainConfig.recipe`` name to its class (this is the one place that lists them;
it does not import the trainer, which only knows the interface). Add a recipe by subclassing
``Recipe`` in a module of this package and listing the class below.
"""

from __future__ import annotations

from .base import Recipe
from .distill import Distill
from .self_supervised import SelfSupervised
from .semi_smd import SemiSMD
from .supervised import SupervisedMetric, SupervisedRelative

RECIPES: dict[str, type[Recipe]] = {
    r.name: r for r in (SupervisedRelative, SupervisedMetric, SelfSupervised, Distill, SemiSMD)
}


def build_recipe(cfg, info, model, teacher=None) -> Recipe:
    """The recipe object for ``cfg.recipe``; ``teacher`` = (module, ModelInfo) overrides loading."""
    return RECIPES[cfg.recipe](cfg, info, model, teacher)


__all__ = [
    "RECIPES",
    "Recipe",
    "build_recipe",
    "SupervisedRelative",
    "SupervisedMetric",
    "SelfSupervised",
    "Distill",
    "SemiSMD",
]
