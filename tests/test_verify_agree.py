"""Trust (issue 21, parts 1-2): ``--verify --rerun N`` re-runs the recorded model, ``sambench agree`` compares
two runs' masks prompt by prompt. Stores are small real runs of random-weight models on two GrabCut images."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import sambench.api as api
from sambench.analysis.agree import AgreeRefused, agree_runs, mask_agreement
from sambench.datasets import DatasetSpec
from sambench.leaderboard.rerun import DTYPE_MIN_IOU, sample_images
from sambench.metrics import boundary_iou, encode_rle

RUN = dict(levels=[0, 0.4], draws=2, limit=2, workers=1)  # 2 images x (1 + 2) prompts = 6 rows per model


def _run(model, out, **options):
    return api.run(model, "noisy-box", "grabcut-sample", out=out, **{**RUN, **options})


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    honest = _run("sam-tiny", root / "honest").path
    again = _run("sam-tiny", root / "again").path  # the same model, a second, independent run
    other = _run("sam-tiny", root / "other", model_options={"sam-tiny": {"seed": 1}}).path
    # a forged store: the honest manifest (sam-tiny, seed 0) over the other random model's masks
    forged = root / "forged"
    shutil.copytree(honest, forged)
    shutil.copy(other / "results.sqlite", forged / "results.sqlite")
    # a forged store: every mask replaced by the GT, its stored numbers made consistent with it
    gt_store = root / "gt"
    shutil.copytree(honest, gt_store)
    ds = DatasetSpec(spec="grabcut-sample").open()
    con = sqlite3.connect(str(gt_store / "results.sqlite"))
    for image_id, object_id in con.execute("SELECT DISTINCT image_id, object_id FROM results").fetchall():
        gt = {str(o.id): o.mask for o in ds.load(image_id).objects}[object_id]
        con.execute("UPDATE results SET mask_rle = ?, iou = 1.0, biou = ?, pred_area = gt_area "
                    "WHERE image_id = ? AND object_id = ?",
                    (json.dumps(encode_rle(gt)), boundary_iou(gt, gt), image_id, object_id))
    con.commit()
    con.close()
    return {"honest": honest, "again": again, "other": other, "forged": forged, "gt": gt_store, "root": root}


@pytest.mark.slow
def test_rerun_passes_an_untouched_store_with_exact_masks(stores):
    v = api.verify(stores["honest"], rerun=2)
    assert v.ok and v.rescore.ok
    (check,) = v.checks
    assert check.status == "passed" and check.device == "cpu" and check.dtype == "fp32"
    assert len(check.images) == 2 and check.prompts == 6  # 2 images x (1 GT box + 2 noisy boxes)
    assert check.worst_iou == 1.0 and check.min_iou == DTYPE_MIN_IOU["fp32"] == 0.999


@pytest.mark.slow
def test_gt_substituted_store_passes_plain_verify_but_fails_rerun(stores):
    plain = api.verify(stores["gt"])
    assert plain.ok and plain.rescore.checked == 6 and plain.rescore.n_mismatches == 0
    rerun = api.verify(stores["gt"], rerun=2)
    assert not rerun.ok
    (check,) = rerun.checks
    assert check.status == "failed" and check.worst_iou < 0.5
    assert "below IoU 0.999" in check.problems[-1]


@pytest.mark.slow
def test_store_of_another_random_model_passes_plain_verify_but_fails_rerun(stores):
    assert api.verify(stores["forged"]).ok
    (check,) = api.verify(stores["forged"], rerun=1).checks
    assert check.status == "failed" and check.worst_iou < 0.5 and len(check.images) == 1


@pytest.mark.slow
def test_weights_not_found_are_marked_not_rerun_and_never_passed(stores, tmp_path):
    run = tmp_path / "missing"
    shutil.copytree(stores["honest"], run)
    man = json.loads((run / "manifest.json").read_text())
    man["models"]["sam-tiny"]["weights_sha256"] = "ab" * 32
    (run / "manifest.json").write_text(json.dumps(man))
    v = api.verify(run, rerun=2)
    (check,) = v.checks
    assert check.status == "not re-run" and check.worst_iou is None
    assert check.reason.startswith("not re-run: weights with hash abababababab… not found")
    assert "0 passed, 0 failed, 1 not re-run" in v.summary()


@pytest.mark.slow
def test_leaderboard_rerun_records_what_was_checked_and_refuses_a_forged_store(stores, tmp_path):
    from sambench.cli.main import main

    res = CliRunner().invoke(main, ["leaderboard", str(stores["honest"]), "--out", str(tmp_path / "b"), "--verify",
                                    "--rerun", "2"])
    assert res.exit_code == 0, res.output
    (entry,) = json.loads((tmp_path / "b" / "leaderboard.json").read_text())["verification"]["rerun"]
    assert (entry["status"], len(entry["images"]), entry["device"], entry["worst_iou"]) == ("passed", 2, "cpu", 1.0)
    assert entry["date"][:2] == "20"
    assert "## Verification" in (tmp_path / "b" / "leaderboard.md").read_text()
    assert "Verification" in (tmp_path / "b" / "leaderboard.html").read_text()
    res = CliRunner().invoke(main, ["leaderboard", str(stores["gt"]), "--out", str(tmp_path / "g"), "--verify",
                                    "--rerun", "2"])
    assert res.exit_code == 1 and not (tmp_path / "g" / "leaderboard.json").exists()
    res = CliRunner().invoke(main, ["verify", str(stores["gt"])])
    assert res.exit_code == 0 and "every stored number matches" in res.output


def test_rerun_image_sample_depends_only_on_its_key():
    pool = [("d", f"im{i}") for i in range(10)]
    a = sample_images(pool, 3, "run-key", "m")
    assert a == sample_images(list(reversed(pool)), 3, "run-key", "m")  # not on the order of the rows
    assert len(set(a)) == 3 and set(a) <= set(pool) and a == sorted(a)
    assert sample_images(pool, 20, "run-key", "m") == sorted(pool)
    picks = {tuple(sample_images(pool, 3, f"key{k}", "m")) for k in range(8)}
    assert len(picks) > 1  # another run identity draws other images


# ---------------------------------------------------------------------------------------------- agree


def _rows(model, masks, statuses, scores, ious):
    key = dict(dataset="d", image_id="i", object_id="0", protocol="p", level="0", corruption="none", severity=0)
    return pd.DataFrame([{**key, "model": model, "draw": k, "status": s, "score": sc, "iou": iou,
                          "mask_rle": json.dumps(encode_rle(m)) if m is not None else None,
                          "prompt_hash": "h", "prompt": "{}"}
                         for k, (m, s, sc, iou) in enumerate(zip(masks, statuses, scores, ious))])


def test_mask_agreement_of_hand_made_masks():
    a1 = np.array([[1, 1], [0, 0]], bool)
    b1 = np.array([[1, 0], [1, 0]], bool)  # one shared pixel of three: IoU 1/3
    empty = np.zeros((2, 2), bool)
    a = _rows("x", [a1, empty, a1, None], ["ok", "ok", "ok", "failed"], [0.9, 0.5, 0.7, None], [0.5, 0.0, 0.5, None])
    b = _rows("y", [b1, empty, None, None], ["ok", "ok", "failed", "failed"], [0.6, 0.5, None, None],
              [0.25, 0.0, None, None])
    m = mask_agreement(a, b).sort_values("draw")
    assert m["agreement"].tolist()[:3] == [pytest.approx(1 / 3), 1.0, 0.0]  # empty vs empty agree; failed side: 0
    assert np.isnan(m["agreement"].tolist()[3])  # both failed: no agreement, counted apart
    assert m["score_diff"].tolist()[:2] == [pytest.approx(0.3), 0.0]


@pytest.mark.slow
def test_agree_sam_tiny_against_a_second_run_of_itself_is_exact(stores):
    r = agree_runs(stores["honest"], stores["again"], min_iou=1.0)
    assert r.passed and r.exit_code == 0 and len(r.per_prompt) == 6
    for g in r.groups:
        assert (g["mean"], g["min"], g["frac_ge_0.99"], g["frac_lt_0.5"], g["delta"]) == (1.0, 1.0, 1.0, 0.0, 0.0)
        assert g["max_abs_score_diff"] == 0.0


@pytest.mark.slow
def test_agree_two_different_random_models_disagree_and_names_least_agreeing(stores, tmp_path):
    from sambench.cli.main import main

    res = CliRunner().invoke(main, ["agree", str(stores["honest"]), str(stores["other"]), "--min-iou", "0.9",
                                    "--out", str(tmp_path / "a"), "--worst", "2"])
    assert res.exit_code == 1, res.output
    assert "least-agreeing prompts (lowest 2):" in res.output and "grabcut-sample/" in res.output
    assert "FAIL: 6 of 6 prompt(s) agree below IoU 0.9" in res.output
    doc = json.loads((tmp_path / "a" / "agree.json").read_text())
    assert len(doc["least_agreeing"]) == 2 and doc["least_agreeing"][0]["agreement"] < 0.5
    assert (tmp_path / "a" / "agree_grid.png").stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "a" / "agree.csv")) == 6


@pytest.mark.slow
def test_agree_refuses_runs_with_different_prompts(tmp_path):
    opts = dict(levels=[0.4], draws=1, limit=1, workers=1)
    a = api.run("box-fill", "noisy-box", "grabcut-sample", out=tmp_path / "a", **opts)
    b = api.run("box-fill", "noisy-box", "grabcut-sample", out=tmp_path / "b", seed=5, **opts)
    with pytest.raises(AgreeRefused, match=r"^agree .*: the prompts are not identical \(.*\): refusing") as exc:
        agree_runs(a.path, b.path)
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_agree_official_sam_and_transformers_with_the_same_weights_within_float_tolerance(stores, tmp_path):
    """The tiny architecture both backends accept (a ViT-B encoder is ~11 s per image on these CPUs): sam-tiny's
    seed-0 weights converted to transformers' SamModel, run as ``hf:<dir>`` on the same prompts."""
    import transformers as T

    from sambench.adapters.sam.nets import build_sam_model

    try:
        from hf_fixtures import sam1_to_transformers
    except ImportError:
        from tests.hf_fixtures import sam1_to_transformers

    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1], mlp_dim=128)
    hf = T.SamModel(T.SamConfig(vision_config=vision)).eval()
    hf.load_state_dict(sam1_to_transformers(build_sam_model("tiny", seed=0).state_dict()), strict=True)
    hf.save_pretrained(tmp_path / "w")
    T.SamProcessor(T.SamImageProcessor()).save_pretrained(tmp_path / "w")
    port = _run(f"hf:{tmp_path / 'w'}", tmp_path / "hf").path
    r = agree_runs(stores["honest"], port, min_iou=0.99)
    assert r.passed and len(r.per_prompt) == 6, r.format_table()
    assert all(g["frac_ge_0.99"] == 1.0 and abs(g["delta"]) < 1.0 for g in r.groups)
    assert float(r.per_prompt["score_diff"].abs().max()) < 1e-3
    (check,) = api.verify(port, rerun=1).checks  # a transformers directory is found by its recorded identity
    assert check.status == "passed" and check.worst_iou >= 0.999


def test_agree_min_iou_and_leaderboard_rerun_flags_are_checked_in_one_line(tmp_path):
    from sambench.cli.main import main
    from sambench.types import SambenchError

    with pytest.raises(SambenchError, match=r"^agree: --min-iou must be <= 1 \(an IoU\), got 1.5$"):
        agree_runs(tmp_path, tmp_path, min_iou=1.5)
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path), "--out", str(tmp_path / "b"), "--rerun", "2"])
    assert res.exit_code == 2 and "give --verify --rerun N" in res.output


def test_a_baseline_is_recorded_as_rerun_on_the_cpu_not_on_auto(tmp_path):
    # box-fill has no device: it computes on the CPU whatever --device says, so the board says cpu
    path = _run("box-fill", tmp_path / "bf", levels=[0], draws=1, limit=1).path
    (check,) = api.verify(path, rerun=1).checks
    assert (check.status, check.device, check.prompts) == ("passed", "cpu", 1)
