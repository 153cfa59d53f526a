"""The training YAML: model, recordings, recipe, input size, optimisation and output folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# settings a resumed run may change: how long it runs, how it reports and how it stores its weights,
# not what it learns
RESUMABLE_CHANGES = (
    "steps",
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
        RECIPES[self.recipe].check_config(self, info)
