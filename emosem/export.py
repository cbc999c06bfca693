"""Write a trained EmoSEM as a Hub folder: weights, code, processor, the pipeline, and checksums."""

from __future__ import annotations

import os


def save_model_folder(model, processor, out_dir: str) -> None:
    """Save through the pipeline's own save_pretrained, so that model, processor, `custom_pipelines` in
    config.json and `pipeline_emosem.py` all land in `out_dir`: it then loads with `AutoModel`,
    `AutoProcessor` and `pipeline("emotion-segmentation", model=out_dir, trust_remote_code=True)`.
    `checksums.json` then lists the folder's top-level files, so loading detects damaged weights."""
    import modeling_emosem  # noqa: F401  (registers the task)
    from transformers import pipeline

    from .integrity import write_checksums

    os.makedirs(out_dir, exist_ok=True)
    pipe = pipeline(task="emotion-segmentation", model=model, processor=processor)
    pipe.save_pretrained(out_dir)
    # Sub-folders of a training run (checkpoints/, logs/) carry their own integrity checks.
    nested = []
    for root, _, names in os.walk(out_dir):
        if os.path.abspath(root) != os.path.abspath(out_dir):
            nested += [os.path.relpath(os.path.join(root, n), out_dir).replace(os.sep, "/") for n in names]
    write_checksums(out_dir, exclude=nested)
