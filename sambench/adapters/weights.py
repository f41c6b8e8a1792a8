"""Model weights, whatever the family: where a checkpoint is found, how it is verified, read and downloaded.

**Discovery.** A checkpoint is, in order: the file given explicitly (``--checkpoint PATH``; it must
exist), else the file named by the model card (``checkpoint.file``) in the checkpoint directory
``$SAMBENCH_CHECKPOINTS`` (default ``~/.cache/sambench/checkpoints``). A card without a ``checkpoint``
section (``sam-tiny``, ``hq-sam-tiny``) needs none: the adapter builds a random-init model. A missing file
is one :class:`SambenchError` line saying where sambench looked and how to get it (``sambench download
MODEL`` or the card's URL).

**Verification** (before anything is unpickled):

* Meta's file names carry a hash prefix: ``sam_vit_b_01ec64.pth``. That prefix is the start of the
  file's **MD5** digest (``01ec64d2…``), not of its SHA-256 (``ec2df627…``), as the checksums published
  next to those files by many downstream projects show. sambench accepts a prefix when it starts the
  MD5 *or* the SHA-256 of the bytes (the latter is torch.hub's ``name-<sha256 prefix>.pth`` convention),
  and checks it for every file whose name has Meta's form ``sam_vit_<x>_<6 hex>.pth``.
* When the file's name is the card's ``checkpoint.file``, the card's ``size``, ``sha256`` and
  ``hash_prefix`` (any length, up to a full MD5 or SHA-256 digest) are checked too.
* Hashing 2.5 GB takes seconds, so digests are cached in a small JSON file
  (``$SAMBENCH_HASH_CACHE``, default ``~/.cache/sambench/checkpoint-hashes.json``) keyed by the
  resolved path and validated by the file's size and mtime (ns); writing the cache is best effort.

**Reading.** ``torch.load(path, map_location="cpu", weights_only=True)`` — never arbitrary unpickling.
A ``{"model": sd}`` or ``{"state_dict": sd}`` container is unwrapped, and a ``module.`` prefix on every key
(a DistributedDataParallel save) is removed. Each family then checks that the state dict is the one its
model needs (SAM / HQ-SAM: :mod:`sambench.adapters.sam.weights`; SAM 2.1: :mod:`sambench.adapters.sam2`),
and :func:`load_into` loads it with ``load_state_dict(sd, strict=True)``, any remaining
missing/unexpected/mis-shaped key summarised in one line.

**Download.** :func:`download_checkpoint` streams the card's URL with urllib (stdlib) into
``<file>.part`` with a tqdm bar, resumes a partial ``.part`` with an HTTP ``Range`` request, checks the
size and hashes, then renames atomically. ``sambench download MODEL [--dest DIR] [--url URL]``
(:mod:`sambench.cli.download`) is its command line.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from sambench.config import CheckpointSpec, ModelCard, load_model_card
from sambench.types import SambenchError, file_digests_of

ENV_DIR = "SAMBENCH_CHECKPOINTS"
ENV_HASH_CACHE = "SAMBENCH_HASH_CACHE"

#: Meta's official file names: ``sam_vit_b_01ec64.pth`` (the 6 hex digits start the file's MD5).
META_NAME = re.compile(r"^sam_vit_[a-z]_([0-9a-f]{6})\.pth$")

_CHUNK = 8 << 20

PathLike = Union[str, os.PathLike]


# ------------------------------------------------------------------------------------------ discovery


def checkpoint_dir() -> Path:
    """``$SAMBENCH_CHECKPOINTS`` or ``~/.cache/sambench/checkpoints`` (not created here)."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sambench" / "checkpoints"


def _how_to_get(card: ModelCard) -> str:
    spec = card.checkpoint
    url = f" or from {spec.url}" if spec is not None and spec.url else ""
    return f"get it with `sambench download {card.name}`{url}"


def find_checkpoint(card: ModelCard, explicit: Optional[PathLike] = None) -> Optional[Path]:
    """The checkpoint file to load for ``card``, or None when the card names none (random init).

    ``explicit`` (``--checkpoint``) wins and must exist; otherwise the card's ``checkpoint.file`` is
    looked up in :func:`checkpoint_dir`.
    """
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_dir():
            raise SambenchError(f"{p}: is a directory, not a checkpoint file (given with --checkpoint for model "
                                f"'{card.name}'; name the .pth file inside it)")
        if not p.is_file():
            raise SambenchError(f"{p}: checkpoint file not found (given with --checkpoint for model '{card.name}')")
        return p
    if card.checkpoint is None:
        return None
    d = checkpoint_dir()
    p = d / card.checkpoint.file
    if not p.is_file():
        raise SambenchError(f"model '{card.name}': checkpoint {card.checkpoint.file} not found in {d} "
                            f"(set ${ENV_DIR} or pass --checkpoint PATH); {_how_to_get(card)}")
    return p


# ------------------------------------------------------------------------------------------- hashing


@dataclass(frozen=True)
class FileDigests:
    """Size in bytes and the hex MD5 / SHA-256 of a file's bytes."""

    size: int
    md5: str
    sha256: str


def hash_cache_path() -> Path:
    """``$SAMBENCH_HASH_CACHE`` or ``~/.cache/sambench/checkpoint-hashes.json``."""
    env = os.environ.get(ENV_HASH_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sambench" / "checkpoint-hashes.json"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache_entry(key: str, entry: dict) -> None:
    """Merge one entry into the cache file (atomic replace); errors are ignored (the cache is optional)."""
    path = hash_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = entry
        fd, tmp = tempfile.mkstemp(prefix=".hashes-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def _digest_file(path: Path) -> FileDigests:
    size, d = file_digests_of(path, ("md5", "sha256"), _CHUNK)
    return FileDigests(size=size, md5=d["md5"], sha256=d["sha256"])


def file_digests(path: PathLike, use_cache: bool = True) -> FileDigests:
    """MD5 and SHA-256 of ``path``, from the cache when its size and mtime are unchanged."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise SambenchError(f"{p}: cannot read checkpoint: {exc.strerror}") from None
    key = str(p.resolve())
    if use_cache:
        hit = _read_cache(hash_cache_path()).get(key)
        if (isinstance(hit, dict) and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns
                and isinstance(hit.get("md5"), str) and isinstance(hit.get("sha256"), str)):
            return FileDigests(size=st.st_size, md5=hit["md5"], sha256=hit["sha256"])
    dig = _digest_file(p)
    if use_cache:
        _write_cache_entry(key, {"size": dig.size, "mtime_ns": st.st_mtime_ns, "md5": dig.md5, "sha256": dig.sha256})
    return dig


def name_hash_prefix(filename: str) -> Optional[str]:
    """The hash prefix an official Meta file name carries (``sam_vit_b_01ec64.pth`` → ``01ec64``)."""
    m = META_NAME.match(filename)
    return m.group(1) if m else None


def _prefix_ok(prefix: str, dig: FileDigests) -> bool:
    prefix = prefix.lower()
    return dig.md5.startswith(prefix) or dig.sha256.startswith(prefix)


def verify_checkpoint_file(path: PathLike, spec: Optional[CheckpointSpec] = None,
                           digests: Optional[FileDigests] = None) -> FileDigests:
    """Check ``path`` against the hash prefix in its name and, if it is the card's file, the card's
    size / sha256 / hash_prefix. Returns the file's digests; raises :class:`SambenchError` on a mismatch."""
    p = Path(path)
    dig = digests or file_digests(p)
    prefix = name_hash_prefix(p.name)
    if prefix and not _prefix_ok(prefix, dig):
        raise SambenchError(f"{p}: corrupt or renamed checkpoint: its name says hash {prefix}… but its md5 is "
                            f"{dig.md5[:12]}… and its sha256 {dig.sha256[:12]}… (delete it and download it again)")
    if spec is not None and p.name == spec.file:
        if spec.size is not None and dig.size != int(spec.size):
            raise SambenchError(f"{p}: {dig.size} bytes, but {spec.file} has {spec.size} (truncated or wrong file: "
                                f"delete it and download it again)")
        if spec.sha256 and dig.sha256 != spec.sha256.lower():
            raise SambenchError(f"{p}: sha256 {dig.sha256[:16]}… does not match the model card's "
                                f"{spec.sha256[:16]}… (corrupt or wrong file: delete it and download it again)")
        if spec.hash_prefix and not _prefix_ok(spec.hash_prefix, dig):
            raise SambenchError(f"{p}: neither its md5 {dig.md5[:12]}… nor its sha256 {dig.sha256[:12]}… starts "
                                f"with the model card's hash {spec.hash_prefix[:12]}… (corrupt or wrong file)")
    return dig


# -------------------------------------------------------------------------------------- state dicts


#: Lines of torch's weights_only refusal that give advice sambench must never relay (retrying with
#: ``weights_only=False`` runs whatever code the file pickles).
_ADVICE_WORDS = ("weights_only", "arbitrary code", "trusted source", "file an issue", "documentation",
                 "in pytorch 2.6", "torch.serialization", "safe_globals", "weightsunpickler error")


def torch_load_problem(exc: BaseException) -> tuple[str, Optional[str]]:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice to retry unsafely.

    Returns ``(kind, detail)``: kind ``"code"`` when the pickle references a Python global (a class or
    function: the file pickles objects, maybe code), detail naming it; kind ``"bytes"`` for anything else
    (random or truncated bytes, another format), detail a short reason.
    """
    text = str(exc)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return "code", m.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not any(w in ln.lower() for w in _ADVICE_WORDS)]
    detail = useful[0] if useful else ""
    return "bytes", f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def read_state_dict(path: PathLike) -> dict:
    """``torch.load(path, map_location="cpu", weights_only=True)``, unwrapped to a flat name → tensor dict.

    Accepts a plain state dict, ``{"model": sd}`` or ``{"state_dict": sd}``; strips a ``module.`` prefix
    present on every key. Everything else is a one-line :class:`SambenchError`.
    """
    import torch  # lazy: keeps torch out of `import sambench` (this module also serves `sambench download`)

    p = Path(path)
    if p.is_dir():
        raise SambenchError(f"{p}: is a directory, not a checkpoint file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises UnpicklingError/KeyError/EOFError/RuntimeError... on bad bytes
        kind, detail = torch_load_problem(exc)
        if kind == "code":
            raise SambenchError(f"{p}: refused by torch.load(weights_only=True): the file pickles Python objects, not "
                                f"just tensors (it references {detail}); sambench never unpickles code — re-save the "
                                f"weights with torch.save(model.state_dict(), ...)") from None
        raise SambenchError(f"{p}: not a PyTorch checkpoint (torch.load failed: {detail})") from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict) and not any(isinstance(k, str) and k.startswith("image_encoder.") for k in obj):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        what = type(obj).__name__ if not isinstance(obj, dict) else "an empty dict"
        raise SambenchError(f"{p}: not a state dict (torch.load returned {what}; expected a mapping of parameter "
                            f"names to tensors)")
    bad = next(((k, v) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise SambenchError(f"{p}: not a state dict (entry {bad[0]!r} holds a {type(bad[1]).__name__}, not a tensor)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_into(model: Any, sd: dict, *, path: PathLike, name: str) -> None:
    """``model.load_state_dict(sd, strict=True)`` with any mismatch summarised in one line."""
    p = Path(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatch(es) (e.g. {k}: file {tuple(sd[k].shape)}, "
                         f"model {tuple(own[k].shape)})")
        raise SambenchError(f"{p}: does not fit model '{name}': {'; '.join(parts)}")
    model.load_state_dict(sd, strict=True)


# ------------------------------------------------------------------------------------------ download


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "sambench-download/1"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download_checkpoint(card: Union[str, ModelCard], dest_dir: Optional[PathLike] = None, url: Optional[str] = None,
                        progress: bool = True, timeout: float = 60.0) -> Path:
    """Download the card's checkpoint into ``dest_dir`` (default :func:`checkpoint_dir`) and return its path.

    Streams ``url`` (default: the card's) into ``<file>.part``, resuming an existing ``.part`` with an
    HTTP ``Range`` request (a server that ignores it restarts from byte 0); checks the size and the
    hashes (card ``sha256`` / ``hash_prefix`` and the prefix in Meta's file names), then renames the
    file into place atomically. A verified file already in place is returned as is. A hash mismatch
    deletes the ``.part`` (it cannot be resumed into a good file); an interrupted transfer keeps it.
    """
    if not isinstance(card, ModelCard):
        card = load_model_card(card)
    spec = card.checkpoint
    if spec is None and card.adapter.startswith("hf") and card.options.get("source"):
        raise SambenchError(f"model '{card.name}' is a transformers model: get it with `huggingface-cli download "
                            f"{card.options['source']}` (into the hub cache, where sambench finds it)")
    if spec is None:
        raise SambenchError(f"model '{card.name}' has no checkpoint to download (its card names none: it runs "
                            f"with random-init weights)")
    url = url or spec.url
    if not url:
        raise SambenchError(f"{card.path}: checkpoint {spec.file} has no 'url'; pass --url")
    dest = Path(dest_dir).expanduser() if dest_dir is not None else checkpoint_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SambenchError(f"{dest}: cannot create checkpoint directory: {exc.strerror}") from None
    target = dest / spec.file
    if target.is_file():
        verify_checkpoint_file(target, spec)
        return target
    part = dest / (spec.file + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if spec.size is not None and offset > int(spec.size):
        part.unlink()
        offset = 0

    expected = int(spec.size) if spec.size is not None else None
    complete = expected is not None and offset == expected
    if not complete:
        try:
            resp = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # nothing left to send: the partial file may already be whole
                resp = None
                complete = True
            else:
                raise SambenchError(f"{url}: download failed: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise SambenchError(f"{url}: download failed: {reason}") from None
        if resp is not None:
            with resp:
                _stream(resp, url, part, offset, expected, spec.file, progress)

    size = part.stat().st_size
    if expected is not None and size != expected:
        raise SambenchError(f"{url}: download incomplete: {size} of {expected} bytes in {part}; run the same "
                            f"command again to resume")
    dig = _digest_file(part)
    try:
        verify_checkpoint_file(dest / spec.file, spec, digests=dig)
    except SambenchError as exc:
        part.unlink(missing_ok=True)
        raise SambenchError(f"{url}: downloaded file failed verification and was deleted: "
                            f"{str(exc).split(': ', 1)[1]}") from None
    os.replace(part, target)
    st = target.stat()
    _write_cache_entry(str(target.resolve()), {"size": dig.size, "mtime_ns": st.st_mtime_ns, "md5": dig.md5,
                                               "sha256": dig.sha256})
    return target


def _stream(resp, url: str, part: Path, offset: int, expected: Optional[int], label: str, progress: bool) -> None:
    from tqdm import tqdm  # lazy: only a download draws a progress bar

    status = getattr(resp, "status", 200)
    total: Optional[int] = None
    if offset and status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            raise SambenchError(f"{url}: server answered the resume request with a bad Content-Range "
                                f"{resp.headers.get('Content-Range')!r}; delete {part} and retry")
        total = int(m.group(3)) if m.group(3) != "*" else None
        mode = "ab"
    else:
        offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    if expected is not None and total is not None and total != expected:
        raise SambenchError(f"{url}: the server has {total} bytes but the model card expects {expected}: wrong URL "
                            f"or a changed file")
    with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                                      desc=label, disable=not progress, leave=False) as bar:
        while True:
            try:
                block = resp.read(1 << 20)
            except (http.client.HTTPException, OSError) as exc:
                partial = getattr(exc, "partial", b"")
                if partial:
                    fh.write(partial)
                fh.flush()
                raise SambenchError(f"{url}: download interrupted after {fh.tell()} bytes ({type(exc).__name__}); "
                                    f"{part} is kept: run the same command again to resume") from None
            if not block:
                break
            fh.write(block)
            bar.update(len(block))
