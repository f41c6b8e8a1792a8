"""Stable-SAM's plug-in on SAM 2.1 (official ``sam2`` package, random-init Hiera-T): a fresh plug-in
reproduces the base, a perturbed one acts, introspection works, training lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sambench.adapters import build_adapter
from sambench.adapters.stable_sam.adapter import StableSam2Adapter
from sambench.adapters.stable_sam.base import load_base, resolve_base_card
from sambench.training.decode import decode_logits, encode_images
from sambench.adapters.stable_sam.inject import inject_plugin
from sambench.adapters.stable_sam.modules import StableSamPlugin
from sambench.training.data import TrainConfig, build_item
from sambench.training.train import bce_dice_loss, train_stable_sam
from sambench.types import Prompt, keyed_rng

try:
    from sam_fixtures import click_steps, mask_iou, mixed_prompts, synthetic_image
except ImportError:  # tests/ imported as a package
    from tests.sam_fixtures import click_steps, mask_iou, mixed_prompts, synthetic_image

pytestmark = pytest.mark.slow  # Hiera-T encodes take seconds on 2 CPU cores


@pytest.fixture(scope="module")
def stable():
    return build_adapter("stable-sam2.1-hiera-tiny-random", device="cpu", options={"introspect": True, "top_k": 16})


@pytest.fixture(scope="module")
def image():
    return synthetic_image(96, 128, seed=41)


@pytest.fixture(scope="module")
def state(stable, image):
    return stable.encode(image)


def test_fresh_plugin_reproduces_the_base_and_a_perturbed_one_acts(stable, state, image):
    assert isinstance(stable, StableSam2Adapter) and stable.injection.token_offset == 1
    stable.set_introspection(False)
    prompts = mixed_prompts(*image.shape[:2])
    for selection in ("single", "best-of-3"):
        on = stable.predict(state, prompts, selection)
        stable.injection.enabled = False
        try:
            off = stable.predict(state, prompts, selection)
        finally:
            stable.injection.enabled = True
        assert np.array_equal(on.masks, off.masks) and np.allclose(on.scores, off.scores, atol=1e-5)
    with torch.no_grad():
        stable.plugin.dsp.offset_out.bias.copy_(torch.tensor([0.5, -0.3]))
        stable.plugin.drp.fc2.bias.copy_(torch.tensor([2.0, -2.0]))
    try:
        moved = stable.predict(state, prompts, "best-of-3")
    finally:
        stable.plugin.dsp.reset_to_identity()
        with torch.no_grad():
            stable.plugin.drp.fc2.bias.zero_()
    assert not np.allclose(moved.scores, on.scores, atol=1e-5)
    stable.set_introspection(True)


def test_base_equals_the_plain_sam2_adapter(stable, state, image):
    """The Stable-SAM 2 adapter with the plug-in off is the SAM 2.1 adapter, which test_sam2_adapter.py
    proves equal to SAM2ImagePredictor."""
    base = build_adapter("sam2.1-hiera-tiny-random", device="cpu")
    prompts = mixed_prompts(*image.shape[:2])[:2]
    a = base.predict(base.encode(image), prompts, "single")
    b = stable.predict(state, prompts, "single")
    for i in range(len(prompts)):
        assert mask_iou(a.masks[i], b.masks[i]) >= 0.999 and abs(a.scores[i] - b.scores[i]) < 1e-4


def test_fresh_plugin_takes_mask_prompts_like_its_base(stable, state, image):
    """Mask prompts go through the inherited SAM 2.1 path (test_sam2_adapter.py proves it equal to
    SAM2ImagePredictor): with a fresh plug-in the logits equal those with the plug-in off."""
    assert stable.mask_prompts
    stable.set_introspection(False)
    first, second = click_steps(*image.shape[:2])
    try:
        fed = list(stable.predict(state, first, "single", return_logits=True).low_res_logits)
        on = stable.predict(state, second, "single", mask_inputs=fed, return_logits=True)
        stable.injection.enabled = False
        try:
            off = stable.predict(state, second, "single", mask_inputs=fed, return_logits=True)
            plain = stable.predict(state, second, "single", return_logits=True)
        finally:
            stable.injection.enabled = True
    finally:
        stable.set_introspection(True)
    assert np.array_equal(on.masks, off.masks) and np.allclose(on.scores, off.scores, atol=1e-5)
    np.testing.assert_allclose(on.low_res_logits, off.low_res_logits, atol=1e-5)
    assert not np.allclose(on.low_res_logits, plain.low_res_logits, atol=1e-3)  # the mask prompt acts


def test_introspection_reports_sam2_tokens_and_stretched_frame(stable, state, image):
    h, w = image.shape[:2]
    for selection, tokens in (("single", [["mask0"]]), ("best-of-3", [["mask1"], ["mask2"], ["mask3"]])):
        p = stable.predict(state, [Prompt(box=(10.0, 12.0, 90.0, 70.0))], selection)
        s = p.extras[0]["stable_sam"]
        assert s["alphas"] == [0.5, 0.5] and s["mean_offset_px"] == 0.0
        assert s["tokens"] in tokens
        rows = np.asarray(s["top"])
        assert len(rows) == 16 and s["attn_outside"] == 0.0  # SAM 2 stretches the image: no padded tokens
        assert rows[:, 0].max() <= w and rows[:, 1].max() <= h


def test_training_on_sam2_lowers_the_loss(tmp_path):
    from sambench.datasets import open_dataset

    card, _ = resolve_base_card("sam2.1-hiera-tiny-random")
    base = load_base(card, None, card.options, where="test")
    ds = open_dataset("grabcut-sample")

    class One:  # one image: a few steps in seconds
        name = "gc1"

        def ids(self):
            return ds.ids()[:1]

        def load(self, i):
            return ds.load(i)

    cache: dict = {}
    item = build_item(One(), One().ids()[0], keyed_rng("eval", 0), TrainConfig(augment=False))
    x = torch.from_numpy(item.image).permute(2, 0, 1)[None].float()
    emb, high = encode_images(base.model, x)
    assert [tuple(t.shape) for t in high] == [(1, 32, 256, 256), (1, 64, 128, 128)]

    def loss_with(plugin):
        inj = inject_plugin(base.model, plugin)
        try:
            with torch.no_grad():
                boxes = torch.as_tensor(np.stack([b for b in item.boxes if b is not None] or [np.array([50, 50, 400, 300], np.float32)]))
                low, _ = decode_logits(base.model, emb, high, boxes=boxes)
                tgt = torch.from_numpy(item.targets[:len(boxes)])
                bce, dice = bce_dice_loss(low[:, 0], tgt)
            return float((bce + dice).mean())
        finally:
            inj.remove()

    before = loss_with(StableSamPlugin())
    res = train_stable_sam("sam2.1-hiera-tiny-random", None, [One()], epochs=20, out=tmp_path / "p.pt", device="cpu",
                           batch_size=1, lr=3e-3, max_steps=8, augment=False, progress=False, embedding_cache=cache,
                           base=base, prompt_kinds=("gt-box",))
    from sambench.adapters.stable_sam.plugin_io import load_plugin_file

    loaded = load_plugin_file(res.plugin_path)
    assert loaded.base.variant == "hiera-tiny" and loaded.base.weights_id == "random-init:0"
    after = loss_with(loaded.plugin)
    assert res.steps == 8 and after < before, (before, after)
    ad = build_adapter("stable-sam2.1-hiera-tiny-random", device="cpu", plugin=str(res.plugin_path))
    assert ad.signature()["plugin_id"] == loaded.sha256
