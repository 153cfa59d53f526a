"""The training YAML: model, recordings, recipe, input size, optimisation and output folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# settings a resumed run may change: how long it runs, how it reports and how it stores its weights,
# not what it learns
RESUMABLE_CHANGES = (
    "steps",
    "warmup_size_steps",  # where the low-resolution phase ends (a run cut short keeps both phases)
    "max_minutes",
    "out_dir",
    "resume",
    "force",
    "threads",
    "log_every",
    "checkpoint_every",
    "save_fp16",
)


def config_differences(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every setting a resumed run may not change."""
    import dataclasses

    # a setting added after the old run was saved had its default there
    defaults = {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in dataclasses.fields(TrainConfig)
    }
    old = {**{k: v for k, v in defaults.items() if k in new}, **old}
    keys = sorted((set(old) | set(new)) - set(RESUMABLE_CHANGES))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


@dataclass
class TrainConfig:
    model: str = "bore_depth"
    recipe: str = "supervised_relative"  # a name of train.recipes.RECIPES
    train: list[str] = field(default_factory=list)  # rosbag2 recordings
    val: list[str] = field(default_factory=list)  # held-out recordings for the card
    out_dir: str = "train_output"
    init_weights: str = ""  # start from these weights
    teacher: str = ""  # teacher model name (recipes with a teacher)
    teacher_weights: str = ""
    input_height: int = 128
    input_width: int = 224
    batch: int = 4  # views per step
    steps: int = 1000
    lr: float = 2e-4
    lr_final: float = 2e-5  # cosine decay to this
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 0  # torch threads (0 = default)
    checkpoint_every: int = 200
    log_every: int = 20
    max_minutes: float = 0.0  # stop (and checkpoint) after this
    min_depth: float = 0.5  # metres: metrics and valid GT range
    max_depth: float = 80.0
    save_fp16: bool = True
    resume: bool = True  # continue out_dir/last.ckpt of a run with the same config
    force: bool = False  # replace a run already in out_dir (with another config, or resume: false)
    augment: dict = field(default_factory=dict)  # Augment fields
    loss: dict = field(default_factory=dict)  # recipe loss weights (Recipe.loss_defaults)
    val_max_sets: int = 0
    # --- recordings (issue 14: any rig, real supervision, streaming) ---
    cameras: list[str] = field(
        default_factory=list
    )  # namespaces or image topics; [] = all, ring-ordered by TF
    slop: float = 0.03  # seconds: largest stamp spread of one synchronized set
    lidar_topic: str = ""  # PointCloud2 ground truth; "" = /lidar/points or the bag's only cloud
    num_workers: int = 0  # DataLoader processes decoding frames (0 = in the training process)
    labels: list[str] = field(default_factory=list)  # teacher label stores (bore-depth label)
    pose: str = "tf"  # ego motion of temporal terms: tf (odometry from /tf) | network (pose network)
    model_options: dict = field(default_factory=dict)  # e.g. bins, output_stride, width; saved in the weights
    # --- recipe v2 (issue 16): every key off by default, so older configs train as before ---
    # warmup_steps: the learning rate rises linearly over the first N steps (lr * (k + 1) / N at
    #   step k, from about 0 to lr), then follows the cosine from lr to lr_final over the remaining
    #   steps - N. 0: the plain cosine over all steps, as before.
    warmup_steps: int = 0
    # ema: decay of an exponential moving average of the depth net's parameters (buffers copied),
    #   updated after every optimiser step with the decay min(ema, (1 + k) / (10 + k)) at step k, so
    #   short runs are not dominated by the initial weights. The average is what weights.pt holds and
    #   the card evaluates; last.ckpt holds the raw and the averaged weights (resume is exact), and
    #   weights.pt records ``ema`` in its metadata. 0: off (weights.pt holds the raw weights).
    ema: float = 0.0
    # warmup_size: [h, w] (multiples of 32) at which the first warmup_size_steps steps sample their
    #   batches; after them input_height x input_width. The weights record input_height x
    #   input_width (the size the node and eval run at). [] / 0: every step at the input size.
    warmup_size: list[int] = field(default_factory=list)
    warmup_size_steps: int = 0
    # (the gradient-matching loss is a recipe loss weight: ``loss: {grad_match: 0.5}``,
    #  train/losses/gradient.py; 0 by default)

    @staticmethod
    def from_yaml(path: str | Path) -> TrainConfig:
        import yaml

        p = Path(path)
        if p.is_dir():
            raise IsADirectoryError(f"{p}: Is a directory, expected a training YAML file")
        if not p.is_file():
            raise FileNotFoundError(f"training config not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{p}: invalid YAML: {' '.join(str(e).split())}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{p}: expected a mapping of settings, got {type(raw).__name__}")
        known = set(TrainConfig.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
        cfg = TrainConfig(**raw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError (KeyError for an unknown model) for settings training cannot run with."""
        from ..models import check_input_size, get_model_info
        from .recipes import RECIPES

        info = get_model_info(self.model)
        info.resolve_options(self.model_options)  # unknown options or bad values: before any file is touched
        check_input_size(self.input_height, self.input_width)
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe '{self.recipe}', known: {', '.join(RECIPES)}")
        if not self.train:
            raise ValueError("no training recordings ('train: [bag, ...]')")
        if self.steps < 1 or self.batch < 1 or self.lr <= 0:
            raise ValueError("steps, batch and lr must be positive")
        if not self.slop >= 0:
            raise ValueError(f"slop must be >= 0 seconds, got {self.slop}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.pose not in ("tf", "network"):
            raise ValueError(f"pose must be 'tf' or 'network', got {self.pose!r}")
        self._validate_schedule(info)
        RECIPES[self.recipe].check_config(self, info)

    def _validate_schedule(self, info) -> None:
        if (
            not isinstance(self.warmup_steps, int)
            or isinstance(self.warmup_steps, bool)
            or self.warmup_steps < 0
        ):
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be below steps ({self.steps}): "
                "the cosine decay follows the warm-up"
            )
        if isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be a decay in [0, 1) (0 = off, e.g. 0.999), got {self.ema!r}")
        n = self.warmup_size_steps
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"warmup_size_steps must be an integer >= 0, got {n!r}")
        size = self.warmup_size
        if size in (None, []):
            if n:
                raise ValueError(f"warmup_size_steps: {n} needs warmup_size: [height, width]")
            return
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in size)
        ):
            raise ValueError(f"warmup_size must be [height, width] in pixels, got {size!r}")
        if not n:
            raise ValueError(f"warmup_size {list(size)} needs warmup_size_steps > 0 (the steps run at it)")
        try:
            info.check_input_size(int(size[0]), int(size[1]))
        except ValueError as e:
            raise ValueError(f"warmup_size: {e}") from None

    def step_size(self, step: int) -> tuple[int, int]:
        """The (height, width) at which step ``step`` (0-based) samples its batch."""
        if self.warmup_size and step < self.warmup_size_steps:
            return int(self.warmup_size[0]), int(self.warmup_size[1])
        return self.input_height, self.input_width
