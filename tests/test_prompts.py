"""Prompt protocols: keyed determinism, the noisy-box formula and distribution, points, GT boxes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sambench.config import load_protocol_card, make_setting, with_overrides
from sambench.inputs.prompts import Protocol, gt_box, make_prompt, noisy_box, prompt_rng, random_points
from sambench.types import keyed_rng
from sambench.types import Object, Prompt, SambenchError


def _rect_mask(h=100, w=200, box=(50, 20, 149, 69)):
    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


class FixedRng:
    """Stands in for a Generator whose uniform() returns chosen values, to check the formula by hand."""

    def __init__(self, u):
        self.u = np.asarray(u, float)

    def uniform(self, lo, hi, size):
        assert (lo, hi, size) == (-1.0, 1.0, 4)
        return self.u


def test_gt_box_is_min_max_pixel_indices():
    m = np.zeros((10, 12), bool)
    m[2, 3] = m[7, 9] = m[4, 5] = True
    assert gt_box(m) == (3.0, 2.0, 9.0, 7.0)
    one = np.zeros((5, 5), bool)
    one[1, 4] = True
    assert gt_box(one) == (4.0, 1.0, 4.0, 1.0)
    with pytest.raises(SambenchError, match="empty mask"):
        gt_box(np.zeros((3, 3), bool))


def test_noisy_box_formula_by_hand():
    # box (40,20)-(60,60): cx=50 cy=40 w=20 h=40; s=0.5; u=(1,-1,0.5,-0.5)
    # cx' = 50 + 1*10*0.5 = 55; cy' = 40 - 20*0.5 = 30; w' = 20 + 0.5*20*0.5 = 25; h' = 40 - 0.5*40*0.5 = 30
    b = noisy_box((40, 20, 60, 60), (100, 100), 0.5, FixedRng([1, -1, 0.5, -0.5]))
    assert b == pytest.approx((42.5, 15.0, 67.5, 45.0))
    # shift-only keeps the size, scale-only keeps the centre
    b = noisy_box((40, 20, 60, 60), (100, 100), 0.5, FixedRng([1, -1, 0.5, -0.5]), resize=False)
    assert b == pytest.approx((45.0, 10.0, 65.0, 50.0))
    b = noisy_box((40, 20, 60, 60), (100, 100), 0.5, FixedRng([1, -1, 0.5, -0.5]), shift=False)
    assert b == pytest.approx((37.5, 25.0, 62.5, 55.0))


def test_noisy_box_clamps_and_never_degenerates():
    # pushed off the right edge: clamped to W
    b = noisy_box((80, 10, 99, 30), (50, 100), 1.0, FixedRng([1, 0, 0, 0]))
    # cx = 89.5 + 1*(19/2)*1 = 99, w = 19 → [89.5, 108.5] → x1 clamped to W = 100
    assert b[2] == 100.0 and b[0] == pytest.approx(89.5)
    # collapsed width (u=-1, s=1 → w=0) is widened to 1 px inside the image
    b = noisy_box((0, 0, 4, 10), (20, 20), 1.0, FixedRng([0, 0, -1, 0]))
    assert b[2] - b[0] == pytest.approx(1.0) and b[0] >= 0
    # ... but never beyond the GT box's own width: a 1-px wide object keeps its GT side (issue 11)
    assert noisy_box((0, 0, 0, 10), (20, 20), 1.0, FixedRng([0, 0, -1, 0]))[0:3:2] == (0.0, 0.0)
    rng = keyed_rng("ab" * 32)
    for _ in range(2000):
        x0, y0, x1, y1 = noisy_box((0, 0, 5, 3), (4, 6), 1.0, rng)
        assert 0 <= x0 < x1 <= 6 and 0 <= y0 < y1 <= 4


def test_noisy_box_distribution():
    """u ~ U[-1,1): zero-mean shift, E[w'/w - 1] = 0, Var = s²/3, bounds |Δcx| <= s·w/2."""
    box, s, n = (400.0, 400.0, 600.0, 500.0), 0.4, 20000  # far from the edges: no clamping
    rng = keyed_rng("cd" * 32)
    arr = np.array([noisy_box(box, (2000, 2000), s, rng) for _ in range(n)])
    cx = (arr[:, 0] + arr[:, 2]) / 2 - 500.0
    w = (arr[:, 2] - arr[:, 0]) / 200.0 - 1.0
    h = (arr[:, 3] - arr[:, 1]) / 100.0 - 1.0
    assert np.abs(cx).max() <= s * 100 + 1e-3
    assert np.abs(w).max() <= s + 1e-6 and np.abs(h).max() <= s + 1e-6
    # mean within 4 standard errors of 0; variance within 5% of s^2/3 (uniform on [-s, s))
    for v, half in ((cx, s * 100), (w, s), (h, s)):
        assert abs(v.mean()) < 4 * half / np.sqrt(3 * n)
        assert v.var() == pytest.approx(half ** 2 / 3, rel=0.05)
    # independence of the four coordinates
    assert abs(np.corrcoef(cx, w)[0, 1]) < 0.05


def test_points_are_foreground_pixels_without_replacement():
    m = _rect_mask()
    p = random_points(m, 10, keyed_rng("ef" * 32))
    xy = np.array(p.points, int)
    assert len(set(map(tuple, xy))) == 10
    assert m[xy[:, 1], xy[:, 0]].all()
    assert p.labels == (1,) * 10
    neg = random_points(m, 3, keyed_rng("ef" * 32), negatives=2)
    xy = np.array(neg.points, int)
    assert neg.labels == (1, 1, 1, 0, 0)
    assert m[xy[:3, 1], xy[:3, 0]].all() and not m[xy[3:, 1], xy[3:, 0]].any()
    # an object smaller than k: sampled with replacement, still foreground
    tiny = np.zeros((5, 5), bool)
    tiny[2, 2] = True
    assert random_points(tiny, 3, keyed_rng("00" * 32)).points == ((2.0, 2.0),) * 3


def test_points_are_uniform_over_the_object():
    m = np.zeros((4, 4), bool)
    m[0, 0] = m[1, 1] = m[2, 2] = m[3, 3] = True
    rng = keyed_rng("12" * 32)
    counts = {}
    for _ in range(4000):
        (x, y), = random_points(m, 1, rng).points
        counts[(x, y)] = counts.get((x, y), 0) + 1
    assert set(counts) == {(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (3.0, 3.0)}
    assert all(abs(c - 1000) < 120 for c in counts.values())


def _objects():
    rng = np.random.default_rng(0)
    objs = []
    for i in range(5):
        m = np.zeros((60, 80), bool)
        y, x = rng.integers(0, 40), rng.integers(0, 60)
        m[y:y + 15, x:x + 18] = True
        objs.append(Object(id=f"o{i}", mask=m))
    return objs


def test_prompts_do_not_depend_on_order_or_other_objects():
    proto = Protocol(with_overrides(load_protocol_card("noisy-box"), draws=3))
    objs = _objects()
    fwd = {(t.object_id, t.level, t.draw): t.prompt for t in proto.tasks("ds", "img", objs)}
    rev = {(t.object_id, t.level, t.draw): t.prompt for t in proto.tasks("ds", "img", objs[::-1])}
    alone = {(t.object_id, t.level, t.draw): t.prompt for t in proto.tasks("ds", "img", objs[2:3])}
    assert fwd == rev
    assert all(fwd[k] == v for k, v in alone.items())
    # more draws never change the first ones; a level subset keeps its prompts
    more = Protocol(with_overrides(load_protocol_card("noisy-box"), draws=6, levels=["0.5"]))
    sub = {(t.object_id, t.level, t.draw): t.prompt for t in more.tasks("ds", "img", objs)}
    assert all(sub[k] == fwd[k] for k in sub if k in fwd) and any(k in fwd for k in sub)


def test_prompts_depend_on_every_key_part():
    setting = load_protocol_card("noisy-box").setting("0.5")
    base = dict(seed=0, protocol="noisy-box", version=1, level="0.5", draw=0, dataset="d", image_id="i", object_id="o")
    m = _objects()[0].mask
    ref = make_prompt(setting, m, prompt_rng(**base))
    for k, v in dict(seed=1, protocol="box-shift", version=2, level="0.6", draw=1, dataset="e", image_id="j",
                     object_id="p").items():
        other = make_prompt(setting, m, prompt_rng(**{**base, k: v}))
        assert other != ref, k


def test_prompts_identical_in_another_process():
    code = (
        "import numpy as np, json\n"
        "from sambench.config import load_protocol_card\n"
        "from sambench.inputs.prompts import Protocol\n"
        "from sambench.types import Object\n"
        "m = np.zeros((60, 80), bool); m[10:30, 20:50] = True\n"
        "p = Protocol(load_protocol_card('stable-sam-paper'))\n"
        "print(json.dumps([t.prompt.to_json() for t in p.tasks('ds', 'img', [Object('a', m)])]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""})
    m = np.zeros((60, 80), bool)
    m[10:30, 20:50] = True
    here = [t.prompt.to_json() for t in Protocol(load_protocol_card("stable-sam-paper")).tasks("ds", "img", [Object("a", m)])]
    assert json.loads(out.stdout) == here
    assert len(here) == 1 + 20 * 3  # gt-box once, then 20 draws of noisy box, 1 point, 3 points


def test_level_zero_is_the_gt_box_and_deterministic_levels_have_one_draw():
    card = load_protocol_card("noisy-box")
    zero = card.setting("0")
    assert zero.deterministic and card.draws_for(zero) == 1
    m = _rect_mask()
    assert make_prompt(zero, m, keyed_rng("aa" * 32)).box == gt_box(m)


def test_prompt_json_roundtrip_and_hash():
    p = Prompt(box=(1.123456, 2, 3, 4.5))
    assert p.box == (1.1235, 2.0, 3.0, 4.5)
    assert Prompt.from_json(p.to_json()) == p and Prompt.from_json(p.to_json()).hash() == p.hash()
    q = Prompt(points=((1, 2), (3, 4)), labels=(1, 0))
    assert Prompt.from_json(q.to_json()) == q
    with pytest.raises(ValueError):
        Prompt(box=(5, 0, 1, 1))


@pytest.mark.parametrize("kind,params,msg", [
    ("noisy-box", {"scale": -0.1}, "impossible level"),
    ("noisy-box", {"scale": 1.5}, "impossible level"),
    ("points", {"k": 0}, "impossible level"),
    ("points", {"k": 2.5}, "impossible level"),
    ("blob", {}, "unknown prompt kind"),
])
def test_impossible_levels_are_refused(kind, params, msg):
    with pytest.raises(SambenchError, match=msg):
        make_setting(kind, params, None, "test")
    if kind != "blob":
        with pytest.raises(SambenchError, match="impossible level"):
            with_overrides(load_protocol_card(kind),
                           levels=[str(list(params.values())[0])])
