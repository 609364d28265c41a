"""Click options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from hyperdock.objectives import DIRECTIONS
from hyperdock.runtimes.base import DEFAULT_PIDS_LIMIT
from hyperdock.samplers import SAMPLERS
from hyperdock.supervisor import (
    DEFAULT_LEASE_TIMEOUT,
    DEFAULT_MAX_FAILURES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_TRIALS,
)


def store_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--store URL`` [env HYPERDOCK_STORE]."""
    return click.option(
        "--store",
        envvar="HYPERDOCK_STORE",
        default=None,
        metavar="URL",
        help="Store URL: sqlite:///path.db (default sqlite:///./hyperdock.db), "
        "postgresql://…, mongodb://… [env HYPERDOCK_STORE]",
    )(f)


def notify_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--notify URL`` (repeatable) of the commands that run a search."""
    return click.option(
        "--notify",
        "notify",
        multiple=True,
        metavar="URL",
        help="POST a JSON summary here when the experiment finishes, is cancelled or "
        "fails (repeat for several; Slack webhooks get a Slack message). Not stored.",
    )(f)


#: ``--max-failures N``, of `run`, `supervisor` and `hyperdock-supervisor`.
max_failures_option = click.option(
    "--max-failures",
    type=int,
    default=None,
    help=f"Stop the experiment as failed after this many trials in a row failed "
    f"(default {DEFAULT_MAX_FAILURES}; 0: never). Stored with the experiment.",
)


def experiment_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``run`` and ``supervisor`` that describe the experiment
    (:class:`~hyperdock.experiment.ExperimentSettings`' fields but CONFIG)."""
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
        max_failures_option,
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
        click.option("--cpus-per-trial", type=float, default=None, help="CPUs each trial may use."),
        click.option(
            "--memory-per-trial",
            default=None,
            metavar="SIZE",
            help="Memory each trial may use, e.g. 8g.",
        ),
        click.option(
            "--gpus-per-trial",
            type=int,
            default=None,
            help="GPUs each trial gets: from the worker's --gpus, or the cluster's.",
        ),
        click.option(
            "--trials-per-gpu",
            type=int,
            default=None,
            help="Trials that share one GPU (with --gpus-per-trial 1).",
        ),
        click.option(
            "--shm-size", default=None, metavar="SIZE", help="/dev/shm of target containers."
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


#: ``--file-limits``: how much Hyperdock reads of the files a target writes.
file_limits_option = click.option(
    "--file-limits",
    envvar="HYPERDOCK_FILE_LIMITS",
    default=None,
    metavar="NAME=SIZE,…",
    help="Largest loss.json, progress.jsonl line and graphs.json read from a trial "
    "folder, and the start and end of each log kept in the store: loss=1MB,"
    "progress-line=64KB,graphs=10MB,log-head=64KB,log-tail=1MB are the defaults "
    "[env HYPERDOCK_FILE_LIMITS].",
)


def launcher_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Where a worker runs attempts (``worker`` and ``run``)."""
    options = [
        click.option(
            "--launcher",
            type=click.Choice(["local", "slurm", "kubernetes"]),
            default="local",
            show_default=True,
            envvar="HYPERDOCK_LAUNCHER",
            help="Where attempts run: here (a process or a Docker container), as Slurm "
            "jobs (sbatch), or as Kubernetes Jobs (images) [env HYPERDOCK_LAUNCHER].",
        ),
        click.option(
            "--slurm-arg",
            "slurm_args",
            multiple=True,
            metavar="ARG",
            help="More sbatch options, e.g. --slurm-arg=--partition=gpu (repeatable).",
        ),
        click.option(
            "--slurm-template",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="A job script header (#SBATCH lines, module load …) for every job.",
        ),
        click.option(
            "--namespace",
            default="default",
            show_default=True,
            help="Kubernetes namespace of the trials' Jobs.",
        ),
        click.option(
            "--k8s-volume",
            default=None,
            metavar="pvc:CLAIM|hostPath:DIR",
            help="The volume holding --results, mounted at /hyperdock in every pod.",
        ),
        click.option(
            "--k8s-data-volume",
            default=None,
            metavar="pvc:CLAIM|hostPath:DIR",
            help="The volume mounted read-only at /data in every pod.",
        ),
        click.option(
            "--k8s-pod-template",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="A YAML pod (or pod spec) merged under Hyperdock's fields: node "
            "selectors, tolerations, service account, image pull secrets.",
        ),
        click.option(
            "--k8s-pull-policy",
            type=click.Choice(["Always", "IfNotPresent", "Never"]),
            default=None,
            help="imagePullPolicy of the trials' containers [default: the cluster's].",
        ),
        click.option(
            "--container-engine",
            type=click.Choice(["docker", "apptainer"]),
            default="docker",
            show_default=True,
            help="What runs image targets inside Slurm jobs.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


#: ``--artifacts URL`` and ``--artifacts-endpoint URL`` (``worker``, ``run``, ``supervisor``).
_ARTIFACTS = [
    click.option(
        "--artifacts",
        envvar="HYPERDOCK_ARTIFACTS",
        default=None,
        metavar="URL",
        help="Artifact store for the trials' files: file:///shared/path or "
        "s3://bucket/prefix (credentials: the AWS way) [env HYPERDOCK_ARTIFACTS].",
    ),
    click.option(
        "--artifacts-endpoint",
        default=None,
        metavar="URL",
        help="S3-compatible server (MinIO, Ceph …), e.g. http://127.0.0.1:9000 "
        "[default: AWS_ENDPOINT_URL, else AWS].",
    ),
]


def artifacts_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The artifact store of ``run`` and ``supervisor``, and what becomes of the
    checkpoints: stored with the experiment."""
    options = [
        *_ARTIFACTS,
        click.option(
            "--checkpoint-sync",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Seconds between uploads of a running trial's checkpoint folder [default: 60].",
        ),
        click.option(
            "--keep-checkpoints",
            type=click.Choice(["best", "all", "none"]),
            default=None,
            help="Checkpoints kept when the experiment ends [default: best].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def worker_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``worker`` and ``hyperdock-worker``."""
    options = [
        launcher_options,
        *_ARTIFACTS,
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
        file_limits_option,
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


#: Help text of the NAME argument of the read commands.
NAME_HELP = (
    "NAME is an experiment's name, a unique start of it, or latest (the newest); "
    "without it, the store's only experiment."
)
