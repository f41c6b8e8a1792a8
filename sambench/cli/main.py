"""The ``sambench`` command line: thin click commands that parse, call one function, print."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Optional

import click
import yaml

from sambench.adapters import route_files
from sambench.cli.perf import reexec_with_tuned_malloc
from sambench.config import (FAMILY_DEFAULTS, HF_PREFIX, list_cards, load_model_card, load_protocol_card,
                                   resolve_model_name)
from sambench.execution.cache import DEFAULT_MAX_GB, default_cache_dir
from sambench.files import storage_error
from sambench.types import SambenchError, first_line

#: What ``sambench run`` does with no --model/--protocol/--dataset: both classical baselines, the
#: noisy-box protocol on the shipped GrabCut sample, at the levels and draws below (chosen so that the
#: whole default run takes about a minute on 2 CPU cores; see README "The default run").
DEFAULT_RUN = {"models": ["grabcut", "box-fill"], "protocols": ["noisy-box"], "datasets": ["grabcut-sample"],
               "levels": ["0", "0.2", "0.4", "0.6", "0.8", "1"], "draws": 5}


def _fail(exc: SambenchError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


#: Commands that live beside their stage, imported only when invoked (torch stays out of `--help`).
LAZY_COMMANDS = {
    "report": "sambench.cli.report:report_cmd",
    "compare": "sambench.cli.report:compare_cmd",
    "leaderboard": "sambench.cli.leaderboard:leaderboard_cmd",
    "download": "sambench.cli.download:download_cmd",
    "train": "sambench.cli.train:train_cmd",
    "cache": "sambench.cli.cache:cache_group",
    "verify": "sambench.cli.verify:verify_cmd",
    "agree": "sambench.cli.agree:agree_cmd",
}


class _Group(click.Group):
    """Turns SambenchError anywhere below into one 'error: ...' line and exit status 2; lazy commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str):
        if name in LAZY_COMMANDS and name not in self.commands:
            module, _, attr = LAZY_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SambenchError as exc:
            _fail(exc)
        except KeyboardInterrupt:  # Ctrl-C: 130 (128 + SIGINT), as shells report it; 1 means "samples failed"
            click.echo("error: interrupted (every image finished so far is stored: rerun the same command to resume)",
                       err=True)
            sys.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # `sambench list ... | head`: the reader left, nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as exc:  # storage: a full disk, a read-only place, a file where a directory belongs
            if os.environ.get("SAMBENCH_DEBUG"):
                raise
            _fail(storage_error(exc.filename or "sambench", exc, "I/O error"))
        except Exception as exc:  # a bug or an environment problem: still one line, traceback on request
            if os.environ.get("SAMBENCH_DEBUG"):
                raise
            click.echo(f"error: unexpected {type(exc).__name__}: {first_line(exc, empty='')} (set SAMBENCH_DEBUG=1 for the traceback)",
                       err=True)
            sys.exit(3)


@click.group(cls=_Group)
@click.version_option(package_name="sambench")
def main() -> None:
    """sambench: how promptable segmentation models hold up when their prompts are bad."""


def _split(values: tuple) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in str(v).split(",") if x.strip())
    return out


def _parse_options(values: tuple, models: list[str]) -> dict:
    """``--option MODEL.key=value`` or ``--option key=value`` (every model); values parsed as YAML scalars."""
    out: dict = {}
    for v in values:
        if "=" not in v:
            raise SambenchError(f"--option {v}: expected key=value or MODEL.key=value")
        k, val = v.split("=", 1)
        try:
            parsed = yaml.safe_load(val) if val else None
        except yaml.YAMLError:
            raise SambenchError(f"--option {v}: the value is not a YAML scalar/list/mapping") from None
        targets = models
        if "." in k and k.split(".", 1)[0] in models:
            m, k = k.split(".", 1)
            targets = [m]
        for m in targets:
            out.setdefault(m, {})[k] = parsed
    return out


def _key_values(values: tuple, option: str) -> dict:
    out = {}
    for v in values:
        if "=" not in v:
            raise SambenchError(f"{option} {v}: expected key=value")
        k, val = v.split("=", 1)
        out[k] = val
    return out


def dataset_options(default: tuple = (), multiple: bool = True, pass_given: bool = False):
    """The dataset options ``run`` and ``prompts export`` share (--dataset, --format, --images, --masks,
    --name, --dataset-option). The command receives them as ``datasets``, a list of DatasetSpec (the
    ``default`` names when no --dataset/--images is given), and with ``pass_given`` a ``datasets_given`` flag."""

    def decorate(command):
        opts = [
            click.option("--dataset", "-d", "datasets", multiple=True,
                         help="Dataset name or path" + (" (repeatable)." if multiple else f" (default: {', '.join(default)}).")),
            click.option("--format", "fmt", type=click.Choice(["folder", "coco"]), default=None,
                         help="Format of --dataset PATH (default: auto)."),
            click.option("--images", default=None,
                         help="Folder dataset: image directory (with --masks); COCO .json: the directory its "
                              "file_name entries are relative to (alone)."),
            click.option("--masks", default=None, help="Folder dataset: mask directory (with --images)."),
            click.option("--name", "ds_names", multiple=True,
                         help="Name in result keys for each --dataset, in order (default: derived from the path)."),
            click.option("--dataset-option", "ds_options", multiple=True,
                         help="Dataset loader option key=value (e.g. min_area=100, categories=person)."),
        ]
        for opt in reversed(opts):
            command = opt(command)

        @functools.wraps(command)
        def wrapper(*args, datasets, fmt, images, masks, ds_names, ds_options, **kwargs):
            if not multiple and len(datasets) > 1:
                raise SambenchError("--dataset: give one dataset")
            given = bool(datasets or images or masks)
            names = list(datasets) if datasets or images or masks else list(default)
            specs = _dataset_specs(names, fmt, images, masks, list(ds_names), _key_values(ds_options, "--dataset-option"))
            extra = {"datasets_given": given} if pass_given else {}
            return command(*args, datasets=specs, **extra, **kwargs)

        return wrapper

    return decorate


def _dataset_specs(datasets: list[str], fmt, images, masks, names: list[str], options: dict) -> list:
    """The DatasetSpec of each ``--dataset`` (one ``--name`` per ``-d``, in order).

    ``--images``/``--masks`` (or ``--dataset-option images=DIR``/``masks=DIR``) name a folder dataset's
    directories; ``--images`` alone names the image directory of a COCO ``.json``.
    """
    from sambench.datasets import DatasetSpec  # lazy: the dataset loaders load OpenCV; `sambench --help` must not

    options = dict(options)
    images = images or options.pop("images", None)
    masks = masks or options.pop("masks", None)
    if images or masks:
        if len(datasets) > 1:
            raise SambenchError("--images/--masks name the directories of one dataset: give one --dataset")
        spec = datasets[0] if datasets else images
        coco = fmt == "coco" or (fmt is None and str(spec).lower().endswith(".json"))
        if coco and masks:
            raise SambenchError(f"{spec}: --masks is for folder datasets; a COCO dataset takes --images only")
        if not coco and not (images and masks):
            raise SambenchError("--images and --masks go together for a folder dataset (a COCO .json takes --images alone)")
        specs = [DatasetSpec(spec=spec, format="coco" if coco else "folder", images=images, masks=masks,
                             options=options)]
    else:
        specs = [DatasetSpec(spec=d, format=fmt, options=options) for d in datasets]
    if names and len(names) != len(specs):
        raise SambenchError(f"--name given {len(names)} time(s) for {len(specs)} dataset(s): give one --name per "
                            f"--dataset, in order")
    for spec, name in zip(specs, names):
        spec.name = name
    return specs


def _shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SambenchError(f"--shard {text}: expected I/N, e.g. 0/4") from None
    return i, n


def scale_options(fn):
    """``run`` options of the cache, throughput, engines and run-directory lock (docs/scale.md)."""
    opts = [
        click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
                     help="Embedding cache directory [default: $SAMBENCH_CACHE or ~/.cache/sambench/embeddings]."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache."),
        click.option("--cache-max-gb", type=float, default=None,
                     help="Cache size limit; least recently used entries go first [default: 20]."),
        click.option("--cache-dtype", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
                     help="Storage of cached embeddings (fp16: half the disk, masks differ by a few pixels; docs/scale.md)."),
        click.option("--encode-batch", type=int, default=1, show_default=True, help="Images per encoder pass (SAM family)."),
        click.option("--engine", type=click.Choice(["serial", "process", "ray"]), default=None,
                     help="Where images run: serial (this process), process (--workers processes), ray (model "
                          "replicas on Ray actors) [default: serial, or process with --workers > 1]."),
        click.option("--address", "ray_address", default=None,
                     help="Ray cluster: auto or HOST:PORT (default: start a local instance)."),
        click.option("--gpus-per-worker", type=float, default=0.0, show_default=True,
                     help="GPUs each Ray actor requests (fractions share a GPU)."),
        click.option("--wait-lock", is_flag=True, help="If another run writes this run directory, wait for it instead of refusing."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def scale_config(scale: dict) -> dict:
    """RunConfig fields from :func:`scale_options` (``--no-cache`` wins over ``--cache``)."""
    cache = None if scale["no_cache"] else str(scale["cache_dir"] or default_cache_dir())
    return {"cache_dir": cache, "cache_max_gb": DEFAULT_MAX_GB if scale["cache_max_gb"] is None else scale["cache_max_gb"],
            "cache_dtype": scale["cache_dtype"], "encode_batch": scale["encode_batch"], "engine": scale["engine"],
            "ray_address": scale["ray_address"], "gpus_per_worker": scale["gpus_per_worker"],
            "wait_lock": scale["wait_lock"]}


@main.command("run")
@click.option("--model", "-m", "models", multiple=True, help="Model card name (repeatable, or comma-separated).")
@click.option("--protocol", "-p", "protocols", multiple=True, help="Protocol card name (repeatable).")
@dataset_options(default=tuple(DEFAULT_RUN["datasets"]), pass_given=True)
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="Run directory (default: under ./runs/, derived from the command so re-running resumes).")
@click.option("--levels", default=None, help="Override protocol levels, e.g. 0,0.2,0.4 or gt-box,1-point.")
@click.option("--draws", type=int, default=None, help="Override draws per level.")
@click.option("--seed", type=int, default=None, help="Override the protocols' seed (and seed the corruptions).")
@click.option("--corruption", "corruptions", multiple=True,
              help="Also run every protocol on corrupted images: NAME[:SEVERITIES] (e.g. fog:1,3, motion-blur:2-5) "
                   "or all, or robustsam (RobustSAM's own, severity 1 only); repeatable. Clean is always level 0 "
                   "(docs/corruptions.md).")
@click.option("--limit", type=int, default=None, help="Only the first N images of each dataset.")
@click.option("--shard", default=None, help="I/N: only the images of shard I of N (stable hash of dataset and image id).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda", "mps"]), show_default=True)
@click.option("--checkpoint", "checkpoints", multiple=True, help="Weights file: PATH, or MODEL=PATH with several models.")
@click.option("--plugin", "plugins", multiple=True, help="Stable-SAM plug-in file: PATH or MODEL=PATH.")
@click.option("--option", "options", multiple=True, help="Adapter option: key=value or MODEL.key=value.")
@click.option("--prompts-per-call", "prompts_per_call", type=int, default=64, show_default=True,
              help="Prompts handed to the adapter per predict() call. Deprecated spelling: --chunk-size "
                   "(not the SAM adapters' decoder chunk, which is the adapter option: --option chunk_size=N).")
@click.option("--chunk-size", "old_chunk_size", type=int, default=None, hidden=True,
              help="Deprecated spelling of --prompts-per-call.")
@click.option("--workers", type=int, default=None, help="Processes over images (default: CPU count if every model is a classical baseline, else 1).")
@click.option("--keep-going", is_flag=True, help="Exit 0 even if some samples failed (they are still recorded).")
@click.option("--retry-failed", is_flag=True, help="Delete this run's failed rows of the given models first, so they run again.")
@click.option("--no-report", is_flag=True, help="Do not write the report into the run directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@scale_options
@click.pass_context
def run_cmd(ctx, models, protocols, datasets, datasets_given, out, levels, draws, seed, corruptions, limit, shard,
            device, checkpoints, plugins, options, prompts_per_call, old_chunk_size, workers, keep_going, retry_failed,
            no_report, quiet, **scale) -> None:
    """Run models × protocols × datasets and store every prompt's result (resumable).

    With no --model/--protocol/--dataset it runs the embedded default: grabcut and box-fill on the
    shipped GrabCut sample with the noisy-box protocol (levels 0,0.2,...,1, 5 draws).
    """
    from sambench.api import configure, execute  # lazy: the API loads pandas and the run loop; --help must not

    models_l, protocols_l = _split(models), _split(protocols)
    is_default = not (models_l or protocols_l or datasets_given)
    models_l = [resolve_model_name(m) for m in models_l] or list(DEFAULT_RUN["models"])  # family → variant
    protocols_l = protocols_l or list(DEFAULT_RUN["protocols"])
    levels_l = _split((levels,)) if levels else (list(DEFAULT_RUN["levels"]) if is_default else None)
    draws = draws if draws is not None else (DEFAULT_RUN["draws"] if is_default else None)
    config, adapters = configure(
        models_l, protocols_l, datasets, out, levels=levels_l, draws=draws, seed=seed, limit=limit,
        shard=_shard(shard), prompts_per_call=_prompts_per_call(ctx, prompts_per_call, old_chunk_size),
        workers=workers, device=device, checkpoints=route_files(checkpoints, models_l, "checkpoint"),
        plugins=route_files(plugins, models_l, "plugin"), model_options=_parse_options(options, models_l),
        retry_failed=retry_failed, progress=not quiet, corruptions=list(corruptions), **scale_config(scale))
    click.echo(f"sambench run: models {', '.join(models_l)} | protocols {', '.join(protocols_l)} | "
               f"datasets {', '.join(s.spec for s in datasets)} | "
               f"levels {','.join(levels_l) if levels_l else 'card'} | "
               f"draws {'card' if draws is None else draws} | workers {config.workers or 'auto'}"
               + (f" | corruptions {', '.join(corruptions)}" if corruptions else "")
               + (f" | engine {scale['engine']}" if scale['engine'] else "") + f" -> {config.out}", err=True)
    result = execute(config, adapters)
    _print_run_summary(result, no_report)
    failed = result.counts.get("failed", 0)
    if failed and not keep_going:
        click.echo(f"{failed} sample(s) failed (recorded in {result.run_dir / 'results.sqlite'}); "
                   f"exit 1 (--keep-going to exit 0)", err=True)
        sys.exit(1)


def _prompts_per_call(ctx: click.Context, value: int, old: Optional[int]) -> int:
    """``--prompts-per-call``, or its deprecated spelling ``--chunk-size`` (said so on stderr: it is not the
    adapters' decoder ``chunk_size`` option)."""
    if old is None:
        return value
    given = ctx.get_parameter_source("prompts_per_call") != click.core.ParameterSource.DEFAULT
    if given and value != old:
        raise SambenchError(f"--chunk-size {old} and --prompts-per-call {value}: --chunk-size is the old spelling "
                            f"of --prompts-per-call; give one")
    click.echo("warning: --chunk-size is the old spelling of --prompts-per-call (prompts per predict() call); "
               "the adapters' decoder chunk is --option chunk_size=N", err=True)
    return old


def _print_run_summary(result, no_report: bool) -> None:
    """The summary table (computed once, also for the report), failures, counts and the written files."""
    from sambench.analysis.noc import click_protocols, format_noc, noc_table  # lazy: pandas stays out of --help
    from sambench.analysis.summary import failure_reasons, format_table, per_object, summarize  # lazy: as above

    objects = per_object(result.rows, result.objects)  # with the stability stored by the run, once
    table = summarize(result.rows, objects=objects)
    video = any(p.get("identity", {}).get("video") for p in (result.manifest.get("protocols") or {}).values())
    if video:  # a run is all video or all image: its rows' iou is a track's mean J, which J, F, J&F say better
        from sambench.analysis.video import format_video_table, video_summary  # lazy: video runs only
        from sambench.store import load_tracks  # lazy: as above

        click.echo("video: J, F and J&F (percent; mean over tracks of the mean over draws; prompt frame excluded)")
        click.echo(format_video_table(video_summary(result.rows, load_tracks([result.run_dir]))))
    else:
        click.echo(format_table(table))

    interactive = click_protocols([result.manifest])
    if interactive:
        click.echo("\n" + format_noc(noc_table(result.rows, interactive)))
    reasons = failure_reasons(result.rows)
    if not reasons.empty:
        click.echo(f"\nfailed samples: {int(reasons['count'].sum())}")
        for _, r in reasons.head(10).iterrows():
            click.echo(f"  {r['count']:>5} × {r['model']} / {r['dataset']} / {r['protocol']}: {r['error']}")
    c = result.counts
    click.echo(f"\nrows: {c.get('ok', 0)} ok, {c.get('failed', 0)} failed ({result.rows_added} new) "
               f"in {result.wall_time_s:.1f} s; encoder calls: "
               + ", ".join(f"{m} {v['encoder_calls']}" for m, v in result.counters.items()))
    click.echo(f"results:  {result.run_dir / 'results.sqlite'}")
    click.echo(f"manifest: {result.run_dir / 'manifest.json'}")
    if not no_report:
        from sambench.report import write_report  # lazy: matplotlib only when the report is written
        from sambench.store import as_loaded  # lazy: pandas stays out of --help

        written = write_report([result.run_dir], result.run_dir / "report", summary=table, objects=objects,
                               loaded=as_loaded(result.run_dir, result.rows, result.manifest))
        shown = [p for k, p in sorted(written.items()) if Path(p).suffix in (".csv", ".md", ".png", ".html")]
        click.echo("report:   " + "\n          ".join(str(p) for p in shown))


@main.command("list")
@click.argument("what", type=click.Choice(["models", "protocols", "datasets"]))
def list_cmd(what: str) -> None:
    """List the model cards, protocol cards or datasets sambench knows."""
    if what == "datasets":
        from sambench.datasets import list_datasets  # lazy: the dataset loaders load OpenCV

        for name, desc in sorted(list_datasets().items()):
            click.echo(f"{name:24s} {desc}")
        return
    for name, path in sorted(list_cards(what).items()):
        try:
            card = load_model_card(name) if what == "models" else load_protocol_card(name)
        except SambenchError as exc:
            click.echo(f"{name:24s} [invalid] {exc}")
            continue
        if what == "models":
            ck = f" checkpoint: {card.checkpoint.file}" if card.checkpoint else ""
            tags = f"  [{', '.join(card.tags)}]" if card.tags else ""
            click.echo(f"{name:24s} adapter: {card.adapter}{ck}{tags}  ({path})")
        else:
            if card.replayed:  # levels and draws are the file's: not read to list the cards
                click.echo(f"{name:24s} v{card.version}  replays {card.replay['file']}  ({path})")
                continue
            lv = ", ".join(s.level for s in card.settings)
            click.echo(f"{name:24s} v{card.version}  levels: {lv}  draws: {card.draws}  ({path})")
    if what == "models":
        click.echo("\nfamily names (default variant):")
        for family in FAMILY_DEFAULTS:
            click.echo(f"{family:24s} -> {resolve_model_name(family)}")
        click.echo(f"{HF_PREFIX + '<hub id or dir>':24s} -> a transformers checkpoint, no card (docs/models.md)")


@main.group("prompts")
def prompts_group() -> None:
    """Inspect the realised prompts of a protocol."""


@prompts_group.command("export")
@click.option("--protocol", "-p", required=True)
@dataset_options(default=("grabcut-sample",), multiple=False)
@click.option("--levels", default=None)
@click.option("--draws", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--limit", type=int, default=None)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="JSON file to write.")
def prompts_export_cmd(protocol, datasets, levels, draws, seed, limit, out) -> None:
    """Write every realised prompt of PROTOCOL on DATASET as JSON, with its hash."""
    from sambench.execution.export import export_prompts  # lazy: the dataset loaders load OpenCV

    doc = export_prompts(protocol, datasets[0], levels=_split((levels,)) if levels else None, draws=draws,
                         seed=seed, limit=limit)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    click.echo(f"{len(doc['prompts'])} prompts ({doc['failed']} failed) -> {out}  prompt_hash {doc['prompt_hash']}")


def entry() -> None:
    """The ``sambench`` console script: CPU malloc tuning for model runs (sambench/cli/perf.py), then click."""
    reexec_with_tuned_malloc()
    main()


if __name__ == "__main__":  # pragma: no cover
    entry()
