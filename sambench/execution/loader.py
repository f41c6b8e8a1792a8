"""A loader thread: read and decode the next images while the model works on the current one.

:func:`prefetch` wraps an iterable of image ids and yields ``(id, sample or exception)`` in order, with
up to ``depth`` samples loaded ahead by one background thread (file reads and JPEG/PNG decoding release
the GIL, so they overlap the encoder). ``depth = 0`` loads inline. Memory is bounded by ``depth`` decoded
samples. Exceptions from ``load`` are yielded, not raised, so the runner records them as failed rows.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator


def _call(load: Callable[[Any], Any], key: Any) -> Any:
    try:
        return load(key)
    except Exception as exc:  # noqa: BLE001 - handed to the caller in order
        return exc


def prefetch(keys: Iterable[Any], load: Callable[[Any], Any], depth: int = 2) -> Iterator[tuple[Any, Any]]:
    """``(key, load(key) or the exception it raised)`` for every key, in order, ``depth`` ahead."""
    if depth <= 0:
        for key in keys:
            yield key, _call(load, key)
        return
    it = iter(keys)
    pending: deque[tuple[Any, Future]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sambench-loader") as pool:
        try:
            for key in it:
                pending.append((key, pool.submit(_call, load, key)))
                if len(pending) > depth:
                    k, fut = pending.popleft()
                    yield k, fut.result()
            while pending:
                k, fut = pending.popleft()
                yield k, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


__all__ = ["prefetch"]
