"""Attach a Stable-SAM plug-in to an official SAM / HQ-SAM mask decoder with forward hooks.

No decoder code is copied and no module is replaced: the official ``TwoWayTransformer`` and its blocks
run exactly as shipped. Four hooks on layer 2 (``transformer.layers[1]``) do the work:

1. a pre-hook on the transformer records the spatial size (H, W) of the image embedding it receives;
2. a pre-hook on layer 2 records its inputs ``keys`` (image tokens after layer 1) and ``key_pe``;
3. a forward hook on layer 2's ``norm1`` records the output tokens after layer 2's self-attention;
4. a pre-hook on layer 2's ``cross_attn_token_to_image`` replaces its ``k`` (= keys + key_pe) and
   ``v`` (= keys) with the plug-in's routed keys/values (:meth:`StableSamPlugin.route`).

Layer 1, layer 2's image-to-token attention (which still reads the original ``keys``), the final
token-to-image attention and everything else see the regular grid features, as in the paper. The same
hooks fit ``segment_anything``, ``segment_anything_hq`` and ``sam2`` decoders (the same TwoWayTransformer /
TwoWayAttentionBlock design and names). SAM 2.1's decoder puts an object-score token before the IoU
token, so the DRP token index is shifted by one there (:func:`output_token_offset`).

Introspection (``capture=True``) additionally keeps, for the last decoder call, the deformed sampling
locations, the routing weights and layer 2's token-to-image attention probabilities (averaged over heads),
recomputed from the attention module's own ``q_proj``/``k_proj`` with the same scaled-dot-product
softmax the official ``Attention.forward`` uses.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from sambench.adapters.stable_sam.modules import StableSamPlugin

#: Index of the two-way transformer layer whose token-to-image attention Stable-SAM re-routes.
STABLE_SAM_LAYER = 1


def mask_decoder_of(model: nn.Module) -> nn.Module:
    """The mask decoder of a SAM / HQ-SAM ``Sam`` (``mask_decoder``), a SAM 2 ``SAM2Base``
    (``sam_mask_decoder``), or ``model`` itself when it is a decoder."""
    for name in ("mask_decoder", "sam_mask_decoder"):
        if hasattr(model, name):
            return getattr(model, name)
    return model


def output_token_offset(decoder: nn.Module) -> int:
    """Output tokens before the IoU token: 1 for SAM 2.1's object-score token (``pred_obj_scores``), else 0."""
    return 1 if getattr(decoder, "pred_obj_scores", False) else 0


class PluginInjection:
    """Hooks that make ``plugin`` act inside ``model``'s mask decoder (a ``Sam`` or a mask decoder).

    ``enabled = False`` turns the plug-in off without removing the hooks (the model then runs as the
    bare base). ``capture = True`` records introspection tensors of the last decoder call in ``last``
    (dict with ``locations`` B×H×W×2 in feature cells, ``alphas`` B×2, ``attn`` B×T×HW = layer-2
    token-to-image attention averaged over heads, T = number of tokens, ``hw``). :meth:`remove` detaches
    everything; the model's state dict is never touched.
    """

    def __init__(self, model: nn.Module, plugin: StableSamPlugin, layer_index: int = STABLE_SAM_LAYER) -> None:
        decoder = mask_decoder_of(model)
        transformer = getattr(decoder, "transformer", None)
        layers = getattr(transformer, "layers", None)
        if layers is None or len(layers) <= layer_index:
            raise TypeError("stable-sam: the model has no two-way transformer with a decoder layer 2")
        block = layers[layer_index]
        for name in ("norm1", "cross_attn_token_to_image"):
            if not hasattr(block, name):
                raise TypeError(f"stable-sam: decoder layer {layer_index + 1} has no '{name}' (not a TwoWayAttentionBlock)")
        if getattr(block, "_sambench_stable_sam", False):
            raise RuntimeError("stable-sam: a plug-in is already injected into this decoder (remove() it first)")
        block._sambench_stable_sam = True
        self.plugin = plugin
        self.token_offset = output_token_offset(decoder)
        self.block = block
        self.enabled = True
        self.capture = False
        self.last: Optional[dict] = None
        self._hw: Optional[tuple[int, int]] = None
        self._keys = self._key_pe = self._tokens = None
        self._handles = [
            transformer.register_forward_pre_hook(self._on_transformer, with_kwargs=True),
            block.register_forward_pre_hook(self._on_block, with_kwargs=True),
            block.norm1.register_forward_hook(self._on_norm1),
            block.cross_attn_token_to_image.register_forward_pre_hook(self._on_cross, with_kwargs=True),
        ]

    # -- hooks ------------------------------------------------------------------------------------
    def _on_transformer(self, module, args, kwargs):
        emb = args[0] if args else kwargs["image_embedding"]
        self._hw = (int(emb.shape[-2]), int(emb.shape[-1]))
        return None

    def _on_block(self, module, args, kwargs):
        names = ("queries", "keys", "query_pe", "key_pe")
        bound = dict(zip(names, args))
        bound.update(kwargs)
        self._keys, self._key_pe = bound["keys"], bound["key_pe"]
        return None

    def _on_norm1(self, module, args, output):
        self._tokens = output
        return None

    def _on_cross(self, module, args, kwargs):
        if not self.enabled:
            if self.capture:
                q = args[0] if args else kwargs["q"]
                k = args[1] if len(args) > 1 else kwargs["k"]
                self.last = {"locations": None, "alphas": None, "attn": attention_probs(module, q, k).mean(1),
                             "hw": self._hw}
            return None
        if self._keys is None or self._tokens is None or self._hw is None:
            raise RuntimeError("stable-sam: decoder layer 2 ran without its inputs being recorded")
        names = ("q", "k", "v")
        bound = dict(zip(names, args))
        bound.update(kwargs)
        token = self._tokens[:, self.plugin.token_index + self.token_offset, :]
        k, v, info = self.plugin.route(self._keys, self._key_pe, token, self._hw)
        if self.capture:
            self.last = {"locations": info["locations"].detach(), "alphas": info["alphas"].detach(),
                         "attn": attention_probs(module, bound["q"], k).mean(1), "hw": self._hw}
        self._keys = self._key_pe = self._tokens = None
        return (), {"q": bound["q"], "k": k, "v": v}

    def remove(self) -> None:
        """Detach every hook; the model runs as the bare base afterwards."""
        for h in self._handles:
            h.remove()
        if self._handles:
            self.block._sambench_stable_sam = False
        self._handles = []


@torch.no_grad()
def attention_probs(module: nn.Module, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Attention probabilities (B × heads × Nq × Nk, float32) of an official SAM ``Attention`` for inputs
    (q, k): ``softmax(q_proj(q)_h · k_proj(k)_h^T / sqrt(d_head))`` per head, as its ``forward`` computes
    them before multiplying with the projected values."""
    nh = module.num_heads
    qp, kp = module.q_proj(q), module.k_proj(k)
    b, nq, ci = qp.shape
    d = ci // nh
    qh = qp.reshape(b, nq, nh, d).transpose(1, 2)
    kh = kp.reshape(b, kp.shape[1], nh, d).transpose(1, 2)
    return torch.softmax((qh @ kh.transpose(-1, -2)).float() / math.sqrt(d), dim=-1)


def inject_plugin(model: nn.Module, plugin: StableSamPlugin) -> PluginInjection:
    """Attach ``plugin`` to ``model`` (a ``Sam``/HQ ``Sam`` or a mask decoder) and return the handle."""
    return PluginInjection(model, plugin)
