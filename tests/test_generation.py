"""Explanation decoding: KV-cached steps equal a full forward; seeds make sampling reproducible and
independent of batching; nucleus filtering keeps exactly the top-p mass."""

import torch

from modeling_emosem.generation_emosem import decode_explanations, top_p_filter
from tests.helpers import model_inputs, tiny_batch, tiny_model


def _prefix_and_features(model, n=3):
    batch = model_inputs(tiny_batch(n, with_text=False, with_masks=False))
    with torch.no_grad():
        out = model(**batch)
    return out.prefix_embeds, model.clip_projection(out.clip_features)


def test_greedy_cached_decoding_equals_full_recompute():
    model = tiny_model().eval()
    prefix, clip = _prefix_and_features(model)
    tokens = decode_explanations(model.language_model, prefix, clip, eos_token_id=-1, max_new_tokens=6, do_sample=False)
    assert tokens.shape == (3, 6)
    # Recompute every step from scratch (no cache) and compare the greedy choices.
    embeds = prefix
    wte = model.get_input_embeddings()
    with torch.no_grad():
        for step in range(6):
            logits = model.language_model(inputs_embeds=embeds, encoder_hidden_states=clip).logits[:, -1]
            assert torch.equal(logits.argmax(-1), tokens[:, step])
            embeds = torch.cat([embeds, wte(tokens[:, step : step + 1])], dim=1)


def test_seeded_sampling_is_reproducible_and_batch_invariant():
    model = tiny_model().eval()
    prefix, clip = _prefix_and_features(model)
    kwargs = dict(eos_token_id=-1, max_new_tokens=10, do_sample=True, top_p=0.9)
    together = decode_explanations(model.language_model, prefix, clip, seeds=[11, 12, 13], **kwargs)
    again = decode_explanations(model.language_model, prefix, clip, seeds=[11, 12, 13], **kwargs)
    assert torch.equal(together, again)
    one_by_one = torch.cat(
        [decode_explanations(model.language_model, prefix[i : i + 1], clip[i : i + 1], seeds=[11 + i], **kwargs) for i in range(3)]
    )
    assert torch.equal(together, one_by_one)
    other = decode_explanations(model.language_model, prefix, clip, seeds=[1, 2, 3], **kwargs)
    assert not torch.equal(together, other)


def test_rows_stop_at_eos_and_are_padded():
    model = tiny_model().eval()
    prefix, clip = _prefix_and_features(model, n=2)
    with torch.no_grad():
        first = model.language_model(inputs_embeds=prefix, encoder_hidden_states=clip).logits[:, -1].argmax(-1)
    eos = int(first[0])  # make row 0's first greedy token the end of text
    tokens = decode_explanations(model.language_model, prefix, clip, eos_token_id=eos, max_new_tokens=5, do_sample=False)
    assert (tokens[0] == eos).all()


def test_top_p_filter_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(top_p_filter(probs.log(), 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(top_p_filter(probs.log(), 0.81))
    assert kept.tolist() == [[True, True, True, False]]
    # The most likely token always survives, even for a tiny p.
    assert torch.isfinite(top_p_filter(probs.log(), 1e-6)).tolist() == [[True, False, False, False]]


def test_segment_and_explain_shares_one_image_across_emotions():
    model = tiny_model().eval()
    from tests.helpers import random_image, tiny_processor

    proc = tiny_processor()
    images = proc(images=[random_image()])
    emotions = proc.encode_emotions(["awe", "fear", "sadness"])
    shared = model.segment_and_explain(
        pixel_values=images["pixel_values"], clip_pixel_values=images["clip_pixel_values"],
        image_index=torch.zeros(3, dtype=torch.long), seeds=[1, 2, 3], **emotions,
    )
    repeated = model.segment_and_explain(
        pixel_values=images["pixel_values"].repeat(3, 1, 1, 1),
        clip_pixel_values=images["clip_pixel_values"].repeat(3, 1, 1, 1), seeds=[1, 2, 3], **emotions,
    )
    torch.testing.assert_close(shared.pred_masks, repeated.pred_masks)
    assert torch.equal(shared.sequences, repeated.sequences)
    assert shared.sequences.shape[1] <= model.config.max_explanation_tokens
