"""``sambench verify RUN_OR_DIR... [--rerun N] [--checkpoint PATH]... [--min-iou X] [--device D]`` (``sambench.api.verify``).

Exit codes: 0 — every stored number re-scores equal (and, with ``--rerun``, every re-run model's masks agree
with the stored ones; an entry whose weights are not found here is reported "not re-run", never passed);
1 — a mismatch or a failed re-run; 2 — bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def rerun_options(f):
    """``--rerun``, ``--checkpoint``, ``--min-iou``, ``--device``: shared by ``verify`` and ``leaderboard``."""
    f = click.option("--device", default="auto", show_default=True, help="Device of the re-run (auto, cpu, cuda, mps).")(f)
    f = click.option("--min-iou", type=float, default=None,
                     help="IoU every re-run mask must reach against the stored one (default by the recorded dtype: "
                          "fp32 0.999, fp16 0.99, bf16 0.98).")(f)
    f = click.option("--checkpoint", "checkpoints", multiple=True, metavar="[MODEL=]PATH",
                     help="A weights file to look for the recorded hashes in (besides the recorded path and "
                          "$SAMBENCH_CHECKPOINTS); repeatable.")(f)
    return click.option("--rerun", type=click.IntRange(min=1), default=None, metavar="N",
                        help="Also re-run each recorded model on N keyed stored images and compare its masks with "
                             "the stored ones, prompt by prompt.")(f)


@click.command("verify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@rerun_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write what was checked as JSON.")
def verify_cmd(paths, rerun, checkpoints, min_iou, device, json_path):
    """Re-score every stored mask of RUN_OR_DIR(s) against the ground truth; with --rerun N, re-run the models."""
    from sambench.api import verify  # lazy: pandas and torch stay out of `sambench --help`

    result = verify(paths, rerun=rerun or 0, checkpoints=checkpoints, min_iou=min_iou, device=device)
    click.echo(result.summary())
    if json_path is not None:
        json_path.write_text(json.dumps(result.record(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not result.ok:
        click.echo("verification failed", err=True)
        sys.exit(1)
