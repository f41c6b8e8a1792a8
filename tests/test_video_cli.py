"""The command line across the image/video boundary: a video model with an image protocol and an image model with
a video protocol are refused in one line that says what fits, and `prompts export` exports a video protocol's
prompts (prompt frame and prompt per track, level and draw) with the prompt hash a video run records."""


import pytest
from click.testing import CliRunner

from sambench.adapters import build_adapter
from sambench.cli.main import main
from sambench.types import SambenchError

SAMPLE = "grabcut-video-sample"
VIDEO_PROTOCOLS = "video-clicks, video-mask, video-noisy-box, video-points"


def _errors(res) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]


def test_a_video_model_with_an_image_protocol_is_refused_in_one_line_naming_the_video_protocols(tmp_path):
    res = CliRunner().invoke(main, ["run", "-m", "mask-hold", "-p", "noisy-box", "--out", str(tmp_path / "r"),
                                    "-q", "--no-report"])
    assert res.exit_code == 2, res.output
    assert _errors(res) == [f"error: model 'mask-hold' is a video model: it needs a video protocol ({VIDEO_PROTOCOLS}), "
                            f"not the image protocol 'noisy-box'"]
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


def test_building_a_video_only_card_as_an_image_adapter_says_it_is_a_video_model():
    with pytest.raises(SambenchError, match=r"^model 'flow-warp' is a video model \(.*flow-warp.yaml: video: true\): "
                                            r"it runs with a video protocol, through .*build_video_adapter$"):
        build_adapter("flow-warp")
