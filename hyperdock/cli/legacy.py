"""The original entry points: ``hyperdock-supervisor`` and ``hyperdock-worker``."""

from __future__ import annotations

import os
from typing import Any

import click

from hyperdock.cli.common import fail, setup_logging
from hyperdock.cli.options import max_failures_option, worker_options
from hyperdock.cli.search import run_supervisor, run_worker
from hyperdock.errors import ConfigError, HyperdockError
from hyperdock.experiment import ExperimentSettings
from hyperdock.samplers import SAMPLERS
from hyperdock.supervisor import DEFAULT_MAX_RETRIES, DEFAULT_MAX_TRIALS

#: Where the original supervisor image mounted config modules.
LEGACY_CONFIG_DIR = "/app/hyperdock/config"
#: The original worker's store when neither --mongodb nor MONGO_URL is given.
DEFAULT_MONGO_URL = "mongo://localhost:27017/hyperdock"


def _legacy_store(store: str | None, mongo: str | None) -> str | None:
    """--store / HYPERDOCK_STORE win; then the original --mongo / --mongodb / MONGO_URL."""
    return store or os.environ.get("HYPERDOCK_STORE") or mongo


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--name", required=True, help="Unique name of the search.")
@click.option("--image", help="The target image.")
@click.option("--command", help="Or a local command as the target.")
@click.option(
    "--config_module",
    "--config-module",
    "config_module",
    required=False,
    help="Config module (file in the config folder defining SPACE), or a path.",
)
@click.option(
    "--trials",
    "retries",
    type=int,
    default=None,
    help="Retries in case of errors in the target image container "
    f"[default: {DEFAULT_MAX_RETRIES}]. Not the budget: that is --max-trials.",
)
@click.option("--mongo", default=None, help="mongo://host:port/db/collection or mongodb://…")
@click.option("--store", default=None, help="Any store URL (overrides --mongo).")
@click.option(
    "--max-trials",
    type=int,
    default=None,
    help=f"Trials to run (default: whole grid, else {DEFAULT_MAX_TRIALS}).",
)
@click.option(
    "--sampler",
    type=click.Choice(list(SAMPLERS)),
    default=None,
    help="Default: grid for a grid-only space, else tpe (as v0.1).",
)
@click.option("--seed", type=int, default=None)
@max_failures_option
@click.option("--timeout", type=float, default=None, help="Seconds per attempt.")
@click.option("--priority", type=int, default=None, help="[default: 0]")
@click.option(
    "--config-dir",
    "config_dirs",
    multiple=True,
    envvar="HYPERDOCK_CONFIG_DIR",
    help=f"Config folders (default {LEGACY_CONFIG_DIR}, ./config, .).",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--loglevel", default="info", show_default=True)
def _legacy_supervisor(
    name: str,
    image: str | None,
    command: str | None,
    config_module: str | None,
    retries: int | None,
    mongo: str | None,
    store: str | None,
    max_trials: int | None,
    sampler: str | None,
    seed: int | None,
    max_failures: int | None,
    timeout: float | None,
    priority: int | None,
    config_dirs: tuple[str, ...],
    as_json: bool,
    loglevel: str,
) -> None:
    """The original supervisor command line (v0.1)."""
    setup_logging(loglevel)
    dirs = [*config_dirs, LEGACY_CONFIG_DIR, "config"]
    try:
        opts = ExperimentSettings(
            config=config_module, image=image, command=command, name=name,
            max_trials=max_trials, sampler=sampler, seed=seed, retries=retries,
            timeout=timeout, priority=priority, config_dirs=dirs, max_failures=max_failures,
        )  # fmt: skip
        run_supervisor(_legacy_store(store, mongo), opts, 1.0, as_json, legacy=True)
    except ConfigError as exc:
        fail(str(exc), 2)
    except HyperdockError as exc:
        fail(str(exc))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--mongodb",
    "mongo",
    default=None,
    envvar="MONGO_URL",
    help=f"Store URL [env MONGO_URL, default {DEFAULT_MONGO_URL}].",
)
@click.option("--store", default=None, help="Any store URL (overrides --mongodb).")
@worker_options
def _legacy_worker(mongo: str | None, store: str | None, **options: Any) -> None:
    """The original worker (v0.1 env vars, v0.4 flags)."""
    setup_logging(options.pop("loglevel"))
    try:
        run_worker(_legacy_store(store, mongo) or DEFAULT_MONGO_URL, **options)
    except ConfigError as exc:
        fail(str(exc), 2)
    except HyperdockError as exc:
        fail(str(exc))


def legacy_supervisor_main() -> None:
    """Entry point of ``hyperdock-supervisor``."""
    _legacy_supervisor.main(prog_name="hyperdock-supervisor")


def legacy_worker_main() -> None:
    """Entry point of ``hyperdock-worker``."""
    _legacy_worker.main(prog_name="hyperdock-worker")
