"""Convert Meta's original `segment-anything` checkpoints into transformers' `SamModel` format.

Meta's release files (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``, ``sam_vit_h_4b8939.pth``) are flat
state dicts of ``segment_anything.modeling.Sam``. This module renames every tensor to the name used by
``transformers.SamModel``, infers the matching ``SamConfig`` from the tensor shapes, and (from the command line)
writes a folder that ``SamModel.from_pretrained`` / ``EmoSEMModel.from_pretrained_components(sam=DIR)`` load::

    python -m modeling_emosem.convert_sam_checkpoint --checkpoint sam_vit_b_01ec64.pth --out sam-vit-b

Only torch, transformers, safetensors and the standard library are used; ``segment_anything`` is not needed.
Checkpoints are read with ``torch.load(..., weights_only=True)``: no arbitrary object is ever unpickled.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
from transformers import SamConfig, SamImageProcessor, SamModel

__all__ = [
    "convert_sam_state_dict",
    "load_original_sam_checkpoint",
    "sam_config_for_checkpoint",
    "hf_key_to_original",
    "main",
]

# Non-persistent normalisation buffers of `Sam` (present in some released files); SamImageProcessor normalises.
IGNORED_ORIGINAL_KEYS = ("pixel_mean", "pixel_std")

# Meta's `PositionEmbeddingRandom` matrix is shared by the prompt encoder and the dense image positional
# encoding; transformers keeps one parameter under two (tied) names.
_ORIGINAL_PE_KEY = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_HF_PE_KEYS = ("shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding")

# transformers module prefix -> Meta module prefix. `{a}` / `{b}` stand for integer indices. A rule matches a whole
# module path; the rest of the key (".weight", ".qkv.bias", ".rel_pos_h", ...) is carried over unchanged.
_PREFIX_RULES: tuple[tuple[str, str], ...] = (
    # ---- image encoder (ViTDet backbone)
    ("vision_encoder.patch_embed.projection", "image_encoder.patch_embed.proj"),
    ("vision_encoder.pos_embed", "image_encoder.pos_embed"),
    ("vision_encoder.layers.{a}.layer_norm1", "image_encoder.blocks.{a}.norm1"),
    ("vision_encoder.layers.{a}.layer_norm2", "image_encoder.blocks.{a}.norm2"),
    ("vision_encoder.layers.{a}.attn", "image_encoder.blocks.{a}.attn"),  # qkv, proj, rel_pos_h, rel_pos_w
    ("vision_encoder.layers.{a}.mlp", "image_encoder.blocks.{a}.mlp"),  # MLPBlock lin1 / lin2
    # neck = Sequential(Conv2d 1x1, LayerNorm2d, Conv2d 3x3, LayerNorm2d)
    ("vision_encoder.neck.conv1", "image_encoder.neck.0"),
    ("vision_encoder.neck.layer_norm1", "image_encoder.neck.1"),
    ("vision_encoder.neck.conv2", "image_encoder.neck.2"),
    ("vision_encoder.neck.layer_norm2", "image_encoder.neck.3"),
    # ---- prompt encoder
    ("prompt_encoder.point_embed.{a}", "prompt_encoder.point_embeddings.{a}"),
    ("prompt_encoder.not_a_point_embed", "prompt_encoder.not_a_point_embed"),
    ("prompt_encoder.no_mask_embed", "prompt_encoder.no_mask_embed"),
    # mask_downscaling = Sequential(Conv2d, LayerNorm2d, GELU, Conv2d, LayerNorm2d, GELU, Conv2d)
    ("prompt_encoder.mask_embed.conv1", "prompt_encoder.mask_downscaling.0"),
    ("prompt_encoder.mask_embed.layer_norm1", "prompt_encoder.mask_downscaling.1"),
    ("prompt_encoder.mask_embed.conv2", "prompt_encoder.mask_downscaling.3"),
    ("prompt_encoder.mask_embed.layer_norm2", "prompt_encoder.mask_downscaling.4"),
    ("prompt_encoder.mask_embed.conv3", "prompt_encoder.mask_downscaling.6"),
    # ---- mask decoder
    ("mask_decoder.iou_token", "mask_decoder.iou_token"),
    ("mask_decoder.mask_tokens", "mask_decoder.mask_tokens"),
    ("mask_decoder.transformer.layers.{a}.self_attn", "mask_decoder.transformer.layers.{a}.self_attn"),
    (
        "mask_decoder.transformer.layers.{a}.cross_attn_token_to_image",
        "mask_decoder.transformer.layers.{a}.cross_attn_token_to_image",
    ),
    (
        "mask_decoder.transformer.layers.{a}.cross_attn_image_to_token",
        "mask_decoder.transformer.layers.{a}.cross_attn_image_to_token",
    ),
    ("mask_decoder.transformer.layers.{a}.mlp", "mask_decoder.transformer.layers.{a}.mlp"),
    ("mask_decoder.transformer.layers.{a}.layer_norm{b}", "mask_decoder.transformer.layers.{a}.norm{b}"),
    ("mask_decoder.transformer.final_attn_token_to_image", "mask_decoder.transformer.final_attn_token_to_image"),
    ("mask_decoder.transformer.layer_norm_final_attn", "mask_decoder.transformer.norm_final_attn"),
    # output_upscaling = Sequential(ConvTranspose2d, LayerNorm2d, GELU, ConvTranspose2d, GELU)
    ("mask_decoder.upscale_conv1", "mask_decoder.output_upscaling.0"),
    ("mask_decoder.upscale_layer_norm", "mask_decoder.output_upscaling.1"),
    ("mask_decoder.upscale_conv2", "mask_decoder.output_upscaling.3"),
)

# Meta's `MLP` keeps every Linear in `layers.0 .. layers.{n-1}`; transformers' `SamFeedForward` names the first
# `proj_in`, the last `proj_out` and the hidden ones `layers.0 .. layers.{n-3}`.
_FEEDFORWARD_RE = re.compile(
    r"^(?P<mlp>mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))"
    r"\.(?P<part>proj_in|proj_out|layers\.(?P<idx>\d+))\.(?P<param>weight|bias)$"
)


def _compile_rule(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{a\}", r"(?P<a>\d+)").replace(r"\{b\}", r"(?P<b>\d+)")
    return re.compile(rf"^{pattern}(?P<rest>\..+)?$")


_COMPILED_RULES = tuple((_compile_rule(hf), original) for hf, original in _PREFIX_RULES)


def hf_key_to_original(hf_key: str, feedforward_depths: dict[str, int]) -> str:
    """Name of the Meta tensor that fills transformers' `hf_key`.

    `feedforward_depths` maps each transformers MLP module path (e.g. ``"mask_decoder.iou_prediction_head"``)
    to its number of Linear layers. Raises `KeyError` for a key no rule knows.
    """
    if hf_key in _HF_PE_KEYS:
        return _ORIGINAL_PE_KEY
    match = _FEEDFORWARD_RE.match(hf_key)
    if match:
        depth = feedforward_depths[match["mlp"]]
        part = match["part"]
        index = 0 if part == "proj_in" else depth - 1 if part == "proj_out" else int(match["idx"]) + 1
        return f"{match['mlp']}.layers.{index}.{match['param']}"
    for pattern, original in _COMPILED_RULES:
        match = pattern.match(hf_key)
        if match:
            groups = {k: v for k, v in match.groupdict().items() if k in ("a", "b") and v is not None}
            return original.format(**groups) + (match["rest"] or "")
    raise KeyError(f"no conversion rule for transformers key {hf_key!r}")


# ----------------------------------------------------------------------------------------------- config
# Canonical ViT sizes of the three released checkpoints (used when the shapes alone cannot tell).
_CANONICAL_VITS = {
    768: {"num_attention_heads": 12, "global_attn_indexes": [2, 5, 8, 11], "window_size": 14},  # ViT-B
    1024: {"num_attention_heads": 16, "global_attn_indexes": [5, 11, 17, 23], "window_size": 14},  # ViT-L
    1280: {"num_attention_heads": 16, "global_attn_indexes": [7, 15, 23, 31], "window_size": 14},  # ViT-H
}


def _indices(state_dict: dict[str, torch.Tensor], prefix: str) -> list[int]:
    found = set()
    for key in state_dict:
        if key.startswith(prefix):
            head = key[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def _require(state_dict: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"cannot infer the SAM configuration: the checkpoint has no {key!r}")
    return state_dict[key]


def sam_config_for_checkpoint(
    state_dict: dict[str, torch.Tensor],
    *,
    mask_decoder_num_attention_heads: int = 8,
    vision_num_attention_heads: int | None = None,
    image_size: int | None = None,
) -> SamConfig:
    """Infer the transformers `SamConfig` of an original SAM state dict (ViT-B / L / H or any other size).

    Read from the shapes: ViT width, depth, MLP width, patch size, image size (absolute position grid x patch),
    attention heads and window size (relative-position tables: their length is ``2 * window - 1`` in windowed
    blocks and ``2 * grid - 1`` in global ones, which gives ``global_attn_indexes``), neck / prompt widths, mask
    input channels and every mask-decoder size. Not recorded in the weights: the mask decoder's head count (8 in
    every release; `mask_decoder_num_attention_heads`), and, for a ViT without relative positions, its heads and
    windows (taken from the canonical B/L/H sizes, or `vision_num_attention_heads`). The mask decoder's
    LayerNorm epsilon is set to PyTorch's 1e-5, the value Meta's two-way transformer uses.
    """
    sd = state_dict
    patch_weight = _require(sd, "image_encoder.patch_embed.proj.weight")  # (C, 3, p, p)
    hidden_size, num_channels, patch_size = patch_weight.shape[0], patch_weight.shape[1], patch_weight.shape[2]
    if patch_weight.shape[2] != patch_weight.shape[3]:
        raise ValueError(f"non-square patches are not supported: {tuple(patch_weight.shape)}")

    use_abs_pos = "image_encoder.pos_embed" in sd
    if use_abs_pos:
        grid = sd["image_encoder.pos_embed"].shape[1]
        if sd["image_encoder.pos_embed"].shape[2] != grid:
            raise ValueError("non-square position grids are not supported")
        inferred_size = grid * patch_size
        if image_size is not None and image_size != inferred_size:
            raise ValueError(f"image_size={image_size} disagrees with the checkpoint's position grid ({inferred_size})")
        image_size = inferred_size
    image_size = 1024 if image_size is None else image_size
    grid = image_size // patch_size

    blocks = _indices(sd, "image_encoder.blocks.")
    if not blocks:
        raise ValueError("cannot infer the SAM configuration: the checkpoint has no image_encoder.blocks.*")
    depth = blocks[-1] + 1
    mlp_dim = _require(sd, "image_encoder.blocks.0.mlp.lin1.weight").shape[0]
    qkv_bias = "image_encoder.blocks.0.attn.qkv.bias" in sd
    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in sd
    canonical = _CANONICAL_VITS.get(hidden_size)

    if use_rel_pos:
        head_dim = sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        num_heads = hidden_size // head_dim
        global_attn_indexes, windows = [], set()
        for i in range(depth):
            rel = _require(sd, f"image_encoder.blocks.{i}.attn.rel_pos_h")
            size = (rel.shape[0] + 1) // 2
            if size == grid:  # a "window" as large as the grid is global attention
                global_attn_indexes.append(i)
            else:
                windows.add(size)
        if len(windows) > 1:
            raise ValueError(f"blocks use different window sizes {sorted(windows)}; SamVisionConfig has one")
        window_size = windows.pop() if windows else 0
    elif canonical is not None:
        num_heads = canonical["num_attention_heads"]
        global_attn_indexes = list(canonical["global_attn_indexes"])
        window_size = canonical["window_size"]
    else:
        raise ValueError(
            f"cannot infer heads / windows of a {hidden_size}-wide ViT without relative positions; "
            "pass vision_num_attention_heads and build the SamConfig by hand"
        )
    if vision_num_attention_heads is not None:
        num_heads = vision_num_attention_heads
    if hidden_size % num_heads:
        raise ValueError(f"{num_heads} heads do not divide the ViT width {hidden_size}")

    output_channels = _require(sd, "image_encoder.neck.0.weight").shape[0]
    pe = _require(sd, _ORIGINAL_PE_KEY)
    if pe.ndim != 2 or pe.shape[0] != 2:
        raise ValueError(f"{_ORIGINAL_PE_KEY} should have shape (2, num_pos_feats), got {tuple(pe.shape)}")

    prompt_hidden = _require(sd, "prompt_encoder.no_mask_embed.weight").shape[1]
    mask_input_channels = _require(sd, "prompt_encoder.mask_downscaling.3.weight").shape[0]
    num_point_embeddings = len(_indices(sd, "prompt_encoder.point_embeddings."))

    decoder_hidden = _require(sd, "mask_decoder.iou_token.weight").shape[1]
    decoder_layers = _indices(sd, "mask_decoder.transformer.layers.")
    if not decoder_layers:
        raise ValueError("cannot infer the SAM configuration: the checkpoint has no mask_decoder.transformer.layers.*")
    internal = _require(sd, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight").shape[0]
    iou_layers = _indices(sd, "mask_decoder.iou_prediction_head.layers.")
    if len(iou_layers) < 2:
        raise ValueError("cannot infer the SAM configuration: the IoU head needs at least 2 layers")
    # (transformers' hypernetwork MLPs always have 3 layers; any other depth surfaces as missing / unexpected keys)
    if decoder_hidden % internal or internal % mask_decoder_num_attention_heads:
        raise ValueError(
            f"mask_decoder_num_attention_heads={mask_decoder_num_attention_heads} does not divide the "
            f"attention width {internal}"
        )

    return SamConfig(
        vision_config={
            "hidden_size": hidden_size,
            "num_channels": num_channels,
            "output_channels": output_channels,
            "num_hidden_layers": depth,
            "num_attention_heads": num_heads,
            "image_size": image_size,
            "patch_size": patch_size,
            "mlp_dim": mlp_dim,
            "mlp_ratio": mlp_dim / hidden_size,
            "qkv_bias": qkv_bias,
            "use_abs_pos": use_abs_pos,
            "use_rel_pos": use_rel_pos,
            "window_size": window_size,
            "global_attn_indexes": global_attn_indexes,
            "num_pos_feats": pe.shape[1],
            "layer_norm_eps": 1e-6,
        },
        prompt_encoder_config={
            "hidden_size": prompt_hidden,
            "image_size": image_size,
            "patch_size": patch_size,
            "mask_input_channels": mask_input_channels,
            "num_point_embeddings": num_point_embeddings,
            "layer_norm_eps": 1e-6,
        },
        mask_decoder_config={
            "hidden_size": decoder_hidden,
            "mlp_dim": _require(sd, "mask_decoder.transformer.layers.0.mlp.lin1.weight").shape[0],
            "num_hidden_layers": decoder_layers[-1] + 1,
            "num_attention_heads": mask_decoder_num_attention_heads,
            "attention_downsample_rate": decoder_hidden // internal,
            "num_multimask_outputs": _require(sd, "mask_decoder.mask_tokens.weight").shape[0] - 1,
            "iou_head_depth": iou_layers[-1] + 1,
            "iou_head_hidden_dim": sd[f"mask_decoder.iou_prediction_head.layers.{iou_layers[0]}.weight"].shape[0],
            "layer_norm_eps": 1e-5,
        },
    )


# ----------------------------------------------------------------------------------------------- conversion
def _feedforward_depths(config: SamConfig) -> dict[str, int]:
    dec = config.mask_decoder_config
    depths = {f"mask_decoder.output_hypernetworks_mlps.{i}": 3 for i in range(dec.num_multimask_outputs + 1)}
    depths["mask_decoder.iou_prediction_head"] = dec.iou_head_depth
    return depths


def _expected_shapes(config: SamConfig) -> dict[str, torch.Size]:
    """Every state-dict entry of `SamModel(config)` with its shape (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = SamModel(config)
    return {key: value.shape for key, value in model.state_dict().items()}


def convert_sam_state_dict(
    state_dict: dict[str, torch.Tensor], config: SamConfig | None = None
) -> dict[str, torch.Tensor]:
    """Rename an original SAM state dict to transformers' `SamModel` names.

    `config` defaults to `sam_config_for_checkpoint(state_dict)`. The result loads into `SamModel(config)` with
    ``strict=True`` (the shared positional matrix appears under both of transformers' tied names). Raises
    `ValueError` naming every original key with no place in `SamModel`, every key `SamModel` needs that the
    checkpoint lacks, and every shape that disagrees. ``pixel_mean`` / ``pixel_std`` are dropped.
    """
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError("state_dict must be a dict of str -> torch.Tensor")
    config = sam_config_for_checkpoint(state_dict) if config is None else config
    depths = _feedforward_depths(config)
    expected = _expected_shapes(config)

    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    for hf_key, shape in expected.items():
        original = hf_key_to_original(hf_key, depths)
        if original not in state_dict:
            missing.append(f"{original} (-> {hf_key})")
            continue
        used.add(original)
        tensor = state_dict[original]
        if tensor.shape != shape:
            mismatched.append(f"{original}: {tuple(tensor.shape)} vs {hf_key}: {tuple(shape)}")
            continue
        converted[hf_key] = tensor.detach().clone().contiguous()

    unexpected = sorted(k for k in state_dict if k not in used and k not in IGNORED_ORIGINAL_KEYS)
    problems = []
    if unexpected:
        problems.append(f"unexpected keys with no place in transformers' SamModel: {unexpected}")
    if missing:
        problems.append(f"missing keys that SamModel needs: {sorted(set(missing))}")
    if mismatched:
        problems.append(f"shape mismatches: {mismatched}")
    if problems:
        raise ValueError("cannot convert this SAM checkpoint:\n  " + "\n  ".join(problems))
    return converted


def load_original_sam_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an original SAM checkpoint (``.pth`` / ``.pt`` via ``torch.load(weights_only=True)``, or
    ``.safetensors``) as a flat CPU state dict. A ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper and a
    ``module.`` (DataParallel) prefix are removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state_dict = load_file(str(path), device="cpu")
    else:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):
        if isinstance(state_dict, dict) and isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _image_processor_for(config: SamConfig) -> SamImageProcessor:
    size = config.vision_config.image_size
    mask = 4 * config.prompt_encoder_config.image_embedding_size
    return SamImageProcessor(
        size={"longest_edge": size},
        pad_size={"height": size, "width": size},
        mask_size={"longest_edge": mask},
        mask_pad_size={"height": mask, "width": mask},
    )


def convert_checkpoint(
    checkpoint: str | Path, out: str | Path, *, mask_decoder_num_attention_heads: int = 8, save_processor: bool = True
) -> SamModel:
    """Convert `checkpoint` and write a transformers SAM folder (config + safetensors [+ image processor])."""
    original = load_original_sam_checkpoint(checkpoint)
    config = sam_config_for_checkpoint(original, mask_decoder_num_attention_heads=mask_decoder_num_attention_heads)
    converted = convert_sam_state_dict(original, config)
    model = SamModel(config)
    model.load_state_dict(converted, strict=True)
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if save_processor:
        _image_processor_for(config).save_pretrained(out)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_emosem.convert_sam_checkpoint",
        description="Convert an original segment-anything checkpoint into a transformers SamModel folder.",
    )
    parser.add_argument("--checkpoint", required=True, help="sam_vit_{b,l,h}_*.pth (or .safetensors)")
    parser.add_argument("--out", required=True, help="output folder (config.json, model.safetensors, ...)")
    parser.add_argument("--mask-decoder-heads", type=int, default=8, help="mask decoder heads (8 in every release)")
    parser.add_argument("--no-processor", action="store_true", help="do not write a SamImageProcessor config")
    args = parser.parse_args(argv)
    model = convert_checkpoint(
        args.checkpoint,
        args.out,
        mask_decoder_num_attention_heads=args.mask_decoder_heads,
        save_processor=not args.no_processor,
    )
    vision = model.config.vision_config
    print(
        f"wrote {args.out}: ViT {vision.hidden_size}x{vision.num_hidden_layers} ({vision.num_attention_heads} heads, "
        f"global blocks {list(vision.global_attn_indexes)}), {vision.image_size}px"
    )


if __name__ == "__main__":
    main()
