"""SAM (Meta's ``segment_anything``) and HQ-SAM (SysCV's ``segment_anything_hq``) adapters.

The networks are the official packages' own modules; this file only feeds them. It does, batched, what
``SamPredictor.set_image`` + ``SamPredictor.predict`` do one prompt at a time:

* :meth:`SamAdapter.encode` runs the image encoder **once** per image (and preprocessing mode) and keeps
  the embedding (HQ-SAM: also its early ViT feature ``interm_embeddings[0]``, the only one its decoder
  reads) with the transform geometry.
* :meth:`SamAdapter.predict` takes every prompt of that image — boxes, point sets, box + points, mixed —
  in chunks of ``chunk_size``. Inside a chunk, prompts are grouped by (has box, number of points)
  because the prompt encoder needs equal point counts per batch; outputs keep the input order.

**Preprocessing modes** (metrics are always computed at the original resolution):

``sam``
    The official predictor's: ``ResizeLongestSide(1024).apply_image`` (longest side to 1024, PIL
    bilinear through torchvision), ``Sam.preprocess`` (normalise, zero-pad bottom/right to 1024²).
    Prompts go through ``apply_coords`` / ``apply_boxes``. Low-res logits (256²) →
    ``Sam.postprocess_masks``: bilinear to 1024², crop the un-padded region, bilinear to H×W.
``hq-sam-1024``
    HQ-SAM's evaluation (``train/utils/dataloader.py`` ``Resize``): the image is resized to 1024×1024
    **without keeping its aspect** with ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` on float32 RGB, then truncated to uint8 (HQ-SAM's ``.astype(np.uint8)``);
    prompt x is scaled by 1024/W and y by 1024/H. The low-res logits are upsampled to 1024×1024
    (``postprocess_masks`` with no padding) and then bilinearly to H×W. (HQ-SAM's own ``compute_iou``
    goes from 256² to the label size in one step; the two-step path is the official predictor's and
    differs from it only by interpolation rounding.)

**Thresholds and selection.** A pixel is foreground when its upsampled logit is ``> mask_threshold``
(default 0.0, ``Sam.mask_threshold``). ``mask_selection="single"`` decodes with
``multimask_output=False``; ``"best-of-3"`` with ``multimask_output=True`` and keeps the mask with the
highest predicted IoU. The score is the decoder's predicted IoU of the returned mask. HQ-SAM's
decoder selects by itself: with multimask output it adds the best of SAM's three masks (by predicted
IoU) to its HQ mask and returns one mask; with ``hq_token_only`` it returns the HQ-token mask alone. Its
score is always the SAM token's predicted IoU (the HQ token has no IoU head).

**Mask prompts** (``mask_prompts = True``, SAM's interactive use): ``predict(..., mask_inputs=[...])``
gives each prompt an optional 256×256 logit map (the previous step's ``Prediction.low_res_logits``),
passed to the official prompt encoder as ``masks`` exactly as ``SamPredictor.predict(mask_input=...)``
does; ``return_logits=True`` returns the selected mask's low-res logits. HQ-SAM and Stable-SAM inherit it.

**Memory.** Per chunk only the selected low-res logits (chunk × 256² floats) are kept; they are
upsampled, thresholded and written into the boolean output a few masks at a time, so nothing of size
N×3×H×W float ever exists.

**Devices and dtypes.** ``device``: ``auto`` (CUDA if available, else MPS, else CPU), ``cpu``, ``cuda``
(``cuda:N``), ``mps``. Option ``dtype``: ``fp32`` (default) or ``bf16`` / ``fp16`` = ``torch.autocast``
on CUDA only (an error elsewhere). Nothing calls ``.cuda()``.

**Options** (model card ``options:``, overridable per run): ``variant`` (vit_b/vit_l/vit_h/tiny),
``hq_token_only`` (HQ-SAM only, default false as in HQ-SAM's predictor; HQ-SAM's paper evaluation
scores the HQ-token mask alone, i.e. true), ``mask_threshold`` (0.0), ``chunk_size`` (``auto`` or prompts per
decoder batch), ``dtype``, ``seed`` (random-init weights, default 0) and ``random_init`` (true: ignore
the card's checkpoint and use random weights — smoke tests of the full-size architectures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sambench.adapters.base import PREPROCESSING_MODES, OptionValueError, known_options, package_version
from sambench.adapters.decoding import (DTYPES, POSTPROCESS_BATCH, ChunkedDecoding, decoder_options, resize_square_hq,
                                        resolve_device, store_masks)
from sambench.adapters.sam.nets import VARIANTS, build_sam_model
from sambench.adapters.sam.weights import load_sam_checkpoint
from sambench.adapters.weights import find_checkpoint
from sambench.config import ModelCard
from sambench.types import Prompt, SambenchError

ADAPTER_VERSION = "1"

#: Version of the encoded-state layout written to the embedding cache (bump when SamImageState changes).
STATE_VERSION = "1"

#: Side of the square model input (all official variants and ``tiny``).
IMAGE_SIZE = 1024

#: Decoder memory per prompt in a batch, fp32, with headroom: the mask decoder repeats the 256×64×64
#: image embedding and its positional encoding per prompt (2 × 4 MB), upscales to 32×256×256 (8 MB) through
#: 64×128×128 (4 MB), plus attention and hypernetwork buffers; HQ-SAM adds its own 32×256×256 HQ features
#: and the fused ViT features. Doubled for allocator fragmentation and autograd-free temporaries.
DECODE_BYTES_PER_PROMPT = {False: 48 << 20, True: 96 << 20}
#: CPU (and MPS) decoder batch: beyond 8 prompts a CPU gains nothing (results/benchmarks.md).
CPU_CHUNK_SIZE = 8
MAX_AUTO_CHUNK = 256


def decode_chunk_size(device: torch.device, hq: bool = False, free_bytes: Optional[int] = None) -> int:
    """``chunk_size: auto``: prompts per decoder batch sized to the device's memory.

    CUDA: half of the currently free device memory (``torch.cuda.mem_get_info``, i.e. after the model and
    the image embeddings are resident) divided by :data:`DECODE_BYTES_PER_PROMPT`, between 1 and
    :data:`MAX_AUTO_CHUNK` — e.g. ~70 prompts with 7 GB free, 256 on a 40 GB card. CPU and MPS:
    :data:`CPU_CHUNK_SIZE` (8), the measured knee on CPU. The masks do not depend on it beyond float
    rounding of batched products.
    """
    if device.type != "cuda" and free_bytes is None:
        return CPU_CHUNK_SIZE
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(MAX_AUTO_CHUNK, (free_bytes // 2) // DECODE_BYTES_PER_PROMPT[hq])))



# -------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SamOptions:
    """Validated adapter options (see the module docstring)."""

    variant: str
    hq_token_only: bool = False
    mask_threshold: float = 0.0
    chunk_size: int | str = 8  # an integer, or "auto": see decode_chunk_size()
    dtype: str = "fp32"
    seed: int = 0
    random_init: bool = False
    #: HQ-SAM's paper evaluation (card ``hq-sam-eval``): always ``hq-sam-1024`` preprocessing and 256² logits
    #: upsampled to H×W in one bilinear step (its ``compute_iou``); off: the protocol's mode, two steps.
    paper_eval: bool = False

    def output_affecting(self, hq: bool) -> dict:
        """The options that can change masks or scores (recorded in the signature)."""
        d = {"variant": self.variant, "mask_threshold": self.mask_threshold, "dtype": self.dtype}
        if hq:
            d["hq_token_only"] = self.hq_token_only
        if self.paper_eval:  # only when set, so that existing signatures are unchanged
            d["paper_eval"] = True
        return d


SAM_OPTION_KEYS = ("variant", "hq_token_only", "mask_threshold", "chunk_size", "dtype", "seed", "random_init",
                   "paper_eval")


def parse_options(options: Optional[dict], *, hq: bool, where: str, extra_keys: Sequence[str] = ()) -> SamOptions:
    """Validate ``options`` (card options merged with user overrides) into :class:`SamOptions`.

    ``extra_keys`` are accepted and ignored here (a subclass adapter's own options); any other unknown
    key is an error naming ``where`` (the card).
    """
    opts = known_options(options, set(SAM_OPTION_KEYS) | set(extra_keys), where)
    variant = opts.get("variant")
    if variant not in VARIANTS:
        raise OptionValueError(where, "variant", f"must be one of {', '.join(VARIANTS)}, got {variant!r}")

    def _bool(key: str, default: bool) -> bool:
        v = opts.get(key, default)
        if not isinstance(v, bool):
            raise OptionValueError(where, key, f"must be true or false, got {v!r}")
        return v

    hq_token_only = _bool("hq_token_only", False)
    if hq_token_only and not hq:
        raise OptionValueError(where, "hq_token_only", "only applies to HQ-SAM models")
    thr, chunk, dtype = decoder_options(opts, where, SamOptions.chunk_size, allow_auto=True)
    seed = opts.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise OptionValueError(where, "seed", f"must be an integer >= 0, got {seed!r}")
    return SamOptions(variant=variant, hq_token_only=hq_token_only, mask_threshold=thr, chunk_size=chunk,
                      dtype=dtype, seed=seed, random_init=_bool("random_init", False), paper_eval=_bool("paper_eval", False))


# ------------------------------------------------------------------------------------ model loading


@dataclass
class LoadedSam:
    """An official ``Sam`` module (eval mode, CPU) and where its weights came from."""

    model: torch.nn.Module
    weights_id: str  # sha256 of the checkpoint file, or "random-init:<seed>"
    checkpoint: Optional[Path]


def load_sam_model(card: ModelCard, *, hq: bool, options: SamOptions, checkpoint: Optional[str] = None) -> LoadedSam:
    """Build the official (HQ-)SAM for ``card`` and load its weights.

    Weights: ``checkpoint`` if given; else random init (seeded by ``options.seed``) when the card names
    no checkpoint or ``options.random_init`` is set; else the card's file from the checkpoint directory
    (see :mod:`sambench.adapters.weights`), verified and loaded strictly.
    """
    if checkpoint is None and (card.checkpoint is None or options.random_init):
        model = build_sam_model(options.variant, hq=hq, seed=options.seed)
        return LoadedSam(model=model.eval(), weights_id=f"random-init:{options.seed}", checkpoint=None)
    path = find_checkpoint(card, checkpoint)
    model, dig = load_sam_checkpoint(path, variant=options.variant, hq=hq, model_name=card.name, spec=card.checkpoint)
    return LoadedSam(model=model, weights_id=dig.sha256, checkpoint=path)


# -------------------------------------------------------------------------------------------- state


@dataclass
class SamImageState:
    """One encoded image: what :meth:`SamAdapter.predict` needs, independent of the adapter instance.

    ``features``: (1, 256, 64, 64) image embedding on the model's device. ``interm``: HQ-SAM's early ViT
    feature(s) (list of (1, 64, 64, C)), else None. ``original_size``: (H, W) of the image.
    ``input_size``: (h, w) of the resized image inside the 1024² frame before padding.
    ``preprocessing``: the mode. ``extra``: room for subclasses (e.g. Stable-SAM).
    """

    features: torch.Tensor
    interm: Optional[list]
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    preprocessing: str
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ adapter


class SamAdapter(ChunkedDecoding):
    """Encode-once / decode-many adapter around an official ``segment_anything`` ``Sam``.

    Construct with an already-built ``Sam`` module (weights loaded; see :func:`load_sam_model`), the
    card name, validated :class:`SamOptions`, a device and the weights identity. Factories
    :func:`build_sam` / :func:`build_hq_sam` do all of that from a model card.

    Subclass contract (used by the Stable-SAM adapter):

    * ``adapter`` — the registered adapter name recorded in the signature; ``hq`` — whether the model is HQ-SAM.
    * ``_run_image_encoder(x) -> (features, interm | None)``: ``x`` is the normalised, padded
      (B, 3, 1024, 1024) input (B images in one pass, see :meth:`encode_batch`). Override to keep more
      per-image data (store it in ``state.extra`` by overriding :meth:`encode_batch`; tensors in ``extra``
      are cached with the state).
    * ``_decode(state, sparse, dense, multimask) -> (low_res_logits, iou_pred, extras)``: runs the mask
      decoder on a batch of B prompts of ``state``. ``sparse`` (B, n, 256) and ``dense`` (B, 256, 64, 64)
      come from the official prompt encoder; it returns logits (B, C, 256, 256), predicted IoUs (B, C)
      with C = 3 when ``multimask`` and the decoder returns all three (SAM) or C = 1, and ``extras`` — a
      list of B JSON-serialisable dicts (per-prompt extras, e.g. sampling locations) or None. When C = 3
      the adapter keeps the mask with the highest predicted IoU. Runs under ``torch.no_grad()`` (and
      autocast when a dtype is set); never call ``.cuda()``, use ``self.device``.
    * ``signature()`` can be extended with ``super().signature() | {...}``.
    """

    adapter = "sam"
    hq = False
    state_type = SamImageState

    def __init__(self, model: torch.nn.Module, *, name: str, options: SamOptions, device: str | torch.device = "auto",
                 weights_id: str = "unknown") -> None:
        super().__init__()
        # lazy: segment_anything is an optional extra; this module (and its options) import without it
        from segment_anything.utils.transforms import ResizeLongestSide

        device = resolve_device(device)
        chunk = decode_chunk_size(device, hq=self.hq) if options.chunk_size == "auto" else options.chunk_size
        self._bind(model, name=name, options=options, device=device, weights_id=weights_id, chunk_size=chunk,
                   autocast_dtype=DTYPES[options.dtype])
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)

    # ---------------------------------------------------------------------------------- identity

    def signature(self) -> dict:
        pkg = "segment-anything-hq" if self.hq else "segment-anything"
        return {
            "model": self.name,
            "adapter": self.adapter,
            "adapter_version": ADAPTER_VERSION,
            "variant": self.options.variant,
            "weights_sha256": self.weights_id,
            "preprocessing": list(PREPROCESSING_MODES),
            "options": self.options.output_affecting(self.hq),
            "packages": {pkg.replace("-", "_"): package_version(pkg), "torch": torch.__version__},
        }

    # ---------------------------------------------------------------------------------- encoding

    def _run_image_encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[list]]:
        return self.model.image_encoder(x), None

    def _prepare(self, image: np.ndarray, preprocessing: str) -> tuple[torch.Tensor, tuple[int, int]]:
        """Validate and transform one image: (normalised, padded (1, 3, 1024, 1024) input, input_size)."""
        self.check_image(image, preprocessing)
        if preprocessing == "sam":
            resized = self.transform.apply_image(image)
        else:
            resized = resize_square_hq(image, self.model.image_encoder.img_size)
        t = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None, :, :, :]
        input_size = (int(t.shape[-2]), int(t.shape[-1]))
        return self.model.preprocess(t), input_size

    def encode(self, image: np.ndarray, preprocessing: str = "sam") -> SamImageState:
        """Run the image encoder once on an RGB uint8 (H, W, 3) image; see the module docstring for modes."""
        return self.encode_batch([image], preprocessing)[0]

    def encode_batch(self, images, preprocessing: str = "sam") -> list[SamImageState]:
        """One encoder forward pass over a batch of images (each resized and padded to 1024² as in
        :meth:`encode`); counts one encoder call per image. The states equal per-image :meth:`encode`
        up to float rounding of batched matrix products (tests/test_cache.py checks the masks)."""
        if self.options.paper_eval:  # HQ-SAM's paper evaluation always resizes to 1024² (module docstring)
            preprocessing = "hq-sam-1024"
        prepared = [self._prepare(image, preprocessing) for image in images]
        if not prepared:
            return []
        x = torch.cat([p[0] for p in prepared]) if len(prepared) > 1 else prepared[0][0]
        with torch.no_grad(), self._autocast():
            features, interm = self._run_image_encoder(x)
        self.encoder_calls += len(prepared)
        states = []
        for i, (image, (_, input_size)) in enumerate(zip(images, prepared)):
            states.append(SamImageState(
                features=features[i:i + 1], interm=None if interm is None else [t[i:i + 1] for t in interm],
                original_size=(int(image.shape[0]), int(image.shape[1])), input_size=input_size,
                preprocessing=preprocessing))
        return states

    # ---------------------------------------------------------------------------------- cache

    def cache_signature(self) -> dict:
        """The encoder's identity: weights, variant, autocast dtype, package versions. Not the decoder
        options (threshold, hq_token_only) and not a Stable-SAM plug-in: the plug-in sits in the decoder,
        so a Stable-SAM adapter shares the cache entries of its base SAM / HQ-SAM with the same weights."""
        pkg = "segment-anything-hq" if self.hq else "segment-anything"
        return {"family": "hq-sam" if self.hq else "sam", "state_version": STATE_VERSION,
                "variant": self.options.variant, "weights_sha256": self.weights_id, "dtype": self.options.dtype,
                "image_size": int(self.model.image_encoder.img_size),
                **({"paper_eval": True} if self.options.paper_eval else {}),
                "packages": {pkg.replace("-", "_"): package_version(pkg), "torch": torch.__version__}}

    def state_to_tensors(self, state: SamImageState) -> tuple[dict, dict]:
        """``features``, HQ-SAM's ``interm.0…`` and tensor ``extra.*`` entries; sizes and mode as metadata."""
        tensors = {"features": state.features}
        for i, t in enumerate(state.interm or []):
            tensors[f"interm.{i}"] = t
        extra_meta = {}
        for k, v in state.extra.items():
            if isinstance(v, torch.Tensor):
                tensors[f"extra.{k}"] = v
            else:
                extra_meta[k] = v
        meta = {"original_size": list(state.original_size), "input_size": list(state.input_size),
                "preprocessing": state.preprocessing, "n_interm": len(state.interm or []),
                "has_interm": state.interm is not None, "extra": extra_meta}
        return tensors, meta

    def state_from_tensors(self, tensors: dict, meta: dict) -> SamImageState:
        dev = self.device
        interm = [tensors[f"interm.{i}"].to(dev) for i in range(meta["n_interm"])] if meta["has_interm"] else None
        extra = dict(meta.get("extra", {}))
        extra.update({k[len("extra."):]: v.to(dev) for k, v in tensors.items() if k.startswith("extra.")})
        return SamImageState(features=tensors["features"].to(dev), interm=interm,
                             original_size=tuple(meta["original_size"]), input_size=tuple(meta["input_size"]),
                             preprocessing=meta["preprocessing"], extra=extra)

    # ---------------------------------------------------------------------------------- prompts

    def _to_model_coords(self, state: SamImageState, xy: np.ndarray) -> np.ndarray:
        """(..., 2) original-image (x, y) → model-input frame, float64 (as the official predictor)."""
        if state.preprocessing == "sam":
            return self.transform.apply_coords(xy, state.original_size)
        h, w = state.original_size
        out = np.array(xy, dtype=np.float64, copy=True)
        out[..., 0] *= state.input_size[1] / w
        out[..., 1] *= state.input_size[0] / h
        return out

    def _embed_prompts(self, state: SamImageState, prompts: Sequence[Prompt],
                       mask_inputs: Optional[Sequence[np.ndarray]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Official prompt encoder on a batch of prompts of one form and point count (and, if given, one
        low-res logit map each, as the predictor's ``mask_input``)."""
        points = None
        if prompts[0].points:
            coords = np.stack([np.asarray(p.points, dtype=np.float64) for p in prompts])  # (B, n, 2)
            labels = np.stack([np.asarray(p.labels, dtype=np.int64) for p in prompts])
            coords_t = torch.as_tensor(self._to_model_coords(state, coords), dtype=torch.float, device=self.device)
            labels_t = torch.as_tensor(labels, dtype=torch.int, device=self.device)
            points = (coords_t, labels_t)
        boxes = None
        if prompts[0].box is not None:
            b = np.stack([np.asarray(p.box, dtype=np.float64) for p in prompts]).reshape(-1, 2, 2)
            boxes = torch.as_tensor(self._to_model_coords(state, b).reshape(-1, 4), dtype=torch.float, device=self.device)
        masks = self._mask_tensor(mask_inputs) if mask_inputs is not None else None
        return self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)

    def _decoder_extra_kwargs(self, state: SamImageState) -> dict:
        """Keyword arguments the package's mask decoder needs beyond SAM's (HQ-SAM adds its own)."""
        return {}

    def _decode(self, state: SamImageState, sparse: torch.Tensor, dense: torch.Tensor,
                multimask: bool) -> tuple[torch.Tensor, torch.Tensor, Optional[list]]:
        low, iou = self.model.mask_decoder(
            image_embeddings=state.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            **self._decoder_extra_kwargs(state),
        )
        return low, iou, None

    def _postprocess_into(self, state: SamImageState, low: torch.Tensor, out) -> None:
        """Upsample (B, 1, 256, 256) logits as ``Sam.postprocess_masks`` and threshold into ``out`` (B, H, W):
        a numpy array, or a bool tensor on this adapter's device (``masks_on_device``)."""
        for s in range(0, low.shape[0], POSTPROCESS_BATCH):
            if self.options.paper_eval:  # HQ-SAM's compute_iou: 256² → H×W in one bilinear step
                up = F.interpolate(low[s:s + POSTPROCESS_BATCH], state.original_size, mode="bilinear", align_corners=False)
            else:
                up = self.model.postprocess_masks(low[s:s + POSTPROCESS_BATCH], state.input_size, state.original_size)
            store_masks(out, s, up[:, 0] > self.mask_threshold)

    def close(self) -> None:
        """Drop the model (frees memory when the runner is done with this adapter)."""
        self.model = None  # type: ignore[assignment]


class HQSamAdapter(SamAdapter):
    """HQ-SAM: the official ``segment_anything_hq`` ``Sam`` with ``MaskDecoderHQ``.

    Differences from SAM: the image encoder also returns intermediate ViT features (the state keeps
    ``interm_embeddings[0]``, the only one ``MaskDecoderHQ`` reads); the decoder takes them and
    ``hq_token_only`` and returns one mask per prompt even with multimask output (see module docstring).
    """

    adapter = "hq-sam"
    hq = True

    def _run_image_encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[list]]:
        features, interm = self.model.image_encoder(x)
        return features, [interm[0]]

    def _decoder_extra_kwargs(self, state: SamImageState) -> dict:
        return {"hq_token_only": self.options.hq_token_only, "interm_embeddings": state.interm}


# ----------------------------------------------------------------------------------------- factories


def _build(cls: type, card: ModelCard, device: str, checkpoint: Optional[str], plugin: Optional[str],
           options: Optional[dict]) -> SamAdapter:
    if plugin is not None:
        raise SambenchError(f"model '{card.name}': a {cls.adapter} model takes no plug-in (got {plugin})")
    opts = parse_options(options if options is not None else card.options, hq=cls.hq, where=str(card.path or card.name))
    dev = resolve_device(device)  # fail on a bad device before loading gigabytes
    loaded = load_sam_model(card, hq=cls.hq, options=opts, checkpoint=checkpoint)
    return cls(loaded.model, name=card.name, options=opts, device=dev, weights_id=loaded.weights_id)


def build_sam(card: ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None, plugin: Optional[str] = None,
              options: Optional[dict] = None) -> SamAdapter:
    """Registry factory for adapter ``sam``."""
    return _build(SamAdapter, card, device, checkpoint, plugin, options)


def build_hq_sam(card: ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None,
                 plugin: Optional[str] = None, options: Optional[dict] = None) -> HQSamAdapter:
    """Registry factory for adapter ``hq-sam``."""
    return _build(HQSamAdapter, card, device, checkpoint, plugin, options)  # type: ignore[return-value]


__all__ = ["ADAPTER_VERSION", "HQSamAdapter", "LoadedSam", "SamAdapter", "SamImageState", "SamOptions",
           "build_hq_sam", "build_sam", "load_sam_model", "parse_options"]
