"""The commands that read a store: ``status``, ``trials``, ``best``, ``export``,
``workers`` and ``logs``."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import click

from hyperdock import logs as logfiles
from hyperdock.cli.common import opened_store
from hyperdock.cli.options import NAME_HELP, store_option
from hyperdock.cli.output import (
    log_json,
    print_best,
    status_table,
    workers_table,
)
from hyperdock.errors import ConfigError
from hyperdock.export import FORMATS, write_export
from hyperdock.results import IMPORTANCE_SAMPLE, status_json, summarize
from hyperdock.storage import resolve_experiment, resolve_trial
from hyperdock.trial import TrialState


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True)
def status(store: str | None, as_json: bool) -> None:
    """List experiments: state, progress, pruned and failed trials, best loss, age and
    duration (from creation to the last trial's end, or until now while running)."""
    now = time.time()
    with opened_store(store, create=False) as st:
        exps = st.list_experiments()
        data = [status_json(st, e, now) for e in exps]
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if not data:
        click.echo("No experiments yet. Start one with: hyperdock run CONFIG --command '…'")
        return
    click.echo(status_table(data, now))


@click.command(epilog=NAME_HELP)
@click.argument("name", required=False)
@store_option
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--importances",
    "with_importances",
    is_flag=True,
    help=f"Also parameter importances (on at most {IMPORTANCE_SAMPLE} completed trials: "
    "the best and a fixed random sample of the rest).",
)
def best(name: str | None, store: str | None, as_json: bool, with_importances: bool) -> None:
    """Show the best trial of experiment NAME."""
    with opened_store(store, create=False) as st:
        exp = resolve_experiment(st, name)
        ok = print_best(st, exp, as_json, summarize(st, exp, importances_too=with_importances))
    sys.exit(0 if ok else 1)


@click.command(epilog=NAME_HELP)
@click.argument("name", required=False)
@store_option
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="csv", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="File to write (default: standard output).",
)
def export(
    name: str | None, store: str | None, fmt: str, as_json: bool, output: str | None
) -> None:
    """Export every trial of experiment NAME as CSV, JSON or JSON lines.

    CSV: one row per trial, times in ISO 8601 UTC (2026-12-02T05:45:30Z), attempt
    1-based, parameters in params.* columns, the target's extra loss.json keys in data.*
    columns. JSON: the trials as in trials --json (Unix seconds, attempt 1-based).
    JSON lines (jsonl): one such trial per line. The trials are streamed: memory stays
    the same however many there are.
    """
    if as_json:
        fmt = "json"
    with opened_store(store, create=False) as st:
        exp = resolve_experiment(st, name)
        if output:
            with Path(output).open("w", encoding="utf-8", newline="") as out:
                write_export(st, exp, fmt, out.write)
        else:
            write_export(st, exp, fmt, sys.stdout.write)


@click.command()
@store_option
@click.option("--all", "show_all", is_flag=True, help="Also workers that stopped heartbeating.")
@click.option(
    "--max-age",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds without a heartbeat after which a worker counts as gone.",
)
@click.option("--json", "as_json", is_flag=True)
def workers(store: str | None, show_all: bool, max_age: float, as_json: bool) -> None:
    """List workers: host, parallelism, last heartbeat, running trials, and status (why
    a paused worker runs nothing now: Docker unreachable, results folder not writable)."""
    with opened_store(store, create=False) as st:
        found = st.list_workers(max_age=None if show_all else max_age)
    now = time.time()
    if as_json:
        click.echo(json.dumps([w.to_json(now) for w in found], indent=2))
        return
    if not found:
        click.echo("No live workers. Start one with: hyperdock worker --store URL")
        return
    click.echo(workers_table(found, now))


def _write_out(text: str) -> None:
    """Write a piece of a log to standard output at once (``logs --follow`` is live)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def _note(message: str) -> None:
    """Say something about the log (not part of it) on standard error."""
    click.echo(message, err=True)


@click.command()
@click.argument("ref", metavar="TRIAL_ID|NAME")
@click.argument("number", type=int, required=False)
@store_option
@click.option(
    "--results",
    envvar="HYPERDOCK_RESULT_DIR",
    default="results",
    show_default=True,
    type=click.Path(),
    help="Folder of trial folders, to find running trials [env HYPERDOCK_RESULT_DIR].",
)
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing new output until the trial is finished."
)
@click.option("--lines", "-n", type=int, default=None, help="Only the last N lines.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='{"trial", "attempt" (1-based), "state", "file" (null: from the store), "log"}',
)
def logs(
    ref: str,
    number: int | None,
    store: str | None,
    results: str,
    follow: bool,
    lines: int | None,
    as_json: bool,
) -> None:
    """Print the output (log.txt or docker_log.txt) of trial TRIAL_ID.

    Or of a trial of experiment NAME (a unique start of a name, or latest for the
    newest): trial NUMBER (the # column of hyperdock trials), by default the trial that
    started last. The output of a running trial is there as it is printed; --follow
    shows it live. Where the trial folder is not on this host, the store's copy is
    printed (its first and last part, with a marker where bytes were cut).
    """
    if follow and as_json:
        raise ConfigError("--follow and --json do not go together")
    with opened_store(store, create=False) as st:
        trial = resolve_trial(st, ref, number)
        if follow:
            with contextlib.suppress(KeyboardInterrupt):
                logfiles.follow(st, trial.id, results, lines, write=_write_out, note=_note)
            return
        path = logfiles.log_file(st, trial, results)
        if path is None:  # not on this host: the store's copy
            stored = logfiles.stored_log(st, trial)
            if stored is None:
                raise logfiles.missing_log(trial, results)
            text = logfiles.last_lines(stored.text(), lines)
            if as_json:
                click.echo(json.dumps(log_json(trial, None, text, stored.attempt), indent=2))
            elif text:
                _write_out(text)
            elif trial.state is TrialState.RUNNING:
                _note(logfiles.no_output_yet(trial))
            return
        if not as_json:
            if (
                not logfiles.LogTail(path, lines, _write_out).printed
                and trial.state is TrialState.RUNNING
            ):
                _note(logfiles.no_output_yet(trial))
            return
        text = logfiles.read_log(path, lines)
    click.echo(json.dumps(log_json(trial, path, text), indent=2, sort_keys=True))
