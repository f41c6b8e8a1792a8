"""SAM / HQ-SAM weights: check that a state dict fits the model a card names, then load it strictly.

The generic half — finding the file, hashing and verifying it, ``torch.load(weights_only=True)``, the
strict load with one-line mismatches, downloads — is :mod:`sambench.adapters.weights`. This module adds
what only the SAM-1 family knows: a state dict is classified *before* a model is built (HQ-SAM or plain
SAM by HQ-SAM's extra decoder layers ``mask_decoder.hf_token`` / ``hf_mlp`` / ``compress_vit_feat`` /
``embedding_encoder`` / ``embedding_maskfeature``; the image-encoder variant from
``image_encoder.pos_embed`` and the number of ``image_encoder.blocks.N``; a SAM 2 file by its Hiera
trunk), so a mismatch with the model card is one clear line (``this is an HQ-SAM checkpoint, use
hq-sam-vit-b``). Then the bare official architecture (:func:`sambench.adapters.sam.nets.build_sam_model`)
takes the weights with ``load_state_dict(sd, strict=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from sambench.adapters.sam.nets import HQ_PREFIXES, VARIANTS, StateDictInfo, build_sam_model, card_name_for, inspect_state_dict
from sambench.adapters.sam2 import sam2_variant_of
from sambench.adapters.weights import FileDigests, PathLike, load_into, read_state_dict, verify_checkpoint_file
from sambench.config import CheckpointSpec
from sambench.types import SambenchError


def check_state_dict(sd: dict, *, variant: str, hq: bool, path: PathLike, model: str) -> StateDictInfo:
    """Raise one clear line if ``sd`` is not the kind of checkpoint model ``model`` (variant, hq) needs."""
    info = inspect_state_dict(sd)
    p = Path(path)
    if any(k.startswith(("sam_mask_decoder.", "image_encoder.trunk.")) for k in sd):
        v = sam2_variant_of(sd)
        raise SambenchError(f"{p}: is a SAM 2 checkpoint (Hiera image encoder, sam_mask_decoder.* keys), not SAM: use "
                            f"{'sam2.1-' + v if v else 'a sam2.1-hiera-* card'} (model '{model}' is SAM-1)")
    if not any(k.startswith("image_encoder.") for k in sd) or info.embed_dim is None:
        sample = ", ".join(sorted(sd)[:3])
        raise SambenchError(f"{p}: not a full SAM checkpoint: no image_encoder.pos_embed ({len(sd)} keys, e.g. {sample}); "
                            f"model '{model}' needs the whole model's state dict")
    if info.hq and not hq:
        keys = sorted(k for k in sd if k.startswith(HQ_PREFIXES))
        suggestion = card_name_for(info.variant or variant, True)
        first = next((k for k in keys if k.startswith("mask_decoder.hf_token.")), keys[0])
        raise SambenchError(f"{p}: has HQ-SAM keys ({first}, … {len(keys)} in all): this is an HQ-SAM checkpoint, "
                            f"use {suggestion} (model '{model}' is plain SAM)")
    if hq and not info.hq:
        suggestion = card_name_for(info.variant or variant, False)
        raise SambenchError(f"{p}: missing the HQ decoder layers (mask_decoder.hf_token, hf_mlp, compress_vit_feat, "
                            f"embedding_encoder, embedding_maskfeature): this is a plain SAM checkpoint, use "
                            f"{suggestion} (model '{model}' is HQ-SAM)")
    want = VARIANTS[variant]
    if (info.embed_dim, info.depth) != (want.embed_dim, want.depth):
        found = info.variant or "an unknown variant"
        hint = f"; use {card_name_for(info.variant, hq)}" if info.variant else ""
        raise SambenchError(f"{p}: holds {found} weights (image encoder: {info.depth} blocks of width {info.embed_dim}) "
                            f"but model '{model}' is {variant} ({want.depth} blocks of width {want.embed_dim}){hint}")
    return info


def load_sam_checkpoint(path: PathLike, *, variant: str, hq: bool, model_name: str,
                        spec: Optional[CheckpointSpec] = None) -> tuple[Any, FileDigests]:
    """Verify ``path``, then build the official (HQ-)SAM ``variant`` and load it strictly (eval mode, CPU).

    Returns the model and the file's digests (``digests.sha256`` identifies the weights).
    """
    dig = verify_checkpoint_file(path, spec)
    sd = read_state_dict(path)
    check_state_dict(sd, variant=variant, hq=hq, path=path, model=model_name)
    model = build_sam_model(variant, hq=hq, seed=0)
    load_into(model, sd, path=path, name=model_name)
    return model.eval(), dig
