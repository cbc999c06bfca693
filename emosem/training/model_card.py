"""Fill `model_card.md` (Hub YAML metadata + sections) for a trained model."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..evaluation import table1_row
from ..metrics_utils import format_table1_markdown

TEMPLATE = Path(__file__).resolve().parents[2] / "model_card.md"


def _yaml_list(items) -> str:
    return "\n".join(f"  - {item}" for item in items) if items else "  []"


def render_model_card(cfg, model, metrics: dict | None, template: str | os.PathLike = TEMPLATE) -> str:
    text = Path(template).read_text(encoding="utf-8")
    if cfg.dataset == "synthetic":
        datasets, evaluated_on = ["synthetic-emosem-artworks"], "held-out synthetic artworks (validation split)"
    else:
        datasets = ["artemis"] + (["apolo"] if cfg.apolo_root else [])
        evaluated_on = f"APOLO {cfg.apolo_split}" if cfg.apolo_root else "not evaluated"
    # (variants) checkpoint names only: components may also hold loading options (load_in_4bit, dtype)
    checkpoints = [v for k, v in (cfg.components or {}).items() if k in ("sam", "clip", "language_model")]
    base = checkpoints if cfg.components else ([cfg.init_from] if cfg.init_from else [])
    c = model.config
    backbones = c.describe_backbones()  # EmoSEM, EmoSEM-LLaVA or SCAbase
    if metrics:
        table = f"Evaluated on {evaluated_on}.\n\n" + format_table1_markdown({f"{c.paradigm}-mask {c.variant_name}": table1_row(metrics)})
        extras = {k: metrics[k] for k in ("element_mention_rate", "seg_mean_iou", "num_scored") if k in metrics}
        if extras:
            table += "\n\n" + "\n".join(f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in extras.items())
    else:
        table = "Not evaluated."
    values = {
        "datasets_yaml": _yaml_list(datasets),
        "base_models_yaml": _yaml_list(base),
        "model_name": f"{c.variant_name} ({cfg.preset if not cfg.components else 'paper'} preset, {c.paradigm}-mask)",
        "paradigm": {"single": "Single-Mask", "multi": "Multi-Masks"}[c.paradigm],
        "num_parameters": f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M",
        "backbones": backbones,
        "repo_id": os.path.basename(os.path.abspath(cfg.output_dir)),
        "evaluation_table": table,
        "training_config": "```yaml\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False) + "```",
    }
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def write_model_card(cfg, model, metrics: dict | None, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_model_card(cfg, model, metrics))
