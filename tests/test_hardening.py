"""Issue 11: each defect of the 105-fault audit, reproduced and kept fixed (one test or more per item)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sambench.adapters.baselines import BoxFillAdapter
from sambench.cards import make_setting
from sambench.metrics import encode_rle, iou, stability
from sambench.prompts import gt_box, keyed_rng, make_prompt, prompt_key
from sambench.types import SambenchError


def _cli(*args):
    return [sys.executable, "-m", "sambench.cli", *args]


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


# ------------------------------------------------------------------ item 11: noisy box s = 0 is the GT box


@pytest.mark.parametrize("kind", ["noisy-box", "box-shift", "box-scale"])
def test_item11_zero_noise_is_exactly_the_gt_box_for_1px_and_other_objects(kind):
    rng0 = np.random.default_rng(3)
    masks = []
    one = np.zeros((20, 30), bool)
    one[5, 7] = True                                  # a 1-pixel object: GT box (7, 5, 7, 5)
    masks.append(one)
    line = np.zeros((20, 30), bool)
    line[4:15, 29] = True                             # a 1-px wide line on the image's right edge
    masks.append(line)
    for _ in range(5):
        m = np.zeros((20, 30), bool)
        y, x = rng0.integers(0, 15), rng0.integers(0, 25)
        m[y:y + rng0.integers(1, 6), x:x + rng0.integers(1, 6)] = True
        masks.append(m)
    s0 = make_setting(kind, {"scale": 0}, None, "test")
    for i, m in enumerate(masks):
        for draw in range(4):
            rng = keyed_rng(prompt_key(0, "p", 1, "0", draw, "d", "im", str(i)))
            assert make_prompt(s0, m, rng).box == gt_box(m)
    # A 1-px object has zero-size noise terms: its GT box at every level, so box-fill scores exactly gt-box's 1.0.
    fill = BoxFillAdapter()
    state = fill.encode(np.zeros((20, 30, 3), np.uint8))
    for scale in (0.0, 0.5, 1.0):
        p = make_prompt(make_setting(kind, {"scale": scale}, None, "test"), one, keyed_rng("ab" * 32))
        assert p.box == (7.0, 5.0, 7.0, 5.0)
        assert iou(fill.predict(state, [p]).masks[0], one) == 1.0


def test_item11_collapsed_boxes_of_wider_objects_are_still_1px_wide():
    from sambench.prompts import noisy_box

    class _Push:  # u = +1 on the centre terms: a box pushed beyond the right/bottom edge collapses
        def uniform(self, lo, hi, size):
            return np.array([1.0, 1.0, -1.0, -1.0])

    box = noisy_box((25.0, 15.0, 29.0, 19.0), (20, 30), 1.0, _Push())
    assert box[2] - box[0] >= 1.0 - 1e-9 and box[3] - box[1] >= 1.0 - 1e-9
    assert 0 <= box[0] and box[2] <= 30 and 0 <= box[1] and box[3] <= 20


# ------------------------------------------------------------- item 12: stability of empty predictions


def test_item12_all_empty_draws_have_undefined_stability_and_are_counted():
    import pandas as pd

    from sambench.summary import summarize

    z = encode_rle(np.zeros((10, 10), bool))
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    assert all(np.isnan(v) for v in stability([z, z, z]))
    assert all(np.isnan(v) for v in stability([z]))
    assert stability([encode_rle(a)]) == (1.0, 1.0)
    # Inside a non-empty union an empty draw is an ordinary mask: pairs (z,z)=1, (z,a)=0, (z,a)=0.
    pair, union = stability([z, z, encode_rle(a)])
    assert pair == pytest.approx(1 / 3) and union == pytest.approx(1 / 3)

    rows = []
    for obj, masks in (("0", [a, a]), ("1", [np.zeros_like(a)] * 2)):  # object 1: empty in every draw
        gt = np.zeros_like(a)
        gt[1:4, 1:4] = True
        for d, m in enumerate(masks):
            rows.append(dict(model="m", dataset="d", image_id=f"im{obj}", object_id=obj, protocol="p", level="1",
                             draw=d, level_value=1.0, iou=iou(m, gt), biou=0.0, status="ok", error=None,
                             mask_rle=json.dumps(encode_rle(m)), prompt=None))
    table = summarize(pd.DataFrame(rows))
    r = table.iloc[0]
    assert r["n"] == 2 and r["n_stability"] == 1
    assert r["stability_pairwise"] == 1.0 and r["stability_union"] == 1.0  # object 0 only, not (1 + 1) / 2 of "nothing"


# ------------------------------------------------------------------------------------- item 9: messages


def _one_folder_sample(root: Path, mask: np.ndarray, size=(24, 32)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.full(size + (3,), 90, np.uint8))
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    return root


def test_item9_a_0_1_mask_says_it_holds_low_values_and_how_to_read_them(tmp_path):
    from sambench.datasets import open_dataset

    m = np.zeros((24, 32), np.uint8)
    m[4:20, 6:26] = 1                                   # 320 pixels of value 1
    ds = open_dataset(str(_one_folder_sample(tmp_path / "ds", m)))
    with pytest.raises(SambenchError) as exc:
        ds.load("a")
    msg = str(exc.value)
    assert "a.png: empty mask (no pixel > 128)" in msg and "320 pixel(s) of value 1" in msg
    assert "threshold=0" in msg and "\n" not in msg
    # ... and the advice works
    assert open_dataset(str(tmp_path / "ds"), threshold="0").load("a").objects[0].mask.sum() == 320
    # A truly empty mask gets no hint.
    z = _one_folder_sample(tmp_path / "z", np.zeros((24, 32), np.uint8))
    with pytest.raises(SambenchError, match=r"empty mask \(no pixel > 128\)$"):
        open_dataset(str(z)).load("a")


@pytest.fixture
def bad_weight_files(tmp_path):
    import torch

    rnd = tmp_path / "random.pth"
    rnd.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "sambench-stable-sam-plugin", "plugin_state": Evil()}, evil)
    return rnd, evil


def test_item9_random_bytes_are_not_called_pickled_objects(bad_weight_files):
    from sambench.checkpoints import read_state_dict
    from sambench.stable_sam.plugin_io import load_plugin_file

    rnd, _ = bad_weight_files
    for load, what in ((read_state_dict, "not a PyTorch checkpoint"), (load_plugin_file, "not a Stable-SAM plug-in")):
        with pytest.raises(SambenchError) as exc:
            load(rnd)
        msg = str(exc.value)
        assert what in msg and "pickles Python objects" not in msg, msg
        assert "weights_only" not in msg.replace("torch.load(weights_only=True)", "") and "\n" not in msg


def test_item9_malicious_plugin_is_refused_without_torchs_unsafe_advice(bad_weight_files, tmp_path):
    from sambench.stable_sam.plugin_io import load_plugin_file

    _, evil = bad_weight_files
    with pytest.raises(SambenchError) as exc:
        load_plugin_file(evil)
    msg = str(exc.value)
    assert "refused" in msg and "system" in msg and "\n" not in msg
    assert "weights_only" not in msg and "False" not in msg and "trusted" not in msg, msg
    # through the CLI as well: one error line, exit 2, no advice
    p = subprocess.run(_cli("run", "-m", "stable-sam-tiny", "-p", "gt-box", "--limit", "1", "--plugin", str(evil),
                            "--out", str(tmp_path / "r"), "--no-report", "-q"), capture_output=True, text=True)
    assert p.returncode == 2 and len(_error_lines(p.stderr)) == 1, p.stderr
    assert "weights_only=False" not in p.stderr and "weights_only` set to `False`" not in p.stderr


def test_item9_a_directory_as_checkpoint_is_named_a_directory(tmp_path):
    from sambench.adapters import build_adapter

    (tmp_path / "ckpts").mkdir()
    with pytest.raises(SambenchError, match=r"ckpts: is a directory, not a checkpoint file") as exc:
        build_adapter("sam-tiny", device="cpu", checkpoint=str(tmp_path / "ckpts"))
    assert "not found" not in str(exc.value)


@pytest.mark.parametrize("model,key,blamed,hint", [
    ("sam-tiny", "chunk_sise", "--option chunk_sise: unknown option 'chunk_sise' for model 'sam-tiny'", "did you mean 'chunk_size'"),
    ("grabcut", "iteration", "--option iteration: unknown option 'iteration' for model 'grabcut'", "did you mean 'iterations'"),
    ("box-fill", "x", "--option x: unknown option 'x' for model 'box-fill'", ""),
])
def test_item9_unknown_option_is_blamed_on_the_option_not_the_card(model, key, blamed, hint):
    from sambench.adapters import build_adapter

    with pytest.raises(SambenchError) as exc:
        build_adapter(model, device="cpu", options={key: 1})
    msg = str(exc.value)
    assert msg.startswith(blamed) and hint in msg and ".yaml" not in msg, msg


def test_item9_unknown_option_in_a_card_file_is_blamed_on_the_card(tmp_path, monkeypatch):
    from sambench.adapters import build_adapter

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my-sam.yaml").write_text("name: my-sam\nadapter: sam\noptions: {variant: tiny, "
                                                     "random_init: true, bogus: 1}\n")
    monkeypatch.setenv("SAMBENCH_CARDS", str(tmp_path))
    with pytest.raises(SambenchError, match=r"my-sam.yaml: unknown option\(s\) bogus"):
        build_adapter("my-sam", device="cpu")


# ------------------------------------------------------------------------ item 10: "did you mean" (difflib)


@pytest.mark.parametrize("args,needle", [
    (["--model", "grabcat"], "unknown model 'grabcat' (did you mean 'grabcut'?)"),
    (["--protocol", "noisy-bx"], "unknown protocol 'noisy-bx' (did you mean 'noisy-box'?)"),
    (["--dataset", "grabcut-sampel"], "unknown dataset 'grabcut-sampel' (did you mean 'grabcut-sample'?)"),
])
def test_item10_typos_get_a_did_you_mean(tmp_path, args, needle):
    p = subprocess.run(_cli("run", "--out", str(tmp_path / "r"), "--no-report", "-q", *args),
                       capture_output=True, text=True)
    err = _error_lines(p.stderr)
    assert p.returncode == 2 and len(err) == 1 and needle in err[0], p.stderr
