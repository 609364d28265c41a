"""What the commands share: logging, the store, errors as one line, signals, the
command that resumes an experiment."""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

import click

from hyperdock.errors import ConfigError, ExperimentNotFound, HyperdockError
from hyperdock.experiment import Experiment as ApiExperiment
from hyperdock.experiment import ExperimentSettings
from hyperdock.resources import Resources
from hyperdock.storage import Store, open_store
from hyperdock.trial import Experiment


def setup_logging(level: str) -> None:
    """Log at ``level`` (``--loglevel``) to standard error."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def opened_store(url: str | None, *, create: bool = True) -> Store:
    """Open the store; read commands pass ``create=False`` so they never make one."""
    return open_store(url, create=create)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to standard error and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Prints HyperdockErrors and bad options as one line (no traceback, no usage
    block) and exits non-zero."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            fail(f"{exc.format_message()} (see {where} --help)", exc.exit_code)
        except (ConfigError, ExperimentNotFound) as exc:
            # An unknown experiment or trial is a usage error, like a bad option.
            fail(str(exc), 2)
        except HyperdockError as exc:
            fail(str(exc))


@contextmanager
def signals(handler: Callable[[], None]) -> Iterator[None]:
    """Call ``handler`` on the first SIGINT/SIGTERM; exit hard on the second."""
    count = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal count
        count += 1
        if count > 1:
            sys.stderr.write(
                "\nsecond interrupt: exiting now; running trials return to "
                "the queue when their lease times out\n"
            )
            os._exit(130)
        handler()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def take_settings(options: dict[str, Any]) -> ExperimentSettings:
    """Pop the experiment's settings out of a command's keyword arguments."""
    names = [f.name for f in dataclasses.fields(ExperimentSettings)]
    given = {
        key: options.pop(option, None)
        for key, option in (
            ("cpus", "cpus_per_trial"),
            ("memory", "memory_per_trial"),
            ("gpus", "gpus_per_trial"),
            ("trials_per_gpu", "trials_per_gpu"),
            ("shm_size", "shm_size"),
        )
    }
    resources = Resources.build(**given) if any(v is not None for v in given.values()) else None
    return ExperimentSettings(
        **{n: options.pop(n) for n in names if n in options}, resources=resources
    )


def open_settings(store: Store, settings: ExperimentSettings) -> tuple[Experiment, bool]:
    """Create or resume the experiment: only what the user gave is passed on, so a
    resume keeps every stored setting."""
    opened = ApiExperiment.from_settings(settings, store=store)
    return opened.record, opened.created


#: Options of `run` / `supervisor` that are not stored with the experiment: a command
#: that resumes exactly repeats the ones the user gave.
UNSTORED = (
    "store",
    "mongo",
    "workers",
    "results",
    "data",
    "worker_env",
    "gpus",
    "docker_runtime",
    "network",
    "pull",
    "pids_limit",
    "heartbeat",
    "poll",
    "notify",
    "quiet",
    "loglevel",
)


def resume_command(name: str) -> str:
    """The command line that resumes experiment ``name`` as the current command ran it:
    its name plus every option given that the store does not keep."""
    ctx = click.get_current_context()
    words = [*shlex.split(ctx.command_path), "--name", name]
    for param in ctx.command.params:
        if param.name not in UNSTORED or not isinstance(param, click.Option):
            continue
        source = ctx.get_parameter_source(param.name)
        value = ctx.params.get(param.name)
        if source is not click.core.ParameterSource.COMMANDLINE or value in (None, ()):
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            words.append(flag)
            continue
        for item in value if param.multiple else [value]:
            words += [flag, str(item)]
    return shlex.join(words)
