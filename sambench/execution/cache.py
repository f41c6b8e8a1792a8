"""The persistent embedding cache: every image is encoded once per encoder, ever.

An entry holds everything an adapter's ``predict`` needs from one encoded image (SAM: the image
embedding; HQ-SAM: also its early ViT feature; Stable-SAM: its base model's state), as written by the
adapter's optional :meth:`~sambench.adapters.base.Adapter.state_to_tensors`. Adapters whose
:meth:`~sambench.adapters.base.Adapter.cache_signature` is None (the default: classical baselines,
unknown adapters) are never cached.

**Key.** ``sha256(canonical JSON of [cache signature, preprocessing, image hash, storage])`` where the
cache signature is the encoder's identity (adapter family, variant, weights sha256, autocast dtype,
state layout version, package versions), the image hash is :func:`image_hash` of the decoded RGB array
(so the same pixels hit whatever file or dataset they came from) and ``storage`` is ``fp32`` or ``fp16``.

**Format.** ``ROOT/ab/<key>.safetensors``: a plain safetensors file (no pickle) whose ``__metadata__``
holds ``sambench`` = JSON with the key, the signature, the preprocessing, the image hash, the original
dtype of every tensor, the adapter's own metadata and a sha256 **checksum** of the tensor bytes.

**fp16 storage** (``--cache-dtype fp16``): floating tensors are stored as float16 and cast back to their
dtype on load: half the disk, slightly different masks (measured in docs/scale.md). It is part of the key,
so fp32 runs never read fp16 entries.

**Integrity.** A read parses the header, checks that the entry is the one asked for (key and signature)
and that the checksum matches; a truncated, corrupt, mismatched or unreadable (permissions, I/O error)
entry is reported once (a warning on the ``sambench.execution.cache`` logger), counted, never used, and
overwritten by the recomputed state.

**Ownership.** The root holds a :data:`MARKER` file, written when the cache creates the root or adopts a
directory whose every file is its own (:meth:`EmbeddingCache.claim`). ``clear`` and ``verify --remove``
refuse any other directory, and delete only :data:`ENTRY_RE` files: never a user's file that merely ends
in ``.safetensors``. A run claims its cache before its run directory exists, so a ``--cache`` that is a
file, an unwritable unmarked directory or someone else's directory is refused in one line rather than failing
every image; a marked cache that cannot be written (a shared, pre-filled one) is read, never written.

**Concurrency.** Writers write a uniquely named temporary file in the entry's directory and
``os.replace`` it into place, so a reader sees either no entry or a whole one — readers take no lock, and
two writers of one key write the same bytes. Eviction and ``clear`` hold an exclusive ``flock`` on
``ROOT/.lock``, so only one process evicts at a time; a reader whose entry is evicted under it sees a miss.
This holds on a shared (NFS) path used by several machines, e.g. Ray workers.

**Size limit and LRU.** A hit refreshes the entry's mtime. After a write, when the bytes under ROOT
exceed ``max_bytes`` (``--cache-max-gb``, default 20 GB; ``inf``: no limit; 0 is refused: that is
``--no-cache``), the least recently used entries are deleted
until 90 % of the limit remains. The total is measured by a scan at the first write of a process, every
64 writes, and whenever the process's running estimate passes the limit.
"""

from __future__ import annotations

import contextlib
import errno
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import struct
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from sambench.types import SambenchError, canonical_json, check_choice, stable_hash

log = logging.getLogger("sambench.execution.cache")

ENV_VAR = "SAMBENCH_CACHE"
DEFAULT_MAX_GB = 20.0
STORAGES = ("fp32", "fp16")
SUFFIX = ".safetensors"
#: The file that marks a directory as a sambench cache (written when the cache creates it): ``clear`` and
#: ``verify --remove`` touch nothing elsewhere, and there only :data:`ENTRY_RE` files.
MARKER = ".sambench-cache"
#: An entry's path relative to the root: ``ab/<64 hex key starting with ab>.safetensors``.
ENTRY_RE = re.compile(r"([0-9a-f]{2})/\1[0-9a-f]{62}\.safetensors")
#: What else a cache writes: its eviction lock (root) and temporary files of writes (in an entry directory).
_OWN_RE = re.compile(r"\.lock|[0-9a-f]{2}/\.tmp-[0-9a-f]{16}-\d+-[0-9a-f]{8}")
FORMAT_VERSION = 1
_RESCAN_EVERY = 64


def check_max_gb(max_gb: float) -> None:
    """Refuse a size limit that means nothing in one line: ``--cache-max-gb`` must be > 0 (``inf``: never
    evict); 0 would keep no entry, which is ``--no-cache``."""
    try:
        ok = float(max_gb) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SambenchError(f"--cache-max-gb must be > 0 (inf: no limit; to keep nothing use --no-cache), got {max_gb}")


def default_cache_dir() -> Path:
    """``$SAMBENCH_CACHE`` if set, else ``~/.cache/sambench/embeddings``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sambench" / "embeddings"


def image_hash(image: np.ndarray) -> str:
    """sha256 of an image array's shape, dtype and bytes (the pixels the encoder sees)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode("ascii"))
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


@dataclass
class CacheStats:
    """Per-process counters of one cache user (recorded in the run manifest per model)."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    writes: int = 0
    evicted: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Entry:
    """One cache file as ``sambench cache ls`` shows it."""

    path: Path
    size: int
    mtime: float
    info: Optional[dict] = None  # the parsed metadata, or None if unreadable


class CorruptEntry(Exception):
    """An entry that must not be used (the message says why)."""


def _checksum(tensors: dict) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    import torch  # lazy: keeps torch out of start-up

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode("ascii"))
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _read_header(data: bytes) -> dict:
    """The safetensors JSON header (format: u64 little-endian length, then that many bytes of JSON)."""
    if len(data) < 8:
        raise CorruptEntry("truncated (no header)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CorruptEntry("truncated header")
    try:
        return json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        raise CorruptEntry("unreadable header") from None


def read_entry(data: bytes) -> tuple[dict, dict]:
    """(tensors, sambench metadata) of an entry's bytes, checksum verified; CorruptEntry otherwise."""
    from safetensors.torch import load  # lazy: keeps torch out of start-up

    header = _read_header(data)
    try:
        info = json.loads(header.get("__metadata__", {})["sambench"])
    except (KeyError, TypeError, ValueError):
        raise CorruptEntry("no sambench metadata") from None
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types on truncated/garbled data
        raise CorruptEntry(f"unreadable tensors ({type(exc).__name__})") from None
    if set(tensors) != set(info.get("dtypes", {})):
        raise CorruptEntry("tensor names differ from the metadata")
    if _checksum(tensors) != info.get("checksum"):
        raise CorruptEntry("checksum mismatch")
    return tensors, info


class EmbeddingCache:
    """A directory of encoded image states (see the module docstring)."""

    def __init__(self, root: str | Path, max_gb: float = DEFAULT_MAX_GB, storage: str = "fp32") -> None:
        check_choice(storage, STORAGES, "cache storage")
        check_max_gb(max_gb)
        self.root = Path(root).expanduser()
        self.max_gb = float(max_gb)
        #: The size limit in bytes; ``math.inf`` (``--cache-max-gb inf``) never evicts.
        self.max_bytes: float = int(max_gb * 1e9) if math.isfinite(max_gb) else math.inf
        self.storage = storage
        self.stats = CacheStats()
        self._reported: set[str] = set()
        self._estimate: Optional[int] = None
        self._writes_since_scan = 0
        #: Set by :meth:`claim` for a marked cache this process cannot write (a shared, pre-filled cache):
        #: entries are read, none is written.
        self.read_only = False

    def fork(self) -> "EmbeddingCache":
        """The same cache with its own counters (one per model: the manifest counts per model)."""
        twin = EmbeddingCache(self.root, max_gb=self.max_gb, storage=self.storage)
        twin.read_only = self.read_only
        return twin

    # ------------------------------------------------------------------------------ keys and paths

    def key(self, signature: dict, preprocessing: str, img_hash: str) -> str:
        return stable_hash("sambench-embedding", FORMAT_VERSION, signature, preprocessing, img_hash, self.storage)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{SUFFIX}"

    # ------------------------------------------------------------------------------ get / put

    def get(self, adapter: Any, img_hash: str, preprocessing: str) -> Optional[Any]:
        """The adapter's state for this image, or None (a miss; also for a bad entry, reported once)."""
        import torch  # lazy: keeps torch out of start-up

        sig = adapter.cache_signature()
        if sig is None:
            return None
        key = self.key(sig, preprocessing, img_hash)
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except OSError as exc:  # unreadable (permissions, I/O error): a miss, reported once, never a failed row
            self._report(path, f"unreadable ({type(exc).__name__}: {exc.strerror or exc})")
            return None
        try:
            tensors, info = read_entry(data)
            if info.get("key") != key or info.get("signature") != json.loads(canonical_json(sig)):
                raise CorruptEntry("entry belongs to another key or encoder")
            tensors = {k: v.to(getattr(torch, info["dtypes"][k])) for k, v in tensors.items()}
            state = adapter.state_from_tensors(tensors, info["meta"])
        except CorruptEntry as exc:
            self._report(path, str(exc))
            return None
        except Exception as exc:  # the adapter could not rebuild a state from it: same treatment
            self._report(path, f"adapter could not load it ({type(exc).__name__}: {exc})")
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # LRU: a hit is a use
        self.stats.hits += 1
        return state

    def _report(self, path: Path, why: str) -> None:
        self.stats.corrupt += 1
        self.stats.misses += 1
        if str(path) not in self._reported:
            self._reported.add(str(path))
            log.warning("sambench cache: %s: %s; ignored and recomputed", path, why)

    def as_stored(self, adapter: Any, state: Any) -> Any:
        """``state`` as a later read of its entry will return it: with fp16 storage, its floating tensors
        rounded to float16 and back (so a cold run decodes exactly what a warm run will); else ``state``."""
        if self.storage == "fp32":
            return state
        import torch  # lazy: keeps torch out of start-up

        raw, meta = adapter.state_to_tensors(state)
        back = {}
        for name, t in raw.items():
            t = torch.as_tensor(t)
            back[name] = t.to(torch.float16).to(t.dtype) if t.is_floating_point() else t
        return adapter.state_from_tensors(back, meta)

    def put(self, adapter: Any, img_hash: str, preprocessing: str, state: Any) -> Optional[Path]:
        """Store a state atomically (temp file + rename), then evict if over the limit."""
        import torch  # lazy: keeps torch out of start-up
        from safetensors.torch import save  # lazy: keeps torch out of start-up

        sig = adapter.cache_signature()
        if sig is None or self.read_only:
            return None
        key = self.key(sig, preprocessing, img_hash)
        raw, meta = adapter.state_to_tensors(state)
        tensors, dtypes = {}, {}
        for name, t in raw.items():
            t = torch.as_tensor(t).detach().to("cpu")
            dtypes[name] = str(t.dtype).replace("torch.", "")
            if self.storage == "fp16" and t.is_floating_point():
                t = t.to(torch.float16)
            tensors[name] = t.contiguous()
        info = {"format": FORMAT_VERSION, "key": key, "signature": json.loads(canonical_json(sig)),
                "preprocessing": preprocessing, "image_hash": img_hash, "storage": self.storage,
                "dtypes": dtypes, "meta": meta, "checksum": _checksum(tensors),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        data = save(tensors, metadata={"sambench": canonical_json(info)})
        path = self.path(key)
        tmp = path.parent / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(tmp, "wb")
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # a cache this process may read but not write (a worker that claimed nothing): read only from now
            log.warning("sambench cache: %s is not writable (%s): its entries are read, new ones are not written",
                        self.root, exc.strerror or exc)
            self.read_only = True
            return None
        try:
            with fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self.stats.writes += 1
        self._after_write(len(data), keep=path)
        return path

    # ------------------------------------------------------------------------------ size and eviction

    @contextlib.contextmanager
    def _lock(self, blocking: bool = True) -> Iterator[bool]:
        import fcntl  # lazy: POSIX only, and only when the cache is written

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def claim(self, removing: bool = False) -> None:
        """Make sure the root is this cache's own, or refuse in one line (before a run's first image, and
        before ``clear`` / ``verify --remove`` delete anything: ``removing``).

        A marked cache this process cannot write is read only for a run (:attr:`read_only`, warned once:
        a shared, pre-filled cache still serves its entries) and refused for removing.

        A missing root is created with its :data:`MARKER`. A directory without the marker is adopted (the
        marker written) when everything in it is the cache's own (an empty directory, or a cache written
        before markers existed); one that holds anything else is refused, as are a file, an unwritable
        directory, or a path that cannot be created."""
        root = self.root
        if (root / MARKER).is_file():
            if not os.access(root, os.W_OK | os.X_OK):
                if removing:
                    raise SambenchError(f"--cache {root}: the directory is not writable: nothing can be removed")
                if not self.read_only:
                    log.warning("sambench cache: %s is not writable: its entries are read, new ones are not "
                                "written", root)
                self.read_only = True
            return
        if root.exists() and not root.is_dir():
            raise SambenchError(f"--cache {root}: is a file, not a directory (give a directory, or --no-cache)")
        try:
            root.mkdir(parents=True, exist_ok=True)
            foreign = self._foreign()
            if foreign is not None:
                raise SambenchError(f"--cache {root}: is not a sambench cache (it holds {foreign}, and no {MARKER} "
                                    f"file): give an empty or new directory")
            (root / MARKER).write_text("sambench embedding cache: `sambench cache clear` deletes only its entries "
                                       "(ab/<key>.safetensors) in this directory\n")
        except OSError as exc:
            raise SambenchError(f"--cache {root}: cannot be used as a cache ({exc.strerror or exc}; or use --no-cache)") \
                from None

    def _foreign(self) -> Optional[str]:
        """The first path under the root (relative) that the cache did not write, or None."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            if rel != "." and (os.sep in rel or not re.fullmatch(r"[0-9a-f]{2}", rel)):
                return rel + "/"
            for name in filenames:
                path = name if rel == "." else f"{rel}/{name}"
                if not (ENTRY_RE.fullmatch(path) or _OWN_RE.fullmatch(path) or path == MARKER):
                    return path
        return None

    def entries(self) -> list[Entry]:
        """Every entry file (``ab/<key>.safetensors``; not temporary or foreign files), least recently used first."""
        out = []
        if not self.root.is_dir():
            return out
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for p in sub.iterdir():
                if not ENTRY_RE.fullmatch(f"{sub.name}/{p.name}"):  # a user's file is never an entry
                    continue
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                out.append(Entry(p, st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: (e.mtime, e.path.name))

    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def _after_write(self, size: int, keep: Path) -> None:
        self._writes_since_scan += 1
        if self._estimate is not None:
            self._estimate += size
        if self._estimate is None or self._writes_since_scan >= _RESCAN_EVERY or self._estimate > self.max_bytes:
            self._estimate = self.total_bytes()
            self._writes_since_scan = 0
            if self._estimate > self.max_bytes:
                self.evict(keep=keep)

    def evict(self, target_bytes: Optional[int] = None, keep: Optional[Path] = None) -> int:
        """Delete least recently used entries until at most ``target_bytes`` (default 90 % of the limit)
        remain; skipped when another process is evicting. Returns entries removed."""
        target = self.max_bytes * 0.9 if target_bytes is None else target_bytes
        removed = 0
        with self._lock(blocking=False) as got:
            if not got:
                return 0
            entries = self.entries()
            total = sum(e.size for e in entries)
            for e in entries:
                if total <= target:
                    break
                if keep is not None and e.path == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    e.path.unlink()
                    removed += 1
                total -= e.size
            self._estimate = total
        self.stats.evicted += removed
        return removed

    # ------------------------------------------------------------------------------ maintenance (CLI)

    def describe(self, entry: Entry) -> Entry:
        """Fill ``entry.info`` from its header (no checksum; see :meth:`verify`)."""
        try:
            with open(entry.path, "rb") as fh:
                head = fh.read(8)
                (n,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
                header = json.loads(fh.read(n)) if 0 < n < (1 << 24) else {}
            entry.info = json.loads(header["__metadata__"]["sambench"])
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            entry.info = None
        return entry

    def verify(self, remove: bool = False) -> list[tuple[Path, str]]:
        """(path, problem) for every entry that fails its checks; ``remove`` deletes them (only in a
        directory the cache owns: :meth:`claim`)."""
        if remove:
            self.claim(removing=True)
        bad = []
        for e in self.entries():
            try:
                _, info = read_entry(e.path.read_bytes())
                if e.path.name != f"{info.get('key')}{SUFFIX}":
                    raise CorruptEntry("file name differs from the key it holds")
            except FileNotFoundError:
                continue
            except CorruptEntry as exc:
                bad.append((e.path, str(exc)))
                if remove:
                    with contextlib.suppress(FileNotFoundError):
                        e.path.unlink()
        return bad

    def clear(self) -> int:
        """Delete every entry and stale temporary file of a directory the cache owns (:meth:`claim`; nothing
        else is touched). Returns entries removed."""
        if not self.root.exists():
            return 0
        self.claim(removing=True)
        n = 0
        with self._lock():
            for e in self.entries():
                with contextlib.suppress(FileNotFoundError):
                    e.path.unlink()
                    n += 1
            for sub in (p for p in self.root.iterdir() if p.is_dir()):
                for p in (q for q in sub.glob(".tmp-*") if _OWN_RE.fullmatch(f"{sub.name}/{q.name}")):
                    if time.time() - p.stat().st_mtime > 3600:  # not a write in progress
                        with contextlib.suppress(FileNotFoundError):
                            p.unlink()
        self._estimate = None
        return n


def open_cache(cache_dir: Optional[str | Path], max_gb: float = DEFAULT_MAX_GB,
               storage: str = "fp32") -> Optional[EmbeddingCache]:
    """The cache a run uses, or None when ``cache_dir`` is None (``--no-cache``)."""
    return None if cache_dir is None else EmbeddingCache(cache_dir, max_gb=max_gb, storage=storage)


__all__ = ["CacheStats", "CorruptEntry", "DEFAULT_MAX_GB", "ENTRY_RE", "MARKER", "check_max_gb", "EmbeddingCache", "Entry", "ENV_VAR", "STORAGES",
           "default_cache_dir", "image_hash", "open_cache", "read_entry"]
