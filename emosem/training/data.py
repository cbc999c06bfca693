"""What a training run reads: the model to start from, the training rows and the evaluation rows."""

from __future__ import annotations

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
        processor = EmoSEMProcessor.from_components(**cfg.components, config=model.config)
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
