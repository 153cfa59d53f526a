"""User files are never replaced without being asked: every command that writes outputs claims
them here first."""

from __future__ import annotations

import shutil
from pathlib import Path


def claim_outputs(paths, force: bool = False, flag: str = "--force") -> None:
    """Make sure the output ``paths`` may be written. Without ``force`` an existing file, or an
    existing non-empty folder, raises FileExistsError naming it and ``flag``; with ``force``
    they are removed first. Nothing is touched before every path has been checked."""
    taken = [Path(p) for p in paths if _taken(Path(p))]
    if taken and not force:
        names = ", ".join(str(p) for p in taken)
        raise FileExistsError(
            f"{names} already exist{'s' if len(taken) == 1 else ''}: choose another "
            f"output or pass {flag} to replace {'it' if len(taken) == 1 else 'them'}"
        )
    for p in taken:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _taken(p: Path) -> bool:
    if p.is_dir() and not p.is_symlink():
        return any(p.iterdir())
    return p.exists() or p.is_symlink()
