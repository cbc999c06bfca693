"""Write a trained EmoSEM as a Hub folder: weights, code, processor and (when present) the pipeline."""

from __future__ import annotations

import os


def save_model_folder(model, processor, out_dir: str) -> None:
    """save_pretrained of model and processor; the pipeline's own save_pretrained when the pipeline exists,
    so `custom_pipelines` and `pipeline_emosem.py` land next to the weights."""
    os.makedirs(out_dir, exist_ok=True)
    try:
        from modeling_emosem.pipeline_emosem import save_pipeline
    except ImportError:
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        return
    save_pipeline(model, processor, out_dir)
