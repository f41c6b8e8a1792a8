"""Defects found by issue 11's fault audit, each reproduced and kept fixed: zero-noise boxes, stability of
empty draws, error messages, "did you mean", bad COCO annotations, EXIF orientation, unpaired files."""

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from sambench.adapters.baselines import BoxFillAdapter
from sambench.config import make_setting
from sambench.metrics import encode_rle, iou, stability
from sambench.inputs.prompts import gt_box, make_prompt, prompt_rng
from sambench.types import SambenchError, keyed_rng
try:
    from run_fixtures import error_lines, sambench_cli
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import error_lines, sambench_cli


# --------------------------------------------------------------------------- noisy box s = 0 is the GT box


@pytest.mark.parametrize("kind", ["noisy-box", "box-shift", "box-scale"])
def test_zero_noise_is_exactly_the_gt_box_for_1px_and_other_objects(kind):
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
            rng = prompt_rng(0, "p", 1, "0", draw, "d", "im", str(i))
            assert make_prompt(s0, m, rng).box == gt_box(m)
    # A 1-px object has zero-size noise terms: its GT box at every level, so box-fill scores exactly gt-box's 1.0.
    fill = BoxFillAdapter()
    state = fill.encode(np.zeros((20, 30, 3), np.uint8))
    for scale in (0.0, 0.5, 1.0):
        p = make_prompt(make_setting(kind, {"scale": scale}, None, "test"), one, keyed_rng("ab" * 32))
        assert p.box == (7.0, 5.0, 7.0, 5.0)
        assert iou(fill.predict(state, [p]).masks[0], one) == 1.0


def test_a_collapsed_noisy_box_is_still_1px_wide_and_inside_the_image():
    from sambench.inputs.prompts import noisy_box

    class _Push:  # u = +1 on the centre terms: a box pushed beyond the right/bottom edge collapses
        def uniform(self, lo, hi, size):
            return np.array([1.0, 1.0, -1.0, -1.0])

    box = noisy_box((25.0, 15.0, 29.0, 19.0), (20, 30), 1.0, _Push())
    assert box[2] - box[0] >= 1.0 - 1e-9 and box[3] - box[1] >= 1.0 - 1e-9
    assert 0 <= box[0] and box[2] <= 30 and 0 <= box[1] and box[3] <= 20


# ---------------------------------------------------------------------- stability of empty predictions


def test_all_empty_draws_have_undefined_stability_and_are_left_out_of_its_mean():
    import pandas as pd

    from sambench.analysis.summary import summarize

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


# --------------------------------------------------------------------------------------------- messages


def _one_folder_sample(root: Path, mask: np.ndarray, size=(24, 32)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.full(size + (3,), 90, np.uint8))
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    return root


def test_a_0_1_mask_says_it_holds_low_values_and_how_to_read_them(tmp_path):
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


def test_random_bytes_are_not_called_pickled_objects(bad_weight_files):
    from sambench.adapters.weights import read_state_dict
    from sambench.adapters.stable_sam.plugin_io import load_plugin_file

    rnd, _ = bad_weight_files
    for load, what in ((read_state_dict, "not a PyTorch checkpoint"), (load_plugin_file, "not a Stable-SAM plug-in")):
        with pytest.raises(SambenchError) as exc:
            load(rnd)
        msg = str(exc.value)
        assert what in msg and "pickles Python objects" not in msg, msg
        assert "weights_only" not in msg.replace("torch.load(weights_only=True)", "") and "\n" not in msg


@pytest.mark.slow
def test_a_malicious_plugin_is_refused_without_torchs_unsafe_advice(bad_weight_files, tmp_path):
    from sambench.adapters.stable_sam.plugin_io import load_plugin_file

    _, evil = bad_weight_files
    with pytest.raises(SambenchError) as exc:
        load_plugin_file(evil)
    msg = str(exc.value)
    assert "refused" in msg and "system" in msg and "\n" not in msg
    assert "weights_only" not in msg and "False" not in msg and "trusted" not in msg, msg
    # through the CLI as well: one error line, exit 2, no advice
    p = subprocess.run(sambench_cli("run", "-m", "stable-sam-tiny", "-p", "gt-box", "--limit", "1", "--plugin",
                                    str(evil), "--out", str(tmp_path / "r"), "--no-report", "-q"),
                       capture_output=True, text=True)
    assert p.returncode == 2 and len(error_lines(p.stderr)) == 1, p.stderr
    assert "weights_only=False" not in p.stderr and "weights_only` set to `False`" not in p.stderr


def test_a_directory_as_checkpoint_is_named_a_directory(tmp_path):
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
def test_an_unknown_option_is_blamed_on_the_option_not_the_card(model, key, blamed, hint):
    from sambench.adapters import build_adapter

    with pytest.raises(SambenchError) as exc:
        build_adapter(model, device="cpu", options={key: 1})
    msg = str(exc.value)
    assert msg.startswith(blamed) and hint in msg and ".yaml" not in msg, msg


def test_an_unknown_option_in_a_card_file_is_blamed_on_the_card(tmp_path, monkeypatch):
    from sambench.adapters import build_adapter

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my-sam.yaml").write_text("name: my-sam\nadapter: sam\noptions: {variant: tiny, "
                                                     "random_init: true, bogus: 1}\n")
    monkeypatch.setenv("SAMBENCH_CARDS", str(tmp_path))
    with pytest.raises(SambenchError, match=r"my-sam.yaml: unknown option\(s\) bogus"):
        build_adapter("my-sam", device="cpu")


# --------------------------------------------------------------------------------- "did you mean" (difflib)


@pytest.mark.parametrize("args,needle", [
    (["--model", "grabcat"], "unknown model 'grabcat' (did you mean 'grabcut'?)"),
    (["--protocol", "noisy-bx"], "unknown protocol 'noisy-bx' (did you mean 'noisy-box'?)"),
    (["--dataset", "grabcut-sampel"], "unknown dataset 'grabcut-sampel' (did you mean 'grabcut-sample'?)"),
])
def test_mistyped_model_protocol_and_dataset_names_get_a_did_you_mean(tmp_path, args, needle):
    p = subprocess.run(sambench_cli("run", "--out", str(tmp_path / "r"), "--no-report", "-q", *args),
                       capture_output=True, text=True)
    err = error_lines(p.stderr)
    assert p.returncode == 2 and len(err) == 1 and needle in err[0], p.stderr


# --------------------------------------------------------- one bad COCO annotation fails alone, others are scored


def _coco(root: Path, anns: list, size=(40, 50), file_name="a.png") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    h, w = size
    cv2.imwrite(str(root / "images" / file_name), np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8))
    doc = {"images": [{"id": 1, "file_name": file_name, "height": h, "width": w}],
           "annotations": [dict(a, image_id=1, category_id=1, iscrowd=0) for a in anns],
           "categories": [{"id": 1, "name": "thing"}]}
    (root / "ann.json").write_text(json.dumps(doc))
    return root / "ann.json"


def test_a_bad_coco_annotation_fails_alone_and_the_rest_is_scored(tmp_path):
    from sambench.datasets import DatasetSpec
    from sambench.execution import RunConfig, run
    from sambench.store import Store
    from sambench.analysis.summary import summarize

    good = {"id": 10, "segmentation": [[5, 5, 30, 5, 30, 25, 5, 25]]}
    js = _coco(tmp_path / "coco", [good, {"id": 11, "segmentation": []}, {"id": 12, "segmentation": [[3, 3, 9, 9]]}])
    from sambench.datasets import open_dataset

    sample = open_dataset(str(js)).load("a")
    assert [o.id for o in sample.objects] == ["10"] and sorted(sample.failed_objects) == ["11", "12"]
    assert "annotation 11 of a.png: empty mask" in sample.failed_objects["11"]

    res = run(RunConfig(models=["box-fill"], protocols=["gt-box"], datasets=[DatasetSpec(str(js))],
                        out=tmp_path / "r", workers=1, progress=False))
    assert res.counts == {"ok": 1, "failed": 2}
    with Store(tmp_path / "r", create=False) as st:
        df = st.frame()
    ok = df[df.status == "ok"]
    assert list(ok.object_id) == ["10"] and ok.iou.iloc[0] == 1.0   # the valid object is scored
    failed = df[df.status == "failed"].sort_values("object_id")
    assert list(failed.object_id) == ["11", "12"] and all("ann.json: annotation" in e for e in failed.error)
    row = summarize(df).iloc[0]
    assert row["n"] == 1 and row["failed"] == 2                       # two objects lost, two counted
    # a resume adds nothing (the failed objects count as done) ...
    assert run(RunConfig(models=["box-fill"], protocols=["gt-box"], datasets=[DatasetSpec(str(js))],
                         out=tmp_path / "r", workers=1, progress=False)).rows_added == 0


# ----------------------------------------------------------------------------------------- EXIF orientation


def _tagged(path: Path, arr: np.ndarray, orientation: int) -> Path:
    from PIL import Image

    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes(), **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_images_are_decoded_exactly_as_cv2_imread_for_every_exif_orientation(tmp_path, ext):
    from sambench.datasets.base import read_image_oriented

    arr = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    for o in range(1, 9):
        p = _tagged(tmp_path / f"o{o}{ext}", arr, o)
        ref = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)   # what SAM's scripts/amg.py sees
        img, applied = read_image_oriented(p)
        assert applied == o and img.shape == ref.shape and np.array_equal(img, ref), (ext, o)


@pytest.mark.slow
def test_exif_orientation_is_named_in_the_size_error_and_warned_once_per_dataset(tmp_path):
    from sambench.datasets import open_dataset

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    arr = np.full((20, 30, 3), 120, np.uint8)
    m = np.zeros((20, 30), np.uint8)
    m[5:15, 5:25] = 255
    _tagged(root / "images" / "wide.jpg", arr, 6)           # non-square, rotated on load: 20x30 → 30x20
    cv2.imwrite(str(root / "masks" / "wide.png"), m)
    _tagged(root / "images" / "sq.jpg", np.full((24, 24, 3), 90, np.uint8), 3)  # square: fits silently
    sq = np.zeros((24, 24), np.uint8)
    sq[2:10, 2:20] = 255
    cv2.imwrite(str(root / "masks" / "sq.png"), sq)
    cv2.imwrite(str(root / "images" / "plain.jpg"), arr)
    cv2.imwrite(str(root / "masks" / "plain.png"), m)
    ds = open_dataset(str(root))
    with pytest.raises(SambenchError, match=r"wide.png: mask is 30x20 but image wide.jpg is 20x30 \(its EXIF "
                                            r"orientation 6 was applied"):
        ds.load("wide")
    assert ds.load("sq").image.shape == (24, 24, 3)
    notes = ds.notices()
    assert len(notes) == 1 and "2 image(s) carry an EXIF orientation" in notes[0] and "sq (3)" in notes[0]
    assert ds.exif_oriented() == {"sq": 3, "wide": 6}
    # ... printed once by a run with 2 workers (the workers open the dataset too), not once per process
    p = subprocess.run(sambench_cli("run", "-m", "box-fill", "-p", "gt-box", "-d", str(root), "--workers", "2",
                                    "--out", str(tmp_path / "r"), "--no-report", "-q", "--keep-going"),
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("EXIF orientation tag") == 1, p.stderr
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert any("EXIF" in n for n in man["datasets"][ds.name]["notices"])


def test_datasets_without_exif_tags_keep_their_content_hash():
    from sambench.datasets import open_dataset

    ds = open_dataset("grabcut-sample")
    assert ds.exif_oriented() == {}
    committed = json.loads((Path(__file__).resolve().parents[1] / "results" / "default" / "manifest.json").read_text())
    assert ds.content_hash() == committed["datasets"]["grabcut-sample"]["content_hash"]


# ------------------------------------------------------------------------- cosmetic (unpaired-files warning)


@pytest.mark.slow
def test_images_without_a_mask_are_warned_once_and_listed_in_the_report(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    m = np.zeros((20, 30), np.uint8)
    m[5:15, 5:25] = 255
    for name in ("a", "b", "c"):
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.full((20, 30, 3), 100, np.uint8))
        cv2.imwrite(str(root / "masks" / f"{name}.png"), m)
    cv2.imwrite(str(root / "images" / "lonely.png"), np.full((20, 30, 3), 100, np.uint8))
    p = subprocess.run(sambench_cli("run", "-m", "box-fill", "-p", "gt-box", "-d", str(root), "--workers", "2",
                                    "--out", str(tmp_path / "r"), "-q"), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("image(s) without a mask") == 1, p.stderr
    page = (tmp_path / "r" / "report" / "index.html").read_text()
    assert "1 image(s) without a mask" in page and "lonely" in page
