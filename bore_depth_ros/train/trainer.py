"""``bore-depth train CONFIG.yaml``: train or distil a registered model on rosbag2 recordings.

A YAML config (:class:`~.config.TrainConfig`) names the model, the recordings, the recipe, the
input size, optimisation settings and an output folder. The trainer writes ``last.ckpt`` every
``checkpoint_every`` steps (model, optimiser, step and every RNG state: resuming continues
exactly), ``weights.pt`` (fp16 or fp32 model weights in the layout ``load_checkpoint`` reads), and
at the end a metrics card (``card.md`` + ``card.json``) from a held-out recording
(:mod:`.state`, :mod:`.evaluation`).

What is sampled and which losses are minimised is the recipe's business: the trainer only uses the
:class:`~.recipes.base.Recipe` interface (``sample``, ``loss``, ``modules``); the recipes are listed
in :data:`.recipes.RECIPES` (losses in ``train/losses/``):
- ``supervised_relative``, ``supervised_metric``: independent labelled views (:mod:`.recipes.supervised`).
- ``self_supervised``: photometric self-supervision through a jointly trained PoseNet.
- ``distill``: SVR-style distillation of a bin student from a teacher.
- ``semi_smd``: Semi-SMD-style semi-supervision on whole rigs and their previous set.
Extra trainable modules of a recipe (the PoseNet) are saved in ``last.ckpt`` under ``pose_net.*``
next to the depth net, never in ``weights.pt``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.files import claim_outputs
from ..models import create_model, get_model_info, load_checkpoint
from .config import TrainConfig, config_differences
from .dataset import Augment, RigDataset
from .evaluation import evaluate
from .recipes import build_recipe
from .state import load_state_with_modules, save_training_state, save_weights


def _lr_at(cfg: TrainConfig, step: int) -> float:
    a = min(step / max(cfg.steps, 1), 1.0)
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * a))


@dataclass
class TrainResult:
    steps: int
    seconds: float
    final_loss: float
    out_dir: str
    card: dict | None


def _claim_run_folder(cfg: TrainConfig, out: Path) -> None:
    """A folder holding a run is continued only when asked to and with the same settings; with
    ``force`` it is replaced. Anything else is refused before a file is touched."""
    last = out / "last.ckpt"
    produced = [p for p in (last, out / "weights.pt", out / "card.md", out / "card.json") if p.exists()]
    if not produced:
        return
    if cfg.force:
        claim_outputs(produced, force=True)
        return
    if not cfg.resume:
        raise FileExistsError(
            f"{out} holds a training run ({', '.join(p.name for p in produced)}); "
            "resume it (resume: true), choose a new out_dir, or pass --force to replace it"
        )
    if not last.is_file():
        raise FileExistsError(
            f"{out} holds {', '.join(p.name for p in produced)} but no last.ckpt to "
            "resume; choose a new out_dir or pass --force to replace them"
        )
    saved = torch.load(last, map_location="cpu", weights_only=True).get("config")
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))  # as it was saved: tuples become lists
    diffs = config_differences(json.loads(saved) if saved else {}, now)
    if diffs:
        raise ValueError(
            f"{out} holds a run with other settings ({'; '.join(diffs)}): resuming it would "
            "mix two configurations; use its config, a new out_dir, or --force to replace it"
        )


def train(cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Run ``cfg`` (resuming ``out_dir/last.ckpt`` when ``cfg.resume``); ``progress`` prints a log line."""
    cfg.validate()
    say = print if progress else (lambda *a, **k: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    _claim_run_folder(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    info = get_model_info(cfg.model)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = (
        load_checkpoint(cfg.init_weights, model_name=cfg.model)
        if cfg.init_weights
        else create_model(cfg.model)
    )
    model.train()
    recipe = build_recipe(cfg, info, model)
    modules = recipe.modules
    groups = [{"params": m.parameters()} for m in (model, *modules.values())]  # depth net first
    optimiser = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    last = out / "last.ckpt"
    if cfg.resume and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if modules:
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
    say(
        f"[train] {len(data)} synchronized sets x {data.num_views} views from {len(cfg.train)} "
        f"recording(s) in {time.perf_counter() - t_load:.1f} s; drops {data.drops or 'none'}"
    )
    aug = Augment(**cfg.augment)
    out_hw = (cfg.input_height, cfg.input_width)
    t0 = time.perf_counter()
    loss_val = math.nan
    history = []
    while step < cfg.steps:
        batch = recipe.sample(data, rng, out_hw, aug)
        for g in optimiser.param_groups:
            g["lr"] = _lr_at(cfg, step)
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
            say(
                f"[train] step {step}/{cfg.steps} loss {np.mean(history[-cfg.log_every :]):.4f} "
                + " ".join(f"{k} {v:.4f}" for k, v in parts.items())
                + f" lr {_lr_at(cfg, step):.2e} {rate:.2f} s/step eta "
                f"{rate * (cfg.steps - step) / 60:.1f} min",
                flush=True,
            )
        out_of_time = cfg.max_minutes and elapsed > cfg.max_minutes * 60
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
            save_training_state(last, model, optimiser, step, rng, cfg, info, modules)
        if out_of_time:
            say(f"[train] stopping after {cfg.max_minutes} min at step {step} (resume continues)")
            break
    seconds = time.perf_counter() - t0
    meta = {
        "model": cfg.model,
        "recipe": cfg.recipe,
        "steps": step,
        "input_size": [cfg.input_height, cfg.input_width],
        "train": cfg.train,
    }
    save_weights(out / "weights.pt", model, info, cfg.save_fp16, meta)
    card = None
    if cfg.val:
        val = RigDataset(cfg.val, max_sets_per_bag=cfg.val_max_sets)
        card = {
            "model": cfg.model,
            "recipe": cfg.recipe,
            "steps": step,
            "train_seconds": round(seconds, 1),
            "input_size": [cfg.input_height, cfg.input_width],
            "train_recordings": cfg.train,
            "held_out": cfg.val,
            "final_loss": loss_val,
            **evaluate(model, info, val, cfg),
        }
        write_card(out, card, cfg)
        say(
            f"[train] held-out ({card['views']} views): metric AbsRel "
            f"{card['metric']['abs_rel']:.3f}, median-scaled AbsRel "
            f"{card['median_scaled']['abs_rel']:.3f}; card: {out / 'card.md'}"
        )
    return TrainResult(step, seconds, loss_val, str(out), card)


def write_card(out: Path, card: dict, cfg: TrainConfig) -> None:
    (out / "card.json").write_text(json.dumps(card, indent=2))
    rows = []
    for mode in ("metric", "median_scaled"):
        m = card[mode]
        rows.append(
            f"| {mode} | "
            + " | ".join(f"{m[k]:.3f}" for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"))
            + " |"
        )
    minutes = card["train_seconds"] / 60
    train_names = ", ".join(Path(p).name for p in card["train_recordings"])
    held_out_names = ", ".join(Path(p).name for p in card["held_out"])
    text = f"""# Weights card: {card["model"]}

- recipe: `{card["recipe"]}` ({card["steps"]} steps, {minutes:.1f} min on this machine's CPU)
- model input: {card["input_size"][0]}x{card["input_size"][1]}
- training data: {train_names} (project-rendered pybullet recordings)
- held out: {held_out_names} ({card["views"]} views, different seed and layout)
- depth range for metrics: {cfg.min_depth}-{cfg.max_depth} m

| mode | AbsRel | SqRel | RMSE | RMSElog | d<1.25 | d<1.25^2 | d<1.25^3 |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    (out / "card.md").write_text(text)
