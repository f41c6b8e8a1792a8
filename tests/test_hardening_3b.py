"""Hardening 3 (issue 22), items 1, 5, 6, 7, 10, 11 and 16: an adapter object is never looked up as a card,
read-only readers see every committed row, one (image, corruption) that cannot be made fails alone, a wrong
number of masks is a failed row, bad --option values blame --option, a board never leaves an empty --out or
drops an empty run silently, and the Ctrl-C test works from a background job."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sambench
from sambench.types import SambenchError

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------- item 1: an adapter object is not a card name


class _NoAdapterKey(sambench.Adapter):
    """An adapter object whose signature names no ``adapter`` (allowed: it is identified by the signature)."""

    name = "no-key"
    capabilities = frozenset({"box"})

    def signature(self):
        return {"model": "no-key", "adapter_version": "1", "weights_sha256": None, "options": {}}

    def encode(self, image, preprocessing="sam"):
        return image.shape[:2]

    def predict(self, state, prompts, mask_selection="single"):
        raise NotImplementedError


def test_worker_policy_never_looks_up_an_adapter_objects_name_as_a_card():
    from sambench.adapters.baselines import BoxFillAdapter
    from sambench.execution.config import default_workers

    class Named(_NoAdapterKey):
        def signature(self):
            return {**super().signature(), "adapter": "shrunk-box"}  # no card or registered adapter of that name

    assert default_workers(["no-key"], {"no-key": _NoAdapterKey()}) == 1  # was: "unknown model ''"
    assert default_workers(["shrunk-box"], {"shrunk-box": Named()}) == 1  # was: "unknown model 'shrunk-box'"
    # a registered CPU baseline in hand still gets one process per usable CPU
    assert default_workers(["box-fill"], {"box-fill": BoxFillAdapter()}) == len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_python_api_doc_example_runs_as_a_saved_script(tmp_path):
    text = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    script = tmp_path / "shrunk.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "shrunk-box-0.8" in p.stdout
    assert (tmp_path / "runs" / "shrunk" / "report" / "index.html").is_file()


# ------------------------------------------------------------------- item 10: blame the right thing


@pytest.mark.parametrize("model, key, value, problem", [
    ("sam-tiny", "mask_threshold", "abc", "must be a finite number"),
    ("sam-tiny", "dtype", "fp8", "must be fp32, bf16 or fp16"),
    ("sam-tiny", "chunk_size", 0, "must be an integer >= 1"),
    ("sam2.1-hiera-tiny-random", "dtype", "fp8", "must be fp32, bf16 or fp16"),
    ("hf-sam-vit-base", "chunk_size", 0, "must be an integer >= 1"),
    ("grabcut", "iterations", 0, "must be an integer >= 1"),
])
def test_a_bad_option_value_blames_option_not_the_card_file(model, key, value, problem):
    from sambench.adapters import build_adapter
    with pytest.raises(SambenchError) as err:
        build_adapter(model, device="cpu", options={key: value})
    msg = str(err.value)
    assert msg.startswith(f"--option {model}.{key}={value}: model '{model}': option '{key}' {problem}"), msg
    assert ".yaml" not in msg and "\n" not in msg


@pytest.mark.parametrize("model", ["sam2.1-hiera-tiny-random", "hf-sam-vit-base"])
def test_an_unknown_option_key_blames_option_for_sam2_and_transformers_too(model):
    from sambench.adapters import build_adapter
    with pytest.raises(SambenchError, match=r"^--option mask_treshold: unknown option 'mask_treshold' for model "
                                            rf"'{re.escape(model)}' \(did you mean 'mask_threshold'"):
        build_adapter(model, device="cpu", options={"mask_treshold": 0.5})


def test_a_bad_value_in_the_card_file_still_blames_the_card(tmp_path):
    from sambench.adapters import build_adapter
    card = tmp_path / "bad-tiny.yaml"
    card.write_text("name: bad-tiny\nadapter: sam\noptions: {variant: tiny, dtype: fp8}\n", encoding="utf-8")
    with pytest.raises(SambenchError, match=rf"^{re.escape(str(card))}: option 'dtype' must be fp32, bf16 or fp16"):
        build_adapter(str(card), device="cpu", options={"chunk_size": 4})


def test_a_0_128_mask_declared_ignore_128_gets_the_hint_to_read_the_band_as_foreground(tmp_path):
    import cv2
    from sambench.datasets.folder import FolderDataset
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((12, 12, 3), 90, np.uint8))
    band = np.zeros((12, 12), np.uint8)
    band[3:9, 3:9] = 128  # 36 pixels of 128, nothing else
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), band)
    with pytest.raises(SambenchError) as err:
        FolderDataset(tmp_path, ignore=128).load("a")
    msg = str(err.value)
    assert "every one of its 36 non-zero pixel(s) is 128, the declared ignore value (ignore=128)" in msg
    assert "--dataset-option threshold=127 reads it as foreground" in msg
    # and the hint is right: that threshold gives the band as the object, nothing ignored
    obj = FolderDataset(tmp_path, ignore=128, threshold=127).load("a").objects[0]
    assert obj.mask.sum() == 36 and obj.ignore is None


# --------------------------------------------------------------------------------- item 11: the leaderboard


def test_a_refused_board_leaves_no_out_directory(tmp_path):
    from click.testing import CliRunner
    from sambench.cli.main import main
    from test_leaderboard import SHIFTS_A, make_run

    make_run(tmp_path / "r1", {"A": SHIFTS_A})
    out = tmp_path / "board"
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "r1"), "--out", str(out), "--rank-by", "nope"])
    assert res.exit_code == 2 and "--rank-by nope" in res.output, res.output
    assert not out.exists()  # was: an empty directory


def test_a_run_with_no_rows_is_named_on_the_board_and_warned(tmp_path):
    from click.testing import CliRunner
    from sambench.cli.main import main
    from test_leaderboard import SHIFTS_A, make_run

    make_run(tmp_path / "r1", {"A": SHIFTS_A})
    make_run(tmp_path / "r0", {})  # a run killed before its first row: a store and a manifest, no rows
    out = tmp_path / "board"
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "r1"), str(tmp_path / "r0"),
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output + res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == [f"warning: run {tmp_path / 'r0'} holds no rows on clean images: nothing of it is on this "
                        f"board"]
    import json
    doc = json.loads((out / "leaderboard.json").read_text())
    assert doc["board"]["empty_runs"] == [str(tmp_path / "r0")]
    assert [e["model"] for e in doc["board"]["entries"]] == ["A"]
    for page in ("leaderboard.md", "leaderboard.html"):
        assert f"run {tmp_path / 'r0'} holds no rows" in (out / page).read_text()


# ------------------------------------------------------------------------- item 16: CI checks what it claims


def _ignore_sigint() -> None:  # what a shell does to a background job (`pytest &`) and nohup
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_default_sigint_gives_a_child_sigint_back_when_the_suite_ignores_it():
    from run_fixtures import default_sigint
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"

    def ignored_then_restored():
        _ignore_sigint()
        default_sigint()

    ignored = subprocess.run([sys.executable, "-I", "-S", "-c", probe], preexec_fn=_ignore_sigint, capture_output=True, text=True)
    restored = subprocess.run([sys.executable, "-I", "-S", "-c", probe], preexec_fn=ignored_then_restored, capture_output=True,
                              text=True)
    assert (ignored.stdout.strip(), restored.stdout.strip()) == ("False", "True")


@pytest.mark.slow
def test_the_ctrl_c_test_passes_when_the_suite_runs_as_a_background_job():
    test = "tests/test_hardening_io.py::test_ctrl_c_exits_130_and_killed_invocations_reach_the_manifest"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=REPO, env=env,
                       preexec_fn=_ignore_sigint, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "1 passed" in p.stdout, p.stdout[-3000:]


def _fake_bin(tmp_path, uid: int, apt_status: int) -> Path:
    """A PATH of stand-ins for ``id`` and ``apt-get`` (which logs its arguments) and no browser at all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt.log\nexit {apt_status}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("uid, apt_status, calls, note", [
    (0, 0, ["update -qq", "install -y -qq chromium"], ""),
    (0, 100, ["update -qq"], "apt-get could not install chromium"),
    (1000, 0, [], "not root"),
])
def test_ci_installs_chromium_where_it_can_and_never_fails(tmp_path, uid, apt_status, calls, note):
    import shutil
    bin_dir = _fake_bin(tmp_path, uid, apt_status)
    p = subprocess.run([shutil.which("bash"), str(REPO / ".ci" / "install-chromium")], env={"PATH": str(bin_dir)},
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    log = tmp_path / "apt.log"
    assert (log.read_text().splitlines() if log.exists() else []) == calls
    assert note in p.stderr
    assert "install-chromium" in (REPO / ".ci" / "run").read_text()


def test_the_page_test_skip_reason_says_what_to_install(monkeypatch):
    from test_leaderboard import chromium
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.skip.Exception, match=r"install it, e\.g\. `apt-get install chromium`"):
        chromium()


# ------------------------------------------------------------------ item 7: masks per prompt, misfit datasets


class _Squares(sambench.Dataset):
    """Two tiny images with one square object each; ``mask_size`` overrides image b's mask size (a misfit)."""

    format = "test"

    def __init__(self, name="squares", mask_size=None):
        self.name, self.mask_size = name, mask_size

    def ids(self):
        return ["a", "b"]

    def load(self, image_id):
        image = np.full((20, 24, 3), 120, np.uint8)
        h, w = self.mask_size if (self.mask_size and image_id == "b") else (20, 24)
        mask = np.zeros((h, w), bool)
        mask[4:12, 6:16] = True
        return sambench.types.Sample(self.name, image_id, image, [sambench.types.Object("0", mask)])

    def _hash_payload(self):
        return {"mask_size": self.mask_size}

    def describe(self):
        return {"name": self.name, "format": self.format, "n_images": 2}


class _Counting(sambench.Adapter):
    """The box as the mask, but ``extra`` masks more (or fewer, when negative) than prompts."""

    name = "counting"
    capabilities = frozenset({"box", "points", "box+points"})
    interactive = True

    def __init__(self, extra):
        super().__init__()
        self.extra = extra

    def signature(self):
        return {"model": f"counting{self.extra:+d}", "adapter": "counting", "adapter_version": "1",
                "weights_sha256": None, "options": {"extra": self.extra}}

    def encode(self, image, preprocessing="sam"):
        return image.shape[:2]

    def predict(self, state, prompts, mask_selection="single", **kw):
        n = max(0, len(prompts) + self.extra)
        masks = np.zeros((n, *state), bool)
        masks[:, 4:12, 6:16] = True
        return sambench.Prediction(masks=masks, scores=np.full(n, 0.5))


@pytest.mark.parametrize("extra, got", [(-1, "0 masks"), (1, "2 masks")])
def test_one_mask_fewer_or_more_than_prompts_is_a_failed_row_with_its_reason(tmp_path, extra, got):
    run = sambench.run([_Counting(extra)], ["gt-box", "clicks"], [_Squares()], out=tmp_path / "r", workers=1,
                       prompts_per_call=1, levels=None)
    rows = run.rows()
    assert len(rows) and (rows["status"] == "failed").all()  # was: IndexError (fewer), silently kept (more)
    batch = rows[rows["protocol"] == "gt-box"]
    assert sorted(batch["image_id"]) == ["a", "b"]
    assert set(batch["error"]) == {f"model 'counting{extra:+d}' returned {got} for 1 prompt on squares/a",
                                   f"model 'counting{extra:+d}' returned {got} for 1 prompt on squares/b"}
    clicks = rows[rows["protocol"] == "clicks"]
    assert len(clicks) == 2 * 20 and clicks["error"].str.contains(f"returned {got} for 1 prompt on squares/").all()


def test_a_dataset_objects_misfit_mask_is_blamed_on_the_dataset_not_the_model(tmp_path):
    from sambench.adapters.baselines import BoxFillAdapter
    run = sambench.run([BoxFillAdapter()], "gt-box", [_Squares(mask_size=(10, 12))], out=tmp_path / "r", workers=1)
    rows = run.rows().set_index("image_id")
    assert rows.loc["a", "status"] == "ok"
    assert rows.loc["b", "status"] == "failed"
    assert rows.loc["b", "error"] == ("dataset 'squares' image 'b': object '0' has a 12x10 mask for a 24x20 image "
                                      "(the dataset's annotation does not fit its image)")


# ------------------------------------------------------ item 6: a corruption one image cannot take fails alone


class _WithTiny(_Squares):
    """Image ``a`` (24×20) and image ``tiny`` (1×1, its one pixel the object)."""

    def ids(self):
        return ["a", "tiny"]

    def load(self, image_id):
        if image_id != "tiny":
            return super().load(image_id)
        return sambench.types.Sample(self.name, "tiny", np.full((1, 1, 3), 200, np.uint8),
                                     [sambench.types.Object("0", np.ones((1, 1), bool))])


def test_a_corruption_an_image_cannot_take_fails_that_image_and_condition_only(tmp_path):
    from sambench.adapters.baselines import BoxFillAdapter
    run = sambench.run([BoxFillAdapter()], "gt-box", [_WithTiny()], out=tmp_path / "r", workers=1,
                       corruptions=["motion-blur:1", "brightness:1"])  # was: SambenchError, the run stopped
    rows = run.rows()
    got = {(r.image_id, r.corruption, r.severity): (r.status, r.error) for r in rows.itertuples()}
    assert set(got) == {(i, c, s) for i in ("a", "tiny") for c, s in (("none", 0), ("motion-blur", 1),
                                                                        ("brightness", 1))}
    status, error = got[("tiny", "motion-blur", 1)]
    assert status == "failed" and error.startswith("squares/tiny under motion-blur:1: cannot make this corruption: "
                                                   "image of 1x1 px is too small for a motion blur"), error
    assert [k for k, (st, _) in got.items() if st != "ok"] == [("tiny", "motion-blur", 1)]


def test_models_doc_states_the_tested_transformers_range_and_the_pin_pyproject_has():
    doc = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    pin = re.search(r'"transformers(>=[0-9.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    stated = re.search(r"\*\*Tested versions\.\*\* `pyproject.toml` asks for `transformers(>=[0-9.]+)`;"
                       r"(.*?)\n\n", doc, flags=re.S)
    assert stated, "docs/models.md has no 'Tested versions' paragraph for transformers"
    assert stated.group(1) == pin
    tested = re.findall(r"\*\*(\d+\.\d+)\*\*", stated.group(2))
    assert len(tested) >= 2  # a range, not one version
    as_tuple = lambda v: tuple(int(x) for x in v.strip(">=").split("."))  # noqa: E731
    assert all(as_tuple(v) >= as_tuple(pin) for v in tested)
    assert "transformers (5.23)" not in doc and "`transformers` (5.23)" not in doc


# ----------------------------------------------------------- item 5: read-only readers see every committed row


def _no_write_override() -> None:
    """``preexec_fn``: a root child loses CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (prctl PR_CAPBSET_DROP from
    the bounding set, so the exec'd Python never has them), so a mode-555 directory is read-only to it, as
    to any other user; a non-root child needs nothing."""
    if os.geteuid() == 0:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):
            libc.prctl(24, cap, 0, 0, 0)



@pytest.mark.slow
@pytest.mark.parametrize("checkpointed", [8, 0])
def test_a_killed_runs_wal_copied_read_only_without_shm_is_read_whole(tmp_path, checkpointed):
    import shutil
    from sambench.store import Store, write_manifest
    from test_leaderboard import SHIFTS_A, manifest, rows_for

    rows = rows_for("A", SHIFTS_A)  # 15 rows
    src, dst, private_tmp = tmp_path / "src", tmp_path / "ro", tmp_path / "tmp"
    st = Store(src)  # the killed run's writer, still open: its last rows are only in the log
    if checkpointed:
        st.write(rows[:checkpointed])
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    st.write(rows[checkpointed:])
    dst.mkdir()
    for name in ("results.sqlite", "results.sqlite-wal"):  # copied as the issue did: no -shm
        shutil.copyfile(src / name, dst / name)
    st.close()
    write_manifest(dst, manifest(["A"]))
    private_tmp.mkdir()
    dst.chmod(0o555)
    code = ("import pathlib, sambench, sys\n"
            "d = pathlib.Path(sys.argv[1])\n"
            "try:\n    (d / 'probe').touch()\n    print('WRITABLE')\nexcept PermissionError:\n"
            "    print(len(sambench.open_run(d).rows()))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(private_tmp)}
    try:
        p = subprocess.run([sys.executable, "-c", code, str(dst)], preexec_fn=_no_write_override, env=env,
                           capture_output=True, text=True, timeout=120)
    finally:
        dst.chmod(0o755)
    if p.stdout.strip() == "WRITABLE":
        pytest.skip("cannot make a directory read-only for a child process here")
    assert p.returncode == 0, p.stderr[-1500:]
    assert p.stdout.strip() == "15"  # was: 8 (the checkpointed ones), or "no such table: info" with none
    assert sorted(os.listdir(dst)) == ["manifest.json", "results.sqlite", "results.sqlite-wal"]
    assert list(private_tmp.iterdir()) == []  # the private copy is gone with the store
