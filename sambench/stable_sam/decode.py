"""Minimal tensor-level SAM / HQ-SAM calls used by Stable-SAM training (model input frame, no resizing).

Everything here works in the 1024 × 1024 model input frame: images are already resized/padded to it,
boxes are ``(x0, y0, x1, y1)`` and points ``(x, y)`` in its pixel coordinates (the official prompt
encoder adds the half-pixel shift itself). The evaluation adapter (``sambench/adapters/stable_sam.py``)
does not use this module: it goes through the shared SAM adapter, which owns the original-image ↔
input-frame transforms.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def is_hq(sam: nn.Module) -> bool:
    """True for an HQ-SAM model (its mask decoder has the HQ output token)."""
    return hasattr(sam.mask_decoder, "hf_token")


@torch.no_grad()
def encode_images(sam: nn.Module, images: torch.Tensor):
    """Image embeddings of ``images`` (B × 3 × 1024 × 1024, float RGB in 0..255, already in the input
    frame): returns ``(embeddings B×256×64×64, interm)`` where ``interm`` is HQ-SAM's list of
    early-layer ViT features (None for SAM). Runs under ``no_grad``: the encoder is frozen.
    """
    x = sam.preprocess(images)
    out = sam.image_encoder(x)
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


def decode_logits(sam: nn.Module, embedding: torch.Tensor, interm: Optional[list], *,
                  boxes: Optional[torch.Tensor] = None, points: Optional[torch.Tensor] = None,
                  labels: Optional[torch.Tensor] = None, multimask: bool = False,
                  hq_token_only: bool = True):
    """Low-resolution mask logits (N × M × 256 × 256) and predicted IoUs (N × M) for N prompts of ONE
    image.

    ``embedding``: 1 × 256 × 64 × 64; ``interm``: HQ-SAM's per-image list (each 1 × 64 × 64 × D) or None.
    ``boxes``: N × 4, ``points``: N × K × 2 with ``labels`` N × K (1 fg, 0 bg), input-frame pixels.
    ``multimask`` = the official ``multimask_output`` flag. For HQ-SAM, ``hq_token_only`` picks the HQ
    token's mask alone (True) or the sum of the SAM and HQ masks (False, the package default).
    """
    pts = (points, labels) if points is not None else None
    sparse, dense = sam.prompt_encoder(points=pts, boxes=boxes, masks=None)
    pe = sam.prompt_encoder.get_dense_pe()
    if is_hq(sam):
        return sam.mask_decoder(image_embeddings=embedding, image_pe=pe, sparse_prompt_embeddings=sparse,
                                dense_prompt_embeddings=dense, multimask_output=multimask,
                                hq_token_only=hq_token_only, interm_embeddings=interm)
    return sam.mask_decoder(image_embeddings=embedding, image_pe=pe, sparse_prompt_embeddings=sparse,
                            dense_prompt_embeddings=dense, multimask_output=multimask)
