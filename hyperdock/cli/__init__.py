"""The command line: ``hyperdock`` and the original ``hyperdock-supervisor`` /
``hyperdock-worker`` entry points.

A command parses its options, calls the library and prints: the commands that run a
search are in :mod:`~hyperdock.cli.search`, those that read a store in
:mod:`~hyperdock.cli.read`, those that act on one in :mod:`~hyperdock.cli.manage`, the
original command lines in :mod:`~hyperdock.cli.legacy`, and what they print in
:mod:`~hyperdock.cli.output`.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from hyperdock import __version__
from hyperdock.cli.artifacts import artifacts
from hyperdock.cli.common import Group
from hyperdock.cli.legacy import (
    LEGACY_CONFIG_DIR,
    _legacy_supervisor,
    _legacy_worker,
    legacy_supervisor_main,
    legacy_worker_main,
)
from hyperdock.cli.manage import cancel, completion, dashboard, delete, enqueue
from hyperdock.cli.read import best, export, logs, status, workers
from hyperdock.cli.search import run, supervisor, worker
from hyperdock.cli.trials import trials
from hyperdock.storage import redact_url
from hyperdock.targets import parse_env


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hyperdock")
def cli() -> None:
    """Hyperdock: hyperparameter search for anything that runs in a Docker image or as a
    command. `hyperdock run` is all you need on one machine."""


for _command in (
    run,
    supervisor,
    worker,
    status,
    trials,
    best,
    export,
    workers,
    dashboard,
    cancel,
    delete,
    enqueue,
    logs,
    artifacts,
    completion,
):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``hyperdock``."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="hyperdock")


__all__ = [
    "LEGACY_CONFIG_DIR",
    "_legacy_supervisor",
    "_legacy_worker",
    "artifacts",
    "best",
    "cancel",
    "cli",
    "completion",
    "dashboard",
    "delete",
    "enqueue",
    "export",
    "legacy_supervisor_main",
    "legacy_worker_main",
    "logs",
    "main",
    "parse_env",
    "redact_url",
    "run",
    "status",
    "supervisor",
    "trials",
    "worker",
    "workers",
]
