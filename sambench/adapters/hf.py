"""The ``transformers`` backend: the Hugging Face SAM family, one adapter kind per model class.

| kind | transformers class | processor | image state |
|---|---|---|---|
| ``hf-sam`` | ``SamModel`` | ``SamProcessor`` | embedding (1, 256, 64, 64) |
| ``hf-sam-hq`` | ``SamHQModel`` | ``SamHQProcessor`` | embedding + the ViT's intermediate embeddings |
| ``hf-sam2`` | ``Sam2Model`` | ``Sam2Processor`` | embedding + 2 high-resolution maps |
| ``hf-sam3-tracker`` | ``Sam3TrackerModel`` | ``Sam3TrackerProcessor`` | embedding + 2 high-resolution maps |
| ``hf-edgetam`` | ``EdgeTamModel`` | ``Sam2Processor`` | embedding + 2 high-resolution maps |
| ``hf`` | any of the above, picked by the checkpoint's ``config.model_type`` | | |

A model is named ``hf:<hub id or local directory>`` (no card; :func:`sambench.config.models.hf_card`) or by a
card with ``adapter: hf-…`` and option ``source: <hub id or directory>``. Weights and processor come
from ``from_pretrained(source, local_files_only=True)``: a local directory, or the hub cache that
``huggingface-cli download <id>`` (or any earlier ``from_pretrained``) filled. sambench never downloads
from the hub itself; a missing model is one line saying how to get it.

**Encode once.** :meth:`HfSamAdapter.encode` runs the library's image processor (``processor(images=...)``:
SAM/SAM-HQ resize the longest side to 1024 and pad; SAM 2 / SAM 3 tracker / EdgeTAM resize to a square)
and ``model.get_image_embeddings(pixel_values)`` once per image.

**Decode in chunks.** :meth:`HfSamAdapter.predict` (the shared loop, :mod:`sambench.adapters.decoding`)
takes prompts ``chunk_size`` at a time, grouped by (has box, number of points, has mask input); each group
is one ``model(image_embeddings=..., input_points (1, B, n, 2), input_labels (1, B, n), input_boxes (1, B, 4),
multimask_output=...)`` call. Points and boxes are converted
by the processor's own ``_normalize_coordinates`` (the function ``processor(input_points=...)`` applies),
and the selected low-res masks go through ``processor.post_process_masks`` (SAM: upsample to the padded
1024², crop, resize; SAM 2 family: one resize) with ``mask_threshold``.

**Selection.** ``single`` = ``multimask_output=False`` (SAM 2 family: with the library's dynamic
multimask fallback when its config enables it); ``best-of-3`` = ``multimask_output=True`` and the mask
with the highest predicted IoU. SAM-HQ's decoder returns one mask either way (``hq_token_only`` option,
default false, as ``SamHQModel.forward``). The score is the predicted IoU of the returned mask.

**Mask prompts** (``mask_prompts = True``, every class above): the model's own ``input_masks`` argument
takes the previous step's low-res logits — ``pred_masks`` as the model returned them, unclamped, in its
low-res frame (4× the embedding side: 256², SAM 3 tracker 288²); the processors have no mask-prompt input.
``input_masks`` is one map per *image* (the mask decoder adds its embedding to the image embedding before
repeating that over the point batch), so a group with mask inputs is one call with an image batch of B
views of the embeddings, one prompt and one ``input_masks`` (B, 1, h, w) each.

Only the ``sam`` preprocessing mode exists here (the library's processor); ``hq-sam-1024`` is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from sambench.adapters.base import OptionValueError, known_options, package_version
from sambench.adapters.decoding import DTYPES, POSTPROCESS_BATCH, ChunkedDecoding, decoder_options, resolve_device, store_masks
from sambench.adapters.weights import file_digests
from sambench.config import ModelCard
from sambench.types import Prompt, SambenchError, first_line, stable_hash

ADAPTER_VERSION = "1"


@dataclass(frozen=True)
class HfFamily:
    """How one transformers SAM-family class is fed: class names and its conventions."""

    kind: str
    model_class: str
    processor_class: str
    hq: bool = False          # SamHQModel: intermediate embeddings + hq_token_only
    multi_scale: bool = False  # SAM 2 family: get_image_embeddings returns [high-res..., embedding]
    reshaped_sizes: bool = False  # SAM / SAM-HQ: post_process_masks needs reshaped_input_sizes
    numpy_coords: bool = False    # SamProcessor._normalize_coordinates takes numpy, the SAM 2 ones torch


#: config.model_type → family (``sam2_video`` / ``sam3_video`` checkpoints hold the image model too, as
#: in transformers' own mask-generation mapping).
FAMILIES = {
    "sam": HfFamily("hf-sam", "SamModel", "SamProcessor", reshaped_sizes=True, numpy_coords=True),
    "sam_hq": HfFamily("hf-sam-hq", "SamHQModel", "SamHQProcessor", hq=True, reshaped_sizes=True, numpy_coords=True),
    "sam2": HfFamily("hf-sam2", "Sam2Model", "Sam2Processor", multi_scale=True),
    "sam3_tracker": HfFamily("hf-sam3-tracker", "Sam3TrackerModel", "Sam3TrackerProcessor", multi_scale=True),
    "edgetam": HfFamily("hf-edgetam", "EdgeTamModel", "Sam2Processor", multi_scale=True),
}
FAMILIES["sam2_video"] = FAMILIES["sam2"]
FAMILIES["sam3_video"] = FAMILIES["sam3_tracker"]
FAMILIES["edgetam_video"] = FAMILIES["edgetam"]
KIND_TO_FAMILY = {f.kind: f for f in FAMILIES.values()}

OPTION_KEYS = ("source", "revision", "mask_threshold", "chunk_size", "dtype", "hq_token_only")



@dataclass(frozen=True)
class HfOptions:
    source: str
    revision: Optional[str] = None
    mask_threshold: float = 0.0
    chunk_size: int = 8
    dtype: str = "fp32"
    hq_token_only: bool = False


def parse_hf_options(options: Optional[dict], where: str) -> HfOptions:
    opts = known_options(options, OPTION_KEYS, where)
    source = opts.get("source")
    if not isinstance(source, str) or not source.strip():
        raise OptionValueError(where, "source", "(a hub id or a local directory) is required")
    thr, chunk, dtype = decoder_options(opts, where, 8)
    hq = opts.get("hq_token_only", False)
    if not isinstance(hq, bool):
        raise OptionValueError(where, "hq_token_only", f"must be true or false, got {hq!r}")
    rev = opts.get("revision")
    return HfOptions(source=source.strip(), revision=None if rev is None else str(rev), mask_threshold=thr,
                     chunk_size=chunk, dtype=dtype,
                     hq_token_only=hq)


# ------------------------------------------------------------------------------------------ loading


def _how_to_get(source: str) -> str:
    return (f"download it once with `huggingface-cli download {source}` (it goes to the hub cache, "
            f"$HF_HOME), or give a local directory: hf:/path/to/model")


def read_hf_config(source: str, *, model: str, revision: Optional[str] = None) -> tuple[str, Any]:
    """``(where, config)``: the transformers config of a local directory or of a hub id already in the cache
    (``where`` is what ``from_pretrained`` takes); one-line errors naming the source."""
    from transformers import AutoConfig  # lazy: an optional extra that takes seconds to import

    local = Path(source).expanduser()
    where = str(local) if local.is_dir() else source
    try:
        return where, AutoConfig.from_pretrained(where, local_files_only=True, revision=revision)
    except OSError:
        if local.exists() or source.startswith((".", "/", "~")):
            raise SambenchError(f"{source}: not a transformers model directory (no config.json)") from None
        raise SambenchError(f"model '{model}': {source} is not in the Hugging Face hub cache and sambench does not "
                            f"download from the hub; {_how_to_get(source)}") from None
    except ValueError as exc:
        raise SambenchError(f"{where}: unreadable transformers config ({first_line(exc)})") from None


def load_hf(source: str, *, kind: Optional[str], model: str, revision: Optional[str] = None):
    """``(family, model, processor, weights_id)`` for a local directory or a hub id already in the cache.

    ``kind`` (a card's adapter) must match the checkpoint's ``model_type``; ``hf`` accepts any family.
    """
    import transformers  # lazy: an optional extra that takes seconds to import; only an hf model needs it

    where, config = read_hf_config(source, model=model, revision=revision)
    family = FAMILIES.get(config.model_type)
    if family is None:
        raise SambenchError(f"{where}: model_type '{config.model_type}' is not a promptable SAM-family model "
                            f"(known: {', '.join(sorted(FAMILIES))})")
    if kind not in (None, "hf") and KIND_TO_FAMILY.get(kind) is not family:
        raise SambenchError(f"{where}: holds a '{config.model_type}' model ({family.model_class}), but model "
                            f"'{model}' is adapter '{kind}'; use adapter '{family.kind}' or hf:{source}")
    model_cls = getattr(transformers, family.model_class)
    proc_cls = getattr(transformers, family.processor_class)
    try:
        net = model_cls.from_pretrained(where, local_files_only=True, revision=revision)
        processor = proc_cls.from_pretrained(where, local_files_only=True, revision=revision)
    except (OSError, ValueError) as exc:
        raise SambenchError(f"{where}: cannot load {family.model_class}/{family.processor_class} "
                            f"({first_line(exc)})") from None
    return family, net.eval(), processor, weights_identity(where, revision)


def weights_identity(where: str, revision: Optional[str]) -> str:
    """``sha256`` of the weights file(s) in a local directory, else ``hub:<id>@<commit>`` from the cache."""
    p = Path(where).expanduser()
    if p.is_dir():
        files = sorted(x for x in p.iterdir() if x.suffix in (".safetensors", ".bin") and x.is_file())
        return stable_hash([[f.name, file_digests(f).sha256] for f in files]) if files else "unknown"
    try:
        from huggingface_hub import try_to_load_from_cache  # lazy: comes with the optional transformers extra

        cfg = try_to_load_from_cache(where, "config.json", revision=revision)
        if isinstance(cfg, str):
            return f"hub:{where}@{Path(cfg).parent.name}"  # snapshots/<commit>/config.json
    except Exception:  # noqa: BLE001 - identity is best effort beyond the local-directory case
        pass
    return f"hub:{where}"


# -------------------------------------------------------------------------------------------- state


@dataclass
class HfImageState:
    """``embeddings``: what ``model(image_embeddings=...)`` takes (a tensor, or the SAM 2 family's list);
    ``intermediate``: SAM-HQ's intermediate embeddings; sizes for ``post_process_masks``."""

    embeddings: Any
    intermediate: Any
    original_size: tuple[int, int]
    reshaped_size: Optional[tuple[int, int]]
    preprocessing: str = "sam"
    extra: dict = field(default_factory=dict)


class HfSamAdapter(ChunkedDecoding):
    """Encode-once / decode-many adapter around a transformers SAM-family model (module docstring)."""

    state_type = HfImageState

    def __init__(self, family: HfFamily, model: torch.nn.Module, processor: Any, *, name: str, options: HfOptions,
                 device: str | torch.device = "auto", weights_id: str = "unknown") -> None:
        super().__init__()
        self.family = family
        self.kind = family.kind
        self._bind(model, name=name, options=options, device=resolve_device(device), weights_id=weights_id,
                   chunk_size=options.chunk_size, autocast_dtype=DTYPES[options.dtype])
        if options.hq_token_only and not family.hq:
            raise SambenchError(f"model '{name}': option 'hq_token_only' only applies to SAM-HQ models")
        self.processor = processor

    def signature(self) -> dict:
        return {"model": self.name, "adapter": self.kind, "adapter_version": ADAPTER_VERSION,
                "variant": f"{self.family.model_class}:{self.options.source}", "weights_sha256": self.weights_id,
                "preprocessing": ["sam"],
                "options": {"mask_threshold": self.options.mask_threshold, "dtype": self.options.dtype,
                            **({"hq_token_only": self.options.hq_token_only} if self.family.hq else {})},
                "packages": {"transformers": package_version("transformers"), "torch": torch.__version__}}

    # ---------------------------------------------------------------------------------- encoding

    def encode(self, image: np.ndarray, preprocessing: str = "sam") -> HfImageState:
        if preprocessing != "sam":
            raise SambenchError(f"model '{self.name}': the transformers backend has only the library's own "
                                f"preprocessing ('sam'), not '{preprocessing}'")
        self.check_image(image)
        inputs = self.processor(images=image, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device)
        with torch.no_grad(), self._autocast():
            out = self.model.get_image_embeddings(pixel_values)
        emb, interm = (out[0], out[1]) if self.family.hq else (out, None)
        self.encoder_calls += 1
        orig = tuple(int(v) for v in inputs["original_sizes"][0])
        resh = tuple(int(v) for v in inputs["reshaped_input_sizes"][0]) if self.family.reshaped_sizes else None
        return HfImageState(embeddings=emb, intermediate=interm, original_size=orig, reshaped_size=resh)  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------------- prompts

    def _normalize(self, state: HfImageState, coords: np.ndarray, box: bool) -> torch.Tensor:
        """The processor's own coordinate conversion (original pixels → model input frame), per prompt."""
        proc = self.processor
        out = []
        for c in coords:
            if self.family.numpy_coords:
                r = proc._normalize_coordinates(proc.target_size, np.asarray(c, dtype=np.float64), state.original_size,
                                                is_bounding_box=box)
                out.append(torch.from_numpy(np.asarray(r)))
            else:
                r = proc._normalize_coordinates(proc.target_size, torch.tensor(np.asarray(c), dtype=torch.float32),
                                                state.original_size, is_bounding_box=box)
                out.append(r)
        return torch.stack(out)

    def _model_inputs(self, state: HfImageState, prompts: Sequence[Prompt]) -> dict:
        kw: dict = {}
        if prompts[0].points:
            pts = np.stack([np.asarray(p.points, dtype=np.float64) for p in prompts])  # (B, n, 2)
            kw["input_points"] = self._normalize(state, pts, box=False)[None].to(self.device, torch.float32)
            kw["input_labels"] = torch.as_tensor(np.stack([np.asarray(p.labels, dtype=np.int64) for p in prompts]))[None].to(self.device)
        if prompts[0].box is not None:
            boxes = np.stack([np.asarray(p.box, dtype=np.float64)[None] for p in prompts])  # (B, 1, 4)
            kw["input_boxes"] = self._normalize(state, boxes, box=True).reshape(1, len(prompts), 4).to(self.device, torch.float32)
        return kw

    def _decode_group(self, state: HfImageState, prompts: Sequence[Prompt], mask_inputs: Optional[Sequence[np.ndarray]],
                      multimask: bool) -> tuple[torch.Tensor, torch.Tensor, None]:
        """(low-res logits (B, C, h, w), predicted IoU (B, C), None) for one group of prompts: one ``model(...)``
        call, the B prompts as the point batch of the image, or with mask inputs as an image batch of B
        (module docstring, "Mask prompts")."""
        kw = self._model_inputs(state, prompts)
        emb, interm = state.embeddings, state.intermediate
        if mask_inputs is not None:
            b = len(prompts)
            kw = {k: v.reshape(b, 1, *v.shape[2:]) for k, v in kw.items()}
            emb = [_batch_view(t, b) for t in emb] if isinstance(emb, (list, tuple)) else _batch_view(emb, b)
            interm = None if interm is None else [_batch_view(t, b) for t in interm]
            kw["input_masks"] = self._mask_tensor(mask_inputs)
        if self.family.hq:
            kw.update(intermediate_embeddings=interm, hq_token_only=self.options.hq_token_only)
        out = self.model(image_embeddings=emb, multimask_output=multimask, **kw)
        low, iou = out.pred_masks, out.iou_scores  # (images, point batch, C, h, w), (images, point batch, C)
        return low.reshape(-1, *low.shape[2:]), iou.reshape(-1, iou.shape[-1]), None

    def _postprocess_into(self, state: HfImageState, low: torch.Tensor, out) -> None:
        """``processor.post_process_masks`` (binarised at ``mask_threshold``), 8 masks at a time."""
        for s in range(0, low.shape[0], POSTPROCESS_BATCH):
            part = low[s:s + POSTPROCESS_BATCH]
            kw = {"reshaped_input_sizes": [list(state.reshaped_size)]} if self.family.reshaped_sizes else {}
            up = self.processor.post_process_masks([part], [list(state.original_size)],
                                                   mask_threshold=self.options.mask_threshold, binarize=True, **kw)[0]
            store_masks(out, s, up[:, 0].bool())

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def _batch_view(t: torch.Tensor, b: int) -> torch.Tensor:
    """A (1, ...) tensor seen as b copies along dim 0 (a view: no memory)."""
    return t.expand(b, *t.shape[1:])


def build_hf(card: ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None, plugin: Optional[str] = None,
             options: Optional[dict] = None) -> HfSamAdapter:
    """Registry factory for adapter kinds ``hf`` and ``hf-<family>`` (``--checkpoint DIR`` overrides ``source``)."""
    where = str(card.path or card.name)
    if plugin is not None:
        raise SambenchError(f"model '{card.name}': a transformers model takes no plug-in (got {plugin})")
    opts = dict(options if options is not None else card.options)
    if checkpoint is not None:
        opts["source"] = os.fspath(checkpoint)
    parsed = parse_hf_options(opts, where)
    dev = resolve_device(device)
    family, net, processor, weights_id = load_hf(parsed.source, kind=card.adapter, model=card.name,
                                                 revision=parsed.revision)
    return HfSamAdapter(family, net, processor, name=card.name, options=parsed, device=dev, weights_id=weights_id)


__all__ = ["FAMILIES", "HfFamily", "HfImageState", "HfOptions", "HfSamAdapter", "build_hf", "load_hf",
           "parse_hf_options", "read_hf_config"]
