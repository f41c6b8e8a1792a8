"""Small random-init transformers SAM-family models (official classes, small configs) saved with
``save_pretrained`` into a directory, as a hub snapshot would be: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

#: family → builder of (model, processor); every one keeps the real image size and decoder.
FAMILY_NAMES = ("sam", "sam_hq", "sam2", "sam3_tracker", "edgetam")

_SAM_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1], mlp_dim=64,
                   initializer_range=0.02)
_HIERA = dict(model_type="sam2_hiera_det_model", hidden_size=16, blocks_per_stage=[1, 1, 2, 1],
              embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 2, 2],
              global_attention_blocks=[3])


def small_model(family: str, seed: int = 0):
    """(model, processor) of ``family`` with random weights drawn from ``seed`` (global RNG restored)."""
    import transformers as T

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "sam":
            return T.SamModel(T.SamConfig(vision_config=dict(_SAM_VISION))).eval(), T.SamProcessor(T.SamImageProcessor())
        if family == "sam_hq":
            cfg = T.SamHQConfig(vision_config=dict(_SAM_VISION))
            cfg.mask_decoder_config.vit_dim = _SAM_VISION["hidden_size"]
            return T.SamHQModel(cfg).eval(), T.SamHQProcessor(T.SamImageProcessor())
        if family == "sam2":
            cfg = T.Sam2Config(vision_config=dict(backbone_config=dict(_HIERA), backbone_channel_list=[128, 64, 32, 16]))
            return T.Sam2Model(cfg).eval(), T.Sam2Processor(T.Sam2ImageProcessor())
        if family == "sam3_tracker":
            vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, global_attn_indexes=[1], window_size=8)
            cfg = T.Sam3TrackerConfig(vision_config=dict(backbone_config=vit))
            return T.Sam3TrackerModel(cfg).eval(), T.Sam3TrackerProcessor(T.Sam3ImageProcessor())
        if family == "edgetam":
            bb = T.TimmWrapperConfig(architecture="repvit_m1", do_pooling=False,
                                     model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]})
            cfg = T.EdgeTamConfig(vision_config=T.EdgeTamVisionConfig(backbone_config=bb))
            return T.EdgeTamModel(cfg).eval(), T.Sam2Processor(T.Sam2ImageProcessor())
    raise ValueError(family)


def save_small_model(directory: Path, family: str, seed: int = 0) -> Path:
    model, processor = small_model(family, seed)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return Path(directory)


#: Key renames from a segment_anything ``Sam`` state dict to transformers' ``SamModel``, as transformers'
#: conversion script ``models/sam/convert_sam_to_hf.py`` does them. That script is in the transformers
#: repository but not in the installed wheel, so the cross-backend test states the renames itself.
_SAM1_RENAMES = (
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"), ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"), ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"),
    ("neck.0", "neck.conv1"), ("neck.1", "neck.layer_norm1"), ("neck.2", "neck.conv2"), ("neck.3", "neck.layer_norm2"),
    ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"),
    ("blocks", "layers"),
)
_HYPER = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}


def sam1_to_transformers(sd: dict) -> dict:
    """A segment_anything state dict renamed for transformers' ``SamModel`` (see :data:`_SAM1_RENAMES`)."""
    import re

    out = {}
    for key, value in sd.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        for old, new in _SAM1_RENAMES:
            key = key.replace(old, new) if old in key else key
        m = re.search(r"output_hypernetworks_mlps\.\d+\.layers\.(\d)\.", key)
        if m:
            key = key.replace(f"layers.{m.group(1)}.", f"{_HYPER[m.group(1)]}.")
        out[key] = value
    out["shared_image_embedding.positional_embedding"] = out["prompt_encoder.shared_embedding.positional_embedding"]
    return out
