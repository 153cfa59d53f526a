"""Model inputs drawn from a `RigDataset`: random independent views, whole rigs with their previous set,
and the forward call that feeds a batch to a model in its argument order (numpy only; torch is passed in).

Shared by the recipes, so all of them prepare images the same way (held-out figures come from
``bore-depth eval``, :mod:`bore_depth_ros.replay.heldout`).
:func:`step_batches` hands the trainer one recipe batch per step, prepared in the training process or
ahead in DataLoader worker processes (``num_workers``), the same batches either way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np

from ..core.preprocess import normalise_into
from .dataset import Augment, RigDataset, RigSample, finite_or_nan, prepare_view

PER_VIEW_INPUTS = frozenset({"image", "focal"})  # inputs of models that take views independently


def seeded(seed: int) -> np.random.Generator:
    """A numpy generator for ``seed`` (views prepared with equal seeds get the same augmentation)."""
    return np.random.default_rng(seed)


def view_focal(k, info) -> float:
    """The model's "focal" input for intrinsics ``k``: fx / canonical focal (1 for relative models)."""
    return k.fx / info.canonical_focal if info.canonical_focal else 1.0


def sample_views(
    dataset: RigDataset,
    n: int,
    rng: np.random.Generator,
    out_hw,
    info,
    aug: Augment | None,
    need_gt: bool = True,
) -> dict[str, np.ndarray]:
    """``n`` random (set, view) pairs as model inputs: image, focal, gt depth (NaN invalid)."""
    images, gts, focal, ks = [], [], [], []
    tries = 0
    while len(images) < n:
        tries += 1
        s = dataset[int(rng.integers(len(dataset)))]
        v = int(rng.integers(len(s.images)))
        if need_gt and s.depth_gt[v] is None:
            if tries > 100 * n:
                raise ValueError("the recordings have no ground-truth depth for this recipe")
            continue
        img, k, d, _ = prepare_view(s.images[v], s.intrinsics[v], s.depth_gt[v], out_hw, rng, aug)
        images.append(normalise_into(img, info.mean, info.std))
        gts.append(finite_or_nan(d, out_hw))
        ks.append(k)
        focal.append([view_focal(k, info)])
    return {
        "image": np.stack(images).astype(np.float32),
        "gt": np.stack(gts)[:, None],
        "focal": np.asarray(focal, np.float32),
        "intrinsics": ks,
    }


def rig_batch(info, cur: RigSample, prev: RigSample, out_hw, seed: int | None, aug: Augment | None) -> dict:
    """Whole-rig arrays of one set and its previous set (ring order), every image prepared with a
    generator seeded by ``seed`` (same draws for all; no augmentation when None)."""
    from ..core.rays import rig_inputs

    def prep(s: RigSample, v: int, depth: bool):
        rng = None if seed is None else seeded(seed)
        return prepare_view(
            s.images[v], s.intrinsics[v], s.depth_gt[v] if depth else None, out_hw, rng, aug, allow_flip=False
        )

    n = len(cur.images)
    views = [prep(cur, v, True) for v in range(n)]
    prev_views = [prep(prev, v, False) for v in range(n)]
    ks = [x[1] for x in views]
    out = {
        "rgb": np.stack([x[0] for x in views]).transpose(0, 3, 1, 2),
        "prev_rgb": np.stack([x[0] for x in prev_views]).transpose(0, 3, 1, 2),
        "image": np.stack([normalise_into(x[0], info.mean, info.std) for x in views]),
        "prev_image": np.stack([normalise_into(x[0], info.mean, info.std) for x in prev_views]),
        "K": np.stack([k.matrix() for k in ks]),
        "fx": np.asarray([k.fx for k in ks]),
        "gt": np.stack([finite_or_nan(x[2], out_hw) for x in views])[:, None],
        "focal": np.asarray([[view_focal(k, info)] for k in ks], np.float32),
    }
    if any(e is None for e in cur.base_from_cam):
        if "rays" in info.input_names or "origins" in info.input_names:
            raise ValueError(f"{cur.source}: /tf_static lacks a camera's extrinsics ({cur.cameras})")
    else:
        out["E"] = np.stack([e.matrix() for e in cur.base_from_cam])
        if "rays" in info.input_names or "origins" in info.input_names:
            geo = rig_inputs(ks, cur.base_from_cam, out_hw, info.canonical_focal or 1.0, info.ray_stride)
            out["rays"], out["origins"] = geo["rays"], geo["origins"]
    if cur.odom_from_base is not None and prev.odom_from_base is not None:
        # base_prev_from_base_cur = odom_from_base(prev)^-1 odom_from_base(cur)
        out["ego"] = (prev.odom_from_base.inverse() @ cur.odom_from_base).matrix()[None]
    return {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in out.items()}


def stack_rigs(rigs: list[dict]) -> dict:
    """One batch of several rig batches: the keys they all have, concatenated along the view axis."""
    keys = set.intersection(*(set(r) for r in rigs))
    return {k: np.concatenate([r[k] for r in rigs]) for k in keys}


def model_forward(model, info, batch: dict, torch):
    """(depth [B,1,h,w], extra) for the batch's inputs in the model's argument order."""
    args = [torch.from_numpy(batch[name]) for name in info.input_names]
    out = model(*args)
    if isinstance(out, (tuple, list)):
        return out[0], out[1:]
    return out, ()


def _step_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63))


class _SeededSampling:
    """``[seed]`` -> the recipe's batch drawn with a generator seeded by ``seed`` (a DataLoader
    dataset: the workers get a copy of the recipe and of the dataset, which opens its bags itself)."""

    def __init__(self, recipe, data, out_hw, aug):
        self.recipe, self.data, self.out_hw, self.aug = recipe, data, out_hw, aug

    def __getitem__(self, seed: int) -> dict:
        return self.recipe.sample(self.data, seeded(int(seed)), self.out_hw, self.aug)


class _Seeds:
    """The step seeds, drawn from a copy of the trainer's generator (an endless sampler)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __iter__(self) -> Iterator[int]:
        while True:
            yield _step_seed(self.rng)


def _as_is(batch):
    return batch


def step_batches(recipe, data, rng: np.random.Generator, out_hw, aug, num_workers: int = 0) -> Iterator[dict]:
    """One batch per training step, endless: step k's batch is ``recipe.sample(data, seeded(s_k), ...)``
    where s_k is the k-th draw of ``rng``, which advances one draw per batch handed out (so a
    checkpoint of ``rng`` resumes the same sequence). ``num_workers`` > 0 prepares the batches ahead
    in that many DataLoader processes (decoding frames there), from a copy of ``rng``: the same
    batches as with 0. Close the generator (``.close()``) to stop the workers."""
    if num_workers <= 0:
        while True:
            yield recipe.sample(data, seeded(_step_seed(rng)), out_hw, aug)
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _SeededSampling(recipe, data, out_hw, aug),
        batch_size=None,
        sampler=_Seeds(copy.deepcopy(rng)),
        num_workers=num_workers,
        collate_fn=_as_is,
        generator=torch.Generator().manual_seed(0),  # leaves the global torch generator alone
    )
    batches = iter(loader)
    try:
        for batch in batches:
            _step_seed(rng)  # the trainer's generator follows the batches handed out
            yield batch
    finally:
        del batches  # shuts the workers down
