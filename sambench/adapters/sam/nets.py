"""The official SAM / HQ-SAM networks (the packages' own classes): their variants, how to build one without
weights, and which of them a state dict holds.

The official builders (``segment_anything.build_sam``, ``segment_anything_hq.build_sam``) call
``torch.load`` without ``map_location`` or ``weights_only`` and HQ-SAM's loads with ``strict=False``.
sambench therefore always builds the bare architecture here and loads the state dict itself
(:mod:`sambench.adapters.sam.weights`). :func:`inspect_state_dict` classifies a state dict by its keys and
shapes alone — HQ-SAM or plain SAM, and the image-encoder variant — so a file that does not fit its
model is named in one line before any model is built.

Variants: ``vit_b``, ``vit_l``, ``vit_h`` (the official ones) and ``tiny`` (a 2-block, 32-dim image
encoder with the official prompt encoder and full-size mask decoder, for tests on CPU). Every variant
keeps the official 1024 input size, 16-px patches and 256-channel prompt/decoder width.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch

from sambench.types import SambenchError


@dataclass(frozen=True)
class VitConfig:
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple


VARIANTS = {
    "vit_b": VitConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": VitConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": VitConfig(1280, 32, 16, (7, 15, 23, 31)),
    "tiny": VitConfig(32, 2, 2, (1,)),
}

IMAGE_SIZE = 1024
PATCH_SIZE = 16
PROMPT_EMBED_DIM = 256

#: State-dict key prefixes that only HQ-SAM's decoder (``MaskDecoderHQ``) has.
HQ_PREFIXES = ("mask_decoder.hf_token.", "mask_decoder.hf_mlp.", "mask_decoder.compress_vit_feat.",
               "mask_decoder.embedding_encoder.", "mask_decoder.embedding_maskfeature.")

_BLOCK_KEY = re.compile(r"^image_encoder\.blocks\.(\d+)\.")


def build_sam_model(variant: str, hq: bool = False, seed: int | None = None) -> torch.nn.Module:
    """The official ``Sam`` (``segment_anything``) or HQ ``Sam`` (``segment_anything_hq``) in eval mode.

    Parameters are randomly initialised; pass ``seed`` for a reproducible init that does not touch the
    global torch RNG state.
    """
    if variant not in VARIANTS:
        raise SambenchError(f"unknown SAM variant '{variant}' (known: {', '.join(VARIANTS)})")
    cfg = VARIANTS[variant]
    if hq:
        # lazy: only the package of the variant asked for is imported (segment_anything_hq pulls in timm)
        from segment_anything_hq.modeling import (ImageEncoderViT, MaskDecoderHQ, PromptEncoder, Sam,
                                                  TwoWayTransformer)
    else:
        # lazy: as above
        from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                               TwoWayTransformer)

    def _make() -> torch.nn.Module:
        emb = IMAGE_SIZE // PATCH_SIZE
        encoder = ImageEncoderViT(
            depth=cfg.depth, embed_dim=cfg.embed_dim, img_size=IMAGE_SIZE, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg.num_heads, patch_size=PATCH_SIZE,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=cfg.global_attn_indexes, window_size=14,
            out_chans=PROMPT_EMBED_DIM,
        )
        prompt_encoder = PromptEncoder(embed_dim=PROMPT_EMBED_DIM, image_embedding_size=(emb, emb),
                                       input_image_size=(IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16)
        transformer = TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8)
        common = dict(num_multimask_outputs=3, transformer=transformer, transformer_dim=PROMPT_EMBED_DIM,
                      iou_head_depth=3, iou_head_hidden_dim=256)
        decoder = MaskDecoderHQ(vit_dim=cfg.embed_dim, **common) if hq else MaskDecoder(**common)
        return Sam(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=decoder,
                   pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])

    if seed is None:
        model = _make()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _make()
    return model.eval()


# ------------------------------------------------------------------------------- state dicts


@dataclass(frozen=True)
class StateDictInfo:
    """What a SAM-family state dict holds: HQ decoder or not, image-encoder width/depth and variant."""

    hq: bool
    embed_dim: Optional[int]
    depth: Optional[int]
    variant: Optional[str]

    def describe(self) -> str:
        family = "an HQ-SAM" if self.hq else "a SAM"
        if self.embed_dim is None:
            return f"{family} checkpoint without a ViT image encoder"
        name = self.variant or "unknown"
        return f"{family} {name} checkpoint (image encoder: {self.depth} blocks of width {self.embed_dim})"


def inspect_state_dict(sd: dict) -> StateDictInfo:
    """Classify a state dict by its keys and shapes (no model is built)."""
    hq = any(k.startswith(HQ_PREFIXES) for k in sd)
    pos = sd.get("image_encoder.pos_embed")
    embed_dim = int(pos.shape[-1]) if pos is not None and pos.ndim == 4 else None
    blocks = {int(m.group(1)) for k in sd for m in [_BLOCK_KEY.match(k)] if m}
    depth = max(blocks) + 1 if blocks else None
    variant = None
    for name, cfg in VARIANTS.items():
        if cfg.embed_dim == embed_dim and cfg.depth == depth:
            variant = name
    return StateDictInfo(hq=hq, embed_dim=embed_dim, depth=depth, variant=variant)


def card_name_for(variant: str, hq: bool) -> str:
    """The shipped card for a variant: ``vit_b`` + HQ → ``hq-sam-vit-b``; ``tiny`` → ``sam-tiny``."""
    return ("hq-sam-" if hq else "sam-") + variant.replace("_", "-")
