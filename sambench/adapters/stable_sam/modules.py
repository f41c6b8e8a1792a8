"""Stable-SAM's two plug-ins: the deformable sampling plugin (DSP) and the deformable routing plugin (DRP).

Both act on decoder layer 2 of SAM's two-way transformer (``mask_decoder.transformer.layers[1]``), whose
token-to-image cross-attention is the only place where Stable-SAM changes what the decoder sees. The
tensors involved (see :mod:`sambench.adapters.stable_sam.inject` for where they come from):

* ``x``: the image tokens layer 2 receives (``keys``: the image embedding + dense prompt embedding, already
  updated by layer 1's image-to-token attention), reshaped to ``B × C × H × W`` (C = 256, H = W = 64).
* ``pe``: the dense positional encoding of those tokens (``key_pe``), same shape.
* ``t``: one output token after layer 2's self-attention (``B × C``).

Conventions (ours where the paper is silent; docs/stable-sam.md lists them all):

* Grid coordinates are in feature cells: cell ``(i, j)`` (row, column) has centre ``(x, y) = (j, i)``;
  in the 1024-px model input frame that centre is at pixel ``(16 (j + 0.5), 16 (i + 0.5))``.
* DSP offsets ``Δp = tanh(o) · offset_range`` cells, so every sampling location stays within
  ``offset_range`` cells of its grid cell; sampling is ``F.grid_sample(bilinear, align_corners=True,
  padding_mode="border")``, i.e. a location outside the grid reads the nearest border feature.
* Fresh plug-ins are exact no-ops: the 1×1 projection is the identity, the offset head (and the optional
  amplitude channel) is zero, so deformed features == original features; the DRP weights always sum to
  one at initialisation (softmax, or two sigmoids of 0), so the routed mixture equals the original keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from sambench.types import SambenchError, check_choice

#: Output-token index of each DRP token choice in SAM's and HQ-SAM's decoders (both start with the IoU
#: token, then the mask tokens; HQ-SAM appends its HQ token after them).
DRP_TOKENS = {"iou": 0, "mask": 1}
PE_MODES = ("sampled", "grid")
DRP_NORMS = ("softmax", "sigmoid")


@dataclass(frozen=True)
class PluginConfig:
    """Architecture of a Stable-SAM plug-in (stored in every plug-in file).

    ``dim``: channels C of the decoder (256 for every official SAM). ``kernel_size``: depthwise conv of the
    offset network (5, paper figure). ``offset_range``: bound of |Δp| per axis, in feature cells (ours: 8
    cells = 128 px of the 1024-px frame). ``modulation``: also predict a per-location amplitude
    ``2·sigmoid(m)`` that scales the sampled feature (ours; off by default). ``pe_mode``: ``sampled`` = the
    positional encoding is bilinearly sampled at the same deformed locations as the features (ours,
    default), ``grid`` = the deformed features keep their grid cell's encoding. ``drp_token``: output token
    that drives routing, ``mask`` (first mask token, default) or ``iou``. ``drp_hidden``: hidden width of
    the routing MLP (24: 0.0797 M parameters in total at C = 256). ``drp_norm``: ``softmax`` (α1 + α2 = 1,
    default) or ``sigmoid`` (independent gates, 0.5 each at initialisation).
    """

    dim: int = 256
    kernel_size: int = 5
    offset_range: float = 8.0
    modulation: bool = False
    pe_mode: str = "sampled"
    drp_token: str = "mask"
    drp_hidden: int = 24
    drp_norm: str = "softmax"

    def __post_init__(self) -> None:
        check_choice(self.pe_mode, PE_MODES, "stable-sam option pe_mode")
        check_choice(self.drp_token, DRP_TOKENS, "stable-sam option drp_token")
        check_choice(self.drp_norm, DRP_NORMS, "stable-sam option drp_norm")
        if not float(self.offset_range) > 0:
            raise SambenchError(f"stable-sam option offset_range must be > 0 (feature cells), got {self.offset_range!r}")
        if int(self.kernel_size) < 1 or int(self.kernel_size) % 2 == 0:
            raise SambenchError(f"stable-sam option kernel_size must be an odd integer >= 1, got {self.kernel_size!r}")
        if int(self.drp_hidden) < 1 or int(self.dim) < 1:
            raise SambenchError("stable-sam options drp_hidden and dim must be integers >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_options(cls, options: Optional[dict[str, Any]]) -> "PluginConfig":
        """The config named by the keys of ``options`` that are config fields; other keys are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in (options or {}).items() if k in names}
        casts = {"dim": int, "kernel_size": int, "offset_range": float, "modulation": bool, "pe_mode": str,
                 "drp_token": str, "drp_hidden": int, "drp_norm": str}
        try:
            kw = {k: casts[k](v) for k, v in kw.items()}
        except (TypeError, ValueError) as exc:
            raise SambenchError(f"stable-sam plug-in options are malformed: {exc}") from None
        return cls(**kw)


class DeformableSamplingPlugin(nn.Module):
    """DSP: x → 1×1 conv → x*; offsets from x* (DW k×k conv → LayerNorm over channels → GELU → 1×1 conv);
    features (and optionally the positional encoding) re-sampled at p + Δp.

    Input ``x`` and ``pe``: ``B × C × H × W``. Returns ``(features, pe_or_None, locations)`` where
    ``locations`` is ``B × H × W × 2`` (x, y) in feature cells (see module docstring).
    """

    def __init__(self, cfg: PluginConfig) -> None:
        super().__init__()
        c, k = cfg.dim, cfg.kernel_size
        self.cfg = cfg
        self.proj = nn.Conv2d(c, c, 1)
        self.offset_dw = nn.Conv2d(c, c, k, padding=k // 2, groups=c)
        self.offset_norm = nn.LayerNorm(c)
        self.offset_act = nn.GELU()
        self.offset_out = nn.Conv2d(c, 3 if cfg.modulation else 2, 1)
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        """Identity 1×1 projection and zero offset head: the plug-in becomes an exact no-op."""
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.weight[:, :, 0, 0].copy_(torch.eye(self.cfg.dim))
            self.proj.bias.zero_()
            self.offset_out.weight.zero_()
            self.offset_out.bias.zero_()

    def forward(self, x: torch.Tensor, pe: Optional[torch.Tensor] = None):
        b, c, h, w = x.shape
        xs = self.proj(x)
        o = self.offset_dw(xs)
        o = self.offset_act(self.offset_norm(o.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        o = self.offset_out(o)
        delta = torch.tanh(o[:, :2]) * float(self.cfg.offset_range)  # B×2×H×W, (dx, dy) in cells
        ys, xs_ = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                                 torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
        loc = torch.stack((xs_, ys), dim=-1).unsqueeze(0) + delta.permute(0, 2, 3, 1)  # B×H×W×2 (x, y) cells
        scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=x.device, dtype=x.dtype)
        grid = loc * scale - 1.0
        feats = F.grid_sample(xs, grid, mode="bilinear", padding_mode="border", align_corners=True)
        if self.cfg.modulation:
            feats = feats * (2.0 * torch.sigmoid(o[:, 2:3]))
        pe_s = None
        if pe is not None and self.cfg.pe_mode == "sampled":
            pe_s = F.grid_sample(pe.to(grid.dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
        return feats, pe_s, loc


class DeformableRoutingPlugin(nn.Module):
    """DRP: token t (B × C) → Linear → LayerNorm → GELU → Linear → 2 logits → routing weights (α1, α2).

    α1 weighs the deformed features, α2 the original ones. ``softmax``: α1 + α2 = 1. ``sigmoid``: two
    independent gates. The last Linear is zero-initialised, so a fresh DRP gives (0.5, 0.5) for every
    token in both modes.
    """

    def __init__(self, cfg: PluginConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fc1 = nn.Linear(cfg.dim, cfg.drp_hidden)
        self.norm = nn.LayerNorm(cfg.drp_hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(cfg.drp_hidden, 2)
        with torch.no_grad():
            self.fc2.weight.zero_()
            self.fc2.bias.zero_()

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        z = self.fc2(self.act(self.norm(self.fc1(token))))
        return torch.softmax(z, dim=-1) if self.cfg.drp_norm == "softmax" else torch.sigmoid(z)


class StableSamPlugin(nn.Module):
    """The whole Stable-SAM plug-in (DSP + DRP): the only trainable part of Stable-SAM.

    :meth:`route` turns layer 2's keys into the routed keys/values of its token-to-image attention.
    Initialisation is keyed (``seed``) and leaves the global torch RNG untouched.
    """

    def __init__(self, cfg: Optional[PluginConfig] = None, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg or PluginConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.dsp = DeformableSamplingPlugin(self.cfg)
            self.drp = DeformableRoutingPlugin(self.cfg)

    @property
    def token_index(self) -> int:
        return DRP_TOKENS[self.cfg.drp_token]

    def route(self, keys: torch.Tensor, key_pe: torch.Tensor, token: torch.Tensor, hw: tuple[int, int]):
        """Routed keys for layer 2's token-to-image attention.

        ``keys``, ``key_pe``: ``B × HW × C`` (token-major, as in the two-way transformer); ``token``:
        ``B × C``; ``hw`` = (H, W). Returns ``(k, v, info)`` with ``v = α1·x*(p+Δp) + α2·x(p)`` and
        ``k = v + pe_routed`` where ``pe_routed = α1·pe(p+Δp) + α2·pe(p)`` (``sampled``) or ``pe(p)``
        (``grid``); ``info`` holds ``locations`` (B×H×W×2, cells) and ``alphas`` (B×2).
        """
        b, n, c = keys.shape
        h, w = hw
        if n != h * w:
            raise RuntimeError(f"stable-sam: {n} image tokens do not match the {h}x{w} grid")
        x = keys.transpose(1, 2).reshape(b, c, h, w)
        pe = key_pe.transpose(1, 2).reshape(key_pe.shape[0], c, h, w).expand(b, -1, -1, -1)
        feats, pe_s, loc = self.dsp(x, pe)
        alpha = self.drp(token).to(keys.dtype)
        a1, a2 = alpha[:, 0].view(b, 1, 1), alpha[:, 1].view(b, 1, 1)
        v = a1 * feats.flatten(2).transpose(1, 2).to(keys.dtype) + a2 * keys
        if pe_s is not None:
            pe_r = a1 * pe_s.flatten(2).transpose(1, 2).to(keys.dtype) + a2 * key_pe
        else:
            pe_r = key_pe
        return v + pe_r, v, {"locations": loc, "alphas": alpha}


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module`` (all of them, trainable or not)."""
    return sum(p.numel() for p in module.parameters())
