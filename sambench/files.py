"""Writing files safely: atomic replacement and one-line storage errors.

* :func:`atomic_write` writes bytes or text to a temporary file in the target's directory, flushes and
  fsyncs it, then ``os.replace``-s it over the target: a reader (or a kill, or a full disk) never sees
  half a file. On failure the temporary file is removed and the old target, if any, is left untouched.
* :func:`storage_error` turns an ``OSError`` (or SQLite's I/O errors) into a :class:`SambenchError` of one
  line naming the file and the problem in words ("no space left on device", "read-only file system",
  "permission denied", ...), so the CLI exits 2 with ``error: PATH: ...`` instead of "unexpected ...".
* :func:`ensure_dir` creates an output directory or says in one line why it cannot.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Union

from sambench.types import SambenchError, first_line

PathLike = Union[str, os.PathLike]

_WORDS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a path component is a file, not a directory",
    errno.EISDIR: "is a directory",
    errno.EEXIST: "already exists",
    errno.EIO: "input/output error",
}


def storage_error(path: PathLike, exc: BaseException, doing: str = "cannot write") -> SambenchError:
    """``PATH: <doing>: <reason>`` for an OSError (errno in words) or any other storage exception."""
    if isinstance(exc, OSError) and exc.errno in _WORDS:
        reason = _WORDS[exc.errno]
    elif isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror.lower()
    else:
        reason = first_line(exc)
    return SambenchError(f"{path}: {doing}: {reason}")


def ensure_dir(path: PathLike, what: str = "output directory") -> Path:
    """``mkdir -p`` ``path``; an existing file there, a read-only parent or a full disk is one line."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SambenchError(f"{p}: is a file, not a directory (the {what} must be a directory)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(p, exc, f"cannot create the {what}") from None
    return p


def atomic_write(path: PathLike, data: Union[bytes, str]) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically (temp file + fsync + rename)."""
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if target.is_dir():
        raise SambenchError(f"{target}: is a directory, cannot write a file there")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise storage_error(target, exc) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return target
