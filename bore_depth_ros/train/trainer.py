"""``bore-depth train CONFIG.yaml``: train or distil a registered model on rosbag2 recordings.

A YAML config (:class:`~.config.TrainConfig`) names the model, the recordings, the recipe, the
input size, optimisation settings and an output folder. The trainer writes ``last.ckpt`` every
``checkpoint_every`` steps (model, optimiser, step and every RNG state: resuming continues
exactly), ``weights.pt`` (fp16 or fp32 model weights in the layout ``load_checkpoint`` reads), and
at the end a metrics card (``card.md`` + ``card.json``) from the held-out recordings: ``bore-depth
eval`` of the saved ``weights.pt`` on each (:mod:`..replay.heldout`, the same per-frame path as the
nodes; its reports go to ``out_dir/held_out/``); the card says whether each held-out recording is
independent of the training recordings (:func:`held_out_independence`).

Divergence stops the run: a non-finite loss, or non-finite weights after an optimiser step, raise
:class:`~.state.TrainingDiverged` naming the step, the loss and the last good files, which are
never overwritten (every save checks its tensors first and replaces the file atomically).

What is sampled and which losses are minimised is the recipe's business: the trainer only uses the
:class:`~.recipes.base.Recipe` interface (``sample``, ``loss``, ``modules``); the recipes are listed
in :data:`.recipes.RECIPES` (losses in ``train/losses/``):
- ``supervised_relative``, ``supervised_metric``: independent labelled views (:mod:`.recipes.supervised`).
- ``self_supervised``: photometric self-supervision through a jointly trained PoseNet.
- ``distill``: SVR-style distillation of a bin student from a teacher.
- ``semi_smd``: Semi-SMD-style semi-supervision on whole rigs and their previous set.
Extra trainable modules of a recipe (the PoseNet) are saved in ``last.ckpt`` under ``pose_net.*``
next to the depth net, never in ``weights.pt``.

Schedules (all off by default; :class:`~.config.TrainConfig`): a linear learning-rate warm-up
before the cosine (``warmup_steps``), an exponential moving average of the depth net that
``weights.pt`` and the card use (``ema``, :class:`~.state.ModelEMA`), and a smaller input size for
the first ``warmup_size_steps`` steps (``warmup_size``): each step's batch is drawn at
``cfg.step_size(step)``, from the same per-step seeds, so a resumed run draws the same batches.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.files import claim_outputs
from ..models import create_model, get_model_info, load_checkpoint
from ..replay.heldout import KEYS, heldout_figures
from .batches import step_batches
from .config import TrainConfig, config_differences
from .dataset import Augment, RigDataset
from .recipes import build_recipe
from .state import ModelEMA, TrainingDiverged, load_state_with_modules, save_training_state, save_weights


def _lr_at(cfg: TrainConfig, step: int) -> float:
    """The learning rate of step ``step`` (0-based): a linear warm-up over ``warmup_steps`` (lr *
    (step + 1) / warmup_steps), then the cosine from lr to lr_final over the remaining steps."""
    warm = cfg.warmup_steps
    if step < warm:
        return cfg.lr * (step + 1) / warm
    a = min((step - warm) / max(cfg.steps - warm, 1), 1.0)
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * a))


HELD_OUT_REPORTS = "held_out"  # out_dir/held_out/<recording>/: bore-depth eval's reports for the card


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
    produced = [
        p
        for p in (last, out / "weights.pt", out / "card.md", out / "card.json", out / HELD_OUT_REPORTS)
        if p.exists()
    ]
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


def _non_finite_weights(named: dict) -> list[str]:
    """Names of the parameters and buffers (of ``{prefix: module}``) holding NaN or inf; checked
    after every optimiser step, so cheaply: one sum per tensor is finite unless the tensor holds
    NaN or inf (or its sum overflows, then the exact per-tensor check decides)."""
    from ..models.checkpoint import non_finite_keys

    tensors = {
        prefix + name: t
        for prefix, module in named.items()
        for name, t in (*module.named_parameters(), *module.named_buffers())
        if t.is_floating_point()
    }
    with torch.no_grad():
        sums = [t.sum(dtype=torch.float32) for t in tensors.values()]
        if not sums or bool(torch.stack(sums).isfinite().all()):
            return []
        return non_finite_keys(tensors)


def _kept_files(out: Path, ckpt_step: int | None) -> str:
    """What a stopped run leaves behind, for its error message."""
    kept = []
    last = out / "last.ckpt"
    if last.is_file():
        kept.append(f"{last} (step {ckpt_step})" if ckpt_step is not None else str(last))
    weights = out / "weights.pt"
    if weights.is_file():
        try:
            meta = torch.load(weights, map_location="cpu", weights_only=True)["bore_depth_ros"]
            steps = json.loads(meta)["steps"]
            kept.append(f"{weights} (step {steps})")
        except Exception:  # noqa: BLE001 - only decorates the message
            kept.append(str(weights))
    if not kept:
        return f"nothing had been saved in {out} yet"
    return "the last good files were kept: " + ", ".join(kept)


def train(cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Run ``cfg`` (resuming ``out_dir/last.ckpt`` when ``cfg.resume``); ``progress`` prints a log line.

    Raises :class:`~.state.TrainingDiverged` (one line) when the loss or the weights stop being
    finite; nothing non-finite is saved and the files already in ``out_dir`` are left as they were."""
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
    options = cfg.model_options or None  # None: init_weights' own (recorded) options
    model = (
        load_checkpoint(cfg.init_weights, model_name=cfg.model, options=options)
        if cfg.init_weights
        else create_model(cfg.model, options=options)
    )
    model.train()
    recipe = build_recipe(cfg, info, model)
    modules = recipe.modules
    groups = [{"params": m.parameters()} for m in (model, *modules.values())]  # depth net first
    optimiser = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = ModelEMA(model, cfg.ema) if cfg.ema else None
    step = 0
    last = out / "last.ckpt"
    if cfg.resume and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if modules:
            load_state_with_modules(state["state_dict"], model, info, modules, label=str(last))
            recipe.train()
        else:
            load_checkpoint(last, model=model, model_name=cfg.model)
        model.train()
        optimiser.load_state_dict(state["optimizer"])
        if ema is not None:
            if "ema_state_dict" not in state:
                raise ValueError(f"{last} holds no EMA weights (ema: {cfg.ema}); use --force to start again")
            ema.load_state_dict(state["ema_state_dict"], info, label=f"{last} (EMA weights)")
        step = int(state["global_step"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        say(f"[train] resumed from {last} at step {step}")
    t_load = time.perf_counter()
    recordings = dict(cameras=cfg.cameras or None, slop_s=cfg.slop, lidar_topic=cfg.lidar_topic)
    data = RigDataset(cfg.train, **recordings)
    say(
        f"[train] {len(data)} synchronized sets x {data.num_views} views from {len(cfg.train)} "
        f"recording(s) in {time.perf_counter() - t_load:.1f} s; drops {data.drops or 'none'}"
    )
    aug = Augment(**cfg.augment)
    t0 = time.perf_counter()
    loss_val = math.nan
    history = []
    saved_step = step if last.is_file() else None  # step of the last good last.ckpt
    trainable = {"": model, **{f"{name}.": m for name, m in modules.items()}}

    def diverged(at: int, what: str) -> TrainingDiverged:
        return TrainingDiverged(
            f"training diverged at step {at} ({what}, lr {_lr_at(cfg, at - 1):.3g}): stopped, nothing "
            f"non-finite saved; {_kept_files(out, saved_step)}; lower lr or check the data"
        )

    def not_saved(at: int, e: TrainingDiverged) -> TrainingDiverged:
        return TrainingDiverged(f"training stopped at step {at}: {e}; {_kept_files(out, saved_step)}")

    batches = batches_hw = None
    while step < cfg.steps:
        hw = cfg.step_size(step)
        if hw != batches_hw:  # the first step, or the end of the size warm-up
            if batches is not None:
                batches.close()
                say(f"[train] step {step}: batches at {hw[0]}x{hw[1]} from now on")
            batches, batches_hw = step_batches(recipe, data, rng, hw, aug, cfg.num_workers), hw
        batch = next(batches)
        for g in optimiser.param_groups:
            g["lr"] = _lr_at(cfg, step)
        loss, parts = recipe.loss(batch)
        loss_val = float(loss.detach())
        if not math.isfinite(loss_val):
            raise diverged(step + 1, f"loss {loss_val}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        if ema is not None:
            ema.update(model, step)
        bad = _non_finite_weights(trainable)
        if bad:
            what = f"{len(bad)} tensors non-finite after the optimiser step, e.g. {bad[0]}"
            raise diverged(step, f"loss {loss_val:.4g}, then {what}")
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
            try:
                save_training_state(last, model, optimiser, step, rng, cfg, info, modules, ema)
            except TrainingDiverged as e:
                raise not_saved(step, e) from None
            saved_step = step
        if out_of_time:
            say(f"[train] stopping after {cfg.max_minutes} min at step {step} (resume continues)")
            break
    if batches is not None:
        batches.close()
    seconds = time.perf_counter() - t0
    final = ema.module if ema is not None else model  # what weights.pt holds and the card evaluates
    meta = {
        "model": cfg.model,
        "recipe": cfg.recipe,
        "steps": step,
        "input_size": [cfg.input_height, cfg.input_width],
        "train": cfg.train,
    }
    if cfg.ema:
        meta["ema"] = cfg.ema
    try:
        save_weights(out / "weights.pt", final, info, cfg.save_fp16, meta)
    except TrainingDiverged as e:
        raise not_saved(step, e) from None
    card = None
    if cfg.val:
        val = RigDataset(cfg.val, max_sets_per_bag=cfg.val_max_sets, **recordings)
        held_out = held_out_independence(cfg.train, cfg.val, data.fingerprints(), val.fingerprints())
        figures = heldout_figures(
            cfg.model,
            out / "weights.pt",
            cfg.val,
            out / HELD_OUT_REPORTS,
            cameras=cfg.cameras or None,
            force=True,  # the run's own reports (claimed with the run folder)
            backend="torch",
            input_height=cfg.input_height,
            input_width=cfg.input_width,
            min_depth=cfg.min_depth,
            max_depth=cfg.max_depth,
            max_frames=cfg.val_max_sets * val.num_views,
            rig_slop=cfg.slop,
            lidar_topic=cfg.lidar_topic,
        )
        card = {
            "model": cfg.model,
            "recipe": cfg.recipe,
            "steps": step,
            "train_seconds": round(seconds, 1),
            "input_size": [cfg.input_height, cfg.input_width],
            "train_recordings": cfg.train,
            "held_out": cfg.val,
            "held_out_data": held_out,
            "final_loss": loss_val,
            **({"ema": cfg.ema} if cfg.ema else {}),
            **figures,
        }
        write_card(out, card, cfg)
        say(
            f"[train] held-out ({card['views']} views, bore-depth eval): metric AbsRel "
            f"{_fmt(card['metric']['abs_rel'])}, median-scaled AbsRel "
            f"{_fmt(card['median_scaled']['abs_rel'])}, boundary F1 {_fmt(card['boundary_f1'])}; "
            f"card: {out / 'card.md'}"
        )
        for h in held_out:
            if not h["independent"]:
                say(f"[train] warning: held-out {h['path']}: {h['note']}")
    return TrainResult(step, seconds, loss_val, str(out), card)


def _same_path(a: str, b: str) -> bool:
    """Whether two recording paths name the same data: equal once resolved (symlinks, ``..``), the
    same file (hard links), or one inside the other (a bag folder and its storage file)."""
    pa, pb = Path(a).resolve(), Path(b).resolve()
    if pa == pb or pa in pb.parents or pb in pa.parents:
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:
        return False


def held_out_independence(
    train_paths: list[str], val_paths: list[str], train_prints: dict[str, str], val_prints: dict[str, str]
) -> list[dict]:
    """For each held-out recording: ``{"path", "independent", "note"}``. Not independent when its
    path names a training recording (:func:`_same_path`) or its content is one (the same first
    synchronized set, :meth:`.dataset.RigDataset.fingerprints`: a copy elsewhere)."""
    by_print = {train_prints[t]: t for t in train_paths if t in train_prints}
    out = []
    for v in val_paths:
        same = next((t for t in train_paths if _same_path(v, t)), None)
        note = ""
        if same is not None:
            note = "NOT independent: it is also a training recording" + (f" ({same})" if same != v else "")
        elif val_prints.get(v) in by_print:
            note = f"NOT independent: the same recording as training recording {by_print[val_prints[v]]}"
        out.append({"path": v, "independent": not note, "note": note or "independent: not used for training"})
    return out


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def write_card(out: Path, card: dict, cfg: TrainConfig) -> None:
    _write_text_atomic(out / "card.json", json.dumps(card, indent=2))
    rows = [
        f"| {mode} | " + " | ".join(_fmt(card[mode][k]) for k in KEYS) + " |"
        for mode in ("metric", "median_scaled")
    ]
    per = card.get("per_recording", {})
    reports = "".join(
        f"- `{name}`: {r['views']} views, boundary F1 {_fmt(r['boundary_f1'])}, temporal stability "
        f"{_fmt(r['temporal_stability']['median'])}, report `{Path(r['report']).relative_to(out)}`\n"
        for name, r in per.items()
    )
    minutes = card["train_seconds"] / 60
    train_names = ", ".join(f"`{p}`" for p in card["train_recordings"])
    held_out = "".join(f"- held-out data: `{h['path']}` ({h['note']})\n" for h in card["held_out_data"])
    text = f"""# Weights card: {card["model"]}

- recipe: `{card["recipe"]}` ({card["steps"]} steps, {minutes:.1f} min on this machine's CPU)
- model input: {card["input_size"][0]}x{card["input_size"][1]}
- training data: {train_names}
{held_out}- held-out views with ground truth: {card["views"]}
- depth range for metrics: {cfg.min_depth}-{cfg.max_depth} m

| mode | AbsRel | SqRel | RMSE | RMSElog | d<1.25 | d<1.25^2 | d<1.25^3 |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Depth-boundary F1 {_fmt(card.get("boundary_f1"))}, temporal stability (median) \
{_fmt(card.get("temporal_stability_median"))}: `bore-depth eval` of `weights.pt` (torch backend) on
each held-out recording, means over recordings:

{reports}"""
    _write_text_atomic(out / "card.md", text)
