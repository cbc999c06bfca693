"""Explanation decoding for EmoSEM: nucleus sampling (p = 0.9, the paper) or greedy, with a KV cache.

Why not `GenerationMixin.generate`: EmoSEM needs results that do not depend on how rows are
batched (the pipeline promises that batch sizes 1 and 3 give the same explanations for one seed).
So every row draws from its own `torch.Generator`, seeded per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches `top_p` (Holtzman et al., 2019).

    Args:
        logits: `(N, V)` next-token logits.
    Returns:
        `(N, V)` logits with the excluded tokens set to -inf (the most likely token is always kept).
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_idx = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # A token is dropped when the mass *before* it already reaches top_p.
    drop_sorted = (probs.cumsum(-1) - probs) >= top_p
    drop = drop_sorted.scatter(-1, sorted_idx, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _choose(
    logits: torch.Tensor,
    do_sample: bool,
    top_p: float,
    temperature: float,
    generators: Sequence[torch.Generator] | None,
) -> torch.Tensor:
    """`(N, V)` logits -> `(N,)` next tokens."""
    if not do_sample:
        return logits.argmax(-1)
    logits = top_p_filter(logits.float() / max(temperature, 1e-6), top_p)
    probs = logits.softmax(-1)
    if generators is None:
        return torch.multinomial(probs, 1).squeeze(-1)
    return torch.stack([torch.multinomial(p, 1, generator=g).squeeze(-1) for p, g in zip(probs, generators)])


@torch.inference_mode()
def decode_explanations(
    language_model: nn.Module,
    prefix_embeds: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    eos_token_id: int,
    max_new_tokens: int = 25,
    do_sample: bool = True,
    top_p: float = 0.9,
    temperature: float = 1.0,
    seeds: Sequence[int] | None = None,
) -> torch.Tensor:
    """Generate explanation tokens after the prefix.

    Args:
        language_model: a causal LM: GPT-2 with cross-attention, GPT-2 (SCAbase), or LLaVA (EmoSEM-LLaVA).
        prefix_embeds: `(N, L_f, D)` prefix tokens f (the generation starts right after them); for LLaVA
            `[image tokens, f]`.
        encoder_hidden_states: `(N, S, D)` CLIP features for the cross-attention, or None (no cross-attention).
        seeds: one seed per row for sampling, or None to use the global RNG.
    Returns:
        `(N, T)` token ids, T <= max_new_tokens; rows that finished early are padded with `eos_token_id`
        (the eos itself is included when generated).
    """
    n = prefix_embeds.shape[0]
    generators = None
    if do_sample and seeds is not None:
        if len(seeds) != n:
            raise ValueError(f"seeds: expected {n} seeds (one per row), got {len(seeds)}")
        generators = [torch.Generator(device=prefix_embeds.device).manual_seed(int(s)) for s in seeds]
    extra = {} if encoder_hidden_states is None else {"encoder_hidden_states": encoder_hidden_states}
    out = language_model(inputs_embeds=prefix_embeds, use_cache=True, **extra)
    past, logits = out.past_key_values, out.logits[:, -1]
    finished = torch.zeros(n, dtype=torch.bool, device=prefix_embeds.device)
    tokens = []
    for _ in range(max_new_tokens):
        next_tokens = _choose(logits, do_sample, top_p, temperature, generators)
        next_tokens = next_tokens.masked_fill(finished, eos_token_id)
        tokens.append(next_tokens)
        finished |= next_tokens == eos_token_id
        if bool(finished.all()) or len(tokens) == max_new_tokens:
            break
        out = language_model(
            input_ids=next_tokens[:, None],
            past_key_values=past,
            use_cache=True,
            **extra,
        )
        past, logits = out.past_key_values, out.logits[:, -1]
    if not tokens:
        return torch.empty(n, 0, dtype=torch.long, device=prefix_embeds.device)
    return torch.stack(tokens, dim=1)
