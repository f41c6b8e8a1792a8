"""Click commands ``report_cmd`` and ``compare_cmd`` (registered by ``sambench.cli.main`` as ``sambench report`` and
``sambench compare``).

Exit codes: ``report`` — 0 on success, 2 on bad input (one-line ``error:`` message). ``compare`` — 0 when no
group regresses, 1 when at least one does, 2 when the comparison is refused (different prompts or
datasets, nothing in common) or the input is bad.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sambench.types import SambenchError, first_line


def _fail(exc: Exception) -> None:
    click.echo(f"error: {first_line(exc)}", err=True)
    sys.exit(2)


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default: RUN_DIR/report of the first run).")
@click.option("--reference-model", default=None,
              help="Model whose GT-box mIoU is the dashed reference line (default: first model by name with one).")
@click.option("--object", "grid_objects", multiple=True, metavar="DATASET/IMAGE/OBJECT[@PROTOCOL:LEVEL:DRAW]",
              help="Object to show in the visual grid (repeatable; default: the largest model disagreements).")
@click.option("--grid-rows", default=4, show_default=True, type=click.IntRange(0, 50),
              help="Rows of the default visual grid.")
@click.option("--format", "formats", multiple=True, default=("png", "pdf"), show_default=True,
              type=click.Choice(["png", "pdf", "svg"]), help="Figure file formats (repeatable).")
@click.option("--mce-reference", default=None,
              help="Model whose corruption errors normalise the mCE (default: grabcut, else box-fill).")
def report_cmd(run_dirs, out_dir, reference_model, grid_objects, grid_rows, formats, mce_reference):
    """Write tables, figures, index.html and leaderboard.json for RUN_DIR(s) (merged)."""
    # lazy: pandas and matplotlib stay out of `sambench --help` and of every other command
    from sambench.report.build import write_report

    try:
        written = write_report(run_dirs, out_dir, reference_model=reference_model,
                               grid_objects=list(grid_objects) or None, formats=tuple(formats), n_grid=grid_rows,
                               mce_reference=mce_reference)
    except SambenchError as exc:
        _fail(exc)
    index = written.get("index.html")
    click.echo(f"wrote {len(written)} files to {index.parent if index else out_dir}")
    if index:
        click.echo(f"open {index}")


def _run_dirs(arg: str):
    """``DIR`` or ``DIR,DIR,...`` (shards of one run); a path that exists as given is never split."""
    if "," in arg and not Path(arg).exists():
        return [Path(p) for p in arg.split(",") if p]
    return Path(arg)


@click.command("compare")
@click.argument("baseline")
@click.argument("candidate")
@click.option("--metric", type=click.Choice(["miou", "mbiou", "jf", "noc85", "noc90", "noc95"]), default="miou",
              show_default=True, help="mIoU/mBIoU per level, or NoC@85/90/95 of interactive (clicks) protocols.")
@click.option("--tol", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Allowed drop in points (percent) before a significant drop fails the gate; for noc*, "
                   "allowed rise in clicks.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the full comparison as JSON here.")
@click.option("--allow-prompt-mismatch", is_flag=True, help="Compare even if prompts/protocol versions differ.")
@click.option("--allow-dataset-mismatch", is_flag=True, help="Compare even if dataset content hashes differ.")
def compare_cmd(baseline, candidate, metric, tol, json_out, allow_prompt_mismatch, allow_dataset_mismatch):
    """Compare CANDIDATE against BASELINE; exit 1 on a regression, 2 when refused.

    Each is a run directory, or comma-separated shard directories of one run (merged).
    """
    # lazy: pandas and scipy stay out of `sambench --help` and of every other command
    from sambench.analysis.compare import compare_runs, write_json

    try:
        result = compare_runs(_run_dirs(baseline), _run_dirs(candidate), metric=metric, tol=tol,
                              allow_prompt_mismatch=allow_prompt_mismatch,
                              allow_dataset_mismatch=allow_dataset_mismatch)
    except SambenchError as exc:
        _fail(exc)
    click.echo(result.format_table())
    if json_out:
        click.echo(f"wrote {write_json(result, json_out)}")
    sys.exit(result.exit_code)
