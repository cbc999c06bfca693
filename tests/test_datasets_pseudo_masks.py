"""Pseudo-mask generation: heat-map maths with known scores, file layout, resume, tiny SAM + CLIP end to end."""

import os

import numpy as np
import pytest
from PIL import Image

from datasets_emosem import (
    ClipScorer,
    MissingFilesError,
    SamRegionProposer,
    Stimulus,
    UnsafeNameError,
    attach_pseudo_masks,
    generate_pseudo_masks,
    group_stimuli,
    heat_map,
    load_artemis,
    make_synthetic_artworks,
)
from datasets_emosem.synthetic import export_release

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks(h=20, w=30):
    """Three regions: A left block, B right block, C overlapping A's lower half."""
    a = np.zeros((h, w), bool); a[2:10, 2:12] = True
    b = np.zeros((h, w), bool); b[2:10, 18:28] = True
    c = np.zeros((h, w), bool); c[6:16, 4:10] = True
    return np.stack([a, b, c])


def test_heat_map_max_combination_and_normalisation():
    masks = _blocks()
    heat = heat_map(masks, np.array([0.9, 0.2, 0.5]))
    assert heat.dtype == np.float32 and heat.shape == (20, 30)
    assert heat.min() == 0.0 and heat.max() == 1.0
    assert np.all(heat[masks[0]] == 1.0)  # the best region, including where C overlaps it (max, not sum)
    np.testing.assert_allclose(heat[masks[2] & ~masks[0]], (0.5 - 0.2) / 0.7, rtol=1e-6)
    assert np.all(heat[masks[1]] == 0.0) and np.all(heat[~masks.any(0)] == 0.0)
    # Constant scores: covered = 1, elsewhere 0; no regions: zeros.
    one = heat_map(masks[:1], np.array([0.3]))
    assert np.array_equal(one, masks[0].astype(np.float32))
    assert not heat_map(np.zeros((0, 4, 5), bool), np.zeros(0)).any()
    # A 7x7 map (APOLO's pseudo-map size) keeps the hot spot on the left.
    small = heat_map(masks, np.array([0.9, 0.2, 0.5]), size=7)
    assert small.shape == (7, 7) and small.max() == 1.0 and np.unravel_index(small.argmax(), small.shape)[1] < 3
    with pytest.raises(ValueError, match="masks"):
        heat_map(masks, np.array([0.1]))


class ColourScorer:
    """Known similarities: a crop's similarity to a text is the crop's mean of the colour channel the
    text names ("red", "green", "blue"), so the best region for a text is known in advance."""

    def __init__(self):
        self.calls = []

    def __call__(self, crops, texts):
        self.calls.append((len(crops), list(texts)))
        channel = {"red": 0, "green": 1, "blue": 2}
        out = np.zeros((len(crops), len(texts)))
        for i, c in enumerate(crops):
            mean = np.asarray(c, dtype=float).reshape(-1, 3).mean(0) / 255
            for j, t in enumerate(texts):
                out[i, j] = mean[next(v for k, v in channel.items() if k in t)]
        return out


class FixedProposer:
    def __init__(self, masks):
        self.masks, self.calls = masks, 0

    def __call__(self, image):
        self.calls += 1
        assert image.size == (30, 20)
        return self.masks, np.ones(len(self.masks))


def _painting(path):
    img = np.zeros((20, 30, 3), np.uint8)
    masks = _blocks()
    img[masks[0]] = (255, 0, 0)  # A red
    img[masks[1]] = (0, 0, 255)  # B blue
    img[masks[2] & ~masks[0]] = (0, 255, 0)  # C green
    Image.fromarray(img).save(path)
    return masks


def test_best_matching_region_gets_highest_heat_and_apolo_layout(tmp_path):
    masks = _painting(tmp_path / "p.png")
    stimuli = [
        Stimulus("le-café", "anger", str(tmp_path / "p.png"), ["the red block makes me angry", "so much red"]),
        Stimulus("le-café", "sadness", str(tmp_path / "p.png"), ["the cold blue makes me sad"]),
        Stimulus("other", "contentment", str(tmp_path / "p.png"), ["green and calm"]),
    ]
    proposer, scorer = FixedProposer(masks), ColourScorer()
    out = tmp_path / "maps"
    counts = generate_pseudo_masks(stimuli, out, proposer, scorer, progress=False)
    assert counts == {"written": 3, "skipped": 0, "paintings": 2}
    assert sorted(os.listdir(out)) == ["le-café_anger.npy", "le-café_sadness.npy", "other_contentment.npy"]
    # SAM once per painting; CLIP once per painting with all its emotions' texts.
    assert proposer.calls == 2 and [len(t) for _, t in scorer.calls] == [3, 1]
    for name, best in (("le-café_anger", 0), ("le-café_sadness", 1), ("other_contentment", 2)):
        heat = np.load(out / f"{name}.npy", allow_pickle=False)
        assert heat.dtype == np.float32 and heat.shape == (20, 30)
        assert heat.min() == 0.0 and heat.max() == 1.0
        only_best = masks[best] & ~np.delete(masks, best, 0).any(0)
        assert np.all(heat[only_best] == 1.0), name
        others = np.delete(masks, best, 0).any(0) & ~masks[best]
        assert heat[others].max() < 1.0
    # Resume: nothing recomputed; a deleted file is rebuilt alone.
    again = generate_pseudo_masks(stimuli, out, proposer, scorer, progress=False)
    assert again == {"written": 0, "skipped": 3, "paintings": 0} and proposer.calls == 2
    os.remove(out / "other_contentment.npy")
    assert generate_pseudo_masks(stimuli, out, proposer, scorer, progress=False)["written"] == 1
    assert proposer.calls == 3
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_unsafe_names_and_bad_scorer(tmp_path):
    masks = _painting(tmp_path / "p.png")
    with pytest.raises(UnsafeNameError):
        generate_pseudo_masks([Stimulus("../evil", "fear", str(tmp_path / "p.png"), ["x"])], tmp_path / "o", FixedProposer(masks), ColourScorer(), progress=False)
    assert not (tmp_path / "evil_fear.npy").exists()
    with pytest.raises(ValueError, match="scorer returned shape"):
        generate_pseudo_masks([Stimulus("p", "fear", str(tmp_path / "p.png"), ["red"])], tmp_path / "o", FixedProposer(masks),
                              lambda crops, texts: np.zeros(len(crops)), progress=False)


def test_attach_accepts_apolo_7x7_and_full_size_maps(tmp_path):
    dsd = make_synthetic_artworks(8, seed=0, image_size=48)
    ds = dsd["train"]
    for i, row in enumerate(ds):
        heat = np.zeros((7, 7), np.float32) if i % 2 else np.zeros((48, 48), np.float32)
        if i % 2:
            heat[:3, :3] = 1.0  # APOLO-style 7x7 map, hot top-left
        else:
            heat[:20, :20] = 1.0
        np.save(tmp_path / f"{row['painting']}_{ds.features['emotion'].names[row['emotion']]}.npy", heat)
    withm = attach_pseudo_masks(ds, tmp_path)
    for i in range(len(ds)):
        r = withm[i]
        assert r["mask"].shape == (48, 48) and r["mask"].dtype == bool
        assert r["heat"].dtype == np.float32 and r["heat"].max() == 1.0
        assert r["mask"][0, 0] and not r["mask"][-1, -1]
    os.remove(tmp_path / f"{ds[0]['painting']}_amusement.npy")
    with pytest.raises(MissingFilesError, match="1 of 6 pseudo masks"):
        attach_pseudo_masks(ds, tmp_path)
    assert len(attach_pseudo_masks(ds, tmp_path, on_missing="skip")) == len(ds) - 1


# ----------------------------------------------------------------------------- tiny real models


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Save a tiny random SAM and a tiny random CLIP (with a locally trained BPE tokenizer)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast, SamConfig,
                              SamImageProcessor, SamModel, SamProcessor)

    import torch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    sam = SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=128, patch_size=16,
                           output_channels=32, window_size=4, global_attn_indexes=[1], num_pos_feats=16, mlp_dim=64),
        prompt_encoder_config=dict(hidden_size=32, image_size=128, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32),
    )
    SamModel(sam).save_pretrained(root / "sam")
    SamProcessor(image_processor=SamImageProcessor(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128})).save_pretrained(root / "sam")

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [u for r in make_synthetic_artworks(16, seed=0, image_size=32)["train"] for u in r["utterances"]]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|startoftext|>", "<|endoftext|>"]))
    tok.post_processor = processors.TemplateProcessing(single="<|startoftext|> $A <|endoftext|>",
                                                       special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=32)
    clip = CLIPConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(clip).save_pretrained(root / "clip")
    fast.save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    return str(root / "sam"), str(root / "clip")


def test_end_to_end_tiny_sam_and_clip(tiny_models, tmp_path):
    sam_dir, clip_dir = tiny_models
    proposer = SamRegionProposer(sam_dir, points_per_side=4, points_per_batch=5, min_area_fraction=0.0, max_overlap=0.95, device="cpu")
    scorer = ClipScorer(clip_dir, batch_size=3, device="cpu")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    masks, quality = proposer(img)
    assert masks.dtype == bool and masks.shape[1:] == (40, 56) and 1 <= len(masks) <= 16 and quality.shape == (len(masks),)
    sims = scorer([img, img.crop((0, 0, 20, 20))], ["the bright star makes me smile", "a blue teardrop", "x"])
    assert sims.shape == (2, 3) and np.all(np.abs(sims) <= 1.0 + 1e-5)

    dsd = make_synthetic_artworks(4, seed=1, image_size=64)
    stimuli = group_stimuli(dsd["train"])
    assert [s.emotion for s in stimuli] == ["amusement", "awe", "contentment"]
    assert stimuli[0].utterances == dsd["train"][0]["utterances"]
    counts = generate_pseudo_masks(stimuli, tmp_path / "maps", proposer, scorer, progress=False)
    assert counts["written"] == 3
    for s in stimuli:
        heat = np.load(tmp_path / "maps" / f"{s.painting}_{s.emotion}.npy", allow_pickle=False)
        assert heat.dtype == np.float32 and heat.shape == (64, 64) and 0.0 <= heat.min() and heat.max() <= 1.0


def test_group_stimuli_from_artemis_rows(tmp_path):
    dsd = make_synthetic_artworks(16, seed=2, image_size=32)
    paths = export_release(dsd, tmp_path, image_extension=".png")
    artemis = load_artemis(paths["artemis_csv"], paths["wikiart"], image_extension=".png")
    stimuli = group_stimuli(artemis["train"])
    assert len(stimuli) == len(set(artemis["train"]["painting"]))
    for s in stimuli:
        assert len(s.utterances) == 5 and isinstance(s.image, str) and os.path.isfile(s.image)


def test_example_script(tiny_models, tmp_path, capsys):
    import importlib.util

    # In-process (not a subprocess): the script is a thin argparse wrapper, and a second Python
    # start-up with torch + transformers would cost most of this file's time budget.
    spec = importlib.util.spec_from_file_location("make_pseudo_masks", os.path.join(ROOT, "examples", "make_pseudo_masks.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    sam_dir, clip_dir = tiny_models
    dsd = make_synthetic_artworks(16, seed=2, image_size=32)
    paths = export_release(dsd, tmp_path / "data", image_extension=".png")
    out = tmp_path / "maps"
    argv = ["--artemis-csv", paths["artemis_csv"], "--image-root", paths["wikiart"], "--image-extension", ".png",
            "--out-dir", str(out), "--sam", sam_dir, "--clip", clip_dir, "--points-per-side", "2",
            "--split", "validation", "--device", "cpu"]
    script.main(argv)
    files = sorted(os.listdir(out))
    assert files and all(f.endswith(".npy") for f in files)
    assert f"'written': {len(files)}" in capsys.readouterr().out
    script.main(argv)
    assert f"'skipped': {len(files)}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(argv[:-4] + ["--split", "nope"])


def test_no_candidate_region_gives_zero_map(tmp_path):
    _painting(tmp_path / "p.png")
    counts = generate_pseudo_masks([Stimulus("p", "awe", str(tmp_path / "p.png"), ["red"])], tmp_path / "o",
                                   lambda image: (np.zeros((0, 20, 30), bool), np.zeros(0)), ColourScorer(), progress=False)
    heat = np.load(tmp_path / "o" / "p_awe.npy", allow_pickle=False)
    assert counts["written"] == 1 and heat.shape == (20, 30) and heat.dtype == np.float32 and not heat.any()
