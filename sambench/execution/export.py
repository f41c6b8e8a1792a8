"""``sambench prompts export``: the realised prompts of a protocol on a dataset, as JSON.

The document lists every (image, object, level, draw) with its prompt and sha256, plus
``prompt_hash`` — the same order-independent hash a run records in its manifest
(``manifest["protocols"][name]["prompt_hash"][dataset]``), so anyone can check that two machines, or a
run and a hand-written evaluation, used byte-identical prompts.
"""

from __future__ import annotations

from typing import Optional

import sambench
from sambench.config import load_protocol_card, with_overrides
from sambench.datasets import open_dataset
from sambench.inputs.prompts import Protocol, prompt_set_hash
from sambench.inputs.replay import check_dataset, resolve
from sambench.types import SambenchError


def export_prompts(protocol: str, dataset, levels: Optional[list[str]] = None, draws: Optional[int] = None,
                   seed: Optional[int] = None, limit: Optional[int] = None) -> dict:
    """``dataset``: a name/path, or a :class:`sambench.datasets.DatasetSpec` (as a run records it)."""
    card = load_protocol_card(protocol)
    if card.interactive:
        raise SambenchError(f"protocol '{card.name}' is interactive: each click depends on the model's previous "
                            f"mask, so its prompts exist only in a run's rows (they cannot be exported before one)")
    card = with_overrides(resolve(card), levels=levels, draws=draws, seed=seed)
    proto = Protocol(card)
    ds = dataset.open() if hasattr(dataset, "open") else open_dataset(dataset)
    if card.replayed:
        check_dataset(card, ds)
    prompts, failures = [], []
    for image_id in ds.ids()[:limit] if limit else ds.ids():
        try:
            sample = ds.load(image_id)
        except SambenchError as exc:
            failures.append({"image_id": image_id, "error": str(exc)})
            continue
        for t in proto.tasks(ds.name, image_id, sample.objects):
            entry = {"dataset": ds.name, "image_id": image_id, "object_id": t.object_id, "level": t.level,
                     "draw": t.draw}
            if t.prompt is None:
                failures.append({**entry, "error": t.error})
            else:
                prompts.append({**entry, "prompt": t.prompt.to_dict(), "prompt_hash": t.prompt.hash()})
    return {
        "sambench_version": sambench.__version__,
        "protocol": card.identity(),
        "dataset": {"name": ds.name, "content_hash": ds.content_hash()},
        "prompt_hash": prompt_set_hash((p["image_id"], p["object_id"], p["level"], p["draw"], p["prompt_hash"])
                                       for p in prompts),
        "failed": len(failures),
        "failures": failures,
        "prompts": prompts,
    }
