"""Cards: every shipped card parses; malformed or impossible cards give one line naming the file."""

import pytest

from sambench.config import list_cards, load_model_card, load_protocol_card, with_overrides
from sambench.inputs.replay import resolve
from sambench.types import SambenchError


def test_shipped_cards_parse():
    protos = list_cards("protocols")
    assert {"gt-box", "noisy-box", "box-shift", "box-scale", "points", "stable-sam-paper"} <= set(protos)
    for name in protos:
        card = resolve(load_protocol_card(name))  # a replay card's levels come from its file
        assert card.name == name and card.version >= 1 and card.settings
    paper = load_protocol_card("stable-sam-paper")
    assert [s.level for s in paper.settings] == ["gt-box", "noisy-box", "1-point", "3-points"]
    assert paper.draws == 20 and paper.mask_selection == "single"
    assert [s.level for s in load_protocol_card("points").settings] == ["1", "3", "5", "10"]
    for name in list_cards("models"):
        assert load_model_card(name).name == name


def _write(tmp_path, monkeypatch, kind, name, text):
    d = tmp_path / kind
    d.mkdir(exist_ok=True)
    p = d / f"{name}.yaml"
    p.write_text(text)
    monkeypatch.setenv("SAMBENCH_CARDS", str(tmp_path))
    return p


@pytest.mark.parametrize("text,msg", [
    ("name: bad\nversion: 1\nkind: noisy-box\nlevels: [0.1, [oops\n", "malformed YAML at line"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    ("name: bad\nkind: noisy-box\nlevels: [0.1]\n", "missing required field 'version'"),
    ("name: bad\nversion: 1\nkind: noisy-box\nlevels: [0.1, 7]\n", "impossible level 7"),
    ("name: bad\nversion: 1\nkind: points\nlevels: [0]\n", "impossible level 0"),
    ("name: bad\nversion: 1\nkind: wobble\nlevels: [1]\n", "unknown prompt kind 'wobble'"),
    ("name: bad\nversion: 1\nkind: noisy-box\nlevels: [0.1]\ndraws: 0\n", "'draws' must be an integer >= 1"),
    ("name: bad\nversion: 1\nkind: noisy-box\nlevels: [0.1]\nmask_selection: best\n", "mask_selection must be one of"),
    ("name: bad\nversion: 1\nkind: noisy-box\nlevels: [0.1]\ncolour: red\n", "unknown field(s) colour"),
    ("name: other\nversion: 1\nkind: gt-box\n", "does not match its file name"),
])
def test_malformed_protocol_cards(tmp_path, monkeypatch, text, msg):
    p = _write(tmp_path, monkeypatch, "protocols", "bad", text)
    with pytest.raises(SambenchError) as exc:
        load_protocol_card("bad")
    line = str(exc.value)
    assert msg in line and str(p) in line and "\n" not in line


def test_malformed_model_card(tmp_path, monkeypatch):
    p = _write(tmp_path, monkeypatch, "models", "weird", "name: weird\nadapter: [1, 2\n")
    with pytest.raises(SambenchError, match="malformed YAML") as exc:
        load_model_card("weird")
    assert str(p) in str(exc.value)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(SambenchError, match="unknown protocol 'nosiy-box'.*noisy-box"):
        load_protocol_card("nosiy-box")
    with pytest.raises(SambenchError, match="unknown model 'grabcat'.*grabcut"):
        load_model_card("grabcat")


def test_user_cards_shadow_shipped_ones(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, "protocols", "noisy-box", "name: noisy-box\nversion: 7\nkind: noisy-box\nlevels: [0.3]\n")
    assert load_protocol_card("noisy-box").version == 7


def test_overrides():
    card = load_protocol_card("noisy-box")
    o = with_overrides(card, levels=["0", "0.25"], draws=3, seed=9)
    assert [s.level for s in o.settings] == ["0", "0.25"] and o.draws == 3 and o.seed == 9 and o.version == card.version
    paper = with_overrides(load_protocol_card("stable-sam-paper"), levels=["1-point"])
    assert [s.level for s in paper.settings] == ["1-point"]
    with pytest.raises(SambenchError, match="has no level '2-points'"):
        with_overrides(load_protocol_card("stable-sam-paper"), levels=["2-points"])
    with pytest.raises(SambenchError, match="not a number"):
        with_overrides(card, levels=["lots"])
