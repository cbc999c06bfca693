"""What a training run reads: the model to start from, the training rows and the evaluation rows."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from modeling_emosem import EMOTIONS, EmoSEMConfig, EmoSEMModel, EmoSEMProcessor

from .config import TrainConfig


def build_model_and_processor(cfg: TrainConfig) -> tuple[EmoSEMModel, EmoSEMProcessor]:
    """From an EmoSEM folder, from the three public backbones, or from a preset with random weights."""
    if cfg.init_from:
        from transformers import AutoProcessor

        model = EmoSEMModel.from_pretrained(cfg.init_from)
        if cfg.model_overrides.get("trainable_modules"):
            model.config.trainable_modules = list(cfg.model_overrides["trainable_modules"])
            model.apply_trainable_modules()
        return model, AutoProcessor.from_pretrained(cfg.init_from, trust_remote_code=True)
    if cfg.components:
        model = EmoSEMModel.from_pretrained_components(**cfg.components, **cfg.model_overrides)
        # (variants) loading options such as load_in_4bit / language_model_dtype are for the model only
        names = {k: v for k, v in cfg.components.items() if k in ("sam", "clip", "language_model")}
        processor = EmoSEMProcessor.from_components(**names, config=model.config)
        return model, processor
    config = EmoSEMConfig.from_preset(cfg.preset, **cfg.model_overrides)
    model = EmoSEMModel(config)
    processor = EmoSEMProcessor.from_preset(cfg.preset, **cfg.model_overrides)
    return model, processor


def build_datasets(cfg: TrainConfig):
    """-> (train rows, evaluation rows or None, emotion names of the `emotion` column, synthetic elements or None)."""
    if cfg.dataset == "synthetic":
        from datasets_emosem import SYNTHETIC_ELEMENTS, make_synthetic_artworks

        splits = make_synthetic_artworks(**cfg.synthetic)
        train, evaluation = splits["train"], splits["validation"]
        elements = SYNTHETIC_ELEMENTS
    else:
        from datasets_emosem import attach_pseudo_masks, load_apolo, load_artemis

        artemis = load_artemis(cfg.artemis_csv, cfg.image_root, for_deep_nets=cfg.artemis_for_deep_nets,
                               drop_something_else=True, on_missing=cfg.on_missing)
        train = artemis["train"]
        if cfg.pseudo_mask_dir:
            train = attach_pseudo_masks(train, cfg.pseudo_mask_dir)
        evaluation = None
        if cfg.apolo_root:
            evaluation = load_apolo(cfg.apolo_root, cfg.apolo_image_root or cfg.image_root, split=cfg.apolo_split,
                                    artemis_csv=cfg.artemis_csv, on_missing=cfg.on_missing)
        elements = None
    if cfg.max_train_samples:
        train = train.select(range(min(cfg.max_train_samples, len(train))))
    if evaluation is not None and cfg.max_eval_samples:
        evaluation = evaluation.select(range(min(cfg.max_eval_samples, len(evaluation))))
    names = list(getattr(train.features["emotion"], "names", EMOTIONS))
    return train, evaluation, names, elements


_NOT_MODEL_INPUTS = ("original_sizes", "reshaped_input_sizes")


def build_train_loader(cfg: TrainConfig, model: EmoSEMModel, processor: EmoSEMProcessor, train_rows, emotion_names) -> DataLoader:
    """The training DataLoader: processor pixels, or cached encoder features when `cfg.feature_cache` is set.

    Both read the rows in the same seeded order and give the model the same tensors, except that the cached
    path passes `image_embeddings` / `clip_features` (cast to the model's dtype) instead of pixels.
    """
    if cfg.feature_cache:
        from ..feature_cache import CachedRows, check_frozen_encoders, make_cached_collate_fn, open_feature_cache

        check_frozen_encoders(model)
        cache = open_feature_cache(cfg.feature_cache, model, processor, train_rows, role="train")
        data = CachedRows(train_rows, cache)
        collate_rows = make_cached_collate_fn(processor, emotion_names, dtype=model.dtype)
    else:
        from datasets_emosem import make_collate_fn

        data = train_rows
        collate_rows = make_collate_fn(processor, emotion_names=emotion_names)

    def collate(rows):
        batch = collate_rows(rows)
        return {k: v for k, v in batch.items() if k not in _NOT_MODEL_INPUTS}

    return DataLoader(data, batch_size=cfg.per_device_batch_size, shuffle=True, collate_fn=collate,
                      num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed))


def open_eval_cache(cfg: TrainConfig, model: EmoSEMModel, processor: EmoSEMProcessor, eval_rows):
    """The evaluation rows' feature cache (`<feature_cache>/eval`), or None (evaluate from pixels)."""
    if not cfg.feature_cache or eval_rows is None:
        return None
    from ..feature_cache import open_feature_cache, resolve_cache_dir

    if resolve_cache_dir(cfg.feature_cache, "eval") in (None, resolve_cache_dir(cfg.feature_cache, "train")):
        return None
    return open_feature_cache(cfg.feature_cache, model, processor, eval_rows, role="eval")
