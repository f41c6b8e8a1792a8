"""The replay protocol: prompts read from sambench's export JSON, RClicks' clicks.csv and BREPS' box PNGs.

Each importer is tested on a small file written in its project's documented format (docs/protocols.md,
"Replayed prompts"), with the prompts it must yield written out by hand; every refusal is one line naming the
file and the id; a run stores replayed rows beside generated ones and the store refuses another file.
"""

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import sambench
from sambench.cli.main import main
from sambench.config import Setting, load_protocol_card
from sambench.datasets import open_dataset
from sambench.datasets.folder import FolderDataset
from sambench.execution import RunConfig, run
from sambench.execution.export import export_prompts
from sambench.inputs.prompts import Protocol, prompt_set_hash
from sambench.inputs.replay import check_dataset, read_replay, resolve
from sambench.types import Prompt, SambenchError

CARD = "name: {name}\nversion: 1\nkind: replay\nfile: {file}\n"


def _card(tmp_path, file, name="rp", extra=""):
    """A replay card for ``file`` in a card directory of its own (``load_protocol_card`` takes card files)."""
    d = tmp_path / "cards"
    d.mkdir(exist_ok=True)
    p = d / f"{name}.yaml"
    p.write_text(CARD.format(name=name, file=file) + extra)
    return resolve(load_protocol_card(str(p)))


def _tiny_dataset(tmp_path, name="grabcut", sizes=(("a", 40, 30), ("b", 20, 24))):
    """Folder dataset ``name``: images ``a`` (40x30) and ``b`` (20x24), one object each (a filled rectangle)."""
    root = tmp_path / name
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem, w, h in sizes:
        cv2.imwrite(str(root / "images" / f"{stem}.png"), np.full((h, w, 3), 128, np.uint8))
        m = np.zeros((h, w), np.uint8)
        m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), m)
    return FolderDataset(root, images=root / "images", masks=root / "masks", name=name, image_exts=(".png",))


def _tasks(card, ds):
    proto = Protocol(card)
    out = []
    for image_id in ds.ids():
        out += list(proto.tasks(ds.name, image_id, ds.load(image_id).objects))
    return out


def _write_json(path, prompts, dataset="grabcut", **doc):
    path.write_text(json.dumps({"dataset": {"name": dataset}, "prompts": prompts, **doc}))
    return path


def _entry(image, level, prompt, obj="0", dataset="grabcut"):
    return {"dataset": dataset, "image_id": image, "object_id": obj, "level": level, "prompt": prompt}


# --------------------------------------------------------------------------------------------- formats


def test_sambench_export_replays_to_the_same_prompts_and_prompt_hash(tmp_path):
    doc = export_prompts("noisy-box", "grabcut-sample", levels=["0.4", "0.8"], draws=2, limit=2)
    f = tmp_path / "export.json"
    f.write_text(json.dumps(doc))
    card = _card(tmp_path, f)
    assert [s.level for s in card.settings] == ["0.4", "0.8"] and card.draws == 2
    ds = open_dataset("grabcut-sample")
    assert check_dataset(card, ds) == 8  # 2 images x 2 levels x 2 draws
    tasks = [t for image_id in ds.ids()[:2] for t in Protocol(card).tasks(ds.name, image_id, ds.load(image_id).objects)]
    got = {(t.level, t.draw, t.object_id, t.prompt.hash()) for t in tasks}
    want = {(p["level"], p["draw"], p["object_id"], p["prompt_hash"]) for p in doc["prompts"]}
    assert got == want
    entries = [(i, t.object_id, t.level, t.draw, t.prompt.hash()) for i in ds.ids()[:2]
               for t in Protocol(card).tasks(ds.name, i, ds.load(i).objects)]
    assert prompt_set_hash(entries) == doc["prompt_hash"]


def test_rclicks_first_clicks_become_single_clicks_per_device_in_file_order(tmp_path):
    ds = _tiny_dataset(tmp_path)
    f = tmp_path / "clicks.csv"
    rows = [  # RClicks' columns (rclicks/clickmap.py, isegm/inference/evaluation.py); x, y on a w x h copy
        ("GrabCut", "a", "a", "", "first", "", 10, 8, 40, 30, "pc"),
        ("GrabCut", "a", "a_sam", "", "fn", "sam", 11, 9, 40, 30, "pc"),  # a corrective click: not a prompt
        ("GrabCut", "a", "a", "", "first", "", 30, 20, 80, 60, "mobile"),  # given on a 2x copy: halved
        ("GrabCut", "a", "a", "", "first", "", 12, 7, 40, 30, "pc"),
        ("GrabCut", "b", "b", "", "first", "", 5, 6, 20, 24, "mobile"),
        ("Berkeley", "x", "x", "", "first", "", 1, 1, 10, 10, "pc"),  # another dataset's row: not this run's
    ]
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "image_stem", "full_stem", "object_stem", "click_type", "model_type", "x", "y", "w",
                    "h", "device"])
        w.writerows(rows)
    card = _card(tmp_path, f)
    assert card.replay["format"] == "rclicks"
    assert [s.level for s in card.settings] == ["pc", "mobile"] and card.draws == 2
    got = [(t.level, t.draw, t.object_id, t.prompt) for t in _tasks(card, ds)]
    one = lambda x, y: Prompt(points=((x, y),), labels=(1,))  # noqa: E731
    assert got == [("pc", 0, "0", one(10, 8)), ("pc", 1, "0", one(12, 7)), ("mobile", 0, "0", one(15, 10)),
                   ("mobile", 0, "0", one(5, 6))]


def test_card_draws_keep_the_first_prompts_of_each_object_and_level(tmp_path):
    ds = _tiny_dataset(tmp_path)
    f = _write_json(tmp_path / "p.json", [_entry("a", "u", {"box": [1, 1, 5, 5]}), _entry("a", "u", {"box": [2, 2, 6, 6]}),
                                          _entry("a", "v", {"box": [3, 3, 7, 7]})])
    assert _card(tmp_path, f).draws == 2
    card = _card(tmp_path, f, extra="draws: 1\n")
    assert card.draws == 1
    assert [(t.level, t.prompt.box) for t in _tasks(card, ds)] == [("u", (1, 1, 5, 5)), ("v", (3, 3, 7, 7))]


def test_rclicks_without_device_is_one_level(tmp_path):
    ds = _tiny_dataset(tmp_path)
    f = tmp_path / "c.csv"
    f.write_text("dataset,image_stem,object_stem,click_type,x,y,w,h\nGrabCut,a,,first,3,4,40,30\n")
    card = _card(tmp_path, f)
    assert [s.level for s in card.settings] == ["user"]
    assert [t.prompt for t in _tasks(card, ds)] == [Prompt(points=((3, 4),), labels=(1,))]


def test_breps_box_pngs_give_the_extreme_pixels_of_each_user_box(tmp_path):
    ds = _tiny_dataset(tmp_path, name="study")
    folder = tmp_path / "user_masks"
    folder.mkdir()
    filled = np.zeros((30, 40), np.uint8)
    filled[5:21, 8:33] = 255  # rows 5..20, columns 8..32
    outline = np.zeros((30, 40), np.uint8)
    cv2.rectangle(outline, (2, 3), (30, 25), 255, 1)  # a drawn frame: columns 2..30, rows 3..25
    other = np.zeros((24, 20), np.uint8)
    other[0:24, 0:20] = 1  # the whole image (any non-zero value counts)
    cv2.imwrite(str(folder / "a_1_user02.png"), outline)
    cv2.imwrite(str(folder / "a_1_user01.png"), filled)
    cv2.imwrite(str(folder / "b.png"), other)
    card = _card(tmp_path, folder)
    assert card.replay["format"] == "breps" and [s.level for s in card.settings] == ["user"] and card.draws == 2
    got = [(t.draw, t.prompt.box) for t in _tasks(card, ds)]
    assert got == [(0, (8.0, 5.0, 32.0, 20.0)), (1, (2.0, 3.0, 30.0, 25.0)), (0, (0.0, 0.0, 19.0, 23.0))]


def test_the_shipped_example_fits_grabcut_sample():
    card = resolve(load_protocol_card("replay"))
    assert [s.level for s in card.settings] == ["box", "click"] and card.draws == 2
    assert card.replay["prompts"] == 39 and card.identity()["file_sha256"] == card.replay["sha256"]
    assert check_dataset(card, open_dataset("grabcut-sample")) == 39
    for s in card.settings:  # the report reads back exactly the level the run stored
        assert Setting.from_dict(s.to_dict(), "replay") == s and s.to_dict()["file_sha256"] == card.replay["sha256"]


# --------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("prompts,dataset,message", [
    ([_entry("zz", "u", {"box": [1, 1, 5, 5]})], "grabcut", "prompts[0]: unknown image id 'zz' in dataset 'grabcut'"),
    ([_entry("a", "u", {"box": [1, 1, 5, 5]}, obj="7")], "grabcut", "prompts[0] (image 'a'): unknown object id '7'"),
    ([_entry("a", "u", {"points": [[40, 3]], "labels": [1]})], "grabcut",
     "prompts[0] (image 'a', object '0'): point (40.0, 3.0) is outside the 40x30 image"),
    ([_entry("b", "u", {"box": [0, 0, 20, 25]})], "grabcut",
     "prompts[0] (image 'b', object '0'): box [0.0, 0.0, 20.0, 25.0] is outside the 20x24 image"),
    ([_entry("a", "u", {"box": [1, 1, 5, 5]}, dataset="davis-345")], "davis-345",
     "a file made for dataset davis-345, not 'grabcut'"),
])
def test_a_file_that_does_not_fit_the_dataset_fails_in_one_line_naming_file_and_id(tmp_path, prompts, dataset,
                                                                                   message):
    ds = _tiny_dataset(tmp_path)
    f = _write_json(tmp_path / "p.json", prompts, dataset=dataset)
    with pytest.raises(SambenchError) as exc:
        check_dataset(_card(tmp_path, f), ds)
    assert str(exc.value).startswith(f"{f}: ") and message in str(exc.value) and "\n" not in str(exc.value)


def test_rclicks_file_for_other_datasets_and_a_wrong_hash_are_refused(tmp_path):
    ds = _tiny_dataset(tmp_path)
    f = tmp_path / "c.csv"
    f.write_text("dataset,image_stem,object_stem,click_type,x,y,w,h\nBerkeley,a,,first,3,4,40,30\n")
    with pytest.raises(SambenchError, match=r"c\.csv: a file made for dataset Berkeley, not 'grabcut'"):
        check_dataset(_card(tmp_path, f), ds)
    edited = _entry("a", "u", {"box": [1, 1, 5, 5]})
    edited["prompt_hash"] = Prompt(box=(1, 1, 5, 6)).hash()
    g = _write_json(tmp_path / "h.json", [edited])
    with pytest.raises(SambenchError, match=r"h\.json: prompts\[0\]: its prompt_hash does not match"):
        read_replay(g)
    h = tmp_path / "ch.json"
    h.write_text(json.dumps({"dataset": {"name": "grabcut", "content_hash": "0" * 64},
                             "prompts": [_entry("a", "u", {"box": [1, 1, 5, 5]})]}))
    with pytest.raises(SambenchError, match=r"ch\.json: made for dataset 'grabcut' with content hash 000000000000"):
        check_dataset(_card(tmp_path, h), ds)


@pytest.mark.parametrize("text,message", [
    ("kind: replay\nfile: p.json\nlevels: [1]\n", "levels do not apply to kind: replay"),
    ("kind: noisy-box\nlevels: [0.1]\nfile: p.json\n", "'file' and 'format' only apply to kind: replay"),
    ("kind: replay\nfile: p.json\nformat: ritm\n", "format must be one of auto, sambench, rclicks, breps"),
    ("kind: replay\nfile: p.json\ndraws: 0\n", "'draws' must be an integer >= 1"),
    ("kind: replay\n", "missing required field 'file'"),
])
def test_malformed_replay_cards_fail_in_one_line(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nversion: 1\n" + text)
    with pytest.raises(SambenchError, match=message) as exc:
        load_protocol_card(str(p))
    assert str(exc.value).startswith(str(p))


def test_the_protocol_option_grammar_names_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_json(tmp_path / "mine.json", [_entry("a", "u", {"box": [1, 1, 5, 5]})])
    card = load_protocol_card("replay:mine.json")
    assert card.name == "replay" and card.replay["file"] == str(tmp_path / "mine.json")
    with pytest.raises(SambenchError, match="only a replay card .* takes a file after ':'"):
        load_protocol_card("noisy-box:mine.json")
    with pytest.raises(SambenchError, match="give the file to replay after ':'"):
        load_protocol_card("replay:")
    with pytest.raises(SambenchError, match="nothing.json: replay file not found"):
        resolve(load_protocol_card("replay:nothing.json"))


def test_prompts_of_an_image_of_several_objects_go_to_their_object(tmp_path):
    root = tmp_path / "inst"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "m.png"), np.full((20, 30, 3), 90, np.uint8))
    ids = np.zeros((20, 30), np.uint8)
    ids[2:8, 2:10], ids[10:18, 15:28] = 1, 2  # object "1" top left, object "2" bottom right
    cv2.imwrite(str(root / "masks" / "m.png"), ids)
    ds = FolderDataset(root, images=root / "images", masks=root / "masks", name="inst", image_exts=(".png",),
                       instances=True)
    f = _write_json(tmp_path / "p.json", [_entry("m", "u", {"box": [15, 10, 27, 17]}, obj="2", dataset="inst"),
                                          _entry("m", "u", {"box": [2, 2, 9, 7]}, obj="1", dataset="inst")],
                    dataset="inst")
    card = _card(tmp_path, f)
    assert [(t.object_id, t.prompt.box) for t in _tasks(card, ds)] == [("1", (2, 2, 9, 7)), ("2", (15, 10, 27, 17))]
    # one object at a time, as leaderboard --verify regenerates a stored prompt
    two = [o for o in ds.load("m").objects if o.id == "2"][0]
    assert Protocol(card).prompt(card.settings[0], 0, "inst", "m", two).box == (15, 10, 27, 17)
    g = tmp_path / "c.csv"  # an RClicks row without object_stem on an image of two objects
    g.write_text("dataset,image_stem,object_stem,click_type,x,y,w,h\ninst,m,,first,3,4,30,20\n")
    with pytest.raises(SambenchError, match=r"c\.csv: row 2 \(image 'm'\) names no object, and the image has 2"):
        check_dataset(_card(tmp_path, g), ds)


# ------------------------------------------------------------------------------------------------- runs


def test_replayed_rows_sit_beside_generated_ones_and_a_store_refuses_another_file(tmp_path):
    ds_dir = _tiny_dataset(tmp_path)
    f = _write_json(tmp_path / "p.json", [_entry("a", "u", {"box": [8, 6, 31, 23]}),
                                          _entry("a", "u", {"box": [0, 0, 39, 29]}),
                                          _entry("b", "u", {"points": [[10, 12]], "labels": [1]})])
    card = _card(tmp_path, f)
    r = run(RunConfig(models=["box-fill"], protocols=[card, "gt-box"], datasets=[ds_dir], out=tmp_path / "run",
                      progress=False, workers=1))
    rows = r.rows.sort_values(["protocol", "image_id", "draw"])
    replayed = rows[rows["protocol"] == "rp"]
    assert list(zip(replayed["image_id"], replayed["level"], replayed["draw"])) == [("a", "u", 0), ("a", "u", 1),
                                                                                   ("b", "u", 0)]
    assert set(rows["protocol"]) == {"rp", "gt-box"}
    # box-fill fills the box: the hand box [8, 6, 31, 23] of the 20x15 object at columns 10..29, rows 7..21
    # covers 24 x 18 = 432 pixels, the object 300: IoU 300/432
    assert replayed["iou"].iloc[0] == pytest.approx(300 / 432)
    assert r.manifest["protocols"]["rp"]["identity"]["file_sha256"] == card.replay["sha256"]
    f.write_text(f.read_text().replace("[0, 0, 39, 29]", "[0, 0, 38, 29]"))
    with pytest.raises(SambenchError, match="with file_sha256"):
        run(RunConfig(models=["box-fill"], protocols=[_card(tmp_path, f)], datasets=[ds_dir], out=tmp_path / "run",
                      progress=False, workers=1))


@pytest.mark.slow
def test_cli_replays_the_shipped_example_beside_gt_box_and_verifies(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "-m", "box-fill", "-p", "replay", "-p", "gt-box", "-d", "grabcut-sample",
                                    "--limit", "2", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    rows = sambench.open_run(out).rows()
    assert sorted(set(zip(rows["protocol"], rows["level"]))) == [("gt-box", "gt-box"), ("replay", "box"),
                                                                  ("replay", "click")]
    assert len(rows) == 2 * (1 + 1 + 2) and set(rows["status"]) == {"ok"}  # 2 images: GT box, hand box, 2 clicks
    summary = (out / "report" / "summary.csv").read_text()  # one report: replay levels beside the GT box
    assert ",replay,box," in summary and ",replay,click," in summary and ",gt-box,gt-box," in summary
    res = CliRunner().invoke(main, ["leaderboard", str(out), "--out", str(tmp_path / "board"), "--verify"])
    assert res.exit_code == 0, res.output
    assert "every stored number matches" in res.output
    res = CliRunner().invoke(main, ["compare", str(out), str(out), "--metric", "miou"])
    assert res.exit_code == 0 and "PASS" in res.output, res.output
