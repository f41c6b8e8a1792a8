"""What every torch SAM-family adapter shares (SAM, HQ-SAM, SAM 2.1, transformers, Stable-SAM): the decode loop,
the option, device and dtype checks, and HQ-SAM's 1024² evaluation resize.

:meth:`ChunkedDecoding.predict` takes the prompts of one encoded image ``chunk_size`` at a time. Inside a chunk
it groups them by (has box, number of points, has mask input) — a prompt encoder needs equal shapes per
batch — decodes each group with the backend's :meth:`~ChunkedDecoding._decode_group`, keeps one mask per
prompt (:func:`select_best`), and hands the chunk's selected low-res logits to the backend's
:meth:`~ChunkedDecoding._postprocess_into`, which upsamples and thresholds them into the output. Outputs keep
the input order; only chunk × (h × w) low-res floats exist at a time.

**Mask prompts.** ``predict(..., mask_inputs=[...])`` gives each prompt an optional low-res logit map: the
one this adapter returned for an earlier step in ``Prediction.low_res_logits`` (``return_logits=True``),
after the backend's :meth:`~ChunkedDecoding._feedback_logits` (SAM 2.1 clamps to [-32, 32] as its
predictor does). Prompts with and without one mix freely in a call.

**Shared helpers.** :func:`decoder_options` validates ``mask_threshold``, ``chunk_size`` and ``dtype`` alike
for every backend (:data:`DTYPES`: fp32, or bf16/fp16 autocast on CUDA); :func:`resolve_device` turns
``auto``/``cpu``/``cuda[:N]``/``mps`` into a device; :func:`resize_square_hq` is the ``hq-sam-1024``
preprocessing. They live here, below every backend, so that no backend imports another.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sambench.adapters.base import Adapter, OptionValueError
from sambench.types import Prediction, Prompt, SambenchError


# ------------------------------------------------------------------ options, devices, the hq-sam-1024 resize

#: Masks upsampled to full resolution at a time inside a chunk (bounds the float buffers).
POSTPROCESS_BATCH = 8

#: Option ``dtype`` → the CUDA autocast dtype (None: fp32, no autocast).
DTYPES = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}

#: The square side of HQ-SAM's evaluation resize (``preprocessing: hq-sam-1024``).
HQ_SAM_SIZE = 1024


def decoder_options(opts: dict, where: str, default_chunk: Any, allow_auto: bool = False) -> tuple[float, Any, str]:
    """``(mask_threshold, chunk_size, dtype)`` from adapter options, validated alike for every torch backend:
    a finite logit threshold, a decoder batch >= 1 (or ``auto`` where allowed) and a dtype of :data:`DTYPES`
    (torch spellings normalised to fp32/bf16/fp16)."""
    thr = opts.get("mask_threshold", 0.0)
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not np.isfinite(thr):
        raise OptionValueError(where, "mask_threshold", f"must be a finite number (a logit), got {thr!r}")
    chunk = opts.get("chunk_size", default_chunk)
    if not (allow_auto and chunk == "auto") and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise OptionValueError(where, "chunk_size", f"must be an integer >= 1{' or auto' if allow_auto else ''}, "
                                                    f"got {chunk!r}")
    dtype = opts.get("dtype", "fp32") or "fp32"
    if dtype not in DTYPES:
        raise OptionValueError(where, "dtype", f"must be fp32, bf16 or fp16, got {dtype!r}")
    return float(thr), chunk, {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)


def resolve_device(device: Optional[str | torch.device]) -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu; an unavailable explicit device is an error; a
    ``torch.device`` is returned as it is."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise SambenchError(f"unknown device '{device}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SambenchError(f"device '{device}' requested but CUDA is not available (torch {torch.__version__})")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SambenchError(f"device '{device}' requested but MPS is not available")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise SambenchError(f"unsupported device '{device}' (use auto, cpu, cuda, cuda:N or mps)")
    return dev


def resize_square_hq(image: np.ndarray, size: int = HQ_SAM_SIZE) -> np.ndarray:
    """HQ-SAM's evaluation resize: RGB uint8 (H, W, 3) → (size, size, 3) uint8, aspect not kept.

    float32 bilinear ``F.interpolate(align_corners=False)`` (no antialias), then truncation to uint8.
    """
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(torch.float32)
    r = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return r[0].permute(1, 2, 0).numpy().astype(np.uint8)


# ---------------------------------------------------------------------------------------- the loop


def prompt_groups(prompts: Sequence[Prompt], has_mask: Optional[Sequence[bool]] = None) -> list[list[int]]:
    """Indices grouped by (has box, number of points, has mask input), groups in order of first appearance."""
    groups: dict[tuple[bool, int, bool], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault((p.box is not None, len(p.points or ()), bool(has_mask and has_mask[i])), []).append(i)
    return list(groups.values())


def select_best(low: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, h, w), (B, C) → (B, 1, h, w), (B,): the mask with the highest predicted IoU."""
    if low.shape[1] == 1:
        return low, iou[:, 0]
    best = torch.argmax(iou, dim=1)
    rows = torch.arange(low.shape[0], device=low.device)
    return low[rows, best][:, None], iou[rows, best]


def store_masks(out, start: int, fg: torch.Tensor) -> None:
    """Write the bool masks ``fg`` (k, H, W) into ``out[start:start + k]``: a numpy array, or a bool tensor
    on the adapter's device (``masks_on_device``)."""
    if isinstance(out, torch.Tensor):
        out[start:start + fg.shape[0]] = fg.to(out.device)
    else:
        out[start:start + fg.shape[0]] = fg.cpu().numpy()


class ChunkedDecoding(Adapter):
    """An adapter that encodes an image once and decodes its prompts in chunks (module docstring).

    A subclass sets ``state_type`` (what its ``encode`` returns), ``chunk_size``, ``device`` and
    ``_autocast_dtype`` (None or a CUDA autocast dtype), and implements

    * ``_decode_group(state, prompts, mask_inputs, multimask) -> (low (B, C, h, w), iou (B, C), extras | None)``
      for B prompts of one shape; ``mask_inputs`` is None or B low-res logit maps. The default embeds the
      prompts with ``_embed_prompts(state, prompts, mask_inputs) -> (sparse, dense)`` and runs
      ``_decode(state, sparse, dense, multimask)`` (the packages with a separate prompt encoder: SAM,
      HQ-SAM, SAM 2.1, and Stable-SAM, which overrides ``_decode``); ``extras`` is a list of B
      JSON-serialisable dicts or None;
    * ``_postprocess_into(state, low (B, 1, h, w), out)``: upsample, threshold, :func:`store_masks`;
    * optionally ``_feedback_logits(low)``: the selected logits as returned for feeding back.
    """

    state_type: type = object
    mask_prompts = True
    chunk_size: int = 8
    _autocast_dtype: Optional[torch.dtype] = None

    def _bind(self, model: torch.nn.Module, *, name: str, options: Any, device: torch.device, weights_id: str,
              chunk_size: int, autocast_dtype: Optional[torch.dtype]) -> None:
        """What every torch backend's ``__init__`` sets alike: identity, device, decoder batch, threshold
        (``options.mask_threshold``), autocast dtype (CUDA only: refused elsewhere) and the model in eval mode
        on ``device``."""
        self.name, self.options, self.device, self.weights_id = name, options, device, weights_id
        self.chunk_size, self.mask_threshold = chunk_size, options.mask_threshold
        self._autocast_dtype = autocast_dtype
        if autocast_dtype is not None and device.type != "cuda":
            raise SambenchError(f"model '{name}': dtype {options.dtype} needs a CUDA device (autocast is only used on "
                                f"CUDA); this run uses {device.type} — use dtype fp32")
        self.model = model.to(device).eval()

    def _autocast(self):
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self._autocast_dtype)

    def _decode_group(self, state: Any, prompts: Sequence[Prompt], mask_inputs: Optional[Sequence[np.ndarray]],
                      multimask: bool) -> tuple[torch.Tensor, torch.Tensor, Optional[list]]:
        sparse, dense = self._embed_prompts(state, prompts, mask_inputs)
        return self._decode(state, sparse, dense, multimask)

    def _embed_prompts(self, state: Any, prompts: Sequence[Prompt], mask_inputs: Optional[Sequence[np.ndarray]]):
        raise NotImplementedError(f"{type(self).__name__} implements neither _decode_group nor _embed_prompts")

    def _decode(self, state: Any, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool):
        raise NotImplementedError(f"{type(self).__name__} implements neither _decode_group nor _decode")

    def _feedback_logits(self, low: torch.Tensor) -> torch.Tensor:
        """The selected low-res logits as ``Prediction.low_res_logits`` returns them (default: unchanged)."""
        return low

    def _postprocess_into(self, state: Any, low: torch.Tensor, out) -> None:
        raise NotImplementedError

    def _mask_tensor(self, mask_inputs: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, 1, h, w) float32 on this adapter's device from B low-res logit maps."""
        return torch.as_tensor(np.stack([np.asarray(m, dtype=np.float32) for m in mask_inputs]),
                               dtype=torch.float, device=self.device)[:, None, :, :]

    def predict(self, state: Any, prompts: Sequence[Prompt], mask_selection: str = "single",
                mask_inputs: Optional[Sequence[Optional[np.ndarray]]] = None, return_logits: bool = False) -> Prediction:
        """Masks (bool, N×H×W at the original size) and predicted IoUs for ``prompts``, in order.

        ``mask_inputs``: None, or one low-res logit map (or None) per prompt, given as the mask prompt;
        ``return_logits``: also return each selected mask's low-res logits (``Prediction.low_res_logits``).
        """
        prompts = self.checked_prompts(state, self.state_type, prompts, mask_selection)
        n = len(prompts)
        if mask_inputs is not None and len(mask_inputs) != n:
            raise SambenchError(f"model '{self.name}': {len(mask_inputs)} mask inputs for {n} prompts")
        h, w = state.original_size
        if self.masks_on_device and self.device.type == "cuda":  # the runner scores them there
            masks = torch.zeros((n, h, w), dtype=torch.bool, device=self.device)
        else:
            masks = np.zeros((n, h, w), dtype=bool)
        scores = np.full(n, np.nan, dtype=np.float32)
        logits_out: Optional[np.ndarray] = None
        extras: Optional[list] = None
        multimask = mask_selection == "best-of-3"
        with torch.no_grad():
            for start in range(0, n, self.chunk_size):
                chunk = prompts[start:start + self.chunk_size]
                chunk_masks = list(mask_inputs[start:start + len(chunk)]) if mask_inputs is not None else None
                has_mask = [m is not None for m in chunk_masks] if chunk_masks is not None else None
                low_parts: list[Optional[torch.Tensor]] = [None] * len(chunk)
                for idx in prompt_groups(chunk, has_mask):
                    group_masks = [chunk_masks[i] for i in idx] if has_mask and has_mask[idx[0]] else None
                    with self._autocast():
                        low, iou, ex = self._decode_group(state, [chunk[i] for i in idx], group_masks, multimask)
                    low, iou = select_best(low.float(), iou.float())
                    for j, i in enumerate(idx):
                        low_parts[i] = low[j]
                        scores[start + i] = float(iou[j])
                    if ex is not None:
                        extras = extras if extras is not None else [{} for _ in range(n)]
                        for j, i in enumerate(idx):
                            extras[start + i] = ex[j]
                stacked = torch.stack(low_parts)
                if return_logits:
                    fed = self._feedback_logits(stacked)
                    if logits_out is None:
                        logits_out = np.zeros((n,) + tuple(fed.shape[-2:]), dtype=np.float32)
                    logits_out[start:start + len(chunk)] = fed[:, 0].float().cpu().numpy()
                self._postprocess_into(state, stacked, masks[start:start + len(chunk)])
        self.decoded_prompts += n
        return Prediction(masks=masks, scores=scores, extras=extras, low_res_logits=logits_out)


__all__ = ["DTYPES", "HQ_SAM_SIZE", "POSTPROCESS_BATCH", "ChunkedDecoding", "decoder_options", "prompt_groups",
           "resize_square_hq", "resolve_device", "select_best", "store_masks"]
