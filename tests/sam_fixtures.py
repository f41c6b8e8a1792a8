"""Shared helpers for the SAM / HQ-SAM tests: tiny checkpoints, synthetic images, prompts, and the
official predictors used as references. Plain functions (no pytest fixtures) so any test module can
import them; tests build module-scoped fixtures on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from sambench.adapters.sam.nets import build_sam_model
from sambench.types import Prompt

#: Seeds of the tiny random models whose state dicts the tests save and load.
SAM_SEED = 7
HQ_SEED = 11


def save_tiny_checkpoint(directory: Path, hq: bool, name: Optional[str] = None, seed: Optional[int] = None) -> Path:
    """``torch.save(model.state_dict(), directory/name)`` for a tiny random (HQ-)SAM."""
    seed = (HQ_SEED if hq else SAM_SEED) if seed is None else seed
    model = build_sam_model("tiny", hq=hq, seed=seed)
    path = Path(directory) / (name or f"tiny_{'hq' if hq else 'sam'}_{seed}.pth")
    torch.save(model.state_dict(), path)
    return path


def reference_model(path: Path, hq: bool) -> torch.nn.Module:
    """An independently built tiny model with the saved weights (plain ``torch.load`` + strict load)."""
    model = build_sam_model("tiny", hq=hq, seed=12345)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth RGB uint8 image with a few flat ellipses (keyed generator, no global RNG)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3), dtype=np.float64)
    for c in range(3):
        a, b = rng.uniform(-1, 1, size=2)
        img[..., c] = 128 + 60 * np.sin(a * xx / 17.0 + b * yy / 23.0 + c)
    for _ in range(3):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.1, 0.3) * height, rng.uniform(0.1, 0.3) * width
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        img[inside] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 4, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def mixed_prompts(height: int, width: int) -> list[Prompt]:
    """Box, 1 point, box + 2 points, 3 points (one negative) — every kind, mixed, in that order."""
    h, w = height, width
    return [
        Prompt(box=(0.1 * w, 0.15 * h, 0.6 * w, 0.7 * h)),
        Prompt(points=((0.5 * w, 0.5 * h),), labels=(1,)),
        Prompt(box=(0.3 * w, 0.2 * h, 0.95 * w, 0.9 * h), points=((0.6 * w, 0.55 * h), (0.35 * w, 0.25 * h)),
               labels=(1, 0)),
        Prompt(points=((0.25 * w, 0.3 * h), (0.7 * w, 0.6 * h), (0.05 * w, 0.95 * h)), labels=(1, 1, 0)),
    ]


def prompt_arrays(prompt: Prompt, sx: float = 1.0, sy: float = 1.0) -> dict:
    """``SamPredictor.predict`` keyword arguments for a prompt, coordinates scaled by (sx, sy)."""
    kw: dict = {}
    if prompt.points:
        pts = np.asarray(prompt.points, dtype=np.float64) * np.array([sx, sy])
        kw["point_coords"] = pts
        kw["point_labels"] = np.asarray(prompt.labels, dtype=np.int64)
    if prompt.box is not None:
        kw["box"] = np.asarray(prompt.box, dtype=np.float64) * np.array([sx, sy, sx, sy])
    return kw


def hq_resize_1024(image: np.ndarray) -> np.ndarray:
    """HQ-SAM's evaluation resize, written out independently: float32 bilinear to 1024², then uint8."""
    t = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)
    t = F.interpolate(t, (1024, 1024), mode="bilinear", align_corners=False)
    return t.squeeze(0).permute(1, 2, 0).numpy().astype(np.uint8)


def hq_sam_reference_box(mask: np.ndarray) -> np.ndarray:
    """HQ-SAM's evaluation box in its 1024 frame, ``misc.masks_to_boxes(Resize(label)[:, 0])``, written out
    from its definition: the float 0/255 label resized bilinearly to 1024², foreground = value > 128, max of
    x·mask, min with the background filled by 1e8 (tests/test_box_frame.py)."""
    label = torch.from_numpy(mask.astype(np.float32) * 255.0)[None, None]
    masks = F.interpolate(label, (1024, 1024), mode="bilinear", align_corners=False)[:, 0]
    y, x = torch.meshgrid(torch.arange(1024, dtype=torch.float), torch.arange(1024, dtype=torch.float), indexing="ij")
    fg = masks > 128
    x_max = (fg * x[None]).flatten(1).max(-1)[0]
    x_min = (fg * x[None]).masked_fill(~fg, 1e8).flatten(1).min(-1)[0]
    y_max = (fg * y[None]).flatten(1).max(-1)[0]
    y_min = (fg * y[None]).masked_fill(~fg, 1e8).flatten(1).min(-1)[0]
    return torch.stack([x_min, y_min, x_max, y_max], 1)[0].numpy().astype(np.float64)


def pick(masks_or_logits: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, float]:
    """The official outputs' mask with the highest predicted IoU (the only one when C == 1)."""
    i = int(np.argmax(scores))
    return masks_or_logits[i], float(scores[i])


def reference_logits(predictor, prompt: Prompt, multimask: bool, original_size: tuple[int, int],
                     mode: str, hq_token_only: Optional[bool] = None) -> tuple[np.ndarray, float]:
    """(logits float H×W of the mask with the highest predicted IoU, its score) from the official predictor
    on the image already set. Thresholding them at ``> 0.0`` is exactly what ``SamPredictor.predict``
    does with ``return_logits=False`` (``masks > model.mask_threshold``).

    ``mode == "sam"``: the predictor ran on the original image; prompts as they are.
    ``mode == "hq-sam-1024"``: it ran on :func:`hq_resize_1024` of the image; prompts are scaled by
    1024/W, 1024/H, and the 1024² logits are resized bilinearly (half-pixel) to the original size.
    """
    h, w = original_size
    extra = {} if hq_token_only is None else {"hq_token_only": hq_token_only}
    sx, sy = (1.0, 1.0) if mode == "sam" else (1024.0 / w, 1024.0 / h)
    logits, scores, _ = predictor.predict(**prompt_arrays(prompt, sx, sy), multimask_output=multimask,
                                          return_logits=True, **extra)
    logit, score = pick(logits, scores)
    if mode != "sam":
        logit = F.interpolate(torch.from_numpy(np.ascontiguousarray(logit))[None, None].float(), (h, w),
                              mode="bilinear", align_corners=False)[0, 0].numpy()
    assert logit.shape == (h, w)
    return logit, score


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks, written independently of sambench.metrics (two empties → 1)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def click_steps(height: int, width: int) -> tuple[list[Prompt], list[Prompt]]:
    """Two steps of an interactive session on an image of that size: a click / a box + click, then each with
    one more click (a negative one, a positive one)."""
    h, w = height, width
    box = (0.1 * w, 0.12 * h, 0.75 * w, 0.8 * h)
    first = [Prompt(points=((0.4 * w, 0.42 * h),), labels=(1,)), Prompt(box=box, points=((0.4 * w, 0.42 * h),), labels=(1,))]
    second = [Prompt(points=((0.4 * w, 0.42 * h), (0.85 * w, 0.75 * h)), labels=(1, 0)),
              Prompt(box=box, points=((0.4 * w, 0.42 * h), (0.2 * w, 0.2 * h)), labels=(1, 1))]
    return first, second


def two_step_session(adapter, state, official, steps, selection: str = "single") -> dict:
    """SAM's interactive use against the official path, prompt by prompt: step 1 decodes ``steps[0]`` and keeps
    each prompt's low-res logits; step 2 decodes ``steps[1]`` with them as mask prompts, plus ``steps[1][0]``
    again without one (mixed in the same call). ``official(prompt, mask_input, multimask) -> (mask, score,
    low-res logits)`` is the reference predictor; the adapter is fed its own logits, the reference its own.

    Asserts at both steps masks IoU >= 0.999, scores within 1e-4, returned logits within 1e-3, no encode; returns
    the largest score and logit differences, the mask prompt's effect (largest logit change it makes) and the
    two predictions."""
    multimask = selection == "best-of-3"
    calls = adapter.encoder_calls
    worst = {"score": 0.0, "logits": 0.0}

    def check(pred, refs):
        assert pred.low_res_logits.dtype == np.float32 and pred.low_res_logits.shape[0] == len(pred.masks)
        for i, (mask, score, low) in enumerate(refs):
            assert mask_iou(pred.masks[i], mask) >= 0.999, i
            worst["score"] = max(worst["score"], abs(float(pred.scores[i]) - score))
            worst["logits"] = max(worst["logits"], float(np.abs(pred.low_res_logits[i] - low).max()))
        assert worst["score"] <= 1e-4 and worst["logits"] <= 1e-3, worst

    first, second = steps
    p1 = adapter.predict(state, first, selection, return_logits=True)
    refs1 = [official(p, None, multimask) for p in first]
    check(p1, refs1)
    p2 = adapter.predict(state, second + second[:1], selection, mask_inputs=list(p1.low_res_logits) + [None],
                         return_logits=True)
    check(p2, [official(p, refs1[i][2], multimask) for i, p in enumerate(second)] + [official(second[0], None, multimask)])
    assert adapter.encoder_calls == calls
    effect = float(np.abs(p2.low_res_logits[0] - p2.low_res_logits[-1]).max())
    return {**worst, "effect": effect, "first": p1, "second": p2}


def device_write_matches_host(adapter, state, side: int = 256) -> None:
    """``masks_on_device``: on CUDA the decode loop hands ``_postprocess_into`` a bool tensor on the device
    instead of a numpy array; the write path is the same code on a CPU tensor (no GPU here)."""
    h, w = state.original_size
    low = torch.randn(3, 1, side, side, generator=torch.Generator().manual_seed(0))
    host, device = np.zeros((3, h, w), bool), torch.zeros((3, h, w), dtype=torch.bool)
    adapter._postprocess_into(state, low, host)
    adapter._postprocess_into(state, low, device)
    assert host.any() and not host.all()
    np.testing.assert_array_equal(device.numpy(), host)
