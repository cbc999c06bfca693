"""`emosem predict`: run a saved EmoSEM over images and folders, write one JSON per image and overlay PNGs.

    from emosem.predict import load_pipeline, predict_to_folder
    pipe = load_pipeline("path/to/checkpoint")
    report = predict_to_folder(pipe, ["art/", "extra.jpg"], "out/", emotions=["awe", "fear"])

For an image `art/starry.jpg` the output folder gets

- `starry.json`: the image's path and size, the settings, and per emotion `emotion`, `score`, `explanation`,
  `mask_fraction` (share of the image in the mask) and the names of the PNGs below;
- `starry_<emotion>.png`: the overlay (saliency heat map, mask outline, caption), the image's aspect ratio;
- `starry_<emotion>_mask.png`: the binary mask at the image's size (mode "L", 0/255);
- `starry_grid.png`: all requested emotions side by side (when there are several).

Images with the same file stem get `-2`, `-3`, ... appended. Output names are sanitised (only letters, digits,
`-`, `_` and `.`, no leading dot, at most `MAX_STEM` characters), so a file name never leads outside `out/`.
A file that cannot be read is reported (by path) and skipped; the others are still written.

Every output file is written to a temporary name in `out/` and renamed into place, so a crash or a full disk
never leaves a partial file under its final name; a write failure (e.g. no space left on the device) raises
`OutputWriteError` (an `OSError`) naming the file, and stops the run.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .atomic_io import OutputWriteError, write_atomic  # noqa: F401  (OutputWriteError: part of this API)
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Longest output stem: with `_<emotion>_mask.png` and a `-N` suffix, names stay far below the 255-byte limit.
MAX_STEM = 100






def load_pipeline(model: str | os.PathLike, device: str | int | None = None, **pipeline_kwargs):
    """An `EmotionSegmentationPipeline` for a checkpoint folder (or Hub repo id) written by `save_pretrained`.

    Uses the installed `modeling_emosem` classes (no `trust_remote_code` needed); the folder must hold the
    model and the processor (`processor_config.json`). `device` None: the first GPU if there is one, else CPU.
    """
    from emosem.integrity import check_model_folder
    from modeling_emosem import EmoSEMModel, EmoSEMProcessor, EmotionSegmentationPipeline

    path = os.fspath(model)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{path}: not an EmoSEM checkpoint folder (no config.json)")
    if not os.path.exists(path) and (path.startswith((".", "/", "~")) or path.count("/") > 1):
        raise FileNotFoundError(f"{path}: no such model folder")
    check_model_folder(path)  # a truncated / damaged weights file: CorruptFileError naming it
    try:
        emosem = EmoSEMModel.from_pretrained(path).eval()
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot load an EmoSEM model from it ({err})") from err
    try:
        processor = EmoSEMProcessor.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{path}: no EmoSEM processor saved with the model ({err})") from err
    return EmotionSegmentationPipeline(
        model=emosem, processor=processor, task="emotion-segmentation", device=device,
        **pipeline_kwargs,
    )


def collect_images(inputs: Sequence[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Files as given (whatever their extension: a bad one is reported later, by name) and the image files
    (by extension, sorted) of folders. Raises FileNotFoundError naming a missing path, ValueError when nothing
    is left."""
    if not inputs:
        raise ValueError("no images given")
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ValueError(f"{path}: the folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            found.extend(files)
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return found


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = "".join(c if (c.isalnum() and c.isprintable()) or c in "-_." else "_" for c in path.stem)
        stem = stem.lstrip(".")[:MAX_STEM] or "image"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


@dataclass
class PredictReport:
    """What `predict_to_folder` wrote, and which inputs failed (path -> message)."""

    json_files: list[Path] = field(default_factory=list)
    png_files: list[Path] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _write_one(image_path: Path, stem: str, results: list[dict], out: Path, settings: dict, grid: bool) -> tuple[Path, list[Path]]:
    from emosem.visualization import save_overlays

    size = results[0]["mask"].size
    try:
        pngs = save_overlays(str(image_path), results, out, stem=stem, with_grid=grid)
    except OSError as err:
        reason = "no space left on the device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        target = err.filename or str(out)
        raise OutputWriteError(err.errno, f"{target}: cannot write the output file ({reason})", str(target)) from err
    rows = []
    for r in results:
        mask_path = out / f"{stem}_{r['emotion']}_mask.png"
        write_atomic(mask_path, lambda f, mask=r["mask"]: mask.save(f, format="PNG"))
        pngs.append(mask_path)
        rows.append(
            {
                "emotion": r["emotion"],
                "score": round(float(r["score"]), 6),
                "explanation": r["explanation"],
                "mask_fraction": round(float((np.asarray(r["mask"]) > 0).mean()), 6),
                "overlay": f"{stem}_{r['emotion']}.png",
                "mask": mask_path.name,
            }
        )
    record = {
        "image": str(image_path),
        "width": size[0],
        "height": size[1],
        **settings,
        "results": rows,
    }
    json_path = out / f"{stem}.json"
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    write_atomic(json_path, lambda f: f.write(text.encode("utf-8")))
    return json_path, pngs


def predict_to_folder(
    pipe,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    emotions: Sequence[str] | str | None = None,
    batch_size: int = 1,
    recursive: bool = False,
    grid: bool = True,
    on_result=None,
    **call_kwargs: Any,
) -> PredictReport:
    """Run `pipe` on the images of `inputs` (files and folders) and write the files described above.

    `call_kwargs` go to the pipeline (`threshold`, `seed`, decoding options). `on_result(path, error_or_None)`
    is called after each image (for progress). Unknown emotions raise before any image is read.
    """
    images = collect_images(inputs, recursive=recursive)
    pipe.resolve_emotions(emotions)  # fail fast on an unknown emotion or an empty list
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(images)
    settings = {
        "emotions": list(emotions) if isinstance(emotions, (list, tuple)) else emotions,
        "seed": call_kwargs.get("seed", 0),
        "threshold": call_kwargs.get("threshold", 0.5),
        "score": "mean saliency inside the mask (0 when the mask is empty)",
    }
    report = PredictReport()
    for start in range(0, len(images), batch_size):
        chunk = list(range(start, min(start + batch_size, len(images))))
        try:
            outputs = pipe([str(images[i]) for i in chunk], emotions=emotions, batch_size=len(chunk),
                           position_offset=start, **call_kwargs)
            pairs = list(zip(chunk, outputs))
        except (ValueError, FileNotFoundError, OSError):
            # One bad file spoils its batch: redo the batch image by image to name it and keep the others.
            pairs = []
            for i in chunk:
                try:
                    pairs.append((i, pipe([str(images[i])], emotions=emotions, position_offset=i, **call_kwargs)[0]))
                except (ValueError, FileNotFoundError, OSError) as err:
                    report.errors[str(images[i])] = str(err)
                    if on_result:
                        on_result(images[i], str(err))
        for i, results in pairs:  # seeds follow the image's position in the whole list (position_offset)
            json_path, pngs = _write_one(images[i], stems[i], results, out, settings, grid)
            report.json_files.append(json_path)
            report.png_files.extend(pngs)
            if on_result:
                on_result(images[i], None)
    return report
