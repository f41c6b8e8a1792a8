"""The run manifest ``RUN_DIR/manifest.json``: its reading, writing and merging.

The manifest describes a run: the configuration, the identities of its models, protocols, datasets and
corruptions, library versions, summed counters and scoring timings, and every ``run`` invocation.
:func:`updated_manifest` merges one more invocation (:class:`Invocation`) into it, :func:`merge_manifests`
merges the manifests of several runs (first wins, disagreements listed). It is written atomically
(:func:`write_manifest`). The scoring timings are :meth:`sambench.execution.timing.StageTimer.summary`
dictionaries, summed here by :func:`add_timings` and written by :func:`rounded_timings`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional

import sambench
from sambench.files import atomic_write
from sambench.store.table import SCHEMA_VERSION
from sambench.types import SambenchError, canonical_json

MANIFEST_NAME = "manifest.json"


def read_manifest(run_dir: str | Path) -> dict:
    """``RUN_DIR/manifest.json`` as a dict (``{}`` if there is none); corrupt JSON is one line."""
    path = Path(run_dir) / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SambenchError(f"{path}: corrupt manifest JSON ({exc.msg} at line {exc.lineno})") from None


def write_manifest(run_dir: str | Path, manifest: dict) -> Path:
    """Write atomically (temp file + rename) so a kill or a full disk never leaves half a manifest."""
    return atomic_write(Path(run_dir) / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def git_commit() -> Optional[str]:
    """The commit of the sambench checkout that writes the manifest (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict:
    """The versions of Python and of the libraries a result may depend on (None: not installed)."""
    libs = {"python": platform.python_version()}
    for name in ("numpy", "opencv-python-headless", "pycocotools", "torch", "torchvision", "segment-anything",
                 "segment-anything-hq", "timm", "sam2", "transformers", "pandas", "scipy"):
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    return libs


def _add_counters(total: dict, counters: dict) -> dict:
    out = {m: dict(v) for m, v in total.items()}
    for m, c in counters.items():
        acc = out.setdefault(m, {"encoder_calls": 0, "decoded_prompts": 0})
        for k, v in c.items():
            acc[k] = acc.get(k, 0) + v
    return out


def manifest_invocations(old: dict, new: "Invocation") -> list[dict]:
    """The manifest's ``invocations``: those of manifests written before the store recorded them (no
    ``id``), then every one the store holds, oldest first. One still ``running`` that is not this one was
    killed (SIGKILL, power loss): its argv and counters reach the manifest all the same."""
    out = [i for i in old.get("invocations", []) if "id" not in i]
    for inv in new.stored_invocations:
        if inv.get("status") == "running" and inv.get("id") != new.invocation_id:
            inv = {**inv, "status": "killed"}
        out.append(inv)
    if not new.stored_invocations:  # a caller that keeps no invocation record in the store
        out.append({"at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
                    "config": new.config, "wall_time_s": round(new.wall_time_s, 3), "counters": new.counters})
    return out


def _sum_counters(invocations: list[dict]) -> dict:
    total: dict = {}
    for inv in invocations:
        total = _add_counters(total, inv.get("counters") or {})
    return total


def rounded_timings(timings: dict) -> dict:
    """``timings`` (name → :meth:`StageTimer.summary`) with seconds rounded to 1 ms, keys sorted (for JSON)."""
    return {name: {"seconds": {k: round(v, 3) for k, v in sorted(t.get("seconds", {}).items())},
                   "places": dict(sorted(t.get("places", {}).items()))} for name, t in sorted(timings.items())}


def add_timings(total: dict, new: dict) -> dict:
    """Add ``new`` into ``total`` in place; both map a name (a model) to a :meth:`StageTimer.summary`."""
    for name, summary in new.items():
        acc = total.setdefault(name, {"seconds": {}, "places": {}})
        for part in ("seconds", "places"):
            for k, v in summary.get(part, {}).items():
                acc.setdefault(part, {})[k] = acc.get(part, {}).get(k, 0) + v
    return total


def sum_scoring(invocations: list[dict]) -> dict:
    """The manifest's ``scoring`` section: where each model's masks were scored and the seconds of each stage,
    summed over the invocations that recorded them (sambench.execution.timing.StageTimer; docs/metrics.md).
    The store-write total keeps the invocations' microseconds (at 1 ms, two fast writes summed to 0.0)."""
    models: dict = {}
    threads, store_write = None, 0.0
    for inv in invocations:
        sc = inv.get("scoring") or {}
        add_timings(models, sc.get("models") or {})
        threads = sc.get("threads", threads)
        store_write += sc.get("store_write_s") or 0.0
    return {"threads": threads, "models": rounded_timings(models), "store_write_s": round(store_write, 6)}


@dataclass
class Invocation:
    """What one ``run`` adds to its directory's manifest (:func:`updated_manifest`)."""

    config: dict
    seed: Optional[int]
    protocols: dict
    prompt_hashes: dict
    datasets: dict
    models: dict
    counters: dict
    rows: dict
    wall_time_s: float
    #: This invocation's id and every invocation the store recorded (:meth:`Store.invocations`).
    invocation_id: Optional[str] = None
    stored_invocations: list = field(default_factory=list)
    #: sambench.inputs.corruptions.identity(): {"seed", "corruptions": {name: {version, source, params}}}
    corruptions: dict = field(default_factory=dict)


def updated_manifest(old: dict, new: Invocation) -> dict:
    """The manifest after ``new``: sections merged by name (this run wins), counters added, the invocation
    appended to ``invocations``; ``created`` is kept from the first run."""
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    protos = {**old.get("protocols", {}), **new.protocols}
    for p, by_ds in new.prompt_hashes.items():
        protos[p] = {**protos.get(p, {}), "prompt_hash": by_ds}
    invocations = manifest_invocations(old, new)
    return {
        "sambench_version": sambench.__version__,
        "schema_version": SCHEMA_VERSION,
        "git_commit": git_commit(),
        "created": old.get("created", now),
        "updated": now,
        "config": new.config,
        "protocols": protos,
        "datasets": {**old.get("datasets", {}), **new.datasets},
        "models": {**old.get("models", {}), **new.models},
        "seed": new.seed,
        "libraries": library_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "counters": _sum_counters(invocations),
        "scoring": sum_scoring(invocations),
        "corruptions": _merged_corruptions(old.get("corruptions") or {}, new.corruptions),
        "rows": new.rows,
        "invocations": invocations,
    }


def _merged_corruptions(old: dict, new: dict) -> dict:
    """Every corruption the directory holds results of (the store's identity ledger keeps them equal)."""
    if not old and not new:
        return {}
    return {"seed": new.get("seed", old.get("seed")),
            "corruptions": {**old.get("corruptions", {}), **new.get("corruptions", {})}}


#: The dataset fields merged across runs (the rest of a dataset entry describes one run's loader).
MERGED_DATASET_FIELDS = ("content_hash", "n_images", "n_objects", "spec")


def merge_manifests(manifests: list[dict], runs: list[str]) -> tuple[dict, list[dict]]:
    """The ``protocols``, ``datasets`` (:data:`MERGED_DATASET_FIELDS`) and ``models`` sections of several
    manifests, first run wins; and every disagreement as ``{"section", "name", "run"}`` (never resolved
    silently: reports list them, ``compare`` checks what it needs)."""
    merged: dict = {"protocols": {}, "datasets": {}, "models": {}}
    conflicts: list[dict] = []
    for run, man in zip(runs, manifests):
        for section, target in merged.items():
            for name, entry in (man.get(section) or {}).items():
                if section == "datasets" and isinstance(entry, dict):
                    entry = {k: entry[k] for k in MERGED_DATASET_FIELDS if k in entry}
                if name not in target:
                    target[name] = entry
                elif canonical_json(_json_safe(target[name])) != canonical_json(_json_safe(entry)):
                    conflicts.append({"section": section, "name": name, "run": run})
    return merged, conflicts


def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v

