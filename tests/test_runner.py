"""The runner and store end to end: rows, resume after SIGKILL, workers, failures, manifest."""

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from sambench.metrics import decode_rle, iou
from sambench.datasets import DatasetSpec
from sambench.execution import RunConfig, run
from sambench.store import Store
from sambench.types import SambenchError
try:
    from run_fixtures import sambench_cli as _cli, sigkill, stored_rows, wait_for_rows
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import sambench_cli as _cli, sigkill, stored_rows, wait_for_rows


def _config(out, **kw):
    base = dict(models=["box-fill", "grabcut"], protocols=["noisy-box"], datasets=[DatasetSpec("grabcut-sample")],
                out=out, levels=["0", "0.5"], draws=2, limit=2, workers=1, progress=False,
                model_options={"grabcut": {"max_side": 96, "iterations": 1}})
    base.update(kw)
    return RunConfig(**base)


def test_run_writes_scored_rows_and_manifest(tmp_path):
    res = run(_config(tmp_path / "r"))
    rows = stored_rows(tmp_path / "r")
    # 2 models x 2 images x 1 object x (1 draw at level 0 + 2 draws at 0.5)
    assert len(rows) == 2 * 2 * 3 and res.counts == {"ok": 12, "failed": 0}
    with Store(tmp_path / "r", create=False) as st:
        df = st.frame()
    from sambench.datasets import open_dataset

    ds = open_dataset("grabcut-sample")
    for _, r in df.iterrows():
        gt = next(o.mask for o in ds.load(r.image_id).objects if o.id == r.object_id)
        mask = decode_rle(json.loads(r.mask_rle))
        assert r.iou == pytest.approx(iou(mask, gt))
        assert r.gt_area == gt.sum() and r.pred_area == mask.sum()
    # box-fill at level 0 (the GT box) covers the whole object
    bf0 = df[(df.model == "box-fill") & (df.level == "0")]
    assert (bf0.pred_area >= bf0.gt_area).all()
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["datasets"]["grabcut-sample"]["content_hash"] == ds.content_hash()
    assert m["protocols"]["noisy-box"]["version"] == 1 and "grabcut-sample" in m["protocols"]["noisy-box"]["prompt_hash"]
    assert m["counters"]["grabcut"] == {"encoder_calls": 2, "decoded_prompts": 6}
    assert m["models"]["grabcut"]["options"] == {"max_side": 96, "iterations": 1}
    assert m["libraries"]["numpy"] and m["sambench_version"]


@pytest.mark.slow
def test_rerun_skips_done_rows_and_workers_do_not_change_results(tmp_path):
    run(_config(tmp_path / "a"))
    again = run(_config(tmp_path / "a"))
    assert again.rows_added == 0 and again.counters["grabcut"]["encoder_calls"] == 0
    run(_config(tmp_path / "b", workers=2))
    assert stored_rows(tmp_path / "a") == stored_rows(tmp_path / "b")
    # more draws later: only the new rows are computed, the old ones are untouched
    more = run(_config(tmp_path / "a", draws=3))
    assert more.rows_added == 2 * 2 * 1
    assert set(stored_rows(tmp_path / "b")) <= set(stored_rows(tmp_path / "a"))


def test_run_dir_refuses_a_changed_model(tmp_path):
    from sambench.types import SambenchError

    run(_config(tmp_path / "a", models=["grabcut"]))
    with pytest.raises(SambenchError, match="holds results of model 'grabcut' with options"):
        run(_config(tmp_path / "a", models=["grabcut"], model_options={"grabcut": {"max_side": 64, "iterations": 1}}))


@pytest.mark.slow
def test_torch_models_run_on_two_pool_workers(tmp_path):
    """The parent builds its models (torch ops) before the pool starts; forked workers then hung in their
    first torch op (OpenMP does not survive fork). With torch loaded the pool spawns: the CLI finishes and
    its rows equal a one-process run's."""
    from sambench.execution.engines import pool_context

    args = ["run", "-m", "sam-tiny", "-p", "noisy-box", "--levels", "0,0.5", "--draws", "1", "--limit", "2",
            "--device", "cpu", "--no-cache", "--no-report", "-q"]
    p = subprocess.run(_cli(*args, "--workers", "2", "--out", str(tmp_path / "two")), capture_output=True, text=True,
                       timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    run(_config(tmp_path / "one", models=["sam-tiny"], draws=1, device="cpu"))  # no cache_dir: no cache
    assert stored_rows(tmp_path / "two") == stored_rows(tmp_path / "one") and len(stored_rows(tmp_path / "one")) == 4
    assert pool_context().get_start_method() == "spawn"  # torch is loaded in this test process


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    args = ["run", "--model", "grabcut", "--model", "box-fill", "--protocol", "noisy-box", "--levels", "0,0.5,1",
            "--draws", "3", "--limit", "8", "--workers", "1", "--option", "grabcut.max_side=128",
            "--no-report", "-q", "--keep-going"]
    full = tmp_path / "full"
    subprocess.run(_cli(*args, "--out", str(full)), check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--out", str(killed)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows(proc, killed, rows=14)  # two images' rows are in: kill in the middle of the rest
    sigkill(proc)
    partial = stored_rows(killed)
    assert 0 < len(partial) < len(stored_rows(full))
    subprocess.run(_cli(*args, "--out", str(killed)), check=True, capture_output=True)
    assert stored_rows(killed) == stored_rows(full)


def _folder_dataset(root: Path):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        img = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / f"{name}.png"), img)
        m = np.zeros((40, 50), np.uint8)
        m[10:30, 15:35] = 255
        cv2.imwrite(str(root / "masks" / f"{name}.png"), m)
    (root / "images" / "c.png").write_bytes(b"this is not a png")
    cv2.imwrite(str(root / "masks" / "c.png"), np.full((40, 50), 255, np.uint8))
    cv2.imwrite(str(root / "images" / "d.png"), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "masks" / "d.png"), np.zeros((30, 50), np.uint8) + 255)  # wrong size
    cv2.imwrite(str(root / "images" / "e.png"), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "masks" / "e.png"), np.zeros((40, 50), np.uint8))  # empty
    return root


@pytest.mark.slow
def test_bad_samples_are_recorded_counted_and_set_the_exit_status(tmp_path):
    root = _folder_dataset(tmp_path / "ds")
    base = ["run", "--model", "box-fill", "--protocol", "gt-box", "--dataset", str(root), "--format", "folder",
            "--out", str(tmp_path / "r"), "--no-report", "-q"]
    p = subprocess.run(_cli(*base), capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    rows = stored_rows(tmp_path / "r")
    status = {r[2]: (r[18], r[19]) for r in rows}  # image_id -> (status, error)
    assert status["a"][0] == status["b"][0] == "ok"
    assert status["c"][0] == "failed" and "c.png" in status["c"][1]
    assert status["d"][0] == "failed" and "d.png" in status["d"][1] and "50x30" in status["d"][1]
    assert status["e"][0] == "failed" and "e.png" in status["e"][1] and "empty" in status["e"][1]
    assert "failed samples: 3" in p.stdout and "3 sample(s) failed" in p.stderr
    p = subprocess.run(_cli(*base, "--keep-going"), capture_output=True, text=True)
    assert p.returncode == 0 and len(stored_rows(tmp_path / "r")) == len(rows)


@pytest.mark.parametrize("args,needle", [
    (["--model", "grabcat"], "unknown model 'grabcat'"),
    (["--protocol", "noisy"], "unknown protocol 'noisy'"),
    (["--dataset", "no-such-dataset"], "no-such-dataset"),
    (["--levels", "0,1.7"], "impossible level 1.7"),
])
def test_unknown_names_give_one_error_line(tmp_path, args, needle):
    p = subprocess.run(_cli("run", "--out", str(tmp_path / "r"), "--no-report", "-q", *args),
                       capture_output=True, text=True)
    assert p.returncode == 2
    err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and needle in err[0], p.stderr
    assert "Traceback" not in p.stderr


def test_shards_partition_the_images_and_merge_to_the_full_run(tmp_path):
    from sambench.execution import select_images
    from sambench.store import load_runs

    ids = [f"img{i}" for i in range(40)]
    parts = [select_images("ds", ids, None, (i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids) and all(parts)
    assert select_images("ds", ids[::-1], None, (1, 3)) == parts[1][::-1]  # membership, not position
    kw = dict(models=["box-fill"], limit=None, levels=["0.5"], draws=2)
    run(_config(tmp_path / "full", **kw))
    for i in range(2):
        run(_config(tmp_path / f"s{i}", shard=(i, 2), **kw))
    merged, _ = load_runs([tmp_path / "s0", tmp_path / "s1"])
    assert sorted(map(tuple, merged.drop(columns="run").itertuples(index=False))) == sorted(stored_rows(tmp_path / "full"))


def test_resume_with_other_settings_is_refused_even_without_a_manifest(tmp_path):
    """A run killed before writing manifest.json must not be resumed with another seed/options/level."""
    from sambench.types import SambenchError

    run(_config(tmp_path / "a", models=["box-fill"], limit=1))
    (tmp_path / "a" / "manifest.json").unlink()  # as after a SIGKILL before the end
    with pytest.raises(SambenchError, match="with seed 0, this run has 7"):
        run(_config(tmp_path / "a", models=["box-fill"], limit=2, seed=7))
    run(_config(tmp_path / "a", models=["grabcut"], limit=1))  # a new model in the same directory is fine
    (tmp_path / "a" / "manifest.json").unlink()
    with pytest.raises(SambenchError, match="model 'grabcut' with options"):
        run(_config(tmp_path / "a", models=["grabcut"], limit=1,
                    model_options={"grabcut": {"max_side": 64, "iterations": 1}}))
    assert len(stored_rows(tmp_path / "a")) == 3 + 3  # box-fill (1 image) + the grabcut run that was allowed


def test_adapter_exceptions_become_failed_rows_and_retry_failed_reruns_them(tmp_path, monkeypatch):
    from sambench.adapters.baselines import BoxFillAdapter

    real = BoxFillAdapter.predict
    calls = {"n": 0}

    def flaky(self, state, prompts, mask_selection="single"):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)\nsecond line")
        return real(self, state, prompts, mask_selection)

    monkeypatch.setattr(BoxFillAdapter, "predict", flaky)
    cfg = _config(tmp_path / "r", models=["box-fill"], limit=2, prompts_per_call=2)
    res = run(cfg)
    rows = stored_rows(tmp_path / "r")
    failed = [r for r in rows if r[18] == "failed"]
    assert res.counts == {"ok": 4, "failed": 2} and len(failed) == 2
    assert failed[0][19] == ("model 'box-fill' failed to decode on grabcut-sample/banana1: "
                             "RuntimeError: CUDA out of memory (simulated)")
    assert run(cfg).rows_added == 0  # failures count as done on a plain resume
    cfg.retry_failed = True
    again = run(cfg)
    assert again.rows_added == 2 and again.counts == {"ok": 6, "failed": 0}


@pytest.mark.slow
def test_bad_option_values_give_one_error_line(tmp_path):
    for opt, needle in (("x=[", "not a YAML"), ("grabcut.iterations=abc", "'iterations' must be an integer")):
        p = subprocess.run(_cli("run", "-m", "grabcut", "--option", opt, "--out", str(tmp_path / "r"), "-q",
                                "--no-report"), capture_output=True, text=True)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
        assert len(err) == 1 and needle in err[0]


def test_duplicate_levels_are_refused():
    from sambench.config import load_protocol_card, with_overrides
    from sambench.types import SambenchError

    with pytest.raises(SambenchError, match="given twice"):
        with_overrides(load_protocol_card("noisy-box"), levels=["0.2", "0.20"])


def test_an_encode_failure_is_recorded_per_preprocessing_mode(tmp_path, monkeypatch):
    """Two protocols with different preprocessing: the mode whose encode fails records its own error."""
    from sambench.adapters.baselines import BoxFillAdapter

    real = BoxFillAdapter.encode

    def encode(self, image, preprocessing="sam"):
        if preprocessing == "hq-sam-1024":
            raise MemoryError("simulated")
        return real(self, image, preprocessing)

    monkeypatch.setattr(BoxFillAdapter, "encode", encode)
    cards = tmp_path / "cards" / "protocols"
    cards.mkdir(parents=True)
    (cards / "gt-box-hq.yaml").write_text("name: gt-box-hq\nversion: 1\nkind: gt-box\npreprocessing: hq-sam-1024\n")
    monkeypatch.setenv("SAMBENCH_CARDS", str(tmp_path / "cards"))
    res = run(_config(tmp_path / "r", models=["box-fill"], protocols=["gt-box", "gt-box-hq"], levels=None, limit=1))
    rows = {r[4]: (r[18], r[19]) for r in stored_rows(tmp_path / "r")}  # protocol -> (status, error)
    assert rows["gt-box"] == ("ok", None)
    assert rows["gt-box-hq"] == ("failed", "model 'box-fill' failed to encode grabcut-sample/banana1: MemoryError: simulated")
    assert res.counts == {"ok": 1, "failed": 1}


def test_the_engine_names_are_the_engines():
    from sambench.execution import ENGINES
    from sambench.execution.config import ENGINE_NAMES

    assert tuple(ENGINES) == ENGINE_NAMES
    with pytest.raises(SambenchError, match=r"unknown engine 'gpu' \(known: serial, process, ray\)"):
        run(_config(Path("unused"), engine="gpu"))


def test_chunk_size_is_the_old_spelling_of_prompts_per_call_and_says_so(tmp_path):
    from click.testing import CliRunner

    from sambench.cli.main import main

    base = ["run", "-m", "box-fill", "-p", "gt-box", "--limit", "1", "-q", "--no-report", "--no-cache"]
    old = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "old"), "--chunk-size", "3"])
    assert old.exit_code == 0, old.output
    assert "warning: --chunk-size is the old spelling of --prompts-per-call" in old.stderr
    assert json.loads((tmp_path / "old" / "manifest.json").read_text())["config"]["prompts_per_call"] == 3
    both = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "both"), "--chunk-size", "3",
                                                     "--prompts-per-call", "4"])
    assert both.exit_code == 2 and "--chunk-size is the old spelling of --prompts-per-call; give one" in both.stderr
    assert not (tmp_path / "both").exists()
