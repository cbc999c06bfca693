"""Feature cache: encoder outputs stored once, equal training losses, stale caches refused, resume, commands."""

import json
import os

import numpy as np
import pytest
import torch

from datasets_emosem import make_synthetic_artworks
from emosem.feature_cache import (
    CachedRows,
    FeatureCache,
    StaleCacheError,
    build_feature_cache,
    check_frozen_encoders,
    make_cached_collate_fn,
    open_feature_cache,
)
from emosem.training import load_train_config, train
from modeling_emosem import EMOTIONS, EmoSEMProcessor
from tests.helpers import tiny_model, tiny_processor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "examples", "configs", "quickstart.yaml")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rows():
    return make_synthetic_artworks(20, seed=5, image_size=64)["train"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, rows):
    model, proc = tiny_model(seed=1).eval(), tiny_processor()
    out = tmp_path_factory.mktemp("cache")
    manifest = build_feature_cache(model, proc, rows, out, batch_size=3, shard_size=4, progress=False)
    return model, proc, out, manifest


def test_cache_holds_the_encoder_outputs_in_fp16(built, rows):
    model, proc, out, manifest = built
    assert manifest["complete"] and manifest["dtype"] == "float16" and manifest["num_shards"] == 4
    assert manifest["dataset"]["num_rows"] == len(rows) == 16
    cache = open_feature_cache(out, model, proc, rows)
    pixels = proc.encode_images([rows[i]["image"] for i in (0, 7, 13)])
    with torch.no_grad():
        feats = model.get_image_features(pixels["pixel_values"], pixels["clip_pixel_values"])
    got = cache.load([cache.slot(i, rows[i]["painting"]) for i in (0, 7, 13)])
    assert got["image_embeddings"].dtype == torch.float16
    torch.testing.assert_close(got["image_embeddings"].float(), feats.image_embeddings, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(got["clip_features"].float(), feats.clip_features, atol=5e-3, rtol=2e-3)
    assert torch.equal(got["original_sizes"], pixels["original_sizes"])
    assert torch.equal(got["reshaped_input_sizes"], pixels["reshaped_input_sizes"])
    # The manifest records the identity the cache is checked against.
    enc = manifest["encoder"]
    assert set(enc) >= {"config_hash", "weights_hash", "preprocessing"}
    assert enc["preprocessing"]["sam"]["image_mean"] == list(proc.image_processor.image_mean)
    assert enc["preprocessing"]["clip"]["crop_size"] == {"height": 32, "width": 32}


def test_rows_showing_the_same_image_share_one_slot(tmp_path, rows):
    from datasets import concatenate_datasets

    doubled = concatenate_datasets([rows, rows])
    manifest = build_feature_cache(tiny_model(), tiny_processor(), doubled, tmp_path, progress=False)
    assert (manifest["dataset"]["num_rows"], manifest["dataset"]["num_images"]) == (32, 16)
    assert manifest["images_encoded"] == 16
    cache = FeatureCache(tmp_path)
    assert all(cache.slot(i) == cache.slot(i + 16) for i in range(16))


def test_cached_batches_equal_pixel_batches(built, rows):
    from datasets_emosem import make_collate_fn

    model, proc, out, _ = built
    cache = open_feature_cache(out, model, proc, rows)
    data = CachedRows(rows, cache)
    assert "image" not in data.rows.column_names  # the images are never decoded
    cached = make_cached_collate_fn(proc, EMOTIONS)([data[i] for i in (2, 3, 11)])
    pixels = make_collate_fn(proc, emotion_names=EMOTIONS)([rows[i] for i in (2, 3, 11)])
    for key in ("emotion_ids", "prompt_input_ids", "input_ids", "attention_mask", "labels", "mask_labels",
                "original_sizes", "reshaped_input_sizes"):
        assert torch.equal(cached[key], pixels[key]), key
    assert cached["image_embeddings"].dtype == torch.float32 and "pixel_values" not in cached


def _run(tmp_path, name, *extra):
    return load_train_config(QUICKSTART, [
        "--synthetic", "{n: 40, seed: 3, image_size: 64}", "--per_device_batch_size", "4", "--max_steps", "3",
        "--output_dir", str(tmp_path / name), "--report_to", "none", "--eval_text_metrics", "false",
        "--checkpoint_every", "0", "--log_every", "1", "--model_overrides", "{}", *extra,
    ])


def _losses(path):
    records = [json.loads(line) for line in open(os.path.join(path, "log.jsonl"))]
    return [[r[k] for k in ("train/loss", "train/mask_loss", "train/lm_loss")] for r in records if "step" in r]


def test_training_from_the_cache_gives_the_same_losses(tmp_path):
    from emosem.feature_cache import main as cache_main

    # The command line builds the cache the way train() builds its model (same seed -> same random weights).
    args = ["--synthetic", "{n: 40, seed: 3, image_size: 64}", "--model_overrides", "{}"]
    cache_main(["--config", QUICKSTART, "--out", str(tmp_path / "cache"), *args])
    assert os.path.isfile(tmp_path / "cache" / "train" / "manifest.json")
    assert os.path.isfile(tmp_path / "cache" / "eval" / "manifest.json")
    pixels = train(_run(tmp_path, "pixels"))
    cached = train(_run(tmp_path, "cached", "--feature-cache", str(tmp_path / "cache")))
    a, b = _losses(tmp_path / "pixels"), _losses(tmp_path / "cached")
    assert len(a) == len(b) == 3
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)  # fp16 features
    assert pixels["final_eval"]["num_samples"] == cached["final_eval"]["num_samples"] == 4
    assert cached["final_eval"]["seg_mean_iou"] == pytest.approx(pixels["final_eval"]["seg_mean_iou"], abs=1e-2)


def test_trainable_encoders_refuse_the_cache(tmp_path):
    model = tiny_model(trainable_modules=["clip", "mask_head"])
    with pytest.raises(ValueError, match=r"only valid for frozen encoders.*\['clip'\]"):
        check_frozen_encoders(model)
    # The quickstart trains every module (random encoders): training from a cache is refused up front.
    with pytest.raises(ValueError, match=r"trainable_modules includes \['image_encoder', 'clip'\]"):
        train(load_train_config(QUICKSTART, ["--synthetic", "{n: 12, seed: 3, image_size: 64}", "--max_steps", "1",
                                             "--output_dir", str(tmp_path / "r"), "--report_to", "none",
                                             "--feature_cache", str(tmp_path / "none")]))


def test_stale_caches_are_refused_naming_what_differs(built, rows):
    model, proc, out, _ = built
    with pytest.raises(StaleCacheError, match="other encoder weights"):
        open_feature_cache(out, tiny_model(seed=2), proc, rows)
    with pytest.raises(StaleCacheError, match="another SAM vision / CLIP vision configuration"):
        open_feature_cache(out, tiny_model(seed=1, clip_feature_layer=-2), proc, rows)
    other_mean = EmoSEMProcessor.from_preset("tiny")
    other_mean.image_processor.image_mean = [0.5, 0.5, 0.5]
    with pytest.raises(StaleCacheError, match=r"other SAM preprocessing \(image_mean"):
        open_feature_cache(out, model, other_mean, rows)
    other_crop = EmoSEMProcessor.from_preset("tiny")
    other_crop.clip_image_processor.size = {"shortest_edge": 40}
    with pytest.raises(StaleCacheError, match=r"other CLIP preprocessing \(size"):
        open_feature_cache(out, model, other_crop, rows)
    with pytest.raises(StaleCacheError, match="another dataset"):
        open_feature_cache(out, model, proc, make_synthetic_artworks(20, seed=6, image_size=64)["train"])
    with pytest.raises(StaleCacheError, match="another dataset"):
        open_feature_cache(out, model, proc, rows.select(range(15)))
    # Row-level check: a row that is not the painting the cache holds there.
    cache = FeatureCache(out)
    with pytest.raises(StaleCacheError, match="row 3 is painting 'x'"):
        cache.slot(3, "x")
    # A folder holding another cache is not overwritten by accident.
    with pytest.raises(StaleCacheError, match="overwrite=True"):
        build_feature_cache(tiny_model(seed=2), proc, rows, out, progress=False)


def test_interrupted_build_resumes_and_incomplete_cache_is_refused(tmp_path, rows):
    model, proc = tiny_model(seed=1), tiny_processor()
    build_feature_cache(model, proc, rows, tmp_path, shard_size=4, progress=False)
    with open(tmp_path / "manifest.json") as f:
        manifest = json.load(f)
    manifest["complete"] = False  # what a crash before the last shard leaves
    with open(tmp_path / "manifest.json", "w") as f:
        json.dump(manifest, f)
    before = (tmp_path / "shard-00001.safetensors").read_bytes()
    os.remove(tmp_path / "shard-00002.safetensors")
    with pytest.raises(StaleCacheError, match=r"incomplete \(3 of 4 shards\)"):
        FeatureCache(tmp_path)
    again = build_feature_cache(model, proc, rows, tmp_path, shard_size=4, progress=False)
    assert again["images_encoded"] == 4 and again["complete"]
    assert (tmp_path / "shard-00001.safetensors").read_bytes() == before
    open_feature_cache(tmp_path, model, proc, rows)


def test_evaluation_from_the_cache_matches_pixels(tmp_path):
    from emosem.evaluation import main as evaluate_main
    from emosem.export import save_model_folder
    from emosem.feature_cache import main as cache_main

    model_dir = tmp_path / "model"
    save_model_folder(tiny_model(seed=4), tiny_processor(), str(model_dir))
    data = ["--dataset", "synthetic", "--synthetic-n", "30", "--synthetic-image-size", "64"]
    cache_main(["--model", str(model_dir), "--out", str(tmp_path / "cache"), *data])
    common = ["--model", str(model_dir), *data, "--greedy", "--no-text-metrics", "--device", "cpu"]
    pixels = evaluate_main([*common, "--out", str(tmp_path / "px")])
    cached = evaluate_main([*common, "--out", str(tmp_path / "fc"), "--feature-cache", str(tmp_path / "cache")])
    assert cached["num_samples"] == pixels["num_samples"] == 3
    assert cached["seg_mean_iou"] == pytest.approx(pixels["seg_mean_iou"], abs=1e-2)
    a = np.load(tmp_path / "px" / "saliency.npz")
    b = np.load(tmp_path / "fc" / "saliency.npz")
    for key in a.files:
        np.testing.assert_allclose(a[key].astype(np.float32), b[key].astype(np.float32), atol=1e-2)
    # A cache of another evaluation set is refused.
    with pytest.raises(StaleCacheError, match="another dataset"):
        evaluate_main(["--model", str(model_dir), "--dataset", "synthetic", "--synthetic-n", "40", "--synthetic-image-size",
                       "64", "--greedy", "--no-text-metrics", "--out", str(tmp_path / "x"),
                       "--feature-cache", str(tmp_path / "cache")])


def test_variants_without_clip_cross_attention_are_refused(tmp_path):
    from modeling_emosem import EmoSEMConfig, EmoSEMModel

    from emosem.feature_cache import build_feature_cache

    model = EmoSEMModel(EmoSEMConfig.from_preset("sca-tiny"))
    rows = make_synthetic_artworks(6, seed=0, image_size=64)["train"]
    with pytest.raises(ValueError, match="feature_cache: supported for EmoSEM with explainer='gpt2' and bridge='prefix_adapter' only"):
        build_feature_cache(model, tiny_processor(), rows, tmp_path / "cache", progress=False)
