"""The commands that run a search: ``run``, ``supervisor``, ``worker``."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from hyperdock.cli.common import (
    open_settings,
    opened_store,
    resume_command,
    setup_logging,
    signals,
    take_settings,
)
from hyperdock.cli.options import (
    artifacts_options,
    experiment_options,
    file_limits_option,
    launcher_options,
    notify_option,
    store_option,
    worker_options,
)
from hyperdock.cli.output import legacy_budget_line, opened_line, print_best
from hyperdock.display import ProgressLine
from hyperdock.errors import ConfigError, HyperdockError
from hyperdock.experiment import ExperimentSettings
from hyperdock.results import summarize
from hyperdock.runtimes.base import DEFAULT_PIDS_LIMIT
from hyperdock.storage import Store
from hyperdock.targets import parse_env
from hyperdock.trial import Experiment, ExperimentState
from hyperdock.trialfs import Limits


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
    summary = summarize(store, exp)
    ok = print_best(store, exp, as_json, summary) and exp.state is not ExperimentState.FAILED
    if notify:
        notify_all(notify, summary | {"event": event_of(summary)})
    sys.exit(0 if ok else 1)


def _notify_error(store: Store, exp: Experiment, notify: Sequence[str], exc: Exception) -> None:
    """POST a "failed" summary to the --notify URLs when a run dies with an error."""
    from hyperdock.notify import notify_all

    if not notify:
        return
    try:
        summary = summarize(store, store.get_experiment(exp.id), importances_too=False)
    except Exception:  # the store may be what failed
        summary = {"experiment": exp.name, "state": exp.state.value, "trials": {}, "best": None}
    notify_all(notify, summary | {"event": "failed", "error": str(exc) or type(exc).__name__})


#: The launcher options (``launcher_options``) by their keyword names.
LAUNCHER_KEYS = (
    "launcher",
    "slurm_args",
    "slurm_template",
    "container_engine",
    "namespace",
    "k8s_volume",
    "k8s_data_volume",
    "k8s_pod_template",
    "k8s_pull_policy",
)


def take_launcher(options: dict[str, Any]) -> dict[str, Any]:
    """Pop the launcher options out of a command's keyword arguments."""
    return {key: options.pop(key) for key in LAUNCHER_KEYS if key in options}


def take_data(options: dict[str, Any]) -> dict[str, Any]:
    """Pop ``artifacts_options`` out of a command's keyword arguments: the settings
    given (checked), as :meth:`DataSettings.given` returns them."""
    from hyperdock.artifacts.settings import DataSettings

    return DataSettings.given(
        options.pop("artifacts", None),
        options.pop("artifacts_endpoint", None),
        options.pop("checkpoint_sync", None),
        options.pop("keep_checkpoints", None),
    )


def _read(path: str, option: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {option} {path}: {exc}") from None


def _launcher_settings(launch: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the chosen launcher's runtime."""
    launcher = launch.get("launcher", "local")
    if launcher == "slurm":
        template = launch.get("slurm_template")
        return {
            "sbatch_args": list(launch.get("slurm_args") or ()),
            "template": _read(template, "--slurm-template") if template else None,
            "container_engine": launch.get("container_engine") or "docker",
        }
    if launcher == "kubernetes":
        import yaml

        from hyperdock.runtimes.kubernetes import parse_volume

        if parse_volume(launch.get("k8s_volume"), "--k8s-volume") is None:
            raise ConfigError(
                "--launcher kubernetes needs --k8s-volume pvc:CLAIM (a claim holding "
                "--results) or hostPath:DIR (one-node clusters)"
            )
        parse_volume(launch.get("k8s_data_volume"), "--k8s-data-volume")

        template = launch.get("k8s_pod_template")
        pod = None
        if template:
            try:
                pod = yaml.safe_load(_read(template, "--k8s-pod-template"))
            except yaml.YAMLError as exc:
                raise ConfigError(f"--k8s-pod-template {template}: invalid YAML: {exc}") from None
            if not isinstance(pod, dict):
                raise ConfigError(f"--k8s-pod-template {template} must hold a pod or pod spec")
        return {
            "namespace": launch.get("namespace") or "default",
            "volume": launch.get("k8s_volume"),
            "data_volume": launch.get("k8s_data_volume"),
            "pod_template": pod,
            "image_pull_policy": launch.get("k8s_pull_policy"),
        }
    return {}


def _worker_runtime_factory(
    data_dir: str | None,
    docker_runtime: str | None,
    privileged: bool,
    network: str | None,
    pull: str,
    pids_limit: int,
    launch: dict[str, Any] | None = None,
) -> Callable[[str], Any]:
    """The worker's runtimes as the launcher and Docker options given configure them."""
    from hyperdock.worker import default_runtime_factory

    launch = launch or {}
    launcher_options = _launcher_settings(launch)
    launcher = launch.get("launcher", "local")
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
        launcher=launcher,
        launcher_options=launcher_options,
    )


@click.command()
@click.argument("config", required=False)
@experiment_options
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Trials run at once on this machine."
)
@store_option
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
@file_limits_option
@launcher_options
@artifacts_options
@notify_option
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
    file_limits: str | None,
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
    from hyperdock.artifacts.settings import save_data_settings
    from hyperdock.supervisor import Supervisor
    from hyperdock.worker import Worker, check_results_dir, check_worker_settings

    setup_logging(loglevel)
    launch = take_launcher(options)
    data_given = take_data(options)
    opts = take_settings({**options, "config": config})
    check_worker_settings(workers, heartbeat)  # before the experiment is stored
    limits = Limits.parse(file_limits)
    check_results_dir(results)
    env = parse_env(worker_env)
    _check_notify(notify)
    with opened_store(store) as st:
        exp, created = open_settings(st, opts)
        exp = save_data_settings(st, exp, data_given)
        wake = threading.Condition()
        supervisor = Supervisor(st, exp, poll_interval=1.0, wake=wake, results_dir=results)
        click.echo(opened_line(st, supervisor, created), err=True)
        worker = Worker(
            st,
            results_dir=results,
            parallelism=workers,
            env=env,
            gpus=gpus,
            experiment_id=exp.id,
            heartbeat_interval=heartbeat,
            poll_interval=1.0,
            limits=limits,
            runtime_factory=_worker_runtime_factory(
                data,
                docker_runtime,
                False,
                network,
                pull,
                pids_limit,
                launch,
            ),
            wake=wake,
            sweep_orphans=exp.target.kind == "docker" and launch.get("launcher") == "local",
            on_trial_end=lambda _tid, _state: supervisor.notify(),
            artifacts=data_given.get("artifacts"),
            artifacts_endpoint=data_given.get("endpoint"),
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
            with signals(on_interrupt), ProgressLine(supervisor, not quiet and not as_json):
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
                    f"resume with: {resume_command(exp.name)}"
                )
            if not interrupted.is_set() and ended.state is ExperimentState.RUNNING:
                raise HyperdockError(
                    "the workers stopped before the experiment ended (see the log above); "
                    f"resume with: {resume_command(exp.name)}"
                )
        except Exception as exc:
            _notify_error(st, exp, notify, exc)
            raise
        if interrupted.is_set():
            click.echo(f"Interrupted. Resume with: {resume_command(exp.name)}", err=True)
            sys.exit(130)
        _finish(st, exp, as_json, notify)


@click.command()
@click.argument("config", required=False)
@experiment_options
@store_option
@click.option(
    "--poll",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between checks of the store.",
)
@artifacts_options
@notify_option
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
    setup_logging(loglevel)
    data = take_data(options)
    run_supervisor(store, take_settings(options), poll, as_json, notify, data=data)


def run_supervisor(
    store: str | None,
    opts: ExperimentSettings,
    poll: float,
    as_json: bool,
    notify: Sequence[str] = (),
    legacy: bool = False,
    data: dict[str, Any] | None = None,
) -> None:
    """Drive the experiment ``opts`` describe until it ends (``supervisor``, and
    ``hyperdock-supervisor`` with ``legacy``: it also says what the budget is);
    ``data``: the artifact settings given (see :func:`take_data`)."""
    from hyperdock.artifacts.settings import save_data_settings
    from hyperdock.supervisor import Supervisor, check_poll

    _check_notify(notify)
    check_poll(poll)  # before the experiment is stored
    with opened_store(store) as st:
        exp, created = open_settings(st, opts)
        exp = save_data_settings(st, exp, data or {})
        sup = Supervisor(st, exp, poll_interval=poll)
        click.echo(opened_line(st, sup, created), err=True)
        if legacy:
            click.echo(legacy_budget_line(sup, created, opts), err=True)
        stop = threading.Event()
        try:
            with signals(stop.set):
                sup.run(stop)
        except Exception as exc:
            _notify_error(st, exp, notify, exc)
            raise
        if stop.is_set():
            click.echo(f"Supervisor stopped. Resume with: {resume_command(exp.name)}", err=True)
            sys.exit(130)
        _finish(st, exp, as_json, notify)


def run_worker(
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
    file_limits: str | None = None,
    artifacts: str | None = None,
    artifacts_endpoint: str | None = None,
    **launch: Any,
) -> None:
    """Run trials until stopped (``worker`` and ``hyperdock-worker``); without ``env``
    the targets' environment comes from ``HYPERDOCK_ENV``."""
    from hyperdock.worker import Worker, check_results_dir, check_worker_settings

    check_worker_settings(parallelism, heartbeat, poll)  # before the store is opened
    limits = Limits.parse(file_limits)
    check_results_dir(results)
    env_values = list(env) or [os.environ.get("HYPERDOCK_ENV", "")]
    with opened_store(store) as st:
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
            limits=limits,
            runtime_factory=_worker_runtime_factory(
                data,
                docker_runtime,
                privileged,
                network,
                pull,
                pids_limit,
                launch,
            ),
            sweep_orphans=launch.get("launcher", "local") == "local",
            artifacts=artifacts,
            artifacts_endpoint=artifacts_endpoint,
        )
        with signals(worker.stop):
            worker.run()


@click.command()
@store_option
@worker_options
def worker(store: str | None, **options: Any) -> None:
    """Claim and run trials from the store until stopped (SIGTERM/Ctrl-C requeues the
    running trials)."""
    setup_logging(options.pop("loglevel"))
    run_worker(store or os.environ.get("MONGO_URL"), **options)
