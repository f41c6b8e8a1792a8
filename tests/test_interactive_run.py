"""The interactive protocol end to end: runner rows, one encode per image, resume, report, compare, cards."""

import json
import shutil
import sqlite3

import numpy as np
import pytest
from scipy import ndimage

from sambench.config import load_protocol_card, with_overrides
from sambench.datasets import open_dataset
from sambench.metrics import decode_rle, iou
from sambench.analysis.noc import noc_table
from sambench.datasets import DatasetSpec
from sambench.execution import RunConfig, run
try:
    from run_fixtures import stored_rows
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import stored_rows
from sambench.types import Prompt, SambenchError

CARD = """name: clicks3
version: 1
kind: clicks
max_clicks: 3
start: {start}
feed_logits: true
draws: 1
seed: 0
mask_selection: single
preprocessing: sam
"""


@pytest.fixture()
def cards(tmp_path, monkeypatch):
    d = tmp_path / "cards" / "protocols"
    d.mkdir(parents=True)
    (d / "clicks3.yaml").write_text(CARD.format(start="click"))
    (d / "clicks3-box.yaml").write_text(CARD.format(start="gt-box").replace("name: clicks3", "name: clicks3-box"))
    (d / "nb0.yaml").write_text("name: nb0\nversion: 1\nkind: noisy-box\nlevels: [0]\ndraws: 1\n")
    monkeypatch.setenv("SAMBENCH_CARDS", str(tmp_path / "cards"))
    return d


def _config(out, **kw):
    base = dict(models=["grabcut"], protocols=["clicks3", "nb0"], datasets=[DatasetSpec("grabcut-sample")], out=out,
                limit=2, workers=1, progress=False, model_options={"grabcut": {"max_side": 96, "iterations": 1}})
    base.update(kw)
    return RunConfig(**base)


def _reference_click(gt, pred, clicked):
    """RITM's rule written independently in exact arithmetic (scipy's EDT, float64 square roots of integers,
    which keep every tie a tie): (x, y, label). RITM's own float32 distances can break a tie differently."""
    def depth(region):
        return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1] * ~clicked
    fn, fp = depth(gt & ~pred), depth(~gt & pred)
    positive = fn.max() > fp.max()
    r, c = np.argwhere((fn if positive else fp) == (fn if positive else fp).max())[0]
    return float(c), float(r), int(positive)


def test_grabcut_runs_click_sequences_with_one_encode_per_image(tmp_path, cards):
    res = run(_config(tmp_path / "r"))
    # 2 images x (3 click steps + 1 noisy-box row), one encode per image shared by both protocols
    assert res.counts == {"ok": 8, "failed": 0}
    assert res.counters["grabcut"] == {"encoder_calls": 2, "decoded_prompts": 8}
    df = res.rows
    ds = open_dataset("grabcut-sample")
    for image_id in ds.ids()[:2]:
        gt = ds.load(image_id).objects[0].mask
        seq = df[(df.image_id == image_id) & (df.protocol == "clicks3")].sort_values("level")
        assert seq["level"].tolist() == ["1", "2", "3"] and seq["level_value"].tolist() == [1.0, 2.0, 3.0]
        _check_clicks_follow_the_stored_masks(seq, gt)
    noc = noc_table(df, {"clicks3"}, n_boot=50)
    assert noc["n"].tolist() == [2] and noc["click_limit"].tolist() == [3]
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["protocols"]["clicks3"]["identity"]["settings"][0]["kind"] == "clicks"


def _check_clicks_follow_the_stored_masks(seq, gt) -> None:
    """Every stored click (of a sequence started by a click) is the one RITM's rule picks from the previous
    stored mask and GT ``gt``."""
    pred, clicked = np.zeros_like(gt), np.zeros_like(gt)
    for k, (_, r) in enumerate(seq.sort_values("level_value").iterrows(), start=1):
        prompt = Prompt.from_json(r.prompt)
        x, y, lab = _reference_click(gt, pred, clicked)
        assert len(prompt.points) == k and prompt.box is None
        assert (prompt.points[-1], prompt.labels[-1]) == ((x, y), lab) and json.loads(r.extras) == {"click": [x, y, lab]}
        clicked[int(y), int(x)] = True
        pred = decode_rle(json.loads(r.mask_rle))
        assert r.iou == pytest.approx(iou(pred, gt))


@pytest.mark.slow
def test_click_sequences_cross_corruptions_with_one_encode_per_image_version(tmp_path, cards):
    """``--corruption`` crosses click protocols too: each corrupted copy gets its own sequences, keyed by
    (corruption, severity), encoded once, resumable, reported by corruption and gated by ``compare``."""
    from click.testing import CliRunner

    from sambench.cli.main import main
    from sambench.report import write_report

    cfg = _config(tmp_path / "r", protocols=["clicks3"], limit=1, corruptions=["contrast:5"])
    res = run(cfg)
    assert res.counts == {"ok": 6, "failed": 0}
    assert res.counters["grabcut"]["encoder_calls"] == 2  # the clean image and its one corrupted copy
    df = res.rows
    gt = open_dataset("grabcut-sample").load("banana1").objects[0].mask
    clean, corrupted = df[df.severity == 0], df[df.severity == 5]
    assert sorted(clean.level) == sorted(corrupted.level) == ["1", "2", "3"]
    assert set(corrupted.corruption) == {"contrast"}
    for seq in (clean, corrupted):
        _check_clicks_follow_the_stored_masks(seq, gt)
    assert clean.mask_rle.tolist() != corrupted.mask_rle.tolist()  # the model saw another image
    before = stored_rows(tmp_path / "r")
    con = sqlite3.connect(str(tmp_path / "r" / "results.sqlite"))
    con.execute("DELETE FROM results WHERE severity=5 AND level='3'")
    con.commit()
    con.close()
    again = run(cfg)
    assert again.rows_added == 1 and again.counters["grabcut"]["encoder_calls"] == 1  # the corrupted copy only
    assert stored_rows(tmp_path / "r") == before

    written = write_report([tmp_path / "r"], tmp_path / "rep", formats=("png",), n_boot=50)
    assert "noc_corruptions.csv" in written and "corruption_heatmap.png" not in written
    by_image = noc_table(df, {"clicks3"}, n_boot=50, by_corruption=True)
    assert by_image[["corruption", "severity", "n"]].values.tolist() == [["contrast", 5, 1], ["none", 0, 1]]
    assert noc_table(df, {"clicks3"}, n_boot=50)["n"].tolist() == [1]  # noc.csv: the clean sequences
    for d, where in (("a", "1"), ("b", "severity=0")):  # a: NoC 1 everywhere; b: never reaches 90 % under contrast
        shutil.copytree(tmp_path / "r", tmp_path / d)
        con = sqlite3.connect(str(tmp_path / d / "results.sqlite"))
        con.execute(f"UPDATE results SET iou=CASE WHEN {where} THEN 0.95 ELSE 0.5 END")
        con.commit()
        con.close()
    out = CliRunner().invoke(main, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--metric", "noc90"])
    assert out.exit_code == 1, out.output
    assert "FAIL: 1 regression(s) beyond 0.5 clicks: grabcut/grabcut-sample/clicks3/NoC@90/contrast/5 +2.00" in out.output


def test_resume_replays_a_sequence_to_identical_rows(tmp_path, cards):

    run(_config(tmp_path / "r"))
    before = stored_rows(tmp_path / "r")
    con = sqlite3.connect(str(tmp_path / "r" / "results.sqlite"))
    con.execute("DELETE FROM results WHERE protocol='clicks3' AND level='2' AND image_id='banana1'")
    con.commit()
    con.close()
    again = run(_config(tmp_path / "r"))
    assert again.rows_added == 1 and again.counters["grabcut"]["encoder_calls"] == 1  # only banana1, once
    assert stored_rows(tmp_path / "r") == before


def test_leaderboard_verify_replays_click_sequences(tmp_path, cards):
    """``leaderboard --verify`` replays each click sequence with the stored masks in the model's place: an
    untouched run passes; a step whose click was moved (hash made consistent) is caught."""
    from sambench.leaderboard import verify_runs

    run(_config(tmp_path / "r", limit=1))
    good = verify_runs([tmp_path / "r"])
    assert good.ok and good.checked == 4, good.summary()
    con = sqlite3.connect(str(tmp_path / "r" / "results.sqlite"))
    (text,) = con.execute("SELECT prompt FROM results WHERE protocol='clicks3' AND level='2'").fetchone()
    p = Prompt.from_json(text)
    x, y = p.points[-1]
    moved = Prompt(points=p.points[:-1] + ((x + 1.0, y),), labels=p.labels)
    con.execute("UPDATE results SET prompt=?, prompt_hash=? WHERE protocol='clicks3' AND level='2'",
                (moved.to_json(), moved.hash()))
    con.commit()
    con.close()
    bad = verify_runs([tmp_path / "r"])
    assert bad.n_mismatches == 1 and "/clicks3/2/draw 0: stored prompt" in bad.mismatches[0]
    assert "is not the step the click rule gives after the stored masks" in bad.mismatches[0]


def test_gt_box_start_and_box_fill_refusal(tmp_path, cards):
    res = run(_config(tmp_path / "b", models=["grabcut", "box-fill"], protocols=["clicks3-box"], limit=1))
    df = res.rows
    g = df[df.model == "grabcut"].sort_values("level")
    assert g["level"].tolist() == ["0", "1", "2", "3"]
    box = Prompt.from_json(g.iloc[0].prompt)
    assert box.points is None and box.box is not None
    assert all(Prompt.from_json(p).box == box.box for p in g["prompt"])  # every step keeps the start box
    bf = df[df.model == "box-fill"]
    assert len(bf) == 4 and (bf.status == "failed").all() and bf.error.str.contains("ignores clicks").all()
    assert res.counters["box-fill"]["encoder_calls"] == 0


def test_report_and_noc_gate(tmp_path, cards):
    from sambench.report import write_report
    from sambench.analysis.compare import compare_runs

    run(_config(tmp_path / "a", protocols=["clicks3"]))
    written = write_report([tmp_path / "a"], tmp_path / "rep", formats=("png",), n_boot=50)
    assert "noc.csv" in written and "miou_vs_clicks_clicks3.png" in written
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "NoC@90" in html and "miou_vs_clicks_clicks3.png" in html
    board = json.loads((tmp_path / "rep" / "leaderboard.json").read_text())
    assert "noc90@clicks3" in [c["id"] for c in board["board"]["columns"]]
    assert board["noc"]["grabcut"]["grabcut-sample"]["clicks3"]["click_limit"] == 3
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for d, v in (("a", 0.95), ("b", 0.5)):  # a reaches 90 % at click 1, b never does (NoC = 3)
        con = sqlite3.connect(str(tmp_path / d / "results.sqlite"))
        con.execute(f"UPDATE results SET iou={v} WHERE protocol='clicks3'")
        con.commit()
        con.close()
    worse = compare_runs(tmp_path / "a", tmp_path / "b", metric="noc90", n_boot=200)
    g = worse.groups[0]
    assert (g["baseline"], g["candidate"], g["delta"]) == (1.0, 3.0, 2.0) and g["level"] == "NoC@90"
    assert worse.exit_code == 1
    better = compare_runs(tmp_path / "b", tmp_path / "a", metric="noc90", n_boot=200)
    assert better.exit_code == 0 and better.groups[0]["delta"] == -2.0
    run(_config(tmp_path / "c", protocols=["nb0"], limit=1))
    with pytest.raises(SambenchError, match="neither run holds an interactive"):
        compare_runs(tmp_path / "c", tmp_path / "c", metric="noc90", n_boot=10)


def test_click_cards_are_validated(tmp_path, cards):
    card = load_protocol_card("clicks")
    assert card.clicks.max_clicks == 20 and [s.level for s in card.settings] == [str(k) for k in range(1, 21)]
    assert load_protocol_card("clicks-gt-box").settings[0].level == "0"
    with pytest.raises(SambenchError, match="--levels does not apply"):
        with_overrides(card, levels=["5"])
    bad = {"start: noisy-box": "needs 'start_scale'", "levels: [1, 2]": "has no 'levels'",
           "max_clicks: 0": "max_clicks", "feed_logits: maybe": "feed_logits"}
    for i, (line, msg) in enumerate(bad.items()):
        p = cards / f"bad{i}.yaml"
        p.write_text(CARD.format(start="click").replace("name: clicks3", f"name: bad{i}") + line + "\n")
        with pytest.raises(SambenchError, match=msg) as e:
            load_protocol_card(f"bad{i}")
        assert str(p) in str(e.value) and "\n" not in str(e.value)
    (cards / "bad9.yaml").write_text("name: bad9\nversion: 1\nkind: points\nlevels: [1]\nmax_clicks: 3\n")
    with pytest.raises(SambenchError, match="only apply to kind: clicks"):
        load_protocol_card("bad9")
    from sambench.execution.export import export_prompts

    with pytest.raises(SambenchError, match="interactive"):
        export_prompts("clicks", "grabcut-sample")


@pytest.mark.slow
def test_sam_tiny_click_sequence_encodes_once_and_feeds_its_logits_back(tmp_path, cards):
    from sambench.adapters import build_adapter
    from sambench.inputs.clicks import run_sequence
    from sambench.execution.sequences import sequence_predictor

    res = run(_config(tmp_path / "s", models=["sam-tiny"], limit=1, model_options={}))
    assert res.counts["failed"] == 0
    assert res.counters["sam-tiny"] == {"encoder_calls": 1, "decoded_prompts": 1 + 3}
    # the same sequence by hand, through SamAdapter.predict(mask_inputs=previous logits)
    ad = build_adapter("sam-tiny", device="cpu")
    sample = open_dataset("grabcut-sample").load("banana1")
    state = ad.encode(sample.image, "sam")
    obj = sample.objects[0]
    steps = run_sequence(obj.mask, sequence_predictor(ad, state, "single", True), 3, feed_logits=True)
    rows = res.rows[res.rows.protocol == "clicks3"].sort_values("level")
    assert [Prompt.from_json(p) for p in rows["prompt"]] == [s.prompt for s in steps]
    assert rows["iou"].tolist() == pytest.approx([iou(s.mask, obj.mask) for s in steps])
    no_feedback = run_sequence(obj.mask, sequence_predictor(ad, state, "single", False), 3)
    assert any(not np.array_equal(a.mask, b.mask) for a, b in zip(steps[1:], no_feedback[1:]))  # logits matter


@pytest.mark.slow
def test_sam2_click_sequence_through_sambench_run_feeds_its_logits_back_with_one_encode(tmp_path, cards):
    """A random SAM 2.1 (Hiera-T) adapter object given to ``sambench.run``: one encode for the image, and
    every step after the first gets exactly the low-res logits the adapter returned at the step before."""
    import sambench
    from sambench.adapters import build_adapter

    ad = build_adapter("sam2.1-hiera-tiny-random", device="cpu")
    assert ad.mask_prompts
    calls, predict = [], ad.predict

    def spy(state, prompts, mask_selection="single", mask_inputs=None, return_logits=False):
        pred = predict(state, prompts, mask_selection, mask_inputs=mask_inputs, return_logits=return_logits)
        calls.append((list(prompts), mask_inputs, pred.low_res_logits))
        return pred

    ad.predict = spy
    res = sambench.run(ad, "clicks3", "grabcut-sample", out=tmp_path / "r", limit=1)
    rows = res.rows().sort_values("level")
    assert (rows.status == "ok").all() and rows["level"].tolist() == ["1", "2", "3"]
    assert res.manifests[0]["invocations"][-1]["counters"][ad.name] == {"encoder_calls": 1, "decoded_prompts": 3}
    assert [c[0] for c in calls] == [[Prompt.from_json(p)] for p in rows["prompt"]]
    assert calls[0][1] == [None] and all(c[2].shape == (1, 256, 256) for c in calls)
    for (_, _, returned), (_, fed, _) in zip(calls, calls[1:]):
        assert fed[0] is not None and np.array_equal(fed[0], returned[0])
