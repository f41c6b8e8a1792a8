"""Tests of sambench compare: identical runs pass, eroded masks fail, mismatches are refused.

The stores are synthetic (real RLE masks, IoU from sambench.metrics); expected deltas and p-values are
recomputed here from the rows (per-object means over draws, then scipy's Wilcoxon on the differences).
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import wilcoxon

from sambench.metrics import boundary_iou, decode_rle, encode_rle, iou
from sambench.cli.report import compare_cmd
from sambench.analysis.compare import CompareRefused, compare_runs
from sambench.store import Row, Store, write_manifest
from sambench.types import Prompt

H, W = 40, 56
IMAGES = ("a", "b", "c", "d", "e")  # 15 objects: scipy takes its fast paths
N_OBJ = 3
LEVELS = (("0.5", 0.5), ("1", 1.0))
DRAWS = 4
MODELS = ("m1", "m2")


def gt(image_id: str, k: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    cx, cy = 12 + 15 * k, 10 + 5 * IMAGES.index(image_id)
    if k % 2:
        cv2.ellipse(m, (cx, cy), (6, 5), 0, 0, 360, 1, -1)
    else:
        cv2.rectangle(m, (cx - 6, cy - 5), (cx + 6, cy + 5), 1, -1)
    return m.astype(bool)


def pred(model: str, g: np.ndarray, value: float, draw: int) -> np.ndarray:
    if model == "m1":  # exact, or one pixel off: any erosion makes it worse
        return np.roll(g, draw % 2, axis=1)
    return np.roll(g, int(round(2 * value)) + draw % 3, axis=0)


def make_run(run_dir) -> None:
    rows = []
    for image_id in IMAGES:
        for model in MODELS:
            for level, value in LEVELS:
                for draw in range(DRAWS):
                    for k in range(N_OBJ):
                        g = gt(image_id, k)
                        p = Prompt(box=(float(k), float(draw), 20.0 + value, 30.0))
                        m = pred(model, g, value, draw)
                        rows.append(Row(model, "ds", image_id, f"o{k}", "noisy-box", level, draw, 1, value, p.to_json(),
                                        p.hash(), iou(m, g), boundary_iou(m, g), 0.9, int(g.sum()), int(m.sum()),
                                        json.dumps(encode_rle(m))))
    with Store(run_dir) as st:
        st.write(rows)
    write_manifest(run_dir, {"protocols": {"noisy-box": {"version": 1, "prompt_hash": {"ds": "x"}}},
                             "datasets": {"ds": {"content_hash": "h-ds", "n_images": len(IMAGES)}}})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("base") / "run"
    make_run(d)
    return d


def copy_run(base, dst):
    shutil.copytree(base, dst)
    return dst


def edit_rows(run_dir, sql: str) -> int:
    """Apply one SQL statement to a run's results table; returns the rows it touched."""
    con = sqlite3.connect(run_dir / "results.sqlite")
    n = con.execute(sql).rowcount
    con.commit()
    con.close()
    return n


def erode_model(run_dir, model: str, iterations: int = 1, where: str = "") -> None:
    """Erode the stored masks of ``model`` and recompute IoU/BIoU against the GT (metrics.iou)."""
    con = sqlite3.connect(run_dir / "results.sqlite")
    cur = con.execute(f"SELECT image_id, object_id, protocol, level, draw, mask_rle FROM results WHERE model=? {where}", (model,))
    for image_id, object_id, protocol, level, draw, rle in cur.fetchall():
        m = decode_rle(json.loads(rle)).astype(np.uint8)
        e = cv2.erode(m, np.ones((3, 3), np.uint8), iterations=iterations).astype(bool)
        g = gt(image_id, int(object_id[1:]))
        con.execute("UPDATE results SET mask_rle=?, iou=?, biou=? WHERE model=? AND image_id=? AND object_id=? AND "
                    "protocol=? AND level=? AND draw=?", (json.dumps(encode_rle(e)), iou(e, g), boundary_iou(e, g),
                                                          model, image_id, object_id, protocol, level, draw))
    con.commit()
    con.close()


def per_object(run_dir, model, level, col="iou", failed_zero=True) -> dict:
    con = sqlite3.connect(run_dir / "results.sqlite")
    vals: dict = {}
    for image_id, object_id, v, status in con.execute(
            f"SELECT image_id, object_id, {col}, status FROM results WHERE model=? AND level=?", (model, level)):
        vals.setdefault((image_id, object_id), []).append(0.0 if status == "failed" else v)
    con.close()
    return {k: sum(v) / len(v) for k, v in vals.items()}


def group(result, model, level) -> dict:
    return next(g for g in result.groups if g["model"] == model and g["level"] == level)


# ------------------------------------------------------------------------------------------ verdicts


def test_identical_runs_pass(base, tmp_path):
    cand = copy_run(base, tmp_path / "cand")
    res = compare_runs(base, cand)
    assert res.passed and res.exit_code == 0
    assert len(res.groups) == len(MODELS) * len(LEVELS)
    for g in res.groups:
        assert g["n"] == len(IMAGES) * N_OBJ
        assert g["delta"] == 0.0 and g["ci_lo"] == 0.0 and g["ci_hi"] == 0.0 and g["p_value"] == 1.0
        assert g["baseline"] == g["candidate"]
    assert res.only_baseline == res.only_candidate == 0
    out = CliRunner().invoke(compare_cmd, [str(base), str(cand), "--json", str(tmp_path / "c.json")])
    assert out.exit_code == 0, out.output
    assert "PASS" in out.output
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["passed"] is True and doc["exit_code"] == 0 and len(doc["groups"]) == 4


def test_eroded_model_fails_the_gate(base, tmp_path):
    cand = copy_run(base, tmp_path / "cand")
    erode_model(cand, "m1", iterations=2)
    res = compare_runs(base, cand)
    assert not res.passed and res.exit_code == 1
    assert {(g["model"], g["level"]) for g in res.regressions} == {("m1", "0.5"), ("m1", "1")}
    for level, _ in LEVELS:
        b, c = per_object(base, "m1", level), per_object(cand, "m1", level)
        d = np.array([c[k] - b[k] for k in sorted(b)])
        g = group(res, "m1", level)
        assert g["delta"] == pytest.approx(100 * d.mean())
        assert g["p_value"] == pytest.approx(wilcoxon(d).pvalue)
        assert g["ci_hi"] < 0 and g["ci_lo"] <= g["delta"] <= g["ci_hi"]
        assert group(res, "m2", level)["delta"] == 0.0
    out = CliRunner().invoke(compare_cmd, [str(base), str(cand), "--metric", "mbiou"])
    assert out.exit_code == 1 and "FAIL" in out.output and "m1/ds/noisy-box" in out.output


def test_tolerance_and_significance(base, tmp_path):
    # a uniform 1-px erosion: a real drop, allowed by a 50-point tolerance, not by 0.5
    cand = copy_run(base, tmp_path / "cand")
    erode_model(cand, "m1", iterations=1)
    drop = -group(compare_runs(base, cand), "m1", "1")["delta"]
    assert 0.5 < drop < 50
    assert compare_runs(base, cand, tol=50).passed
    assert not compare_runs(base, cand, tol=0.5).passed
    # one object of 15 eroded: its bootstrap CI reaches 0 (resamples without it), so never significant
    one = copy_run(base, tmp_path / "one")
    erode_model(one, "m1", iterations=3, where="AND image_id='a' AND object_id='o0' AND level='1'")
    res = compare_runs(base, one, tol=0.0)
    g = group(res, "m1", "1")
    assert g["delta"] < 0 and g["ci_hi"] == 0.0 and not g["regression"] and res.passed


# ------------------------------------------------------------------------------------------ refusals


def test_prompt_mismatch_is_refused(base, tmp_path):
    cand = copy_run(base, tmp_path / "cand")
    edit_rows(cand, "UPDATE results SET prompt_hash='deadbeef' WHERE model='m2' AND image_id='b' AND object_id='o1' "
                "AND level='1' AND draw=3")
    with pytest.raises(CompareRefused, match=r"prompts differ.*1 key\(s\).*model=m2.*image_id=b.*object_id=o1"):
        compare_runs(base, cand)
    out = CliRunner().invoke(compare_cmd, [str(base), str(cand)])
    assert out.exit_code == 2
    err = [l for l in out.output.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "--allow-prompt-mismatch" in err[0]
    res = compare_runs(base, cand, allow_prompt_mismatch=True)
    assert res.passed and any("prompts differ" in w for w in res.warnings)


def test_protocol_version_mismatch_is_refused(base, tmp_path):
    cand = copy_run(base, tmp_path / "cand")
    man = json.loads((cand / "manifest.json").read_text())
    man["protocols"]["noisy-box"]["version"] = 2
    write_manifest(cand, man)
    with pytest.raises(CompareRefused, match="protocol 'noisy-box' version 1 vs 2"):
        compare_runs(base, cand)


def test_changed_decoding_under_the_same_version_is_refused(base, tmp_path):
    runs = {}
    for name, selection in (("a", "single"), ("b", "best-of-3")):
        runs[name] = copy_run(base, tmp_path / name)
        man = json.loads((runs[name] / "manifest.json").read_text())
        man["protocols"]["noisy-box"].setdefault("identity", {})["mask_selection"] = selection
        write_manifest(runs[name], man)
    with pytest.raises(CompareRefused, match="mask_selection single vs best-of-3"):
        compare_runs(runs["a"], runs["b"])


def test_dataset_mismatch_is_refused(base, tmp_path):
    cand = copy_run(base, tmp_path / "cand")
    man = json.loads((cand / "manifest.json").read_text())
    man["datasets"]["ds"]["content_hash"] = "other"
    write_manifest(cand, man)
    with pytest.raises(CompareRefused, match="dataset 'ds' content hash h-ds vs other"):
        compare_runs(base, cand)
    out = CliRunner().invoke(compare_cmd, [str(base), str(cand)])
    assert out.exit_code == 2 and "--allow-dataset-mismatch" in out.output
    out = CliRunner().invoke(compare_cmd, [str(base), str(cand), "--allow-dataset-mismatch"])
    assert out.exit_code == 0 and "warning: datasets differ" in out.output


def test_nothing_in_common_is_refused(base, tmp_path):
    other = tmp_path / "other"
    with Store(other) as st:
        st.write([Row("zz", "ds", "a", "o0", "noisy-box", "1", 0, 1, 1.0, None, None, 0.5, 0.5)])
    with pytest.raises(CompareRefused, match="share no result key"):
        compare_runs(base, other)
    out = CliRunner().invoke(compare_cmd, [str(base), str(tmp_path / "missing")])
    assert out.exit_code == 2 and "not a sambench run directory" in out.output


# ------------------------------------------------------------------------------------------ missing keys, failures


def test_keys_in_one_run_only_are_counted(base, tmp_path):
    cand = copy_run(base, tmp_path / "cand")
    n = edit_rows(cand, "DELETE FROM results WHERE model='m2' AND level='0.5' AND draw=3")
    res = compare_runs(base, cand)
    assert n == len(IMAGES) * N_OBJ
    assert res.only_baseline == n and res.only_candidate == 0
    assert group(res, "m2", "0.5")["only_baseline"] == n and group(res, "m1", "0.5")["only_baseline"] == 0
    assert any(f"{n} key(s) only in the baseline" in w for w in res.warnings)
    assert len(res.only_examples["baseline"]) == 5
    assert res.passed  # the remaining draws are identical
    assert f"keys only in baseline: {n}" in res.format_table()


def test_failures_score_zero(base, tmp_path):
    cand = copy_run(base, tmp_path / "cand")
    edit_rows(cand, "UPDATE results SET status='failed', error='boom', iou=NULL, biou=NULL WHERE model='m1' AND "
                "image_id='c' AND object_id='o2' AND level='0.5' AND draw=1")
    b = per_object(base, "m1", "0.5")
    c = per_object(cand, "m1", "0.5")  # the failed draw counts as 0
    res = compare_runs(base, cand)
    g = group(res, "m1", "0.5")
    assert g["cand_failed"] == 1 and g["new_failures"] == 1 and g["base_failed"] == 0
    assert res.failures == {"baseline": 0, "candidate": 1, "new": 1, "fixed": 0}
    expected = np.mean([c[k] - b[k] for k in b])
    assert g["delta"] == pytest.approx(100 * expected) and g["delta"] < 0


def test_image_failure_stands_for_its_objects(base, tmp_path):
    cand = copy_run(base, tmp_path / "cand")
    n = edit_rows(cand, "DELETE FROM results WHERE model='m2' AND image_id='d'")
    with Store(cand) as st:
        st.write([Row("m2", "ds", "d", "", "noisy-box", "", -1, 1, status="failed", error="unreadable image")])
    res = compare_runs(base, cand)
    assert res.only_baseline == 0 and res.only_candidate == 0
    per_level = n // len(LEVELS)
    for level, _ in LEVELS:
        g = group(res, "m2", level)
        assert g["cand_failed"] == per_level and g["n"] == len(IMAGES) * N_OBJ
        b = per_object(base, "m2", level)
        expected = np.mean([(0.0 if k[0] == "d" else v) - v for k, v in b.items()])
        assert g["delta"] == pytest.approx(100 * expected)
    assert res.failures["new"] == n


def test_shards_are_merged(base, tmp_path):
    parts = []
    for i, keep in enumerate((("a", "b"), ("c", "d", "e"))):
        d = copy_run(base, tmp_path / f"shard{i}")
        con = sqlite3.connect(d / "results.sqlite")
        con.execute(f"DELETE FROM results WHERE image_id NOT IN ({','.join('?' * len(keep))})", keep)
        con.commit()
        con.close()
        parts.append(d)
    res = compare_runs(base, parts)
    assert res.passed and res.only_baseline == 0 and res.candidate == f"{parts[0]}+{parts[1]}"
    assert all(g["n"] == len(IMAGES) * N_OBJ and g["delta"] == 0.0 for g in res.groups)
    assert compare_runs(base, parts[:1]).only_baseline == 3 * N_OBJ * DRAWS * len(LEVELS) * len(MODELS)
    out = CliRunner().invoke(compare_cmd, [str(base), f"{parts[0]},{parts[1]}"])
    assert out.exit_code == 0 and "keys only in baseline: 0;" in out.output
    # a model the candidate never ran is listed as a group of its own, not dropped
    con = sqlite3.connect(parts[1] / "results.sqlite")
    con.execute("DELETE FROM results WHERE model='m2'")
    con.commit()
    con.close()
    res = compare_runs(base, parts[1])
    lonely = [g for g in res.groups if g["model"] == "m2"]
    assert len(lonely) == 2 and all(g["n"] == 0 and not g["regression"] for g in lonely)
    assert lonely[0]["only_baseline"] == len(IMAGES) * N_OBJ * DRAWS
    assert "only in baseline" in res.format_table() and res.passed
    json.dumps(res.to_dict(), allow_nan=False)  # NaN statistics are written as null


def test_wilcoxon_matches_scipy():
    from sambench.analysis import stats

    rng = np.random.default_rng(3)
    cases = [rng.normal(-0.1, 0.1, 20),  # no ties: exact
             np.round(rng.normal(-0.1, 0.1, 30), 2),  # ties, n > 13: normal approximation
             np.array([-0.2, -0.2, -0.1, 0.0, 0.05, -0.3, -0.1, 0.0]),  # ties and zeros, n <= 13: permutation
             np.array([0.1, -0.2, 0.3, -0.4, 0.5, -0.6])]
    for d in cases:
        assert stats.wilcoxon(d) == pytest.approx(wilcoxon(d).pvalue, rel=1e-9)
    assert stats.wilcoxon(np.zeros(7)) == 1.0 and math.isnan(stats.wilcoxon(np.zeros(0)))


def test_bad_arguments(base):
    with pytest.raises(Exception, match="unknown metric"):
        compare_runs(base, base, metric="dice")
    out = CliRunner().invoke(compare_cmd, [str(base), str(base), "--tol", "-1"])
    assert out.exit_code == 2


# ------------------------------------------------------------------------------------------ dogfooding

RESULTS = Path(__file__).resolve().parents[1] / "results" / "default"


@pytest.mark.slow
def test_dogfood_default_matches_committed_results(tmp_path):
    """Re-run a slice of the embedded default (2 images, levels 0 and 1, 2 draws) and compare it with the
    committed reference run: every shared key must reproduce exactly; the rest is baseline-only."""
    from sambench.cli.main import main

    assert (RESULTS / "results.sqlite").exists(), "results/default is missing: see results/README.md to regenerate it"
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--limit", "2", "--levels", "0,1", "--draws", "2", "--workers", "1",
                                    "--out", str(out), "--no-report", "--quiet"])
    assert res.exit_code == 0, res.output
    with Store(RESULTS, create=False) as st:
        n_base = sum(st.count().values())
    with Store(out, create=False) as st:
        n_cand = sum(st.count().values())
    assert n_cand == 2 * 2 * (1 + 2)  # 2 models × 2 one-object images × (1 draw at s=0 + 2 at s=1)
    cmp = compare_runs(RESULTS, out)
    assert cmp.passed and cmp.warnings == [f"{n_base - n_cand} key(s) only in the baseline and 0 only in the "
                                           f"candidate are not compared (examples in the JSON)"]
    assert cmp.only_baseline == n_base - n_cand and cmp.only_candidate == 0
    paired = [g for g in cmp.groups if g["n"]]
    assert {(g["model"], g["level"]) for g in paired} == {(m, l) for m in ("grabcut", "box-fill") for l in ("0", "1")}
    for g in paired:
        assert g["n"] == 2 and g["delta"] == 0.0 and g["baseline"] == g["candidate"]
    unpaired = [g for g in cmp.groups if not g["n"]]  # levels 0.2 ... 0.8: baseline only, listed
    assert {g["level"] for g in unpaired} == {"0.2", "0.4", "0.6", "0.8"} and all(g["only_baseline"] == 65 for g in unpaired)
    cli = CliRunner().invoke(main, ["compare", str(RESULTS), str(out), "--metric", "mbiou"])
    assert cli.exit_code == 0 and "PASS" in cli.output


@pytest.mark.slow
def test_dogfood_full_default_run_reproduces_the_committed_results(tmp_path):
    """The README's first command's run, exactly (`sambench run` with no arguments), against results/default:
    every one of the 676 keys must pair and every delta must be 0 (≈45 s on 2 cores)."""
    from sambench.cli.main import main

    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--out", str(out), "--no-report", "--quiet"])
    assert res.exit_code == 0, res.output
    cmp = compare_runs(RESULTS, out)
    assert cmp.passed and cmp.only_baseline == 0 and cmp.only_candidate == 0
    assert len(cmp.groups) == 2 * 6 and all(g["n"] == 13 and g["delta"] == 0.0 for g in cmp.groups)
