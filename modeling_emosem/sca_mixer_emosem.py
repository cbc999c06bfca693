"""SCAbase's bridge (paper appendix C; SCA, Huang et al. 2024): query token, task token, text feature mixer.

In SCAbase the prefix adapter is replaced by SCA's route from SAM's decoder to the language model:

1. learnable query tokens ``q`` (mask-decoder width ``C_k``) are put in front of the updated decoder tokens
   (``[p', m']`` in Single-Mask, ``m_i'`` in Multi-Masks);
2. a stack of ``sca_num_layers`` (12 in SCA) bidirectional two-way transformer blocks (SAM's block design,
   as SCA builds its mixer) mixes them with the updated vision tokens ``v'``;
3. the updated query tokens ``q'`` are projected linearly to the language model's width, after learnable
   task tokens ``k`` (already at the language model's width): the language model reads ``[k, q'', X]``.

Shapes: tokens `(N, T, C_k)`, vision `(N, C_k, h, w)` -> prefix `(N, n_k + n_q, D)`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.models.sam.modeling_sam import SamTwoWayTransformer


class SCATextFeatureMixer(nn.Module):
    def __init__(self, mask_decoder_config, num_layers: int, num_query_tokens: int, num_task_tokens: int, out_features: int):
        super().__init__()
        d_k = mask_decoder_config.hidden_size
        mixer_config = copy.deepcopy(mask_decoder_config)
        mixer_config.num_hidden_layers = num_layers
        self.query_tokens = nn.Parameter(torch.zeros(num_query_tokens, d_k))
        self.task_tokens = nn.Parameter(torch.zeros(num_task_tokens, out_features))
        self.transformer = SamTwoWayTransformer(mixer_config)
        self.language_projection = nn.Linear(d_k, out_features)

    def forward(self, tokens: torch.Tensor, vision: torch.Tensor, positional: torch.Tensor) -> torch.Tensor:
        """
        Args:
            tokens: `(N, T, C_k)` updated decoder tokens (after SAM's feature mixer).
            vision: `(N, C_k, h, w)` updated vision tokens v'.
            positional: `(N, C_k, h, w)` SAM's image-wide positional embeddings.
        Returns:
            `(N, n_k + n_q, D)` prefix tokens ``[k, q'']`` for the language model.
        """
        n = tokens.shape[0]
        nq = self.query_tokens.shape[0]
        queries = torch.cat([self.query_tokens.unsqueeze(0).expand(n, -1, -1).to(tokens.dtype), tokens], dim=1)
        out, _ = self.transformer(
            point_embeddings=queries.unsqueeze(1),  # SAM's point-batch axis, 1 here
            image_embeddings=vision,
            image_positional_embeddings=positional,
            attention_similarity=None,
        )
        projected = self.language_projection(out.squeeze(1)[:, :nq])
        task = self.task_tokens.unsqueeze(0).expand(n, -1, -1).to(projected.dtype)
        return torch.cat([task, projected], dim=1)
