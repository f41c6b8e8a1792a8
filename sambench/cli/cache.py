"""``sambench cache ls|du|clear|verify``: the embedding cache (sambench/execution/cache.py) on the command line."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Optional

import click

from sambench.execution.cache import EmbeddingCache, default_cache_dir


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _cache_option(fn):
    return click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
                        help="Cache directory [default: $SAMBENCH_CACHE or ~/.cache/sambench/embeddings].")(fn)


def _open(cache_dir: Optional[Path]) -> EmbeddingCache:
    return EmbeddingCache(cache_dir or default_cache_dir())


@click.group("cache")
def cache_group() -> None:
    """Inspect and maintain the embedding cache (ls, du, clear, verify)."""


@cache_group.command("ls")
@_cache_option
def ls_cmd(cache_dir) -> None:
    """One line per entry, least recently used first: key, size, last use, encoder, mode, image, storage."""
    cache = _open(cache_dir)
    for e in cache.entries():
        info = cache.describe(e).info or {}
        sig = info.get("signature", {})
        when = _dt.datetime.fromtimestamp(e.mtime, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        what = (f"{sig.get('family', '?')}/{sig.get('variant', '?')} weights {str(sig.get('weights_sha256'))[:16]} "
                f"{sig.get('dtype', '?')} {info.get('preprocessing', '?')} image {str(info.get('image_hash'))[:12]} "
                f"{info.get('storage', '?')}" if info else "[unreadable header]")
        click.echo(f"{e.path.stem[:16]}  {_human(e.size):>9}  {when}  {what}")


@cache_group.command("du")
@_cache_option
def du_cmd(cache_dir) -> None:
    """Entries and bytes under the cache directory."""
    cache = _open(cache_dir)
    entries = cache.entries()
    click.echo(f"{cache.root}: {len(entries)} entries, {_human(sum(e.size for e in entries))}")


@cache_group.command("clear")
@_cache_option
def clear_cmd(cache_dir) -> None:
    """Delete every entry."""
    cache = _open(cache_dir)
    click.echo(f"{cache.root}: removed {cache.clear() if cache.root.is_dir() else 0} entries")


@cache_group.command("verify")
@_cache_option
@click.option("--remove", is_flag=True, help="Delete the bad entries (a run would recompute them anyway).")
def verify_cmd(cache_dir, remove) -> None:
    """Check every entry's header, key and checksum; exit 1 if any is bad."""
    cache = _open(cache_dir)
    n = len(cache.entries())
    bad = cache.verify(remove=remove)
    for path, why in bad:
        click.echo(f"{path}: {why}" + (" (removed)" if remove else ""))
    click.echo(f"{cache.root}: {n} entries checked, {len(bad)} bad")
    if bad:
        raise SystemExit(1)
