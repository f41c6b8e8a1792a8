"""`sambench prompts export`: the realised prompts, and the same set hash a run records."""

import json

import pytest
from click.testing import CliRunner

from sambench.cli.main import main
from sambench.inputs.prompts import gt_box
from sambench.datasets import DatasetSpec
from sambench.execution import RunConfig, run
from sambench.types import Prompt


@pytest.mark.slow
def test_export_matches_the_prompts_a_run_used(tmp_path):
    out = tmp_path / "p.json"
    res = CliRunner().invoke(main, ["prompts", "export", "-p", "stable-sam-paper", "-d", "grabcut-sample",
                                    "--limit", "3", "--draws", "2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    # 3 images x 1 object x (gt-box once + 2 draws x {noisy box, 1 point, 3 points})
    assert len(doc["prompts"]) == 3 * (1 + 2 * 3) and doc["failed"] == 0
    assert doc["protocol"]["name"] == "stable-sam-paper" and doc["protocol"]["version"] == 1
    for p in doc["prompts"]:
        assert Prompt.from_dict(p["prompt"]).hash() == p["prompt_hash"]
    gt = [p for p in doc["prompts"] if p["level"] == "gt-box"]
    from sambench.datasets import open_dataset

    ds = open_dataset("grabcut-sample")
    for p in gt:
        assert tuple(p["prompt"]["box"]) == gt_box(ds.load(p["image_id"]).objects[0].mask)
    three = [p for p in doc["prompts"] if p["level"] == "3-points"]
    assert all(len(p["prompt"]["points"]) == 3 for p in three)

    r = run(RunConfig(models=["box-fill"], protocols=["stable-sam-paper"], datasets=[DatasetSpec("grabcut-sample")],
                      out=tmp_path / "run", draws=2, limit=3, progress=False))
    assert r.manifest["protocols"]["stable-sam-paper"]["prompt_hash"]["grabcut-sample"] == doc["prompt_hash"]
    assert r.manifest["datasets"]["grabcut-sample"]["content_hash"] == doc["dataset"]["content_hash"]
