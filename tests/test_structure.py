"""One name and one owner per concept: the result key, the level type, the baseline question, the
dataset options, and click only in command modules."""

import ast
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import sambench
from sambench.config import Setting, list_cards, load_protocol_card
from sambench.types import SambenchError

PACKAGE = Path(sambench.__file__).resolve().parent


def test_one_result_key_and_one_grouping_order(tmp_path):
    from sambench import store
    from sambench.analysis import summary
    from sambench.report import grid
    from sambench.analysis import compare

    assert store.KEY_COLUMNS == ("model", "dataset", "image_id", "object_id", "protocol", "level", "draw",
                                 "corruption", "severity")
    assert summary.GROUP == compare.GROUP == list(store.LEVEL_COLUMNS) == ["model", "dataset", "protocol", "level",
                                                                            "corruption", "severity"]
    assert grid.GRID_KEY == [c for c in store.KEY_COLUMNS if c != "model"]
    with store.Store(tmp_path):
        pass
    con = sqlite3.connect(str(tmp_path / store.DB_NAME))
    info = con.execute("PRAGMA table_info(results)").fetchall()
    con.close()
    assert tuple(r[1] for r in info) == store.COLUMNS
    assert tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])) == store.KEY_COLUMNS


def _imports_click(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "click" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "click":
            return True
    return False


def test_only_command_modules_import_click():
    commands = set((PACKAGE / "cli").glob("*.py"))
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p not in commands and _imports_click(p)]
    assert offenders == []
    assert _imports_click(PACKAGE / "cli" / "train.py")  # the scan does see an import


def test_cpu_baseline_is_answered_by_the_registry_alone(monkeypatch):
    from sambench.cli import perf
    from sambench.adapters import is_cpu_baseline, route_files
    from sambench.execution import default_workers

    assert is_cpu_baseline("grabcut") and is_cpu_baseline("box-fill") and is_cpu_baseline("grabcut-full")
    assert not is_cpu_baseline("sam-tiny") and not is_cpu_baseline("stable-sam-vit-b")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers(["grabcut", "box-fill"]) == usable
    assert default_workers(["grabcut", "sam-tiny"]) == 1
    monkeypatch.setattr(perf.sys, "platform", "linux")
    assert not perf.wants_malloc_tuning(["run", "-m", "grabcut,box-fill"], {})
    assert perf.wants_malloc_tuning(["run", "-m", "grabcut", "-m", "sam-tiny"], {})
    # --checkpoint PATH goes to the one model that is not a baseline; MODEL=PATH to the model named
    assert route_files(("w.pth",), ["grabcut", "sam-vit-b"], "checkpoint") == {"sam-vit-b": "w.pth"}
    assert route_files(("sam-vit-b=a.pth", "hq-sam-vit-b=b.pth"), ["sam-vit-b", "hq-sam-vit-b"], "checkpoint") == \
        {"sam-vit-b": "a.pth", "hq-sam-vit-b": "b.pth"}
    with pytest.raises(SambenchError, match="write --checkpoint MODEL=PATH"):
        route_files(("w.pth",), ["sam-vit-b", "hq-sam-vit-b"], "checkpoint")


@pytest.mark.parametrize("name", sorted(list_cards("protocols")))
def test_the_card_setting_is_the_report_setting(name):
    """The report reads back exactly the Setting the card made (kind, parameters, level value)."""
    card = load_protocol_card(name)
    for s in card.settings:
        back = Setting.from_dict(s.to_dict(), card.name)
        assert back == s and back.level_value == s.level_value and back.protocol == s.protocol == name


def test_run_and_prompts_export_share_the_dataset_options():
    from sambench.cli.main import main

    def options(*cmd):
        out = CliRunner().invoke(main, [*cmd, "--help"]).output
        return {w.rstrip(",") for w in out.split() if w.startswith("--")}

    shared = {"--dataset", "--format", "--images", "--masks", "--name", "--dataset-option"}
    assert shared <= options("run") and shared <= options("prompts", "export")
    assert "--prompts-per-call" in options("run") and "--chunk-size" in options("run")  # old spelling kept


def test_sambench_run_opens_the_store_once_and_summarises_once(tmp_path, monkeypatch):
    from sambench import store
    from sambench.analysis import summary
    from sambench.cli.main import main
    from sambench.report import build

    calls = {"store": 0, "summarize": 0}
    real_init, real_summarize = store.Store.__init__, summary.summarize

    def counting_init(self, *args, **kwargs):
        calls["store"] += 1
        real_init(self, *args, **kwargs)

    def counting_summarize(*args, **kwargs):
        calls["summarize"] += 1
        return real_summarize(*args, **kwargs)

    monkeypatch.setattr(store.Store, "__init__", counting_init)
    monkeypatch.setattr(summary, "summarize", counting_summarize)
    monkeypatch.setattr(build, "summarize", counting_summarize)
    res = CliRunner().invoke(main, ["run", "-m", "box-fill", "-p", "gt-box", "--limit", "2", "--workers", "1", "-q",
                                    "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report" / "index.html").is_file() and "gt-box" in res.output
    assert calls == {"store": 1, "summarize": 1}
