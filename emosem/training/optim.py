"""AdamW with one learning rate per EmoSEM module group (paper: 2e-4 language model, 1e-4 the rest)."""

from __future__ import annotations

import torch
from transformers import get_scheduler

from modeling_emosem import EmoSEMModel


def parameter_groups(model: EmoSEMModel, learning_rates: dict, weight_decay: float) -> list[dict]:
    """One AdamW group per trainable module group of `model.config.trainable_modules`.

    Biases and norm weights (1-D tensors) get no weight decay, as is usual for transformers.
    """
    groups, seen = [], set()
    for name in model.config.trainable_modules:
        lr = float(learning_rates.get(name, learning_rates["default"]))
        params = [p for p in model.group_parameters(name) if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        if decay:
            groups.append({"name": name, "params": decay, "lr": lr, "weight_decay": weight_decay})
        if no_decay:
            groups.append({"name": f"{name}/no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0})
    if not groups:
        raise ValueError("no trainable parameters: config.trainable_modules is empty")
    return groups


def build_optimizer_and_scheduler(model: EmoSEMModel, cfg, num_training_steps: int):
    optimizer = torch.optim.AdamW(
        parameter_groups(model, cfg.learning_rates, cfg.weight_decay), betas=tuple(cfg.adam_betas)
    )
    scheduler = get_scheduler(
        cfg.scheduler,
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * num_training_steps),
        num_training_steps=num_training_steps,
    )
    return optimizer, scheduler
