"""The command line across the image/video boundary: a video model with an image protocol and an image model with
a video protocol are refused in one line that says what fits, and `prompts export` exports a video protocol's
prompts (prompt frame and prompt per track, level and draw) with the prompt hash a video run records."""

import hashlib
import json

import pytest
from click.testing import CliRunner

import sambench
from sambench.adapters import build_adapter
from sambench.cli.main import main
from sambench.datasets.video import open_video_dataset
from sambench.inputs.prompts import gt_box
from sambench.types import SambenchError

SAMPLE = "grabcut-video-sample"
VIDEO_PROTOCOLS = "video-clicks, video-mask, video-noisy-box, video-points"


def _errors(res) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]


def test_a_video_model_with_an_image_protocol_is_refused_in_one_line_naming_the_video_protocols(tmp_path):
    res = CliRunner().invoke(main, ["run", "-m", "mask-hold", "-p", "noisy-box", "--out", str(tmp_path / "r"),
                                    "-q", "--no-report"])
    assert res.exit_code == 2, res.output
    assert _errors(res) == [f"error: model 'mask-hold' is a video model: it needs a video protocol "
                            f"({VIDEO_PROTOCOLS}), not the image protocol 'noisy-box'"]
    assert "unknown adapter" not in res.stderr and not (tmp_path / "r").exists()


def test_an_image_model_with_a_video_protocol_is_refused_in_one_line_naming_the_video_models(tmp_path):
    res = CliRunner().invoke(main, ["run", "-m", "box-fill", "-p", "video-noisy-box", "-d", SAMPLE,
                                    "--out", str(tmp_path / "r"), "-q", "--no-report"])
    assert res.exit_code == 2, res.output
    (line,) = _errors(res)
    assert line.startswith("error: model 'box-fill' is an image model: the video protocol 'video-noisy-box' needs a "
                           "video model (flow-warp, ")
    # every shipped card that runs in video is offered, and no image-only one
    offered = line.split("(", 1)[1].rstrip(")").split(", ")
    assert {"mask-hold", "sam2.1-hiera-tiny-random", "hf-sam3-tracker"} <= set(offered)
    assert not {"box-fill", "grabcut", "sam-tiny"} & set(offered)
    assert not (tmp_path / "r").exists()


def test_prompts_export_of_a_video_protocol_gives_each_track_s_prompt_frame_and_the_run_s_prompt_hash(tmp_path):
    out = tmp_path / "p.json"
    res = CliRunner().invoke(main, ["prompts", "export", "-p", "video-noisy-box", "-d", SAMPLE, "--levels", "0,1",
                                    "--draws", "2", "--limit", "5", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    # 6 tracks (v5-two-objects has two) x (level 0: the GT box, one draw; level 1: two draws)
    assert len(doc["prompts"]) == 6 * 3 and doc["failed"] == 0 and doc["dataset"]["name"] == SAMPLE
    late = [p for p in doc["prompts"] if (p["image_id"], p["object_id"]) == ("v5-two-objects", "2")]
    assert {p["prompt_frame"] for p in late} == {3} and {p["frame_id"] for p in late} == {"00003"}
    assert {p["direction"] for p in doc["prompts"]} == {"forward"}
    # level 0 is the GT box of the object's mask on its prompt frame (the late object enters at frame 3)
    mask = open_video_dataset(SAMPLE).masks("v5-two-objects", 3)["2"]
    (gt,) = [p for p in late if p["level"] == "0"]
    assert gt["prompt"]["box"] == list(gt_box(mask))
    run = sambench.run(["mask-hold"], "video-noisy-box", SAMPLE, out=tmp_path / "r", levels=["0", "1"], draws=2)
    assert run.manifests[0]["protocols"]["video-noisy-box"]["prompt_hash"][SAMPLE] == doc["prompt_hash"]


def test_prompts_export_of_the_gt_mask_protocol_lists_mask_entries_outside_the_hash(tmp_path):
    out = tmp_path / "m.json"
    res = CliRunner().invoke(main, ["prompts", "export", "-p", "video-mask", "-d", SAMPLE, "--limit", "1",
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert [(p["image_id"], p["mask"], p["prompt_frame"]) for p in doc["prompts"]] == [("v1-banana", "gt", 0)]
    assert "prompt" not in doc["prompts"][0]
    empty = hashlib.sha256(b"").hexdigest()  # no prompt is hashed: the hash of nothing
    assert doc["prompt_hash"] == empty


def test_building_a_video_only_card_as_an_image_adapter_says_it_is_a_video_model():
    with pytest.raises(SambenchError, match=r"^model 'flow-warp' is a video model \(.*flow-warp.yaml: video: true\): "
                                            r"it runs with a video protocol, through .*build_video_adapter$"):
        build_adapter("flow-warp")


def test_a_video_run_prints_j_f_and_jf_not_the_image_tables_miou_and_mbiou(tmp_path):
    res = CliRunner().invoke(main, ["run", "-m", "mask-hold", "-p", "video-noisy-box", "-d", SAMPLE, "--levels", "0",
                                    "--draws", "1", "--limit", "1", "--workers", "1", "--no-report",
                                    "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    header = next(line for line in res.output.splitlines() if line.split()[:2] == ["dataset", "model"])
    assert header.split()[-5:] == ["J", "F", "J&F", "J_recall", "J_decay"]
    assert "mbiou" not in res.output and "miou" not in res.output
