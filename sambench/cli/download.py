"""``sambench download MODEL``: :func:`sambench.adapters.weights.download_checkpoint` on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click


@click.command("download")
@click.argument("model")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory to save into (default: $SAMBENCH_CHECKPOINTS or ~/.cache/sambench/checkpoints).")
@click.option("--url", default=None, help="Download from this address (a mirror) instead of the card's.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def download_cmd(model: str, dest: Optional[Path], url: Optional[str], quiet: bool) -> None:
    """Download and verify MODEL's official checkpoint (resumes an interrupted download)."""
    from sambench.adapters.weights import download_checkpoint  # lazy: keeps urllib and tqdm out of `sambench --help`

    click.echo(str(download_checkpoint(model, dest_dir=dest, url=url, progress=not quiet)))
