"""Storage and CLI defects found by issue 11's fault audit, kept fixed: read-only runs, full disks,
corruption, resume identity, retries, CLI validation.

Read-only and disk-full cases run the real thing: the command runs in a private mount namespace
(``unshare -m``) on a read-only bind mount or a tiny tmpfs. Tests run as root, and root ignores chmod, but
not a read-only mount (EROFS) or a full file system (ENOSPC). Where mount namespaces are not permitted
those tests are skipped (the message says why).
"""

import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

try:
    from run_fixtures import default_sigint, error_lines, sambench_cli, sigkill, wait_for_rows
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import default_sigint, error_lines, sambench_cli, sigkill, wait_for_rows

PY = shlex.quote(sys.executable)


def _one_error(p, *needles):
    err = error_lines(p.stderr)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert len(err) == 1, p.stderr
    assert "unexpected" not in err[0] and "Traceback" not in p.stderr, p.stderr
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        p = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=16k tmpfs "$0"', "/mnt"],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return p.returncode == 0


needs_mounts = pytest.mark.skipif(not _namespaces_work(), reason="needs mount namespaces (unshare -m; root)")


def _in_namespace(setup: list[str], args: list[str], after: str = "") -> subprocess.CompletedProcess:
    """Run ``setup`` (mount commands) then ``sambench ARGS`` in a private mount namespace; ``after`` runs
    inside too (its output goes to stdout after a line ``---``)."""
    cmd = " ".join(shlex.quote(a) for a in sambench_cli(*args))
    script = " && ".join(setup) + f" && {{ {cmd}; rc=$?; echo ---; {after or 'true'}; exit $rc; }}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)


def _ro_bind(d: Path) -> list[str]:
    q = shlex.quote(str(d))
    return [f"mount --bind {q} {q}", f"mount -o remount,ro,bind {q}"]


def _tmpfs(d: Path, kib: int) -> list[str]:
    return [f"mount -t tmpfs -o size={kib}k tmpfs {shlex.quote(str(d))}"]


def _run(out: Path, *extra, limit=2, check=True):
    p = subprocess.run(sambench_cli("run", "-m", "box-fill", "-p", "gt-box", "--limit", str(limit), "--out", str(out),
                                    "--no-report", "-q", *extra), capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p


# ---------------------------------------------------------------------------------------- read-only runs


@pytest.mark.slow
@needs_mounts
@pytest.mark.parametrize("wal", [False, True], ids=["finished-store", "wal-header-no-shm"])
def test_report_and_compare_read_a_run_in_a_read_only_directory(tmp_path, wal):
    base = tmp_path / "base"
    _run(base)
    if wal:  # as the committed results/default: WAL in the header, no -wal/-shm beside it
        con = sqlite3.connect(base / "results.sqlite")
        con.execute("PRAGMA journal_mode=WAL")
        con.close()
    assert sorted(os.listdir(base)) == ["manifest.json", "results.sqlite"]
    before = (base / "results.sqlite").read_bytes()
    out = tmp_path / "out"
    p = _in_namespace(_ro_bind(base), ["report", str(base), "--out", str(out), "--format", "png"],
                      after=f"ls -a {shlex.quote(str(base))}")
    assert p.returncode == 0, p.stderr
    assert (out / "summary.csv").is_file() and (out / "index.html").is_file()
    assert p.stdout.split("---")[1].split() == [".", "..", "manifest.json", "results.sqlite"]
    p = _in_namespace(_ro_bind(base), ["compare", str(base), str(base)])
    assert p.returncode == 0 and "PASS" in p.stdout, p.stdout + p.stderr
    assert (base / "results.sqlite").read_bytes() == before


@pytest.mark.slow
@needs_mounts
def test_report_into_a_read_only_directory_says_so_in_one_line(tmp_path):
    base = tmp_path / "base"
    _run(base)
    p = _in_namespace(_ro_bind(base), ["report", str(base)])  # default out: base/report, on the read-only mount
    _one_error(p, str(base / "report"), "read-only file system")
    ro = tmp_path / "ro"
    ro.mkdir()
    p = _in_namespace(_ro_bind(ro), ["report", str(base), "--out", str(ro / "rep")])
    _one_error(p, str(ro / "rep"), "read-only file system")


# --------------------------------------------------------------------------------- compare without manifest


def _folder(root: Path, mask_value: int = 255, n: int = 3) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"im{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
        m = np.zeros((20, 30), np.uint8)
        m[4:16, 5 + i:25] = mask_value
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), m)
    return root


@pytest.mark.slow
def test_compare_checks_dataset_identity_from_the_store_when_the_manifest_is_missing(tmp_path):
    a = _folder(tmp_path / "a" / "ds")
    b = _folder(tmp_path / "b" / "ds")
    m = np.zeros((20, 30), np.uint8)
    m[2:18, 2:28] = 255                       # another annotation of im1: other data, same name
    cv2.imwrite(str(b / "masks" / "im1.png"), m)
    for src, out in ((a, tmp_path / "ra"), (b, tmp_path / "rb")):
        p = subprocess.run(sambench_cli("run", "-m", "box-fill", "-p", "gt-box", "-d", str(src), "--out", str(out),
                                        "--no-report", "-q"), capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    (tmp_path / "rb" / "manifest.json").unlink()          # a killed run has none
    p = subprocess.run(sambench_cli("compare", str(tmp_path / "ra"), str(tmp_path / "rb")), capture_output=True,
                       text=True)
    _one_error(p, "dataset")
    assert "content" in p.stderr
    p = subprocess.run(sambench_cli("compare", str(tmp_path / "ra"), str(tmp_path / "rb"), "--allow-dataset-mismatch",
                           "--allow-prompt-mismatch"),
                       capture_output=True, text=True)
    assert p.returncode in (0, 1), p.stderr


# --------------------------------------------------------------------------- resume with other settings


@pytest.mark.parametrize("first,second,needle", [
    (["--draws", "3"], ["--draws", "2"], "draws"),
    (["--levels", "0,0.5"], ["--levels", "0,1"], "levels"),
    (["--chunk-size", "64"], ["--chunk-size", "3"], "prompts_per_call"),
])
@pytest.mark.slow
def test_a_resume_with_fewer_draws_other_levels_or_another_chunk_size_is_refused(tmp_path, first, second, needle):
    args = ["run", "-m", "box-fill", "-p", "noisy-box", "--limit", "1", "--out", str(tmp_path / "r"), "--no-report", "-q"]
    default = {"--draws": "2", "--levels": "0,0.5", "--chunk-size": "64"}
    fixed = [x for k, v in default.items() if k != first[0] for x in (k, v)]
    p = subprocess.run(sambench_cli(*args, *fixed, *first), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = sqlite3.connect(tmp_path / "r" / "results.sqlite").execute("SELECT COUNT(*) FROM results").fetchone()[0]
    p = subprocess.run(sambench_cli(*args, *fixed, *second), capture_output=True, text=True)
    _one_error(p, needle, "--out")
    assert sqlite3.connect(tmp_path / "r" / "results.sqlite").execute("SELECT COUNT(*) FROM results").fetchone()[0] == rows
    # the same settings resume fine
    p = subprocess.run(sambench_cli(*args, *fixed, *first), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.slow
def test_a_killed_run_resumed_with_more_draws_ends_with_every_object_on_the_same_draws(tmp_path):
    """Growing is allowed: the resume computes the new draws for every image, so no object is left behind."""
    args = ["run", "-m", "box-fill", "-p", "noisy-box", "--levels", "0.5", "--limit", "4", "--out", str(tmp_path / "r"),
            "--no-report", "-q"]
    p = subprocess.run(sambench_cli(*args, "--draws", "2"), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    con = sqlite3.connect(tmp_path / "r" / "results.sqlite")
    con.execute("DELETE FROM results WHERE image_id IN ('book', 'bush')")
    con.commit()
    con.close()  # as if killed after two of the four images
    p = subprocess.run(sambench_cli(*args, "--draws", "3"), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    con = sqlite3.connect(tmp_path / "r" / "results.sqlite")
    per_object = con.execute("SELECT image_id, COUNT(*) FROM results GROUP BY image_id").fetchall()
    con.close()
    assert len(per_object) == 4 and {n for _, n in per_object} == {3}
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["protocols"]["noisy-box"]["stored"] == {"draws": 3, "levels": ["0.5"]}


# --------------------------------------------------------------------------- storage and I/O errors


@pytest.mark.slow
@needs_mounts
def test_a_full_disk_during_a_run_is_one_line_naming_the_file(tmp_path):
    d = tmp_path / "small"
    d.mkdir()
    p = _in_namespace(_tmpfs(d, 200), ["run", "-m", "box-fill", "-p", "noisy-box", "--draws", "20", "--levels",
                                      "0.2,0.5,1", "--out", str(d / "r"), "--no-report", "-q", "--workers", "1"])
    err = _one_error(p, str(d / "r" / "results.sqlite"), "no space left on device")
    assert "rows are kept" in err or "resume" in err, err   # what to do next


@pytest.mark.slow
@needs_mounts
def test_a_full_disk_during_a_report_leaves_no_truncated_file(tmp_path):
    base = tmp_path / "base"
    _run(base, limit=3)
    d = tmp_path / "small"
    d.mkdir()
    check = (f"{PY} -c \"import sys,os,cv2; d=sys.argv[1]; names=sorted(os.listdir(d)); print(names); "
             f"bad=[n for n in names if n.endswith('.png') and cv2.imread(os.path.join(d,n)) is None]; print('BAD', bad)\" "
             f"{shlex.quote(str(d / 'rep'))}")
    p = _in_namespace(_tmpfs(d, 24), ["report", str(base), "--out", str(d / "rep")], after=check)
    err = _one_error(p, str(d / "rep"))
    assert "no space left on device" in err, err
    listing = p.stdout.split("---")[1]
    assert "BAD []" in listing and ".tmp" not in listing, listing


@pytest.mark.slow
def test_a_corrupt_database_is_one_line_naming_it(tmp_path):
    base = tmp_path / "base"
    _run(base, limit=4)
    db = base / "results.sqlite"
    data = bytearray(db.read_bytes())
    assert len(data) >= 3 * 4096
    data[4096:] = np.random.default_rng(0).integers(0, 256, len(data) - 4096, dtype=np.uint8).tobytes()  # page 2 on
    db.write_bytes(bytes(data))
    for args in (["report", str(base), "--out", str(tmp_path / "rep")], ["compare", str(base), str(base)]):
        p = subprocess.run(sambench_cli(*args), capture_output=True, text=True)
        _one_error(p, str(db), "corrupt")


@pytest.mark.slow
def test_out_pointing_at_a_file_is_one_line_and_leaves_the_file_alone(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    p = _run(f, check=False)
    _one_error(p, str(f), "is a file")
    assert f.read_text() == "x"
    base = tmp_path / "base"
    _run(base)
    p = subprocess.run(sambench_cli("report", str(base), "--out", str(f)), capture_output=True, text=True)
    assert p.returncode == 2 and f.read_text() == "x" and "Traceback" not in p.stderr


def test_atomic_write_keeps_the_old_file_whole_when_the_write_fails(tmp_path, monkeypatch):
    """Unit check of the boundary the report writes through (the tmpfs test above is the real disk)."""
    import errno

    from sambench.files import atomic_write
    from sambench.types import SambenchError

    target = tmp_path / "comparison.png"
    target.write_bytes(b"old and whole")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SambenchError, match=r"comparison.png: cannot write: no space left on device"):
        atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"old and whole" and os.listdir(tmp_path) == ["comparison.png"]


# --------------------------------------------------------------------------------- no side effects


@pytest.mark.slow
def test_report_of_a_missing_run_creates_nothing(tmp_path):
    missing = tmp_path / "missing"
    p = subprocess.run(sambench_cli("report", str(missing)), capture_output=True, text=True)
    _one_error(p, str(missing))
    assert not missing.exists()


@pytest.mark.parametrize("extra,needle", [
    (["-m", "sam-tiny", "--checkpoint", "/nonexistent/sam.pth"], "not found"),
    (["-m", "sam-tiny", "--device", "cuda"], "CUDA"),
])
@pytest.mark.slow
def test_a_run_refused_while_building_models_leaves_no_run_directory(tmp_path, extra, needle):
    out = tmp_path / "r"
    p = subprocess.run(sambench_cli("run", "-p", "gt-box", "--limit", "1", "--out", str(out), "--no-report", "-q",
                                    *extra),
                       capture_output=True, text=True)
    _one_error(p, needle)
    assert not out.exists()
    p = subprocess.run(sambench_cli("report", str(out)), capture_output=True, text=True)
    assert p.returncode == 2


# ------------------------------------------------------------------------ retry exactly what changed


@pytest.mark.slow
def test_changed_masks_are_named_and_exactly_they_rerun_with_retry_failed(tmp_path):
    ds = _folder(tmp_path / "ds")
    bad = np.zeros((20, 30), np.uint8)
    bad[4:16, 5:25] = 1                                   # a 0/1 mask: empty at > 128
    cv2.imwrite(str(ds / "masks" / "im2.png"), bad)
    args = ["run", "-m", "box-fill", "-p", "gt-box", "-d", str(ds), "--out", str(tmp_path / "r"), "--no-report", "-q"]
    p = subprocess.run(sambench_cli(*args), capture_output=True, text=True)
    assert p.returncode == 1
    con = lambda: sqlite3.connect(tmp_path / "r" / "results.sqlite")
    first = con().execute("SELECT image_id, status, gt_area FROM results ORDER BY image_id").fetchall()
    assert [r[1] for r in first] == ["ok", "ok", "failed"]
    cv2.imwrite(str(ds / "masks" / "im2.png"), bad * 255)   # fixed
    m0 = np.zeros((20, 30), np.uint8)
    m0[1:19, 1:29] = 255                                     # im0 re-annotated too
    cv2.imwrite(str(ds / "masks" / "im0.png"), m0)
    p = subprocess.run(sambench_cli(*args), capture_output=True, text=True)
    err = _one_error(p, "im0.png", "im2.png", "--retry-failed")
    assert "im1.png" not in err
    p = subprocess.run(sambench_cli(*args, "--retry-failed"), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    after = con().execute("SELECT image_id, status, gt_area FROM results ORDER BY image_id").fetchall()
    assert [r[1] for r in after] == ["ok", "ok", "ok"]
    assert after[1] == first[1]                               # im1 untouched
    assert after[0][2] == 18 * 28 != first[0][2]              # im0 re-scored against its new mask
    assert "rerun" in p.stderr or "re-run" in p.stderr
    p = subprocess.run(sambench_cli(*args), capture_output=True, text=True)   # and the store now knows the new data
    assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------------------------------- CLI validation


def _coco_elsewhere(tmp_path: Path) -> tuple[Path, Path]:
    imgs = tmp_path / "pixels"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "x.png"), np.full((20, 30, 3), 70, np.uint8))
    ann = tmp_path / "anns" / "set.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png", "height": 20, "width": 30}],
                               "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                                "segmentation": [[3, 3, 20, 3, 20, 15, 3, 15]]}],
                               "categories": [{"id": 1, "name": "t"}]}))
    return ann, imgs


@pytest.mark.slow
@pytest.mark.parametrize("how", ["dataset-option", "images-flag"])
def test_coco_with_images_elsewhere_runs_from_the_cli(tmp_path, how):
    ann, imgs = _coco_elsewhere(tmp_path)
    extra = ["--dataset-option", f"images={imgs}"] if how == "dataset-option" else ["--images", str(imgs)]
    p = subprocess.run(sambench_cli("run", "-m", "box-fill", "-p", "gt-box", "-d", str(ann), *extra,
                                    "--out", str(tmp_path / "r"), "--no-report", "-q"), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert sqlite3.connect(tmp_path / "r" / "results.sqlite").execute(
        "SELECT status, iou FROM results").fetchall() == [("ok", 1.0)]


@pytest.mark.parametrize("args,needle", [
    (["--workers", "0"], "--workers"),
    (["--workers", "-3"], "--workers"),
    (["--seed", "-1"], "seed"),
])
def test_bad_workers_and_seed_are_refused_before_any_directory_is_made(tmp_path, args, needle):
    out = tmp_path / "r"
    p = subprocess.run(sambench_cli("run", "-m", "box-fill", "-p", "gt-box", "--limit", "1", "--out", str(out),
                                    "--no-report", "-q", *args), capture_output=True, text=True)
    err = _one_error(p, needle)
    assert ">= " in err or ">=" in err
    assert not out.exists()


@pytest.mark.slow
def test_two_datasets_of_one_name_need_a_name_each(tmp_path):
    a, b = _folder(tmp_path / "one" / "test"), _folder(tmp_path / "two" / "test")
    base = ["run", "-m", "box-fill", "-p", "gt-box", "-d", str(a), "-d", str(b), "--no-report", "-q"]
    p = subprocess.run(sambench_cli(*base, "--out", str(tmp_path / "r0")), capture_output=True, text=True)
    _one_error(p, "'test'", "--name")
    p = subprocess.run(sambench_cli(*base, "--name", "first", "--name", "second", "--out", str(tmp_path / "r")),
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    names = sqlite3.connect(tmp_path / "r" / "results.sqlite").execute("SELECT DISTINCT dataset FROM results").fetchall()
    assert sorted(n for (n,) in names) == ["first", "second"]
    p = subprocess.run(sambench_cli(*base, "--name", "x", "--name", "y", "--name", "z", "--out", str(tmp_path / "r2")),
                       capture_output=True, text=True)
    _one_error(p, "--name")


@pytest.mark.slow
def test_ctrl_c_exits_130_and_killed_invocations_reach_the_manifest(tmp_path):
    args = ["run", "-m", "grabcut", "-p", "noisy-box", "--levels", "0,0.5", "--draws", "2", "--limit", "6",
            "--workers", "1", "--option", "grabcut.max_side=96", "--no-report", "-q", "--out", str(tmp_path / "r")]
    db = tmp_path / "r" / "results.sqlite"
    proc = subprocess.Popen(sambench_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)  # even when the suite runs with SIGINT ignored (`pytest &`)
    wait_for_rows(proc, tmp_path / "r", rows=3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "interrupted" in err
    # SIGKILL: nothing can be caught, yet its argv and counters reach the manifest of the resumed run
    proc = subprocess.Popen(sambench_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    con = sqlite3.connect(db)
    n0 = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    con.close()  # an open reader would (rightly) keep the WAL files alive
    wait_for_rows(proc, tmp_path / "r", rows=n0 + 3)
    sigkill(proc)
    p = subprocess.run(sambench_cli(*args), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    inv = man["invocations"]
    assert len(inv) == 3
    assert [i["status"] for i in inv] == ["interrupted", "killed", "finished"]
    assert all("--draws" in i["argv"] for i in inv)
    assert all(i["counters"]["grabcut"]["encoder_calls"] > 0 for i in inv[:2])
    assert sum(i["counters"]["grabcut"]["encoder_calls"] for i in inv) == man["counters"]["grabcut"]["encoder_calls"] == 6
    # no empty -wal/-shm beside the finished store
    assert sorted(os.listdir(tmp_path / "r")) == ["manifest.json", "results.sqlite"]
