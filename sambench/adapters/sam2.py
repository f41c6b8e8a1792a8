"""SAM 2.1 adapter on Meta's official ``sam2`` package (Hiera backbones), images only.

The network is the package's own ``SAM2Base`` built by ``sam2.build_sam.build_sam2`` from the package's
config (``configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml``) with ``ckpt_path=None``; sambench loads the
weights itself (``torch.load(weights_only=True, map_location="cpu")``, ``strict=True``, one-line errors).
This file does, batched, what ``SAM2ImagePredictor.set_image`` + ``predict`` do one prompt at a time:

* :meth:`Sam2Adapter.encode` runs the Hiera image encoder **once** per image and keeps the image
  embedding (256×64×64, with ``no_mem_embed`` added, as the predictor does) **and the two
  high-resolution feature maps** (32×256×256 and 64×128×128) that SAM 2's mask decoder reads.
* :meth:`Sam2Adapter.predict` (the shared loop, :mod:`sambench.adapters.decoding`) decodes every prompt
  of the image in chunks of ``chunk_size``, grouped by (has box, number of points, has mask input);
  outputs keep the input order.

**Preprocessing** (metrics are always computed at the original resolution):

``sam`` (the model's own)
    ``SAM2Transforms``: ``ToTensor`` (÷255), ``Resize((1024, 1024))`` — the image is stretched to a
    square, its aspect is **not** kept and nothing is padded — then ImageNet normalisation. Prompts:
    x·1024/W, y·1024/H (``transform_coords(normalize=True)``). A box is two corner points with labels
    2 and 3, placed **before** the click points (SAM-1 puts the box after them). Low-res logits (256²)
    are upsampled in **one** bilinear step to H×W (``SAM2Transforms.postprocess_masks``; hole filling
    and sprinkle removal are off, the predictor's defaults).
``hq-sam-1024``
    The image is first resized to 1024×1024 as HQ-SAM's evaluation loader does
    (:func:`sambench.adapters.decoding.resize_square_hq`), then as above (the 1024² resize is then the
    identity); prompts and logits as above.

**Masks and scores.** ``single``: ``multimask_output=False``. The model is built as ``build_sam2``
builds it by default (``apply_postprocessing=True``), so the decoder's
``dynamic_multimask_via_stability`` is on: when the single-mask output's stability score (IoU of the
logits thresholded at ±0.05) is below 0.98, the best of the three multimask outputs by predicted IoU
is returned instead — exactly what ``SAM2ImagePredictor.predict(multimask_output=False)`` returns.
Option ``dynamic_multimask: false`` turns it off (then ``single`` is output token 0 alone).
``best-of-3``: ``multimask_output=True`` and the mask with the highest predicted IoU. The score is the
decoder's predicted IoU. SAM 2.1's object-score head (is there an object at all?) is ignored, as the
image predictor ignores it. Threshold: logit ``> mask_threshold`` (0.0).

**Mask prompts** (``mask_prompts = True``): ``predict(..., mask_inputs=[...])`` gives each prompt an
optional 256×256 logit map, passed to the official prompt encoder as ``masks`` exactly as
``SAM2ImagePredictor.predict(mask_input=...)`` does; ``return_logits=True`` returns the selected mask's
low-res logits **clamped to [-32, 32]**, as the predictor returns them (its masks are upsampled from the
unclamped logits, and so are the adapter's). Stable-SAM 2.1 inherits it.

**Options**: ``variant`` (hiera-tiny, hiera-small, hiera-base-plus, hiera-large), ``mask_threshold``,
``chunk_size`` (8), ``dtype`` (fp32; bf16/fp16 autocast on CUDA only), ``seed`` and ``random_init``
(random weights: drawn under ``torch.random.fork_rng`` from ``seed``), ``dynamic_multimask`` (true).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from sambench.adapters.base import PREPROCESSING_MODES, OptionValueError, known_options, package_version
from sambench.adapters.decoding import (DTYPES, POSTPROCESS_BATCH, ChunkedDecoding, decoder_options, resize_square_hq,
                                        resolve_device, store_masks)
from sambench.adapters.sam.nets import inspect_state_dict
from sambench.adapters.weights import find_checkpoint, load_into, read_state_dict, verify_checkpoint_file
from sambench.config import ModelCard
from sambench.types import Prompt, SambenchError

ADAPTER_VERSION = "1"

#: variant → (package config, trunk width, trunk depth) of the official SAM 2.1 checkpoints.
VARIANTS = {
    "hiera-tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", 96, 12),
    "hiera-small": ("configs/sam2.1/sam2.1_hiera_s.yaml", 96, 16),
    "hiera-base-plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", 112, 24),
    "hiera-large": ("configs/sam2.1/sam2.1_hiera_l.yaml", 144, 48),
}

OPTION_KEYS = ("variant", "mask_threshold", "chunk_size", "dtype", "seed", "random_init", "dynamic_multimask")

_TRUNK_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")



@dataclass(frozen=True)
class Sam2Options:
    """Validated SAM 2.1 adapter options (module docstring)."""

    variant: str
    mask_threshold: float = 0.0
    chunk_size: int = 8
    dtype: str = "fp32"
    seed: int = 0
    random_init: bool = False
    dynamic_multimask: bool = True

    def output_affecting(self) -> dict:
        return {"variant": self.variant, "mask_threshold": self.mask_threshold, "dtype": self.dtype,
                "dynamic_multimask": self.dynamic_multimask}


def parse_sam2_options(options: Optional[dict], where: str, extra_keys: Sequence[str] = ()) -> Sam2Options:
    """Validate card options merged with user overrides; unknown keys (besides ``extra_keys``) are an error."""
    opts = known_options(options, set(OPTION_KEYS) | set(extra_keys), where)
    variant = opts.get("variant")
    if variant not in VARIANTS:
        raise OptionValueError(where, "variant", f"must be one of {', '.join(VARIANTS)}, got {variant!r}")
    for key in ("random_init", "dynamic_multimask"):
        if key in opts and not isinstance(opts[key], bool):
            raise OptionValueError(where, key, f"must be true or false, got {opts[key]!r}")
    thr, chunk, dtype = decoder_options(opts, where, 8)
    seed = opts.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise OptionValueError(where, "seed", f"must be an integer >= 0, got {seed!r}")
    return Sam2Options(variant=variant, mask_threshold=thr, chunk_size=chunk,
                       dtype=dtype, seed=seed,
                       random_init=bool(opts.get("random_init", False)),
                       dynamic_multimask=bool(opts.get("dynamic_multimask", True)))


# ------------------------------------------------------------------------------------ model loading


def build_sam2_model(variant: str, *, seed: int = 0, dynamic_multimask: bool = True) -> torch.nn.Module:
    """The official ``SAM2Base`` of ``variant`` with random weights drawn from ``seed`` (CPU, eval mode).

    ``build_sam2(config, ckpt_path=None, apply_postprocessing=dynamic_multimask)``; the global torch RNG
    is left untouched.
    """
    from sam2.build_sam import build_sam2  # lazy: the sam2 package is an optional extra

    config = VARIANTS[variant][0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build_sam2(config, ckpt_path=None, device="cpu", mode="eval", apply_postprocessing=dynamic_multimask)
    return model.eval()


def is_sam1_state_dict(sd: dict) -> bool:
    """A ``segment_anything`` / HQ-SAM state dict (ViT encoder, ``mask_decoder.*``)."""
    return "image_encoder.pos_embed" in sd or any(k.startswith(("mask_decoder.", "prompt_encoder.")) for k in sd)


def is_sam2_state_dict(sd: dict) -> bool:
    """A ``sam2`` state dict (Hiera trunk, ``sam_mask_decoder.*``)."""
    return any(k.startswith(("image_encoder.trunk.", "sam_mask_decoder.")) for k in sd)


def sam2_variant_of(sd: dict) -> Optional[str]:
    """The variant whose trunk width and depth the state dict has, or None."""
    w = sd.get("image_encoder.trunk.patch_embed.proj.weight")
    blocks = {int(m.group(1)) for k in sd for m in [_TRUNK_BLOCK.match(k)] if m}
    width, depth = (int(w.shape[0]) if w is not None else None), (max(blocks) + 1 if blocks else None)
    return next((v for v, (_, cw, cd) in VARIANTS.items() if (cw, cd) == (width, depth)), None)


def check_sam2_state_dict(sd: dict, *, variant: str, path, model: str) -> None:
    """One clear line when ``sd`` is not a SAM 2.1 ``variant`` checkpoint (SAM-1 file, other variant, SAM 2.0)."""
    p = Path(path)
    if is_sam1_state_dict(sd) and not is_sam2_state_dict(sd):
        info = inspect_state_dict(sd)
        kind = "an HQ-SAM" if info.hq else "a SAM (segment_anything)"
        hint = f"use {'hq-sam-' if info.hq else 'sam-'}{info.variant.replace('_', '-')}" if info.variant else "use a SAM card"
        raise SambenchError(f"{p}: is {kind} checkpoint (ViT image encoder, mask_decoder.* keys), not SAM 2: {hint} "
                            f"(model '{model}' is SAM 2.1)")
    if not is_sam2_state_dict(sd):
        sample = ", ".join(sorted(sd)[:3])
        raise SambenchError(f"{p}: not a SAM 2 checkpoint: no image_encoder.trunk / sam_mask_decoder keys "
                            f"({len(sd)} keys, e.g. {sample})")
    found = sam2_variant_of(sd)
    if found is not None and found != variant:
        raise SambenchError(f"{p}: holds SAM 2 {found} weights but model '{model}' is {variant}; use sam2.1-{found}")
    if "no_obj_embed_spatial" not in sd:
        raise SambenchError(f"{p}: a SAM 2.0 checkpoint (no no_obj_embed_spatial, added in SAM 2.1); model '{model}' "
                            f"needs the SAM 2.1 file (sambench download {model})")


@dataclass
class LoadedSam2:
    model: torch.nn.Module
    weights_id: str  # sha256 of the checkpoint file, or "random-init:<seed>"
    checkpoint: Optional[Path]


def load_sam2_model(card: ModelCard, *, options: Sam2Options, checkpoint: Optional[str] = None) -> LoadedSam2:
    """Build the official model and load the card's (or the explicit) checkpoint strictly."""
    if checkpoint is None and (card.checkpoint is None or options.random_init):
        model = build_sam2_model(options.variant, seed=options.seed, dynamic_multimask=options.dynamic_multimask)
        return LoadedSam2(model=model, weights_id=f"random-init:{options.seed}", checkpoint=None)
    path = find_checkpoint(card, checkpoint)
    dig = verify_checkpoint_file(path, card.checkpoint)
    sd = read_state_dict(path)
    check_sam2_state_dict(sd, variant=options.variant, path=path, model=card.name)
    model = build_sam2_model(options.variant, seed=0, dynamic_multimask=options.dynamic_multimask)
    load_into(model, sd, path=path, name=card.name)
    return LoadedSam2(model=model.eval(), weights_id=dig.sha256, checkpoint=path)


# -------------------------------------------------------------------------------------------- state


@dataclass
class Sam2ImageState:
    """One encoded image: ``embed`` (1, 256, 64, 64) with ``no_mem_embed`` added, ``high_res`` the two
    high-resolution maps [(1, 32, 256, 256), (1, 64, 128, 128)], the original (H, W), the mode."""

    embed: torch.Tensor
    high_res: list
    original_size: tuple[int, int]
    preprocessing: str
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ adapter


class Sam2Adapter(ChunkedDecoding):
    """Encode-once / decode-many adapter around an official ``sam2`` ``SAM2Base`` (module docstring).

    Subclass hook (Stable-SAM 2): ``_decode(state, sparse, dense, multimask) -> (low (B, C, 256, 256),
    iou (B, C), extras | None)`` (:class:`~sambench.adapters.decoding.ChunkedDecoding`).
    """

    kind = "sam2"
    hq = False
    state_type = Sam2ImageState

    def __init__(self, model: torch.nn.Module, *, name: str, options: Sam2Options,
                 device: str | torch.device = "auto", weights_id: str = "unknown") -> None:
        super().__init__()
        from sam2.utils.transforms import SAM2Transforms  # lazy: the sam2 package is an optional extra

        self._bind(model, name=name, options=options, device=resolve_device(device), weights_id=weights_id,
                   chunk_size=options.chunk_size, autocast_dtype=DTYPES[options.dtype])
        self.image_size = int(self.model.image_size)
        self.transforms = SAM2Transforms(resolution=self.image_size, mask_threshold=options.mask_threshold)
        s = self.image_size
        self._feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]

    def signature(self) -> dict:
        return {
            "model": self.name,
            "adapter": self.kind,
            "adapter_version": ADAPTER_VERSION,
            "variant": self.options.variant,
            "weights_sha256": self.weights_id,
            "preprocessing": list(PREPROCESSING_MODES),
            "options": self.options.output_affecting(),
            "packages": {"sam2": package_version("sam2"), "torch": torch.__version__},
        }

    # ---------------------------------------------------------------------------------- encoding

    def encode(self, image: np.ndarray, preprocessing: str = "sam") -> Sam2ImageState:
        """Hiera encoder once on an RGB uint8 (H, W, 3) image: embedding + high-res features."""
        self.check_image(image, preprocessing)
        h, w = int(image.shape[0]), int(image.shape[1])
        src = image if preprocessing == "sam" else resize_square_hq(image, self.image_size)
        x = self.transforms(np.ascontiguousarray(src))[None].to(self.device)
        with torch.no_grad(), self._autocast():
            embed, high_res = self._encode_tensor(x)
        self.encoder_calls += 1
        return Sam2ImageState(embed=embed, high_res=high_res, original_size=(h, w), preprocessing=preprocessing)

    def _encode_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        """``SAM2ImagePredictor.set_image`` on a normalised (B, 3, 1024, 1024) batch."""
        return encode_sam2(self.model, x, self._feat_sizes)

    # ---------------------------------------------------------------------------------- prompts

    def _embed_prompts(self, state: Sam2ImageState, prompts: Sequence[Prompt],
                       mask_inputs: Optional[Sequence[np.ndarray]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The official prompt encoder on prompts of one kind and point count (predictor's conversion) and,
        if given, one 256×256 logit map each as ``masks`` (``SAM2ImagePredictor._predict``'s ``mask_input``)."""
        coords = labels = None
        if prompts[0].points:
            pts = torch.as_tensor(np.stack([np.asarray(p.points, dtype=np.float64) for p in prompts]),
                                  dtype=torch.float, device=self.device)
            coords = self.transforms.transform_coords(pts, normalize=True, orig_hw=state.original_size)
            labels = torch.as_tensor(np.stack([np.asarray(p.labels, dtype=np.int64) for p in prompts]),
                                     dtype=torch.int, device=self.device)
        if prompts[0].box is not None:
            b = torch.as_tensor(np.stack([np.asarray(p.box, dtype=np.float64) for p in prompts]),
                                dtype=torch.float, device=self.device)
            box = self.transforms.transform_boxes(b, normalize=True, orig_hw=state.original_size)
            box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=self.device).repeat(len(prompts), 1)
            coords = box if coords is None else torch.cat([box, coords], dim=1)
            labels = box_labels if labels is None else torch.cat([box_labels, labels], dim=1)
        masks = self._mask_tensor(mask_inputs) if mask_inputs is not None else None
        return self.model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=masks)

    def _decode(self, state: Sam2ImageState, sparse: torch.Tensor, dense: torch.Tensor,
                multimask: bool) -> tuple[torch.Tensor, torch.Tensor, Optional[list]]:
        low, iou, _, _ = self.model.sam_mask_decoder(
            image_embeddings=state.embed, image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
            repeat_image=sparse.shape[0] > 1, high_res_features=state.high_res)
        return low, iou, None

    def _feedback_logits(self, low: torch.Tensor) -> torch.Tensor:
        """``SAM2ImagePredictor._predict`` upsamples the raw logits but returns them clamped to [-32, 32]."""
        return torch.clamp(low, -32.0, 32.0)

    def _postprocess_into(self, state: Sam2ImageState, low: torch.Tensor, out) -> None:
        """``SAM2Transforms.postprocess_masks`` (one bilinear step to H×W) and threshold, 8 masks at a time."""
        for s in range(0, low.shape[0], POSTPROCESS_BATCH):
            up = self.transforms.postprocess_masks(low[s:s + POSTPROCESS_BATCH], state.original_size)
            store_masks(out, s, up[:, 0] > self.mask_threshold)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def encode_sam2(model: torch.nn.Module, x: torch.Tensor, feat_sizes: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, list]:
    """Image embedding (B, 256, 64, 64) and high-res features of a normalised batch, as ``set_image_batch``."""
    backbone_out = model.forward_image(x)
    _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    b = x.shape[0]
    feats = [f.permute(1, 2, 0).reshape(b, -1, *size) for f, size in zip(vision_feats[::-1], list(feat_sizes)[::-1])][::-1]
    return feats[-1], feats[:-1]


def build_sam2_adapter(card: ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None,
                       plugin: Optional[str] = None, options: Optional[dict] = None) -> Sam2Adapter:
    """Registry factory for adapter kind ``sam2``."""
    if plugin is not None:
        raise SambenchError(f"model '{card.name}': a sam2 model takes no plug-in (got {plugin})")
    opts = parse_sam2_options(options if options is not None else card.options, where=str(card.path or card.name))
    dev = resolve_device(device)
    loaded = load_sam2_model(card, options=opts, checkpoint=checkpoint)
    return Sam2Adapter(loaded.model, name=card.name, options=opts, device=dev, weights_id=loaded.weights_id)


__all__ = ["Sam2Adapter", "Sam2ImageState", "Sam2Options", "VARIANTS", "build_sam2_adapter", "build_sam2_model",
           "check_sam2_state_dict", "encode_sam2", "load_sam2_model", "parse_sam2_options"]
