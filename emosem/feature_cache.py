"""Feature cache: run the frozen image encoders (SAM, CLIP) once per image and reuse them every epoch.

EmoSEM's cost is dominated by the two frozen encoders (SAM ViT-B at 1024 px above all), which depend on
the image alone. `build_feature_cache` runs them once over a dataset and stores

    DIR/manifest.json             identity (model, weights, preprocessing, dtype, dataset) and layout
    DIR/slots.json                one entry per distinct image: painting name and image key
    DIR/index.safetensors         row_to_slot (num_rows,) int64: dataset row i reads image slot row_to_slot[i]
    DIR/shard-00000.safetensors   image_embeddings (k, C, h, w), clip_features (k, S, D) in the storage dtype
                                  (float16 by default), original_sizes / reshaped_input_sizes (k, 2) int64

Rows that show the same image (ArtEmis has ~5 annotations per painting) share one slot. Shards are
written atomically; an interrupted build resumes from the first missing shard. `FeatureCache.verify`
refuses a cache built for other encoder weights, another SAM/CLIP configuration, other preprocessing,
or another dataset (rows, order or images), naming what differs.

Training from the cache (`TrainConfig.feature_cache`) is exact only while the encoders are frozen:
`check_frozen_encoders` refuses a model whose `trainable_modules` name "image_encoder" or "clip".
`CachedRows` + `make_cached_collate_fn` give the DataLoader the same batches as the pixel path
(`datasets_emosem.make_collate_fn`), with `image_embeddings` / `clip_features` instead of pixels and
without decoding the images (masks only need the image size, which the cache stores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

FORMAT = "emosem-feature-cache/1"
MANIFEST = "manifest.json"
SLOTS = "slots.json"
INDEX = "index.safetensors"
FEATURE_KEYS = ("image_embeddings", "clip_features")
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
# Image-processor settings that change the pixels the encoders see (the rest is bookkeeping).
_SAM_KEYS = ("size", "pad_size", "do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize",
             "image_mean", "image_std", "do_pad", "do_convert_rgb")
_CLIP_KEYS = ("size", "crop_size", "do_resize", "resample", "do_center_crop", "do_rescale", "rescale_factor",
              "do_normalize", "image_mean", "image_std", "do_convert_rgb")
# Config keys that do not change what an encoder computes.
_VOLATILE_CONFIG_KEYS = ("transformers_version", "dtype", "torch_dtype", "architectures", "output_hidden_states",
                         "output_attentions", "return_dict", "use_cache")


class StaleCacheError(ValueError):
    """The feature cache was built for another model, other preprocessing or another dataset."""


# --------------------------------------------------------------------------- identity
def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _clean_config(config) -> dict:
    data = config.to_dict()
    return {k: v for k, v in data.items() if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):  # enums (PIL resampling)
        return int(value.value) if isinstance(value.value, int) else str(value.value)
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _weights_hash(modules: Sequence[torch.nn.Module]) -> str:
    """SHA-256 of the encoders' parameters and buffers (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for prefix, module in zip(("sam_vision", "clip"), modules):
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{prefix}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def preprocessing_identity(processor) -> dict:
    """The image settings of the processor that decide the encoders' input pixels."""
    sam = processor.image_processor.to_dict()
    clip = processor.clip_image_processor.to_dict()
    return {
        "sam": {k: _jsonable(sam.get(k)) for k in _SAM_KEYS},
        "clip": {k: _jsonable(clip.get(k)) for k in _CLIP_KEYS},
    }


def encoder_identity(model, processor) -> dict:
    """What the cached features depend on: encoder configs, encoder weights and image preprocessing."""
    cfg = model.config
    configs = {
        "sam_vision": _clean_config(cfg.sam_config.vision_config),
        "clip_vision": _clean_config(cfg.vision_config),
        "clip_feature_layer": cfg.clip_feature_layer,
    }
    return {
        "config_hash": _sha256_json(configs),
        "weights_hash": _weights_hash([model.sam.vision_encoder, model.clip]),
        "preprocessing": preprocessing_identity(processor),
        "shapes": {
            "image_embeddings": [cfg.sam_config.mask_decoder_config.hidden_size, cfg.image_embedding_size,
                                 cfg.image_embedding_size],
            "clip_features": [(cfg.clip_image_size // cfg.vision_config.patch_size) ** 2 + 1,
                              cfg.vision_config.hidden_size],
        },
    }


def _image_keys(dataset) -> list[str]:
    """One key per row naming its image: the file path, or a hash of the encoded bytes."""
    from datasets import Image as ImageFeature

    if not hasattr(dataset, "cast_column") or "image" not in getattr(dataset, "column_names", []):
        raise TypeError("the feature cache needs a datasets.Dataset with an 'image' column")
    raw = dataset.cast_column("image", ImageFeature(decode=False))["image"]
    keys = []
    for i, item in enumerate(raw):
        if item is None:
            raise ValueError(f"row {i}: no image")
        if item.get("bytes") is not None:
            keys.append("sha1:" + hashlib.sha1(item["bytes"]).hexdigest())
        elif item.get("path"):
            keys.append("path:" + os.path.abspath(item["path"]))
        else:
            raise ValueError(f"row {i}: image has neither bytes nor a path")
    return keys


def dataset_layout(dataset) -> tuple[dict, list[int], list[dict]]:
    """-> (identity {num_rows, num_images, fingerprint}, row_to_slot, slots [{painting, key, row}])."""
    keys = _image_keys(dataset)
    paintings = list(dataset["painting"]) if "painting" in dataset.column_names else [str(i) for i in range(len(keys))]
    slot_of: dict[str, int] = {}
    row_to_slot, slots = [], []
    digest = hashlib.sha256()
    for row, (key, painting) in enumerate(zip(keys, paintings)):
        digest.update(f"{painting}\t{key}\n".encode())
        if key not in slot_of:
            slot_of[key] = len(slots)
            slots.append({"painting": str(painting), "key": key, "row": row})
        row_to_slot.append(slot_of[key])
    identity = {"num_rows": len(keys), "num_images": len(slots), "fingerprint": digest.hexdigest()}
    return identity, row_to_slot, slots


def check_cacheable(model) -> None:
    """The cache stores SAM embeddings and CLIP features of the GPT-2 explainer's cross-attention; the
    variants read other image features (SCAbase: none, EmoSEM-LLaVA: LLaVA's own vision tower)."""
    cfg = model.config
    if getattr(cfg, "explainer", "gpt2") != "gpt2" or getattr(cfg, "bridge", "prefix_adapter") != "prefix_adapter":
        raise ValueError(
            f"feature_cache: supported for EmoSEM with explainer='gpt2' and bridge='prefix_adapter' only; this model "
            f"has explainer={cfg.explainer!r}, bridge={cfg.bridge!r}. Train or evaluate it from pixels."
        )


def check_frozen_encoders(model) -> None:
    """Training from cached features is exact only when neither image encoder is trained (and the model is
    one whose image features the cache holds)."""
    check_cacheable(model)
    trained = [name for name in ("image_encoder", "clip") if name in model.config.trainable_modules]
    if trained:
        raise ValueError(
            f"feature_cache: the cached SAM/CLIP features are only valid for frozen encoders, but "
            f"trainable_modules includes {trained}. Remove them from model_overrides.trainable_modules "
            f"(the paper freezes both) or train without --feature_cache."
        )


# --------------------------------------------------------------------------- reading
class FeatureCache:
    """A built cache folder: `slot(row)`, `load(slots)`; `verify(model, processor, dataset)` refuses stale ones."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        manifest_path = os.path.join(self.path, MANIFEST)
        if not os.path.isfile(manifest_path):
            raise FileNotFoundError(f"{self.path}: not a feature cache (no {MANIFEST}); build one with examples/cache_features.py")
        with open(manifest_path, encoding="utf-8") as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != FORMAT:
            raise StaleCacheError(f"{self.path}: cache format {self.manifest.get('format')!r}, expected {FORMAT!r}; rebuild it")
        if not self.manifest.get("complete"):
            raise StaleCacheError(
                f"{self.path}: the cache is incomplete ({_count_shards(self.path, self.manifest)} of "
                f"{self.manifest['num_shards']} shards); run examples/cache_features.py again to finish it"
            )
        with safe_open(os.path.join(self.path, INDEX), framework="pt") as f:
            self.row_to_slot = f.get_tensor("row_to_slot")
        with open(os.path.join(self.path, SLOTS), encoding="utf-8") as f:
            self.slots = json.load(f)
        self.shard_size = int(self.manifest["shard_size"])
        self.dtype = _DTYPES[self.manifest["dtype"]]
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return int(self.row_to_slot.shape[0])

    def __getstate__(self):  # DataLoader workers open their own memory maps
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def slot(self, row: int, painting: str | None = None) -> int:
        """The image slot of dataset row `row`; with `painting`, check the row still shows that painting."""
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} is outside the feature cache's {len(self)} rows ({self.path})")
        slot = int(self.row_to_slot[row])
        if painting is not None and str(painting) != self.slots[slot]["painting"]:
            raise StaleCacheError(
                f"{self.path}: row {row} is painting {painting!r} but the cache holds {self.slots[slot]['painting']!r} "
                f"there; the dataset changed since the cache was built, rebuild it"
            )
        return slot

    def _handle(self, shard: int):
        if shard not in self._handles:
            self._handles[shard] = safe_open(os.path.join(self.path, _shard_name(shard)), framework="pt")
        return self._handles[shard]

    def load(self, slots: Sequence[int]) -> dict[str, torch.Tensor]:
        """Stacked `image_embeddings`, `clip_features` (storage dtype), `original_sizes`, `reshaped_input_sizes`."""
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in (*FEATURE_KEYS, "original_sizes", "reshaped_input_sizes")}
        for slot in slots:
            shard, offset = divmod(int(slot), self.shard_size)
            handle = self._handle(shard)
            for key in parts:
                parts[key].append(handle.get_slice(key)[offset : offset + 1])
        return {k: torch.cat(v) for k, v in parts.items()}

    def verify(self, model, processor, dataset=None) -> None:
        """Raise `StaleCacheError` unless the cache matches the model's encoders, the processor's image
        settings and (when given) the dataset's rows and images."""
        built = self.manifest["encoder"]
        now = encoder_identity(model, processor)
        problems = []
        if built["config_hash"] != now["config_hash"]:
            problems.append("another SAM vision / CLIP vision configuration (config_hash differs)")
        if built["weights_hash"] != now["weights_hash"]:
            problems.append(f"other encoder weights (weights_hash {built['weights_hash'][:12]} vs {now['weights_hash'][:12]})")
        for part in ("sam", "clip"):
            differ = {k: (built["preprocessing"][part].get(k), v) for k, v in now["preprocessing"][part].items()
                      if built["preprocessing"][part].get(k) != v}
            if differ:
                detail = ", ".join(f"{k}: cache {a!r} vs now {b!r}" for k, (a, b) in differ.items())
                problems.append(f"other {part.upper()} preprocessing ({detail})")
        if dataset is not None:
            ident, _, _ = dataset_layout(dataset)
            built_ds = self.manifest["dataset"]
            if ident != built_ds:
                problems.append(
                    f"another dataset ({built_ds['num_rows']} rows / {built_ds['num_images']} images, fingerprint "
                    f"{built_ds['fingerprint'][:12]}; now {ident['num_rows']} rows / {ident['num_images']} images, "
                    f"fingerprint {ident['fingerprint'][:12]})"
                )
        if problems:
            raise StaleCacheError(
                f"feature cache {self.path} is stale: it was built for " + "; ".join(problems)
                + ". Rebuild it with examples/cache_features.py (or pass overwrite=True / --overwrite)."
            )


def resolve_cache_dir(path: str | os.PathLike, role: str) -> str | None:
    """`path` itself when it is a cache, else `path/<role>` when that is one, else None."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, MANIFEST)):
        return path
    sub = os.path.join(path, role)
    return sub if os.path.isfile(os.path.join(sub, MANIFEST)) else None


def open_feature_cache(path, model, processor, dataset=None, role: str = "train") -> FeatureCache:
    """Open and verify the cache at `path` (or `path/<role>`)."""
    check_cacheable(model)
    resolved = resolve_cache_dir(path, role)
    if resolved is None:
        raise FileNotFoundError(
            f"feature cache {os.fspath(path)!r}: neither it nor {os.path.join(os.fspath(path), role)!r} holds a "
            f"{MANIFEST}; build it with examples/cache_features.py"
        )
    cache = FeatureCache(resolved)
    cache.verify(model, processor, dataset)
    return cache


# --------------------------------------------------------------------------- building
def _shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.safetensors"


def _count_shards(path: str, manifest: dict) -> int:
    return sum(os.path.isfile(os.path.join(path, _shard_name(s))) for s in range(manifest["num_shards"]))


def _atomic_json(path: str, value: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


@torch.inference_mode()
def build_feature_cache(
    model,
    processor,
    dataset,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 8,
    shard_size: int = 64,
    dtype: str = "float16",
    device: str | torch.device | None = None,
    autocast: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Run the frozen SAM and CLIP encoders once per distinct image of `dataset` and store the features.

    Resumable: shards already on disk from an interrupted build with the same identity are kept. A folder
    holding a cache of another identity is refused unless `overwrite=True`.
    `autocast`: on CUDA, run the encoders under bf16 autocast (features are stored in `dtype` anyway).
    Returns the manifest (with `seconds` and `images_encoded` of this call added).
    """
    from datasets_emosem.images import open_rgb

    check_cacheable(model)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    identity, row_to_slot, slots = dataset_layout(dataset)
    manifest = {
        "format": FORMAT,
        "complete": False,
        "encoder": encoder_identity(model, processor),
        "dataset": identity,
        "dtype": dtype,
        "shard_size": int(shard_size),
        "num_shards": (len(slots) + shard_size - 1) // shard_size,
        "built_with": {"device": device.type, "model_dtype": str(model.dtype).replace("torch.", ""),
                       "autocast": "bf16" if (autocast and device.type == "cuda") else "none",
                       "torch": torch.__version__},
    }
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.isfile(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            old = json.load(f)
        same = all(old.get(k) == manifest[k] for k in ("format", "encoder", "dataset", "dtype", "shard_size"))
        if not same:
            if not overwrite:
                raise StaleCacheError(
                    f"{out_dir} holds a feature cache of another model, preprocessing, dataset or layout; "
                    f"pass overwrite=True (--overwrite) to replace it, or choose another folder"
                )
            for name in os.listdir(out_dir):
                if name.startswith("shard-") or name in (MANIFEST, SLOTS, INDEX):
                    os.remove(os.path.join(out_dir, name))
        elif old.get("complete"):
            return {**old, "seconds": 0.0, "images_encoded": 0}
    _atomic_json(manifest_path, manifest)
    save_file({"row_to_slot": torch.tensor(row_to_slot, dtype=torch.int64)}, os.path.join(out_dir, INDEX))
    _atomic_json(os.path.join(out_dir, SLOTS), slots)

    was_training = model.training
    model.eval()
    store = _DTYPES[dtype]
    start, encoded = time.perf_counter(), 0
    todo = [s for s in range(manifest["num_shards"]) if not os.path.isfile(os.path.join(out_dir, _shard_name(s)))]
    bar = tqdm(total=len(slots), initial=len(slots) - sum(min(shard_size, len(slots) - s * shard_size) for s in todo),
               desc="caching features", unit="img", disable=not progress)
    image_column = dataset.select_columns(["image"])
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if autocast and device.type == "cuda"
           else contextlib.nullcontext())
    for shard in todo:
        shard_slots = slots[shard * shard_size : (shard + 1) * shard_size]
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in (*FEATURE_KEYS, "original_sizes", "reshaped_input_sizes")}
        for b in range(0, len(shard_slots), batch_size):
            chunk = shard_slots[b : b + batch_size]
            images = [open_rgb(image_column[s["row"]]["image"]) for s in chunk]
            pixels = processor.encode_images(images)
            with amp:
                feats = model.get_image_features(
                    pixels["pixel_values"].to(device, model.dtype), pixels["clip_pixel_values"].to(device, model.dtype)
                )
            parts["image_embeddings"].append(feats.image_embeddings.to(store).cpu())
            parts["clip_features"].append(feats.clip_features.to(store).cpu())
            parts["original_sizes"].append(pixels["original_sizes"].to(torch.int64))
            parts["reshaped_input_sizes"].append(pixels["reshaped_input_sizes"].to(torch.int64))
            encoded += len(chunk)
            bar.update(len(chunk))
        tensors = {k: torch.cat(v).contiguous() for k, v in parts.items()}
        for key in FEATURE_KEYS:
            if not torch.isfinite(tensors[key]).all():
                raise FloatingPointError(f"{key}: non-finite values in shard {shard} (overflow in {dtype}?)")
        path = os.path.join(out_dir, _shard_name(shard))
        save_file(tensors, path + ".tmp", metadata={"first_slot": str(shard * shard_size)})
        os.replace(path + ".tmp", path)
    bar.close()
    model.train(was_training)
    manifest["complete"] = True
    _atomic_json(manifest_path, manifest)
    return {**manifest, "seconds": time.perf_counter() - start, "images_encoded": encoded}


# --------------------------------------------------------------------------- training data
class CachedRows(torch.utils.data.Dataset):
    """Dataset rows without their image column, plus the row's cached features (no image decoding).

    Item i: the row's fields (emotion, explanation, mask, ...) and `_features`: the cache entry of its image.
    Same length and order as `dataset`, so a seeded sampler draws the same batches as from pixels.
    """

    def __init__(self, dataset, cache: FeatureCache):
        if len(dataset) != len(cache):
            raise StaleCacheError(f"{cache.path}: the cache has {len(cache)} rows, the dataset {len(dataset)}")
        self.rows = dataset.remove_columns(["image"]) if "image" in dataset.column_names else dataset
        self.cache = cache

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = dict(self.rows[int(index)])
        slot = self.cache.slot(int(index), row.get("painting"))
        row["_features"] = self.cache.load([slot])
        return row


def make_cached_collate_fn(processor, emotion_names, dtype: torch.dtype = torch.float32, with_masks: bool = True):
    """`collate(rows)` for `CachedRows`: the processor's text, emotion and mask tensors (as
    `datasets_emosem.make_collate_fn` makes them) plus `image_embeddings` / `clip_features` in `dtype`."""
    from datasets_emosem.collate import row_emotion, row_explanation, row_mask

    def collate(rows: list[dict]):
        if not rows:
            raise ValueError("cannot collate an empty batch")
        feats = {k: torch.cat([r["_features"][k] for r in rows]) for k in rows[0]["_features"]}
        sizes = [tuple(int(v) for v in s) for s in feats["original_sizes"]]
        batch = processor(emotions=[row_emotion(r, emotion_names) for r in rows],
                          explanations=[row_explanation(r) for r in rows], return_tensors="pt")
        if with_masks:
            masks = [row_mask(r) for r in rows]
            have = [m is not None for m in masks]
            if any(have):
                if not all(have):
                    raise ValueError(f"batch mixes rows with and without masks ({sum(have)} of {len(rows)} have one)")
                for m, (h, w) in zip(masks, sizes):
                    if m.shape != (h, w):
                        raise ValueError(f"mask shape {m.shape} does not match the cached image size (H, W) = {(h, w)}")
                batch["mask_labels"] = processor.encode_masks(masks, sizes)
        batch["image_embeddings"] = feats["image_embeddings"].to(dtype)
        batch["clip_features"] = feats["clip_features"].to(dtype)
        batch["original_sizes"] = feats["original_sizes"]
        batch["reshaped_input_sizes"] = feats["reshaped_input_sizes"]
        return batch

    return collate


# --------------------------------------------------------------------------- command line
def build_parser(evaluation_set: bool = True):
    """Options of `examples/cache_features.py`. With --config, unknown `--key value` are training overrides,
    so the evaluation-set options (`evaluation_set`) exist only in --model mode."""
    import argparse

    p = argparse.ArgumentParser(
        prog="cache_features", allow_abbrev=False,
        description="Run the frozen SAM and CLIP encoders once per image and store their features for "
                    "`train.py --feature_cache DIR` / `evaluate.py --feature-cache DIR`.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="training YAML (examples/configs/): caches its train rows in OUT/train and its "
                                      "evaluation rows in OUT/eval; other `--key value` are overrides, as in train.py")
    src.add_argument("--model", help="a saved EmoSEM folder: caches one evaluation set (evaluate.py's --dataset options) in OUT")
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--splits", default="train,eval", help="with --config: which of train,eval to cache")
    p.add_argument("--batch-size", type=int, default=8, help="images per encoder pass")
    p.add_argument("--shard-size", type=int, default=64, help="images per safetensors shard")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float16", help="storage dtype")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-autocast", action="store_true", help="on CUDA: run the encoders in fp32, not bf16 autocast")
    p.add_argument("--overwrite", action="store_true", help="replace a cache of another identity in OUT")
    if evaluation_set:
        ev = p.add_argument_group("evaluation set (with --model; as examples/evaluate.py)")
        ev.add_argument("--dataset", choices=["apolo", "synthetic"], default="apolo")
        ev.add_argument("--apolo-root")
        ev.add_argument("--image-root")
        ev.add_argument("--artemis-csv")
        ev.add_argument("--split", default=None)
        ev.add_argument("--on-missing", choices=["error", "skip"], default="error")
        ev.add_argument("--synthetic-n", type=int, default=400)
        ev.add_argument("--synthetic-seed", type=int, default=1)
        ev.add_argument("--synthetic-image-size", type=int, default=128)
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    config_mode = any(a == "--config" or a.startswith("--config=") for a in argv)
    parser = build_parser(evaluation_set=not config_mode)
    if config_mode:
        args, overrides = parser.parse_known_args(argv)
    else:
        args, overrides = parser.parse_args(argv), []
    opts = dict(batch_size=args.batch_size, shard_size=args.shard_size, dtype=args.dtype, device=args.device,
                autocast=not args.no_autocast, overwrite=args.overwrite)
    results = {}
    if args.config:
        from accelerate.utils import set_seed

        from .training.config import load_train_config
        from .training.data import build_datasets, build_model_and_processor

        cfg = load_train_config(args.config, overrides)
        set_seed(cfg.seed)  # as train() does before building the model: a preset's random weights match
        model, processor = build_model_and_processor(cfg)
        check_frozen_encoders(model)
        model.to(args.device)
        train_rows, eval_rows, _, _ = build_datasets(cfg)
        wanted = {s.strip() for s in args.splits.split(",") if s.strip()}
        if not wanted <= {"train", "eval"}:
            raise SystemExit(f"--splits: expected train and/or eval, got {args.splits!r}")
        for role, rows in (("train", train_rows), ("eval", eval_rows)):
            if role in wanted and rows is not None:
                results[role] = build_feature_cache(model, processor, rows, os.path.join(args.out, role), **opts)
    else:
        from transformers import AutoModel, AutoProcessor

        from .evaluation import _load_eval_dataset

        model = AutoModel.from_pretrained(args.model, trust_remote_code=True).to(args.device).eval()
        processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
        results["eval"] = build_feature_cache(model, processor, _load_eval_dataset(args), args.out, **opts)
    for role, manifest in results.items():
        ds = manifest["dataset"]
        print(f"{role}: {ds['num_rows']} rows, {ds['num_images']} images, {manifest['num_shards']} shards "
              f"({manifest['dtype']}); encoded {manifest['images_encoded']} images in {manifest['seconds']:.1f} s")
    return results
