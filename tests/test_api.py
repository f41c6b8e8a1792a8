"""The Python API: objects in hand evaluate exactly as cards do; Run reads, reports and compares; the
documented example runs; an installed entry point registers an adapter; `import sambench` stays light."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import sambench
from sambench.datasets import open_dataset

REPO = Path(__file__).resolve().parent.parent
KEY_AND_RESULT = ["model", "dataset", "image_id", "object_id", "protocol", "level", "draw", "prompt_hash", "iou",
                  "biou", "mask_rle", "status"]
SMALL = dict(levels=[0, 0.5], draws=2, limit=2)


def _results(run) -> pd.DataFrame:
    return run.rows()[KEY_AND_RESULT].reset_index(drop=True)


@pytest.mark.slow  # over 0.8 s on idle cores (a subprocess or a model build)
def test_import_sambench_loads_neither_torch_nor_the_api():
    code = ("import sys, sambench; assert sambench.__version__; f = sambench.run; g = sambench.open_run; "
            "a = sambench.Adapter; print(sorted(m for m in ('torch', 'click', 'sambench.api') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sambench.api']"  # touching the API loads it, never torch or click
    bare = subprocess.run([sys.executable, "-c", "import sys, sambench; print('sambench.api' in sys.modules, "
                           "'torch' in sys.modules)"], capture_output=True, text=True, check=True).stdout
    assert bare.split() == ["False", "False"]


@pytest.mark.slow
def test_adapter_protocol_and_dataset_objects_give_the_rows_of_their_names(tmp_path):
    from sambench.adapters.baselines import BoxFillAdapter, GrabCutAdapter
    from sambench.config import load_protocol_card
    from sambench.execution import default_workers

    by_card = sambench.run(["box-fill", "grabcut"], "noisy-box", "grabcut-sample", out=tmp_path / "cards",
                           model_options={"grabcut": {"max_side": 96, "iterations": 1}}, **SMALL)
    by_object = sambench.run([BoxFillAdapter(), GrabCutAdapter("grabcut", max_side=96, iterations=1)],
                             load_protocol_card("noisy-box"), open_dataset("grabcut-sample"), out=tmp_path / "objects",
                             **SMALL)
    a, b = _results(by_card), _results(by_object)
    assert len(a) == 2 * 2 * (1 + 2) and (a["status"] == "ok").all()
    pd.testing.assert_frame_equal(a, b)
    man = by_object.manifests[0]
    assert man["config"]["workers"] == default_workers(["box-fill", "grabcut"])  # the objects pickled to a pool
    assert man["models"]["grabcut"]["options"] == {"max_side": 96, "iterations": 1}
    assert man["datasets"]["grabcut-sample"]["content_hash"] == open_dataset("grabcut-sample").content_hash()


class _Unpicklable(sambench.Adapter):
    """box-fill behind a lambda (does not pickle): must run in this process."""

    name = "lambda-box"
    capabilities = frozenset({"box"})

    def __init__(self):
        super().__init__()
        from sambench.adapters.baselines import BoxFillAdapter

        self.inner = BoxFillAdapter("lambda-box")
        self.hook = lambda pred: pred

    def signature(self):
        return {**self.inner.signature(), "adapter": "lambda-box"}

    def encode(self, image, preprocessing="sam"):
        self.encoder_calls += 1
        return self.inner.encode(image, preprocessing)

    def predict(self, state, prompts, mask_selection="single"):
        self.decoded_prompts += len(prompts)
        return self.hook(self.inner.predict(state, prompts, mask_selection))


def test_an_unpicklable_object_runs_in_one_worker_and_is_resumed(tmp_path):
    run = sambench.run(_Unpicklable(), "gt-box", "grabcut-sample", out=tmp_path / "r", limit=3)
    assert run.manifests[0]["config"]["workers"] == 1
    with pytest.raises(sambench.SambenchError, match="workers=2 needs every model and dataset object to pickle"):
        sambench.run(_Unpicklable(), "gt-box", "grabcut-sample", out=tmp_path / "r2", limit=3, workers=2)
    rows = run.rows()
    assert len(rows) == 3 and (rows["status"] == "ok").all() and set(rows["model"]) == {"lambda-box"}
    again = sambench.run(_Unpicklable(), "gt-box", "grabcut-sample", out=tmp_path / "r", limit=3)
    assert again.manifests[0]["invocations"][-1]["counters"]["lambda-box"]["encoder_calls"] == 0
    with pytest.raises(sambench.SambenchError, match="holds results of model 'lambda-box' with adapter"):
        bad = _Unpicklable()
        bad.signature = lambda: {**bad.inner.signature(), "adapter": "other"}
        sambench.run(bad, "gt-box", "grabcut-sample", out=tmp_path / "r", limit=3)


@pytest.mark.slow
def test_run_summary_is_the_table_the_report_writes_and_open_run_compares(tmp_path):
    run = sambench.run("box-fill", "noisy-box", "grabcut-sample", out=tmp_path / "r", **SMALL)
    table = run.summary()
    files = run.report(formats=("png",))
    csv = pd.read_csv(files["summary.csv"], dtype={"level": str})
    merged = table.merge(csv, on=["dataset", "model", "protocol", "level"], suffixes=("", "_csv"))
    assert len(merged) == len(table) == len(csv) == 2
    assert (merged["miou_pct"].round(1) == (100 * merged["miou"]).round(1)).all()
    assert (merged["n"] == merged["n_csv"]).all()
    opened = sambench.open_run(tmp_path / "r")
    pd.testing.assert_frame_equal(opened.summary(), table)
    result = opened.compare(run)
    assert result.passed and [g["delta"] for g in result.groups] == [0.0, 0.0]
    with pytest.raises(sambench.SambenchError, match="not a sambench run directory"):
        sambench.open_run(tmp_path / "nothing")


@pytest.mark.slow
def test_python_api_doc_example_runs(tmp_path, monkeypatch):
    text = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/python-api.md has no python example"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "python_api_doc"}
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), namespace)
    assert (tmp_path / "runs" / "shrunk" / "report" / "index.html").is_file()
    table = namespace["table"]
    shrunk = table[table["model"] == "shrunk-box-0.8"].set_index("level")["miou"]
    fill = table[table["model"] == "box-fill"].set_index("level")["miou"]
    assert (shrunk != fill).all()  # the user's model really ran


DIST_INFO_METADATA = "Metadata-Version: 2.1\nName: sambench-echo-adapter\nVersion: 0.1\n"
MODULE = '''

from sambench.adapters.baselines import BoxFillAdapter


class Echo(BoxFillAdapter):
    def signature(self):
        return {**super().signature(), "adapter": "echo-box", "options": self.options}


def build(card, *, device="auto", checkpoint=None, plugin=None, options=None):
    ad = Echo(card.name)
    ad.options = dict(options or {})
    return ad
'''


def test_an_installed_entry_point_registers_an_adapter(tmp_path, monkeypatch):
    """A real distribution on sys.path (a .dist-info with entry_points.txt, as pip installs it) adds an
    adapter that a card can name, from the registry and through sambench.run."""
    site = tmp_path / "site"
    (site / "echo_adapter").mkdir(parents=True)
    (site / "echo_adapter" / "__init__.py").write_text(textwrap.dedent(MODULE))
    info = site / "sambench_echo_adapter-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(DIST_INFO_METADATA)
    (info / "entry_points.txt").write_text("[sambench.adapters]\necho-box = echo_adapter:build\n")
    cards = tmp_path / "cards" / "models"
    cards.mkdir(parents=True)
    (cards / "echo.yaml").write_text("name: echo\nadapter: echo-box\noptions: {note: hello}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("SAMBENCH_CARDS", str(tmp_path / "cards"))

    from importlib.metadata import distribution

    from sambench.adapters import build_adapter, registered_adapters

    assert distribution("sambench-echo-adapter").version == "0.1"
    assert registered_adapters()["echo-box"].target == "echo_adapter:build"
    assert build_adapter("echo").signature()["options"] == {"note": "hello"}
    run = sambench.run(["echo", "box-fill"], "gt-box", "grabcut-sample", out=tmp_path / "r", limit=2, workers=1)
    rows = run.rows()
    echo, fill = rows[rows["model"] == "echo"], rows[rows["model"] == "box-fill"]
    assert len(echo) == 2 and (echo["iou"].to_numpy() == fill["iou"].to_numpy()).all()
    assert run.manifests[0]["models"]["echo"]["adapter"] == "echo-box"


@pytest.mark.slow
def test_without_out_the_same_call_resumes_the_same_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = sambench.run("box-fill", "gt-box", "grabcut-sample", limit=1)
    again = sambench.run("box-fill", "gt-box", "grabcut-sample", limit=1, workers=1)
    assert first.path == again.path and first.path.parent == Path("runs")
    assert len(again.manifests[0]["invocations"]) == 2 and len(again.rows()) == 1
    other = sambench.run("box-fill", "gt-box", "grabcut-sample", limit=2)
    assert other.path != first.path


@pytest.mark.slow
def test_run_takes_every_run_setting_of_the_command_line(tmp_path):
    """Every RunConfig field is an option (corruptions, cache and encoder settings included)."""
    from dataclasses import fields

    from sambench.execution import RunConfig
    from sambench.execution.config import OPTIONS

    assert set(OPTIONS) == {f.name for f in fields(RunConfig)} - {"models", "protocols", "datasets", "out"}
    run = sambench.run("box-fill", "gt-box", "grabcut-sample", out=tmp_path / "r", corruptions=["fog:1"],
                       cache_dir=tmp_path / "cache", encode_batch=2, limit=2, scoring_threads=0, wait_lock=True)
    rows = run.rows()
    assert sorted(set(zip(rows["corruption"], rows["severity"]))) == [("fog", 1), ("none", 0)]
    assert len(rows) == 2 * 2 and (rows["status"] == "ok").all()
    config = run.manifests[0]["config"]
    assert config["corruptions"] == ["fog:1"] and config["encode_batch"] == 2
    assert config["cache_dir"] == str(tmp_path / "cache")
    with pytest.raises(sambench.SambenchError, match=r"unknown option\(s\) corruption \(known: levels, "):
        sambench.run("box-fill", "gt-box", "grabcut-sample", corruption=["fog:1"])
    with pytest.raises(sambench.SambenchError, match="--encode-batch must be >= 1, got 0"):
        sambench.run("box-fill", "gt-box", "grabcut-sample", out=tmp_path / "bad", encode_batch=0)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_the_command_line_and_the_api_land_in_the_same_directory(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from sambench.api import configure
    from sambench.cli.main import main

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["run", "-m", "box-fill", "-p", "gt-box", "--limit", "1", "--corruption", "fog:1",
                                    "--no-cache", "-q", "--no-report"])
    assert res.exit_code == 0, res.output
    (cli_dir,) = (tmp_path / "runs").iterdir()
    api = sambench.run("box-fill", "gt-box", "grabcut-sample", limit=1, corruptions=["fog:1"])
    assert api.path.resolve() == cli_dir and api.manifests[0]["invocations"][-1]["counters"]["box-fill"][
        "decoded_prompts"] == 0  # the API resumed the CLI's run: nothing left to do
    # the CLI's names are kept for runs it made before (users resume them): no corruption, no option
    assert configure("box-fill", "gt-box", "grabcut-sample")[0].out.name == \
        "box-fill_gt-box_grabcut-sample_0fd807c9"


def test_the_api_doc_lists_every_option():
    from sambench.execution.config import OPTIONS

    text = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    assert [o for o in OPTIONS if f"| `{o}` |" not in text] == []
