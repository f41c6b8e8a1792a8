"""Stable-SAM: plug-in modules, injection, training, plug-in files, adapter and introspection.

Everything runs on the tiny random-init SAM / HQ-SAM (official decoders, 2-block encoder) and the
shipped GrabCut sample; image embeddings are shared through module-scoped fixtures.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sambench.adapters import build_adapter
from sambench.adapters.stable_sam.adapter import build_stable_sam
from sambench.config import load_model_card, parse_model_card
from sambench.datasets import open_dataset
from sambench.adapters.stable_sam.base import load_base, resolve_base_card
from sambench.training.decode import decode_logits, encode_images
from sambench.adapters.stable_sam.inject import attention_probs, inject_plugin
from sambench.adapters.stable_sam.modules import PluginConfig, StableSamPlugin, count_parameters
from sambench.adapters.stable_sam.plugin_io import load_plugin_file, save_plugin_file
from sambench.training.data import TrainConfig, augment_sample, build_item
from sambench.training.train import bce_dice_loss, item_logits, train_stable_sam
from sambench.types import Prompt, SambenchError, keyed_rng


class Subset:
    """The first ``n`` images of a dataset (same loader, fewer ids)."""

    def __init__(self, ds, n: int, name: str) -> None:
        self.ds, self._ids, self.name = ds, ds.ids()[:n], name

    def ids(self):
        return list(self._ids)

    def load(self, image_id):
        return self.ds.load(image_id)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny models' ops are too small to gain from intra-op threads, and on a shared 2-core machine
    OpenMP spinning makes them several times slower: run this module single-threaded, then restore."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def grabcut():
    return open_dataset("grabcut-sample")


def _base(name):
    card, _ = resolve_base_card(name)
    return load_base(card, None, card.options, where=name)


@pytest.fixture(scope="module")
def sam_base():
    return _base("sam-tiny")


@pytest.fixture(scope="module")
def hq_base():
    return _base("hq-sam-tiny")


@pytest.fixture(scope="module")
def embed_cache():
    return {}


def _frame_image(grabcut, i=0):
    s = grabcut.load(grabcut.ids()[i])
    img, masks, valid = augment_sample(s.image, [o.mask for o in s.objects], None, TrainConfig(augment=False))
    return img, masks, valid


@pytest.fixture(scope="module")
def sam_emb(sam_base, grabcut):
    img, _, _ = _frame_image(grabcut)
    return encode_images(sam_base.model, torch.from_numpy(img).permute(2, 0, 1)[None].float())


@pytest.fixture(scope="module")
def hq_emb(hq_base, grabcut):
    img, _, _ = _frame_image(grabcut)
    return encode_images(hq_base.model, torch.from_numpy(img).permute(2, 0, 1)[None].float())


BOXES = torch.tensor([[100.0, 80.0, 700.0, 600.0], [300.0, 200.0, 520.0, 500.0]])
POINTS = torch.tensor([[[350.0, 300.0], [100.0, 90.0]]])
LABELS = torch.tensor([[1, 0]], dtype=torch.int)


def _all_outputs(model, emb, interm, hq, first_only=False):
    """Boxes and points, single and multimask (HQ-SAM: also the SAM + HQ sum), as (logits, iou) pairs."""
    outs = []
    flags = [(False, True), (True, True), (False, False)] if hq else [(False, True), (True, True)]
    if first_only:
        return [decode_logits(model, emb, interm, boxes=BOXES, hq_token_only=True)]
    for multimask, hq_only in flags:
        outs.append(decode_logits(model, emb, interm, boxes=BOXES, multimask=multimask, hq_token_only=hq_only))
        outs.append(decode_logits(model, emb, interm, points=POINTS, labels=LABELS, multimask=multimask,
                                  hq_token_only=hq_only))
    return outs


# ------------------------------------------------------------------------------------------ modules


def test_parameter_count_matches_hand_count_and_paper_budget():
    c, k, h = 256, 5, 24
    dsp = (c * c + c) + (c * k * k + c) + 2 * c + (c * 2 + 2)  # 1x1 proj, DW 5x5, LayerNorm, 1x1 -> 2
    drp = (c * h + h) + 2 * h + (h * 2 + 2)  # Linear, LayerNorm, Linear -> 2
    plugin = StableSamPlugin(PluginConfig())
    assert count_parameters(plugin) == dsp + drp == 79740
    for cfg in (PluginConfig(), PluginConfig(modulation=True), PluginConfig(drp_hidden=32), PluginConfig(drp_norm="sigmoid")):
        assert 60_000 <= count_parameters(StableSamPlugin(cfg)) <= 100_000
    assert count_parameters(StableSamPlugin(PluginConfig(modulation=True))) == 79740 + c + 1
    with pytest.raises(SambenchError, match="pe_mode"):
        PluginConfig(pe_mode="warped")


def test_fresh_dsp_is_identity_and_bounded_offsets():
    plugin = StableSamPlugin(PluginConfig(offset_range=3.0))
    x = torch.randn(2, 256, 8, 8, generator=torch.Generator().manual_seed(0))
    feats, pe_s, loc = plugin.dsp(x, x * 2)
    assert torch.allclose(feats, x, atol=1e-5) and torch.allclose(pe_s, x * 2, atol=1e-5)
    grid = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")[::-1], dim=-1)
    assert torch.equal(loc[0], grid)  # (x, y) = (column, row)
    with torch.no_grad():
        plugin.dsp.offset_out.bias.copy_(torch.tensor([100.0, -0.5]))
    _, _, loc = plugin.dsp(x)
    assert torch.allclose(loc[0, ..., 0] - grid[..., 0], torch.full((8, 8), 3.0))  # tanh saturates at range
    assert torch.allclose(loc[0, ..., 1] - grid[..., 1], torch.full((8, 8), 3.0 * math.tanh(-0.5)))


def test_attention_probs_reconstruct_the_official_attention(sam_base):
    attn = sam_base.model.mask_decoder.transformer.layers[1].cross_attn_token_to_image
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 256, generator=g) for n in (7, 50, 50))
    p = attention_probs(attn, q, k)
    assert torch.allclose(p.sum(-1), torch.ones(2, attn.num_heads, 7), atol=1e-5)
    vh = attn.v_proj(v).reshape(2, 50, attn.num_heads, -1).transpose(1, 2)
    rebuilt = attn.out_proj((p @ vh).transpose(1, 2).reshape(2, 7, -1))
    with torch.no_grad():
        assert torch.allclose(rebuilt, attn(q=q, k=k, v=v), atol=1e-5)


# ----------------------------------------------------------------------------------------- injection


@pytest.mark.slow  # 3-6 s per base on 2 cores
@pytest.mark.parametrize("which", ["sam", "hq"])
def test_fresh_plugin_reproduces_base_and_perturbed_plugin_acts(which, sam_base, hq_base, sam_emb, hq_emb):
    base, (emb, interm) = (sam_base, sam_emb) if which == "sam" else (hq_base, hq_emb)
    hq = which == "hq"
    configs = [PluginConfig()]
    if not hq:  # every non-default option once (same code path for both bases)
        configs.append(PluginConfig(modulation=True, pe_mode="grid", drp_norm="sigmoid", drp_token="iou"))
    with torch.no_grad():
        ref = _all_outputs(base.model, emb, interm, hq)
        for cfg in configs:
            inj = inject_plugin(base.model, StableSamPlugin(cfg, seed=3))
            try:
                out = _all_outputs(base.model, emb, interm, hq)
                for (rl, ri), (ol, oi) in zip(ref, out):
                    assert rl.shape == ol.shape
                    assert (rl - ol).abs().max().item() < 1e-4
                    assert (ri - oi).abs().max().item() < 1e-4
            finally:
                inj.remove()
        # the hooks really act: shifted sampling changes the logits; disabled, the base is back exactly
        inj = inject_plugin(base.model, StableSamPlugin(PluginConfig()))
        try:
            with pytest.raises(RuntimeError, match="already injected"):
                inject_plugin(base.model, StableSamPlugin(PluginConfig()))
            inj.plugin.dsp.offset_out.bias.fill_(0.7)
            moved = _all_outputs(base.model, emb, interm, hq, first_only=True)[0][0]
            assert (moved - ref[0][0]).abs().max().item() > 1e-3
            inj.enabled = False
            assert torch.equal(_all_outputs(base.model, emb, interm, hq, first_only=True)[0][0], ref[0][0])
        finally:
            inj.remove()
        after = _all_outputs(base.model, emb, interm, hq, first_only=True)[0][0]  # hooks removed: the base
    assert torch.equal(after, ref[0][0])


def test_only_plugin_parameters_get_gradients(sam_base, sam_emb, grabcut):
    cfg = TrainConfig(augment=False, objects_per_image=1)
    item = build_item(grabcut, grabcut.ids()[0], keyed_rng("grad-test"), cfg)
    plugin = StableSamPlugin(PluginConfig())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # move off the exact no-op point so every plug-in part is on the gradient path
        plugin.dsp.offset_out.weight.normal_(0, 1e-3, generator=g)
        plugin.drp.fc2.weight.normal_(0, 1e-2, generator=g)
    inj = inject_plugin(sam_base.model, plugin)
    try:
        logits = item_logits(sam_base.model, sam_emb[0], None, item, hq_token_only=False)
        bce, dice = bce_dice_loss(logits, torch.from_numpy(item.targets))
        (bce + dice).mean().backward()
    finally:
        inj.remove()
    assert all(not p.requires_grad and p.grad is None for p in sam_base.model.parameters())
    grads = {n: p.grad for n, p in plugin.named_parameters()}
    assert all(g is not None for g in grads.values())
    for name in ("dsp.proj.weight", "dsp.offset_dw.weight", "dsp.offset_out.weight", "drp.fc1.weight", "drp.fc2.weight"):
        assert grads[name].abs().sum().item() > 0, name


# ------------------------------------------------------------------------------------------ training


def test_augmentation_is_keyed_and_moves_masks_with_the_image():
    yy, xx = np.mgrid[0:300, 0:400]
    mask = (xx - 150) ** 2 + (yy - 120) ** 2 < 60 ** 2
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    image[mask] = (255, 0, 0)
    cfg = TrainConfig()
    for key in range(6):
        img, (m,), (vh, vw) = augment_sample(image, [mask], keyed_rng("aug", key), cfg)
        img2, (m2,), _ = augment_sample(image, [mask], keyed_rng("aug", key), cfg)
        assert img.shape == (1024, 1024, 3) and m.dtype == bool and np.array_equal(img, img2) and np.array_equal(m, m2)
        assert not img[vh:].any() and not img[:, vw:].any()  # padding is bottom/right
        red = img[..., 0] > 127
        if m.sum() > 50:
            inter, union = (red & m).sum(), (red | m).sum()
            assert inter / union > 0.9
    a, _, _ = augment_sample(image, [mask], keyed_rng("aug", 0), cfg)
    b, _, _ = augment_sample(image, [mask], keyed_rng("aug", 1), cfg)
    assert not np.array_equal(a, b)


def _eval_loss(base, items, embs, plugin=None):
    inj = inject_plugin(base.model, plugin) if plugin is not None else None
    try:
        with torch.no_grad():
            losses = []
            for it, (e, im) in zip(items, embs):
                bce, dice = bce_dice_loss(item_logits(base.model, e, im, it, False), torch.from_numpy(it.targets))
                losses.append(bce + dice)
    finally:
        if inj is not None:
            inj.remove()
    return torch.cat(losses).mean().item()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sam_base, grabcut, embed_cache):
    ds = Subset(grabcut, 4, "gc4")
    cfg = TrainConfig(augment=False)
    items = [build_item(ds, i, keyed_rng("eval", i, d), cfg) for i in ds.ids() for d in range(2)]
    sig = sam_base.signature
    for it in items[::2]:  # embeddings shared with training through its documented cache key
        key = (sig.variant, sig.hq, sig.weights_id) + it.cache_key
        embed_cache[key] = encode_images(sam_base.model, torch.from_numpy(it.image).permute(2, 0, 1)[None].float())
    embs = [embed_cache[(sig.variant, sig.hq, sig.weights_id) + it.cache_key] for it in items]
    before_state = {k: v.clone() for k, v in sam_base.model.state_dict().items()}
    loss_before = _eval_loss(sam_base, items, embs)
    out = tmp_path_factory.mktemp("train") / "plugin.pt"
    res = train_stable_sam("sam-tiny", None, [ds], epochs=10, out=out, device="cpu", batch_size=1, lr=1e-3, seed=0,
                           max_steps=20, augment=False, progress=False, embedding_cache=embed_cache, base=sam_base)
    loaded = load_plugin_file(out)
    loss_after = _eval_loss(sam_base, items, embs, loaded.plugin)
    return dict(res=res, loaded=loaded, before=loss_before, after=loss_after, items=items, embs=embs,
                before_state=before_state, out=out)


@pytest.mark.slow
def test_training_lowers_the_loss_and_leaves_the_base_untouched(trained, sam_base):
    res = trained["res"]
    assert res.steps == 20 and res.start_step == 0 and len(res.losses) == 20
    assert trained["after"] < 0.99 * trained["before"], (trained["before"], trained["after"])
    after_state = sam_base.model.state_dict()
    assert all(torch.equal(v, after_state[k]) for k, v in trained["before_state"].items())
    with open(res.log_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == list(range(1, 21))
    assert np.allclose([float(r["loss"]) for r in rows], res.losses, atol=1e-5)
    assert all(int(r["prompts"]) == int(r["gt_box"]) + int(r["noisy_box"]) + int(r["points"]) for r in rows)


@pytest.mark.slow
def test_plugin_file_round_trips_and_holds_only_the_plugin(trained, sam_base, sam_emb, tmp_path):
    loaded = trained["loaded"]
    raw = torch.load(trained["out"], map_location="cpu", weights_only=True)
    assert set(raw["plugin_state"]) == set(StableSamPlugin().state_dict())
    assert raw["base"]["card"] == "sam-tiny" and raw["base"]["init_seed"] == 0 and raw["base"]["hq"] is False
    assert raw["train_config"]["lr"] == 1e-3 and raw["steps"] == 20
    resume = torch.load(trained["res"].resume_path, map_location="cpu", weights_only=True)
    assert all(torch.equal(resume["plugin_state"][k], v) for k, v in loaded.plugin.state_dict().items())
    again = save_plugin_file(tmp_path / "copy.pt", loaded.plugin, loaded.base, loaded.train_config, loaded.steps)
    reloaded = load_plugin_file(again)
    emb, _ = sam_emb
    outs = []
    for p in (loaded.plugin, reloaded.plugin):
        inj = inject_plugin(sam_base.model, p)
        try:
            with torch.no_grad():
                outs.append(decode_logits(sam_base.model, emb, None, boxes=BOXES)[0])
        finally:
            inj.remove()
    assert torch.equal(outs[0], outs[1])
    with torch.no_grad():
        bare = decode_logits(sam_base.model, emb, None, boxes=BOXES)[0]
    assert (bare - outs[0]).abs().max().item() > 1e-4  # the trained plug-in does something


@pytest.mark.slow
def test_mismatched_base_and_bad_files_are_refused(trained, tmp_path):
    plugin = str(trained["out"])
    card = load_model_card("stable-sam-tiny")
    ok = build_stable_sam(card, device="cpu", plugin=plugin, options=dict(card.options))
    assert ok.signature()["plugin_id"] == trained["loaded"].sha256
    with pytest.raises(SambenchError, match=r"trained on sam-tiny .*random init seed 0.*not on the base in use"):
        build_stable_sam(card, device="cpu", plugin=plugin, options={**card.options, "seed": 1})
    hq_card = parse_model_card({"name": "stable-hq-sam-tiny", "adapter": "stable-sam", "base": "hq-sam-tiny",
                                "options": {"allow_fresh_plugin": True}}, Path("stable-hq-sam-tiny.yaml"))
    with pytest.raises(SambenchError, match="HQ-SAM tiny"):
        build_stable_sam(hq_card, device="cpu", plugin=plugin, options=dict(hq_card.options))
    with pytest.raises(SambenchError, match="offset_range=8.0 but option offset_range=4"):
        build_stable_sam(card, device="cpu", plugin=plugin, options={**card.options, "offset_range": 4})
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SambenchError, match="not a Stable-SAM plug-in file"):
        build_stable_sam(card, device="cpu", plugin=str(bad), options=dict(card.options))
    torch.save({"weights": torch.zeros(3)}, bad)
    with pytest.raises(SambenchError, match="no 'sambench-stable-sam-plugin' header"):
        build_stable_sam(card, device="cpu", plugin=str(bad), options=dict(card.options))
    with pytest.raises(SambenchError, match="needs the sam-vit-b checkpoint sam_vit_b_01ec64.pth and a trained plug-in"):
        build_adapter("stable-sam-vit-b", device="cpu")
    with pytest.raises(SambenchError, match=r"needs a trained plug-in stable-sam-vit-b.plugin.pt, .*sambench train stable-sam"):
        build_adapter("stable-sam-vit-b", device="cpu", checkpoint=str(bad))


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path, sam_base, grabcut, embed_cache):
    ds = Subset(grabcut, 3, "gc3")
    kw = dict(epochs=2, device="cpu", batch_size=1, seed=5, augment=False, progress=False,
              embedding_cache=embed_cache, base=sam_base, save_every=1)
    full = train_stable_sam("sam-tiny", None, [ds], out=tmp_path / "a.pt", max_steps=4, **kw)
    first = train_stable_sam("sam-tiny", None, [ds], out=tmp_path / "b.pt", max_steps=2, **kw)
    second = train_stable_sam("sam-tiny", None, [ds], out=tmp_path / "b.pt", max_steps=4, **kw)
    assert (full.steps, first.steps, second.start_step, second.steps) == (4, 2, 2, 4)
    a, b = load_plugin_file(tmp_path / "a.pt"), load_plugin_file(tmp_path / "b.pt")
    sa, sb = a.plugin.state_dict(), b.plugin.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert first.losses + second.losses == full.losses
    with open(second.log_path, newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]
    with pytest.raises(SambenchError, match="another configuration"):
        train_stable_sam("sam-tiny", None, [ds], out=tmp_path / "b.pt", max_steps=5, **{**kw, "seed": 6})


def test_cli_trains_one_step(tmp_path):
    from click.testing import CliRunner

    from sambench.cli.main import main

    out = tmp_path / "cli.pt"
    r = CliRunner().invoke(main, ["train", "stable-sam", "--base", "sam-tiny", "--data", "grabcut-sample", "--out", str(out),
                                       "--max-steps", "1", "--batch-size", "1", "--device", "cpu", "--no-augment",
                                       "--quiet", "--option", "drp_hidden=16"])
    assert r.exit_code == 0, r.output
    assert "after 1/13 steps" in r.output
    loaded = load_plugin_file(out)
    assert loaded.plugin.cfg.drp_hidden == 16 and loaded.steps == 1
    r = CliRunner().invoke(main, ["train", "stable-sam", "--base", "grabcut", "--data", "grabcut-sample", "--out", str(out)])
    assert r.exit_code == 2 and "error: model 'grabcut' is a 'grabcut' model; Stable-SAM needs a sam, hq-sam or sam2 base" in r.output


# ------------------------------------------------------------------------------------------- adapter


def _prompts():
    return [Prompt(box=(60.0, 40.0, 420.0, 330.0)), Prompt(points=((250.0, 200.0), (30.0, 30.0)), labels=(1, 0))]


def _check_extras(ex, size, k_max):
    h, w = size
    s = ex["stable_sam"]
    rows = np.asarray(s["top"], dtype=np.float64)
    assert 0 < len(rows) <= k_max
    assert np.all(rows[:, 0] >= -0.5) and np.all(rows[:, 0] <= w - 0.5)
    assert np.all(rows[:, 1] >= -0.5) and np.all(rows[:, 1] <= h - 0.5)
    assert np.all(np.diff(rows[:, 4]) <= 1e-12) and np.all(rows[:, 4] >= 0)
    return s, rows


@pytest.mark.slow
def test_adapter_reproduces_sam_adapter_and_introspects(grabcut):
    sample = grabcut.load(grabcut.ids()[0])
    h, w = sample.size
    stable = build_adapter("stable-sam-tiny", device="cpu", options={"introspect": True, "top_k": 4096})
    sam = build_adapter("sam-tiny", device="cpu")
    st_s, st_b = stable.encode(sample.image), sam.encode(sample.image)
    for sel in ("single", "best-of-3"):
        ps, pb = stable.predict(st_s, _prompts(), sel), sam.predict(st_b, _prompts(), sel)
        assert np.array_equal(ps.masks, pb.masks) and np.allclose(ps.scores, pb.scores, atol=1e-4)
        assert pb.extras is None and len(ps.extras) == 2
        for ex in ps.extras:
            s, rows = _check_extras(ex, (h, w), 4096)
            assert s["alphas"] == [0.5, 0.5] and s["mean_offset_px"] == 0.0
            assert np.allclose(rows[:, 0], rows[:, 2]) and np.allclose(rows[:, 1], rows[:, 3])
            assert abs(rows[:, 4].sum() + s["attn_outside"] - 1.0) < 1e-4  # all inside tokens + the rest = 1
            assert s["tokens"] == ["mask0"] if sel == "single" else s["tokens"] in (["mask1"], ["mask2"], ["mask3"])
    # the image is 640 wide, 480 high: SAM pads it to 1024 x 768 (+ padding) -> padded tokens are outside
    assert ps.extras[0]["stable_sam"]["attn_outside"] > 0
    # shifted sampling: a constant offset (dx, dy) cells shows up as (x - gx, y - gy) in image pixels
    with torch.no_grad():
        stable.plugin.dsp.offset_out.bias.copy_(torch.tensor([0.4, -0.2]))
    stable.set_introspection(True, top_k=64)
    p = stable.predict(st_s, _prompts()[:1], "single")
    s, rows = _check_extras(p.extras[0], (h, w), 64)
    scale = w / 1024.0  # 640 px image -> 1024 input: x_orig = x_in * 640/1024
    dx, dy = 8.0 * math.tanh(0.4) * 16 * scale, 8.0 * math.tanh(-0.2) * 16 * scale
    free = (rows[:, 2] > 10 * 16 * scale) & (rows[:, 3] > 10 * 16 * scale)  # grid cells far from the top/left border
    assert free.any()
    assert np.allclose(rows[free, 0] - rows[free, 2], dx, atol=0.02)
    assert np.allclose(rows[free, 1] - rows[free, 3], dy, atol=0.02)
    assert len(rows) == 64
    stable.set_introspection(False)
    assert stable.predict(st_s, _prompts()[:1], "single").extras is None


@pytest.mark.slow
def test_hq_base_adapter_reproduces_hq_sam(grabcut):
    sample = grabcut.load(grabcut.ids()[1])
    card = parse_model_card({"name": "stable-hq-sam-tiny", "adapter": "stable-sam", "base": "hq-sam-tiny",
                             "options": {"allow_fresh_plugin": True, "introspect": True, "top_k": 8}},
                            Path("stable-hq-sam-tiny.yaml"))
    stable = build_stable_sam(card, device="cpu", options=dict(card.options))
    hq = build_adapter("hq-sam-tiny", device="cpu")
    assert stable.signature()["base"]["hq"] is True
    st_s, st_b = stable.encode(sample.image, "hq-sam-1024"), hq.encode(sample.image, "hq-sam-1024")
    ps, pb = stable.predict(st_s, _prompts(), "single"), hq.predict(st_b, _prompts(), "single")
    assert np.array_equal(ps.masks, pb.masks) and np.allclose(ps.scores, pb.scores, atol=1e-4)
    for ex in ps.extras:
        s, rows = _check_extras(ex, sample.size, 8)
        assert s["tokens"] == ["mask0", "hq"] and s["attn_outside"] == 0.0  # no padding in hq-sam-1024
