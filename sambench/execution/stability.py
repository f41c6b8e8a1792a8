"""The per-object stability a run stores with its rows, computed where the rows are built.

:func:`object_stability` takes the rows of one result (an image's rows of every model, as
:meth:`sambench.execution.work.ImageWork.batch` returns them) and gives, per group of rows that differ
only in ``draw`` (:data:`sambench.store.OBJECT_KEY_COLUMNS`), what the report would compute from those
rows once stored: :func:`sambench.metrics.stability` of the group's ok masks **in draw order** (the order
the store returns them in; the pairwise mean's float sum depends on it) and how many masks that was. Click
protocols get the same as a batch protocol: their rows are grouped by the same key (one row per click
step and start-box draw), exactly as :func:`sambench.analysis.summary.per_object` groups them.

It runs in the process that evaluated the image (a pool worker or a Ray actor on a multi-process run),
so the parent only writes the tuples, in the transaction of the rows (:meth:`sambench.store.Store.write`).
"""

from __future__ import annotations

import json
from typing import Iterable

from sambench.metrics import stability
from sambench.store import OBJECT_KEY_COLUMNS, Row


def object_stability(rows: Iterable[Row]) -> list[tuple]:
    """One tuple per group of ``rows`` with an ok mask, in :data:`sambench.store.OBJECTS_COLUMNS` order: the
    group key, ``draws`` (its ok masks) and ``(stability_pairwise, stability_union)`` of them in draw order.

    The masks are the rows' stored RLE text, parsed as the report parses it, so the numbers are the
    report's, bit for bit."""
    groups: dict[tuple, list[tuple[int, str]]] = {}
    for r in rows:
        if r.status == "ok" and r.mask_rle is not None:
            groups.setdefault(tuple(getattr(r, c) for c in OBJECT_KEY_COLUMNS), []).append((r.draw, r.mask_rle))
    out = []
    for key, masks in groups.items():
        masks.sort(key=lambda m: m[0])
        out.append(key + (len(masks), *stability([json.loads(text) for _, text in masks])))
    return out


__all__ = ["object_stability"]
