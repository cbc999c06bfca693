"""EmoSEM: Segment and Explain Emotion Stimuli in Visual Art (paper sections 3-4, appendix A).

Data flow for one batch of N (image, emotion) rows, paper preset in brackets:

1. SAM image encoder (frozen): `pixel_values (N,3,1024,1024)` -> `v (N,256,64,64)`.
2. CLIP vision tower (frozen): `clip_pixel_values (N,3,224,224)` -> `c (N,197,768)`.
3. Emotion projector: prompt tokens -> LM word embeddings -> Linear 768->256 -> `p (N,8,256)`.
4. Feature mixer = SAM's two-way transformer over `[p, m]` and `v` (Multi-Masks: `[m_0..m_7]`, no prompt).
5. Mask head (SAM upscaling + hypernetwork MLP) on `m'`, `v'` -> saliency logits `S (N,256,256)`.
6. Prefix adapter (token-wise MLP 256->768) on `[p', m']` -> `f (N,9,768)` (Multi-Masks: `m_i'` -> `(N,1,768)`).
7. GPT-2 with cross-attention over `c`, input `[f, X]`: cross-entropy on the explanation X.
8. Loss = Dice + Focal on S against the (pseudo) mask + language cross-entropy (each reported).

Steps 1-2 depend on the image only: `get_image_features` computes them once, and `forward` /
`segment_and_explain` accept them instead of pixels, so several emotions (and epochs) reuse them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPVisionModel, GPT2LMHeadModel, PreTrainedModel, SamModel
from transformers.utils import ModelOutput

from .configuration_emosem import EmoSEMConfig
from .generation_emosem import decode_explanations
from .losses_emosem import dice_loss, sigmoid_focal_loss


@dataclass
class EmoSEMImageFeatures(ModelOutput):
    """Image-only features: computed once per image, reused for every emotion and token.

    Args:
        image_embeddings: `(B, C_k, h, w)` SAM image embeddings v (256 x 64 x 64 at the paper preset).
        clip_features: `(B, S, D_clip)` CLIP patch features c (197 x 768 at the paper preset).
    """

    image_embeddings: torch.Tensor | None = None
    clip_features: torch.Tensor | None = None


@dataclass
class EmoSEMOutput(ModelOutput):
    """Output of `EmoSEMModel.forward` for N rows.

    Args:
        loss: total loss (weighted sum of the parts below that could be computed).
        mask_loss: Dice + Focal on the saliency logits (needs `mask_labels`).
        dice_loss, focal_loss: the two parts of `mask_loss`.
        lm_loss: explanation cross-entropy (needs `labels`).
        pred_masks: `(N, H, W)` saliency logits S of the requested emotion (H = W = `config.mask_size`).
        all_pred_masks: `(N, 8, H, W)` logits of every emotion (Multi-Masks only).
        logits: `(N, L_f + T, V)` language-model logits over `[f, X]`.
        prefix_embeds: `(N, L_f, D)` prefix tokens f.
        prompt_tokens: `(N, L_e, C_k)` updated emotional prompt tokens p' (Single-Mask only).
        mask_tokens: `(N, K, C_k)` updated mask tokens m' (K = 1, or 8 in Multi-Masks).
        image_embeddings, clip_features: the image features used (for reuse).
    """

    loss: torch.Tensor | None = None
    mask_loss: torch.Tensor | None = None
    dice_loss: torch.Tensor | None = None
    focal_loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    all_pred_masks: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    prefix_embeds: torch.Tensor | None = None
    prompt_tokens: torch.Tensor | None = None
    mask_tokens: torch.Tensor | None = None
    image_embeddings: torch.Tensor | None = None
    clip_features: torch.Tensor | None = None


@dataclass
class EmoSEMGenerationOutput(ModelOutput):
    """Output of `EmoSEMModel.segment_and_explain`.

    Args:
        pred_masks: `(N, H, W)` saliency logits.
        sequences: `(N, T)` explanation token ids (eos-padded).
        prefix_embeds: `(N, L_f, D)`.
    """

    pred_masks: torch.Tensor | None = None
    sequences: torch.Tensor | None = None
    prefix_embeds: torch.Tensor | None = None


class PrefixAdapter(nn.Module):
    """Token-wise MLP from the mask decoder's width to the language model's (paper Eq. 3).

    `(N, L, C_k)` -> `(N, L, D)`.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(tokens)))


def _check_tensor(name: str, value: torch.Tensor | None, shape: Sequence[int | None], dtype_kind: str | None = None):
    """Raise a ValueError naming `name` unless `value` has `shape` (None = any size)."""
    if value is None:
        return
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.dim() != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(value.shape)}")
    if dtype_kind == "int" and (value.is_floating_point() or value.is_complex()):
        raise ValueError(f"{name}: expected an integer tensor, got {value.dtype}")
    if dtype_kind == "float" and not value.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {value.dtype}")


class EmoSEMPreTrainedModel(PreTrainedModel):
    config: EmoSEMConfig
    config_class = EmoSEMConfig
    base_model_prefix = "emosem"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["SamVisionLayer", "CLIPEncoderLayer", "GPT2Block"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        if isinstance(module, EmoSEMModel):
            if module.emotion_projector is not None:
                # Word embeddings start at std = text initializer_range; scale the projector so the prompt
                # tokens p come out ~N(0, 1) like SAM's prompt embeddings and the N(0, 1) mask token.
                # (A 0.02-std projector makes p ~1e-3 of m: the mixer then ignores the emotion for long.)
                module.set_emotion_projector_gain(self.config.text_config.initializer_range)
            # nn.Embedding-style N(0, 1), as Meta's SAM initialises its mask tokens: small tokens would be
            # averaged into one by the first (residual-free) self-attention of the two-way transformer.
            module.mask_tokens.normal_(0.0, 1.0)


class EmoSEMModel(EmoSEMPreTrainedModel):
    """EmoSEM: segments the pixels that evoke an emotion in an artwork and explains them in words.

    Built from `config` alone with random weights; `from_pretrained_components` loads the three public
    backbones, and `from_pretrained` loads a saved EmoSEM.
    """

    def __init__(self, config: EmoSEMConfig):
        super().__init__(config)
        self.sam = SamModel(config.sam_config)
        self.clip = CLIPVisionModel(config.vision_config)
        self.language_model = GPT2LMHeadModel(config.text_config)

        d_k = config.sam_config.mask_decoder_config.hidden_size
        d_w = config.text_config.n_embd
        # Emotion projector P_E: LM word embeddings (d_w) -> mask decoder space (d_k). Multi-Masks has no prompt.
        self.emotion_projector = nn.Linear(d_w, d_k) if config.paradigm == "single" else None
        self.mask_tokens = nn.Parameter(torch.zeros(config.num_mask_tokens, d_k))
        self.prefix_adapter = PrefixAdapter(d_k, config.prefix_hidden_size or d_w, d_w)
        # GPT-2's cross-attention needs encoder states of its own width; the paper's CLIP (768) matches.
        d_clip = config.vision_config.hidden_size
        self.clip_projection = nn.Identity() if d_clip == d_w else nn.Linear(d_clip, d_w)
        self.post_init()
        self.apply_trainable_modules()

    @classmethod
    def from_pretrained_components(
        cls,
        sam: str = "facebook/sam-vit-base",
        clip: str = "openai/clip-vit-base-patch16",
        language_model: str = "distilgpt2",
        **config_overrides,
    ) -> "EmoSEMModel":
        """Build EmoSEM from the three public checkpoints (or local folders of the same form).

        SAM, CLIP's vision tower and GPT-2 keep their weights; GPT-2's new cross-attention, the emotion
        projector and the prefix adapter start from the usual random init, and the learnable mask token(s)
        start from SAM's single-output mask token (Ambiguity-Unaware). `config_overrides` set EmoSEM's own
        fields (e.g. ``paradigm="multi"``).
        """
        return _from_pretrained_components_impl(cls, sam, clip, language_model, **config_overrides)

    # ------------------------------------------------------------------ parameter groups
    def module_groups(self) -> dict[str, list[nn.Module | nn.Parameter]]:
        """The trainable units of `config.trainable_modules`, by name (used for freezing and per-group LRs)."""
        dec = self.sam.mask_decoder
        groups: dict[str, list] = {
            "image_encoder": [self.sam.vision_encoder],
            "feature_mixer": [dec.transformer],
            "clip": [self.clip],
            "emotion_projector": [self.emotion_projector] if self.emotion_projector is not None else [],
            "mask_tokens": [self.mask_tokens],
            # FT-MH: upscaling convolutions + the hypernetwork MLP of SAM's single-output mask token.
            "mask_head": [dec.upscale_conv1, dec.upscale_layer_norm, dec.upscale_conv2, dec.output_hypernetworks_mlps[0]],
            "prefix_adapter": [self.prefix_adapter],
            "language_model": [self.language_model, self.clip_projection],
        }
        return groups

    @torch.no_grad()
    def set_emotion_projector_gain(self, embedding_std: float) -> None:
        """Re-initialise the emotion projector so projected word embeddings of std `embedding_std` have unit std."""
        d_w = self.emotion_projector.in_features
        self.emotion_projector.weight.normal_(0.0, 1.0 / (d_w**0.5 * max(embedding_std, 1e-6)))
        self.emotion_projector.bias.zero_()

    def group_parameters(self, name: str) -> list[nn.Parameter]:
        params = []
        for item in self.module_groups()[name]:
            params.extend([item] if isinstance(item, nn.Parameter) else item.parameters())
        return params

    def apply_trainable_modules(self) -> None:
        """Freeze everything, then unfreeze the groups named in `config.trainable_modules`."""
        self.requires_grad_(False)
        for name in self.config.trainable_modules:
            for param in self.group_parameters(name):
                param.requires_grad_(True)

    # ------------------------------------------------------------------ encoders
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_image_features(
        self, pixel_values: torch.Tensor | None = None, clip_pixel_values: torch.Tensor | None = None
    ) -> EmoSEMImageFeatures:
        """Run the two image encoders (the expensive, image-only part).

        Args:
            pixel_values: `(B, 3, S, S)` SAM-preprocessed images (S = 1024 at the paper preset).
            clip_pixel_values: `(B, 3, S_c, S_c)` CLIP-preprocessed images (S_c = 224).
        Returns:
            `EmoSEMImageFeatures` with `image_embeddings (B, C_k, h, w)` and `clip_features (B, S, D_clip)`;
            either is None when its pixels are not given.
        """
        cfg = self.config
        _check_tensor("pixel_values", pixel_values, (None, 3, cfg.sam_image_size, cfg.sam_image_size), "float")
        _check_tensor("clip_pixel_values", clip_pixel_values, (None, 3, cfg.clip_image_size, cfg.clip_image_size), "float")
        image_embeddings = clip_features = None
        if pixel_values is not None:
            # Frozen encoders run without autograd bookkeeping (SAM ViT-B activations are large).
            with torch.set_grad_enabled(torch.is_grad_enabled() and "image_encoder" in cfg.trainable_modules):
                image_embeddings = self.sam.vision_encoder(pixel_values).last_hidden_state
        if clip_pixel_values is not None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and "clip" in cfg.trainable_modules):
                if cfg.clip_feature_layer == -1:
                    clip_features = self.clip(pixel_values=clip_pixel_values).last_hidden_state
                else:
                    out = self.clip(pixel_values=clip_pixel_values, output_hidden_states=True)
                    clip_features = out.hidden_states[cfg.clip_feature_layer]
        return EmoSEMImageFeatures(image_embeddings=image_embeddings, clip_features=clip_features)

    # ------------------------------------------------------------------ segmentation branch
    def embed_prompts(self, prompt_input_ids: torch.Tensor) -> torch.Tensor:
        """Emotion projector: `(N, L_e)` prompt token ids -> `(N, L_e, C_k)` prompt tokens p."""
        return self.emotion_projector(self.get_input_embeddings()(prompt_input_ids))

    def mix_features(
        self, tokens: torch.Tensor, image_embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Emotion-driven feature mixer: SAM's two-way transformer, driven directly (paper Eq. 1-2).

        Args:
            tokens: `(N, T, C_k)` query tokens ([p, m], or the 8 mask tokens).
            image_embeddings: `(N, C_k, h, w)` vision tokens v.
        Returns:
            updated tokens `(N, T, C_k)` and updated vision tokens v' `(N, C_k, h, w)`.
        """
        n, c, h, w = image_embeddings.shape
        # No mask prompt: SAM adds its "no mask" dense embedding to every vision token.
        dense = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        positional = self.sam.get_image_wide_positional_embeddings().to(image_embeddings.dtype)
        queries, keys = self.sam.mask_decoder.transformer(
            point_embeddings=tokens.unsqueeze(1),  # SAM's point-batch axis, 1 here
            image_embeddings=image_embeddings + dense,
            image_positional_embeddings=positional.expand(n, -1, -1, -1),
            attention_similarity=None,
        )
        vision = keys.squeeze(1).transpose(1, 2).reshape(n, c, h, w)
        return queries.squeeze(1), vision

    def mask_head(self, mask_tokens: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        """FT-MH: upsample v' 4x and classify every pixel with a linear classifier made from each mask token.

        Args:
            mask_tokens: `(N, K, C_k)` updated mask tokens m'.
            vision: `(N, C_k, h, w)` updated vision tokens v'.
        Returns:
            `(N, K, 4h, 4w)` saliency logits.
        """
        dec = self.sam.mask_decoder
        up = dec.activation(dec.upscale_layer_norm(dec.upscale_conv1(vision)))
        up = dec.activation(dec.upscale_conv2(up))  # (N, C_k/8, 4h, 4w)
        n, c8, hh, ww = up.shape
        hyper = dec.output_hypernetworks_mlps[0](mask_tokens)  # (N, K, C_k/8)
        return (hyper @ up.reshape(n, c8, hh * ww)).reshape(n, -1, hh, ww)

    def _segment(
        self, image_embeddings: torch.Tensor, emotion_ids: torch.Tensor, prompt_input_ids: torch.Tensor | None
    ) -> dict[str, torch.Tensor | None]:
        n = image_embeddings.shape[0]
        rows = torch.arange(n, device=image_embeddings.device)
        if self.config.paradigm == "single":
            if prompt_input_ids is None:
                raise ValueError("prompt_input_ids is required in the Single-Mask paradigm (the processor makes it)")
            prompts = self.embed_prompts(prompt_input_ids)
            tokens = torch.cat([prompts, self.mask_tokens.unsqueeze(0).expand(n, -1, -1).to(prompts.dtype)], dim=1)
            mixed, vision = self.mix_features(tokens, image_embeddings)
            prompt_out, mask_out = mixed[:, : prompts.shape[1]], mixed[:, prompts.shape[1] :]
            pred_masks = self.mask_head(mask_out, vision)[:, 0]
            prefix = self.prefix_adapter(mixed)  # [p'', m'']
            all_masks = None
        else:
            tokens = self.mask_tokens.unsqueeze(0).expand(n, -1, -1).to(image_embeddings.dtype)
            mask_out, vision = self.mix_features(tokens, image_embeddings)
            prompt_out = None
            all_masks = self.mask_head(mask_out, vision)
            pred_masks = all_masks[rows, emotion_ids]
            prefix = self.prefix_adapter(mask_out[rows, emotion_ids].unsqueeze(1))  # m_i''
        return {
            "pred_masks": pred_masks,
            "all_pred_masks": all_masks,
            "prefix_embeds": prefix,
            "prompt_tokens": prompt_out,
            "mask_tokens": mask_out,
        }

    # ------------------------------------------------------------------ public API
    def _resolve_features(self, pixel_values, clip_pixel_values, image_embeddings, clip_features):
        cfg = self.config
        if image_embeddings is None and pixel_values is None:
            raise ValueError("pass either pixel_values or image_embeddings")
        if clip_features is None and clip_pixel_values is None:
            raise ValueError("pass either clip_pixel_values or clip_features")
        feats = self.get_image_features(
            pixel_values if image_embeddings is None else None,
            clip_pixel_values if clip_features is None else None,
        )
        image_embeddings = feats.image_embeddings if image_embeddings is None else image_embeddings
        clip_features = feats.clip_features if clip_features is None else clip_features
        d_k, g = cfg.sam_config.mask_decoder_config.hidden_size, cfg.image_embedding_size
        _check_tensor("image_embeddings", image_embeddings, (None, d_k, g, g), "float")
        _check_tensor("clip_features", clip_features, (None, None, cfg.vision_config.hidden_size), "float")
        return image_embeddings, clip_features

    def _check_rows(self, n: int, **tensors: torch.Tensor | None) -> None:
        for name, value in tensors.items():
            if value is not None and value.shape[0] != n:
                raise ValueError(f"{name}: batch size {value.shape[0]} does not match the {n} images given")

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        clip_pixel_values: torch.Tensor | None = None,
        emotion_ids: torch.Tensor | None = None,
        prompt_input_ids: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mask_labels: torch.Tensor | None = None,
        image_embeddings: torch.Tensor | None = None,
        clip_features: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EmoSEMOutput:
        """Segment, and score an explanation (teacher forcing).

        Args:
            pixel_values: `(N, 3, S, S)` SAM pixels, or `image_embeddings (N, C_k, h, w)` instead.
            clip_pixel_values: `(N, 3, S_c, S_c)` CLIP pixels, or `clip_features (N, S, D_clip)` instead.
            emotion_ids: `(N,)` emotion index per row (into `config.emotions`).
            prompt_input_ids: `(N, L_e)` tokenised emotional prompts (Single-Mask).
            input_ids, attention_mask: `(N, T)` explanation tokens X (optional).
            labels: `(N, T)` explanation targets, -100 where ignored (gives `lm_loss`).
            mask_labels: `(N, H, W)` targets in [0, 1] at `config.mask_size` (gives `mask_loss`).
        """
        cfg = self.config
        image_embeddings, clip_features = self._resolve_features(
            pixel_values, clip_pixel_values, image_embeddings, clip_features
        )
        n = image_embeddings.shape[0]
        if emotion_ids is None:
            raise ValueError("emotion_ids is required: one emotion index per row")
        _check_tensor("emotion_ids", emotion_ids, (None,), "int")
        _check_tensor("prompt_input_ids", prompt_input_ids, (None, cfg.prompt_length), "int")
        _check_tensor("input_ids", input_ids, (None, None), "int")
        _check_tensor("attention_mask", attention_mask, (None, None if input_ids is None else input_ids.shape[1]))
        _check_tensor("labels", labels, (None, None if input_ids is None else input_ids.shape[1]), "int")
        _check_tensor("mask_labels", mask_labels, (None, cfg.mask_size, cfg.mask_size), "float")
        self._check_rows(
            n, clip_features=clip_features, emotion_ids=emotion_ids, prompt_input_ids=prompt_input_ids,
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, mask_labels=mask_labels,
        )
        if emotion_ids.numel() and (emotion_ids.min() < 0 or emotion_ids.max() >= cfg.num_emotions):
            raise ValueError(f"emotion_ids: expected values in [0, {cfg.num_emotions}), got {emotion_ids.tolist()}")
        if labels is not None and input_ids is None:
            raise ValueError("labels were given without input_ids: pass the explanation tokens as input_ids too")

        seg = self._segment(image_embeddings, emotion_ids, prompt_input_ids)
        out = EmoSEMOutput(image_embeddings=image_embeddings, clip_features=clip_features, **seg)

        losses = []
        if mask_labels is not None:
            logits = seg["pred_masks"].float()
            out.dice_loss = dice_loss(logits, mask_labels.float()).mean()
            out.focal_loss = sigmoid_focal_loss(logits, mask_labels.float(), cfg.focal_alpha, cfg.focal_gamma).mean()
            out.mask_loss = cfg.dice_weight * out.dice_loss + cfg.focal_weight * out.focal_loss
            losses.append(out.mask_loss)
        if input_ids is not None:
            prefix = seg["prefix_embeds"]
            embeds = torch.cat([prefix, self.get_input_embeddings()(input_ids).to(prefix.dtype)], dim=1)
            mask = None
            if attention_mask is not None:
                ones = attention_mask.new_ones(n, prefix.shape[1])
                mask = torch.cat([ones, attention_mask], dim=1)
            full_labels = None
            if labels is not None:
                full_labels = torch.cat([labels.new_full((n, prefix.shape[1]), -100), labels], dim=1)
            lm = self.language_model(
                inputs_embeds=embeds,
                attention_mask=mask,
                encoder_hidden_states=self.clip_projection(clip_features),
                labels=full_labels,
            )
            out.logits = lm.logits
            if full_labels is not None:
                out.lm_loss = lm.loss
                losses.append(cfg.lm_weight * lm.loss)
        if losses:
            out.loss = torch.stack(losses).sum()
        return out

    @torch.no_grad()
    def segment_and_explain(
        self,
        emotion_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        clip_pixel_values: torch.Tensor | None = None,
        prompt_input_ids: torch.Tensor | None = None,
        image_embeddings: torch.Tensor | None = None,
        clip_features: torch.Tensor | None = None,
        image_index: torch.Tensor | None = None,
        explain: bool = True,
        max_new_tokens: int | None = None,
        do_sample: bool | None = None,
        top_p: float | None = None,
        temperature: float | None = None,
        seeds: Sequence[int] | None = None,
    ) -> EmoSEMGenerationOutput:
        """Inference: predict the saliency logits and generate an explanation for each row.

        Args:
            emotion_ids: `(N,)` emotion per row.
            pixel_values / clip_pixel_values or image_embeddings / clip_features: B images.
            image_index: `(N,)` which of the B images each row reads (default: row i reads image i).
                Lets all emotions of one image share one encoder pass.
            prompt_input_ids: `(N, L_e)` (Single-Mask).
            seeds: one sampling seed per row; decoding defaults come from the config.
        Returns:
            `EmoSEMGenerationOutput` with `pred_masks (N, H, W)` and `sequences (N, T)`.
        """
        cfg = self.config
        image_embeddings, clip_features = self._resolve_features(
            pixel_values, clip_pixel_values, image_embeddings, clip_features
        )
        _check_tensor("emotion_ids", emotion_ids, (None,), "int")
        n = emotion_ids.shape[0]
        if image_index is None:
            if image_embeddings.shape[0] != n:
                raise ValueError(
                    f"emotion_ids: {n} rows but {image_embeddings.shape[0]} images; pass image_index to map rows to images"
                )
        else:
            _check_tensor("image_index", image_index, (n,), "int")
            if image_index.min() < 0 or image_index.max() >= image_embeddings.shape[0]:
                raise ValueError(f"image_index: values must be in [0, {image_embeddings.shape[0]})")
            image_embeddings, clip_features = image_embeddings[image_index], clip_features[image_index]
        _check_tensor("prompt_input_ids", prompt_input_ids, (n, cfg.prompt_length), "int")
        if emotion_ids.numel() and (emotion_ids.min() < 0 or emotion_ids.max() >= cfg.num_emotions):
            raise ValueError(f"emotion_ids: expected values in [0, {cfg.num_emotions}), got {emotion_ids.tolist()}")
        seg = self._segment(image_embeddings, emotion_ids, prompt_input_ids)
        sequences = None
        if explain:
            sequences = decode_explanations(
                self.language_model,
                seg["prefix_embeds"],
                self.clip_projection(clip_features),
                eos_token_id=cfg.text_config.eos_token_id,
                max_new_tokens=cfg.max_explanation_tokens if max_new_tokens is None else max_new_tokens,
                do_sample=cfg.do_sample if do_sample is None else do_sample,
                top_p=cfg.top_p if top_p is None else top_p,
                temperature=cfg.temperature if temperature is None else temperature,
                seeds=seeds,
            )
        return EmoSEMGenerationOutput(
            pred_masks=seg["pred_masks"], sequences=sequences, prefix_embeds=seg["prefix_embeds"]
        )


def _components_config(sam_model, clip_model, language_model, **overrides) -> EmoSEMConfig:
    return EmoSEMConfig(
        sam_config=sam_model.config.to_dict(),
        vision_config=clip_model.config.to_dict(),
        text_config=language_model.config.to_dict(),
        **overrides,
    )


def _from_pretrained_components_impl(
    cls,
    sam: str = "facebook/sam-vit-base",
    clip: str = "openai/clip-vit-base-patch16",
    language_model: str = "distilgpt2",
    **config_overrides,
) -> "EmoSEMModel":
    sam_model = SamModel.from_pretrained(sam)
    clip_model = CLIPVisionModel.from_pretrained(clip)  # a full CLIP checkpoint works too: its vision part
    lm = GPT2LMHeadModel.from_pretrained(language_model)
    config = _components_config(sam_model, clip_model, lm, **config_overrides)
    model = cls(config)
    model.sam.load_state_dict(sam_model.state_dict(), strict=True)
    model.clip.load_state_dict(clip_model.state_dict(), strict=True)
    missing, unexpected = model.language_model.load_state_dict(lm.state_dict(), strict=False)
    new_params = ("crossattention", "ln_cross_attn")
    if unexpected or any(not any(tag in key for tag in new_params) for key in missing):
        raise ValueError(
            f"language_model={language_model!r} does not fit a GPT-2 with cross-attention: "
            f"unexpected keys {unexpected[:5]}, missing keys {[k for k in missing if not any(t in k for t in new_params)][:5]}"
        )
    if model.emotion_projector is not None:
        model.set_emotion_projector_gain(float(model.get_input_embeddings().weight.std()))
    with torch.no_grad():
        sam_token = model.sam.mask_decoder.mask_tokens.weight[0]
        model.mask_tokens.copy_(sam_token.expand_as(model.mask_tokens))
    model.apply_trainable_modules()
    return model
