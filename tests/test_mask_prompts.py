"""Mask prompts (the interactive protocol's feedback of low-res logits) against the official predictors.

Two steps of an interactive session, as SAM's own notebook does it: step 1 decodes a click and keeps the
256×256 logits of the returned mask; step 2 decodes two clicks with those logits as ``mask_input``. The
adapter must give the official predictor's masks, scores and logits at both steps, prompt by prompt.
"""

from __future__ import annotations

import numpy as np
import pytest

from sambench.adapters import build_adapter
from sambench.types import Prompt

try:
    from sam_fixtures import mask_iou, reference_model, save_tiny_checkpoint, synthetic_image
except ImportError:  # tests/ imported as a package
    from tests.sam_fixtures import mask_iou, reference_model, save_tiny_checkpoint, synthetic_image

H, W = 120, 180
STEP1 = [Prompt(points=((60.0, 50.0),), labels=(1,)),
         Prompt(box=(20.0, 15.0, 130.0, 100.0), points=((60.0, 50.0),), labels=(1,))]
STEP2 = [Prompt(points=((60.0, 50.0), (140.0, 90.0)), labels=(1, 0)),
         Prompt(box=(20.0, 15.0, 130.0, 100.0), points=((60.0, 50.0), (30.0, 20.0)), labels=(1, 1))]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_ckpts_mask")
    return {"sam": save_tiny_checkpoint(d, hq=False), "hq": save_tiny_checkpoint(d, hq=True)}


def _official(predictor, prompt: Prompt, mask_input=None):
    kw = {}
    if prompt.points:
        kw["point_coords"] = np.asarray(prompt.points, dtype=np.float64)
        kw["point_labels"] = np.asarray(prompt.labels, dtype=np.int64)
    if prompt.box is not None:
        kw["box"] = np.asarray(prompt.box, dtype=np.float64)
    masks, scores, low = predictor.predict(**kw, mask_input=None if mask_input is None else mask_input[None],
                                           multimask_output=False)
    return masks[0], float(scores[0]), low[0]


@pytest.mark.slow
@pytest.mark.parametrize("hq", [False, True], ids=["sam", "hq-sam"])
def test_mask_input_matches_the_official_predictor(ckpts, hq):
    if hq:
        from segment_anything_hq import SamPredictor
    else:
        from segment_anything import SamPredictor
    key = "hq" if hq else "sam"
    adapter = build_adapter("hq-sam-tiny" if hq else "sam-tiny", device="cpu", checkpoint=str(ckpts[key]))
    assert adapter.mask_prompts
    predictor = SamPredictor(reference_model(ckpts[key], hq=hq))
    image = synthetic_image(H, W, seed=21)
    predictor.set_image(image)
    state = adapter.encode(image, "sam")

    step1, step2 = (STEP1[:1], STEP2[:1]) if hq else (STEP1, STEP2)  # HQ's decoder is the slow one: 1 prompt
    p1 = adapter.predict(state, step1, "single", return_logits=True)
    assert p1.low_res_logits.shape == (len(step1), 256, 256) and p1.low_res_logits.dtype == np.float32
    refs1 = [_official(predictor, p) for p in step1]
    for i, (m, s, low) in enumerate(refs1):
        assert mask_iou(p1.masks[i], m) >= 0.999 and abs(p1.scores[i] - s) <= 1e-4
        np.testing.assert_allclose(p1.low_res_logits[i], low, atol=1e-3)

    # step 2: each prompt gets its own previous logits; mixed with a prompt without mask input
    inputs = list(p1.low_res_logits)
    p2 = adapter.predict(state, step2 + [step2[0]], "single", mask_inputs=inputs + [None], return_logits=True)
    refs2 = [_official(predictor, p, refs1[i][2]) for i, p in enumerate(step2)]
    for i, (m, s, low) in enumerate(refs2):
        assert 0.01 < m.mean() < 0.99
        assert mask_iou(p2.masks[i], m) >= 0.999 and abs(p2.scores[i] - s) <= 1e-4
        np.testing.assert_allclose(p2.low_res_logits[i], low, atol=1e-3)
    no_mask, _, _ = _official(predictor, step2[0])
    assert mask_iou(p2.masks[-1], no_mask) >= 0.999
    # the mask prompt really changes the output
    assert not np.allclose(p2.low_res_logits[0], p2.low_res_logits[-1], atol=1e-2)
    assert adapter.encoder_calls == 1


@pytest.mark.slow
def test_stable_sam_takes_mask_prompts_like_its_base():
    sam = build_adapter("sam-tiny", device="cpu")
    stable = build_adapter("stable-sam-tiny", device="cpu")  # a fresh plug-in reproduces its base
    assert stable.mask_prompts
    image = synthetic_image(H, W, seed=22)
    a, b = sam.encode(image, "sam"), stable.encode(image, "sam")
    first = sam.predict(a, STEP1[:1], "single", return_logits=True).low_res_logits
    pa = sam.predict(a, STEP2[:1], "single", mask_inputs=[first[0]], return_logits=True)
    pb = stable.predict(b, STEP2[:1], "single", mask_inputs=[first[0]], return_logits=True)
    assert mask_iou(pa.masks[0], pb.masks[0]) >= 0.999
    np.testing.assert_allclose(pa.low_res_logits, pb.low_res_logits, atol=1e-4)


def test_baselines_declare_no_mask_prompts():
    assert not build_adapter("grabcut").mask_prompts and not build_adapter("box-fill").mask_prompts
