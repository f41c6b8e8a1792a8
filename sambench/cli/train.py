"""``sambench train stable-sam``: :func:`sambench.training.train.train_stable_sam` on the command line."""

from __future__ import annotations

from typing import Sequence

import click
import numpy as np
import yaml

from sambench.types import SambenchError


def _parse_option(values: Sequence[str]) -> dict:
    out = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep or not key.strip():
            raise SambenchError(f"--option {v!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(raw)
    return out


@click.group("train")
def train_cmd() -> None:
    """Train plug-ins on frozen base models."""


@train_cmd.command("stable-sam")
@click.option("--base", "base_name", required=True, help="Base card (sam-vit-l, hq-sam-vit-b, sam2.1-hiera-large, sam-tiny, ...) or a stable-sam card.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Base weights (default: the base card's file).")
@click.option("--data", "data", multiple=True, required=True, help="Training data: a folder dataset directory or a dataset name (repeatable).")
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Plug-in file to write (PLUGIN.pt).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Images per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps in total (resumable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--objects-per-image", type=int, default=4, show_default=True)
@click.option("--no-augment", is_flag=True, help="No flip / large-scale jitter (plain SAM resize).")
@click.option("--save-every", type=int, default=50, show_default=True, help="Steps between resume checkpoints.")
@click.option("--restart", is_flag=True, help="Ignore (delete) an existing resume file.")
@click.option("--option", "options", multiple=True, help="Plug-in option KEY=VALUE (offset_range, modulation, pe_mode, drp_token, drp_hidden, drp_norm).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_stable_sam_cmd(base_name, checkpoint, data, epochs, out, device, batch_size, lr, max_steps, seed,
                         objects_per_image, no_augment, save_every, restart, options, quiet) -> None:
    """Train the Stable-SAM plug-in (DSP + DRP) on a frozen SAM / HQ-SAM."""
    from sambench.training.train import train_stable_sam  # lazy: keeps torch out of `sambench --help`

    # A SambenchError propagates: the main `sambench` group prints it as one "error: ..." line.
    res = train_stable_sam(base_name, checkpoint, list(data), epochs=epochs, out=out, device=device,
                           batch_size=batch_size, lr=lr, seed=seed, max_steps=max_steps,
                           plugin_options=_parse_option(options), objects_per_image=objects_per_image,
                           augment=not no_augment, save_every=save_every, restart=restart, progress=not quiet)
    last = np.mean(res.losses[-10:]) if res.losses else float("nan")
    click.echo(f"wrote {res.plugin_path} after {res.steps}/{res.total_steps} steps "
               f"(this run: {res.steps - res.start_step} steps, {res.samples_per_s:.2f} images/s, "
               f"mean loss of the last 10 steps {last:.4f}); log {res.log_path}; resume {res.resume_path}")
