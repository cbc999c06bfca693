"""The EmoSEM web demo (Gradio): upload an artwork, choose emotions (or "all"), see overlays and explanations.

    emosem demo --model CHECKPOINT             # http://127.0.0.1:7860
    python examples/app.py --model CHECKPOINT  # the same; also the entry file of a Hugging Face Space

`build_demo(model)` returns the `gr.Blocks` (tests launch it themselves). Every failure of a request (an
oversized upload, a file that is not a decodable image, too many pixels, no emotion chosen) is shown as a
message in the page (element `#status`); the server keeps running.
"""

from __future__ import annotations

import os
from typing import Any

ALL = "all"
DEFAULT_MAX_UPLOAD_MB = 20.0


def _load(model: Any, device=None):
    if isinstance(model, (str, os.PathLike)):
        from emosem.predict import load_pipeline

        return load_pipeline(model, device=device)
    return model  # an EmotionSegmentationPipeline already


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _results_text(results: list[dict]) -> str:
    """One line per emotion: `awe (score 0.62): explanation` (whitespace in the explanation collapsed)."""
    return "\n".join(f"{r['emotion']} (score {r['score']:.2f}): {_one_line(r['explanation'])}" for r in results)


def make_handler(pipe, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_pixels: int | None = None):
    """The function behind the Run button: (file path, emotions, seed, threshold) -> (gallery, text, status)."""
    from emosem.visualization import overlay
    from modeling_emosem.image_utils_emosem import load_image
    from modeling_emosem.pipeline_emosem import DEFAULT_MAX_PIXELS

    limit_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels

    def run(file_path, emotions, seed, threshold):
        try:
            if not file_path:
                raise ValueError("upload an artwork first")
            name = os.path.basename(str(file_path))
            size = os.path.getsize(file_path)
            if size > max_upload_mb * 1e6:
                raise ValueError(f"{name}: the file is {size / 1e6:.1f} MB, over the limit of {max_upload_mb:g} MB")
            emotions = list(emotions or [])
            if not emotions:
                raise ValueError("choose at least one emotion, or 'all'")
            chosen = None if ALL in emotions else emotions
            results = pipe(str(file_path), emotions=chosen, seed=int(seed or 0), threshold=float(threshold),
                           max_pixels=limit_pixels)
            # The pipeline names the input by its temporary upload path; the page shows the file name instead.
            art = load_image(str(file_path), name=name)
            gallery = [(overlay(art, r), f"{r['emotion']} ({r['score']:.2f})") for r in results]
            return gallery, _results_text(results), f"Done: {len(results)} emotion(s) for {name}."
        except (ValueError, FileNotFoundError, OSError) as err:
            message = str(err)
            if file_path:  # name the file as the user knows it, not by the server's temporary path
                base = os.path.basename(str(file_path))
                message = message.replace(repr(str(file_path)), base).replace(str(file_path), base)
            return [], "", f"Error: {message}"

    return run


def build_demo(model: Any, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_pixels: int | None = None, device=None):
    """The demo as `gr.Blocks`, for a checkpoint folder / Hub id or an `EmotionSegmentationPipeline`."""
    import gradio as gr

    pipe = _load(model, device=device)
    run = make_handler(pipe, max_upload_mb=max_upload_mb, max_pixels=max_pixels)
    emotions = list(pipe.processor.emotions)
    with gr.Blocks(title="EmoSEM: segment and explain emotion stimuli in visual art", analytics_enabled=False) as demo:
        gr.Markdown(
            "# EmoSEM\nUpload an artwork and choose emotions: EmoSEM marks the region that evokes each emotion "
            "(heat map and outline) and explains it in words. The score is the mean saliency inside the mask."
        )
        with gr.Row():
            with gr.Column():
                artwork = gr.File(label="Artwork (an image file)", file_count="single", type="filepath",
                                  elem_id="artwork")
                chosen = gr.CheckboxGroup(choices=[ALL, *emotions], value=[ALL], label="Emotions",
                                          elem_id="emotions")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
                    threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Mask threshold",
                                          elem_id="threshold")
                button = gr.Button("Segment and explain", variant="primary", elem_id="run")
                status = gr.Markdown("", elem_id="status")
            with gr.Column():
                gallery = gr.Gallery(label="Overlays", columns=2, elem_id="overlays", format="png")
                text = gr.Textbox(label="Explanations", lines=8, interactive=False, elem_id="explanations")
        button.click(run, inputs=[artwork, chosen, seed, threshold], outputs=[gallery, text, status])
    demo.max_upload_mb = max_upload_mb
    return demo


def launch(model: Any, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
           device=None, **launch_kwargs):
    """Build and serve the demo (blocks until interrupted unless `prevent_thread_lock=True`)."""
    demo = build_demo(model, max_upload_mb=max_upload_mb, device=device)
    # Gradio refuses larger uploads before they reach the handler (which checks again).
    launch_kwargs.setdefault("max_file_size", int(max_upload_mb * 1e6))
    return demo.launch(server_name=host, server_port=port, **launch_kwargs)
