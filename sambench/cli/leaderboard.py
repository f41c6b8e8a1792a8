"""``sambench leaderboard RUN_OR_DIR... --out DIR [--rank-by SCORE] [--verify]`` (``sambench.leaderboard``).

Exit codes: 0 — board written (and, with ``--verify``, every stored number re-scored equal); 1 — ``--verify``
found a stored number that its mask does not give (nothing is written); 2 — refused (runs that cannot share
a board: one line naming both) or bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


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
@click.option("--note", default="", help="A closing paragraph for leaderboard.md and leaderboard.html.")
def leaderboard_cmd(paths, out_dir, rank_by, verify, note):
    """Rank the models of RUN_OR_DIR(s) (run directories, or directories holding them) by headline scores.

    Runs merge only where prompt hashes, protocol versions, dataset content hashes and model signatures
    agree (the checks of `compare`); every model must hold the same results per dataset and protocol.
    """
    # lazy: pandas and matplotlib stay out of `sambench --help` and of every other command
    from sambench.leaderboard import find_runs, verify_runs, write_board

    if verify:
        result = verify_runs(find_runs(paths))
        click.echo(result.summary())
        if not result.ok:
            click.echo("verification failed: the board is not written", err=True)
            sys.exit(1)
    written = write_board(paths, out_dir, rank_by=rank_by, note=note,
                          warn=lambda line: click.echo(f"warning: {line}", err=True))
    click.echo(f"wrote {', '.join(sorted(written))} to {out_dir}")
