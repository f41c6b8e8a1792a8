"""Minimal tensor-level SAM / HQ-SAM / SAM 2 calls used by Stable-SAM training (model input frame, no resizing).

Everything here works in the 1024 × 1024 model input frame: images are already resized/padded to it,
boxes are ``(x0, y0, x1, y1)`` and points ``(x, y)`` in its pixel coordinates (the official prompt
encoder adds the half-pixel shift itself). The evaluation adapter (:mod:`sambench.adapters.stable_sam.adapter`)
does not use this module: it goes through the shared SAM adapter, which owns the original-image ↔
input-frame transforms.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from sambench.adapters.sam2 import encode_sam2


def is_sam2(sam: nn.Module) -> bool:
    """True for a SAM 2 ``SAM2Base`` (official ``sam2`` package)."""
    return hasattr(sam, "sam_mask_decoder")


def is_hq(sam: nn.Module) -> bool:
    """True for an HQ-SAM model (its mask decoder has the HQ output token)."""
    return not is_sam2(sam) and hasattr(sam.mask_decoder, "hf_token")


#: SAM 2's input normalisation (``SAM2Transforms``: ÷255, then ImageNet mean/std).
SAM2_MEAN, SAM2_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@torch.no_grad()
def encode_images(sam: nn.Module, images: torch.Tensor):
    """Image embeddings of ``images`` (B × 3 × 1024 × 1024, float RGB in 0..255, already in the input
    frame): returns ``(embeddings B×256×64×64, interm)`` where ``interm`` is HQ-SAM's first early-layer
    ViT feature (a one-element list), SAM 2's two high-resolution maps, or None for SAM. Runs under
    ``no_grad``: the encoder is frozen.
    """
    if is_sam2(sam):
        mean = torch.tensor(SAM2_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(SAM2_STD, device=images.device).view(1, 3, 1, 1)
        s = int(sam.image_size)
        return encode_sam2(sam, (images / 255.0 - mean) / std, [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)])
    x = sam.preprocess(images)
    out = sam.image_encoder(x)
    if isinstance(out, tuple):
        return out[0], [out[1][0]]  # MaskDecoderHQ reads only the first intermediate feature
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
    if is_sam2(sam):
        return _decode_sam2(sam, embedding, interm, boxes=boxes, points=points, labels=labels, multimask=multimask)
    pts = (points, labels) if points is not None else None
    sparse, dense = sam.prompt_encoder(points=pts, boxes=boxes, masks=None)
    pe = sam.prompt_encoder.get_dense_pe()
    if is_hq(sam):
        return sam.mask_decoder(image_embeddings=embedding, image_pe=pe, sparse_prompt_embeddings=sparse,
                                dense_prompt_embeddings=dense, multimask_output=multimask,
                                hq_token_only=hq_token_only, interm_embeddings=interm)
    return sam.mask_decoder(image_embeddings=embedding, image_pe=pe, sparse_prompt_embeddings=sparse,
                            dense_prompt_embeddings=dense, multimask_output=multimask)


def _decode_sam2(sam: nn.Module, embedding: torch.Tensor, high_res: list, *, boxes, points, labels, multimask: bool):
    """SAM 2: a box is two corner points labelled 2 and 3 placed before the clicks (as
    ``SAM2ImagePredictor``); the decoder reads the image's high-resolution features."""
    coords, lab = points, labels
    if boxes is not None:
        corners = boxes.reshape(-1, 2, 2)
        box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).repeat(corners.shape[0], 1)
        coords = corners if coords is None else torch.cat([corners, coords], dim=1)
        lab = box_labels if lab is None else torch.cat([box_labels, lab], dim=1)
    sparse, dense = sam.sam_prompt_encoder(points=(coords, lab), boxes=None, masks=None)
    low, iou, _, _ = sam.sam_mask_decoder(image_embeddings=embedding, image_pe=sam.sam_prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=multimask, repeat_image=True, high_res_features=high_res)
    return low, iou
