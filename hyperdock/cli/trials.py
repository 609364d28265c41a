"""The ``trials`` command: one page of an experiment's trials (newest first), or all
of them streamed (``--all``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence

import click

from hyperdock.cli.common import opened_store
from hyperdock.cli.options import NAME_HELP, store_option
from hyperdock.cli.output import best_marker_legend, fitted_trials_table, trials_table
from hyperdock.errors import ConfigError, HyperdockError
from hyperdock.export import write_json_array
from hyperdock.objectives import Objectives, varying_params
from hyperdock.results import best_trial_ids, trial_json
from hyperdock.space import Space
from hyperdock.storage import Store, resolve_experiment
from hyperdock.trial import Experiment, Trial, TrialState

#: Trials per page by default, and per table block with ``--all``.
PAGE = 50


def _chunks(trials: Iterator[Trial], size: int) -> Iterator[list[Trial]]:
    chunk: list[Trial] = []
    for t in trials:
        chunk.append(t)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _table(
    exp: Experiment, rows: Sequence[Trial], best_ids: set[int], wide: bool, columns: str | None
) -> str:
    try:
        space: Space | None = Space.from_json(exp.space)
    except HyperdockError:
        space = None
    varying, every_key = varying_params(space, rows)
    if columns is not None:
        keys = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [k for k in keys if k not in every_key]
        if unknown or not keys:
            raise ConfigError(
                f"--columns: no parameter {', '.join(unknown) or '(none given)'} in experiment "
                f"{exp.name}; its parameters are: {', '.join(every_key) or '(none)'}"
            )
        return trials_table(rows, best_ids, keys, split=True)
    if wide:
        return trials_table(rows, best_ids, every_key, split=True)
    return fitted_trials_table(rows, best_ids, varying)


def _stream_all(
    st: Store,
    exp: Experiment,
    wanted: list[TrialState] | None,
    best_ids: set[int],
    as_json: bool,
    wide: bool,
    columns: str | None,
) -> bool:
    """Print every trial (oldest first) a batch at a time; True when a best trial was
    among them (the JSON list: always)."""
    stream = st.iter_trials(exp.id, states=wanted)
    if as_json:
        write_json_array((trial_json(t) for t in stream), sys.stdout.write)
        sys.stdout.write("\n")
        return True  # an empty list is printed too
    shown = marked = False
    for chunk in _chunks(stream, 1000):
        text = _table(exp, chunk, best_ids, wide, columns)
        # One table per block of 1000 trials; the header only above the first.
        click.echo(text if not shown else "\n".join(text.splitlines()[2:]))
        shown = True
        marked = marked or bool(best_ids & {t.id for t in chunk})
    if not shown:
        _none(exp, tuple(s.value for s in wanted or ()), False)
    return marked


@click.command(epilog=NAME_HELP)
@click.argument("name", required=False)
@store_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in TrialState]),
    help="Only these states.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=PAGE, show_default=True, help="Trials shown."
)
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, help="Skip this many newest trials first."
)
@click.option("--all", "show_all", is_flag=True, help="Every trial, oldest first, streamed.")
@click.option("--wide", is_flag=True, help="Every parameter, constants too, one column each.")
@click.option(
    "--columns",
    metavar="A,B",
    default=None,
    help="Only these parameters, one column each (dotted names for nested ones).",
)
@click.option("--json", "as_json", is_flag=True, help="Every field; attempt is 1-based.")
def trials(
    name: str | None,
    store: str | None,
    states: tuple[str, ...],
    limit: int,
    offset: int,
    show_all: bool,
    wide: bool,
    columns: str | None,
    as_json: bool,
) -> None:
    """List the trials of experiment NAME: the newest 50 (--limit, --offset for older
    pages), or every trial with --all.

    The table shows the parameters that differ between the trials shown (constants are
    left out), one column each when they fit the terminal, else together in one PARAMS
    column. The best trial is marked with *.
    """
    wanted = [TrialState(s) for s in states] or None
    with opened_store(store, create=False) as st:
        exp = resolve_experiment(st, name)
        best_ids = best_trial_ids(st, exp)
        if show_all:
            if _stream_all(st, exp, wanted, best_ids, as_json, wide, columns) and not as_json:
                _legend(exp, best_ids)
            return
        rows = st.list_trials_page(exp.id, limit=limit, offset=offset, states=wanted)
        total = sum(n for s, n in st.count_trials(exp.id).items() if wanted is None or s in wanted)
    if as_json:
        click.echo(json.dumps([trial_json(t) for t in rows], indent=2, sort_keys=True))
        return
    if not rows:
        _none(exp, states, as_json, offset)
        return
    click.echo(_table(exp, rows, best_ids, wide, columns))
    if len(rows) < total:
        first, last = offset + 1, offset + len(rows)
        more = f"; --offset {last} for older ones" if last < total else ""
        click.echo(f"Trials {first}-{last} of {total}, newest first{more}; --all for every one.")
    _legend(exp, best_ids, rows)


def _none(exp: Experiment, states: tuple[str, ...], as_json: bool, offset: int = 0) -> None:
    if as_json:
        click.echo("[]")
        return
    where = " in these states" if states else ""
    past = f" past the first {offset}" if offset else ""
    click.echo(f"No trials{where}{past} in experiment {exp.name}.")


def _legend(exp: Experiment, best_ids: set[int], rows: Sequence[Trial] | None = None) -> None:
    if best_ids and (rows is None or best_ids & {t.id for t in rows}):
        click.echo(best_marker_legend(Objectives.from_meta(exp.meta)))
