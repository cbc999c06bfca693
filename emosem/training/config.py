"""Training configuration: a dataclass filled from YAML, then from `--key value` command-line overrides.

Dotted keys reach into dict fields (`--synthetic.n 400`, `--learning_rates.language_model 1e-4`);
values are parsed as YAML scalars (`--epochs 3`, `--resume latest`, `--report_to none`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass
class TrainConfig:
    # ---- model: a preset (random weights), the three public backbones, or an EmoSEM folder
    preset: str = "tiny"
    model_overrides: dict = field(default_factory=dict)  # EmoSEMConfig fields, e.g. paradigm, trainable_modules
    components: dict | None = None  # {sam: ..., clip: ..., language_model: ...} -> from_pretrained_components
    init_from: str | None = None  # a saved EmoSEM folder to fine-tune
    # ---- data
    dataset: str = "synthetic"  # synthetic | artemis
    synthetic: dict = field(default_factory=lambda: {"n": 2000, "seed": 0, "image_size": 128})
    artemis_csv: str | None = None
    image_root: str | None = None  # WikiArt root (<style>/<painting>.jpg)
    pseudo_mask_dir: str | None = None  # <painting>_<emotion>.npy heat maps (ours or APOLO's 7x7)
    apolo_root: str | None = None  # evaluation set
    apolo_image_root: str | None = None
    apolo_split: str = "val"
    artemis_for_deep_nets: bool = True
    on_missing: str = "error"  # error | skip
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    # Precomputed SAM/CLIP features (examples/cache_features.py): DIR/train (and DIR/eval) or one cache folder.
    # Only for frozen encoders (trainable_modules without image_encoder and clip).
    feature_cache: str | None = None
    # ---- optimisation (paper, appendix A)
    epochs: int = 10
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 4
    learning_rates: dict = field(default_factory=lambda: {"language_model": 2e-4, "default": 1e-4})
    weight_decay: float = 0.01
    adam_betas: tuple = (0.9, 0.999)
    scheduler: str = "cosine"  # any transformers.get_scheduler name
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # no | fp16 | bf16
    seed: int = 42
    num_workers: int = 0
    # ---- evaluation, logging, checkpoints
    eval_every_epoch: bool = True
    eval_batch_size: int = 16
    eval_seed: int = 0
    eval_text_metrics: bool = True
    judge: str | None = None  # EA classifier folder
    clip_model: str | None = None  # CLIPScore model folder
    log_every: int = 10
    checkpoint_every: int = 500  # optimizer steps; 0 disables
    keep_checkpoints: int = 2
    output_dir: str = "outputs/emosem"
    report_to: str = "tensorboard"  # tensorboard | wandb | all | none (any accelerate tracker)
    project_name: str = "emosem"
    resume: str | None = None  # latest | a checkpoint folder
    find_unused_parameters: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _set_dotted(data: dict, key: str, value: Any) -> None:
    top, _, rest = key.partition(".")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if top not in names:
        raise ValueError(f"unknown configuration key {top!r}; known keys: {', '.join(sorted(names))}")
    if not rest:
        data[top] = value
        return
    node = data.setdefault(top, {}) or {}
    data[top] = node
    parts = rest.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """`["--epochs", "3", "--synthetic.n=400"]` -> [("epochs", 3), ("synthetic.n", 400)]."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ValueError(f"expected --key value, got {arg!r}")
        key = arg[2:].replace("-", "_")
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError(f"missing value for --{key}")
            raw, i = args[i + 1], i + 2
        out.append((key, _scalar(yaml.safe_load(raw))))
    return out


def _scalar(value: Any) -> Any:
    """YAML 1.1 reads `5e-5` (no dot) as a string; numbers written that way are still numbers."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_train_config(path: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML file (optional) + command-line overrides -> a validated TrainConfig."""
    data: dict = {}
    if path:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of configuration keys")
        for key in data:
            _set_dotted({}, key, None)  # unknown keys fail here, naming the key
    for key, value in parse_overrides(overrides or []):
        _set_dotted(data, key, value)
    if "adam_betas" in data:
        data["adam_betas"] = tuple(data["adam_betas"])
    cfg = TrainConfig(**data)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    if cfg.dataset not in ("synthetic", "artemis"):
        raise ValueError(f"dataset must be 'synthetic' or 'artemis', got {cfg.dataset!r}")
    if cfg.dataset == "artemis" and not (cfg.artemis_csv and cfg.image_root):
        raise ValueError("dataset 'artemis' needs artemis_csv and image_root")
    if cfg.mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"mixed_precision must be no, fp16 or bf16, got {cfg.mixed_precision!r}")
    if cfg.on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {cfg.on_missing!r}")
    for name in ("epochs", "per_device_batch_size", "gradient_accumulation_steps", "keep_checkpoints"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {cfg.max_steps}")
    if "default" not in cfg.learning_rates:
        raise ValueError("learning_rates needs a 'default' entry")
