"""Video protocol cards: the ``video`` and ``prompt_frame`` fields, the ``gt-mask`` kind, and prompt keys."""

import numpy as np
import pytest

from sambench.config import load_protocol_card, with_overrides
from sambench.config.protocols import parse_protocol_card
from sambench.inputs.prompts import Protocol
from sambench.types import Object, SambenchError


def test_shipped_video_cards_are_video_and_keep_the_image_levels():
    box, image_box = load_protocol_card("video-noisy-box"), load_protocol_card("noisy-box")
    assert box.video and not image_box.video and box.prompt_frame == "first"
    assert [s.level for s in box.settings] == [s.level for s in image_box.settings] and box.draws == image_box.draws
    assert [s.level for s in load_protocol_card("video-points").settings] == ["1", "3", "5"]
    assert [s.level for s in load_protocol_card("video-clicks").settings] == ["1", "2", "3", "4", "5"]
    mask = load_protocol_card("video-mask")
    assert [(s.level, s.kind) for s in mask.settings] == [("gt-mask", "gt-mask")]
    assert mask.draws_for(mask.settings[0]) == 1


def test_image_protocol_identity_is_unchanged_by_the_video_fields():
    assert "video" not in load_protocol_card("noisy-box").identity()
    ident = load_protocol_card("video-noisy-box").identity()
    assert ident["video"] is True and ident["prompt_frame"] == "first"


def test_overrides_keep_video_and_prompt_frame(tmp_path):
    card = parse_protocol_card({"name": "v", "version": 1, "video": True, "prompt_frame": "middle",
                                "kind": "noisy-box", "levels": [0, 0.5]}, tmp_path / "v.yaml")
    cut = with_overrides(card, levels=["0.5"], draws=2)
    assert cut.video and cut.prompt_frame == "middle" and [s.level for s in cut.settings] == ["0.5"]


@pytest.mark.parametrize("data,message", [
    ({"kind": "gt-mask"}, "only applies to a video protocol"),
    ({"kind": "gt-box", "prompt_frame": "first"}, "'prompt_frame' only applies to a video protocol"),
    ({"kind": "gt-box", "video": True, "prompt_frame": "last"}, "prompt_frame must be one of first, largest, middle"),
    ({"kind": "gt-box", "video": "yes"}, "'video' must be true or false"),
])
def test_malformed_video_cards_fail_in_one_line(tmp_path, data, message):
    with pytest.raises(SambenchError, match=message) as info:
        parse_protocol_card({"name": "v", "version": 1, **data}, tmp_path / "v.yaml")
    assert "\n" not in str(info.value) and "v.yaml" in str(info.value)


def test_video_prompt_equals_the_image_prompt_of_the_same_key():
    """A video prompt is the image protocol's prompt keyed by (video id as image id, object id): the same
    function, so a video prompt depends only on its key."""
    mask = np.zeros((20, 30), bool)
    mask[4:12, 6:20] = True
    video, image = Protocol(load_protocol_card("video-noisy-box")), Protocol(load_protocol_card("noisy-box"))
    s_video, s_image = video.card.setting("0.5"), image.card.setting("0.5")
    a = video.prompt(s_video, 3, "ds", "vid", Object("1", mask))
    b = video.prompt(s_video, 3, "ds", "vid", Object("1", mask))
    c = video.prompt(s_video, 3, "ds", "vid", Object("2", mask))
    assert a == b and a != c
    # the key carries the protocol name, so video-noisy-box and noisy-box differ at the same level and draw
    assert a != image.prompt(s_image, 3, "ds", "vid", Object("1", mask))
