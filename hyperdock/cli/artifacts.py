"""``hyperdock artifacts``: list and fetch the files an experiment's trials stored in
its artifact store."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import click

from hyperdock.cli.common import opened_store
from hyperdock.cli.options import NAME_HELP, store_option
from hyperdock.errors import ConfigError
from hyperdock.storage import resolve_experiment


@click.command(epilog=NAME_HELP)
@click.argument("name", required=False)
@click.argument("trial", type=int, required=False)
@click.option(
    "--get",
    "path",
    metavar="PATH",
    help="Fetch this file of TRIAL: a path as listed (2/out/model.pt), or without the "
    "attempt (out/model.pt: the last attempt's).",
)
@click.option(
    "-o",
    "--output",
    metavar="DEST",
    default=None,
    help="Where --get writes the file (a file or a folder; -: standard output) "
    "[default: its name, here].",
)
@click.option(
    "--artifacts",
    default=None,
    metavar="URL",
    help="The artifact store, when the workers used their own --artifacts.",
)
@click.option("--artifacts-endpoint", default=None, metavar="URL", help="Its S3 endpoint.")
@store_option
def artifacts(
    name: str | None,
    trial: int | None,
    path: str | None,
    output: str | None,
    artifacts: str | None,
    artifacts_endpoint: str | None,
    store: str | None,
) -> None:
    """List the stored files of experiment NAME (or of its trial TRIAL): path relative
    to the trial, attempt and size; or fetch one with --get PATH."""
    from hyperdock.artifacts.access import experiment_store, list_artifacts, open_artifact

    if path is not None and trial is None:
        raise ConfigError("--get needs the TRIAL: hyperdock artifacts NAME TRIAL --get PATH")
    with opened_store(store, create=False) as st:
        exp = resolve_experiment(st, name)
        if trial is not None:
            st.get_trial(trial)  # an unknown trial is an error, not an empty list
        found = experiment_store(exp, artifacts, artifacts_endpoint)
        if path is None:
            rows = list_artifacts(found, exp.name, trial)
            if not rows:
                what = f"trial {trial}" if trial is not None else f"experiment {exp.name}"
                click.echo(f"No stored files for {what} in {found.describe()}.", err=True)
                return
            click.echo(f"{'TRIAL':>6}  {'ATTEMPT':>7}  {'SIZE':>12}  PATH")
            for row in rows:
                attempt = str(row.attempt) if row.attempt is not None else "-"
                click.echo(f"{row.trial_id:>6}  {attempt:>7}  {row.size:>12}  {row.path}")
            return
        assert trial is not None
        key, size, chunks = open_artifact(found, exp.name, trial, path)
        if output == "-":
            out = sys.stdout.buffer
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            return
        dest = Path(output or ".")
        if dest.is_dir():
            dest = dest / key.rsplit("/", 1)[-1]
        # Into a temporary file first: an interrupted fetch leaves no half file behind.
        try:
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        except OSError as exc:
            raise ConfigError(f"cannot write {dest}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
            os.replace(tmp, dest)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise ConfigError(f"cannot write {dest}: {exc.strerror or exc}") from None
            raise
        click.echo(f"Wrote {dest} ({size} bytes).", err=True)
