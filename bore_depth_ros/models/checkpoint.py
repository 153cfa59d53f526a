"""Loading (strictly, without arbitrary unpickling) and writing depth-network checkpoints.

Accepted inputs of `load_checkpoint`:
  (a) an official PyTorch-Lightning checkpoint: {"state_dict": {"depth_net.*", "pose_net.*"}, "epoch",
      "global_step", "pytorch-lightning_version", maybe "hyper_parameters" (argparse.Namespace)};
  (b) a plain state_dict, with or without the model's checkpoint prefix ("depth_net.");
  (c) a dict holding the weights under "model" or "state_dict".
Only the model's own tensors are used: when the prefixed keys are present, every other key
(pose_net.*, training-only) is ignored on purpose. Tensors holding NaN or inf (a diverged training
run) are refused before any other check, so the error says so instead of naming a symptom (NaN never
equals NaN, so shared tensors would look like alias conflicts).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import IO, Any, Union

import torch
from torch import nn

from .registry import create_model, get_model_info

log = logging.getLogger(__name__)

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]

# Checkpoint files may hold these non-tensor objects; everything else is refused by weights-only loading.
SAFE_GLOBALS = [argparse.Namespace]
MAX_LISTED_KEYS = 20
LIGHTNING_VERSION = "1.9.5"


class CheckpointError(Exception):
    """A checkpoint cannot be read, or its tensors do not match the model."""


def _label(path_or_file: PathOrFile) -> str:
    if isinstance(path_or_file, (str, os.PathLike)):
        return os.fspath(path_or_file)
    return str(getattr(path_or_file, "name", "<checkpoint file object>"))


def read_checkpoint_file(path_or_file: PathOrFile) -> Any:
    """torch.load with weights_only=True (plus argparse.Namespace); errors become CheckpointError."""
    label = _label(path_or_file)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path_or_file, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {label} does not exist") from exc
    except IsADirectoryError as exc:
        raise CheckpointError(f"checkpoint {label} is a directory, not a file") from exc
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = _weights_unpickler_detail(text)
        if "Unsupported global" in text or "Unsupported class" in text:
            raise CheckpointError(
                f"{label} contains non-tensor Python objects that are not loaded for safety ({detail}). "
                "If you trust the file, re-save only its weights from a trusted Python session, e.g. "
                "ckpt = torch.load(path, map_location='cpu', weights_only=False); "
                "torch.save({'state_dict': ckpt['state_dict']}, 'weights_only.ckpt')"
            ) from None
        raise CheckpointError(f"{label} is not a readable PyTorch checkpoint: {detail}") from None
    except Exception as exc:  # truncated zip, EOF, garbage bytes: torch raises many different types
        reason = str(exc).split(". ")[0] or type(exc).__name__
        raise CheckpointError(f"{label} is not a readable PyTorch checkpoint: {reason}") from exc


def _weights_unpickler_detail(text: str) -> str:
    match = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    if match:
        return re.sub(r" was not an allowed global.*", "", match.group(1)).strip()
    return text.strip().splitlines()[0] if text.strip() else "unpickling failed"


def non_finite_keys(weights: Mapping[str, Any]) -> list[str]:
    """Keys of the floating-point (or complex) tensors in `weights` that hold a NaN or an inf."""
    return [
        key
        for key, value in weights.items()
        if isinstance(value, torch.Tensor)
        and (value.is_floating_point() or value.is_complex())
        and not bool(torch.isfinite(value).all())
    ]


def check_finite(weights: Mapping[str, Any], label: str = "checkpoint", key_prefix: str = "") -> None:
    """Raise CheckpointError when any tensor of `weights` holds NaN or inf, counting and naming them."""
    bad = non_finite_keys(weights)
    if bad:
        raise CheckpointError(
            f"{label}: {len(bad)} of {len(weights)} tensors contain NaN or inf (e.g. {key_prefix}{bad[0]}): "
            "the file comes from a diverged run (or is damaged) and cannot be used"
        )


def extract_state_dict(checkpoint: Any, prefix: str = "", label: str = "checkpoint") -> tuple[dict, str]:
    """The model's tensors from a loaded checkpoint object, keys without `prefix`.

    Returns (state_dict, prefix_used) where prefix_used is `prefix` if the keys carried it, else "".
    Raises CheckpointError when the file holds no tensor dict, or when a tensor the model would use
    holds NaN or inf (checked before anything is matched against the model).
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{label}: expected a dict of weights, found {type(checkpoint).__name__}")
    weights: Any = checkpoint
    for container in ("state_dict", "model"):
        if isinstance(checkpoint.get(container), Mapping):
            weights = checkpoint[container]
            break
    non_tensor = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        raise CheckpointError(
            f"{label}: no state_dict found; {len(non_tensor)} entries are not tensors: "
            f"{', '.join(map(repr, non_tensor[:MAX_LISTED_KEYS]))}"
        )
    if prefix and any(key.startswith(prefix) for key in weights):
        ignored = sum(1 for key in weights if not key.startswith(prefix))
        if ignored:
            log.debug("%s: ignoring %d tensors outside %r (e.g. pose_net)", label, ignored, prefix)
        used = {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}
        check_finite(used, label, prefix)
        return used, prefix
    check_finite(weights, label)
    return dict(weights), ""


def _alias_groups(model: nn.Module) -> list[list[str]]:
    """state_dict names grouped by the tensor they refer to (shared CPE/CRPE appear under 3 names)."""
    groups: OrderedDict[int, list[str]] = OrderedDict()
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def _listing(title: str, items: list[str]) -> str:
    shown = items[:MAX_LISTED_KEYS]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "".join(f"    {item}\n" for item in shown).rstrip("\n") + more


def match_state_dict(
    model: nn.Module,
    weights: Mapping[str, torch.Tensor],
    strict: bool = True,
    key_prefix: str = "",
    label: str = "checkpoint",
) -> dict[str, torch.Tensor]:
    """Check `weights` against `model` and return a dict ready for `model.load_state_dict`.

    A tensor registered under several names (aliases) counts as present if any of its names is
    present; all present names must hold equal tensors, and the returned dict fills in the rest.
    strict: raise CheckpointError on missing tensors, unexpected keys, shape mismatches or
    conflicting aliases. Non-strict: skip those (with a warning) and return what fits.
    """
    expected = model.state_dict(keep_vars=True)
    unexpected = [key for key in weights if key not in expected]
    shape_errors, missing, alias_errors = [], [], []
    ready: dict[str, torch.Tensor] = {}
    for names in _alias_groups(model):
        want_shape = tuple(expected[names[0]].shape)
        present = [name for name in names if name in weights]
        if not present:
            missing.extend(names)
            continue
        good = []
        for name in present:
            found = tuple(weights[name].shape)
            if found != want_shape:
                shape_errors.append(f"{key_prefix}{name}: expected {list(want_shape)}, found {list(found)}")
            else:
                good.append(name)
        if not good:
            continue
        source = weights[good[0]]
        conflicts = [name for name in good[1:] if not torch.equal(weights[name], source)]
        if conflicts:
            alias_errors.append(
                f"{key_prefix}{good[0]} differs from its alias(es) "
                + ", ".join(key_prefix + name for name in conflicts)
            )
            continue
        for name in names:
            ready[name] = source

    problems = [
        (title, items)
        for title, items in (
            ("missing keys", [key_prefix + key for key in missing]),
            ("unexpected keys", [key_prefix + key for key in unexpected]),
            ("shape mismatches (key: expected, found)", shape_errors),
            ("alias conflicts (shared tensors saved with different values)", alias_errors),
        )
        if items
    ]
    if problems:
        counts = ", ".join(f"{len(items)} {title.split(' (')[0]}" for title, items in problems)
        message = f"{label} does not match model {type(model).__name__}: {counts}\n" + "\n".join(
            _listing(title, items) for title, items in problems
        )
        if strict:
            raise CheckpointError(message)
        log.warning("loading non-strictly; skipped: %s", message)
    return ready


def recorded_metadata(checkpoint: Any) -> dict:
    """What our training wrote next to the weights: the JSON under "bore_depth_ros" (weights.pt:
    model, recipe, steps, input_size, model_options, ...), else the "model_options" of a resumable
    ``last.ckpt``'s saved "config"; {} for other files."""
    if not isinstance(checkpoint, Mapping):
        return {}
    for key, pick in (("bore_depth_ros", None), ("config", "model_options")):
        text = checkpoint.get(key)
        if not isinstance(text, str):
            continue
        try:
            meta = json.loads(text)
        except ValueError:
            continue
        if isinstance(meta, dict):
            if pick is None:
                return meta
            if isinstance(meta.get(pick), dict):
                return {"model": meta.get("model"), "model_options": meta[pick]}
    return {}


def model_options_for(
    checkpoint: Any, model_name: str, options: Mapping[str, Any] | None = None, label: str = "checkpoint"
) -> dict[str, Any]:
    """The architecture options to rebuild the network of `checkpoint` (all of them, defaults filled
    in): those it records (`recorded_metadata`), or `options` when given, which must then agree with
    the recorded ones. CheckpointError when they disagree, when the file holds another registered
    model, or when it records options this version does not know."""
    info = get_model_info(model_name)
    meta = recorded_metadata(checkpoint)
    trained_as = meta.get("model")
    if isinstance(trained_as, str) and trained_as != model_name:
        raise CheckpointError(f"{label} holds weights of model {trained_as!r}, not {model_name!r}")
    recorded = meta.get("model_options")
    try:
        saved = info.resolve_options(recorded if isinstance(recorded, dict) else {})
    except ValueError as exc:
        raise CheckpointError(f"{label}: its recorded {exc}") from None
    if options is None:
        return saved
    wanted = info.resolve_options(options)
    if isinstance(recorded, dict) and wanted != saved:
        diffs = ", ".join(
            f"{k}: {saved[k]!r} in the file, {wanted[k]!r} asked" for k in saved if saved[k] != wanted[k]
        )
        raise CheckpointError(f"{label} was trained with other model_options ({diffs})")
    return wanted


def load_checkpoint(
    path_or_file: PathOrFile,
    model: nn.Module | None = None,
    model_name: str = "bore_depth",
    strict: bool = True,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Load a checkpoint file into `model` (default: a new `create_model(model_name)` with the
    architecture options the file records, see `model_options_for`) and return it in eval mode.

    Reads with weights_only=True (argparse.Namespace allowed); a file holding other pickled objects
    raises CheckpointError with instructions to re-save it. Only keys under the model's
    checkpoint prefix ("depth_net." for bore_depth) are used when present. With strict=True every
    model tensor must be present with the right shape and no unexpected key may remain; the error
    names the missing/unexpected keys and shape mismatches. Weights holding NaN or inf are refused
    first, with an error counting them (a file from a diverged run). Alias keys (the shared CPE/CRPE
    tensors saved under three names) are verified equal to each other; a tensor needs only one of
    its names in the file. `options` (only without `model`): the architecture options the caller
    expects (a training config's `model_options`); a file recording others is refused.
    """
    info = get_model_info(model_name)
    label = _label(path_or_file)
    checkpoint = read_checkpoint_file(path_or_file)
    weights, prefix = extract_state_dict(checkpoint, info.checkpoint_prefix, label)
    if model is None:
        model = create_model(model_name, options=model_options_for(checkpoint, model_name, options, label))
    ready = match_state_dict(model, weights, strict=strict, key_prefix=prefix, label=label)
    model.load_state_dict(ready, strict=strict)
    return model.eval()


# ---------------------------------------------------------------------------------------------------
# Writing checkpoints in the official Lightning layout.


def pose_net_state_shapes() -> OrderedDict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, kind) of the SC-Depth PoseNet: 6-channel ResNet-18 encoder + pose decoder.

    kind is one of conv, bn_weight, bn_bias, bn_mean, bn_var, bn_count, fc_weight, bias.
    Keys have no "pose_net." prefix.
    """
    shapes: OrderedDict[str, tuple[tuple[int, ...], str]] = OrderedDict()

    def batch_norm(prefix: str, channels: int) -> None:
        for suffix, kind in (
            ("weight", "bn_weight"),
            ("bias", "bn_bias"),
            ("running_mean", "bn_mean"),
            ("running_var", "bn_var"),
        ):
            shapes[f"{prefix}.{suffix}"] = ((channels,), kind)
        shapes[f"{prefix}.num_batches_tracked"] = ((), "bn_count")

    enc = "encoder.encoder."
    shapes[enc + "conv1.weight"] = ((64, 6, 7, 7), "conv")
    batch_norm(enc + "bn1", 64)
    in_ch = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"{enc}layer{layer}.{block}"
            shapes[f"{prefix}.conv1.weight"] = ((planes, in_ch, 3, 3), "conv")
            batch_norm(f"{prefix}.bn1", planes)
            shapes[f"{prefix}.conv2.weight"] = ((planes, planes, 3, 3), "conv")
            batch_norm(f"{prefix}.bn2", planes)
            if block == 0 and in_ch != planes:
                shapes[f"{prefix}.downsample.0.weight"] = ((planes, in_ch, 1, 1), "conv")
                batch_norm(f"{prefix}.downsample.1", planes)
            in_ch = planes
    shapes[enc + "fc.weight"] = ((1000, 512), "fc_weight")
    shapes[enc + "fc.bias"] = ((1000,), "bias")
    for name, shape in (
        ("conv_squeeze", (256, 512, 1, 1)),
        ("convs_pose.0", (256, 256, 3, 3)),
        ("convs_pose.1", (256, 256, 3, 3)),
        ("convs_pose.2", (6, 256, 1, 1)),
    ):
        shapes[f"decoder.{name}.weight"] = (shape, "conv")
        shapes[f"decoder.{name}.bias"] = ((shape[0],), "bias")
    return shapes


def generate_pose_net_state(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """Freshly initialised PoseNet tensors (He-normal convs, unit BN), keys without prefix."""
    generator = torch.Generator().manual_seed(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, (shape, kind) in pose_net_state_shapes().items():
        if kind == "conv":
            fan_out = shape[0] * math.prod(shape[2:])
            state[key] = torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_out)
        elif kind == "fc_weight":
            bound = 1.0 / math.sqrt(shape[1])
            state[key] = (torch.rand(shape, generator=generator) * 2 - 1) * bound
        elif kind in ("bn_weight", "bn_var"):
            state[key] = torch.ones(shape)
        elif kind == "bn_count":
            state[key] = torch.zeros(shape, dtype=torch.long)
        else:
            state[key] = torch.zeros(shape)
    return state


def save_lightning_checkpoint(
    model: nn.Module,
    path: PathOrFile,
    pose_net_state: Mapping[str, torch.Tensor] | None = None,
    extra: Mapping[str, Any] | None = None,
    prefix: str = "depth_net.",
) -> None:
    """Write `model` in the official BoRe-Depth Lightning layout.

    state_dict holds `prefix` + model.state_dict() (including alias keys) and "pose_net." + the pose
    tensors (generated with the official shapes when not given). Top level: epoch, global_step,
    pytorch-lightning_version, then `extra` (e.g. {"hyper_parameters": argparse.Namespace(...)}).
    """
    if pose_net_state is None:
        pose_net_state = generate_pose_net_state()
    state_dict: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in model.state_dict().items():
        state_dict[prefix + key] = value
    for key, value in pose_net_state.items():
        state_dict[key if key.startswith("pose_net.") else "pose_net." + key] = value
    checkpoint: dict[str, Any] = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": state_dict,
    }
    checkpoint.update(extra or {})
    torch.save(checkpoint, path)


__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "save_lightning_checkpoint",
    "read_checkpoint_file",
    "recorded_metadata",
    "model_options_for",
    "extract_state_dict",
    "check_finite",
    "non_finite_keys",
    "match_state_dict",
    "pose_net_state_shapes",
    "generate_pose_net_state",
]
