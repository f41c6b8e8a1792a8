"""Video adapters against the libraries' own video paths, frame by frame, and the encode-once rule.

* sam2: sambench's ``sam2-video`` adapter vs Meta's ``SAM2VideoPredictor`` (``init_state`` on a JPEG folder,
  ``add_new_points_or_box`` / ``add_new_mask``, ``propagate_in_video``), on a random-init Hiera-T built
  twice from the package config (the reference independently, weights copied) at image_size 128 to stay fast;
* transformers: ``Sam2VideoModel``, ``Sam3TrackerVideoModel``, ``EdgeTamVideoModel`` (small random configs)
  vs the documented session path (``init_video_session(video=...)``, ``add_inputs_to_inference_session``,
  ``model(session, frame_idx)``, ``propagate_in_video_iterator``, ``post_process_masks``);
* a fresh Stable-SAM 2.1 plug-in in the video predictor's decoder reproduces its base;
* encoder calls = frames × models, whatever the number of propagations.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from sambench.adapters.video import ListFrames, build_video_adapter, is_video_model
from sambench.config import load_model_card
from sambench.types import Prompt, SambenchError

try:
    from sam_fixtures import mask_iou
except ImportError:  # tests/ imported as a package
    from tests.sam_fixtures import mask_iou

SIZE = 128  # model input side for the sam2 tests (the package default is 1024; 128 works and is fastest)
N_FRAMES, H, W = 4, 72, 96
BOX = (28.0, 18.0, 70.0, 52.0)
POINTS = Prompt(points=((45.0, 30.0), (10.0, 60.0)), labels=(1, 0))


def _frame(t: int, rng) -> np.ndarray:
    im = rng.integers(0, 70, (H, W, 3), dtype=np.uint8)
    im[20 + 2 * t:50 + 2 * t, 30 + 3 * t:66 + 3 * t] = (200, 180, 60)
    return im


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """(JPEG folder the official predictor reads, the same frames decoded: what sambench is handed)."""
    d = tmp_path_factory.mktemp("video")
    rng = np.random.default_rng(7)
    for t in range(N_FRAMES):
        Image.fromarray(_frame(t, rng)).save(d / f"{t:05d}.jpg")
    frames = [np.array(Image.open(d / f"{t:05d}.jpg").convert("RGB")) for t in range(N_FRAMES)]
    return d, frames


def _gt_mask() -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[20:50, 30:66] = True
    return m


# ------------------------------------------------------------------------------------------------ sam2


@pytest.fixture(scope="module")
def sam2_pair():
    """(sambench's predictor, the official one) with equal random weights, image_size SIZE."""
    from sam2.build_sam import build_sam2_video_predictor

    from sambench.adapters.sam2 import VARIANTS
    from sambench.adapters.video.sam2_video import build_video_predictor

    ov = [f"++model.image_size={SIZE}"]
    ours = build_video_predictor("hiera-tiny", overrides=ov, seed=11)
    with torch.random.fork_rng(devices=[]):
        ref = build_sam2_video_predictor(VARIANTS["hiera-tiny"][0], ckpt_path=None, device="cpu", hydra_overrides_extra=ov)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours, ref.eval()


def _sam2_adapter(predictor, name="sam2-video-test"):
    from sambench.adapters.sam2 import parse_sam2_options
    from sambench.adapters.video.sam2_video import Sam2VideoAdapter

    return Sam2VideoAdapter(predictor, name=name, options=parse_sam2_options({"variant": "hiera-tiny"}, "test"),
                            device="cpu", weights_id="random-init:11")


def _official_sam2(ref, folder, t0, prompt=None, mask=None, direction="forward"):
    """The official calls, as the sam2 video notebook makes them; (t, mask) in yield order."""
    st = ref.init_state(str(folder))
    if mask is not None:
        ref.add_new_mask(st, frame_idx=t0, obj_id=1, mask=mask)
    else:
        kw = {}
        if prompt.points:
            kw = {"points": np.array(prompt.points, np.float32), "labels": np.array(prompt.labels, np.int32)}
        if prompt.box is not None:
            kw["box"] = np.array(prompt.box, np.float32)
        ref.add_new_points_or_box(st, frame_idx=t0, obj_id=1, **kw)
    out = [(t, (m[0, 0] > 0.0).numpy()) for t, _, m in ref.propagate_in_video(st, start_frame_idx=t0)]
    if direction == "both":
        out += [(t, (m[0, 0] > 0.0).numpy()) for t, _, m in ref.propagate_in_video(st, start_frame_idx=t0, reverse=True)
                if t != t0]
    return out


def _assert_same_frames(ours, ref):
    assert [t for t, *_ in ours] == [t for t, _ in ref]
    for (t, a, *_), (_, b) in zip(ours, ref):
        assert a.shape == b.shape == (H, W)
        assert mask_iou(a, b) >= 0.999, f"frame {t}: IoU {mask_iou(a, b):.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["box", "points", "mask"])
def test_sam2_video_adapter_equals_official_video_predictor(sam2_pair, video, kind):
    ours, ref = sam2_pair
    folder, frames = video
    adapter = _sam2_adapter(ours)
    session = adapter.open(ListFrames(frames))
    prompt = {"box": Prompt(box=BOX), "points": POINTS, "mask": None}[kind]
    mask = _gt_mask() if kind == "mask" else None
    got = list(adapter.propagate(session, 0, prompt=prompt, mask=mask))
    _assert_same_frames(got, _official_sam2(ref, folder, 0, prompt=prompt, mask=mask))
    assert any(m.any() for _, m, _ in got)  # not a trivially empty comparison
    assert all(s is not None and 0.0 <= s <= 1.0 for *_, s in got)


@pytest.mark.slow
def test_sam2_video_both_directions_equals_official_forward_then_reverse(sam2_pair, video):
    ours, ref = sam2_pair
    folder, frames = video
    adapter = _sam2_adapter(ours)
    session = adapter.open(ListFrames(frames))
    adapter.propagate(session, 0, prompt=Prompt(box=BOX))  # a generator never run: no state left behind
    list(adapter.propagate(session, 2, prompt=POINTS))       # an earlier propagation must not leak into the next
    got = list(adapter.propagate(session, 2, prompt=Prompt(box=BOX), direction="both"))
    assert [t for t, *_ in got] == [2, 3, 1, 0]
    _assert_same_frames(got, _official_sam2(ref, folder, 2, prompt=Prompt(box=BOX), direction="both"))


@pytest.mark.slow
def test_a_sam2_propagation_writes_nothing_to_stderr_and_leaves_the_librarys_bar_alone(sam2_pair, video, capfd):
    """sam2's propagate_in_video draws a tqdm bar on stderr per call; ours are silent (forward, both ways, and a
    reverse pass from frame 0, whose bar is empty), while the library's own call in the same process keeps its bar."""
    import sam2.sam2_video_predictor as official

    ours, ref = sam2_pair
    folder, frames = video
    before = official.tqdm
    adapter = _sam2_adapter(ours)
    session = adapter.open(ListFrames(frames))
    capfd.readouterr()
    got = list(adapter.propagate(session, 2, prompt=Prompt(box=BOX), direction="both"))
    got += list(adapter.propagate(session, 0, mask=_gt_mask(), direction="both"))
    stopped = adapter.propagate(session, 1, prompt=POINTS)
    next(stopped)  # a propagation stopped after the prompt frame (video-clicks does that)
    stopped.close()
    out, err = capfd.readouterr()
    assert [t for t, *_ in got] == [2, 3, 1, 0, 0, 1, 2, 3]
    assert (out, err) == ("", "")
    assert official.tqdm is before
    st = ref.init_state(str(folder))
    ref.add_new_points_or_box(st, frame_idx=0, obj_id=1, box=np.array(BOX, np.float32))
    capfd.readouterr()
    list(ref.propagate_in_video(st))
    assert "propagate in video" in capfd.readouterr().err


def test_quiet_progress_restores_the_modules_tqdm_when_the_body_raises():
    import sys
    import tqdm as tqdm_module
    from sambench.adapters.video.sam2_video import quiet_progress

    def library_function():  # stands for sam2's method: its globals are this test module's
        return tqdm([1, 2], desc="bar")

    namespace = library_function.__globals__
    namespace["tqdm"] = tqdm_module.tqdm
    try:
        with pytest.raises(RuntimeError), quiet_progress(library_function):
            assert library_function().disable is True
            raise RuntimeError("boom")
        assert namespace["tqdm"] is tqdm_module.tqdm
        assert library_function().disable is False
    finally:
        del namespace["tqdm"]
    assert "tqdm" not in sys.modules[__name__].__dict__


@pytest.mark.slow
def test_encoder_calls_are_frames_times_models_not_propagations(sam2_pair, stable_pair, video):
    """3 propagations over 4 frames encode 4 frames; two models (SAM 2.1 and Stable-SAM 2.1) encode 8. The
    official predictor, for contrast, re-encodes on a second propagation (its cache keeps one frame)."""
    ours, ref = sam2_pair
    folder, frames = video
    a = _sam2_adapter(ours)
    s = a.open(ListFrames(frames))
    for t0, p in [(0, Prompt(box=BOX)), (0, POINTS), (2, Prompt(box=BOX))]:
        list(a.propagate(s, t0, prompt=p, direction="both" if t0 else "forward"))
    assert a.counters() == {"encoder_calls": N_FRAMES, "propagations": 3}

    b = _sam2_adapter(stable_pair[0], name="stable-test")
    sb = b.open(ListFrames(frames))
    list(b.propagate(sb, 0, mask=_gt_mask()))
    list(b.propagate(sb, 1, prompt=Prompt(box=BOX)))
    assert a.encoder_calls + b.encoder_calls == N_FRAMES * 2

    calls = []
    hook = ref.image_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        st = ref.init_state(str(folder))
        for _ in range(2):
            ref.reset_state(st)
            ref.add_new_points_or_box(st, frame_idx=0, obj_id=1, box=np.array(BOX, np.float32))
            list(ref.propagate_in_video(st))
    finally:
        hook.remove()
    assert sum(calls) > N_FRAMES  # what encode-once avoids


@pytest.fixture(scope="module")
def stable_pair(sam2_pair):
    """(a predictor with the same weights and a fresh Stable-SAM plug-in injected, the injection handle)."""
    from sambench.adapters.stable_sam.inject import inject_plugin
    from sambench.adapters.stable_sam.modules import StableSamPlugin
    from sambench.adapters.video.sam2_video import build_video_predictor

    pred = build_video_predictor("hiera-tiny", overrides=[f"++model.image_size={SIZE}"], seed=11)
    pred.load_state_dict(sam2_pair[0].state_dict())
    return pred, inject_plugin(pred, StableSamPlugin(seed=3))


@pytest.mark.slow
def test_fresh_stable_sam2_plugin_equals_its_base_in_video(sam2_pair, stable_pair, video):
    _, frames = video
    pred, injection = stable_pair
    injection.capture, injection.last = True, None
    stable, base = _sam2_adapter(pred, "stable"), _sam2_adapter(sam2_pair[0], "base")
    got = list(stable.propagate(stable.open(ListFrames(frames)), 1, prompt=POINTS, direction="both"))
    want = list(base.propagate(base.open(ListFrames(frames)), 1, prompt=POINTS, direction="both"))
    _assert_same_frames(got, [(t, m) for t, m, _ in want])
    assert injection.last is not None and injection.last["locations"] is not None  # the plug-in ran in video
    injection.capture = False


@pytest.mark.slow
def test_sam2_random_card_builds_a_video_adapter_with_the_image_models_weights():
    from sambench.adapters.sam2 import build_sam2_model

    a = build_video_adapter("sam2.1-hiera-tiny-random", device="cpu")
    sig = a.signature()
    assert (sig["model"], sig["adapter"], sig["weights_sha256"]) == ("sam2.1-hiera-tiny-random", "sam2-video", "random-init:0")
    image_sd = build_sam2_model("hiera-tiny", seed=0).state_dict()
    video_sd = a.predictor.state_dict()
    assert set(image_sd) == set(video_sd)
    assert all(torch.equal(image_sd[k], video_sd[k]) for k in ("image_encoder.trunk.patch_embed.proj.weight",
                                                                "sam_mask_decoder.iou_token.weight", "memory_encoder.out_proj.weight"))


# ------------------------------------------------------------------------------------------ transformers


def _small_hf(family: str):
    """(model, processor) of a transformers video class, small random config, small input side."""
    import transformers as T

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        if family == "sam3_tracker_video":
            s, g = 224, 16
            vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, global_attn_indexes=[1], window_size=8, image_size=s, pretrain_image_size=s)
            cfg = T.Sam3TrackerVideoConfig(vision_config=dict(model_type="sam3_vision_model", backbone_config=vit),
                                           image_size=s, memory_attention_num_layers=1)
            model = T.Sam3TrackerVideoModel(cfg)
            image_proc = T.Sam3ImageProcessor(size={"height": s, "width": s}, mask_size={"height": 4 * g, "width": 4 * g})
            proc_cls = T.Sam3TrackerVideoProcessor
        else:
            s, g = 256, 16
            sizes = [[4 * g] * 2, [2 * g] * 2, [g] * 2]
            if family == "sam2_video":
                hiera = dict(model_type="sam2_hiera_det_model", hidden_size=16, blocks_per_stage=[1, 1, 2, 1],
                             embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 2, 2],
                             global_attention_blocks=[3], image_size=[s, s])
                vision = dict(backbone_config=hiera, backbone_channel_list=[128, 64, 32, 16], backbone_feature_sizes=sizes)
                cfg = T.Sam2VideoConfig(vision_config=vision, image_size=s, memory_attention_num_layers=1,
                                        memory_attention_rope_feat_sizes=[g, g])
                cls = T.Sam2VideoModel
            else:
                bb = T.TimmWrapperConfig(architecture="repvit_m1", do_pooling=False,
                                         model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]})
                cfg = T.EdgeTamVideoConfig(vision_config=T.EdgeTamVisionConfig(backbone_config=bb, backbone_feature_sizes=sizes),
                                           image_size=s, memory_attention_num_layers=1, memory_attention_rope_feat_sizes=[g, g])
                cls = T.EdgeTamVideoModel
            cfg.prompt_encoder_config.image_size = s
            model = cls(cfg)
            image_proc = T.Sam2ImageProcessor(size={"height": s, "width": s}, mask_size={"height": 4 * g, "width": 4 * g})
            proc_cls = T.Sam2VideoProcessor
    return model.eval(), proc_cls(image_proc, T.Sam2VideoVideoProcessor(size={"height": s, "width": s}))


HF_FAMILIES = ("sam2_video", "sam3_tracker_video", "edgetam_video")


@pytest.fixture(scope="module", params=HF_FAMILIES)
def hf_model(request):
    return request.param, *_small_hf(request.param)


def _hf_adapter(model, proc):
    from sambench.adapters.hf import parse_hf_options
    from sambench.adapters.video.hf_video import HfVideoAdapter

    return HfVideoAdapter(model, proc, name="hf-video-test", options=parse_hf_options({"source": "test"}, "test"), device="cpu")


def _library_session_path(model, proc, frames, t0, inputs, reverse_too=False):
    """transformers' documented video path: the whole video in the session, then the same calls."""
    s = proc.init_video_session(video=frames, inference_device="cpu", dtype=torch.float32)
    proc.add_inputs_to_inference_session(s, frame_idx=t0, obj_ids=1, **inputs)
    model(inference_session=s, frame_idx=t0)
    size = [[s.video_height, s.video_width]]
    out = []
    for reverse in [False] + ([True] if reverse_too else []):
        for o in model.propagate_in_video_iterator(s, start_frame_idx=t0, reverse=reverse):
            if reverse and o.frame_idx == t0:
                continue
            m = proc.post_process_masks([o.pred_masks], original_sizes=size, binarize=False)[0]
            out.append((int(o.frame_idx), (m[0, 0] > 0.0).numpy()))
    return out


@pytest.mark.slow
def test_hf_video_adapter_equals_the_library_session_path(hf_model, video):
    family, model, proc = hf_model
    _, frames = video
    adapter = _hf_adapter(model, proc)
    session = adapter.open(ListFrames(frames))
    cases = [(0, Prompt(box=BOX), None, {"input_boxes": [[list(BOX)]]}, False)]
    if family == "sam2_video":  # points, a mask and both directions on one class; the calls are shared
        cases += [(1, POINTS, None, {"input_points": [[[list(p) for p in POINTS.points]]],
                                     "input_labels": [[list(POINTS.labels)]]}, True),
                  (0, None, _gt_mask(), {"input_masks": _gt_mask()}, False)]
    for t0, prompt, mask, inputs, both in cases:
        got = list(adapter.propagate(session, t0, prompt=prompt, mask=mask, direction="both" if both else "forward"))
        _assert_same_frames(got, _library_session_path(model, proc, frames, t0, inputs, reverse_too=both))
    assert adapter.counters() == {"encoder_calls": N_FRAMES, "propagations": len(cases)}
    adapter.close(session)
    with pytest.raises(SambenchError, match="needs an open session"):
        adapter.propagate(session, 0, prompt=Prompt(box=BOX))
    with pytest.raises(SambenchError, match="needs exactly one of prompt and mask"):
        adapter.propagate(adapter.open(ListFrames(frames)), 0, prompt=Prompt(box=BOX), mask=_gt_mask())


@pytest.mark.slow
def test_hf_video_loads_a_saved_checkpoint_and_refuses_a_mismatched_card(tmp_path, video):
    model, proc = _small_hf("sam2_video")
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    card = dataclasses.replace(load_model_card("hf-sam2.1-hiera-tiny"), options={"source": str(tmp_path)})
    adapter = build_video_adapter(card, device="cpu")
    assert adapter.signature()["model_class"] == "Sam2VideoModel"
    _, frames = video
    got = list(adapter.propagate(adapter.open(ListFrames(frames)), 0, prompt=Prompt(box=BOX)))
    _assert_same_frames(got, _library_session_path(model, proc, frames, 0, {"input_boxes": [[list(BOX)]]}))
    edgetam = dataclasses.replace(load_model_card("hf-edgetam"), options={"source": str(tmp_path)})
    with pytest.raises(SambenchError, match="holds a 'sam2_video' model.*hf-edgetam"):
        build_video_adapter(edgetam, device="cpu")


# ----------------------------------------------------------------------------------------- cards, errors


def test_video_cards_name_their_video_adapter():
    assert load_model_card("sam2.1-hiera-tiny-random").video_adapter == "sam2-video"
    assert load_model_card("stable-sam2.1-hiera-tiny-random").video_adapter == "stable-sam2-video"
    for name in ("hf-sam2.1-hiera-tiny", "hf-sam3-tracker", "hf-edgetam"):
        assert load_model_card(name).video_adapter == "hf-video"
    assert is_video_model("sam2.1-hiera-large") and not is_video_model("sam-vit-b")
    assert load_model_card("sam-vit-b").video is False and load_model_card("sam-vit-b").video_adapter is None


def test_an_image_model_in_video_is_one_line_error():
    with pytest.raises(SambenchError, match="'sam-vit-b' is an image model") as e:
        build_video_adapter("sam-vit-b", device="cpu")
    assert "\n" not in str(e.value)


def test_card_field_errors_name_the_file(tmp_path):
    from sambench.config.models import parse_model_card

    with pytest.raises(SambenchError, match="x.yaml: field 'video' must be true or false"):
        parse_model_card({"name": "x", "adapter": "sam2", "video": "yes"}, tmp_path / "x.yaml")
    card = parse_model_card({"name": "x", "adapter": "sam2", "video_adapter": "nope"}, tmp_path / "x.yaml")
    with pytest.raises(SambenchError, match="unknown video adapter 'nope'"):
        build_video_adapter(card)
