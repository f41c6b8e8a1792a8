"""Hardening 3 (issue 22), items 1, 5, 6, 7, 10, 11 and 16: an adapter object is never looked up as a card,
read-only readers see every committed row, one (image, corruption) that cannot be made fails alone, a wrong
number of masks is a failed row, bad --option values blame --option, a board never leaves an empty --out or
drops an empty run silently, and the Ctrl-C test works from a background job."""

from __future__ import annotations

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
    import os
    assert default_workers(["box-fill"], {"box-fill": BoxFillAdapter()}) == len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_python_api_doc_example_runs_as_a_saved_script(tmp_path):
    text = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    script = tmp_path / "shrunk.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "shrunk-box-0.8" in p.stdout
    assert (tmp_path / "runs" / "shrunk" / "report" / "index.html").is_file()
