"""SAM 2.1 adapter against Meta's official ``SAM2ImagePredictor``, prompt by prompt.

A random-init Hiera-T (``build_sam2(config, ckpt_path=None)``) is saved as an official-format checkpoint
(``{"model": state_dict}``) and loaded through the adapter's strict checkpoint path; the reference is
``SAM2ImagePredictor`` on a model built independently by ``build_sam2(config, ckpt_path=file)``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from sambench.adapters import build_adapter
from sambench.adapters.sam2 import VARIANTS, Sam2Adapter, build_sam2_model
from sambench.types import Prompt, SambenchError

try:
    from sam_fixtures import (click_steps, device_write_matches_host, mask_iou, mixed_prompts, prompt_arrays,
                              save_tiny_checkpoint, synthetic_image, two_step_session)
except ImportError:  # tests/ imported as a package
    from tests.sam_fixtures import (click_steps, device_write_matches_host, mask_iou, mixed_prompts,
                                    prompt_arrays, save_tiny_checkpoint, synthetic_image, two_step_session)

pytestmark = pytest.mark.slow  # one Hiera-T encode is 2-6 s on 2 CPU cores

SEED = 5


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("sam2") / "tiny_sam2.1.pt"
    torch.save({"model": build_sam2_model("hiera-tiny", seed=SEED).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def predictor(ckpt, image):
    """The official predictor on an independently built model, with ``image`` set (encoded once)."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    p = SAM2ImagePredictor(build_sam2(VARIANTS["hiera-tiny"][0], ckpt_path=str(ckpt), device="cpu"))
    p.set_image(image)
    return p


@pytest.fixture(scope="module")
def adapter(ckpt):
    return build_adapter("sam2.1-hiera-tiny", device="cpu", checkpoint=str(ckpt), options={"chunk_size": 3})


@pytest.fixture(scope="module")
def image():
    return synthetic_image(96, 128, seed=21)


@pytest.fixture(scope="module")
def state(adapter, image):
    return adapter.encode(image, "sam")


def _prompts(h: int, w: int) -> list[Prompt]:
    return mixed_prompts(h, w) + [Prompt(box=(3.0, 4.0, 0.5 * w, 0.4 * h))]


def _reference(predictor, p: Prompt, multimask: bool):
    kw = {}
    if p.points:
        kw.update(point_coords=np.asarray(p.points, dtype=np.float64), point_labels=np.asarray(p.labels))
    if p.box is not None:
        kw["box"] = np.asarray(p.box, dtype=np.float64)
    masks, scores, _ = predictor.predict(multimask_output=multimask, **kw)
    i = int(np.argmax(scores))
    return masks[i] > 0, float(scores[i])


@pytest.mark.parametrize("selection", ["single", "best-of-3"])
def test_masks_equal_official_predictor_prompt_by_prompt(adapter, state, predictor, image, selection):
    prompts = _prompts(*image.shape[:2])
    pred = adapter.predict(state, prompts, selection)
    assert pred.masks.shape == (len(prompts), *image.shape[:2])
    for i, p in enumerate(prompts):
        ref, score = _reference(predictor, p, selection == "best-of-3")
        assert mask_iou(pred.masks[i], ref) >= 0.999, (selection, i)
        assert abs(pred.scores[i] - score) < 1e-4, (selection, i)
    # the prompts matter: not every mask is the same
    assert len({m.tobytes() for m in pred.masks}) > 1


def test_encode_once_and_chunking_do_not_change_masks(adapter, state, image):
    prompts = _prompts(*image.shape[:2])
    calls = adapter.encoder_calls
    whole = adapter.predict(state, prompts, "single")
    one_by_one = [adapter.predict(state, [p], "single") for p in prompts]
    assert adapter.encoder_calls == calls
    for i, r in enumerate(one_by_one):
        assert mask_iou(whole.masks[i], r.masks[0]) >= 0.999
        assert abs(whole.scores[i] - r.scores[0]) < 1e-4


def test_state_holds_embedding_and_high_res_features(state):
    assert tuple(state.embed.shape) == (1, 256, 64, 64)
    assert [tuple(f.shape) for f in state.high_res] == [(1, 32, 256, 256), (1, 64, 128, 128)]


def test_dynamic_multimask_off_is_token_zero(adapter, state, predictor, image):
    """``dynamic_multimask: false`` builds the decoder as ``build_sam2(apply_postprocessing=False)``;
    ``single`` then equals the predictor's output token 0 on such a model."""
    from sam2.build_sam import build_sam2

    off = build_sam2_model("hiera-tiny", dynamic_multimask=False)
    assert off.sam_mask_decoder.dynamic_multimask_via_stability is False
    assert (build_sam2(VARIANTS["hiera-tiny"][0], device="cpu", apply_postprocessing=False)
            .sam_mask_decoder.dynamic_multimask_via_stability) is False
    prompts = _prompts(*image.shape[:2])[:3]
    decoders = [adapter.model.sam_mask_decoder, predictor.model.sam_mask_decoder]
    try:
        for d in decoders:
            d.dynamic_multimask_via_stability = False
        pred = adapter.predict(state, prompts, "single")
        for i, p in enumerate(prompts):
            m, s = _reference(predictor, p, False)
            assert mask_iou(pred.masks[i], m) >= 0.999
            assert abs(pred.scores[i] - s) < 1e-4
    finally:
        for d in decoders:
            d.dynamic_multimask_via_stability = True


@contextlib.contextmanager
def scaled_mask_logits(decoders, k: float):
    """Every mask logit of these ``sam2`` mask decoders times ``k`` (restored after): the masks are the
    hypernetwork MLPs' outputs (linear in their last layer) times the upscaled embedding."""
    saved = [(mlp.layers[-1], mlp.layers[-1].weight.clone(), mlp.layers[-1].bias.clone())
             for d in decoders for mlp in d.output_hypernetworks_mlps]
    with torch.no_grad():
        for layer, _, _ in saved:
            layer.weight.mul_(k)
            layer.bias.mul_(k)
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, w, b in saved:
                layer.weight.copy_(w)
                layer.bias.copy_(b)


def official_sam2(predictor):
    """``SAM2ImagePredictor.predict(mask_input=...)`` of one prompt: (mask, score, low-res logits) of the kept mask."""
    def official(prompt: Prompt, mask_input, multimask: bool):
        masks, scores, low = predictor.predict(**prompt_arrays(prompt), multimask_output=multimask,
                                               mask_input=None if mask_input is None else mask_input[None])
        i = int(np.argmax(scores))
        return masks[i] > 0, float(scores[i]), low[i]
    return official


@pytest.mark.parametrize("scale", [1.0, 400.0], ids=["random", "logits-beyond-32"])
@pytest.mark.parametrize("selection", ["single", "best-of-3"])
def test_mask_prompts_equal_official_predictor(adapter, state, predictor, image, selection, scale):
    """Two interactive steps against ``SAM2ImagePredictor``. Scaled by 400, the random decoder's logits pass
    ±32: the predictor upsamples the raw logits but returns them clamped to [-32, 32], and so does the adapter."""
    assert adapter.mask_prompts
    decoders = [adapter.model.sam_mask_decoder, predictor.model.sam_mask_decoder]
    with scaled_mask_logits(decoders, scale):
        r = two_step_session(adapter, state, official_sam2(predictor), click_steps(*image.shape[:2]), selection)
    logits = np.concatenate([r["first"].low_res_logits, r["second"].low_res_logits])
    assert logits.shape[1:] == (256, 256)
    assert r["effect"] > max(1e-3 * scale, 100 * r["logits"])  # the mask prompt really changes the output
    assert (np.abs(logits).max() == 32.0) == (scale > 1)  # clamped exactly where the predictor clamps


def test_masks_can_be_written_into_a_device_tensor(adapter, state):
    device_write_matches_host(adapter, state)


def test_sam1_checkpoint_given_to_sam2_is_one_line(tmp_path):
    path = save_tiny_checkpoint(tmp_path, hq=False)
    with pytest.raises(SambenchError) as e:
        build_adapter("sam2.1-hiera-tiny", device="cpu", checkpoint=str(path))
    msg = str(e.value)
    assert "\n" not in msg and "SAM (segment_anything) checkpoint" in msg and "not SAM 2" in msg


def test_sam2_checkpoint_given_to_sam1_is_one_line(ckpt):
    with pytest.raises(SambenchError) as e:
        build_adapter("sam-tiny", device="cpu", checkpoint=str(ckpt))
    msg = str(e.value)
    assert "\n" not in msg and "is a SAM 2 checkpoint" in msg and "use sam2.1-hiera-tiny" in msg


def test_other_variant_is_refused(ckpt):
    with pytest.raises(SambenchError, match="holds SAM 2 hiera-tiny weights but model 'sam2.1-hiera-small' is hiera-small"):
        build_adapter("sam2.1-hiera-small", device="cpu", checkpoint=str(ckpt))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "cfg": Prompt(box=(0, 0, 1, 1))}, path)
    with pytest.raises(SambenchError, match="weights_only"):
        build_adapter("sam2.1-hiera-tiny", device="cpu", checkpoint=str(path))


def test_cards_name_official_files():
    from sambench.config import load_model_card

    for v, f in [("tiny", "tiny"), ("small", "small"), ("base-plus", "base_plus"), ("large", "large")]:
        c = load_model_card(f"sam2.1-hiera-{v}")
        assert c.adapter == "sam2" and c.options["variant"] == f"hiera-{v}"
        assert c.checkpoint.file == f"sam2.1_hiera_{f}.pt"
        assert c.checkpoint.url == f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{f}.pt"
    assert isinstance(build_adapter("sam2.1-hiera-tiny-random", device="cpu"), Sam2Adapter)


def test_download_covers_the_sam2_cards(tmp_path, monkeypatch):
    """``sambench download sam2.1-hiera-*`` fetches the card's official address (a local stand-in server
    here: tests never touch the network) into the checkpoint directory."""
    import http.server
    import threading

    from sambench.adapters.weights import download_checkpoint

    served = tmp_path / "served"
    served.mkdir()
    payload = b"sam2 weights stand-in" * 100
    (served / "sam2.1_hiera_tiny.pt").write_bytes(payload)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/sam2.1_hiera_tiny.pt"
        out = download_checkpoint("sam2.1-hiera-tiny", dest_dir=tmp_path / "ckpt", url=url, progress=False)
    finally:
        server.shutdown()
    assert out.name == "sam2.1_hiera_tiny.pt" and out.read_bytes() == payload
