"""Core model behaviour on the tiny preset: shapes, losses, learning, conditioning, freezing."""

import pytest
import torch

from modeling_emosem import EmoSEMConfig, EmoSEMModel
from modeling_emosem.configuration_emosem import PAPER_TRAINABLE, TRAINABLE_MODULE_NAMES
from tests.helpers import model_inputs, random_image, tiny_batch, tiny_model, tiny_processor


def test_paper_preset_has_the_papers_parameter_count():
    # Table 4: 276.72M. Built on the meta device: no memory is allocated for the weights.
    with torch.device("meta"):
        model = EmoSEMModel(EmoSEMConfig.from_preset("paper"))
    total = sum(p.numel() for p in model.parameters())
    assert abs(total - 276.72e6) / 276.72e6 < 0.005, total
    assert next(model.parameters()).device.type == "meta"


def test_paper_preset_sizes():
    cfg = EmoSEMConfig.from_preset("paper")
    assert (cfg.sam_image_size, cfg.image_embedding_size, cfg.mask_size) == (1024, 64, 256)
    assert (cfg.clip_image_size, cfg.vision_config.patch_size, cfg.vision_config.hidden_size) == (224, 16, 768)
    assert (cfg.text_config.n_layer, cfg.text_config.n_head, cfg.text_config.n_embd) == (6, 12, 768)
    assert cfg.text_config.add_cross_attention
    assert cfg.prompt_length == 8 and cfg.prefix_length == 9
    assert (cfg.top_p, cfg.max_explanation_tokens) == (0.9, 25)


@pytest.mark.parametrize("paradigm", ["single", "multi"])
def test_forward_backward_shapes(paradigm):
    model = tiny_model(paradigm=paradigm)
    batch = model_inputs(tiny_batch(3))
    out = model(**batch)
    cfg = model.config
    assert out.pred_masks.shape == (3, cfg.mask_size, cfg.mask_size)
    assert out.prefix_embeds.shape == (3, cfg.prefix_length, cfg.text_config.n_embd)
    assert out.logits.shape == (3, cfg.prefix_length + batch["input_ids"].shape[1], cfg.text_config.vocab_size)
    for name in ("loss", "mask_loss", "dice_loss", "focal_loss", "lm_loss"):
        assert getattr(out, name).dim() == 0 and torch.isfinite(getattr(out, name)), name
    torch.testing.assert_close(out.loss, out.mask_loss + out.lm_loss)
    torch.testing.assert_close(out.mask_loss, out.dice_loss + out.focal_loss)
    if paradigm == "multi":
        assert out.all_pred_masks.shape == (3, 8, cfg.mask_size, cfg.mask_size)
        rows = torch.arange(3)
        torch.testing.assert_close(out.pred_masks, out.all_pred_masks[rows, batch["emotion_ids"]])
        assert out.prompt_tokens is None and out.mask_tokens.shape[1] == 8
    else:
        assert out.prompt_tokens.shape == (3, 8, cfg.sam_config.mask_decoder_config.hidden_size)
    out.loss.backward()
    assert model.mask_tokens.grad is not None and model.mask_tokens.grad.abs().sum() > 0


def test_losses_are_optional():
    model = tiny_model()
    batch = model_inputs(tiny_batch(2, with_masks=False, with_text=False))
    out = model(**batch)
    assert out.loss is None and out.mask_loss is None and out.lm_loss is None and out.logits is None
    assert out.pred_masks.shape[0] == 2


@pytest.mark.parametrize("paradigm", ["single", "multi"])
def test_one_batch_overfits(paradigm):
    torch.manual_seed(0)
    model = tiny_model(paradigm=paradigm, trainable_modules=list(TRAINABLE_MODULE_NAMES))
    batch = model_inputs(tiny_batch(3))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = model(**batch)
    for _ in range(150):
        out = model(**batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    last = model(**batch)
    assert last.mask_loss < first.mask_loss / 10, (first.mask_loss, last.mask_loss)
    assert last.lm_loss < first.lm_loss / 10, (first.lm_loss, last.lm_loss)


@pytest.mark.parametrize("paradigm", ["single", "multi"])
def test_emotion_changes_mask_and_prefix(paradigm):
    model = tiny_model(paradigm=paradigm).eval()
    proc = tiny_processor()

    img = random_image()
    a = model(**model_inputs(proc(images=[img], emotions=["awe"])))
    b = model(**model_inputs(proc(images=[img], emotions=["fear"])))
    # Relative: randomly initialised logits are small, but the emotion must move them visibly (the
    # projector starts at unit gain, so prompt tokens are as large as the mask token).
    assert (a.pred_masks - b.pred_masks).abs().max() > 0.01 * a.pred_masks.abs().max()
    assert (a.prefix_embeds - b.prefix_embeds).abs().max() > 0.01 * a.prefix_embeds.abs().max()


def test_emotion_projector_starts_at_unit_gain():
    model = tiny_model()
    prompts = model.embed_prompts(tiny_processor().encode_emotions(["awe", "fear"])["prompt_input_ids"])
    assert 0.7 < float(prompts.std()) < 1.3


def test_frozen_modules_get_no_gradients():
    model = tiny_model()
    assert set(model.config.trainable_modules) == set(PAPER_TRAINABLE)
    out = model(**model_inputs(tiny_batch(2)))
    out.loss.backward()
    for name in ("image_encoder", "feature_mixer", "clip"):
        params = model.group_parameters(name)
        assert params and all(not p.requires_grad and p.grad is None for p in params), name
    for name in PAPER_TRAINABLE:
        params = model.group_parameters(name)
        assert params and all(p.requires_grad for p in params), name
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name
    # Everything in SAM that is not the FT-MH mask head stays frozen (prompt encoder, IoU head, ...).
    mask_head = {id(p) for p in model.group_parameters("mask_head")}
    assert all(not p.requires_grad for p in model.sam.parameters() if id(p) not in mask_head)


def test_features_path_equals_pixel_path():
    model = tiny_model().eval()
    batch = model_inputs(tiny_batch(2))
    with torch.no_grad():
        direct = model(**batch)
        feats = model.get_image_features(batch["pixel_values"], batch["clip_pixel_values"])
        rest = {k: v for k, v in batch.items() if k not in ("pixel_values", "clip_pixel_values")}
        cached = model(image_embeddings=feats.image_embeddings, clip_features=feats.clip_features, **rest)
    torch.testing.assert_close(direct.pred_masks, cached.pred_masks)
    torch.testing.assert_close(direct.loss, cached.loss)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pixel_values": torch.zeros(2, 3, 64, 64)}, "pixel_values: expected shape (*, 3, 128, 128)"),
        ({"clip_pixel_values": torch.zeros(2, 3, 32)}, "clip_pixel_values: expected shape"),
        ({"emotion_ids": torch.tensor([0, 1, 2])}, "emotion_ids: batch size 3 does not match the 2 images"),
        ({"emotion_ids": torch.tensor([0, 9])}, "emotion_ids: expected values in [0, 8)"),
        ({"prompt_input_ids": torch.zeros(2, 5, dtype=torch.long)}, "prompt_input_ids: expected shape (*, 8)"),
        ({"mask_labels": torch.zeros(2, 32, 32)}, "mask_labels: expected shape (*, 64, 64)"),
        ({"labels": torch.zeros(2, 3, dtype=torch.long)}, "labels: expected shape"),
        ({"emotion_ids": torch.tensor([0.0, 1.0])}, "emotion_ids: expected an integer tensor"),
    ],
)
def test_bad_inputs_name_the_argument(change, message):
    model = tiny_model()
    batch = model_inputs(tiny_batch(2))
    batch.update(change)
    with pytest.raises(ValueError) as err:
        model(**batch)
    assert message in str(err.value)


def test_missing_inputs_are_explained():
    model = tiny_model()
    batch = model_inputs(tiny_batch(2))
    with pytest.raises(ValueError, match="pixel_values or image_embeddings"):
        model(**{k: v for k, v in batch.items() if k != "pixel_values"})
    with pytest.raises(ValueError, match="emotion_ids is required"):
        model(**{k: v for k, v in batch.items() if k != "emotion_ids"})
    with pytest.raises(ValueError, match="prompt_input_ids is required"):
        model(**{k: v for k, v in batch.items() if k != "prompt_input_ids"})


def test_unknown_preset_and_paradigm():
    with pytest.raises(ValueError, match="unknown preset 'huge'.*paper.*tiny"):
        EmoSEMConfig.from_preset("huge")
    with pytest.raises(ValueError, match="paradigm must be one of"):
        EmoSEMConfig.from_preset("tiny", paradigm="both")
    with pytest.raises(ValueError, match="trainable_modules has unknown names"):
        EmoSEMConfig.from_preset("tiny", trainable_modules=["everything"])
