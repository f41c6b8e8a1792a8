"""The encode stage: one adapter's encoder over a batch of images, through the embedding cache.

:meth:`EncodeStage.encode` takes the images that need one preprocessing mode and returns, per image,
its state or the exception that prevented it (recorded by the runner as failed rows, never dropped):

1. states found in the cache (:mod:`sambench.execution.cache`) are used as they are: no encoder call;
2. the rest go through the adapter's :meth:`~sambench.adapters.base.Adapter.encode_batch` ``batch``
   images at a time (``--encode-batch``); if a batch fails, its images are encoded one by one so that
   each failure is attributed to its own image;
3. new states are written to the cache, and decoded as the cache will return them (with fp16 storage:
   rounded to fp16 and back), so a cold and a warm run give the same rows. A failed cache write (disk
   full, read-only share) is reported once and the run goes on uncached.

``counters()`` gives ``cache_hits``, ``cache_misses``, ``cache_corrupt`` and ``cache_writes`` — what the
runner adds to the adapter's own counters in the manifest — when the adapter is cached, else nothing.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np

from sambench.execution.cache import EmbeddingCache, image_hash

log = logging.getLogger("sambench.execution.cache")


class EncodeStage:
    """Encode images for one adapter (see the module docstring)."""

    def __init__(self, adapter: Any, cache: Optional[EmbeddingCache] = None, batch: int = 1) -> None:
        if batch < 1:
            raise ValueError(f"encode batch must be >= 1, got {batch}")
        self.adapter = adapter
        cached = cache is not None and adapter.cache_signature() is not None
        self.cache = cache.fork() if cached else None  # its own counters
        self.batch = int(batch)
        self._write_failed = False

    def encode(self, images: Sequence[np.ndarray], preprocessing: str) -> list[Any]:
        """Per image, its state or the exception its encoding raised, in order."""
        out: list[Any] = [None] * len(images)
        hashes: list[Optional[str]] = [None] * len(images)
        todo = list(range(len(images)))
        if self.cache is not None:
            todo = []
            for i, image in enumerate(images):
                hashes[i] = image_hash(image)
                state = self.cache.get(self.adapter, hashes[i], preprocessing)
                if state is None:
                    todo.append(i)
                else:
                    out[i] = state
        for start in range(0, len(todo), self.batch):
            idx = todo[start:start + self.batch]
            for i, state in zip(idx, self._encode_some([images[i] for i in idx], preprocessing)):
                if self.cache is not None and not isinstance(state, BaseException):
                    self._store(hashes[i], preprocessing, state)
                    state = self.cache.as_stored(self.adapter, state)  # cold and warm runs decode alike
                out[i] = state
        return out

    def _encode_some(self, images: list[np.ndarray], preprocessing: str) -> list[Any]:
        try:
            if len(images) == 1:
                return [self.adapter.encode(images[0], preprocessing)]
            return list(self.adapter.encode_batch(images, preprocessing))
        except Exception as exc:  # noqa: BLE001 - recorded per image by the runner
            if len(images) == 1:
                return [exc]
        return [self._encode_some([im], preprocessing)[0] for im in images]

    def _store(self, img_hash: str, preprocessing: str, state: Any) -> None:
        try:
            self.cache.put(self.adapter, img_hash, preprocessing, state)
        except OSError as exc:
            if not self._write_failed:
                self._write_failed = True
                log.warning("sambench cache: cannot write to %s (%s); continuing without storing",
                            self.cache.root, exc)

    def counters(self) -> dict:
        """Cache counters of this stage since it was built ({} when the adapter is not cached)."""
        if self.cache is None:
            return {}
        s = self.cache.stats
        return {"cache_hits": s.hits, "cache_misses": s.misses, "cache_corrupt": s.corrupt, "cache_writes": s.writes}


__all__ = ["EncodeStage"]
