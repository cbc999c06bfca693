"""Write a trained EmoSEM as a Hub folder: weights, code, processor and the pipeline."""

from __future__ import annotations

import os


def save_model_folder(model, processor, out_dir: str) -> None:
    """Save through the pipeline's own save_pretrained, so that model, processor, `custom_pipelines` in
    config.json and `pipeline_emosem.py` all land in `out_dir`: it then loads with `AutoModel`,
    `AutoProcessor` and `pipeline("emotion-segmentation", model=out_dir, trust_remote_code=True)`."""
    import modeling_emosem  # noqa: F401  (registers the task)
    from transformers import pipeline

    os.makedirs(out_dir, exist_ok=True)
    pipe = pipeline(task="emotion-segmentation", model=model, processor=processor)
    pipe.save_pretrained(out_dir)
