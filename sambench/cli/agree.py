"""``sambench agree RUN_A RUN_B [--out DIR] [--min-iou X] [--worst N]`` (``sambench.api.agree``).

Exit codes: 0 — compared (and, with ``--min-iou``, every prompt's masks agree at IoU >= X); 1 — some prompt
agrees below X; 2 — refused (the runs did not answer the same prompts) or bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command("agree")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write agree.csv (per prompt), agree_summary.csv/.md, agree.json and the grid of the "
                   "least-agreeing prompts here.")
@click.option("--min-iou", type=float, default=None,
              help="Gate: exit 1 when any prompt's masks agree below this IoU.")
@click.option("--worst", "n_worst", type=click.IntRange(min=1), default=8, show_default=True,
              help="Least-agreeing prompts to list and draw.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of the table.")
def agree_cmd(run_a, run_b, out_dir, min_iou, n_worst, as_json):
    """Compare the masks of RUN_A and RUN_B prompt by prompt (same prompts required)."""
    from sambench.api import agree  # lazy: pandas stays out of `sambench --help`

    result = agree(run_a, run_b, out=out_dir, min_iou=min_iou, n_worst=n_worst)
    click.echo(json.dumps(result.to_dict(n_worst), indent=2, sort_keys=True) if as_json
               else result.format_table(n_worst))
    if out_dir is not None and not as_json:
        click.echo(f"wrote agree.csv, agree_summary.csv, agree_summary.md, agree.json, agree_grid.png to {out_dir}")
    sys.exit(result.exit_code)
