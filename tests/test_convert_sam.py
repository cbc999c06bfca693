"""Original segment-anything checkpoint -> transformers SamModel conversion.

A small `segment_anything.modeling.Sam` is built from Meta's own classes with every tensor randomised (Meta
zero-initialises relative positions and absolute positions, which would hide mapping errors), converted, and
compared output for output with transformers' SamModel and with EmoSEM's direct use of SAM's mask decoder.
"""

from __future__ import annotations

import copy
import math
import pickle
from functools import partial

import pytest
import torch

import segment_anything
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from transformers import SamConfig, SamImageProcessor, SamModel  # noqa: E402

from modeling_emosem.convert_sam_checkpoint import (  # noqa: E402
    convert_sam_state_dict,
    hf_key_to_original,
    load_original_sam_checkpoint,
    main,
    sam_config_for_checkpoint,
)

TOL = 1e-4

# A small SAM: 128 px, 16 px patches -> 8 x 8 grid; windows of 3 (so the 8 x 8 grid is padded to 9 x 9) except
# block 1, which attends globally; prompt / decoder width 32; 4 decoder heads (not the default 8).
IMG, PATCH, GRID = 128, 16, 8
SMALL_SAM = {
    "vision_config": {
        "hidden_size": 48,
        "num_hidden_layers": 3,
        "num_attention_heads": 3,
        "mlp_dim": 96,
        "image_size": IMG,
        "patch_size": PATCH,
        "window_size": 3,
        "global_attn_indexes": [1],
        "output_channels": 32,
        "num_pos_feats": 16,
        "use_rel_pos": True,
        "use_abs_pos": True,
        "layer_norm_eps": 1e-6,
    },
    "prompt_encoder_config": {"hidden_size": 32, "image_size": IMG, "patch_size": PATCH, "mask_input_channels": 8},
    "mask_decoder_config": {
        "hidden_size": 32,
        "mlp_dim": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "iou_head_hidden_dim": 24,
        "iou_head_depth": 3,
        "layer_norm_eps": 1e-5,  # Meta's two-way transformer uses nn.LayerNorm's default
    },
}
DECODER_HEADS = SMALL_SAM["mask_decoder_config"]["num_attention_heads"]


def build_meta_sam() -> Sam:
    v, p, d = SMALL_SAM["vision_config"], SMALL_SAM["prompt_encoder_config"], SMALL_SAM["mask_decoder_config"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=IMG,
            patch_size=PATCH,
            embed_dim=v["hidden_size"],
            depth=v["num_hidden_layers"],
            num_heads=v["num_attention_heads"],
            mlp_ratio=v["mlp_dim"] / v["hidden_size"],
            out_chans=v["output_channels"],
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=v["window_size"],
            global_attn_indexes=tuple(v["global_attn_indexes"]),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=p["hidden_size"],
            image_embedding_size=(GRID, GRID),
            input_image_size=(IMG, IMG),
            mask_in_chans=p["mask_input_channels"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=d["num_hidden_layers"],
                embedding_dim=d["hidden_size"],
                mlp_dim=d["mlp_dim"],
                num_heads=d["num_attention_heads"],
            ),
            transformer_dim=d["hidden_size"],
            iou_head_depth=d["iou_head_depth"],
            iou_head_hidden_dim=d["iou_head_hidden_dim"],
        ),
    )
    # Overwrite every tensor with O(1)-scaled random values: nothing left at zero / one.
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, tensor in sam.state_dict().items():
            noise = torch.randn(tensor.shape, generator=gen)
            if name.endswith("bias"):
                value = 0.1 * noise
            elif tensor.ndim == 1:  # LayerNorm / LayerNorm2d scales
                value = 1.0 + 0.2 * noise
            elif "rel_pos" in name or "pos_embed" in name or "embed" in name or "token" in name:
                value = 0.5 * noise
            elif "positional_encoding_gaussian_matrix" in name:
                value = noise
            else:  # Linear / Conv / ConvTranspose weights
                value = noise / math.sqrt(tensor[0].numel())
            tensor.copy_(value)
    return sam.eval()


@pytest.fixture(scope="module")
def meta_sam() -> Sam:
    return build_meta_sam()


@pytest.fixture(scope="module")
def checkpoint(meta_sam, tmp_path_factory):
    path = tmp_path_factory.mktemp("sam") / "sam_small.pth"
    torch.save(meta_sam.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def hf_sam(checkpoint) -> SamModel:
    state_dict = load_original_sam_checkpoint(checkpoint)
    config = sam_config_for_checkpoint(state_dict, mask_decoder_num_attention_heads=DECODER_HEADS)
    model = SamModel(config)
    model.load_state_dict(convert_sam_state_dict(state_dict, config), strict=True)
    return model.eval()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def image_embeddings(meta_sam) -> torch.Tensor:
    pixels = torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return meta_sam.image_encoder(pixels)


# ----------------------------------------------------------------------------------------------- config
def test_inferred_config_matches_the_small_model(checkpoint):
    config = sam_config_for_checkpoint(load_original_sam_checkpoint(checkpoint), mask_decoder_num_attention_heads=4)
    expected = SamConfig(**copy.deepcopy(SMALL_SAM))
    for sub in ("vision_config", "prompt_encoder_config", "mask_decoder_config"):
        got, want = getattr(config, sub), getattr(expected, sub)
        for field in SMALL_SAM[sub]:
            assert getattr(got, field) == getattr(want, field), (sub, field)
    assert config.prompt_encoder_config.image_embedding_size == GRID
    assert config.mask_decoder_config.num_multimask_outputs == 3
    assert config.mask_decoder_config.attention_downsample_rate == 2


@pytest.mark.parametrize(
    ("variant", "width", "depth", "heads", "global_idx"),
    [("vit_b", 768, 12, 12, [2, 5, 8, 11]), ("vit_l", 1024, 24, 16, [5, 11, 17, 23]), ("vit_h", 1280, 32, 16, [7, 15, 23, 31])],
)
def test_released_layouts_convert_key_for_key(variant, width, depth, heads, global_idx):
    """Meta's own builders (on the meta device: shapes only, no memory) give the released B/L/H layouts."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        sam = sam_model_registry[variant]()
    state_dict = dict(sam.state_dict())
    # Older release files also carry the normalisation buffers; they must be dropped, not rejected.
    state_dict["pixel_mean"] = torch.zeros(3, 1, 1, device="meta")
    state_dict["pixel_std"] = torch.ones(3, 1, 1, device="meta")
    config = sam_config_for_checkpoint(state_dict)
    v = config.vision_config
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads) == (width, depth, heads)
    assert list(v.global_attn_indexes) == global_idx
    assert (v.window_size, v.image_size, v.patch_size, v.mlp_dim, v.output_channels, v.num_pos_feats) == (
        14, 1024, 16, 4 * width, 256, 128
    )
    if variant == "vit_b":  # transformers' SamConfig() defaults are SAM ViT-B
        default = SamConfig()
        for sub in ("vision_config", "prompt_encoder_config", "mask_decoder_config"):
            got, want = getattr(config, sub).to_dict(), getattr(default, sub).to_dict()
            diff = {k for k in set(got) | set(want) if got.get(k) != want.get(k)}
            assert diff <= {"layer_norm_eps", "mlp_ratio"}, (sub, diff)
    converted = convert_sam_state_dict(state_dict, config)
    with torch.device("meta"):
        reference = SamModel(config).state_dict()
    assert set(converted) == set(reference)
    assert all(converted[k].shape == reference[k].shape for k in reference)
    assert "pixel_mean" not in converted and "pixel_std" not in converted
    # every original tensor is used, and each by exactly one transformers tensor (the tied PE matrix excepted)
    depths = {f"mask_decoder.output_hypernetworks_mlps.{i}": 3 for i in range(4)}
    depths["mask_decoder.iou_prediction_head"] = 3
    sources = [hf_key_to_original(k, depths) for k in reference]
    assert set(sources) == set(state_dict) - {"pixel_mean", "pixel_std"}
    assert len(sources) - len(set(sources)) == 1


def test_specific_renames():
    depths = {"mask_decoder.output_hypernetworks_mlps.0": 3, "mask_decoder.iou_prediction_head": 3}
    expect = {
        "vision_encoder.layers.0.mlp.lin1.weight": "image_encoder.blocks.0.mlp.lin1.weight",
        "vision_encoder.layers.3.layer_norm2.bias": "image_encoder.blocks.3.norm2.bias",
        "vision_encoder.layers.10.attn.rel_pos_w": "image_encoder.blocks.10.attn.rel_pos_w",
        "vision_encoder.neck.layer_norm1.weight": "image_encoder.neck.1.weight",
        "vision_encoder.neck.conv2.weight": "image_encoder.neck.2.weight",
        "shared_image_embedding.positional_embedding": "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "prompt_encoder.shared_embedding.positional_embedding": "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "prompt_encoder.point_embed.2.weight": "prompt_encoder.point_embeddings.2.weight",
        "prompt_encoder.mask_embed.conv3.bias": "prompt_encoder.mask_downscaling.6.bias",
        "prompt_encoder.mask_embed.layer_norm2.weight": "prompt_encoder.mask_downscaling.4.weight",
        "mask_decoder.transformer.layers.1.layer_norm4.weight": "mask_decoder.transformer.layers.1.norm4.weight",
        "mask_decoder.transformer.layer_norm_final_attn.bias": "mask_decoder.transformer.norm_final_attn.bias",
        "mask_decoder.upscale_layer_norm.weight": "mask_decoder.output_upscaling.1.weight",
        "mask_decoder.upscale_conv2.bias": "mask_decoder.output_upscaling.3.bias",
        "mask_decoder.output_hypernetworks_mlps.0.proj_in.weight": "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight",
        "mask_decoder.output_hypernetworks_mlps.0.layers.0.bias": "mask_decoder.output_hypernetworks_mlps.0.layers.1.bias",
        "mask_decoder.output_hypernetworks_mlps.0.proj_out.weight": "mask_decoder.output_hypernetworks_mlps.0.layers.2.weight",
        "mask_decoder.iou_prediction_head.proj_out.bias": "mask_decoder.iou_prediction_head.layers.2.bias",
    }
    for hf, original in expect.items():
        assert hf_key_to_original(hf, depths) == original
    with pytest.raises(KeyError):
        hf_key_to_original("vision_encoder.something_new.weight", depths)


# ----------------------------------------------------------------------------------------------- numerics
def test_image_embeddings_match(meta_sam, hf_sam):
    pixels = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(3))  # already normalised
    with torch.no_grad():
        ours = meta_sam.image_encoder(pixels)
        theirs = hf_sam.vision_encoder(pixels).last_hidden_state
    assert ours.shape == (2, 32, GRID, GRID)
    assert ours.abs().max() > 0.5  # not a degenerate comparison
    assert _max_diff(ours, theirs) < TOL


def _meta_predict(meta_sam, image_embeddings, points=None, labels=None, boxes=None, masks=None, multimask=True):
    with torch.no_grad():
        sparse, dense = meta_sam.prompt_encoder(
            points=None if points is None else (points, labels), boxes=boxes, masks=masks
        )
        return meta_sam.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=meta_sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )


# Both libraries take prompt coordinates in the (resized, unpadded) model input frame and both add the
# +0.5 pixel-centre shift themselves, so the same numbers go in; transformers adds a point-batch axis.
POINTS = torch.tensor([[[30.0, 70.0], [101.0, 12.5]]])
LABELS = torch.tensor([[1, 0]], dtype=torch.int)
BOX = torch.tensor([[10.0, 20.0, 90.0, 117.0]])


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", ["points", "box", "point+box", "points+mask"])
def test_masks_and_iou_match(meta_sam, hf_sam, image_embeddings, prompt, multimask):
    meta_kwargs, hf_kwargs = {}, {}
    if prompt in ("points", "points+mask"):
        meta_kwargs.update(points=POINTS, labels=LABELS)
        hf_kwargs.update(input_points=POINTS[:, None], input_labels=LABELS[:, None])
    if prompt == "box":
        meta_kwargs.update(boxes=BOX)
        hf_kwargs.update(input_boxes=BOX[:, None])
    if prompt == "point+box":
        meta_kwargs.update(points=POINTS[:, :1], labels=LABELS[:, :1], boxes=BOX)
        hf_kwargs.update(input_points=POINTS[:, None, :1], input_labels=LABELS[:, None, :1], input_boxes=BOX[:, None])
    if prompt == "points+mask":  # exercises the mask_downscaling convs / LayerNorm2d
        mask = torch.randn(1, 1, 4 * GRID, 4 * GRID, generator=torch.Generator().manual_seed(5))
        meta_kwargs.update(masks=mask)
        hf_kwargs.update(input_masks=mask)

    masks, iou = _meta_predict(meta_sam, image_embeddings, multimask=multimask, **meta_kwargs)
    with torch.no_grad():
        out = hf_sam(image_embeddings=image_embeddings, multimask_output=multimask, **hf_kwargs)
    n = 3 if multimask else 1
    assert masks.shape == (1, n, 4 * GRID, 4 * GRID)
    assert masks.abs().max() > 0.5
    assert _max_diff(masks, out.pred_masks[:, 0]) < TOL
    assert _max_diff(iou, out.iou_scores[:, 0]) < TOL


def test_end_to_end_from_pixels(meta_sam, hf_sam):
    pixels = torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        masks, iou = _meta_predict(meta_sam, meta_sam.image_encoder(pixels), points=POINTS, labels=LABELS)
        out = hf_sam(pixel_values=pixels, input_points=POINTS[:, None], input_labels=LABELS[:, None])
    assert _max_diff(masks, out.pred_masks[:, 0]) < TOL
    assert _max_diff(iou, out.iou_scores[:, 0]) < TOL


# ----------------------------------------------------------------------------------------------- files / CLI
def test_cli_writes_a_loadable_folder(checkpoint, hf_sam, tmp_path):
    out = tmp_path / "sam-small"
    main(["--checkpoint", str(checkpoint), "--out", str(out), "--mask-decoder-heads", str(DECODER_HEADS)])
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin"))
    loaded = SamModel.from_pretrained(out).eval()
    expected = hf_sam.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert loaded.config.mask_decoder_config.num_attention_heads == DECODER_HEADS
    processor = SamImageProcessor.from_pretrained(out)
    assert processor.size["longest_edge"] == IMG and processor.pad_size["height"] == IMG


def test_safetensors_and_wrapped_checkpoints_load_the_same(meta_sam, checkpoint, tmp_path):
    from safetensors.torch import save_file

    reference = load_original_sam_checkpoint(checkpoint)
    st_path = tmp_path / "sam.safetensors"
    save_file({k: v.contiguous() for k, v in meta_sam.state_dict().items()}, str(st_path))
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {f"module.{k}": v for k, v in meta_sam.state_dict().items()}}, wrapped)
    for path in (st_path, wrapped):
        other = load_original_sam_checkpoint(path)
        assert set(other) == set(reference)
        assert all(torch.equal(other[k], reference[k]) for k in reference)


class _NotATensor:
    pass


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"image_encoder.pos_embed": _NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_original_sam_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("drop", "mask_decoder.transformer.layers.0.norm1.weight"),
        ("drop", "mask_decoder.output_hypernetworks_mlps.2.layers.1.bias"),
        ("drop", "image_encoder.blocks.2.attn.rel_pos_w"),
        ("add", "image_encoder.blocks.0.attn.extra_scale"),
        ("add", "mask_decoder.output_hypernetworks_mlps.0.layers.3.weight"),
        ("reshape", "prompt_encoder.mask_downscaling.6.weight"),
    ],
)
def test_bad_checkpoints_raise_naming_the_key(checkpoint, edit, named):
    state_dict = load_original_sam_checkpoint(checkpoint)
    if edit == "drop":
        del state_dict[named]
    elif edit == "add":
        state_dict[named] = torch.zeros(4)
    else:
        state_dict[named] = state_dict[named][:, :-1]
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        convert_sam_state_dict(state_dict, sam_config_for_checkpoint(state_dict, mask_decoder_num_attention_heads=4))
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):  # also without an explicit config
        convert_sam_state_dict(state_dict)


def test_inference_needs_the_core_keys(checkpoint):
    state_dict = load_original_sam_checkpoint(checkpoint)
    del state_dict["image_encoder.patch_embed.proj.weight"]
    with pytest.raises(ValueError, match=r"image_encoder\.patch_embed\.proj\.weight"):
        sam_config_for_checkpoint(state_dict)


# ----------------------------------------------------------------------------------------------- EmoSEM
def test_emosem_mix_features_and_mask_head_reproduce_sam(checkpoint, meta_sam, image_embeddings):
    import modeling_emosem.modeling_emosem as emosem
    from modeling_emosem.configuration_emosem import EmoSEMConfig

    config = EmoSEMConfig.from_preset("tiny", sam_config=copy.deepcopy(SMALL_SAM))
    model = emosem.EmoSEMModel(config).eval()
    model.sam.load_state_dict(_converted(checkpoint), strict=True)

    with torch.no_grad():
        sparse, _ = meta_sam.prompt_encoder(points=(POINTS, LABELS), boxes=None, masks=None)
        dec = meta_sam.mask_decoder
        tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight, sparse[0]], dim=0)
        mixed, vision = model.mix_features(tokens[None], image_embeddings)
        ours = model.mask_head(mixed[:, 1:2], vision)
    masks, _ = _meta_predict(meta_sam, image_embeddings, points=POINTS, labels=LABELS, multimask=False)
    assert ours.shape == masks.shape == (1, 1, 4 * GRID, 4 * GRID)
    assert _max_diff(ours, masks) < TOL


def _converted(checkpoint):
    state_dict = load_original_sam_checkpoint(checkpoint)
    return convert_sam_state_dict(state_dict, sam_config_for_checkpoint(state_dict, mask_decoder_num_attention_heads=4))
