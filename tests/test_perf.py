"""The CLI's malloc tuning: applied to torch-model runs only, never over the user's own settings."""

import subprocess
import sys

from sambench.cli.perf import wants_malloc_tuning


def test_only_model_runs_are_tuned():
    assert wants_malloc_tuning(["run", "-m", "sam-tiny", "-p", "gt-box"], {}) == sys.platform.startswith("linux")
    assert wants_malloc_tuning(["run", "--model=grabcut,stable-sam-tiny"], {}) == sys.platform.startswith("linux")
    assert not wants_malloc_tuning(["run"], {})  # the default: classical baselines
    assert not wants_malloc_tuning(["run", "-m", "grabcut", "-m", "box-fill"], {})
    assert not wants_malloc_tuning(["report", "x"], {})
    assert not wants_malloc_tuning(["run", "-m", "sam-tiny"], {"MALLOC_MMAP_THRESHOLD_": "1"})
    assert not wants_malloc_tuning(["run", "-m", "sam-tiny"], {"SAMBENCH_NO_MALLOC_TUNING": "1"})
    assert not wants_malloc_tuning(["run", "-m", "no-such-model"], {})


def test_reexec_sets_the_thresholds_and_keeps_the_arguments(monkeypatch):
    import os

    import sambench.cli.perf as perf

    calls = []
    monkeypatch.setattr(perf.sys, "platform", "linux")
    monkeypatch.setattr(perf.sys, "argv", ["sambench", "run", "-m", "sam-tiny", "--limit", "1"])
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("SAMBENCH_NO_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(os, "execve", lambda exe, args, env: calls.append((exe, args, env)))
    perf.reexec_with_tuned_malloc()
    (exe, args, env), = calls
    assert exe == sys.executable and args[1:] == ["-m", "sambench", "run", "-m", "sam-tiny", "--limit", "1"]
    assert env["MALLOC_MMAP_THRESHOLD_"] == env["MALLOC_TRIM_THRESHOLD_"] == str(4 << 30)
    # in the re-executed process the variables are set, so it does not loop
    assert not perf.wants_malloc_tuning(args[3:], env)


def test_module_entry_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "sambench", "list", "protocols"], capture_output=True, text=True, check=True)
    assert "noisy-box" in out.stdout and "stable-sam-paper" in out.stdout
