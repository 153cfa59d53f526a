"""The frozen teacher of the distilling recipes: loading it, and reading its depth and features.

A teacher is a registered model of the project (``teacher: bore_depth`` / ``svr``, with
``teacher_weights`` or the embedded default weights), a Hugging Face depth model
(``train/foundation.py``: a folder or a cached hub id), or, with ``labels: [...]`` in the config,
its stored predictions (``train/labels.py``, written by ``bore-depth label``): then the teacher is
never loaded nor run, and :func:`teacher_depth_features` reads the labels of the views the batch
holds. The same module resolves a teacher for labelling (:func:`open_labelling_teacher`) and says
which teacher a config asks for (:func:`teacher_identity`), so labels and configs are compared the
same way.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..foundation import FoundationTeacher
from .tensors import normalise_tensor, resize_to

LABEL_FEATURE_BINS = 32  # with labels or a foundation teacher: features = soft depth-bin assignment


def is_registered(name: str) -> bool:
    from ...models import list_models

    return name in list_models()


def _registered_weights(name: str, weights: str) -> str | None:
    from ...engine import embedded_weights_path

    path = weights or embedded_weights_path(name)
    return str(path) if path else None


def registered_hash(name: str, weights_path: str) -> str:
    """``sha256:<hex>`` over a registered model's name and its weights file's sha256."""
    from ..foundation import file_digest

    digest = file_digest(Path(weights_path))
    return "sha256:" + hashlib.sha256(f"registered\0{name}\0{digest}".encode()).hexdigest()


def teacher_identity(teacher: str, teacher_weights: str = "") -> tuple[str, str, str | None]:
    """(name, kind, hash) of the teacher a config names, without loading it; the hash is None when
    its files are not on this machine (labels are then compared by name)."""
    from .. import foundation

    if is_registered(teacher):
        path = _registered_weights(teacher, teacher_weights)
        ok = path is not None and Path(path).is_file()
        return teacher, "registered", registered_hash(teacher, path) if ok else None
    try:
        folder = foundation.resolve_folder(teacher)
        digest = foundation.folder_hash(folder) if foundation.weight_files(folder) else None
    except OSError:
        digest = None
    return foundation.teacher_name(teacher), "huggingface", digest


def load_teacher(cfg):
    """The frozen teacher of ``cfg`` and its ModelInfo (None for the others): with ``cfg.labels``
    a :class:`LabelTeacher` (nothing loaded), a registered model (eval mode, no gradients) from
    ``teacher_weights``, else the model's embedded default weights (a teacher without weights is
    refused), or a Hugging Face model (:class:`~..foundation.FoundationTeacher`)."""
    from ...models import get_model_info, load_checkpoint

    if getattr(cfg, "labels", None):
        from ..labels import Labels

        return LabelTeacher(Labels(cfg.labels)), None
    if not is_registered(cfg.teacher):
        from ..foundation import load_foundation_teacher

        return load_foundation_teacher(cfg.teacher), None
    path = _registered_weights(cfg.teacher, cfg.teacher_weights)
    if not path:
        raise ValueError(f"teacher {cfg.teacher} has no weights: set 'teacher_weights'")
    teacher = load_checkpoint(str(path), model_name=cfg.teacher).eval()
    teacher.requires_grad_(False)
    return teacher, get_model_info(cfg.teacher)


def check_labels(cfg) -> None:
    """ValueError unless ``cfg.labels`` come from the teacher the config names (by hash where its
    files are here, else by name) and, for a registered teacher, were made at the training input
    size (the size at which training would run it)."""
    from ..labels import Labels

    labels = Labels(cfg.labels)
    name, kind, digest = teacher_identity(cfg.teacher, cfg.teacher_weights)
    labels.check_teacher(name, kind, digest)
    if kind == "registered":
        labels.check_size((cfg.input_height, cfg.input_width))


class LabelTeacher:
    """Stored teacher predictions standing in for the teacher (``labels: [...]``).

    ``current``: the :class:`~..labels.LabelView` list of the batch being trained (set by
    ``Recipe`` around ``loss``, from ``batch["label_views"]``)."""

    def __init__(self, labels):
        self.labels = labels
        self.current: list | None = None
        self._checked: set[int] = set()

    def check_complete(self, data) -> None:
        """Once per dataset: every view of every set has a label (ValueError naming one that has not)."""
        if id(data) not in self._checked:
            self.labels.check_complete(data.samples)
            self._checked.add(id(data))


class DrawRecorder:
    """A dataset seen through ``data[i]``: records the sets a recipe's ``sample`` draws."""

    def __init__(self, data):
        self._data = data
        self.drawn: list[int] = []

    def __getitem__(self, i):
        self.drawn.append(int(i))
        return self._data[i]

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name):
        return getattr(self._data, name)


def drawn_label_views(recorder: DrawRecorder, num_rows: int, recipe: str) -> list:
    """The LabelViews (whole images) of a batch of ``num_rows`` views drawn through ``recorder``:
    every drawn set's views in order, or, when each set was followed by its previous set (temporal
    recipes), the first of each pair. ValueError when neither matches the batch."""
    from ..labels import LabelView

    data, idx = recorder._data, recorder.drawn
    sets = data.samples  # light: source, topics, stamps, prev
    n = data.num_views
    if len(idx) * n == num_rows:
        used = idx
    elif len(idx) * n == 2 * num_rows and all(sets[idx[k]].prev == idx[k + 1] for k in range(0, len(idx), 2)):
        used = idx[0::2]
    else:
        raise ValueError(
            f"recipe '{recipe}': cannot tell which recorded views its batch of {num_rows} holds "
            f"({len(idx)} sets of {n} views drawn); the recipe must put batch['label_views'] itself"
        )
    views = []
    for i in used:
        s = sets[i]
        views += [LabelView(s.source, t, st) for t, st in zip(s.topics, s.stamps)]
    return views


class RegisteredTeacher:
    """A registered model as a labelling teacher (``bore-depth label --teacher bore_depth``): runs
    at one fixed input size, labels are 1 / its depth."""

    kind = "registered"

    def __init__(self, name: str, weights: str, size=None):
        from ...engine import EngineConfig, resolve_input_size
        from ...models import check_input_size, get_model_info
        from ..batches import PER_VIEW_INPUTS

        info = get_model_info(name)
        if set(info.input_names) - PER_VIEW_INPUTS:
            raise ValueError(f"teacher {name} is not a per-view model (needs {list(info.input_names)})")
        path = _registered_weights(name, weights)
        if not path:
            raise ValueError(f"teacher {name} has no weights: pass --teacher-weights")
        self.size = tuple(size) if size else resolve_input_size(EngineConfig(model=name, weights=path))
        check_input_size(*self.size)
        self.module, self.info = load_teacher(_TeacherSpec(name, path))
        self.name, self.weights = name, path
        self.hash = registered_hash(name, path)
        self.output = "metric inverse depth (1/m)" if info.metric else "relative inverse depth"

    def input_size(self, image_hw) -> tuple[int, int]:
        return self.size

    def resize(self, rgb: np.ndarray, hw) -> np.ndarray:
        from ...core.preprocess import resize_unit

        return resize_unit(rgb, int(hw[0]), int(hw[1]))

    def inverse_depth(self, rgb01: torch.Tensor, fx) -> torch.Tensor:
        depth, _ = teacher_depth_features(self.module, self.info, rgb01, np.asarray(fx), False)
        return 1.0 / depth[:, 0].float().clamp_min(1e-6)


class _TeacherSpec:
    def __init__(self, teacher: str, teacher_weights: str):
        self.teacher, self.teacher_weights, self.labels = teacher, teacher_weights, []


def open_labelling_teacher(spec: str, weights: str = "", size=None, device: str = "cpu"):
    """The teacher ``bore-depth label`` runs: a registered model (``weights`` or its embedded
    default; ``size`` (h, w) or the size the weights were trained at) or a Hugging Face model
    (``size`` (h, w), multiples of its patch size, or its processor's size rule per image)."""
    if is_registered(spec):
        if device != "cpu":
            raise ValueError(f"registered teachers run on the CPU here, not {device}")
        return RegisteredTeacher(spec, weights, size)
    from ..foundation import is_foundation_spec, load_foundation_teacher

    if not is_foundation_spec(spec):
        from ...models import list_models

        raise ValueError(
            f"unknown teacher {spec!r}: a registered model ({', '.join(list_models())}), a Hugging Face "
            "model folder or a hub id (org/name) in the local cache"
        )
    if weights:
        raise ValueError("--teacher-weights is for registered teachers; a Hugging Face model has its own")
    teacher = load_foundation_teacher(spec, device=device)
    if size:
        m = teacher.prep.multiple
        if size[0] % m or size[1] % m:
            raise ValueError(f"teacher {spec}: input size must be multiples of {m}, got {size[0]}x{size[1]}")
        teacher.fixed_size = (int(size[0]), int(size[1]))
    return teacher


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


def teacher_depth_features(
    teacher, info, rgb: torch.Tensor, fx: np.ndarray, features: bool, views: list | None = None
):
    """Teacher depth [B,1,h,w] and (if ``features``) decoder-side features, under inference mode.

    Features: ``forward_train()["features"]`` when the teacher has it (svr); else the input of the
    BoRe-Depth decoder's last conv (``decoder.dispconvs[0]``, 16 channels at full resolution); else
    the last encoder level (the caller resizes it). Returned as ordinary tensors (cloned).

    Labels (:class:`LabelTeacher`): the stored inverse depth of ``views`` (LabelViews, one per
    row of ``rgb``; default: ``teacher.current``, set by the recipe base from the batch), cropped
    and resized to ``rgb``'s size, as depth; a Hugging Face teacher runs at its own input size
    for ``rgb``'s size and is resized back. Both have no features: ``features`` gives the soft
    assignment of the depth to LABEL_FEATURE_BINS scale-invariant log-depth bins (a bin
    distribution, which the view-relational term compares like features).
    """
    if isinstance(teacher, LabelTeacher):
        views = teacher.current if views is None else views
        if views is None or len(views) != rgb.shape[0]:
            raise ValueError(
                f"teacher labels need the label keys of the batch's {rgb.shape[0]} views "
                f"(got {None if views is None else len(views)})"
            )
        depth = teacher.labels.depth(views, rgb.shape[-2:])
        return depth, (_bin_features(depth) if features else None)
    if isinstance(teacher, FoundationTeacher):
        from ..labels import inverse_to_depth

        hw = teacher.input_size(rgb.shape[-2:])
        inv = teacher.inverse_depth(teacher.resize_tensor(rgb.float(), hw))[:, None]
        depth = inverse_to_depth(resize_to(inv, rgb.shape[-2:]))
        return depth, (_bin_features(depth) if features else None)
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


def _bin_features(depth: torch.Tensor) -> torch.Tensor:
    from .. import losses as L

    return L.scale_invariant_bin_assignment(depth, LABEL_FEATURE_BINS)
