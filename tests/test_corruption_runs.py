"""The corruption axis in runs: rows keyed by (corruption, severity), one encode per corrupted image,
masks scored against the clean GT, identity and resume, schema 1 stores, compare and the report."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from sambench.datasets import open_dataset
from sambench.metrics import decode_rle, iou
from sambench.datasets import DatasetSpec
from sambench.execution import RunConfig, run
from sambench.store import KEY_COLUMNS, Store
from sambench.types import SambenchError
try:
    from run_fixtures import error_lines, sambench_cli
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import error_lines, sambench_cli

REPO = Path(__file__).resolve().parents[1]


def _config(out, **kw):
    base = dict(models=["box-fill", "grabcut"], protocols=["gt-box"], datasets=[DatasetSpec("grabcut-sample")],
                out=out, limit=2, workers=1, progress=False, corruptions=["contrast:1,3", "pixelate:2"],
                model_options={"grabcut": {"max_side": 64, "iterations": 1}})
    base.update(kw)
    return RunConfig(**base)


def _frame(run_dir):
    with Store(run_dir, create=False) as st:
        return st.frame()


def test_corruption_is_part_of_the_key_and_rows_cross_every_level(tmp_path):
    assert KEY_COLUMNS[-2:] == ("corruption", "severity")
    res = run(_config(tmp_path / "r"))
    df = _frame(tmp_path / "r")
    # 2 models x 2 images x 1 object x (clean + 3 corrupted levels)
    assert len(df) == 2 * 2 * 4 and res.counts == {"ok": 16, "failed": 0}
    axis = sorted(set(zip(df.corruption, df.severity)))
    assert axis == [("contrast", 1), ("contrast", 3), ("none", 0), ("pixelate", 2)]
    # one GrabCut "encode" per (image, corruption, severity)
    assert res.counters["grabcut"]["encoder_calls"] == 2 * 4
    # the prompt is the clean image's, whatever the corruption: same hash on every level of the axis
    assert df.groupby(["model", "image_id"])["prompt_hash"].nunique().max() == 1
    # masks are scored against the clean ground truth
    ds = open_dataset("grabcut-sample")
    for _, r in df[df.model == "grabcut"].iterrows():
        gt = ds.load(r.image_id).objects[0].mask
        assert r.iou == pytest.approx(iou(decode_rle(json.loads(r.mask_rle)), gt))
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["corruptions"]["seed"] == 0 and set(man["corruptions"]["corruptions"]) == {"contrast", "pixelate"}


@pytest.mark.slow
def test_rows_do_not_depend_on_workers(tmp_path):
    """Two worker processes corrupt and score the images exactly as one: the corrupted pixels are keyed."""
    run(_config(tmp_path / "one", models=["grabcut"], corruptions=["gaussian-noise:2", "rain:3"], workers=1))
    run(_config(tmp_path / "two", models=["grabcut"], corruptions=["gaussian-noise:2", "rain:3"], workers=2))
    a, b = _frame(tmp_path / "one"), _frame(tmp_path / "two")
    assert len(a) == 2 * 3 and a.equals(b)


def test_grabcut_sees_the_corrupted_image(tmp_path):
    run(_config(tmp_path / "r", models=["grabcut"], corruptions=["contrast:5"], limit=3))
    df = _frame(tmp_path / "r")
    clean = df[df.corruption == "none"].set_index("image_id")["mask_rle"]
    low = df[df.corruption == "contrast"].set_index("image_id")["mask_rle"]
    assert (clean != low).any()  # at contrast 5 GrabCut segments something else
    assert df[df.model == "grabcut"].groupby("image_id").size().eq(2).all()


def test_resume_and_identity(tmp_path):
    run(_config(tmp_path / "a"))
    again = run(_config(tmp_path / "a"))
    assert again.rows_added == 0 and again.counters["grabcut"]["encoder_calls"] == 0
    more = run(_config(tmp_path / "a", corruptions=["contrast:1,3", "pixelate:2", "fog:1"]))
    assert more.rows_added == 2 * 2 and more.counters["grabcut"]["encoder_calls"] == 2
    for name, field, value, needle in [("fog", "version", 99, "corruption 'fog' with version 99"),
                                       ("contrast", "seed", 3, "corruption 'contrast' with seed 3, this run has 0")]:
        d = tmp_path / f"edited-{name}"
        shutil.copytree(tmp_path / "a", d)
        with Store(d) as st:  # as if the stored rows were made by another definition or seed
            info = json.loads(st.conn.execute("SELECT value FROM info WHERE key=?", (f"corruption:{name}",)).fetchone()[0])
            info[field] = value
            with st.conn:
                st.conn.execute("UPDATE info SET value=? WHERE key=?", (json.dumps(info), f"corruption:{name}"))
        with pytest.raises(SambenchError, match=needle):
            run(_config(d, corruptions=["fog:1", "contrast:1"]))


@pytest.mark.slow
def test_one_encode_per_corrupted_image_on_sam_tiny(tmp_path):
    """Two protocols share each (image, corruption, severity) encode; a resume encodes nothing."""
    kw = dict(models=["sam-tiny"], protocols=["gt-box", "points"], levels=None, draws=2, corruptions=["fog:2"],
              limit=1, device="cpu", model_options={})
    res = run(_config(tmp_path / "r", **kw))
    df = _frame(tmp_path / "r")
    assert res.counters["sam-tiny"]["encoder_calls"] == 1 * 2  # clean + fog 2
    assert res.counters["sam-tiny"]["decoded_prompts"] == len(df) and set(df.protocol) == {"gt-box", "points"}
    assert len(df) == 2 * len(df[df.corruption == "none"])
    assert run(_config(tmp_path / "r", **kw)).counters["sam-tiny"]["encoder_calls"] == 0


def _v1_copy(tmp_path) -> Path:
    dst = tmp_path / "default"
    shutil.copytree(REPO / "tests" / "fixtures" / "store-schema-1", dst)  # results/default as schema 1 wrote it
    return dst


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_schema_1_store_opens_read_only_and_compares_with_zero_delta(tmp_path):
    from sambench.analysis.compare import compare_runs

    d = _v1_copy(tmp_path)
    before = _digest(d / "results.sqlite")
    with Store(d, create=False) as st:
        df = st.frame()
        assert st.schema_version == 1
    assert len(df) == 676 and set(df.corruption) == {"none"} and set(df.severity) == {0}
    res = compare_runs(d, d)
    assert res.passed and all(g["delta"] == 0 for g in res.groups) and len(res.groups) == 12
    assert _digest(d / "results.sqlite") == before  # reading never migrates or writes


def test_schema_1_store_is_migrated_when_a_run_writes_to_it(tmp_path):
    d = _v1_copy(tmp_path)
    old = _frame(d)
    res = run(_config(d, models=["box-fill"], protocols=["noisy-box"], levels=["0", "0.2", "0.4", "0.6", "0.8", "1"],
                      draws=5, corruptions=["contrast:1"], limit=2))
    with Store(d, create=False) as st:
        assert st.schema_version == 2
        new = st.frame()
    assert res.rows_added == 2 * 26  # box-fill's contrast-1 rows; its clean rows were already there
    same = new[new.corruption == "none"].drop(columns=[]).reset_index(drop=True)
    pd_old = old.reset_index(drop=True)
    assert same[list(pd_old.columns)].equals(pd_old)


def test_compare_gates_per_corruption(tmp_path):
    from sambench.analysis.compare import compare_runs

    run(_config(tmp_path / "a", models=["box-fill"], limit=4))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    con = sqlite3.connect(tmp_path / "b" / "results.sqlite")
    con.execute("UPDATE results SET iou = iou - 0.2 WHERE corruption='contrast' AND severity=3")
    con.commit()
    con.close()
    res = compare_runs(tmp_path / "a", tmp_path / "b", tol=1.0)
    assert not res.passed
    assert [(g["corruption"], g["severity"]) for g in res.regressions] == [("contrast", 3)]


@pytest.mark.slow
def test_cli_and_card(tmp_path):
    p = subprocess.run(sambench_cli("run", "-m", "box-fill", "-p", "gt-box", "--corruption", "fgo",
                                    "--out", str(tmp_path / "x"), "-q", "--no-report"), capture_output=True, text=True)
    errors = error_lines(p.stderr)
    assert p.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: unknown corruption 'fgo'")
    from sambench.config import load_protocol_card

    card = load_protocol_card("corruptions")
    assert card.corruptions == ("all",) and [s.kind for s in card.settings] == ["gt-box"]
