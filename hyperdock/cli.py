"""The command line: ``hyperdock`` and the original ``hyperdock-supervisor`` /
``hyperdock-worker`` entry points."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click

from hyperdock import __version__
from hyperdock import logs as logfiles
from hyperdock.display import ProgressLine, fmt_loss
from hyperdock.errors import ConfigError, ExperimentNotFound, HyperdockError, StoreNotFound
from hyperdock.experiment import Experiment as ApiExperiment
from hyperdock.experiment import (
    ExperimentSettings,
    best_json,
    best_trial_ids,
    experiment_duration,
    export_text,
    parse_env,
    summarize,
    trial_json,
)
from hyperdock.runtimes.base import DEFAULT_PIDS_LIMIT
from hyperdock.samplers import SAMPLERS
from hyperdock.space import Space
from hyperdock.storage import (
    Store,
    open_store,
    redact_url,
    resolve_experiment,
    resolve_trial,
)
from hyperdock.study import DIRECTIONS, Objectives, flat_params, varying_params
from hyperdock.supervisor import (
    DEFAULT_LEASE_TIMEOUT,
    DEFAULT_MAX_FAILURES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_TRIALS,
    budget_of,
)
from hyperdock.trial import Experiment, ExperimentState, Trial, TrialState

log = logging.getLogger("hyperdock")

#: Where the original supervisor image mounted config modules.
LEGACY_CONFIG_DIR = "/app/hyperdock/config"
DEFAULT_MONGO_URL = "mongo://localhost:27017/hyperdock"


# -- helpers ---------------------------------------------------------------------------
def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _store(url: str | None, *, create: bool = True) -> Store:
    """Open the store; read commands pass ``create=False`` so they never make one."""
    return open_store(url, create=create)


_fmt_loss = fmt_loss


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_duration(seconds: float | None) -> str:
    """``0.8s``, ``42s``, ``3m05s``, ``2h04m``, ``3d05h``; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    n = round(seconds)
    if n < 60:
        return f"{n}s"
    if n < 3600:
        return f"{n // 60}m{n % 60:02d}s"
    if n < 86400:
        return f"{n // 3600}h{n % 3600 // 60:02d}m"
    return f"{n // 86400}d{n % 86400 // 3600:02d}h"


def _fmt_iso(ts: float | None) -> str:
    """``2026-12-02T05:45:30Z`` (UTC, whole seconds); empty for None."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt_ago(ts: float | None, now: float | None = None) -> str:
    """How long ago ``ts`` was (``12s ago``, ``3m05s ago``); a date beyond a week."""
    if ts is None:
        return "-"
    age = (time.time() if now is None else now) - ts
    if age > 7 * 86400:
        return _fmt_time(ts)
    return f"{_fmt_duration(age)} ago"


def _printable(text: str) -> str:
    """``text`` with control and format characters shown as escapes: stored strings
    (names, parameters, errors a target wrote) must not move the cursor, recolour or
    retitle the user's terminal."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """An aligned text table; the columns numbered in ``right`` are right-aligned. Cells
    are shown with escapes for control characters (see :func:`_printable`)."""
    cells = [[_printable(str(c)) for c in headers]] + [
        [_printable(str(c)) for c in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    lines = [line(r) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


_trial_json = trial_json
_best_json = best_json


def _summary(store: Store, exp: Experiment, *, importances_too: bool = True) -> dict[str, Any]:
    return summarize(store, exp, importances_too=importances_too)


def _print_best(
    store: Store, exp: Experiment, as_json: bool, summary: dict[str, Any] | None = None
) -> bool:
    if summary is None:
        summary = _summary(store, exp)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return summary["best"] is not None
    counts = ", ".join(f"{n} {s}" for s, n in summary["trials"].items() if n)
    click.echo(f"Experiment {exp.name}: {exp.state.value} ({counts or 'no trials'})")
    if exp.state is ExperimentState.FAILED:
        _print_stop(summary)
    best = summary["best"]
    if best is None and exp.state is ExperimentState.FAILED:
        return False
    if best is None:
        click.echo("No trial completed, so there is no best result yet.")
        failed = store.list_trials(exp.id, states=[TrialState.FAILED], limit=1)
        if failed:
            click.echo(f"First failure (trial {failed[0].id}): {failed[0].error}")
        return False
    front = summary.get("pareto_front")
    if front is not None:
        names = [o["name"] for o in summary["objectives"]]
        directions = ", ".join(f"{o['name']} ({o['direction']})" for o in summary["objectives"])
        click.echo(f"Pareto front: {len(front)} trial(s) no other trial beats on {directions}")
        rows = [
            [t["trial"], *(_fmt_loss(t["values"].get(n)) for n in names), _params_line(t)]
            for t in front
        ]
        click.echo(_table(["trial", *names, "params"], rows))
    else:
        click.echo(f"Best loss: {_fmt_loss(best['loss'])} (trial {best['trial']})")
        click.echo("Best parameters:")
        click.echo(json.dumps(best["params"], indent=2, sort_keys=True))
        if best["folder"]:
            click.echo(f"Results: {best['folder']}")
    if summary["importances"]:
        click.echo("Parameter importances:")
        for name, value in summary["importances"].items():
            click.echo(f"  {name:<24} {value:6.3f}  {'#' * round(value * 30)}")
    return True


def _print_stop(summary: dict[str, Any]) -> None:
    """Why a failed experiment stopped, and its first error (a few lines)."""
    click.echo(f"Stopped: {summary.get('stop_reason') or 'failed'}")
    first = summary.get("first_error")
    if not first:
        return
    code = first.get("exit_code")
    where = f"trial {first.get('trial')}" + (f", exit code {code}" if code is not None else "")
    lines = str(first.get("error") or "").splitlines() or ["(no error message)"]
    click.echo(f"First error ({where}): {lines[0]}")
    for line in lines[1:]:
        click.echo(f"  {line}")


def _check_notify(urls: Sequence[str]) -> None:
    """Refuse --notify values that are not http(s) URLs, before the run starts."""
    from hyperdock.notify import check_url

    for url in urls:
        problem = check_url(url)
        if problem:
            raise ConfigError(problem)


def _finish(store: Store, exp: Experiment, as_json: bool, notify: Sequence[str]) -> NoReturn:
    """Print the result of a run, POST it to the --notify URLs, exit 0 (a trial
    completed) or 1."""
    from hyperdock.notify import event_of, notify_all

    exp = store.get_experiment(exp.id)
    summary = _summary(store, exp)
    ok = _print_best(store, exp, as_json, summary) and exp.state is not ExperimentState.FAILED
    if notify:
        notify_all(notify, summary | {"event": event_of(summary)})
    sys.exit(0 if ok else 1)


def _notify_error(store: Store, exp: Experiment, notify: Sequence[str], exc: Exception) -> None:
    """POST a "failed" summary to the --notify URLs when a run dies with an error."""
    from hyperdock.notify import notify_all

    if not notify:
        return
    try:
        summary = _summary(store, store.get_experiment(exp.id), importances_too=False)
    except Exception:  # the store may be what failed
        summary = {"experiment": exp.name, "state": exp.state.value, "trials": {}, "best": None}
    notify_all(notify, summary | {"event": "failed", "error": str(exc) or type(exc).__name__})


def _params_line(best: dict[str, Any]) -> str:
    return _short(json.dumps(best["params"], sort_keys=True), 60)


@contextmanager
def _signals(handler: Callable[[], None]) -> Iterator[None]:
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


def _worker_runtime_factory(
    data_dir: str | None,
    docker_runtime: str | None,
    privileged: bool,
    network: str | None,
    pull: str,
    pids_limit: int,
) -> Callable[[str], Any]:
    from hyperdock.worker import default_runtime_factory

    docker_options: dict[str, Any] = {
        "privileged": privileged,
        "pull": pull,
        "pids_limit": pids_limit,
    }
    if docker_runtime:
        docker_options["docker_runtime"] = docker_runtime
    if network:
        docker_options["network"] = network
    return default_runtime_factory(
        data_dir=str(Path(data_dir).resolve()) if data_dir else None,
        docker_options=docker_options,
    )


def _opened_line(store: Store, supervisor: Any, created: bool) -> str:
    """``Created experiment X (…)`` or ``Resuming experiment X: 2/6 done (…)``."""
    exp = supervisor.experiment
    about = (
        f"{exp.target.describe()}, sampler {exp.sampler}, seed {exp.seed}, store {store.describe()}"
    )
    budget = supervisor.budget
    if created:
        size = f"{budget} trials" if budget is not None else "no trial limit"
        return f"Created experiment {exp.name} ({size}, {about})"
    done = supervisor.progress().finished
    return f"Resuming experiment {exp.name}: {done}/{budget if budget else '?'} done ({about})"


#: Options of `run` / `supervisor` that are not stored with the experiment: a command
#: that resumes exactly repeats the ones the user gave.
_UNSTORED = (
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


def _resume_command(name: str) -> str:
    """The command line that resumes experiment ``name`` as the current command ran it:
    its name plus every option given that the store does not keep."""
    ctx = click.get_current_context()
    words = [*shlex.split(ctx.command_path), "--name", name]
    for param in ctx.command.params:
        if param.name not in _UNSTORED or not isinstance(param, click.Option):
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


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _take_settings(options: dict[str, Any]) -> ExperimentSettings:
    """Pop the experiment's settings out of a command's keyword arguments."""
    names = [f.name for f in dataclasses.fields(ExperimentSettings)]
    return ExperimentSettings(**{n: options.pop(n) for n in names if n in options})


def _open_experiment(store: Store, settings: ExperimentSettings) -> tuple[Experiment, bool]:
    """Create or resume the experiment: only what the user gave is passed on, so a
    resume keeps every stored setting."""
    opened = ApiExperiment.from_settings(settings, store=store)
    return opened.record, opened.created


def _write_out(text: str) -> None:
    """Write a piece of a log to standard output at once (``logs --follow`` is live)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def _note(message: str) -> None:
    click.echo(message, err=True)


class _Group(click.Group):
    """Prints HyperdockErrors and bad options as one line (no traceback, no usage
    block) and exits non-zero."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            _fail(f"{exc.format_message()} (see {where} --help)", exc.exit_code)
        except (ConfigError, ExperimentNotFound) as exc:
            # An unknown experiment or trial is a usage error, like a bad option.
            _fail(str(exc), 2)
        except HyperdockError as exc:
            _fail(str(exc))


# -- shared options ---------------------------------------------------------------------
def _store_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--store",
        envvar="HYPERDOCK_STORE",
        default=None,
        metavar="URL",
        help="Store URL: sqlite:///path.db (default sqlite:///./hyperdock.db), "
        "postgresql://…, mongodb://… [env HYPERDOCK_STORE]",
    )(f)


def _notify_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--notify",
        "notify",
        multiple=True,
        metavar="URL",
        help="POST a JSON summary here when the experiment finishes, is cancelled or "
        "fails (repeat for several; Slack webhooks get a Slack message). Not stored.",
    )(f)


_max_failures_option = click.option(
    "--max-failures",
    type=int,
    default=None,
    help=f"Stop the experiment as failed after this many trials in a row failed "
    f"(default {DEFAULT_MAX_FAILURES}; 0: never). Stored with the experiment.",
)


def _experiment_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--image", help="Docker image to tune (the target)."),
        click.option(
            "--command",
            "command",
            metavar="CMD",
            help="Local command to tune, e.g. 'python train.py' (no shell).",
        ),
        click.option("--name", help="Experiment name; an existing one is resumed."),
        click.option(
            "--max-trials",
            type=int,
            default=None,
            help=f"Budget: trials to run (default: the whole grid, else {DEFAULT_MAX_TRIALS}; "
            "on a resume, the stored one).",
        ),
        click.option(
            "--sampler",
            type=click.Choice(list(SAMPLERS)),
            default=None,
            help="How to pick parameters (default: grid for a grid-only space, else tpe).",
        ),
        click.option(
            "--pruner",
            default=None,
            metavar="NAME[:KEY=VALUE,...]",
            help="Stop trials whose progress.jsonl losses are poor: none (default), median, "
            "asha or hyperband, with optional settings, e.g. "
            "asha:min_resource=10%,reduction_factor=2 (steps, or N% of the longest completed "
            "curve).",
        ),
        click.option(
            "--direction",
            "directions",
            multiple=True,
            type=click.Choice(list(DIRECTIONS)),
            help="minimize (default) or maximize; repeat for several objectives.",
        ),
        click.option(
            "--max-time",
            type=float,
            default=None,
            help="Seconds after which no new trial starts (running ones finish).",
        ),
        click.option(
            "--target-loss",
            type=float,
            default=None,
            help="Stop starting trials once a trial reaches this loss.",
        ),
        click.option("--seed", type=int, default=None, help="Sampler seed (reproducible runs)."),
        _max_failures_option,
        click.option(
            "--retries",
            "--trials",
            "retries",
            type=int,
            default=None,
            help=f"Attempts a failing trial gets again [default: {DEFAULT_MAX_RETRIES}] "
            "(--trials: the original name).",
        ),
        click.option(
            "--timeout",
            type=float,
            default=None,
            help="Seconds one attempt may run before it is killed.",
        ),
        click.option(
            "--priority",
            type=int,
            default=None,
            help="Higher runs first when workers serve several experiments [default: 0].",
        ),
        click.option(
            "--lease-timeout",
            type=float,
            default=None,
            help="Seconds without a heartbeat before a running trial is retried "
            f"[default: {DEFAULT_LEASE_TIMEOUT:g}].",
        ),
        click.option(
            "--target-env",
            "target_env",
            multiple=True,
            metavar="KEY=VALUE",
            help="Environment for the target, stored with the experiment.",
        ),
        click.option(
            "--config-dir",
            "config_dirs",
            multiple=True,
            type=click.Path(),
            help="Folder to look up config modules by name in.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


# -- the hyperdock group ----------------------------------------------------------------
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hyperdock")
def cli() -> None:
    """Hyperdock: hyperparameter search for anything that runs in a Docker image or as a
    command. `hyperdock run` is all you need on one machine."""


@cli.command()
@click.argument("config", required=False)
@_experiment_options
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Trials run at once on this machine."
)
@_store_option
@click.option(
    "--results",
    default="results",
    show_default=True,
    type=click.Path(),
    help="Folder for trial folders (params.json, loss.json, out/, logs).",
)
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False),
    help="Data folder, read-only at /data (HYPERDOCK_DATA_DIR for commands).",
)
@click.option(
    "--env",
    "worker_env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Environment for targets of this run (repeat, or a JSON list).",
)
@click.option("--gpus", default=None, help="GPUs for Docker targets: all, or 0,1,…")
@click.option(
    "--docker-runtime",
    envvar="HYPERDOCK_RUNTIME",
    default=None,
    help="Docker runtime for targets, e.g. nvidia [env HYPERDOCK_RUNTIME].",
)
@click.option("--network", default=None, help="Docker network mode for targets (e.g. none).")
@click.option(
    "--pull",
    type=click.Choice(["missing", "never", "always"]),
    default="missing",
    show_default=True,
    help="When to pull the target image.",
)
@click.option(
    "--pids-limit",
    type=click.IntRange(min=0),
    default=DEFAULT_PIDS_LIMIT,
    show_default=True,
    help="Most processes a target container may run at once (0: no limit).",
)
@click.option(
    "--heartbeat",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between worker heartbeats.",
)
@_notify_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.option("--loglevel", default="warning", show_default=True)
def run(
    config: str | None,
    workers: int,
    store: str | None,
    results: str,
    data: str | None,
    worker_env: tuple[str, ...],
    gpus: str | None,
    docker_runtime: str | None,
    network: str | None,
    pull: str,
    pids_limit: int,
    heartbeat: float,
    notify: tuple[str, ...],
    as_json: bool,
    quiet: bool,
    loglevel: str,
    **options: Any,
) -> None:
    """Run a whole search on this machine: supervisor and WORKERS local workers.

    CONFIG is a space: a Python file or module defining SPACE, or a JSON/YAML file.
    `hyperdock run --name NAME` alone resumes experiment NAME with its stored settings.
    """
    from hyperdock.supervisor import Supervisor
    from hyperdock.worker import Worker, check_results_dir, check_worker_settings

    _setup_logging(loglevel)
    opts = _take_settings({**options, "config": config})
    check_worker_settings(workers, heartbeat)  # before the experiment is stored
    check_results_dir(results)
    env = parse_env(worker_env)
    _check_notify(notify)
    with _store(store) as st:
        exp, created = _open_experiment(st, opts)
        wake = threading.Condition()
        supervisor = Supervisor(st, exp, poll_interval=1.0, wake=wake)
        click.echo(_opened_line(st, supervisor, created), err=True)
        worker = Worker(
            st,
            results_dir=results,
            parallelism=workers,
            env=env,
            gpus=gpus,
            experiment_id=exp.id,
            heartbeat_interval=heartbeat,
            poll_interval=1.0,
            runtime_factory=_worker_runtime_factory(
                data, docker_runtime, False, network, pull, pids_limit
            ),
            wake=wake,
            sweep_orphans=exp.target.kind == "docker",
            on_trial_end=lambda _tid, _state: supervisor.notify(),
        )
        stop = threading.Event()
        interrupted = threading.Event()

        def on_interrupt() -> None:
            interrupted.set()
            stop.set()
            supervisor.notify()
            worker.stop()

        worker_failed: list[BaseException] = []

        def work() -> None:
            # The supervisor must not wait for trials that no worker will run.
            try:
                worker.run()
            except BaseException as exc:
                worker_failed.append(exc)
            finally:
                stop.set()
                supervisor.notify()

        worker_thread = threading.Thread(target=work, name="hd-worker")
        try:
            with _signals(on_interrupt), ProgressLine(supervisor, not quiet and not as_json):
                worker_thread.start()
                try:
                    ended = supervisor.run(stop)
                finally:
                    worker.stop()
                    worker_thread.join()
            if worker_failed and isinstance(worker_failed[0], HyperdockError):
                raise worker_failed[0]
            if worker_failed:
                logging.getLogger("hyperdock.worker").debug(
                    "the worker failed", exc_info=worker_failed[0]
                )
                raise HyperdockError(
                    f"the worker stopped on an unexpected error: {worker_failed[0]}; "
                    f"resume with: {_resume_command(exp.name)}"
                )
            if not interrupted.is_set() and ended.state is ExperimentState.RUNNING:
                raise HyperdockError(
                    "the workers stopped before the experiment ended (see the log above); "
                    f"resume with: {_resume_command(exp.name)}"
                )
        except Exception as exc:
            _notify_error(st, exp, notify, exc)
            raise
        if interrupted.is_set():
            click.echo(f"Interrupted. Resume with: {_resume_command(exp.name)}", err=True)
            sys.exit(130)
        _finish(st, exp, as_json, notify)


@cli.command()
@click.argument("config", required=False)
@_experiment_options
@_store_option
@click.option(
    "--poll",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between checks of the store.",
)
@_notify_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--loglevel", default="info", show_default=True)
def supervisor(
    store: str | None,
    poll: float,
    notify: tuple[str, ...],
    as_json: bool,
    loglevel: str,
    **options: Any,
) -> None:
    """Create (or resume, by --name) an experiment and drive it until its budget is spent.

    Workers (`hyperdock worker`) on any host run the trials.
    """
    _setup_logging(loglevel)
    _run_supervisor(store, _take_settings(options), poll, as_json, notify)


def _run_supervisor(
    store: str | None,
    opts: ExperimentSettings,
    poll: float,
    as_json: bool,
    notify: Sequence[str] = (),
    legacy: bool = False,
) -> None:
    from hyperdock.supervisor import Supervisor, check_poll

    _check_notify(notify)
    check_poll(poll)  # before the experiment is stored
    with _store(store) as st:
        exp, created = _open_experiment(st, opts)
        sup = Supervisor(st, exp, poll_interval=poll)
        click.echo(_opened_line(st, sup, created), err=True)
        if legacy:
            click.echo(_legacy_budget_line(sup, created, opts), err=True)
        stop = threading.Event()
        try:
            with _signals(stop.set):
                sup.run(stop)
        except Exception as exc:
            _notify_error(st, exp, notify, exc)
            raise
        if stop.is_set():
            click.echo(f"Supervisor stopped. Resume with: {_resume_command(exp.name)}", err=True)
            sys.exit(130)
        _finish(st, exp, as_json, notify)


def _worker_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--parallelism", type=int, default=1, show_default=True, help="Trials run at once."
        ),
        click.option(
            "--results",
            envvar="HYPERDOCK_RESULT_DIR",
            default="results",
            show_default=True,
            help="Host folder for trial folders [env HYPERDOCK_RESULT_DIR].",
        ),
        click.option(
            "--data",
            envvar="HYPERDOCK_DATA_DIR",
            default=None,
            help="Host data folder, read-only at /data [env HYPERDOCK_DATA_DIR].",
        ),
        click.option(
            "--env",
            "env",
            multiple=True,
            metavar="KEY=VALUE",
            help="Environment for targets: KEY=VALUE or a JSON list [env HYPERDOCK_ENV].",
        ),
        click.option(
            "--docker-runtime",
            "--runtime",
            "docker_runtime",
            envvar="HYPERDOCK_RUNTIME",
            default=None,
            help="Docker runtime, e.g. nvidia [env HYPERDOCK_RUNTIME].",
        ),
        click.option(
            "--gpus",
            envvar="HYPERDOCK_GPUS",
            default=None,
            help="GPUs for targets: all, or ids 0,1,… split across slots.",
        ),
        click.option("--privileged", is_flag=True, help="Run target containers privileged."),
        click.option("--network", default=None, help="Docker network mode for targets."),
        click.option(
            "--pull",
            type=click.Choice(["missing", "never", "always"]),
            default="missing",
            show_default=True,
            help="When to pull target images.",
        ),
        click.option(
            "--pids-limit",
            type=click.IntRange(min=0),
            default=DEFAULT_PIDS_LIMIT,
            show_default=True,
            help="Most processes a target container may run at once (0: no limit).",
        ),
        click.option("--experiment", default=None, help="Only run trials of this experiment."),
        click.option("--burst", is_flag=True, help="Exit when the queue is empty."),
        click.option(
            "--heartbeat",
            type=float,
            default=5.0,
            show_default=True,
            help="Seconds between heartbeats.",
        ),
        click.option(
            "--poll",
            type=float,
            default=1.0,
            show_default=True,
            help="Seconds between claims when the queue is empty.",
        ),
        click.option("--loglevel", default="info", show_default=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _run_worker(
    store: str | None,
    parallelism: int,
    results: str,
    data: str | None,
    env: Sequence[str],
    docker_runtime: str | None,
    gpus: str | None,
    privileged: bool,
    network: str | None,
    pull: str,
    pids_limit: int,
    experiment: str | None,
    burst: bool,
    heartbeat: float,
    poll: float,
) -> None:
    from hyperdock.worker import Worker, check_results_dir, check_worker_settings

    check_worker_settings(parallelism, heartbeat, poll)  # before the store is opened
    check_results_dir(results)
    env_values = list(env) or [os.environ.get("HYPERDOCK_ENV", "")]
    with _store(store) as st:
        exp_id = st.get_experiment(experiment).id if experiment else None
        worker = Worker(
            st,
            results_dir=results,
            parallelism=parallelism,
            env=parse_env(env_values),
            gpus=gpus,
            experiment_id=exp_id,
            heartbeat_interval=heartbeat,
            poll_interval=poll,
            burst=burst,
            runtime_factory=_worker_runtime_factory(
                data, docker_runtime, privileged, network, pull, pids_limit
            ),
        )
        with _signals(worker.stop):
            worker.run()


@cli.command()
@_store_option
@_worker_options
def worker(store: str | None, **options: Any) -> None:
    """Claim and run trials from the store until stopped (SIGTERM/Ctrl-C requeues the
    running trials)."""
    _setup_logging(options.pop("loglevel"))
    _run_worker(store or os.environ.get("MONGO_URL"), **options)


@cli.command()
@_store_option
@click.option("--json", "as_json", is_flag=True)
def status(store: str | None, as_json: bool) -> None:
    """List experiments: state, progress, pruned and failed trials, best loss, age and
    duration (from creation to the last trial's end, or until now while running)."""
    now = time.time()
    with _store(store, create=False) as st:
        exps = st.list_experiments()
        data = [
            _summary(st, e, importances_too=False)
            | {
                "budget": budget_of(e),
                "sampler": e.sampler,
                "target": e.target.describe(),
                "created_at": e.created_at,
                "duration": experiment_duration(st, e, now),
            }
            for e in exps
        ]
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if not data:
        click.echo("No experiments yet. Start one with: hyperdock run CONFIG --command '…'")
        return
    rows = []
    for d, e in zip(data, exps, strict=True):
        t = d["trials"]
        done = sum(n for s, n in t.items() if s not in ("queued", "running"))
        rows.append(
            [
                d["experiment"],
                d["state"],
                f"{done}/{d['budget'] if d['budget'] else '?'}",
                t["running"],
                t["failed"],
                t["pruned"],
                _fmt_loss(d["best"]["loss"]) if d["best"] else "-",
                d["sampler"],
                _fmt_ago(e.created_at, now),
                _fmt_duration(d["duration"]),
                _short(d["target"], 50),
            ]
        )
    headers = ["EXPERIMENT", "STATE", "DONE", "RUNNING", "FAILED", "PRUNED", "BEST", "SAMPLER"]
    click.echo(_table([*headers, "CREATED", "DURATION", "TARGET"], rows, right=(2, 3, 4, 5, 6, 9)))


#: Help text of the NAME argument of the read commands.
_NAME_HELP = (
    "NAME is an experiment's name, a unique start of it, or latest (the newest); "
    "without it, the store's only experiment."
)


@cli.command(epilog=_NAME_HELP)
@click.argument("name", required=False)
@_store_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in TrialState]),
    help="Only these states.",
)
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
    wide: bool,
    columns: str | None,
    as_json: bool,
) -> None:
    """List the trials of experiment NAME.

    The table shows the parameters that differ between trials (constants are left out),
    one column each when they fit the terminal, else together in one PARAMS column. The
    best trial is marked with *.
    """
    with _store(store, create=False) as st:
        exp = resolve_experiment(st, name)
        every = st.list_trials(exp.id)
        best_ids = best_trial_ids(st, exp, every)
    wanted = {TrialState(s) for s in states}
    rows = [t for t in every if not wanted or t.state in wanted]
    if as_json:
        click.echo(json.dumps([_trial_json(t) for t in rows], indent=2, sort_keys=True))
        return
    if not rows:
        click.echo(f"No trials{' in these states' if states else ''} in experiment {exp.name}.")
        return
    try:
        space: Space | None = Space.from_json(exp.space)
    except HyperdockError:
        space = None
    varying, every_key = varying_params(space, every)
    if columns is not None:
        keys = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [k for k in keys if k not in every_key]
        if unknown or not keys:
            raise ConfigError(
                f"--columns: no parameter {', '.join(unknown) or '(none given)'} in experiment "
                f"{exp.name}; its parameters are: {', '.join(every_key) or '(none)'}"
            )
        click.echo(_trials_table(rows, best_ids, keys, split=True))
    elif wide:
        click.echo(_trials_table(rows, best_ids, every_key, split=True))
    else:
        text = _trials_table(rows, best_ids, varying, split=True)
        if max(map(len, text.splitlines())) > shutil.get_terminal_size().columns:
            text = _trials_table(rows, best_ids, varying, split=False)
        click.echo(text)
    if best_ids & {t.id for t in rows}:
        objectives = Objectives.from_meta(exp.meta)
        if objectives.multi:
            click.echo("* on the Pareto front (no other trial is better on every objective)")
        else:
            low = "highest" if objectives.maximize else "lowest"
            click.echo(f"* best trial ({low} loss)")


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _trials_table(
    rows: Sequence[Trial], best_ids: set[int], keys: Sequence[str], split: bool
) -> str:
    """The ``trials`` table with parameters ``keys``: a column each (``split``) or one
    PARAMS column."""
    now = time.time()
    headers = ["", "ID", "#", "STATE", "LOSS", "TRY", "STARTED", "DURATION"]
    headers += list(keys) if split else ["PARAMS"]
    body = []
    for t in rows:
        flat = flat_params(t.params)
        if split:
            params = [_fmt_value(flat[k]) if k in flat else "" for k in keys]
        else:
            shown = ", ".join(f"{k}={_fmt_value(flat[k])}" for k in keys if k in flat)
            params = [_short(shown, 60)]
        body.append(
            [
                "*" if t.id in best_ids else "",
                t.id,
                t.number,
                t.state.value,
                _fmt_loss(t.loss),
                t.attempt + 1,
                _fmt_time(t.started_at),
                _trial_duration(t, now),
                *params,
                _short((t.error or "").splitlines()[0] if t.error else "", 50),
            ]
        )
    headers.append("ERROR")
    if not any(r[-1] for r in body):  # no errors: no empty column taking width
        headers, body = headers[:-1], [r[:-1] for r in body]
    if not any(r[0] for r in body):  # no best trial among these rows: no marker column
        return _table(headers[1:], [r[1:] for r in body], right=(0, 1, 3, 4, 6))
    return _table(headers, body, right=(1, 2, 4, 5, 7))


def _trial_duration(trial: Trial, now: float) -> str:
    """The last attempt's duration; for a running trial the time so far (``12s+``)."""
    if trial.state is TrialState.RUNNING and trial.started_at is not None:
        return _fmt_duration(now - trial.started_at) + "+"
    if trial.state is TrialState.QUEUED:
        return "-"
    return _fmt_duration(trial.duration)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@cli.command(epilog=_NAME_HELP)
@click.argument("name", required=False)
@_store_option
@click.option("--json", "as_json", is_flag=True)
def best(name: str | None, store: str | None, as_json: bool) -> None:
    """Show the best trial of experiment NAME."""
    with _store(store, create=False) as st:
        ok = _print_best(st, resolve_experiment(st, name), as_json)
    sys.exit(0 if ok else 1)


@cli.command(epilog=_NAME_HELP)
@click.argument("name", required=False)
@_store_option
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
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
    """Export every trial of experiment NAME as CSV or JSON.

    CSV: one row per trial, times in ISO 8601 UTC (2026-12-02T05:45:30Z), attempt
    1-based, parameters in params.* columns, the target's extra loss.json keys in data.*
    columns. JSON: the trials as in trials --json (Unix seconds, attempt 1-based).
    """
    if as_json:
        fmt = "json"
    with _store(store, create=False) as st:
        exp = resolve_experiment(st, name)
        rows = st.list_trials(exp.id)
    text = export_text(exp, rows, fmt)
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@_store_option
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
    with _store(store, create=False) as st:
        found = st.list_workers(max_age=None if show_all else max_age)
    now = time.time()
    if as_json:
        click.echo(json.dumps([w.to_json(now) for w in found], indent=2))
        return
    if not found:
        click.echo("No live workers. Start one with: hyperdock worker --store URL")
        return
    click.echo(
        _table(
            ["WORKER", "HOST", "PID", "SLOTS", "UP", "HEARTBEAT", "RUNNING", "STATUS"],
            [
                [
                    w.id,
                    w.host,
                    w.pid,
                    w.parallelism,
                    _fmt_duration(now - w.started_at),
                    _fmt_ago(w.heartbeat_at, now),
                    ",".join(map(str, w.running)) or "-",
                    w.status or "ok",
                ]
                for w in found
            ],
            right=(2, 3, 4),
        )
    )


@cli.command()
@_store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free one).",
)
@click.option(
    "--token",
    envvar="HYPERDOCK_TOKEN",
    default=None,
    help="Needed by every API request (at least 16 characters; default: a random one, "
    "printed in the URL). [env HYPERDOCK_TOKEN]",
)
@click.option(
    "--no-token",
    is_flag=True,
    help="No token: any local account may read and act (single-user machines; 127.0.0.1 only).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests for this host name (a proxy's, this machine's DNS "
    "name); others get 403. Repeatable.",
)
@click.option(
    "--create",
    is_flag=True,
    help="Start on a new, empty SQLite store when the file does not exist "
    "(to create experiments from the dashboard).",
)
def dashboard(
    store: str | None,
    host: str,
    port: int,
    token: str | None,
    no_token: bool,
    allow_hosts: tuple[str, ...],
    create: bool,
) -> None:
    """Serve the web dashboard: experiments, trials, plots, workers, actions."""
    from hyperdock.dashboard import check_bind, check_token, new_token, plotly_js, serve

    if no_token and token:
        raise ConfigError("give either --token (or HYPERDOCK_TOKEN) or --no-token, not both")
    check_token(token)
    check_bind(host, token)  # beyond loopback only with a token the user chose
    generated = token is None and not no_token
    token = new_token() if generated else token
    plotly_js()  # refuses at once (ConfigError) when plotly is missing
    try:
        opened = _store(store, create=create)
    except StoreNotFound as exc:
        raise StoreNotFound(f"{exc}; or give --create to start on an empty one") from None
    with opened as st:

        def ready(url: str) -> None:
            # A token made here is shown (as Jupyter does); the user's own is not echoed.
            shown = f"{url}?token={token}" if generated else url
            click.echo(f"Dashboard on {shown} (store {st.describe()}); Ctrl-C stops it.")
            if token and not generated:
                click.echo(f"It needs its token: open {url}?token=… (the --token value).")

        with contextlib.suppress(KeyboardInterrupt):
            serve(st, host, port, token, ready=ready, allow_hosts=allow_hosts)


@cli.command(epilog="NAME is an experiment's name, a unique start of it, or latest (the newest).")
@click.argument("name", required=False)
@click.option("--trial", "trial_ids", type=int, multiple=True, help="Cancel only this trial.")
@_store_option
def cancel(name: str | None, trial_ids: tuple[int, ...], store: str | None) -> None:
    """Cancel experiment NAME (queued trials are dropped, running ones stopped), or single
    trials with --trial ID. Running targets stop within one worker heartbeat."""
    if not name and not trial_ids:
        raise ConfigError("name an experiment, or give --trial ID")
    with _store(store, create=False) as st:
        if name:
            exp = resolve_experiment(st, name)
            st.set_experiment_state(exp.id, ExperimentState.CANCELLED)
            running = st.count_trials(exp.id)[TrialState.RUNNING]
            click.echo(
                f"Cancelled experiment {exp.name}; {running} running trial(s) are being stopped."
            )
        for trial_id in trial_ids:
            state = st.cancel_trial(trial_id)
            verb = "is being stopped" if state is TrialState.RUNNING else f"is {state.value}"
            click.echo(f"Trial {trial_id} {verb}.")


@cli.command(epilog=_NAME_HELP)
@click.argument("name", required=False)
@click.option(
    "--params",
    "source",
    required=True,
    metavar="JSON|FILE",
    help="A JSON object or list of them, or a file: JSON, or CSV with one column per parameter.",
)
@_store_option
def enqueue(name: str | None, source: str, store: str | None) -> None:
    """Queue known points for experiment NAME: they run before its later trials. Missing
    parameters are drawn from the space; unknown ones are refused."""
    from hyperdock.experiment import Experiment as ApiExperiment
    from hyperdock.experiment import read_points

    points = read_points(source)
    with _store(store, create=False) as st:
        exp = ApiExperiment(st, resolve_experiment(st, name))
        queued = exp.enqueue_many(points)
    ids = ", ".join(str(t.id) for t in queued)
    click.echo(f"Queued {len(queued)} trial(s) of experiment {exp.name}: {ids}")


@cli.command()
@click.argument("ref", metavar="TRIAL_ID|NAME")
@click.argument("number", type=int, required=False)
@_store_option
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
    "--json", "as_json", is_flag=True, help='{"trial", "attempt" (1-based), "state", "file", "log"}'
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
    started last. The output of a running trial (local command or Docker container) is
    there as it is printed; --follow shows it live.
    """
    if follow and as_json:
        raise ConfigError("--follow and --json do not go together")
    with _store(store, create=False) as st:
        trial = resolve_trial(st, ref, number)
        if follow:
            with contextlib.suppress(KeyboardInterrupt):
                logfiles.follow(st, trial.id, results, lines, write=_write_out, note=_note)
            return
        path = logfiles.log_file(st, trial, results)
        if path is None:
            raise logfiles.missing_log(trial, results)
        if not as_json:
            if (
                not logfiles.LogTail(path, lines, _write_out).printed
                and trial.state is TrialState.RUNNING
            ):
                _note(logfiles.no_output_yet(trial))
            return
        text = logfiles.read_log(path, lines)
    if as_json:
        payload = {
            "trial": trial.id,
            "attempt": trial.attempt + 1,
            "state": trial.state.value,
            "file": str(path),
            "log": text,
        }
        click.echo(json.dumps(payload, indent=2, sort_keys=True))
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    Enable it with: eval "$(hyperdock completion bash)" (zsh: the same with zsh; fish:
    hyperdock completion fish | source).
    """
    from click.shell_completion import BashComplete, FishComplete, ShellComplete, ZshComplete

    classes: dict[str, type[ShellComplete]] = {
        "bash": BashComplete,
        "zsh": ZshComplete,
        "fish": FishComplete,
    }
    script = classes[shell](cli, {}, "hyperdock", "_HYPERDOCK_COMPLETE").source()
    click.echo(script)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``hyperdock``."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="hyperdock")


# -- the original entry points ----------------------------------------------------------
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
@_max_failures_option
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
    _setup_logging(loglevel)
    dirs = [*config_dirs, LEGACY_CONFIG_DIR, "config"]
    try:
        opts = ExperimentSettings(
            config=config_module, image=image, command=command, name=name,
            max_trials=max_trials, sampler=sampler, seed=seed, retries=retries,
            timeout=timeout, priority=priority, config_dirs=dirs, max_failures=max_failures,
        )  # fmt: skip
        _run_supervisor(_legacy_store(store, mongo), opts, 1.0, as_json, legacy=True)
    except ConfigError as exc:
        _fail(str(exc), 2)
    except HyperdockError as exc:
        _fail(str(exc))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--mongodb",
    "mongo",
    default=None,
    envvar="MONGO_URL",
    help=f"Store URL [env MONGO_URL, default {DEFAULT_MONGO_URL}].",
)
@click.option("--store", default=None, help="Any store URL (overrides --mongodb).")
@_worker_options
def _legacy_worker(mongo: str | None, store: str | None, **options: Any) -> None:
    """The original worker (v0.1 env vars, v0.4 flags)."""
    _setup_logging(options.pop("loglevel"))
    try:
        _run_worker(_legacy_store(store, mongo) or DEFAULT_MONGO_URL, **options)
    except ConfigError as exc:
        _fail(str(exc), 2)
    except HyperdockError as exc:
        _fail(str(exc))


def _legacy_budget_line(sup: Any, created: bool, opts: ExperimentSettings) -> str:
    """The original `--trials N` meant retries, so say what the budget is instead."""
    budget = sup.budget
    size = f"{budget} trials" if budget is not None else "no trial limit"
    if opts.max_trials is not None:
        why = "--max-trials"
    elif not created:
        why = "stored with the experiment"
    elif sup.experiment.sampler == "grid":
        why = "the whole grid"
    else:
        why = "the default"
    retries = sup.experiment.max_retries
    return (
        f"Budget: {size} ({why}; change it with --max-trials N). "
        f"--trials {retries} is the retries of a failing trial, as in the original Hyperdock."
    )


def legacy_supervisor_main() -> None:
    """Entry point of ``hyperdock-supervisor``."""
    _legacy_supervisor.main(prog_name="hyperdock-supervisor")


def legacy_worker_main() -> None:
    """Entry point of ``hyperdock-worker``."""
    _legacy_worker.main(prog_name="hyperdock-worker")


__all__ = ["cli", "legacy_supervisor_main", "legacy_worker_main", "main", "redact_url"]
