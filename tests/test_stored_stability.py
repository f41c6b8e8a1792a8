"""Per-object stability stored at write time (the ``objects`` table): exact, used only where it holds.

A run stores, with each image's rows and in their transaction, ``metrics.stability`` of every (object, level,
condition) group's ok masks in draw order and how many masks that was (``draws``). The report takes a group's
stored numbers only when ``draws`` equals the group's ok rows, and computes the others as before.
"""

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sambench
from sambench.analysis import summary
from sambench.analysis.summary import per_object, summarize
from sambench.datasets import DatasetSpec
from sambench.execution import RunConfig, run
from sambench.metrics import stability
from sambench.store import OBJECT_KEY_COLUMNS, OBJECTS_COLUMNS, load_objects, load_runs, read_rows
try:
    from run_fixtures import sambench_cli, sigkill, stored_rows, wait_for_rows
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import sambench_cli, sigkill, stored_rows, wait_for_rows

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_1 = ROOT / "tests" / "fixtures" / "store-schema-1"  # results/default as the schema-1 store wrote it
CLICKS = """name: clicks2
version: 1
kind: clicks
max_clicks: 2
start: gt-box
feed_logits: true
draws: 1
seed: 0
mask_selection: single
preprocessing: sam
"""
NOISY = "name: nb3\nversion: 1\nkind: noisy-box\nlevels: [0, 0.5]\ndraws: 3\n"


def _config(out, **kw):
    base = dict(models=["box-fill"], protocols=["noisy-box"], datasets=[DatasetSpec("grabcut-sample")], out=out,
                levels=["0", "0.5"], draws=3, limit=2, workers=1, progress=False)
    base.update(kw)
    return RunConfig(**base)


def _objects_table(run_dir) -> list[tuple]:
    con = sqlite3.connect(str(Path(run_dir) / "results.sqlite"))
    try:
        return con.execute(f"SELECT {', '.join(OBJECTS_COLUMNS)} FROM objects ORDER BY "
                           f"{', '.join(OBJECT_KEY_COLUMNS)}").fetchall()
    finally:
        con.close()


def _recomputed(run_dir) -> dict[tuple, tuple]:
    """Group key → (ok rows, pairwise, union) of ``metrics.stability`` over the stored ok masks in draw order."""
    df = read_rows(run_dir)
    ok = df[df["status"] == "ok"].sort_values("draw", kind="stable")
    out = {}
    for key, g in ok.groupby(list(OBJECT_KEY_COLUMNS), sort=True):
        out[tuple(key)] = (len(g), *stability([json.loads(t) for t in g["mask_rle"]]))
    return out


def _same_float(a: float, b: float) -> bool:
    """Equal bit for bit (NaN equals NaN)."""
    return np.float64(a).tobytes() == np.float64(b).tobytes() or (np.isnan(a) and np.isnan(b))


def _count_stability(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = summary.stability
    monkeypatch.setattr(summary, "stability", lambda rles: calls.append(len(rles)) or real(rles))
    return calls


def _report_texts(out: Path) -> dict[str, bytes]:
    """Every report file, timestamps masked (PNG figures compared as they are)."""
    stamp = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
    return {p.name: stamp.sub(b"T", p.read_bytes()) for p in sorted(out.iterdir())}


def test_stored_stability_equals_metrics_stability_recomputed_bit_for_bit(tmp_path, monkeypatch):
    """Batch rows (noisy-box, 3 draws, clean and corrupted) and click rows (one draw per step): every group's
    stored (draws, pairwise, union) is metrics.stability of its stored ok masks in draw order, bit for bit."""
    cards = tmp_path / "cards" / "protocols"
    cards.mkdir(parents=True)
    (cards / "clicks2.yaml").write_text(CLICKS)
    (cards / "nb3.yaml").write_text(NOISY)
    monkeypatch.setenv("SAMBENCH_CARDS", str(tmp_path / "cards"))
    run(_config(tmp_path / "r", models=["box-fill", "grabcut"], protocols=["nb3", "clicks2"], levels=None, draws=None,
                corruptions=["fog:1"], model_options={"grabcut": {"max_side": 96, "iterations": 1}}))
    stored = _objects_table(tmp_path / "r")
    expected = _recomputed(tmp_path / "r")
    assert {r[:len(OBJECT_KEY_COLUMNS)] for r in stored} == set(expected)
    assert {r[4] for r in stored} == {"nb3", "clicks2"} and {r[6] for r in stored} == {"none", "fog"}
    assert any(r[-3] == 3 for r in stored)  # noisy-box at 0.5: three draws
    for *key, draws, pairwise, union in stored:
        n, p, u = expected[tuple(key)]
        pairwise = float("nan") if pairwise is None else pairwise
        union = float("nan") if union is None else union
        assert draws == n and _same_float(pairwise, p) and _same_float(union, u), key


def test_per_object_takes_a_stored_group_only_when_its_draws_match_the_ok_rows(tmp_path, monkeypatch):
    """The validity rule: an entry whose draws differ from the group's ok rows, or whose rows come out of
    draw order, is computed from the masks; a matching one is taken as stored."""
    run(_config(tmp_path / "r"))
    rows, stored = read_rows(tmp_path / "r"), load_objects([tmp_path / "r"])
    assert len(stored) and (stored["draws"] > 1).any()
    fake = stored.assign(stability_pairwise=0.25, stability_union=0.5)  # marks every stored number
    wrong = fake["draws"] > 1
    fake.loc[wrong, "draws"] += 1  # these entries do not hold
    calls = _count_stability(monkeypatch)
    objs = per_object(rows, fake)
    assert len(calls) == int(wrong.sum())
    truth = per_object(rows)
    merged = objs.merge(fake[list(OBJECT_KEY_COLUMNS) + ["draws"]].rename(columns={"draws": "stored_draws"}),
                        on=list(OBJECT_KEY_COLUMNS))
    taken = merged["draws"] == merged["stored_draws"]
    assert (merged.loc[taken, "stability_pairwise"] == 0.25).all() and (merged.loc[taken, "stability_union"] == 0.5).all()
    pd.testing.assert_frame_equal(objs[~taken.to_numpy()], truth[~taken.to_numpy()])
    # the same rows out of draw order: their stored numbers were summed in another order, so not taken
    calls.clear()
    shuffled = rows.iloc[::-1].reset_index(drop=True)
    back = per_object(shuffled, stored)
    assert len(calls) == int((stored["draws"] > 1).sum())
    assert back["stability_pairwise"].notna().all()


def test_shards_merged_take_every_stored_group_and_equal_the_unsharded_run(tmp_path, monkeypatch):
    """load_objects merges the entries of shards (disjoint images): every group of the merged rows is stored,
    and the per-object table is the unsharded run's."""
    for name, shard in (("a", (0, 2)), ("b", (1, 2)), ("all", None)):
        run(_config(tmp_path / name, shard=shard, limit=4))
    shards = [tmp_path / "a", tmp_path / "b"]
    rows, stored = load_runs(shards)[0], load_objects(shards)
    assert len(stored) == len(load_objects([tmp_path / "a"])) + len(load_objects([tmp_path / "b"]))
    calls = _count_stability(monkeypatch)
    objs = per_object(rows, stored)
    assert calls == []
    pd.testing.assert_frame_equal(objs, per_object(read_rows(tmp_path / "all"), load_objects([tmp_path / "all"])))


@pytest.mark.slow
def test_a_report_over_a_fully_stored_run_computes_no_stability_and_writes_the_same_files(tmp_path, monkeypatch):
    """Every group of a fresh run is stored: the report calls metrics.stability zero times, and its files are
    those of the same store with the objects table dropped (every group computed, as before)."""
    from sambench.report import write_report

    run(_config(tmp_path / "r", models=["box-fill", "grabcut"], model_options={"grabcut": {"max_side": 96,
                                                                                          "iterations": 1}}))
    calls = _count_stability(monkeypatch)
    write_report([tmp_path / "r"], tmp_path / "out" / "stored", formats=("png",), n_boot=50)
    assert calls == []
    con = sqlite3.connect(str(tmp_path / "r" / "results.sqlite"))
    groups = con.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
    con.execute("DROP TABLE objects")
    con.commit()
    con.close()
    write_report([tmp_path / "r"], tmp_path / "out" / "computed", formats=("png",), n_boot=50)
    assert len(calls) == groups > 0
    assert _report_texts(tmp_path / "out" / "stored") == _report_texts(tmp_path / "out" / "computed")


def test_a_retried_failed_draw_is_reported_from_the_rows_not_the_stored_subset(tmp_path, monkeypatch):
    """``--retry-failed`` re-runs failed draws in a batch of their own: the entry it stores covers those draws
    only, so the report computes the group from all its rows (and the stored subset differs from that)."""
    from sambench.adapters.baselines import BoxFillAdapter

    real = BoxFillAdapter.predict
    calls = {"n": 0}

    def flaky(self, state, prompts, mask_selection="single"):
        calls["n"] += 1
        if calls["n"] == 2:  # the second chunk of the first image: draws 2 and 3
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, state, prompts, mask_selection)

    monkeypatch.setattr(BoxFillAdapter, "predict", flaky)
    cfg = _config(tmp_path / "r", prompts_per_call=2, levels=["0.5"], draws=4)
    assert run(cfg).counts == {"ok": 6, "failed": 2}
    cfg.retry_failed = True
    assert run(cfg).counts == {"ok": 8, "failed": 0}
    rows, stored = read_rows(tmp_path / "r"), load_objects([tmp_path / "r"])
    truth = _recomputed(tmp_path / "r")
    retried = stored[stored["draws"] == 2]
    assert len(retried) == 1  # the retried group: its entry holds the two re-run draws of four
    key = tuple(retried[list(OBJECT_KEY_COLUMNS)].iloc[0])
    assert truth[key][0] == 4 and retried["stability_pairwise"].iloc[0] != truth[key][1]
    counted = _count_stability(monkeypatch)
    objs = per_object(rows, stored)
    assert len(counted) == 1  # only the retried group; the other image's entry holds its four draws
    assert objs.equals(per_object(rows))
    assert sambench.open_run(tmp_path / "r").summary().equals(summarize(rows))


def test_a_store_without_the_objects_table_reports_as_before(tmp_path, monkeypatch):
    """A schema-1 store (tests/fixtures/store-schema-1, no objects table) is read as it is: nothing stored, every
    group computed from the rows, and the file left untouched."""
    run_dir = tmp_path / "default"
    run_dir.mkdir()
    for name in ("results.sqlite", "manifest.json"):
        shutil.copy(SCHEMA_1 / name, run_dir / name)
    digest = hashlib.sha256((run_dir / "results.sqlite").read_bytes()).hexdigest()
    stored = load_objects([run_dir])
    assert stored.empty and list(stored.columns) == list(OBJECTS_COLUMNS)
    rows = read_rows(run_dir)
    calls = _count_stability(monkeypatch)
    objs = per_object(rows, stored)
    assert len(calls) == len(objs) > 0
    calls.clear()
    assert per_object(rows).equals(objs) and len(calls) == len(objs)
    assert hashlib.sha256((run_dir / "results.sqlite").read_bytes()).hexdigest() == digest


def test_a_writable_open_adds_the_objects_table_and_keeps_the_rows(tmp_path):
    """An older store gains the (empty) objects table on its next writable open; its rows are unchanged."""
    from sambench.store import Store

    shutil.copy(SCHEMA_1 / "results.sqlite", tmp_path / "results.sqlite")
    before = read_rows(tmp_path)
    Store(tmp_path).close()
    assert _objects_table(tmp_path) == []
    pd.testing.assert_frame_equal(read_rows(tmp_path), before)


@pytest.mark.slow
def test_a_sigkilled_resumed_run_stores_the_stability_of_an_uninterrupted_one(tmp_path):
    """Rows and their stability are written in one transaction: a run SIGKILLed mid-way and resumed ends with
    the objects table (and rows) of an uninterrupted run."""
    args = ["run", "-m", "grabcut", "-p", "noisy-box", "--levels", "0,0.5", "--draws", "3", "--limit", "6",
            "--workers", "1", "--option", "grabcut.max_side=96", "--no-report", "-q"]
    proc = subprocess.Popen(sambench_cli(*args, "--out", str(tmp_path / "k")), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for_rows(proc, tmp_path / "k", rows=4)
    sigkill(proc)
    killed = _objects_table(tmp_path / "k")
    assert 0 < len(killed) < 12  # some images' entries, not all
    for out in ("k", "u"):
        p = subprocess.run(sambench_cli(*args, "--out", str(tmp_path / out)), capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    assert _objects_table(tmp_path / "k") == _objects_table(tmp_path / "u")
    assert stored_rows(tmp_path / "k") == stored_rows(tmp_path / "u")
