"""``bore-depth train CONFIG.yaml``: train or distil a registered model on rosbag2 recordings.

A YAML config names the model, the recordings, the recipe (which losses), the input size,
optimisation settings and an output folder. The trainer writes ``last.ckpt`` every
``checkpoint_every`` steps (model, optimiser, step and every RNG state: resuming continues
exactly), ``weights.pt`` (fp16 or fp32 model weights in the layout ``load_checkpoint`` reads), and
at the end a metrics card (``card.md`` + ``card.json``) from a held-out recording.

Recipes (the losses live in ``train/losses.py``):
- ``supervised_relative``: views as independent images; scale-invariant log loss (SILog with
  lambda = 1, i.e. the spread of log(pred/gt)) plus edge-aware smoothness: for relative-depth
  models (BoRe-Depth), evaluated median-scaled.
- ``supervised_metric``: SILog (lambda 0.85) on metric depth (SVR-style student with ground truth).
- ``self_supervised``: BoRe-Depth style: photometric SSIM+L1 with min-reprojection and
  auto-masking between adjacent frames through a pose network, edge-aware smoothness; optional
  supervised SILog term where ground truth exists (``loss.supervised``).
- ``distill``: SVR-style: SILog to ground truth, KL from a teacher's scale-invariant bin assignment,
  the cross term (teacher probabilities with student bin centres), and view-relational affinity
  matching across ring-adjacent views. The teacher is any model the package can run.
- ``semi_smd``: Semi-SMD style on whole rigs and their previous set: spatial (ring neighbours) and
  temporal (odometry ego motion) photometric terms, sparse "LiDAR" rows of the ground truth, and a
  curvature term against an optional teacher.
The last three live in ``train/recipes.py``; their extra trainable modules (the PoseNet) are saved
in ``last.ckpt`` under ``pose_net.*`` next to the depth net, never in ``weights.pt``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .dataset import Augment, RigDataset, finite_or_nan, normalise, prepare_view

RECIPES = ("supervised_relative", "supervised_metric", "self_supervised", "distill", "semi_smd")


@dataclass
class TrainConfig:
    model: str = "bore_depth"
    recipe: str = "supervised_relative"
    train: list[str] = field(default_factory=list)         # rosbag2 recordings
    val: list[str] = field(default_factory=list)           # held-out recordings for the card
    out_dir: str = "train_output"
    init_weights: str = ""                                  # start from these weights
    teacher: str = ""                                       # teacher model name (train/recipes.py)
    teacher_weights: str = ""
    input_height: int = 128
    input_width: int = 224
    batch: int = 4                                          # views per step
    steps: int = 1000
    lr: float = 2e-4
    lr_final: float = 2e-5                                  # cosine decay to this
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 0                                        # torch threads (0 = default)
    checkpoint_every: int = 200
    log_every: int = 20
    max_minutes: float = 0.0                                # stop (and checkpoint) after this
    min_depth: float = 0.5                                  # metres: metrics and valid GT range
    max_depth: float = 80.0
    save_fp16: bool = True
    resume: bool = True
    augment: dict = field(default_factory=dict)             # Augment fields
    loss: dict = field(default_factory=dict)                # recipe loss weights
    val_max_sets: int = 0

    @staticmethod
    def from_yaml(path: str | Path) -> "TrainConfig":
        import yaml

        raw = yaml.safe_load(Path(path).read_text()) or {}
        known = set(TrainConfig.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
        cfg = TrainConfig(**raw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        from ..models import check_input_size, get_model_info

        get_model_info(self.model)
        check_input_size(self.input_height, self.input_width)
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe '{self.recipe}', known: {', '.join(RECIPES)}")
        if not self.train:
            raise ValueError("no training recordings ('train: [bag, ...]')")
        if self.steps < 1 or self.batch < 1 or self.lr <= 0:
            raise ValueError("steps, batch and lr must be positive")
        extra = set(get_model_info(self.model).input_names) - {"image", "focal"}
        if extra and self.recipe in ("supervised_relative", "supervised_metric"):
            raise ValueError(f"recipe '{self.recipe}' trains views independently; model "
                             f"{self.model} also needs {sorted(extra)} (a rig recipe)")
        if self.recipe not in ("supervised_relative", "supervised_metric"):
            from .recipes import check_config

            check_config(self)


# ----------------------------------------------------------------------------------- batches
def sample_views(dataset: RigDataset, n: int, rng: np.random.Generator, out_hw, info,
                 aug: Augment | None, need_gt: bool = True) -> dict[str, np.ndarray]:
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
        images.append(normalise(img, info.mean, info.std))
        gts.append(finite_or_nan(d, out_hw))
        ks.append(k)
        focal.append([k.fx / info.canonical_focal] if info.canonical_focal else [1.0])
    return {"image": np.stack(images).astype(np.float32), "gt": np.stack(gts)[:, None],
            "focal": np.asarray(focal, np.float32), "intrinsics": ks}


def model_forward(model, info, batch: dict, torch):
    """(depth [B,1,h,w], extra) for the batch's inputs in the model's argument order."""
    args = [torch.from_numpy(batch[name]) for name in info.input_names]
    out = model(*args)
    if isinstance(out, (tuple, list)):
        return out[0], out[1:]
    return out, ()


# ----------------------------------------------------------------------------------- losses
def recipe_loss(cfg: TrainConfig, info, depth, batch: dict, torch) -> tuple[object, dict]:
    from . import losses as L

    gt = torch.from_numpy(batch["gt"])
    mask = torch.isfinite(gt) & (gt > cfg.min_depth) & (gt < cfg.max_depth)
    gt = torch.where(mask, gt, torch.ones_like(gt))
    w = cfg.loss
    parts = {}
    if cfg.recipe == "supervised_relative":
        parts["silog"] = L.silog_loss(depth, gt, mask, lam=float(w.get("lambda", 1.0)))
        if w.get("smoothness", 0.0):
            img = torch.from_numpy(batch["image"])
            parts["smooth"] = float(w["smoothness"]) * L.edge_aware_smoothness(1.0 / depth, img)
    elif cfg.recipe == "supervised_metric":
        parts["silog"] = L.silog_loss(depth, gt, mask, lam=float(w.get("lambda", 0.85)))
        if w.get("l1_log", 0.0):
            diff = (torch.log(depth) - torch.log(gt)).abs()
            parts["l1_log"] = float(w["l1_log"]) * (diff * mask).sum() / mask.sum().clamp(min=1)
    else:
        raise NotImplementedError(
            f"recipe '{cfg.recipe}' needs adjacent frames / a teacher: its loss is "
            f"train.recipes.build_recipe(cfg, info, model).loss(batch)")
    total = sum(parts.values())
    return total, {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in parts.items()}


# ----------------------------------------------------------------------------------- state
def _lr_at(cfg: TrainConfig, step: int) -> float:
    a = min(step / max(cfg.steps, 1), 1.0)
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * a))


def save_training_state(path: Path, model, optimiser, step: int, rng: np.random.Generator,
                        cfg: TrainConfig, info, torch) -> None:
    """Everything needed to resume exactly, in a weights_only-loadable file (atomic write)."""
    _write_training_state(path, model, optimiser, step, rng, cfg, info, torch, {})


def _write_training_state(path: Path, model, optimiser, step, rng, cfg, info, torch, modules) -> None:
    """`save_training_state` plus each extra trainable module under ``name.*`` (e.g. pose_net)."""
    if modules:
        from .recipes import state_with_modules

        sd = state_with_modules(model, info, modules)
    else:
        sd = {info.checkpoint_prefix + k: v for k, v in model.state_dict().items()}
    state = {
        "state_dict": sd,
        "optimizer": optimiser.state_dict(),
        "global_step": step,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "config": json.dumps(asdict(cfg)),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def save_weights(path: Path, model, info, fp16: bool, meta: dict, torch) -> None:
    """Model weights only, in the layout ``models.load_checkpoint`` reads (fp16 halves the size)."""
    sd = {info.checkpoint_prefix + k: (v.half() if fp16 and v.is_floating_point() else v)
          for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": sd, "bore_depth_ros": json.dumps(meta)}, tmp)
    tmp.replace(path)


# ----------------------------------------------------------------------------------- evaluation
def evaluate_views(model, info, dataset: RigDataset, cfg: TrainConfig, torch) -> dict:
    """Metrics of every view of ``dataset`` at the model input size, upsampled to the ground
    truth's resolution: metric and median-scaled means (the same metric code as ``eval``)."""
    from ..core.metrics import depth_metrics, mean_metrics
    from ..core.resize import resize_bilinear

    if set(info.input_names) - {"image", "focal"}:
        from .recipes import evaluate_rigs

        return evaluate_rigs(model, info, dataset, cfg)
    rows_metric, rows_median = [], []
    model.eval()
    with torch.inference_mode():
        for s in dataset.samples:
            for v in range(len(s.images)):
                if s.depth_gt[v] is None:
                    continue
                img, k, _, _ = prepare_view(s.images[v], s.intrinsics[v], None,
                                            (cfg.input_height, cfg.input_width), None, None)
                batch = {"image": normalise(img, info.mean, info.std)[None].astype(np.float32),
                         "focal": np.asarray([[k.fx / info.canonical_focal]
                                              if info.canonical_focal else [1.0]], np.float32)}
                depth, _ = model_forward(model, info, batch, torch)
                gt = s.depth_gt[v]
                pred = resize_bilinear(depth[0, 0].numpy(), gt.shape[0], gt.shape[1])
                rows_metric.append(depth_metrics(pred, gt, cfg.min_depth, cfg.max_depth))
                rows_median.append(depth_metrics(pred, gt, cfg.min_depth, cfg.max_depth,
                                                 median_scaling=True))
    model.train()
    return {"views": len(rows_metric), "metric": mean_metrics(rows_metric),
            "median_scaled": mean_metrics(rows_median)}


# ----------------------------------------------------------------------------------- loop
@dataclass
class TrainResult:
    steps: int
    seconds: float
    final_loss: float
    out_dir: str
    card: dict | None


def train(cfg: TrainConfig, progress: bool = True) -> TrainResult:
    import torch

    from ..models import create_model, get_model_info, load_checkpoint

    cfg.validate()
    say = print if progress else (lambda *a, **k: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = get_model_info(cfg.model)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = (load_checkpoint(cfg.init_weights, model_name=cfg.model) if cfg.init_weights
             else create_model(cfg.model))
    model.train()
    recipe, modules = None, {}
    if cfg.recipe not in ("supervised_relative", "supervised_metric"):
        from .recipes import build_recipe

        recipe = build_recipe(cfg, info, model)
        modules = recipe.modules
    if modules:
        groups = [{"params": model.parameters()}] + [{"params": m.parameters()} for m in modules.values()]
        optimiser = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    last = out / "last.ckpt"
    if cfg.resume and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if modules:
            from .recipes import load_state_with_modules

            load_state_with_modules(state["state_dict"], model, info, modules)
            recipe.train()
        else:
            load_checkpoint(last, model=model, model_name=cfg.model)
        model.train()
        optimiser.load_state_dict(state["optimizer"])
        step = int(state["global_step"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        say(f"[train] resumed from {last} at step {step}")
    t_load = time.perf_counter()
    data = RigDataset(cfg.train)
    say(f"[train] {len(data)} synchronized sets x {data.num_views} views from {len(cfg.train)} "
        f"recording(s) in {time.perf_counter() - t_load:.1f} s; drops {data.drops or 'none'}")
    aug = Augment(**cfg.augment)
    out_hw = (cfg.input_height, cfg.input_width)
    t0 = time.perf_counter()
    loss_val = math.nan
    history = []
    while step < cfg.steps:
        if recipe is None:
            batch = sample_views(data, cfg.batch, rng, out_hw, info, aug)
        else:
            batch = recipe.sample(data, rng, out_hw, aug)
        for g in optimiser.param_groups:
            g["lr"] = _lr_at(cfg, step)
        if recipe is None:
            depth, _ = model_forward(model, info, batch, torch)
            loss, parts = recipe_loss(cfg, info, depth, batch, torch)
        else:
            loss, parts = recipe.loss(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        loss_val = float(loss.detach())
        history.append(loss_val)
        elapsed = time.perf_counter() - t0
        if step % cfg.log_every == 0 or step == cfg.steps:
            rate = elapsed / max(len(history), 1)
            say(f"[train] step {step}/{cfg.steps} loss {np.mean(history[-cfg.log_every:]):.4f} "
                + " ".join(f"{k} {v:.4f}" for k, v in parts.items())
                + f" lr {_lr_at(cfg, step):.2e} {rate:.2f} s/step eta "
                  f"{rate * (cfg.steps - step) / 60:.1f} min", flush=True)
        out_of_time = cfg.max_minutes and elapsed > cfg.max_minutes * 60
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
            _write_training_state(last, model, optimiser, step, rng, cfg, info, torch, modules)
        if out_of_time:
            say(f"[train] stopping after {cfg.max_minutes} min at step {step} (resume continues)")
            break
    seconds = time.perf_counter() - t0
    meta = {"model": cfg.model, "recipe": cfg.recipe, "steps": step,
            "input_size": [cfg.input_height, cfg.input_width], "train": cfg.train}
    save_weights(out / "weights.pt", model, info, cfg.save_fp16, meta, torch)
    card = None
    if cfg.val:
        val = RigDataset(cfg.val, max_sets_per_bag=cfg.val_max_sets)
        card = {"model": cfg.model, "recipe": cfg.recipe, "steps": step,
                "train_seconds": round(seconds, 1), "input_size": [cfg.input_height, cfg.input_width],
                "train_recordings": cfg.train, "held_out": cfg.val, "final_loss": loss_val,
                **evaluate_views(model, info, val, cfg, torch)}
        write_card(out, card, cfg)
        say(f"[train] held-out ({card['views']} views): metric AbsRel "
            f"{card['metric']['abs_rel']:.3f}, median-scaled AbsRel "
            f"{card['median_scaled']['abs_rel']:.3f}; card: {out / 'card.md'}")
    return TrainResult(step, seconds, loss_val, str(out), card)


def write_card(out: Path, card: dict, cfg: TrainConfig) -> None:
    (out / "card.json").write_text(json.dumps(card, indent=2))
    rows = []
    for mode in ("metric", "median_scaled"):
        m = card[mode]
        rows.append(f"| {mode} | " + " | ".join(f"{m[k]:.3f}" for k in
                                                ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")) + " |")
    text = f"""# Weights card: {card['model']}

- recipe: `{card['recipe']}` ({card['steps']} steps, {card['train_seconds'] / 60:.1f} min on this machine's CPU)
- model input: {card['input_size'][0]}x{card['input_size'][1]}
- training data: {', '.join(Path(p).name for p in card['train_recordings'])} (project-rendered pybullet recordings)
- held out: {', '.join(Path(p).name for p in card['held_out'])} ({card['views']} views, different seed and layout)
- depth range for metrics: {cfg.min_depth}-{cfg.max_depth} m

| mode | AbsRel | SqRel | RMSE | RMSElog | d<1.25 | d<1.25^2 | d<1.25^3 |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    (out / "card.md").write_text(text)


def main_train(args) -> int:
    cfg = TrainConfig.from_yaml(args.config)
    for k in ("steps", "out_dir", "max_minutes"):
        v = getattr(args, k, None)
        if v:
            setattr(cfg, k, v)
    train(cfg, progress=not args.quiet)
    return 0
