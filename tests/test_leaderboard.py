"""Tests of sambench leaderboard: headline scores against hand computations, merging and refusing runs,
ranking with CIs and ties, --verify on a real run, and the HTML page as headless Chromium renders it.

The hand-built stores use 10×10 square GT masks and predictions shifted right by s pixels, so every IoU is
known by hand: IoU(shift s) = (10 − s) / (10 + s), i.e. s = 0 → 1, 2 → 2/3, 5 → 1/3, 10 → 0, and two
predictions shifted by a and b overlap with IoU (10 − |a − b|) / (10 + |a − b|). Expected scores are
written out as fractions below, never computed with sambench.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sambench.metrics import boundary_iou, encode_rle, iou
from sambench.store import Row, Store, write_manifest
from sambench.types import Prompt

H, W = 30, 30
# dataset -> image -> objects (GT square top row)
OBJECTS = {"d1": {"i0": {"o0": 2, "o1": 16}}, "d2": {"j0": {"o0": 2}}}
NOISY = [("0", 0.0, "noisy-box"), ("0.5", 0.5, "noisy-box"), ("1", 1.0, "noisy-box")]
# model "A": shifts per (dataset, object) and level, one per draw
SHIFTS_A = {
    ("d1", "o0"): {"0": [0], "0.5": [0, 2], "1": [2, 5]},
    ("d1", "o1"): {"0": [2], "0.5": [2, 2], "1": [5, 10]},
    ("d2", "o0"): {"0": [0], "0.5": [5, 5], "1": [10, 10]},
}
# model "B": clearly worse everywhere
SHIFTS_B = {k: {"0": [5], "0.5": [10, 10], "1": [10, 10]} for k in SHIFTS_A}


def gt_mask(top: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[top:top + 10, 5:15] = True
    return m


def shifted(top: int, s: int) -> np.ndarray:
    return np.roll(gt_mask(top), s, axis=1)


def rows_for(model: str, shifts: dict, protocol: str = "noisy-box", settings=NOISY, failed=()) -> list[Row]:
    rows = []
    for (dataset, obj), by_level in shifts.items():
        image = next(i for i, objs in OBJECTS[dataset].items() if obj in objs)
        top = OBJECTS[dataset][image][obj]
        g = gt_mask(top)
        for level, value, _kind in settings:
            for draw, s in enumerate(by_level[level]):
                p = Prompt(box=(5.0 + draw, float(top), 14.0 + (value or 0), float(top + 9)))
                if (dataset, obj, level, draw) in failed:
                    rows.append(Row(model, dataset, image, obj, protocol, level, draw, 1, value, p.to_json(), p.hash(),
                                    status="failed", error="decoder exploded"))
                    continue
                m = shifted(top, s)
                rows.append(Row(model, dataset, image, obj, protocol, level, draw, 1, value, p.to_json(), p.hash(),
                                iou(m, g), boundary_iou(m, g), None, int(g.sum()), int(m.sum()),
                                json.dumps(encode_rle(m))))
    return rows


def manifest(models, protocol="noisy-box", settings=NOISY, content=None, weights=None) -> dict:
    content = content or {}
    return {"sambench_version": "0.1.0", "git_commit": "abc", "created": "2026-01-01T00:00:00+00:00",
            "protocols": {protocol: {"version": 1, "identity": {
                "name": protocol, "version": 1, "mask_selection": "single", "preprocessing": "sam",
                "settings": [{"level": lv, "kind": kind} for lv, _, kind in settings]}}},
            "datasets": {d: {"content_hash": content.get(d, f"hash-{d}"), "n_images": len(OBJECTS[d])} for d in OBJECTS},
            "models": {m: {"model": m, "adapter": "test", "adapter_version": "1",
                           "weights_sha256": (weights or {}).get(m)} for m in models}}


def make_run(run_dir: Path, models: dict, **kw) -> Path:
    """``models``: name -> shifts table."""
    rows = [r for m, shifts in models.items() for r in rows_for(m, shifts, **{k: v for k, v in kw.items()
                                                                             if k in ("protocol", "settings", "failed")})]
    with Store(run_dir) as st:
        st.write(rows)
    write_manifest(run_dir, manifest(list(models), **{k: v for k, v in kw.items()
                                                      if k in ("protocol", "settings", "content", "weights")}))
    return run_dir


def board_of(*paths, rank_by=None, n_boot=300):
    from sambench.leaderboard import build_board, load_board

    return build_board(load_board(paths), rank_by=rank_by, n_boot=n_boot)


def entry(board: dict, model: str) -> dict:
    return next(e for e in board["entries"] if e["model"] == model)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    make_run(root / "r1", {"A": SHIFTS_A, "B": SHIFTS_B})
    make_run(root / "r2", {"C": SHIFTS_A})  # C answers exactly as A: a tie
    return root


# ------------------------------------------------------------------------------------------ scores by hand


def test_headline_scores_match_hand_computation(runs):
    board = board_of(runs / "r1")
    a = entry(board, "A")["scores"]
    # per-object mean IoU over draws (s=0 → 1, 2 → 2/3, 5 → 1/3, 10 → 0):
    #   d1/o0: L0 1,   L0.5 (1 + 2/3)/2 = 5/6,  L1 (2/3 + 1/3)/2 = 1/2
    #   d1/o1: L0 2/3, L0.5 2/3,                L1 (1/3 + 0)/2 = 1/6
    #   d2/o0: L0 1,   L0.5 1/3,                L1 0
    # clean: d1 (1 + 2/3)/2 = 5/6, d2 1; across datasets the plain mean of dataset means: 11/12
    assert a["clean_miou@noisy-box"]["value"] == pytest.approx(11 / 12)
    assert a["clean_miou@noisy-box"]["datasets"] == pytest.approx({"d1": 5 / 6, "d2": 1.0})
    # degraded per object: (5/6 + 1/2)/2 = 2/3, (2/3 + 1/6)/2 = 5/12, (1/3 + 0)/2 = 1/6
    # d1 (2/3 + 5/12)/2 = 13/24, d2 1/6 → (13/24 + 4/24)/2 = 17/48 (the pooled mean would be 5/12)
    assert a["degraded_miou@noisy-box"]["value"] == pytest.approx(17 / 48)
    # robustness: d1 (13/24)/(5/6) = 13/20, d2 (1/6)/1 → (13/20 + 1/6)/2 = 49/120
    assert a["robustness@noisy-box"]["value"] == pytest.approx(49 / 120)
    # AUC over s in [0, 1], trapezoid, / 1: per object (y0 + 2·y0.5 + y1)/4
    #   d1/o0 (1 + 5/3 + 1/2)/4 = 19/24, d1/o1 (2/3 + 4/3 + 1/6)/4 = 13/24 → d1 2/3; d2 (1 + 2/3 + 0)/4 = 5/12
    assert a["auc@noisy-box"]["value"] == pytest.approx((2 / 3 + 5 / 12) / 2)
    # stability (one pair per level; IoU of shifts a, b = (10-|a-b|)/(10+|a-b|)):
    #   d1/o0: L0.5 {0,2} 2/3, L1 {2,5} 7/13 → 47/78;  d1/o1: L0.5 1, L1 {5,10} 1/3 → 2/3;  d2/o0: 1, 1 → 1
    #   d1 (47/78 + 2/3)/2 = 33/52, d2 1 → (33/52 + 1)/2 = 85/104
    assert a["stability@noisy-box"]["value"] == pytest.approx(85 / 104)
    assert "paper_avg@noisy-box" not in a  # only for stable-sam-paper
    for cell in a.values():
        assert cell["ci"][0] <= cell["value"] + 1e-12 and cell["value"] <= cell["ci"][1] + 1e-12
    assert a["clean_miou@noisy-box"]["n"] == 3
    assert [c["id"] for c in board["columns"]] == ["clean_miou@noisy-box", "degraded_miou@noisy-box",
                                                   "robustness@noisy-box", "auc@noisy-box", "stability@noisy-box"]


PAPER = [("gt-box", None, "gt-box"), ("noisy-box", 0.4, "noisy-box"), ("1-point", 1.0, "points"),
         ("3-points", 3.0, "points")]


def test_stable_sam_paper_average_and_failures_score_zero(tmp_path):
    shifts = {("d1", "o0"): {"gt-box": [0], "noisy-box": [2, 5], "1-point": [10, 10], "3-points": [2, 2]}}
    ref = {("d1", "o0"): {"gt-box": [5], "noisy-box": [10, 10], "1-point": [10, 10], "3-points": [10, 10]}}
    make_run(tmp_path / "run", {"X": shifts, "R": ref}, protocol="stable-sam-paper", settings=PAPER,
             failed={("d1", "o0", "3-points", 1)})
    board = board_of(tmp_path / "run", rank_by="paper_avg")
    x = entry(board, "X")["scores"]
    # GT box 1; noisy box (2/3 + 1/3)/2 = 1/2; 1 point 0; 3 points (2/3 + failed → 0)/2 = 1/3
    assert x["paper_avg@stable-sam-paper"]["value"] == pytest.approx((1 + 1 / 2 + 0 + 1 / 3) / 4)
    assert x["degraded_miou@stable-sam-paper"]["value"] == pytest.approx((1 / 2 + 0 + 1 / 3) / 3)
    assert x["clean_miou@stable-sam-paper"]["value"] == pytest.approx(1.0)
    assert "auc@stable-sam-paper" not in x  # mixed kinds: no single degradation curve
    assert entry(board, "X")["failed_rows"] == 1
    assert board["rank_by"] == "paper_avg@stable-sam-paper" and entry(board, "X")["rank"] == 1


def test_image_level_failure_stands_for_the_other_models_prompts(tmp_path):
    run = make_run(tmp_path / "run", {"A": SHIFTS_A})
    with Store(run) as st:  # model F could not read d2/j0: one image-level row
        st.write(rows_for("F", {k: v for k, v in SHIFTS_A.items() if k[0] == "d1"}) +
                 [Row("F", "d2", "j0", "", "noisy-box", "", -1, 1, status="failed", error="unreadable image")])
    f = entry(board_of(run), "F")
    # F equals A on d1; on d2 every prompt scores 0: clean (5/6 + 0)/2
    assert f["scores"]["clean_miou@noisy-box"]["value"] == pytest.approx(5 / 12)
    assert f["scores"]["clean_miou@noisy-box"]["datasets"]["d2"] == 0.0
    assert f["failed_rows"] == 5  # the 5 prompts A answered on d2/j0


# ------------------------------------------------------------------------------------------ ranking


@pytest.mark.slow
def test_merges_runs_ranks_with_cis_and_states_ties(runs):
    board = board_of(runs)  # a directory holding both run directories
    assert board["rank_by"] == "degraded_miou@noisy-box"
    order = [(e["model"], e["rank"], e["tie"]) for e in board["entries"]]
    assert order == [("A", 1, True), ("C", 1, True), ("B", 3, False)]
    a, c, b = (entry(board, m) for m in "ACB")
    # C is A's twin: identical values and (keyed bootstrap) identical intervals
    assert c["scores"] == a["scores"]
    assert a["vs_next"]["model"] == "C" and a["vs_next"]["delta"] == 0 and not a["vs_next"]["separable"]
    assert a["vs_next"]["p_value"] == 1.0
    # B: degraded per object 0 everywhere (shift 10) → 0
    assert b["scores"]["degraded_miou@noisy-box"]["value"] == 0.0
    t = c["vs_next"]
    assert t["model"] == "B" and t["delta"] == pytest.approx(17 / 48) and t["n"] == 3
    assert t["ci"][0] <= t["delta"] <= t["ci"][1] and t["ci"][0] > 0 and t["separable"]
    assert b["vs_next"] is None
    assert any("tied" in n and "A (rank 1)" in n and "C (rank 1)" in n for n in board["notes"])
    runs_a = [r["run_dir"] for r in a["provenance"]["runs"]]
    runs_c = [r["run_dir"] for r in c["provenance"]["runs"]]
    assert runs_a == [str(runs / "r1")] and runs_c == [str(runs / "r2")]
    # ranking by another score, lower clean for B: B still last; an unknown score is one clear error
    assert [e["model"] for e in board_of(runs, rank_by="clean_miou")["entries"]][-1] == "B"
    from sambench.types import SambenchError

    with pytest.raises(SambenchError, match="no such score.*degraded_miou@noisy-box"):
        board_of(runs, rank_by="nope")


def test_rank_with_missing_dataset_is_unranked(tmp_path):
    make_run(tmp_path / "r1", {"A": SHIFTS_A})
    make_run(tmp_path / "r2", {"P": {k: v for k, v in SHIFTS_A.items() if k[0] == "d1"}})
    board = board_of(tmp_path)
    p = entry(board, "P")
    assert p["rank"] is None and p["scores"]["clean_miou@noisy-box"]["value"] is None
    assert board["entries"][-1]["model"] == "P"
    assert any("P: no clean mIoU on noisy-box across datasets (it covers 1 of 2: d1)" in n for n in board["notes"])


# ------------------------------------------------------------------------------------------ refusals


def one_line_refusal(paths, *match):
    from sambench.cli.main import main

    res = CliRunner().invoke(main, ["leaderboard", *map(str, paths), "--out", str(paths[0].parent / "out")])
    assert res.exit_code == 2, res.output
    err = [l for l in res.output.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), res.output
    for m in match:
        assert m in err[0], err[0]
    assert not (paths[0].parent / "out" / "leaderboard.json").exists()
    return err[0]


def test_refuses_different_prompts(runs, tmp_path):
    other = shutil.copytree(runs / "r2", tmp_path / "r2x")
    con = sqlite3.connect(other / "results.sqlite")
    con.execute("UPDATE results SET prompt_hash='deadbeef' WHERE dataset='d2' AND level='1' AND draw=1")
    con.commit()
    con.close()
    line = one_line_refusal([runs / "r1", other], str(runs / "r1"), str(other), "different prompts",
                            "image_id=j0")
    assert "cannot share a board" in line


def test_refuses_different_data_and_model_identity(runs, tmp_path):
    make_run(tmp_path / "data", {"C": SHIFTS_A}, content={"d2": "other"})
    one_line_refusal([runs / "r1", tmp_path / "data"], "dataset 'd2' content hash hash-d2 vs other",
                     str(runs / "r1"), str(tmp_path / "data"))
    make_run(tmp_path / "weights", {"A": SHIFTS_A}, weights={"A": "f" * 64})
    one_line_refusal([runs / "r1", tmp_path / "weights"], "model 'A' weights_sha256 None vs ffffffffffff")


def test_refuses_a_model_run_on_other_levels(runs, tmp_path):
    fewer = [s for s in NOISY if s[0] != "1"]
    make_run(tmp_path / "short", {"C": SHIFTS_A}, settings=fewer)
    line = one_line_refusal([runs / "r1", tmp_path / "short"], "model 'C' lacks 4 of the 10 results of d1/noisy-box", "level 1",
                            str(runs / "r1"), str(tmp_path / "short"))
    assert "--levels" in line


# ------------------------------------------------------------------------------------------ files + CLI


@pytest.fixture(scope="module")
def written(runs, tmp_path_factory):
    from sambench.leaderboard import write_board

    out = tmp_path_factory.mktemp("board")
    return write_board([runs], out, n_boot=200, note="A SAM entry needs its weights: sambench download sam-vit-b.")


def test_board_files(written, runs):
    doc = json.loads(written["leaderboard.json"].read_text())
    assert doc["format"] == 2 and doc["board"]["format"] == 1
    assert set(doc["results"]) == {"A", "B", "C"}  # the format-1 sections are still there
    e = doc["board"]["entries"][0]
    prov = e["provenance"]
    assert prov["protocol_versions"] == {"noisy-box": 1} and prov["dataset_hashes"] == {"d1": "hash-d1", "d2": "hash-d2"}
    assert not Path(prov["runs"][0]["manifest"]).is_absolute()  # a link relative to the page
    assert (written["leaderboard.json"].parent / prov["runs"][0]["manifest"]).resolve() == (runs / "r1" / "manifest.json").resolve()
    md = written["leaderboard.md"].read_text()
    table = [l for l in md.splitlines() if l.startswith("| ")]
    assert table[0].startswith("| Rank | Model | clean mIoU (noisy-box) | degraded mIoU (noisy-box)")
    assert table[1].startswith("| 1= | **A** | 91.7 [") and "| 35.4 [" in table[1]  # 11/12, 17/48
    assert table[2].startswith("| 1= | **C** |") and "> B (Δ +35.4 [" in table[2]
    assert table[3].startswith("| 3 | B | ")
    assert "sambench download sam-vit-b" in md


def test_cli_writes_the_board(runs, tmp_path):
    from sambench.cli.main import main

    res = CliRunner().invoke(main, ["leaderboard", str(runs / "r1"), str(runs / "r2"), "--out", str(tmp_path / "b"),
                                    "--rank-by", "auc"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b" / "leaderboard.json").read_text())
    assert doc["board"]["rank_by"] == "auc@noisy-box"
    assert {"leaderboard.md", "leaderboard.html", "leaderboard.json"} <= {p.name for p in (tmp_path / "b").iterdir()}


# ------------------------------------------------------------------------------------------ --verify


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real (tiny) run: box-fill on 2 images of the shipped GrabCut sample, noisy box s = 0 and 1, 2 draws."""
    from sambench.cli.main import main

    out = tmp_path_factory.mktemp("real") / "run"
    res = CliRunner().invoke(main, ["run", "--model", "box-fill", "--protocol", "noisy-box", "--dataset",
                                    "grabcut-sample", "--levels", "0,1", "--draws", "2", "--limit", "2",
                                    "--workers", "1", "--out", str(out), "--no-report", "-q"])
    assert res.exit_code == 0, res.output
    return out


def test_verify_passes_untouched_and_catches_an_edited_iou(real_run, tmp_path):
    from sambench.cli.main import main
    from sambench.leaderboard import verify_runs

    ok = verify_runs([real_run])
    assert ok.ok and ok.checked == 6 and ok.failed_rows == 0
    res = CliRunner().invoke(main, ["leaderboard", str(real_run), "--out", str(tmp_path / "good"), "--verify"])
    assert res.exit_code == 0, res.output
    assert "6 stored mask(s) re-scored against the ground truth and their prompts regenerated" in res.output and (tmp_path / "good" / "leaderboard.html").exists()

    bad = shutil.copytree(real_run, tmp_path / "edited")
    con = sqlite3.connect(bad / "results.sqlite")
    n = con.execute("UPDATE results SET iou = iou + 0.05 WHERE image_id='banana1' AND level='1' AND draw=1").rowcount
    con.commit()
    con.close()
    assert n == 1
    result = verify_runs([bad])
    assert not result.ok and result.n_mismatches == 1
    assert re.search(r"box-fill/grabcut-sample/banana1/.*/noisy-box/1/draw 1: stored IoU", result.mismatches[0])
    res = CliRunner().invoke(main, ["leaderboard", str(bad), "--out", str(tmp_path / "bad"), "--verify"])
    assert res.exit_code == 1 and "1 MISMATCH" in res.output and "stored IoU" in res.output
    assert not (tmp_path / "bad").exists()  # nothing written


def test_verify_catches_a_prompt_the_protocol_does_not_draw(real_run, tmp_path):
    """A row passed off under noisy box s = 1 with the GT box as its prompt (hash made consistent)."""
    from sambench.leaderboard import verify_runs

    bad = shutil.copytree(real_run, tmp_path / "easy")
    con = sqlite3.connect(bad / "results.sqlite")
    (gt_prompt,) = con.execute("SELECT prompt FROM results WHERE image_id='banana1' AND level='0'").fetchone()
    easy = Prompt.from_json(gt_prompt)
    n = con.execute("UPDATE results SET prompt=?, prompt_hash=? WHERE image_id='banana1' AND level='1' AND draw=0",
                    (easy.to_json(), easy.hash())).rowcount
    con.commit()
    con.close()
    assert n == 1
    result = verify_runs([bad])
    assert result.n_mismatches == 1
    assert "banana1" in result.mismatches[0] and "is not the one protocol 'noisy-box' v1 (seed 0) draws" in result.mismatches[0]


def test_verify_refuses_other_ground_truth(real_run, tmp_path):
    from sambench.leaderboard import verify_runs

    other = shutil.copytree(real_run, tmp_path / "other")
    man = json.loads((other / "manifest.json").read_text())
    man["datasets"]["grabcut-sample"]["content_hash"] = "0" * 64
    write_manifest(other, man)
    result = verify_runs([other])
    assert not result.ok and "content hash" in result.mismatches[0] and result.checked == 0


# ------------------------------------------------------------------------------------------ the page in a browser


#: The skip reason of the page test: what to install (.ci/install-chromium does it where it can).
CHROMIUM_MISSING = ("no headless Chromium on this machine (none of chromium, chromium-browser, google-chrome on "
                    "PATH): install it, e.g. `apt-get install chromium` on Debian/Ubuntu as root, which "
                    ".ci/install-chromium does")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(CHROMIUM_MISSING)


def dump_dom(page: Path, fragment: str = "") -> str:
    out = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def body_models(dom: str) -> list[str]:
    tbody = dom[dom.index("<tbody>"):dom.index("</tbody>")]
    return re.findall(r'<tr data-model="([^"]+)"', tbody)


@pytest.mark.slow
def test_html_page_renders_and_sorts_in_chromium(written, runs):
    page = written["leaderboard.html"]
    dom = dump_dom(page)
    assert body_models(dom) == ["A", "C", "B"]  # rank order
    assert re.search(r'<th data-col="rank"[^>]*aria-sort="ascending"', dom)
    # sorted by clean mIoU, worst first, by the page's own script (as a header click does)
    dom = dump_dom(page, "#sort=clean_miou@noisy-box:asc")
    assert body_models(dom) == ["B", "A", "C"]
    assert re.search(r'<th data-col="clean_miou@noisy-box"[^>]*aria-sort="ascending"', dom)
    assert re.search(r'<th data-col="rank"(?![^>]*aria-sort)', dom)
    dom = dump_dom(page, "#sort=model:desc")
    assert body_models(dom) == ["C", "B", "A"]
    # what a reader sees: values with CIs, the tie, the paired flag, links to the run manifests
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "91.7" in text and "[83.3, 100.0]" in text and "1= tie" in " ".join(text.split())
    assert "&gt; B (Δ +35.4" in dom
    hrefs = re.findall(r'class="manifest" href="([^"]+)"', dom)
    assert hrefs and all((page.parent / h).resolve().is_file() for h in hrefs)
    assert "<script" in dom and "http://" not in dom.split("<script")[0].split("<body")[0]


# ------------------------------------------------------------------------------------------ hooks, report


def test_a_registered_score_joins_as_a_column(runs):
    """The hook NoC@90 / mCE use: a lower-is-better raw number ranks ascending; absent → no column."""
    from sambench.leaderboard import SCORES, HeadlineScore, register

    def misses(inp):  # pixels of GT missed at the GT box, per object: a raw count, lower is better
        if inp.clean is None:
            return None
        return (1 - inp.matrix([inp.clean.level])).set_axis(["misses"], axis=1) * 100

    register(HeadlineScore("misses", "missed px", "100 × (1 − IoU) at the GT box.", misses,
                           higher_is_better=False, unit="number"))
    try:
        board = board_of(runs, rank_by="misses")
        col = next(c for c in board["columns"] if c["id"] == "misses@noisy-box")
        assert col["higher_is_better"] is False and col["unit"] == "number"
        # A: d1 (0 + 100/3)/2 = 50/3, d2 0 → 25/3; B: (1 − 1/3)·100 = 200/3 everywhere
        assert [(e["model"], e["rank"]) for e in board["entries"]] == [("A", 1), ("C", 1), ("B", 3)]
        assert entry(board, "A")["scores"]["misses@noisy-box"]["value"] == pytest.approx(25 / 3)
        assert entry(board, "C")["vs_next"]["delta"] == pytest.approx(25 / 3 - 200 / 3)
        assert entry(board, "C")["vs_next"]["separable"]
    finally:
        del SCORES["misses"]
    assert "misses@noisy-box" not in [c["id"] for c in board_of(runs)["columns"]]


@pytest.mark.slow
def test_report_states_why_it_ranks_nothing(runs, tmp_path):
    """`sambench report` merges any runs; its leaderboard.json says why they cannot be ranked together."""
    from sambench.report import write_report

    other = shutil.copytree(runs / "r2", tmp_path / "r2x")
    con = sqlite3.connect(other / "results.sqlite")
    con.execute("UPDATE results SET prompt_hash='deadbeef' WHERE dataset='d2' AND level='1'")
    con.commit()
    con.close()
    written = write_report([runs / "r1", other], tmp_path / "rep", formats=("png",), n_grid=0, n_boot=50)
    doc = json.loads(written["leaderboard.json"].read_text())
    assert doc["format"] == 2 and "different prompts" in doc["board"]["refused"]
    assert "leaderboard.json ranks nothing" in written["index.html"].read_text()
    ok = write_report([runs / "r1", runs / "r2"], tmp_path / "rep2", formats=("png",), n_grid=0, n_boot=50)
    ranked = json.loads(ok["leaderboard.json"].read_text())["board"]
    assert [e["model"] for e in ranked["entries"]] == ["A", "C", "B"]


def test_pages_show_a_random_init_identity_whole_and_cut_only_a_sha256(tmp_path):
    from sambench.leaderboard import write_board

    sha = "ab" * 32
    make_run(tmp_path / "r", {"A": SHIFTS_A, "B": SHIFTS_B}, weights={"A": "random-init:0", "B": sha})
    written = write_board([tmp_path / "r"], tmp_path / "b", n_boot=50)
    md, page = written["leaderboard.md"].read_text(), written["leaderboard.html"].read_text()
    assert "random-init:0" in md and "abababababab" in md and sha not in md
    assert ">weights random-init:0<" in page and ">weights abababababab<" in page  # the full sha is its title
