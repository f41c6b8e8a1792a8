"""transformers backend against the library's own processor + model path, prompt by prompt.

For every SAM-family class the installed transformers ships, a small random-init model is saved with
``save_pretrained`` and loaded through sambench (``hf:<dir>``); the reference is ``processor(images=...,
input_points=..., input_boxes=...)`` + ``model(**inputs)`` + ``processor.post_process_masks`` on the
model as built, one prompt at a time. Nothing touches the hub (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sambench.adapters import build_adapter
from sambench.adapters.hf import FAMILIES, HfSamAdapter
from sambench.config import load_model_card
from sambench.types import Prompt, SambenchError

try:
    from hf_fixtures import FAMILY_NAMES, save_small_model, small_model
    from sam_fixtures import (click_steps, device_write_matches_host, mask_iou, mixed_prompts, synthetic_image,
                              two_step_session)
except ImportError:  # tests/ imported as a package
    from tests.hf_fixtures import FAMILY_NAMES, save_small_model, small_model
    from tests.sam_fixtures import (click_steps, device_write_matches_host, mask_iou, mixed_prompts, synthetic_image,
                                    two_step_session)


@pytest.fixture(scope="module", autouse=True)
def _offline(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))  # an empty hub cache
        yield


@pytest.fixture(scope="module")
def image():
    return synthetic_image(90, 120, seed=31)


class LibraryPath:
    """The library's documented route, one prompt at a time: ``processor(images=image, input_points=...,
    input_boxes=...)``, then ``model(**inputs)`` — with ``pixel_values`` replaced by the embeddings of
    ``model.get_image_embeddings(pixel_values)`` (transformers' own "compute the embeddings once" recipe;
    :meth:`full` checks it equals the plain ``pixel_values`` path) — and ``processor.post_process_masks``."""

    def __init__(self, model, processor, image):
        self.model, self.processor, self.image = model, processor, image
        with torch.no_grad():
            emb = model.get_image_embeddings(processor(images=image, return_tensors="pt")["pixel_values"])
        self.embedding_kwargs = ({"image_embeddings": emb[0], "intermediate_embeddings": emb[1]}
                                 if isinstance(emb, tuple) else {"image_embeddings": emb})

    def _inputs(self, p: Prompt):
        kw = {}
        if p.points:
            kw["input_points"] = [[[list(map(float, xy)) for xy in p.points]]]
            kw["input_labels"] = [[list(map(int, p.labels))]]
        if p.box is not None:
            kw["input_boxes"] = [[list(map(float, p.box))]]
        return self.processor(images=self.image, return_tensors="pt", **kw)

    def __call__(self, p: Prompt, multimask: bool, full: bool = False, mask_input=None, **extra):
        """(mask, score, low-res logits) of the kept mask; ``mask_input``: a low-res logit map given to the
        model as ``input_masks`` (1, 1, h, w) — the processor has no mask-prompt input."""
        inputs = self._inputs(p)
        names = ("input_points", "input_labels", "input_boxes") + (("pixel_values",) if full else ())
        feed = {k: v for k, v in inputs.items() if k in names}
        if not full:
            feed.update(self.embedding_kwargs)
        if mask_input is not None:
            feed["input_masks"] = torch.as_tensor(mask_input, dtype=torch.float32)[None, None]
        with torch.no_grad():
            out = self.model(**feed, multimask_output=multimask, **extra)
        post = {"reshaped_input_sizes": inputs["reshaped_input_sizes"]} if "reshaped_input_sizes" in inputs else {}
        masks = self.processor.post_process_masks(out.pred_masks, inputs["original_sizes"], **post)[0][0]
        scores = out.iou_scores[0, 0]
        j = int(torch.argmax(scores))
        return masks[j].numpy().astype(bool), float(scores[j]), out.pred_masks[0, 0, j].numpy()


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def built(request, image, tmp_path_factory):
    """(family, adapter loaded through ``hf:<dir>``, the library path on the same weights built independently,
    the adapter's state of ``image``): one model and one encode per family for the tests below."""
    family = request.param
    directory = save_small_model(tmp_path_factory.mktemp(family), family, seed=3)
    ad = build_adapter(f"hf:{directory}", device="cpu", options={"source": str(directory), "chunk_size": 3})
    model, processor = small_model(family, seed=3)
    return family, ad, LibraryPath(model, processor, image), ad.encode(image)


@pytest.mark.slow
def test_masks_equal_library_path_prompt_by_prompt(built, image):
    family, ad, reference, state = built
    assert isinstance(ad, HfSamAdapter) and ad.kind == FAMILIES[family].kind
    assert ad.encoder_calls == 1
    prompts = mixed_prompts(*image.shape[:2])
    variants = [("single", {}), ("best-of-3", {})]
    if family == "sam_hq":
        variants.append(("single", {"hq_token_only": True}))
    options = ad.options
    try:
        for selection, extra in variants:
            ad.options = type(options)(**{**options.__dict__, **extra})
            pred = ad.predict(state, prompts, selection)
            for i, p in enumerate(prompts):
                ref, score, _ = reference(p, selection == "best-of-3", **extra)
                assert mask_iou(pred.masks[i], ref) >= 0.999, (family, selection, extra, i)
                assert abs(pred.scores[i] - score) < 1e-4, (family, selection, extra, i)
    finally:
        ad.options = options
    assert ad.encoder_calls == 1
    # the embeddings route of the reference is the plain pixel_values route
    for p in prompts[:1]:
        a, sa, _ = reference(p, False)
        b, sb, _ = reference(p, False, full=True)
        assert mask_iou(a, b) >= 0.999 and abs(sa - sb) < 1e-4


@pytest.mark.slow
def test_mask_prompts_equal_library_path(built, image):
    """Two interactive steps against the library's ``model(..., input_masks=...)``, one prompt per call; the
    logits fed back are the library's own ``pred_masks`` (unclamped), in its low-res frame (4× the embedding:
    256², SAM 3 tracker 288²)."""
    family, ad, reference, state = built
    assert ad.mask_prompts
    first, second = click_steps(*image.shape[:2])

    def official(p, mask_input, multimask):
        return reference(p, multimask, mask_input=mask_input)

    for selection in ("single", "best-of-3"):
        r = two_step_session(ad, state, official, (first, second), selection)
        assert r["effect"] > max(1e-4, 100 * r["logits"]), (family, selection, r["effect"])  # the mask prompt acts
    side = 4 * (ad.model.config.prompt_encoder_config.image_size // ad.model.config.prompt_encoder_config.patch_size)
    assert r["first"].low_res_logits.shape[1:] == (side, side)
    device_write_matches_host(ad, state, side)  # masks_on_device's write path (CUDA runs)


@pytest.mark.slow
def test_every_sam_family_class_of_transformers_has_a_kind():
    import transformers

    for model_type, fam in FAMILIES.items():
        assert hasattr(transformers, fam.model_class) and hasattr(transformers, fam.processor_class), model_type
    kinds = {f.kind for f in FAMILIES.values()}
    assert kinds == {"hf-sam", "hf-sam-hq", "hf-sam2", "hf-sam3-tracker", "hf-edgetam"}


@pytest.mark.slow
def test_hf_name_needs_no_card_and_never_downloads():
    card = load_model_card("hf:facebook/sam-vit-base")
    assert card.adapter == "hf" and card.options == {"source": "facebook/sam-vit-base"}
    with pytest.raises(SambenchError) as e:
        build_adapter("hf:facebook/sam-vit-base", device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "not in the Hugging Face hub cache" in msg and "huggingface-cli download facebook/sam-vit-base" in msg


def test_cards_for_official_hub_ids():
    for name, kind, source in [("hf-sam-vit-huge", "hf-sam", "facebook/sam-vit-huge"),
                               ("hf-sam-hq-vit-large", "hf-sam-hq", "syscv-community/sam-hq-vit-large"),
                               ("hf-sam2.1-hiera-large", "hf-sam2", "facebook/sam2.1-hiera-large"),
                               ("hf-sam3-tracker", "hf-sam3-tracker", "facebook/sam3"),
                               ("hf-edgetam", "hf-edgetam", "yonigozlan/EdgeTAM-hf")]:
        c = load_model_card(name)
        assert (c.adapter, c.options["source"]) == (kind, source)


@pytest.mark.slow  # over 0.8 s on idle cores (a subprocess or a model build)
def test_card_kind_must_match_the_checkpoint(tmp_path):
    directory = save_small_model(tmp_path / "sam", "sam")
    with pytest.raises(SambenchError, match="holds a 'sam' model .SamModel., but model 'hf-sam2.1-hiera-tiny' is adapter 'hf-sam2'"):
        build_adapter("hf-sam2.1-hiera-tiny", device="cpu", checkpoint=str(directory))
    with pytest.raises(SambenchError, match="not a transformers model directory"):
        build_adapter(f"hf:{tmp_path / 'nothing'}", device="cpu")


@pytest.mark.slow
def test_cross_backend_same_sam_weights_through_segment_anything_and_transformers(image, tmp_path):
    """The same random SAM weights (2-block ViT, full decoder) through Meta's ``SamPredictor`` and through
    sambench's transformers backend (``SamModel`` with transformers' conversion renames): the image
    preprocessing agrees to 1e-6, the embeddings to 1e-4, the masks to IoU >= 0.999, scores to 1e-4."""
    import transformers as T
    from segment_anything import SamPredictor

    from sambench.adapters.sam.nets import build_sam_model

    try:
        from hf_fixtures import sam1_to_transformers
        from sam_fixtures import prompt_arrays
    except ImportError:
        from tests.hf_fixtures import sam1_to_transformers
        from tests.sam_fixtures import prompt_arrays

    sa = build_sam_model("tiny", seed=7)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1], mlp_dim=128)
    hf = T.SamModel(T.SamConfig(vision_config=vision)).eval()
    hf.load_state_dict(sam1_to_transformers(sa.state_dict()), strict=True)
    hf.save_pretrained(tmp_path)
    T.SamProcessor(T.SamImageProcessor()).save_pretrained(tmp_path)
    ad = build_adapter(f"hf:{tmp_path}", device="cpu")
    predictor = SamPredictor(sa)
    predictor.set_image(image)
    state = ad.encode(image)
    assert float((state.embeddings - predictor.features).abs().max()) < 1e-4
    prompts = mixed_prompts(*image.shape[:2])
    for selection in ("single", "best-of-3"):
        pred = ad.predict(state, prompts, selection)
        for i, p in enumerate(prompts):
            masks, scores, _ = predictor.predict(**prompt_arrays(p), multimask_output=selection == "best-of-3")
            j = int(np.argmax(scores))
            assert mask_iou(pred.masks[i], masks[j]) >= 0.999, (selection, i)
            assert abs(pred.scores[i] - scores[j]) < 1e-4, (selection, i)


def test_download_points_transformers_cards_to_the_hub_client():
    from sambench.adapters.weights import download_checkpoint

    with pytest.raises(SambenchError, match="huggingface-cli download facebook/sam2.1-hiera-large"):
        download_checkpoint("hf-sam2.1-hiera-large")
