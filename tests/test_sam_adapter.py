"""SAM / HQ-SAM adapters against the official predictors, prompt by prompt.

Tiny random models (2-block encoder, official prompt encoder + full-size decoder) are saved as state-dict
files and loaded through the adapter's checkpoint path; the references are ``segment_anything.SamPredictor``
and ``segment_anything_hq.SamPredictor`` on independently built models with the same weights.
"""

from __future__ import annotations

import dataclasses
from importlib.metadata import version

import cv2
import numpy as np
import pytest
import torch

from sambench.adapters import build_adapter
from sambench.adapters.base import MASK_SELECTIONS
from sambench.adapters.decoding import resize_square_hq, resolve_device
from sambench.adapters.sam.adapter import HQSamAdapter, SamAdapter, SamImageState
from sambench.types import Prompt, SambenchError

try:
    from sam_fixtures import (hq_resize_1024, hq_sam_reference_box, mask_iou, mixed_prompts, reference_logits,
                              reference_model, save_tiny_checkpoint, synthetic_image)
except ImportError:  # tests/ imported as a package
    from tests.sam_fixtures import (hq_resize_1024, hq_sam_reference_box, mask_iou, mixed_prompts, reference_logits,
                                    reference_model, save_tiny_checkpoint, synthetic_image)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_ckpts")
    return {"sam": save_tiny_checkpoint(d, hq=False), "hq": save_tiny_checkpoint(d, hq=True)}


@pytest.fixture(scope="module")
def sam_adapter(ckpts):
    return build_adapter("sam-tiny", device="cpu", checkpoint=str(ckpts["sam"]), options={"chunk_size": 3})


@pytest.fixture(scope="module")
def hq_adapter(ckpts):
    return build_adapter("hq-sam-tiny", device="cpu", checkpoint=str(ckpts["hq"]), options={"chunk_size": 3})


@pytest.fixture(scope="module")
def small_state(sam_adapter):
    h, w = 100, 140
    return sam_adapter.encode(synthetic_image(h, w, seed=8), "sam"), (h, w)


@pytest.fixture(scope="module")
def sam_predictor(ckpts):
    from segment_anything import SamPredictor

    return SamPredictor(reference_model(ckpts["sam"], hq=False))


@pytest.fixture(scope="module")
def hq_predictor(ckpts):
    from segment_anything_hq import SamPredictor

    return SamPredictor(reference_model(ckpts["hq"], hq=True))


def _set_reference_image(predictor, image: np.ndarray, mode: str) -> None:
    if mode == "sam":
        predictor.set_image(image)
    else:
        resized = hq_resize_1024(image)
        predictor.set_image(resized)
        assert predictor.input_size == (1024, 1024)  # the official transform left the 1024² image as it is


def _assert_matches_reference(pred, refs, size: tuple[int, int], threshold: float = 0.0) -> None:
    n = len(refs)
    assert pred.masks.dtype == np.bool_ and pred.masks.shape == (n, *size)
    assert pred.scores.shape == (n,)
    ref_masks = [logits > threshold for logits, _ in refs]
    for i, (ref_mask, (_, ref_score)) in enumerate(zip(ref_masks, refs)):
        # A random tiny decoder must still give real masks, or IoU >= 0.999 would be trivially true.
        assert 0.01 < ref_mask.mean() < 0.99, f"prompt {i}: degenerate reference mask ({ref_mask.mean():.3f})"
        assert mask_iou(pred.masks[i], ref_mask) >= 0.999, f"prompt {i}: IoU {mask_iou(pred.masks[i], ref_mask):.5f}"
        assert abs(float(pred.scores[i]) - ref_score) <= 1e-4, f"prompt {i}: score {pred.scores[i]} vs {ref_score}"
    # The prompts lead to different masks (the model is not ignoring them).
    assert min(mask_iou(ref_masks[i], ref_masks[j]) for i in range(n) for j in range(i + 1, n)) < 0.9


# Every size (H, W) and both preprocessing modes, each mode on two aspect ratios: the decoder is full size
# (0.1-0.4 CPU-s per call), so the grid is a covering set rather than the full product.
SAM_CASES = [((200, 300), "sam"), ((64, 512), "sam"), ((333, 250), "hq-sam-1024")]
# Hand-computed model-input sizes: longest side → 1024, other side int(side * 1024 / longest + 0.5).
INPUT_SIZES = {((200, 300), "sam"): (683, 1024), ((64, 512), "sam"): (128, 1024)}


@pytest.mark.slow  # 4-13 s per case on 2 cores (the full-size official decoder)
@pytest.mark.parametrize("size,mode", SAM_CASES, ids=[f"{s[0]}x{s[1]}-{m}" for s, m in SAM_CASES])
def test_sam_matches_official_predictor(sam_adapter, sam_predictor, size, mode):
    h, w = size
    image = synthetic_image(h, w, seed=h * 1000 + w)
    prompts = mixed_prompts(h, w)  # every form, mixed in one predict() call
    state = sam_adapter.encode(image, mode)
    assert state.input_size == INPUT_SIZES.get((size, mode), (1024, 1024))
    _set_reference_image(sam_predictor, image, mode)
    preds, refs = {}, {}
    for selection in MASK_SELECTIONS:
        preds[selection] = sam_adapter.predict(state, prompts, mask_selection=selection)
        refs[selection] = [reference_logits(sam_predictor, p, selection == "best-of-3", size, mode) for p in prompts]
        _assert_matches_reference(preds[selection], refs[selection], size)
    # best-of-3 really selects another mask than the single-output token for some prompt
    assert any(mask_iou(a, b) < 0.99 for a, b in zip(preds["single"].masks, preds["best-of-3"].masks))
    if (size, mode) == ((200, 300), "sam"):
        # option mask_threshold: logit > 0.05 instead of > 0.0
        strict = SamAdapter(sam_adapter.model, name="sam-tiny", device="cpu",
                            options=dataclasses.replace(sam_adapter.options, mask_threshold=0.05))
        pred = strict.predict(state, prompts, "single")
        _assert_matches_reference(pred, refs["single"], size, threshold=0.05)
        assert not np.any(pred.masks & ~preds["single"].masks)  # a higher threshold only removes pixels
        assert pred.masks.sum() < preds["single"].masks.sum()


# HQ-SAM's decoder is the most expensive (~0.5-1 CPU-s per call): both modes, two aspect ratios, both
# hq_token_only values, and the four prompt kinds split over the two cases (box + box/points together in
# one call, 1 point + 3 points in the other).
HQ_CASES = [((200, 300), "sam", False, (0, 2)), ((64, 512), "hq-sam-1024", True, (1, 3))]


@pytest.mark.slow  # 8-10 s per case on 2 cores
@pytest.mark.parametrize("size,mode,hq_token_only,kinds", HQ_CASES,
                         ids=[f"{s[0]}x{s[1]}-{m}-token_only={t}" for s, m, t, _ in HQ_CASES])
def test_hq_sam_matches_official_predictor(hq_adapter, hq_predictor, size, mode, hq_token_only, kinds):
    h, w = size
    image = synthetic_image(h, w, seed=h * 1000 + w + 1)
    prompts = [mixed_prompts(h, w)[k] for k in kinds]
    adapter = HQSamAdapter(hq_adapter.model, name="hq-sam-tiny", device="cpu",
                           options=dataclasses.replace(hq_adapter.options, hq_token_only=hq_token_only))
    state = adapter.encode(image, mode)
    assert state.interm is not None and state.interm[0].shape == (1, 64, 64, 32)  # tiny ViT width 32
    _set_reference_image(hq_predictor, image, mode)
    for selection in MASK_SELECTIONS:
        pred = adapter.predict(state, prompts, mask_selection=selection)
        refs = [reference_logits(hq_predictor, p, selection == "best-of-3", size, mode, hq_token_only)
                for p in prompts]
        _assert_matches_reference(pred, refs, size)


@pytest.mark.slow
def test_encoder_runs_once_per_image_however_many_prompts(ckpts):
    adapter = build_adapter("sam-tiny", device="cpu", checkpoint=str(ckpts["sam"]), options={"chunk_size": 3})
    image = synthetic_image(120, 160, seed=5)
    state = adapter.encode(image, "sam")
    prompts = mixed_prompts(120, 160)  # 4 prompts of 4 kinds, chunks of 3
    adapter.predict(state, prompts, "single")
    adapter.predict(state, prompts[:1], "best-of-3")
    assert adapter.counters() == {"encoder_calls": 1, "decoded_prompts": 5}
    adapter.encode(image[:60], "hq-sam-1024")
    assert adapter.counters() == {"encoder_calls": 2, "decoded_prompts": 5}


def test_chunking_and_order_do_not_change_results(sam_adapter, small_state):
    state, (h, w) = small_state
    base = mixed_prompts(h, w)
    prompts = [base[i] for i in (3, 0, 2, 0, 3)]  # kinds interleaved, with repeats
    one_by_one = SamAdapter(sam_adapter.model, name="sam-tiny", device="cpu",
                            options=dataclasses.replace(sam_adapter.options, chunk_size=1))
    big = SamAdapter(sam_adapter.model, name="sam-tiny", device="cpu",
                     options=dataclasses.replace(sam_adapter.options, chunk_size=64))
    a = one_by_one.predict(state, prompts, "best-of-3")  # each prompt decoded alone, in order
    b = big.predict(state, prompts, "best-of-3")  # one chunk, grouped by kind internally
    for i in range(len(prompts)):
        assert mask_iou(a.masks[i], b.masks[i]) >= 0.999
        assert abs(float(a.scores[i]) - float(b.scores[i])) <= 1e-5
    # repeated prompts land at their own positions with identical results
    assert mask_iou(b.masks[1], b.masks[3]) >= 0.999 and mask_iou(b.masks[0], b.masks[4]) >= 0.999
    assert mask_iou(b.masks[0], b.masks[1]) < 0.99  # different prompts, different masks


class _ExtrasAdapter(SamAdapter):
    """A subclass using the documented ``_decode`` hook to attach per-prompt extras."""

    def _decode(self, state, sparse, dense, multimask):
        low, iou, _ = super()._decode(state, sparse, dense, multimask)
        return low, iou, [{"sparse_tokens": int(sparse.shape[1])} for _ in range(sparse.shape[0])]


def test_subclass_extras_follow_prompt_order(sam_adapter, small_state):
    state, (h, w) = small_state
    ad = _ExtrasAdapter(sam_adapter.model, name="x", device="cpu", options=sam_adapter.options)
    prompts = mixed_prompts(h, w)
    pred = ad.predict(state, prompts, "single")
    # Sparse tokens per prompt: a box is 2 corner tokens; points without a box get one padding point.
    assert [e["sparse_tokens"] for e in pred.extras] == [2, 1 + 1, 2 + 2, 3 + 1]


def test_prompt_coordinates_are_mapped_like_the_official_transform(sam_adapter):
    def state(mode, input_size):
        return SamImageState(features=torch.zeros(1), interm=None, original_size=(200, 300), input_size=input_size,
                             preprocessing=mode)

    # sam: 300 → 1024 wide, 200 → 683 high: x * 1024/300, y * 683/200 (ResizeLongestSide.apply_coords)
    got = sam_adapter._to_model_coords(state("sam", (683, 1024)), np.array([[150.0, 100.0], [0.0, 199.0]]))
    np.testing.assert_allclose(got, [[512.0, 341.5], [0.0, 199 * 683 / 200]])
    # hq-sam-1024: x * 1024/W, y * 1024/H
    got = sam_adapter._to_model_coords(state("hq-sam-1024", (1024, 1024)), np.array([[150.0, 100.0], [0.0, 199.0]]))
    np.testing.assert_allclose(got, [[512.0, 512.0], [0.0, 199 * 1024 / 200]])


def test_hq_resize_is_a_half_pixel_bilinear_resize():
    image = synthetic_image(90, 140, seed=1)
    ours = resize_square_hq(image).astype(np.int16)
    ref = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    # OpenCV rounds its fixed-point result; HQ-SAM's float path truncates: at most 1-2 grey levels apart.
    assert ours.shape == (1024, 1024, 3)
    assert np.abs(ours - ref).max() <= 2
    assert (ref - ours).mean() > 0.2  # truncation biases down, as in HQ-SAM's .astype(np.uint8)


def test_empty_prompt_list_gives_empty_prediction(sam_adapter, small_state):
    state, (h, w) = small_state
    pred = sam_adapter.predict(state, [], "single")
    assert pred.masks.shape == (0, h, w) and pred.scores.shape == (0,)


def test_bad_inputs_are_one_line_errors(sam_adapter, small_state):
    img = np.zeros((40, 50, 3), dtype=np.uint8)
    with pytest.raises(SambenchError, match="unknown preprocessing"):
        sam_adapter.encode(img, "resize-512")
    with pytest.raises(SambenchError, match="RGB uint8"):
        sam_adapter.encode(img.astype(np.float32), "sam")
    with pytest.raises(SambenchError, match="RGB uint8"):
        sam_adapter.encode(img[..., 0], "sam")
    state, _ = small_state
    with pytest.raises(SambenchError, match="unknown mask selection"):
        sam_adapter.predict(state, [Prompt(box=(1, 1, 5, 5))], "best-of-5")
    with pytest.raises(SambenchError, match="state returned by"):
        sam_adapter.predict({"features": None}, [Prompt(box=(1, 1, 5, 5))], "single")


def test_sam_tiny_builds_without_checkpoint_reproducibly():
    a = build_adapter("sam-tiny", device="cpu")
    b = build_adapter("sam-tiny", device="cpu")
    c = build_adapter("sam-tiny", device="cpu", options={"seed": 1})
    assert a.signature()["weights_sha256"] == "random-init:0"
    assert c.signature()["weights_sha256"] == "random-init:1"
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["mask_decoder.iou_token.weight"], sc["mask_decoder.iou_token.weight"])
    hq = build_adapter("hq-sam-tiny", device="cpu")
    assert isinstance(hq, HQSamAdapter) and hq.signature()["adapter"] == "hq-sam"


def test_signature_identifies_weights_options_and_packages(sam_adapter, hq_adapter, ckpts):
    import hashlib

    sig = sam_adapter.signature()
    assert sig["model"] == "sam-tiny" and sig["adapter"] == "sam" and sig["variant"] == "tiny"
    assert sig["weights_sha256"] == hashlib.sha256(ckpts["sam"].read_bytes()).hexdigest()
    assert sig["preprocessing"] == ["sam", "hq-sam-1024"]
    assert sig["options"] == {"variant": "tiny", "mask_threshold": 0.0, "dtype": "fp32"}
    assert sig["packages"] == {"segment_anything": version("segment-anything"), "torch": torch.__version__}
    hsig = hq_adapter.signature()
    assert hsig["options"]["hq_token_only"] is False
    assert hsig["packages"]["segment_anything_hq"] == version("segment-anything-hq")


def test_option_validation():
    with pytest.raises(SambenchError, match="unknown option.*colour"):
        build_adapter("sam-tiny", device="cpu", options={"colour": "red"})
    with pytest.raises(SambenchError, match="hq_token_only' only applies to HQ-SAM"):
        build_adapter("sam-tiny", device="cpu", options={"hq_token_only": True})
    with pytest.raises(SambenchError, match="chunk_size"):
        build_adapter("sam-tiny", device="cpu", options={"chunk_size": 0})
    with pytest.raises(SambenchError, match="variant"):
        build_adapter("sam-tiny", device="cpu", options={"variant": "vit_xl"})
    with pytest.raises(SambenchError, match="needs a CUDA device"):
        build_adapter("sam-tiny", device="cpu", options={"dtype": "fp16"})
    with pytest.raises(SambenchError, match="takes no plug-in"):
        build_adapter("sam-tiny", device="cpu", plugin="x.pt")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    if not torch.cuda.is_available():
        assert auto.type in ("cpu", "mps")
        with pytest.raises(SambenchError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(SambenchError, match="unknown device|unsupported device"):
        resolve_device("tpu")


def test_state_is_a_plain_dataclass(small_state):
    state, (h, w) = small_state
    assert isinstance(state, SamImageState)
    assert state.original_size == (h, w) and state.features.shape == (1, 256, 64, 64) and state.interm is None


@pytest.mark.slow
def test_paper_eval_is_hq_sams_own_evaluation_path(ckpts):
    """``paper_eval`` (card hq-sam-eval): hq-sam-1024 whatever the protocol asks, HQ token only, and the
    256² logits upsampled to H×W in one step — checked against HQ-SAM's evaluation written out with the
    official predictor: ``set_image`` on the 1024² resize, ``predict(return_logits)`` low-res output, one
    ``F.interpolate`` to the label size."""
    from segment_anything_hq import SamPredictor

    import torch.nn.functional as F

    ad = build_adapter("hq-sam-tiny", device="cpu", checkpoint=str(ckpts["hq"]),
                       options={"paper_eval": True, "hq_token_only": True})
    assert ad.signature()["options"]["paper_eval"] is True
    assert "paper_eval" not in build_adapter("hq-sam-tiny", device="cpu").signature()["options"]
    h, w = 90, 150
    image = synthetic_image(h, w, seed=13)
    state = ad.encode(image, "sam")  # the protocol's mode is overridden
    assert state.preprocessing == "hq-sam-1024" and state.input_size == (1024, 1024)
    pred = ad.predict(state, mixed_prompts(h, w), "single")
    ref = SamPredictor(reference_model(ckpts["hq"], hq=True))
    ref.set_image(hq_resize_1024(image))
    for i, p in enumerate(mixed_prompts(h, w)):
        kw = {}
        if p.points:
            kw.update(point_coords=np.asarray(p.points) * [1024 / w, 1024 / h], point_labels=np.asarray(p.labels))
        if p.box is not None:
            kw["box"] = np.asarray(p.box) * [1024 / w, 1024 / h, 1024 / w, 1024 / h]
        _, scores, low = ref.predict(**kw, multimask_output=False, hq_token_only=True)
        up = F.interpolate(torch.from_numpy(low)[None].float(), (h, w), mode="bilinear", align_corners=False)[0, 0]
        assert mask_iou(pred.masks[i], (up > 0).numpy()) >= 0.999
        assert abs(pred.scores[i] - float(scores[0])) < 1e-4
    card = __import__("sambench.config", fromlist=["load_model_card"]).load_model_card("hq-sam-eval")
    assert card.options["paper_eval"] is True and card.options["hq_token_only"] is True
    assert card.checkpoint.file == "sam_hq_vit_l.pth"


@pytest.mark.slow
def test_hq_sam_eval_on_hq_sam_paper_is_hq_sams_evaluate_end_to_end(ckpts):
    """Model ``hq-sam-eval``'s options with protocol ``hq-sam-paper`` against HQ-SAM's ``evaluate`` written
    out: the box = ``masks_to_boxes`` of the label resized to 1024² (in that frame, unscaled), the official
    predictor on the 1024² image, HQ token only, 256² logits upsampled to the label in one step, IoU with
    label > 128. The label-frame box (protocol ``gt-box``) gives measurably different logits, so the
    comparison can tell the two frames apart."""
    from segment_anything_hq import SamPredictor

    import torch.nn.functional as F

    from sambench.config import load_protocol_card
    from sambench.metrics import iou
    from sambench.inputs.prompts import Protocol
    from sambench.types import Object

    h, w = 90, 150
    image = synthetic_image(h, w, seed=13)
    yy, xx = np.mgrid[:h, :w]
    label = ((yy - 40) / 25.0) ** 2 + ((xx - 70) / 40.0) ** 2 <= 1.0
    obj = Object(id="ellipse", mask=label)
    ad = build_adapter("hq-sam-tiny", device="cpu", checkpoint=str(ckpts["hq"]),
                       options={"paper_eval": True, "hq_token_only": True})
    paper, plain = load_protocol_card("hq-sam-paper"), load_protocol_card("gt-box")
    state = ad.encode(image, paper.preprocessing)
    prompt = Protocol(paper).prompt(paper.settings[0], 0, "synthetic", "img", obj)
    pred = ad.predict(state, [prompt], paper.mask_selection, return_logits=True)

    ref = SamPredictor(reference_model(ckpts["hq"], hq=True))
    ref.set_image(hq_resize_1024(image))
    _, scores, low = ref.predict(box=hq_sam_reference_box(label), multimask_output=False, hq_token_only=True)
    up = F.interpolate(torch.from_numpy(low)[None].float(), (h, w), mode="bilinear", align_corners=False)[0, 0]
    hq_mask = (up > 0).numpy()
    assert 0.01 < hq_mask.mean() < 0.99
    np.testing.assert_allclose(pred.low_res_logits[0], low[0], atol=1e-3)  # prompts keep 1e-4 px of the box
    assert mask_iou(pred.masks[0], hq_mask) >= 0.999 and abs(pred.scores[0] - float(scores[0])) < 1e-4
    assert abs(iou(pred.masks[0], label) - iou(hq_mask, label)) < 1e-3

    label_frame = Protocol(plain).prompt(plain.settings[0], 0, "synthetic", "img", obj)
    other = ad.predict(state, [label_frame], paper.mask_selection, return_logits=True)
    assert np.abs(other.low_res_logits[0] - low[0]).max() > 1e-2
