"""Depth networks, their registry and checkpoint loading.

The registry part (`get_model_info`, `list_models`, `register_model`, `ModelInfo`, `ModelOption`,
`check_input_size`) imports no torch, so non-PyTorch backends and preprocessing can use it; the
torch-backed names (`BoReDepthNet`, `SVRStudent`, `SemiSMDNet`, `load_checkpoint`, `CheckpointError`) are
imported on first use. `svr` and `semi_smd` are our designs after the SVR and Semi-SMD papers, not the
official models.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .info import ModelInfo, ModelOption, check_input_size
from .registry import create_model, get_model_info, list_models, register_model

_LAZY = {
    "BoReDepthNet": ".bore_depth",
    "SVRStudent": ".svr",
    "SemiSMDNet": ".semi_smd",
    "load_checkpoint": ".checkpoint",
    "save_lightning_checkpoint": ".checkpoint",
    "CheckpointError": ".checkpoint",
}

if TYPE_CHECKING:
    from .bore_depth import BoReDepthNet
    from .checkpoint import CheckpointError, load_checkpoint, save_lightning_checkpoint
    from .semi_smd import SemiSMDNet
    from .svr import SVRStudent


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "create_model",
    "list_models",
    "get_model_info",
    "ModelInfo",
    "ModelOption",
    "register_model",
    "check_input_size",
    "load_checkpoint",
    "save_lightning_checkpoint",
    "CheckpointError",
    "BoReDepthNet",
    "SVRStudent",
    "SemiSMDNet",
]
