"""What a run records besides its rows: identities, the invocation, the manifest.

* Before the first row, :func:`claim_identities` records every model, protocol, dataset and corruption
  identity in the store, or refuses a run whose identity changed (docs/runs.md).
* :func:`start_invocation` records this ``run`` (argv, config, status ``running``, zero counters);
  :func:`commit` writes each image's rows with their per-object stability, the invocation's counters and
  scoring timings in one transaction; :func:`end_invocation` records how it ended.
* :func:`record_manifest` merges the run into ``manifest.json`` (:mod:`sambench.store` owns the format).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import sys
import time
from typing import Union

from sambench.datasets import Dataset, DatasetSpec
from sambench.execution.config import RunConfig, dataset_entry
from sambench.execution.work import ImageResult, ImageWork
from sambench.inputs import corruptions as corr
from sambench.inputs.prompts import prompt_set_hash
from sambench.store import (CORRUPTION_IDENTITY, MODEL_IDENTITY, PROTOCOL_IDENTITY, Invocation, Store, add_timings,
                            read_manifest, rounded_timings, updated_manifest, write_manifest)
from sambench.types import SambenchError


def corrupted_names(work: ImageWork) -> list[str]:
    """The corruptions this run applies (clean excluded), in registry order."""
    return list(dict.fromkeys(name for name, severity in work.axis if severity))


def claim_protocols(store: Store, protocols) -> dict:
    """Record each protocol's identity, settings keyed by level (``draws`` and ``levels`` may grow, never
    shrink), or refuse a changed one; returns the identities as the store holds them. Image and video runs alike."""
    stored = {}
    for p in protocols:
        ident = p.card.identity()
        ident["settings"] = {s.pop("level"): s for s in ident["settings"]}
        ident["levels"] = list(ident["settings"])
        stored[p.name] = store.claim_identity("protocol", p.name, ident, PROTOCOL_IDENTITY, grows=("draws", "levels"))
    return stored


def claim_identities(store: Store, work: ImageWork, datasets: list[Dataset], signatures: dict) -> tuple[dict, dict]:
    """Record every model, protocol and dataset identity before the first row (or refuse a changed one).
    Returns (protocol identities as the store holds them, dataset manifest entries).

    * ``prompts_per_call`` is part of each model's identity: it changes how a model batches its decoder,
      hence masks by a pixel and scores by ~1e-7 (batched float arithmetic), so a resume must keep it.
    * So is ``embedding_storage`` (fp32, or fp16 with ``--cache-dtype fp16``) of a cached model: fp16
      storage rounds the embeddings (docs/scale.md).
    * ``draws`` and ``levels`` may grow, never shrink (:meth:`Store.claim_identity`).
    * A changed dataset names its changed files; ``--retry-failed`` re-runs exactly those images
      (:meth:`Store.claim_dataset`).
    """
    config = work.config
    for m, sig in signatures.items():
        ident, checked = {**sig, "prompts_per_call": config.prompts_per_call}, MODEL_IDENTITY + ("prompts_per_call",)
        if work.adapter(m).cache_signature() is not None:  # fp16 cache storage rounds the embeddings
            ident["embedding_storage"] = config.cache_dtype if config.cache_dir else "fp32"
            checked += ("embedding_storage",)
        store.claim_identity("model", m, ident, checked)
    stored = claim_protocols(store, work.protocols)
    ds_info = {}
    for spec, d in zip(config.datasets, datasets):
        ds_info[d.name] = _dataset_record(spec, d)
        for note in ds_info[d.name]["notices"]:  # once per run, here in the parent (workers open datasets too)
            print(f"warning: {note}", file=sys.stderr)
        rerun = store.claim_dataset(d.name, ds_info[d.name]["content_hash"], d.image_hashes(), d.image_files,
                                    retry=config.retry_failed)
        if rerun:
            print(f"dataset '{d.name}' changed: re-running {len(rerun)} changed image(s) "
                  f"({', '.join(rerun[:5])}{', ...' if len(rerun) > 5 else ''})", file=sys.stderr)
    for name in corrupted_names(work):
        store.claim_identity("corruption", name, {**corr.get(name).identity(), "seed": config.corruption_seed},
                             CORRUPTION_IDENTITY)
    return stored, ds_info


def _dataset_record(source: Union[DatasetSpec, Dataset], d: Dataset) -> dict:
    """The manifest's entry of a dataset: identity, size, description, notices, and how to reopen it (a spec)."""
    how = {"spec": source.to_dict()} if isinstance(source, DatasetSpec) else {"object": dataset_entry(source)["object"]}
    return {"content_hash": d.content_hash(), "n_images": len(d.ids()), "describe": d.describe(),
            "notices": d.notices(), **how}


# ---------------------------------------------------------------------------------------- invocations

_INVOCATION_NUMBERS = itertools.count()


def start_invocation(store: Store, config: RunConfig) -> dict:
    """Record this ``run`` in the store (argv, config, status ``running``, zero counters) before any work."""
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    # started has 1 s resolution: two runs of one process (the Python API) in the same second need the counter
    invocation = {"id": f"{started}-{os.getpid()}-{next(_INVOCATION_NUMBERS):04d}", "started": started,
                  "argv": list(sys.argv), "config": config.public(), "status": "running", "wall_time_s": None,
                  "counters": {m: {"encoder_calls": 0, "decoded_prompts": 0} for m in config.models}}
    store.record_invocation(invocation)
    return invocation


def commit(store: Store, result: ImageResult, invocation: dict, timings: dict) -> int:
    """Write one image's rows of every model, with their per-object stability, ``invocation``'s counters (per
    model) and scoring timings (summed into ``timings``), in one transaction. Returns the rows added."""
    counters = invocation["counters"]
    add_timings(timings, result.timings)
    invocation["scoring"]["models"] = rounded_timings(timings)
    for model, c in result.counters.items():
        for k, v in c.items():
            counters[model][k] = counters[model].get(k, 0) + v
    t0 = time.perf_counter()
    added = store.write([r for model_rows in result.rows.values() for r in model_rows], invocation=invocation,
                        objects=result.objects)
    invocation["scoring"]["store_write_s"] = round(invocation["scoring"]["store_write_s"] + time.perf_counter() - t0, 6)
    return added


def end_invocation(store: Store, invocation: dict, status: str, wall_time_s: float) -> None:
    """Record how this ``run`` ended: ``finished``; or ``interrupted``/``failed`` on the way out of an exception,
    where a store that cannot take it (a full disk) must not hide the exception itself."""
    invocation["status"], invocation["wall_time_s"] = status, round(wall_time_s, 3)
    if status == "finished":
        store.record_invocation(invocation)
        return
    try:
        store.record_invocation(invocation)
    except SambenchError:
        pass


# ------------------------------------------------------------------------------------------- manifest


def prompt_hashes(store: Store) -> dict:
    """:func:`sambench.inputs.prompts.prompt_set_hash` of the stored prompts, per protocol and dataset."""
    out: dict = {}
    for (protocol, dataset), entries in store.prompt_entries().items():
        out.setdefault(protocol, {})[dataset] = prompt_set_hash(entries)
    return out


def record_manifest(store: Store, work: ImageWork, signatures: dict, ds_info: dict, stored: dict,
                    invocation: dict) -> dict:
    """Merge this run into ``manifest.json`` (sambench.store owns the format) and return it."""
    config = work.config
    protocols = {p.name: {"version": p.card.version, "identity": p.card.identity(), "seed": p.card.seed,
                          "card": str(p.card.path) if p.card.path else None,
                          # what the store holds (draws/levels only grow), not only what this run asked
                          "stored": {"draws": stored[p.name].get("draws"), "levels": stored[p.name].get("levels")}}
                 for p in work.protocols}
    new = Invocation(config=config.public(), seed=config.seed, protocols=protocols,
                     prompt_hashes=prompt_hashes(store), datasets=ds_info, models=signatures,
                     counters=invocation["counters"], rows=store.count(), wall_time_s=invocation["wall_time_s"],
                     invocation_id=invocation["id"], stored_invocations=store.invocations(),
                     corruptions=corr.identity(corrupted_names(work), config.corruption_seed))
    manifest = updated_manifest(read_manifest(store.run_dir), new)
    write_manifest(store.run_dir, manifest)
    return manifest


__all__ = ["claim_identities", "claim_protocols", "commit", "corrupted_names", "end_invocation", "prompt_hashes", "record_manifest",
           "start_invocation"]
