"""``sambench leaderboard RUN_OR_DIR... --out DIR [--rank-by SCORE] [--verify [--rerun N]]`` (``sambench.leaderboard``).

Exit codes: 0 — board written (and, with ``--verify``, every stored number re-scored equal; with ``--rerun N``
every re-run model's masks agree with the stored ones, entries whose weights are not here marked "not
re-run" on the board); 1 — ``--verify`` found a stored number that its mask does not give, or a re-run that
disagrees (nothing is written); 2 — refused (runs that cannot share a board: one line naming both) or bad
input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sambench.cli.verify import rerun_options


@click.command("leaderboard")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for leaderboard.md, leaderboard.html and leaderboard.json.")
@click.option("--rank-by", default=None, metavar="SCORE[@PROTOCOL]",
              help="Headline score to rank by, e.g. degraded_miou, paper_avg, auc@noisy-box "
                   "(default: degraded_miou of the first protocol by name).")
@click.option("--verify", is_flag=True,
              help="First re-score every stored mask from its RLE against the ground truth (datasets reopened "
                   "from the manifests); exit 1 without writing the board if a stored number differs.")
@rerun_options
@click.option("--note", default="", help="A closing paragraph for leaderboard.md and leaderboard.html.")
def leaderboard_cmd(paths, out_dir, rank_by, verify, rerun, checkpoints, min_iou, device, note):
    """Rank the models of RUN_OR_DIR(s) (run directories, or directories holding them) by headline scores.

    Runs merge only where prompt hashes, protocol versions, dataset content hashes and model signatures
    agree (the checks of `compare`); every model must hold the same results per dataset and protocol.
    """
    # lazy: pandas and matplotlib stay out of `sambench --help` and of every other command
    from sambench.api import verify as verify_runs
    from sambench.leaderboard import write_board  # lazy: as above

    if rerun and not verify:
        raise click.UsageError("--rerun N re-runs the models as part of --verify: give --verify --rerun N")
    record = None
    if verify:
        result = verify_runs(paths, rerun=rerun or 0, checkpoints=checkpoints, min_iou=min_iou, device=device)
        click.echo(result.summary())
        if not result.ok:
            click.echo("verification failed: the board is not written", err=True)
            sys.exit(1)
        record = result.record()
    written = write_board(paths, out_dir, rank_by=rank_by, note=note, verification=record,
                          warn=lambda line: click.echo(f"warning: {line}", err=True))
    click.echo(f"wrote {', '.join(sorted(written))} to {out_dir}")
