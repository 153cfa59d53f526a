"""Argument types of the ``bore-depth`` commands: bad values end as one argparse line
(``bore-depth <cmd>: error: argument --frames: must be > 0, got -3``, exit 2) before any work.

Each type takes the command-line text (or an already parsed value, for :func:`check`, which
applies them to arguments another module declared).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UsageError


def _number(kind, text, what: str):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got '{text}'") from None


def positive_int(text) -> int:
    v = _number(int, text, "a positive integer")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def non_negative_int(text) -> int:
    v = _number(int, text, "an integer >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_float(text) -> float:
    v = _number(float, text, "a number > 0")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {v}")
    return v


def non_negative_float(text) -> float:
    v = _number(float, text, "a number >= 0")
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {v}")
    return v


def size(text) -> tuple[int, int]:
    """``HxW``, both positive."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x320, got '{text}'") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be two positive numbers HxW, got '{text}'")
    return h, w


def model_name(text) -> str:
    """A registered model (the registry imports no torch)."""
    from ..models import list_models

    known = list_models()
    if text not in known:
        raise argparse.ArgumentTypeError(f"unknown model '{text}' (registered: {', '.join(known)})")
    return text


def folder(text) -> str:
    """An output folder: may not exist yet, but may not be a file."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text


def new_path(text) -> str:
    """An output that is created whole (a bag): nothing may be there yet."""
    if Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text} exists; choose a new output path")
    return text


def check(args: argparse.Namespace, positional=(), **types) -> None:
    """Apply argument types to already parsed values (``check(args, frames=positive_int)``), for
    arguments declared outside ``cli/``; a bad value raises UsageError worded like argparse's
    (``positional`` names the arguments that are not ``--options``)."""
    for dest, kind in types.items():
        try:
            kind(getattr(args, dest))
        except argparse.ArgumentTypeError as e:
            name = dest if dest in positional else f"--{dest.replace('_', '-')}"
            raise UsageError(f"argument {name}: {e}") from None
