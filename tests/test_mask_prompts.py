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
    from sam_fixtures import (mask_iou, prompt_arrays, reference_model, save_tiny_checkpoint, synthetic_image,
                              two_step_session)
except ImportError:  # tests/ imported as a package
    from tests.sam_fixtures import (mask_iou, prompt_arrays, reference_model, save_tiny_checkpoint, synthetic_image,
                                    two_step_session)

H, W = 120, 180
STEP1 = [Prompt(points=((60.0, 50.0),), labels=(1,)),
         Prompt(box=(20.0, 15.0, 130.0, 100.0), points=((60.0, 50.0),), labels=(1,))]
STEP2 = [Prompt(points=((60.0, 50.0), (140.0, 90.0)), labels=(1, 0)),
         Prompt(box=(20.0, 15.0, 130.0, 100.0), points=((60.0, 50.0), (30.0, 20.0)), labels=(1, 1))]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_ckpts_mask")
    return {"sam": save_tiny_checkpoint(d, hq=False), "hq": save_tiny_checkpoint(d, hq=True)}


def _official(predictor):
    """``SamPredictor.predict(mask_input=...)`` of one prompt: (mask, score, low-res logits) of the kept mask."""
    def official(prompt: Prompt, mask_input, multimask: bool):
        masks, scores, low = predictor.predict(**prompt_arrays(prompt), multimask_output=multimask,
                                               mask_input=None if mask_input is None else mask_input[None])
        i = int(np.argmax(scores))
        return masks[i], float(scores[i]), low[i]
    return official


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

    steps = (STEP1[:1], STEP2[:1]) if hq else (STEP1, STEP2)  # HQ's decoder is the slow one: 1 prompt
    result = two_step_session(adapter, state, _official(predictor), steps)
    assert result["first"].low_res_logits.shape == (len(steps[0]), 256, 256)
    assert all(0.01 < m.mean() < 0.99 for m in result["second"].masks)
    assert result["effect"] > 1e-2  # the mask prompt really changes the output
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
