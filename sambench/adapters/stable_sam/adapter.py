"""Stable-SAM adapter: the shared SAM / HQ-SAM adapter with the Stable-SAM plug-in hooked into decoder layer 2.

Everything SAM-specific (preprocessing modes, prompt transforms, chunking, mask selection, upsampling,
thresholds) is :class:`~sambench.adapters.sam.adapter.SamAdapter`'s; this subclass only

* attaches the plug-in (:mod:`sambench.adapters.stable_sam.inject`) to the base model's mask decoder, and
* overrides ``_decode`` to collect per-prompt introspection when asked.

**Model cards.** ``adapter: stable-sam`` with ``base: <sam, hq-sam or sam2 card>``; the base card's options are
defaults, the Stable-SAM card's options and the user's override them. Extra options: ``introspect``
(default false), ``top_k`` (64), ``allow_fresh_plugin`` (false), ``plugin_seed`` (0) and the plug-in
architecture fields of :class:`~sambench.adapters.stable_sam.modules.PluginConfig` (only for a fresh plug-in: a
trained plug-in's architecture comes from its file, and a conflicting option is an error).

**Plug-in.** ``plugin=PLUGIN.pt`` (``--plugin``) is required unless ``allow_fresh_plugin: true`` (the
``stable-sam-tiny`` card sets it): a fresh plug-in reproduces the base model exactly (max abs logit
difference ~1e-6). A plug-in trained on another base (variant, HQ or not, weights sha256 / random-init
seed) is refused with one line.

**Introspection** (``introspect: true`` or :meth:`set_introspection`): ``Prediction.extras[i]`` is
``{"stable_sam": {...}}`` with, for prompt i,

* ``alphas``: the routing weights (α1 deformed, α2 original);
* ``tokens``: the decoder output tokens whose layer-2 token-to-image attention is averaged (over its 8
  heads and over these tokens): the token(s) that make the returned mask — SAM single: first mask token;
  SAM best-of-3: the selected mask token; HQ-SAM: first mask token + HQ token (single) or the three
  multimask tokens + HQ token (best-of-3), the HQ token alone with ``hq_token_only``;
* ``top``: up to ``top_k`` rows ``[x, y, gx, gy, w]`` for the image tokens with the largest attention
  weight ``w`` among those whose sampling location lies inside the image: ``(x, y)`` is where the
  token's deformed feature was sampled and ``(gx, gy)`` its regular grid cell, both in original-image
  pixel coordinates in sambench's point convention (the pixel index a point prompt would need to be
  encoded at that spot: ``x = (16 (c + 0.5) − 0.5) · W / w_in`` for feature column c, input width w_in);
* ``attn_outside``: total attention weight on tokens sampled outside the image (SAM's padding), so
  that ``sum(w over all inside tokens) + attn_outside == 1``;
* ``mean_offset_px``: mean length of the sampling offsets over all 64 × 64 tokens, in original pixels.
"""

from __future__ import annotations

from typing import Optional

import torch

from sambench.adapters.base import OptionValueError
from sambench.adapters.decoding import resolve_device
from sambench.adapters.sam.adapter import HQSamAdapter, SamAdapter, SamImageState
from sambench.adapters.sam2 import Sam2Adapter
from sambench.config import ModelCard
from sambench.adapters.stable_sam.base import default_plugin_path, load_base, missing_files, resolve_base_card, split_options
from sambench.adapters.stable_sam.inject import inject_plugin, mask_decoder_of, output_token_offset
from sambench.adapters.stable_sam.modules import PluginConfig, StableSamPlugin
from sambench.adapters.stable_sam.plugin_io import BaseSignature, check_base, load_plugin_file
from sambench.types import SambenchError, stable_hash

STABLE_SAM_ADAPTER_VERSION = "1"
DEFAULT_TOP_K = 64


class _StableSamMixin:
    """Plug-in handling shared by the SAM- and HQ-SAM-based Stable-SAM adapters (see module docstring)."""

    adapter = "stable-sam"

    def __init__(self, model: torch.nn.Module, *, name: str, options, device="auto", weights_id: str = "unknown",
                 plugin: StableSamPlugin, plugin_id: str, base_signature: BaseSignature, introspect: bool = False,
                 top_k: int = DEFAULT_TOP_K) -> None:
        super().__init__(model, name=name, options=options, device=device, weights_id=weights_id)
        self._setup_plugin(plugin, plugin_id, base_signature, introspect, top_k)

    def _input_frame(self) -> int:
        """Side of the square model input (SAM: ``image_encoder.img_size``; SAM 2: ``image_size``)."""
        return int(getattr(self.model, "image_size", 0) or self.model.image_encoder.img_size)

    def _setup_plugin(self, plugin: StableSamPlugin, plugin_id: str, base_signature: BaseSignature,
                      introspect: bool, top_k: int) -> None:
        self.plugin = plugin.to(self.device).eval()
        self.plugin.requires_grad_(False)
        self.plugin_id = plugin_id
        self.base_signature = base_signature
        self.injection = inject_plugin(self.model, self.plugin)
        self.set_introspection(introspect, top_k)

    def set_introspection(self, enabled: bool, top_k: Optional[int] = None) -> None:
        """Turn per-prompt introspection extras on or off; ``top_k`` = locations kept per prompt."""
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise SambenchError(f"model '{self.name}': top_k must be an integer >= 1, got {top_k!r}")
            self.top_k = top_k
        self.introspect = bool(enabled)

    def signature(self) -> dict:
        sig = super().signature()
        sig.update({"base": self.base_signature.to_dict(), "plugin_id": self.plugin_id,
                    "plugin_config": self.plugin.cfg.to_dict(),
                    "stable_sam_adapter_version": STABLE_SAM_ADAPTER_VERSION})
        return sig

    # ----------------------------------------------------------------------------------- decoding
    def _decode(self, state: SamImageState, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool):
        self.injection.capture = self.introspect
        try:
            low, iou, _ = super()._decode(state, sparse, dense, multimask)
        finally:
            self.injection.capture = False
        extras = None
        if self.introspect:
            last, self.injection.last = self.injection.last, None
            extras = self._extras(state, last, iou, multimask)
        return low, iou, extras

    def _decoder(self) -> torch.nn.Module:
        return mask_decoder_of(self.model)

    def _token_sets(self, iou: torch.Tensor, multimask: bool) -> list[list[int]]:
        """Per prompt, the decoder output-token indices whose attention is reported (module docstring)."""
        dec = self._decoder()
        b = iou.shape[0]
        if not self.hq:
            off = output_token_offset(dec)
            if multimask and iou.shape[1] > 1:
                return [[off + 2 + int(j)] for j in torch.argmax(iou, dim=1).tolist()]
            return [[off + 1]] * b
        hf = int(dec.num_mask_tokens)  # HQ token index: after the IoU token and the 4 mask tokens
        if self.options.hq_token_only:
            return [[hf]] * b
        return [[2, 3, 4, hf]] * b if multimask else [[1, hf]] * b

    def _extras(self, state: SamImageState, last: Optional[dict], iou: torch.Tensor, multimask: bool) -> list[dict]:
        if last is None or last.get("locations") is None:
            raise RuntimeError("stable-sam: introspection requested but the plug-in did not run")
        attn = last["attn"].float()  # B×T×HW
        loc = last["locations"].float()  # B×H×W×2 (x, y) cells
        alphas = last["alphas"].float()
        fh, fw = last["hw"]
        img = float(self._input_frame())
        oh, ow = state.original_size
        ih, iw = getattr(state, "input_size", (int(img), int(img)))
        sx, sy = ow / iw, oh / ih
        loc = torch.stack((loc[..., 0].clamp(0, fw - 1), loc[..., 1].clamp(0, fh - 1)), dim=-1)
        px = ((loc[..., 0] + 0.5) * (img / fw) - 0.5) * sx  # B×H×W, original pixels
        py = ((loc[..., 1] + 0.5) * (img / fh) - 0.5) * sy
        gy, gx = torch.meshgrid(torch.arange(fh, dtype=torch.float32, device=loc.device),
                                torch.arange(fw, dtype=torch.float32, device=loc.device), indexing="ij")
        gpx = ((gx + 0.5) * (img / fw) - 0.5) * sx
        gpy = ((gy + 0.5) * (img / fh) - 0.5) * sy
        inside = (px >= -0.5) & (px <= ow - 0.5) & (py >= -0.5) & (py <= oh - 0.5)
        off = torch.sqrt((px - gpx) ** 2 + (py - gpy) ** 2)
        out = []
        for i, toks in enumerate(self._token_sets(iou, multimask)):
            w = attn[i, toks, :].mean(0)  # HW
            ins = inside[i].flatten()
            k = min(self.top_k, int(ins.sum()))
            masked = torch.where(ins, w, torch.full_like(w, -1.0))
            vals, idx = torch.topk(masked, k) if k > 0 else (w[:0], torch.zeros(0, dtype=torch.long))
            pxi, pyi = px[i].flatten()[idx], py[i].flatten()[idx]
            gxi, gyi = gpx.flatten()[idx], gpy.flatten()[idx]
            rows = [[round(float(a), 2), round(float(b), 2), round(float(c), 2), round(float(d), 2), float(f"{float(v):.6g}")]
                    for a, b, c, d, v in zip(pxi.tolist(), pyi.tolist(), gxi.tolist(), gyi.tolist(), vals.tolist())]
            t0 = output_token_offset(self._decoder())
            names = {t0 + 0: "iou", t0 + 1: "mask0", t0 + 2: "mask1", t0 + 3: "mask2", t0 + 4: "mask3"}
            out.append({"stable_sam": {
                "alphas": [float(f"{float(a):.6g}") for a in alphas[i].tolist()],
                "tokens": [names.get(t, "hq") for t in toks],
                "top": rows,
                "attn_outside": float(f"{float(w[~ins].sum()):.6g}"),
                "mean_offset_px": round(float(off[i].mean()), 3),
            }})
        return out


class StableSamAdapter(_StableSamMixin, SamAdapter):
    """Stable-SAM on a SAM base (see module docstring)."""


class StableHQSamAdapter(_StableSamMixin, HQSamAdapter):
    """Stable-SAM on an HQ-SAM base (see module docstring)."""


class StableSam2Adapter(_StableSamMixin, Sam2Adapter):
    """Stable-SAM on a SAM 2.1 base (docs/stable-sam.md "On SAM 2.1"). The frame is SAM 2's stretched
    1024² input (no padding), and in ``single`` mode the reported token is mask token 0 even when SAM 2's
    dynamic multimask fallback returned a multimask output."""


def _bool_opt(opts: dict, key: str, default: bool, where: str) -> bool:
    v = opts.get(key, default)
    if not isinstance(v, bool):
        raise OptionValueError(where, key, f"must be true or false, got {v!r}")
    return v


def _int_opt(opts: dict, key: str, default: int, lo: int, where: str) -> int:
    v = opts.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise OptionValueError(where, key, f"must be an integer >= {lo}, got {v!r}")
    return v


def build_stable_sam(card: ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None,
                     plugin: Optional[str] = None, options: Optional[dict] = None) -> SamAdapter:
    """Registry factory for adapter ``stable-sam`` (see module docstring)."""
    where = str(card.path or card.name)
    base_card, _ = resolve_base_card(card)
    merged = {**base_card.options, **(options if options is not None else card.options)}
    _, stable = split_options(merged)
    introspect = _bool_opt(stable, "introspect", False, where)
    allow_fresh = _bool_opt(stable, "allow_fresh_plugin", False, where)
    top_k = _int_opt(stable, "top_k", DEFAULT_TOP_K, 1, where)
    plugin_seed = _int_opt(stable, "plugin_seed", 0, 0, where)
    arch = {k: v for k, v in stable.items() if k not in ("introspect", "allow_fresh_plugin", "top_k", "plugin_seed")}
    cfg = PluginConfig.from_options(arch)  # validates the architecture options early
    missing = missing_files(card, base_card, checkpoint, plugin, allow_fresh, merged.get("random_init") is True)
    if missing:
        raise SambenchError(missing)
    if plugin is None and default_plugin_path(card).is_file():
        plugin = str(default_plugin_path(card))
    if plugin is None and not allow_fresh:
        raise SambenchError(f"model '{card.name}' needs a trained plug-in: pass --plugin PLUGIN.pt (train one with "
                            f"`sambench train stable-sam --base {base_card.name} ...`), or set option "
                            f"allow_fresh_plugin=true to run an untrained plug-in (identical to {base_card.name})")
    dev = resolve_device(device)
    loaded_plugin = load_plugin_file(plugin) if plugin is not None else None  # fail fast, before the base loads
    base = load_base(base_card, checkpoint, merged, where=where)
    if loaded_plugin is not None:
        check_base(loaded_plugin, base.signature)
        have = loaded_plugin.plugin.cfg.to_dict()
        for k, v in arch.items():
            if PluginConfig.from_options({k: v}).to_dict()[k] != have[k]:
                raise SambenchError(f"{loaded_plugin.path}: the plug-in was trained with {k}={have[k]!r} but option "
                                    f"{k}={v!r} was given (a trained plug-in's architecture is fixed; drop the option)")
        plug, plugin_id = loaded_plugin.plugin, loaded_plugin.sha256
    else:
        plug = StableSamPlugin(cfg, seed=plugin_seed)
        plugin_id = "fresh:" + stable_hash(cfg.to_dict(), plugin_seed)[:16]
    cls = StableSam2Adapter if base_card.adapter == "sam2" else (StableHQSamAdapter if base.hq else StableSamAdapter)
    return cls(base.model, name=card.name, options=base.sam_options, device=dev, weights_id=base.signature.weights_id,
               plugin=plug, plugin_id=plugin_id, base_signature=base.signature, introspect=introspect, top_k=top_k)


__all__ = ["StableSamAdapter", "StableHQSamAdapter", "StableSam2Adapter", "build_stable_sam", "DEFAULT_TOP_K"]
