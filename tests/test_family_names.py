"""Family names (``sam``, ``hq-sam``, ``stable-sam``, ``sam2``, ``stable-sam2``) and the literal command
``sambench run --model stable-sam --protocol noisy-box`` on a machine without weights."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sambench.config import FAMILY_DEFAULTS, load_model_card, resolve_model_name
try:
    from run_fixtures import sambench_cli
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import sambench_cli

REPO = Path(__file__).resolve().parent.parent


def test_family_names_resolve_to_the_documented_variants():
    assert FAMILY_DEFAULTS == {"sam": "sam-vit-l", "hq-sam": "hq-sam-vit-l", "stable-sam": "stable-sam-vit-l",
                               "sam2": "sam2.1-hiera-large", "stable-sam2": "stable-sam2.1-hiera-large"}
    for family, variant in FAMILY_DEFAULTS.items():
        assert resolve_model_name(family) == variant
        assert load_model_card(family).name == variant
    assert load_model_card("stable-sam2").raw["base"] == "sam2.1-hiera-large"
    assert resolve_model_name("sam-vit-b") == "sam-vit-b"


def test_a_card_file_with_a_family_name_shadows_the_alias(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "sam.yaml").write_text("name: sam\nadapter: sam\noptions: {variant: vit_b}\n")
    monkeypatch.setenv("SAMBENCH_CARDS", str(tmp_path))
    assert resolve_model_name("sam") == "sam" and load_model_card("sam").options["variant"] == "vit_b"


def _sambench(args: list[str], cwd: Path, env_extra: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra}
    return subprocess.run(sambench_cli(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_literal_stable_sam_command_without_weights(tmp_path):
    """The README's command on a machine without weights: one line naming the two missing files and the
    commands that get them, exit 2, and no run directory left behind."""
    ckpt = tmp_path / "ckpt"
    r = _sambench(["run", "--model", "stable-sam", "--protocol", "noisy-box"], tmp_path, {"SAMBENCH_CHECKPOINTS": str(ckpt)})
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error:")] == [last]
    assert last == (f"error: model 'stable-sam-vit-l' needs the sam-vit-l checkpoint sam_vit_l_0b3195.pth and a trained "
                    f"plug-in stable-sam-vit-l.plugin.pt, not found in {ckpt} (set $SAMBENCH_CHECKPOINTS, or pass "
                    f"--checkpoint / --plugin); get them with `sambench download sam-vit-l` then `sambench train "
                    f"stable-sam --base sam-vit-l --data /data/HQSeg-44K/DIS5K/DIS-TR --out "
                    f"{ckpt / 'stable-sam-vit-l.plugin.pt'}` (HQSeg-44K's training sets, docs/stable-sam.md)")
    assert not (tmp_path / "runs").exists()
    assert "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("family, missing", [("sam", "sam_vit_l_0b3195.pth"), ("hq-sam", "sam_hq_vit_l.pth"),
                                             ("sam2", "sam2.1_hiera_large.pt")])
def test_other_family_names_say_what_to_download(tmp_path, family, missing):
    r = _sambench(["run", "--model", family, "--protocol", "noisy-box"], tmp_path, {"SAMBENCH_CHECKPOINTS": str(tmp_path)})
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model '") and missing in last
    assert f"sambench download {resolve_model_name(family)}" in last
    assert not (tmp_path / "runs").exists()


def test_list_models_shows_the_family_names(tmp_path):
    r = _sambench(["list", "models"], tmp_path, {})
    assert r.returncode == 0
    for family, variant in FAMILY_DEFAULTS.items():
        assert any(ln.split() == [family, "->", variant] for ln in r.stdout.splitlines()), family
