"""The training loop: accelerate for devices, DDP, mixed precision and gradient accumulation.

Resuming is exact: a checkpoint holds the model, optimizer, scheduler and RNG states (accelerate's
`save_state`) plus the position in the epoch; the sampler is seeded per epoch, so a resumed run sees
the same batches in the same order and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, gather_object, set_seed
from tqdm.auto import tqdm

from .checkpoints import list_checkpoints, load_trainer_state, resolve_resume, save_checkpoint
from .config import TrainConfig
from .data import build_datasets, build_model_and_processor, build_train_loader, open_eval_cache

def _trackers(report_to: str):
    if report_to in (None, "none", ""):
        return None
    if report_to == "tensorboard":
        from accelerate.utils import is_tensorboard_available

        return "tensorboard" if is_tensorboard_available() else None
    return report_to


def _weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class _JsonlLog:
    """Append-only JSON-lines log on the main process (one record per logging step / evaluation)."""

    def __init__(self, path: str, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=float) + "\n")


def _evaluate(cfg: TrainConfig, model, processor, dataset, elements, epoch: int, step: int, feature_cache=None) -> dict:
    from ..evaluation import predict_dataset, score_predictions

    predictions = predict_dataset(model, processor, dataset, batch_size=cfg.eval_batch_size, seed=cfg.eval_seed,
                                  progress=False, keep_images=bool(cfg.clip_model), feature_cache=feature_cache)
    metrics = score_predictions(predictions, judge=cfg.judge, clip_model=cfg.clip_model,
                                text_metrics=cfg.eval_text_metrics, synthetic_elements=elements)
    model.train()
    return {"epoch": epoch, "step": step, **metrics}


def train(cfg: TrainConfig) -> dict:
    """Train EmoSEM as `cfg` says; returns a summary (steps, final metrics, per-rank weight digests)."""
    os.makedirs(cfg.output_dir, exist_ok=True)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        log_with=_trackers(cfg.report_to),
        project_config=ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=os.path.join(cfg.output_dir, "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)],
    )
    set_seed(cfg.seed)
    main = accelerator.is_main_process
    if main:
        with open(os.path.join(cfg.output_dir, "train_config.yaml"), "w", encoding="utf-8") as f:
            import yaml

            yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)

    model, processor = build_model_and_processor(cfg)
    train_rows, eval_rows, emotion_names, elements = build_datasets(cfg)
    # Pixels through the encoders, or (cfg.feature_cache) their cached outputs; same batches either way.
    loader = build_train_loader(cfg, model, processor, train_rows, emotion_names)
    eval_cache = open_eval_cache(cfg, model, processor, eval_rows)
    from .optim import build_optimizer_and_scheduler

    # The schedule counts optimizer steps of this run, per process (prepare() shards the loader first).
    model, loader = accelerator.prepare(model, loader)
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer, scheduler = build_optimizer_and_scheduler(accelerator.unwrap_model(model), cfg, total_steps)
    optimizer = accelerator.prepare(optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped by hand, once per optimizer step

    global_step, start_epoch, skip_batches = 0, 0, 0
    if cfg.resume:
        checkpoint = resolve_resume(cfg.output_dir, cfg.resume)
        accelerator.load_state(checkpoint)
        state = load_trainer_state(checkpoint)
        global_step, start_epoch, skip_batches = state["global_step"], state["epoch"], state["batches_in_epoch"]
        accelerator.print(f"resumed from {checkpoint} at step {global_step} (epoch {start_epoch}, batch {skip_batches})")

    if accelerator.log_with:
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v)) for k, v in cfg.to_dict().items()}
        accelerator.init_trackers(cfg.project_name, config=flat)
    log = _JsonlLog(os.path.join(cfg.output_dir, "log.jsonl"), main)
    bar = tqdm(total=total_steps, initial=global_step, desc="training", unit="step", disable=not accelerator.is_local_main_process)
    samples_seen = 0
    history: list[dict] = []
    last_eval: dict | None = None
    evaluated_at = -1
    model.train()
    for epoch in range(start_epoch, epochs):
        if global_step >= total_steps:
            break
        loader.set_epoch(epoch)
        batches_in_epoch = skip_batches if epoch == start_epoch else 0
        batches = accelerator.skip_first_batches(loader, batches_in_epoch) if batches_in_epoch else loader
        for batch in batches:
            with accelerator.accumulate(model):
                out = model(**batch)
                bad = accelerator.reduce(torch.tensor([0.0 if torch.isfinite(out.loss) else 1.0], device=out.loss.device), "sum")
                if bad.item() > 0:
                    raise FloatingPointError(
                        f"non-finite loss at step {global_step + 1} (epoch {epoch}, batch {batches_in_epoch}): "
                        f"loss={out.loss.item()}, mask_loss={_item(out.mask_loss)}, lm_loss={_item(out.lm_loss)}. "
                        f"Last checkpoint: {(list_checkpoints(cfg.output_dir) or ['none'])[-1]}"
                    )
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            batches_in_epoch += 1
            samples_seen += batch["emotion_ids"].shape[0]
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            global_step += 1
            bar.update(1)
            if global_step % cfg.log_every == 0 or global_step == total_steps:
                losses = {k: getattr(out, k).detach().float() for k in ("loss", "mask_loss", "dice_loss", "focal_loss", "lm_loss")
                          if getattr(out, k) is not None}
                losses = {f"train/{k}": accelerator.reduce(v, "mean").item() for k, v in losses.items()}
                lrs = {f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups if not g["name"].endswith("/no_decay")}
                record = {"step": global_step, "epoch": epoch, **losses, **lrs}
                accelerator.log({k: v for k, v in record.items() if k not in ("step",)}, step=global_step)
                log.write(record)
                bar.set_postfix(loss=f"{losses['train/loss']:.3f}")
            if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 and global_step < total_steps:
                save_checkpoint(accelerator, cfg.output_dir, global_step,
                                {"global_step": global_step, "epoch": epoch, "batches_in_epoch": batches_in_epoch,
                                 "total_steps": total_steps}, cfg.keep_checkpoints)
            if global_step >= total_steps:
                break
        # Every epoch, and once more at the end if the run stopped mid-epoch (all ranks decide alike).
        if eval_rows is not None and (cfg.eval_every_epoch or global_step >= total_steps) and evaluated_at != global_step:
            last_eval = _evaluate_on_main(accelerator, cfg, model, processor, eval_rows, elements, epoch, global_step,
                                          eval_cache)
            evaluated_at = global_step
            if main:
                history.append(last_eval)
                accelerator.log({f"eval/{k}": v for k, v in last_eval.items() if isinstance(v, (int, float))}, step=global_step)
                log.write({"eval": last_eval})
    bar.close()

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    digests = gather_object([_weights_digest(unwrapped)])
    samples = gather_object([samples_seen])
    summary = {"global_step": global_step, "total_steps": total_steps, "num_processes": accelerator.num_processes,
               "weights_sha256_per_rank": digests, "samples_per_rank": samples, "final_eval": last_eval, "eval_history": history}
    if main:
        from ..export import save_model_folder
        from .model_card import write_model_card

        save_model_folder(unwrapped, processor, cfg.output_dir)
        write_model_card(cfg, unwrapped, last_eval, os.path.join(cfg.output_dir, "README.md"))
        with open(os.path.join(cfg.output_dir, "train_summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, default=str)
    accelerator.end_training()
    return summary


def _evaluate_on_main(accelerator, cfg, model, processor, rows, elements, epoch, step, feature_cache=None):
    """Evaluation runs on the main process (others wait): metrics need every prediction in one place."""
    result = None
    if accelerator.is_main_process:
        result = _evaluate(cfg, accelerator.unwrap_model(model), processor, rows, elements, epoch, step, feature_cache)
    accelerator.wait_for_everyone()
    return result


def _item(value):
    return None if value is None else value.item()
