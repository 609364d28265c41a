"""The Python API: create, resume, drive and read experiments without the command line.

Example:
    >>> import hyperdock
    >>> from hyperdock import hp
    >>> exp = hyperdock.Experiment.open(
    ...     "quad", store="sqlite:///./hyperdock.db", space={"x": hp.uniform("x", -5, 5)}
    ... )
    >>> trial = exp.ask()
    >>> exp.tell(trial, loss=(trial.params["x"] - 1) ** 2)

``Experiment.open`` (and ``Experiment.from_settings``, which the command line calls with
what its options gave) is the one place that turns settings into a stored experiment; it
follows the command line's rules (see :func:`hyperdock.supervisor.open_experiment`): a
setting left at ``None`` is "not given", a resume keeps what is stored, and an explicit
setting that differs from the stored one raises :class:`~hyperdock.errors.ConfigError`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import logging
import math
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperdock.errors import ConfigError, ExperimentExists, HyperdockError, SpaceError
from hyperdock.points import check_point
from hyperdock.space import Space
from hyperdock.storage import Store, open_store
from hyperdock.study import Objectives, flat_params
from hyperdock.trial import Experiment as ExperimentRecord
from hyperdock.trial import ExperimentState, Target, Trial, TrialState

if TYPE_CHECKING:
    from hyperdock.supervisor import Supervisor

log = logging.getLogger("hyperdock.experiment")

#: Settings an experiment keeps in its meta (what a clone copies; the rest is its run).
_SETTINGS = ("objectives", "pruner", "max_time", "target_loss", "max_failures")

__all__ = [
    "Command",
    "Experiment",
    "ExperimentSettings",
    "Image",
    "TrialNotRunning",
    "best_json",
    "best_trial_ids",
    "experiment_duration",
    "export_text",
    "list_experiments",
    "parse_env",
    "read_points",
    "run",
    "status_json",
    "summarize",
    "target_from",
    "trial_json",
]


class TrialNotRunning(HyperdockError):
    """A tell or report for a trial this experiment does not hold running (it was told
    already, reaped after its lease ran out, or asked by another process)."""


# -- targets ------------------------------------------------------------------------------
def Command(
    argv: Sequence[str] | str,
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """A local command as the target: it runs once per trial (see the target contract).

    Args:
        argv: The command and its arguments (a string is split like a shell would).
        timeout: Seconds one attempt may run (None: no limit).
        env: Extra environment for the command.

    Example:
        >>> hyperdock.Command(["python", "train.py"], timeout=600)
    """
    import shlex

    args = tuple(shlex.split(argv)) if isinstance(argv, str) else tuple(str(a) for a in argv)
    if not args:
        raise ConfigError("Command() needs a program to run, e.g. Command(['python', 'train.py'])")
    return Target(command=args, timeout=timeout, env=_env(env))


def Image(
    name: str,
    *,
    command: Sequence[str] | str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """A Docker image as the target.

    Args:
        name: The image, e.g. ``"erikgartner/hyperdock-test"``.
        command: Overrides the image's command (a string is split like a shell would).
        timeout: Seconds one attempt may run (None: no limit).
        env: Extra environment for the container.
    """
    import shlex

    if not name:
        raise ConfigError("Image() needs an image name, e.g. Image('erikgartner/hyperdock-test')")
    argv = None
    if command is not None:
        argv = tuple(shlex.split(command)) if isinstance(command, str) else tuple(command)
    return Target(image=name, command=argv, timeout=timeout, env=_env(env))


def _env(env: Mapping[str, str] | None) -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in (env or {}).items())


#: The stored target of an experiment driven only by ask/tell (no command, no image).
ASK_TELL_TARGET = Target()


def target_from(
    image: str | None,
    command: str | None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """The target ``--image`` / ``--command`` describe: a Docker image (``command``
    then overrides its command) or a local command, split like a shell would.

    Args:
        image: The Docker image, or None.
        command: The command line, e.g. ``"python train.py --fast"`` (no shell runs it).
        timeout: Seconds one attempt may run (None: no limit).
        env: Extra environment for the target.

    Raises:
        ConfigError: neither is given, the command is empty, or the timeout is not
            positive.
    """
    import shlex

    if not image and not command:
        raise ConfigError("give the target: --image IMAGE (Docker) or --command 'CMD ARGS'")
    argv = tuple(shlex.split(command)) if command else None
    if command is not None and not argv:
        raise ConfigError("--command is empty")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout}")
    return Target(image=image or None, command=argv, timeout=timeout, env=_env(env))


def parse_env(values: Sequence[str]) -> dict[str, str]:
    """Environment entries as ``--env``, ``--target-env`` and ``HYPERDOCK_ENV`` give them.

    Args:
        values: ``KEY=VALUE`` items, each given alone or as a JSON list
            (``'["A=1", "B=2"]'``, the original ``HYPERDOCK_ENV``); blank ones are
            skipped.

    Returns:
        The variables, a later entry winning over an earlier one.

    Raises:
        ConfigError: a malformed JSON list, or an entry that is not ``KEY=VALUE``.
    """
    items: list[str] = []
    for value in values:
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"--env / HYPERDOCK_ENV is not a JSON list: {exc}") from None
            if not isinstance(parsed, list) or not all(isinstance(i, str) for i in parsed):
                raise ConfigError('--env / HYPERDOCK_ENV must be a JSON list of "KEY=VALUE"')
            items += parsed
        elif text:
            items.append(text)
    env = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"environment entry {item!r} is not KEY=VALUE")
        env[key] = val
    return env


@dataclasses.dataclass(frozen=True)
class ExperimentSettings:
    """An experiment as ``hyperdock run``, ``hyperdock supervisor`` and the original
    ``hyperdock-supervisor`` describe it, each value as given on the command line.

    ``None`` or empty means "not given": :meth:`Experiment.from_settings` then lets a
    new experiment take the default and a resumed one keep what is stored.
    """

    #: A config module name, or the path of a ``.py`` / JSON / YAML space.
    config: str | None = None
    image: str | None = None
    #: A command line, split like a shell would.
    command: str | None = None
    name: str | None = None
    max_trials: int | None = None
    sampler: str | None = None
    #: A ``--pruner`` spec, e.g. ``"asha:min_resource=10%"``.
    pruner: str | None = None
    directions: Sequence[str] = ()
    max_time: float | None = None
    target_loss: float | None = None
    seed: int | None = None
    max_failures: int | None = None
    retries: int | None = None
    timeout: float | None = None
    priority: int | None = None
    lease_timeout: float | None = None
    #: ``KEY=VALUE`` items (see :func:`parse_env`), stored with the target.
    target_env: Sequence[str] = ()
    config_dirs: Sequence[str] = ()


# -- JSON shapes and summaries (shared with the CLI) -------------------------------------
def trial_json(trial: Trial) -> dict[str, Any]:
    """A trial as ``trials --json`` prints it. ``attempt`` is 1-based (as in the tables):
    the attempt running, the last one that ended, or for a queued trial the one it
    starts next; each ``history`` entry's ``attempt`` likewise. Times are Unix seconds."""
    return {
        "id": trial.id,
        "number": trial.number,
        "state": trial.state.value,
        "loss": trial.loss,
        "params": trial.params,
        "attempt": trial.attempt + 1,
        "worker": trial.worker_id,
        "result": trial.result,
        "data": trial.data,
        "error": trial.error,
        "created_at": trial.created_at,
        "started_at": trial.started_at,
        "finished_at": trial.finished_at,
        # The store counts attempts from 0; people (and the tables) from 1.
        "history": [h | {"attempt": int(h.get("attempt", 0)) + 1} for h in trial.history],
    }


def best_json(trial: Trial, objectives: Objectives) -> dict[str, Any]:
    """A best trial as ``best --json`` prints it."""
    out = {
        "trial": trial.id,
        "number": trial.number,
        "attempt": trial.attempt + 1,
        "loss": trial.loss,
        "params": trial.params,
        "folder": trial.folder,
    }
    if objectives.multi:
        values = objectives.values(trial) or []
        out["values"] = dict(zip(objectives.names, values, strict=False))
    return out


def summarize(
    store: Store, exp: ExperimentRecord, *, importances_too: bool = True
) -> dict[str, Any]:
    """An experiment's state, counts, best trial (or Pareto front) and parameter
    importances, as ``best --json`` prints them."""
    from hyperdock.study import importances, pareto_front

    objectives = Objectives.from_meta(exp.meta)
    counts = store.count_trials(exp.id)
    summary: dict[str, Any] = {
        "experiment": exp.name,
        "state": exp.state.value,
        "trials": {s.value: n for s, n in counts.items()},
        "objectives": objectives.to_meta(),
    }
    if exp.state is ExperimentState.FAILED:
        summary["stop_reason"] = exp.meta.get("stop_reason")
        summary["first_error"] = exp.meta.get("first_error")
    trials: list[Trial] | None = None
    if objectives.multi:
        trials = store.list_trials(exp.id, states=[TrialState.COMPLETED])
        front = pareto_front(trials, objectives)
        summary["pareto_front"] = [best_json(t, objectives) for t in front]
        summary["best"] = best_json(front[0], objectives) if front else None
    else:
        best = store.best_trial(exp.id, maximize=objectives.maximize)
        summary["best"] = None if best is None else best_json(best, objectives)
    summary["importances"] = {}
    if importances_too and counts[TrialState.COMPLETED] >= 2:
        if trials is None:
            trials = store.list_trials(exp.id, states=[TrialState.COMPLETED])
        try:
            summary["importances"] = importances(Space.from_json(exp.space), objectives, trials)
        except HyperdockError as exc:
            log.debug("no importances: %s", exc)
    return summary


def experiment_duration(store: Store, exp: ExperimentRecord, now: float) -> float:
    """Seconds from the experiment's creation to its last trial's end (to ``now`` while
    it runs)."""
    if exp.state is ExperimentState.RUNNING:
        return now - exp.created_at
    ends = [t.finished_at for t in store.list_trials(exp.id) if t.finished_at is not None]
    return max(ends, default=exp.created_at) - exp.created_at


def status_json(store: Store, exp: ExperimentRecord, now: float) -> dict[str, Any]:
    """An experiment as ``status --json`` lists it: :func:`summarize`'s fields (without
    importances) plus its budget, sampler, target, creation time and duration."""
    from hyperdock.supervisor import budget_of

    return summarize(store, exp, importances_too=False) | {
        "budget": budget_of(exp),
        "sampler": exp.sampler,
        "target": exp.target.describe(),
        "created_at": exp.created_at,
        "duration": experiment_duration(store, exp, now),
    }


def best_trial_ids(store: Store, exp: ExperimentRecord, trials: Sequence[Trial]) -> set[int]:
    """Ids of the best trial (several objectives: the Pareto front among ``trials``)."""
    from hyperdock.study import pareto_front

    objectives = Objectives.from_meta(exp.meta)
    if objectives.multi:
        return {t.id for t in pareto_front(trials, objectives)}
    best = store.best_trial(exp.id, maximize=objectives.maximize)
    return set() if best is None else {best.id}


def _iso(ts: float | None) -> str:
    """``2026-12-02T05:45:30Z`` (UTC, whole seconds); empty for None."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_text(exp: ExperimentRecord, rows: Sequence[Trial], fmt: str = "csv") -> str:
    """Every trial of ``exp`` as ``hyperdock export`` writes it.

    CSV: one row per trial, times in ISO 8601 UTC, attempt 1-based, parameters in
    ``params.*`` columns, the target's extra loss.json keys in ``data.*`` columns.
    JSON: the experiment's settings and its trials as in ``trials --json``.

    Raises:
        ConfigError: ``fmt`` is neither ``csv`` nor ``json``.
    """
    if fmt == "json":
        data = {
            "experiment": exp.name,
            "space": exp.space,
            "target": exp.target.to_json(),
            "sampler": exp.sampler,
            "seed": exp.seed,
            "trials": [trial_json(t) for t in rows],
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if fmt != "csv":
        raise ConfigError(f"unknown export format {fmt!r}; use 'csv' or 'json'")
    flat = []
    for t in rows:
        params = {
            k: json.dumps(v) if isinstance(v, list) else v for k, v in flat_params(t.params).items()
        }
        base = {
            "id": t.id,
            "number": t.number,
            "state": t.state.value,
            "loss": t.loss,
            "attempt": t.attempt + 1,
            "worker": t.worker_id,
            "created_at": _iso(t.created_at),
            "started_at": _iso(t.started_at),
            "finished_at": _iso(t.finished_at),
            "duration": t.duration,
            "error": t.error,
        }
        data = {
            k: v if isinstance(v, (str, int, float)) or v is None else json.dumps(v)
            for k, v in t.data.items()
        }
        flat.append((base, params, data))
    keys = sorted({k for _, p, _ in flat for k in p})
    data_keys = sorted({k for _, _, d in flat for k in d})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [*flat[0][0].keys(), *(f"params.{k}" for k in keys), *(f"data.{k}" for k in data_keys)]
        if flat
        else ["id", "number", "state", "loss"]
    )
    for base, params, data in flat:
        writer.writerow(
            [
                *base.values(),
                *(params.get(k, "") for k in keys),
                *(data.get(k, "") for k in data_keys),
            ]
        )
    return buf.getvalue()


def _cell(text: str) -> Any:
    """A CSV cell as a value: JSON when it parses (numbers, lists, true), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_points(source: str) -> list[dict[str, Any]]:
    """Parameter sets for :meth:`Experiment.enqueue` from ``--params``: a JSON object or
    list of objects, or the path of a file holding one (``.csv``: a header row of
    parameter names, one point per row; empty cells are left to the space).

    Raises:
        ConfigError: neither valid JSON nor a readable file, or not objects.
    """
    text = source
    where = "--params"
    path = Path(source)
    if not source.lstrip().startswith(("{", "[")):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"--params {source!r} is neither JSON nor a readable file ({exc.strerror})"
            ) from None
        where = source
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(io.StringIO(text)))
            if not rows:
                raise ConfigError(f"{where} holds no rows under its header of parameter names")
            return [
                {k: _cell(v) for k, v in row.items() if k and v not in ("", None)} for row in rows
            ]
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from None
    points = data if isinstance(data, list) else [data]
    if not points or not all(isinstance(p, dict) for p in points):
        raise ConfigError(f"{where} must hold a JSON object of parameter values or a list of them")
    return points


# -- the experiment -----------------------------------------------------------------------
def _states(state: str | TrialState | Iterable[str | TrialState] | None) -> list[TrialState] | None:
    if state is None:
        return None
    items = [state] if isinstance(state, str | TrialState) else list(state)
    try:
        return [TrialState(s) for s in items]
    except ValueError:
        known = ", ".join(s.value for s in TrialState)
        raise ConfigError(f"unknown trial state in {items!r}; use one of {known}") from None


def _load_space(space: Any, config_dirs: Sequence[str]) -> tuple[Space, dict[str, str] | None]:
    if isinstance(space, Space):
        return space, None
    if isinstance(space, str | os.PathLike):
        from hyperdock.config import load_config

        return load_config(space, config_dirs=config_dirs)
    return Space.from_obj(space), None


def _stem(space: Any) -> str | None:
    """The start of a new experiment's default name: its config file's stem."""
    return Path(os.fspath(space)).stem if isinstance(space, str | os.PathLike) else None


def _meta(
    named: Mapping[str, str] | None,
    directions: Sequence[str] | None,
    objectives: Mapping[str, str] | None,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``meta`` settings given: objectives (the config's ``named`` ones, or
    ``directions`` / ``objectives``), then each of ``settings`` that is not None."""
    meta: dict[str, Any] = {}
    if directions or named or objectives:
        if named and objectives:
            raise ConfigError("the config names its objectives already; leave objectives= out")
        meta["objectives"] = Objectives.build(
            tuple(directions or ()), named or objectives
        ).to_meta()
    meta.update((key, value) for key, value in settings.items() if value is not None)
    return meta


class Experiment:
    """One experiment in a store: create or resume it with :meth:`open`.

    Ask/tell (any evaluator, in this process)::

        exp = hyperdock.Experiment.open("branin", space=SPACE, sampler="tpe", max_trials=40)
        for _ in range(40):
            trial = exp.ask()
            exp.tell(trial, loss=branin(**trial.params))
        print(exp.best.params)

    Local workers on a target (what ``hyperdock run`` does)::

        exp = hyperdock.Experiment.open(space=SPACE, target=hyperdock.Command("python t.py"))
        exp.run(workers=2)

    Trials asked here are leased to a worker of this process named ``api-HOST-PID-…``;
    a thread renews the lease while you evaluate. An asked trial that is never told
    (the process died) is reaped when the lease runs out, like any other. Close the
    experiment (or use it as a context manager) to unregister that worker.
    """

    def __init__(
        self,
        store: Store,
        record: ExperimentRecord,
        *,
        owns_store: bool = False,
        worker_id: str | None = None,
        renew: bool = True,
    ) -> None:
        """Wrap a stored experiment; use :meth:`open` instead.

        Args:
            store: The store holding it.
            record: The experiment as stored.
            owns_store: Close ``store`` with the experiment.
            worker_id: Lease asked trials to this (registered) worker instead of one of
                this object's own.
            renew: Renew the leases of asked trials from a thread. False (the HTTP API):
                only :meth:`report` renews them, so an evaluator that goes silent for the
                experiment's lease timeout loses its trial.
        """
        self.store = store
        self._record = record
        self._owns_store = owns_store
        #: Whether :meth:`open` created the experiment (False: it was resumed).
        self.created = False
        self._lock = threading.RLock()
        self._worker_id: str | None = worker_id
        self._renew = renew
        self._own_worker = False
        self._held: set[int] = set()
        self._stops: set[int] = set()
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._sup: Supervisor | None = None

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        name: str | None = None,
        *,
        store: Store | str | None = None,
        space: Any = None,
        target: Target | None = None,
        sampler: str | None = None,
        seed: int | None = None,
        max_trials: int | None = None,
        pruner: str | None = None,
        directions: Sequence[str] | None = None,
        objectives: Mapping[str, str] | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        lease_timeout: float | None = None,
        max_time: float | None = None,
        target_loss: float | None = None,
        max_failures: int | None = None,
        config_dirs: Sequence[str] = (),
    ) -> Experiment:
        """Create experiment ``name``, or resume it when it exists.

        Every setting left at ``None`` is "not given": a new experiment gets the
        command line's default (sampler tpe, or grid for a grid-only space; 50 trials;
        5 retries; a random seed; minimise; no pruner), a resumed one keeps what is
        stored. A given setting that differs from the stored one raises ``ConfigError``
        (only ``max_trials``, ``priority`` and ``max_failures`` may change on resume).

        Args:
            name: The experiment's name; None creates a new one with a unique default
                name (``<config stem or "experiment">-<time>``).
            store: A :class:`~hyperdock.storage.Store` or a store URL; None reads
                ``HYPERDOCK_STORE``, then uses ``sqlite:///./hyperdock.db``.
            space: A dict of :mod:`hyperdock.hp` nodes (or hyperopt ``hp.*``), a
                :class:`~hyperdock.space.Space`, or the path of a config module / JSON /
                YAML file.
            target: :func:`Command` or :func:`Image`; None for an experiment driven
                only by :meth:`ask` / :meth:`tell`.
            sampler: ``grid``, ``random``, ``tpe``, ``gp``, ``cmaes``, ``nsga2``.
            seed: Sampler seed.
            max_trials: Budget in trials.
            pruner: ``median``, ``asha`` (with options, as ``--pruner``) or ``none``.
            directions: ``minimize`` / ``maximize`` per unnamed objective.
            objectives: Named objectives, ``{"err": "minimize", "ms": "minimize"}``.
            retries: Attempts a failing trial gets again (default 5).
            timeout: Seconds one attempt of the target may run.
            priority: Claim priority against other experiments (default 0).
            lease_timeout: Seconds without a heartbeat before a running trial is lost.
            max_time: Seconds after which no new trial starts.
            target_loss: Stop starting trials once a loss this good is reached.
            max_failures: Trials in a row that may fail before the experiment stops.
            config_dirs: Folders searched for a config module named by ``space``.

        Raises:
            ConfigError: an invalid or conflicting setting, or the experiment does not
                exist and no space was given.
        """
        from hyperdock.supervisor import open_experiment, store_has

        def opening(st: Store) -> tuple[ExperimentRecord, bool]:
            nonlocal target
            loaded, named = _load_space(space, config_dirs) if space is not None else (None, None)
            meta = _meta(
                named,
                directions,
                objectives,
                {
                    "pruner": pruner,
                    "max_time": max_time,
                    "target_loss": target_loss,
                    "max_failures": max_failures,
                },
            )
            if target is not None and timeout is not None:
                target = dataclasses.replace(target, timeout=timeout)
            elif target is None and loaded is not None and not (name and store_has(st, name)):
                # A new experiment without a target is driven by ask/tell only.
                target = dataclasses.replace(ASK_TELL_TARGET, timeout=timeout)
            return open_experiment(
                st,
                name,
                space=loaded,
                target=target,
                sampler=sampler,
                seed=seed,
                max_trials=max_trials,
                max_retries=retries,
                priority=priority,
                lease_timeout=lease_timeout,
                meta=meta,
                name_base=_stem(space),
            )

        return cls._opened(store, opening)

    @classmethod
    def from_settings(
        cls, settings: ExperimentSettings, *, store: Store | str | None = None
    ) -> Experiment:
        """Create or resume the experiment the command line describes (``hyperdock
        run``, ``hyperdock supervisor``, ``hyperdock-supervisor``), by :meth:`open`'s
        rules.

        Unlike :meth:`open`, a new experiment needs a target (``image`` or
        ``command``): the command line makes no ask/tell experiments. ``timeout`` and
        ``target_env`` only count with a target.

        Args:
            settings: What the command line gave.
            store: As :meth:`open`'s ``store``.

        Raises:
            ConfigError: neither a config nor a name is given, there is no target for a
                new experiment, or a setting is invalid or differs from the stored one.
        """
        from hyperdock.supervisor import open_experiment

        s = settings

        def opening(st: Store) -> tuple[ExperimentRecord, bool]:
            loaded, named = _load_space(s.config, s.config_dirs) if s.config else (None, None)
            meta = _meta(
                named,
                s.directions,
                None,
                {
                    "pruner": s.pruner,
                    "max_time": s.max_time,
                    "target_loss": s.target_loss,
                    "max_failures": s.max_failures,
                },
            )
            # Without --name a config creates an experiment, which needs a target.
            target = (
                target_from(s.image, s.command, s.timeout, parse_env(s.target_env))
                if (s.image or s.command or (s.config and not s.name))
                else None
            )
            if not s.name and not s.config:
                raise ConfigError("give a CONFIG to create an experiment, or --name to resume one")
            return open_experiment(
                st,
                s.name,
                space=loaded,
                target=target,
                sampler=s.sampler,
                seed=s.seed,
                max_trials=s.max_trials,
                max_retries=s.retries,
                priority=s.priority,
                lease_timeout=s.lease_timeout,
                meta=meta,
                name_base=_stem(s.config),
            )

        return cls._opened(store, opening)

    @classmethod
    def _opened(
        cls,
        store: Store | str | None,
        opening: Callable[[Store], tuple[ExperimentRecord, bool]],
    ) -> Experiment:
        """The experiment ``opening`` creates or resumes in ``store`` (a store opened
        here from a URL is closed again when that fails)."""
        owns = not isinstance(store, Store)
        st = open_store(store) if not isinstance(store, Store) else store
        try:
            record, created = opening(st)
        except BaseException:
            if owns:
                st.close()
            raise
        exp = cls(st, record, owns_store=owns)
        exp.created = created
        return exp

    @classmethod
    def load(cls, name: str, *, store: Store | str | None = None) -> Experiment:
        """An existing experiment by name, id, unique name prefix or ``latest``.

        Raises:
            ExperimentNotFound: nothing matches.
        """
        from hyperdock.storage import resolve_experiment

        owns = not isinstance(store, Store)
        st = open_store(store) if not isinstance(store, Store) else store
        try:
            record = resolve_experiment(st, name)
        except BaseException:
            if owns:
                st.close()
            raise
        return cls(st, record, owns_store=owns)

    def close(self) -> None:
        """Stop the lease thread, unregister this process's worker, close an owned store.

        Trials asked and not told stay running until their lease runs out.
        """
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self._worker_id is not None and self._own_worker:
            try:
                self.store.unregister_worker(self._worker_id)
            except HyperdockError as exc:
                log.warning("could not unregister worker %s: %s", self._worker_id, exc)
            self._worker_id = None
        if self._owns_store:
            self.store.close()
            self._owns_store = False

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<hyperdock.Experiment {self.name!r} ({self._record.state.value})>"

    # -- identity -----------------------------------------------------------------------
    @property
    def record(self) -> ExperimentRecord:
        """The experiment as stored now (read again on every access)."""
        self._record = self.store.get_experiment(self._record.id)
        return self._record

    @property
    def id(self) -> int:
        """The store's id of the experiment."""
        return self._record.id

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self._record.name

    @property
    def state(self) -> ExperimentState:
        """``running``, ``done``, ``cancelled`` or ``failed``, as stored now."""
        return self.record.state

    @property
    def objectives(self) -> Objectives:
        """What the experiment optimises."""
        return Objectives.from_meta(self._record.meta)

    @property
    def space(self) -> Space:
        """The search space."""
        return Space.from_json(self._record.space)

    # -- ask / tell ---------------------------------------------------------------------
    def _supervisor(self) -> Supervisor:
        from hyperdock.supervisor import Supervisor

        if self._sup is None:
            self._sup = Supervisor(self.store, self.record)
        return self._sup

    def _ensure_worker(self) -> str:
        if self._worker_id is None:
            wid = f"api-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            self.store.register_worker(
                wid, host=socket.gethostname(), pid=os.getpid(), parallelism=1, meta={"api": True}
            )
            self._worker_id = wid
            self._own_worker = True
            self._beat_stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="hd-api-lease", daemon=True)
            self._beat.start()
        return self._worker_id

    def _heartbeat(self) -> None:
        # Renew well within the lease: a third of it, at most every 5 s.
        interval = min(5.0, max(self._record.lease_timeout / 3, 0.05))
        while not self._beat_stop.wait(interval):
            wid = self._worker_id
            if wid is None:
                return
            with self._lock:
                held = list(self._held)
            try:
                stops = self.store.heartbeat(wid, held)
            except HyperdockError as exc:  # a store outage: the next beat tries again
                log.warning("heartbeat failed: %s", exc)
                continue
            with self._lock:
                self._stops.update(stops)

    def ask(self) -> Trial:
        """Claim the next trial to evaluate: a queued one (see :meth:`enqueue`) or a new
        suggestion of the experiment's sampler, which counts every pending trial.

        Returns:
            The running trial (``.id``, ``.number``, ``.params``), leased to this process
            until :meth:`tell`.

        Raises:
            HyperdockError: the experiment is not running, its budget (``max_trials``)
                is spent, or its finite space has no point left.
        """
        from hyperdock.storage.retry import reap_unless_recovering

        with self._lock:
            wid = self._ensure_worker()
            sup = self._supervisor()
            reap_unless_recovering(self.store)
            for _ in range(100):  # another process may take what was queued: try again
                exp = self.record
                if exp.state is not ExperimentState.RUNNING:
                    raise HyperdockError(
                        f"experiment {exp.name!r} is {exp.state.value}; open it again with a "
                        "larger max_trials to continue, or start a new one"
                    )
                trial = self.store.claim(wid, experiment_id=exp.id)
                if trial is not None:
                    self._held.add(trial.id)
                    return trial
                created = sum(self.store.count_trials(exp.id).values())
                sup.experiment = exp
                budget = sup.budget
                if budget is not None and created >= budget:
                    raise HyperdockError(
                        f"experiment {exp.name!r} has all its {budget} trials; open it with a "
                        "larger max_trials to ask for more"
                    )
                if sup._queue(created, 1) == 0:
                    raise HyperdockError(
                        f"experiment {exp.name!r} has no point of its space left to try"
                    )
            raise HyperdockError("other processes took every trial queued; ask again")

    def _trial_id(self, trial: Trial | int) -> int:
        return trial.id if isinstance(trial, Trial) else int(trial)

    def tell(
        self,
        trial: Trial | int,
        loss: float | None = None,
        *,
        values: Sequence[float] | Mapping[str, float] | None = None,
        state: str | TrialState = "completed",
        error: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Trial:
        """End an asked trial with its result.

        Args:
            trial: The trial (or its id) from :meth:`ask`.
            loss: The loss (a completed trial of a one-objective experiment needs it).
            values: Every objective's value (a list in objective order, or by name).
            state: ``completed``, ``failed``, ``pruned`` or ``cancelled``.
            error: Why it failed (for people).
            data: Extra JSON kept with the trial (``trial.data``).

        Returns:
            The trial as stored now.

        Raises:
            ConfigError: a missing or non-finite loss, or values not matching the
                objectives.
            TrialNotRunning: the trial is not running under this process's lease; the
                store is left unchanged.
        """
        tid = self._trial_id(trial)
        final = _states(state)
        assert final is not None
        st = final[0]
        if not st.finished:
            raise ConfigError(f"tell() ends a trial: state must be final, got {st.value!r}")
        # Extra keys live under "data", as the worker keeps a target's extra loss.json keys.
        result: dict[str, Any] = {"data": dict(data)} if data else {}
        objectives = self.objectives
        if values is not None:
            if isinstance(values, Mapping):
                missing = [n for n in objectives.names if n not in values]
                if missing:
                    raise ConfigError(f"values lacks objective(s) {', '.join(missing)}")
                values = [values[n] for n in objectives.names]
            vals = [float(v) for v in values]
            if len(vals) != len(objectives.names):
                raise ConfigError(
                    f"values has {len(vals)} numbers; the experiment has "
                    f"{len(objectives.names)} objective(s): {', '.join(objectives.names)}"
                )
            result["values"] = vals
            loss = vals[0] if loss is None else loss
        elif st is TrialState.COMPLETED and objectives.multi:
            raise ConfigError(
                f"the experiment has objectives {', '.join(objectives.names)}; give values="
            )
        if loss is not None:
            loss = float(loss)
            if not math.isfinite(loss):
                raise ConfigError(f"the loss must be a finite number, got {loss}")
        if st is TrialState.COMPLETED and loss is None:
            raise ConfigError("a completed trial needs a loss: tell(trial, loss=...)")
        with self._lock:
            wid = self._worker_id
            ok = wid is not None and self.store.finish(
                tid, wid, state=st, loss=loss, result=result, error=error
            )
            if not ok:
                raise TrialNotRunning(self._not_running(tid))
            self._held.discard(tid)
            self._stops.discard(tid)
            self._close_if_done()
        return self.store.get_trial(tid)

    def _not_running(self, tid: int) -> str:
        try:
            now = self.store.get_trial(tid).state.value
        except HyperdockError:
            return f"no trial {tid} in {self.store.describe()}"
        return (
            f"trial {tid} is {now}, not running under this experiment's lease (told "
            "already, or its lease ran out); ask() for another trial"
        )

    def _close_if_done(self) -> None:
        """Mark the experiment done once its budget is spent and nothing is pending."""
        from hyperdock.storage.base import experiment_done_counts

        exp = self.record
        sup = self._supervisor()
        sup.experiment = exp
        budget = sup.budget
        counts = self.store.count_trials(exp.id)
        _, active = experiment_done_counts(counts)
        spent = budget is not None and sum(counts.values()) >= budget
        if exp.state is ExperimentState.RUNNING and spent and active == 0:
            self.store.set_experiment_state(exp.id, ExperimentState.DONE)

    def report(self, trial: Trial | int, step: int, loss: float) -> bool:
        """Record an intermediate loss of an asked trial.

        Returns:
            Whether the trial should stop now (the pruner's decision, or a cancel): end
            it with ``tell(trial, state="pruned")``.

        Raises:
            TrialNotRunning: the trial is not running under this process's lease.
        """
        tid = self._trial_id(trial)
        value = float(loss)
        if not math.isfinite(value):
            raise ConfigError(f"the loss must be a finite number, got {value}")
        with self._lock:
            wid = self._worker_id
            if wid is not None and not self._renew:
                self._stops.update(self.store.heartbeat(wid, [tid]))
            if wid is None or not self.store.add_progress(tid, wid, [(int(step), value)]):
                raise TrialNotRunning(self._not_running(tid))
            if tid in self._stops:
                return True
            sup = self._supervisor()
            if sup.pruner is not None:
                sup._prune()
            return self.store.get_trial(tid).stop_requested

    def enqueue(self, params: Mapping[str, Any]) -> Trial:
        """Queue a known point: it is claimed (by :meth:`ask` or the workers of
        :meth:`run`) after the trials queued before it and before every later one, so
        enqueued before a run, or under ask/tell, it is evaluated first.

        Args:
            params: Values of some or all parameters (top-level keys of the space's
                points); the missing ones are drawn from the space (the sampler's prior).

        Returns:
            The queued trial.

        Raises:
            ConfigError: a key the space does not have.
            SpaceError: a value the space cannot hold (out of range, not a multiple of
                its step, not one of a choice's options).
        """
        return self.enqueue_many([params])[0]

    def enqueue_many(self, points: Sequence[Mapping[str, Any]]) -> list[Trial]:
        """Queue several known points at once (all or none): see :meth:`enqueue`.

        Raises:
            ConfigError: a point has a key the space does not have, or a value it cannot
                hold (nothing is queued).
        """
        exp = self.record
        space = Space.from_json(exp.space)
        filled: list[dict[str, Any]] = []
        for params in points:
            prior = space.sample(random.Random(f"hyperdock:{exp.seed}:enqueue:{uuid.uuid4()}"))
            unknown = sorted(set(params) - set(prior))
            if unknown:
                raise ConfigError(
                    f"experiment {exp.name!r} has no parameter "
                    f"{', '.join(map(repr, unknown))}; its parameters are "
                    f"{', '.join(sorted(prior)) or '(none)'}"
                )
            point = json.loads(json.dumps({**prior, **dict(params)}))
            try:
                check_point(space, point)
            except SpaceError as exc:
                where = f"point {len(filled) + 1}: " if len(points) > 1 else ""
                raise SpaceError(
                    f"{where}{exc}; nothing was queued (experiment {exp.name!r})"
                ) from None
            filled.append(point)
        added = self.store.add_trials(exp.id, filled)
        if added and exp.state is ExperimentState.DONE:
            self.store.set_experiment_state(exp.id, ExperimentState.RUNNING)
        return added

    def clone(self, name: str) -> Experiment:
        """A new experiment ``name`` with this one's settings (space, target, sampler,
        seed, budget, retries, priority, lease timeout, objectives, pruner and stop
        conditions) and none of its trials. It shares this experiment's store.

        Example::

            again = exp.clone("branin-2")
            again.run(workers=2)

        Raises:
            ExperimentExists: ``name`` is taken.
            ConfigError: ``name`` is not a valid experiment name.
        """
        from hyperdock.supervisor import store_has, validate_name

        validate_name(name)
        if store_has(self.store, name):
            raise ExperimentExists(f"an experiment named {name!r} exists already")
        rec = self.record
        # A copy of settings that were validated when this experiment was created.
        record = self.store.create_experiment(
            name,
            space=rec.space,
            target=rec.target,
            sampler=rec.sampler,
            seed=rec.seed,
            max_trials=rec.max_trials,
            max_retries=rec.max_retries,
            priority=rec.priority,
            lease_timeout=rec.lease_timeout,
            meta={k: rec.meta[k] for k in _SETTINGS if k in rec.meta},
        )
        return Experiment(self.store, record)

    def warm_start(self, other: Experiment | str, *, k: int = 5) -> list[Trial]:
        """Queue the best ``k`` completed points of another experiment (by its loss, or
        its Pareto front first when it has several objectives). Points this
        experiment's space cannot hold are skipped (with a warning in the log); the
        next best take their place.

        Args:
            other: The experiment (or its name, in this store) to learn from.
            k: How many points.

        Returns:
            The trials queued.
        """
        from hyperdock.study import pareto_front

        source = (
            other if isinstance(other, Experiment) else Experiment.load(other, store=self.store)
        )
        objectives = source.objectives
        done = source.trials(TrialState.COMPLETED)
        if objectives.multi:
            ranked = pareto_front(done, objectives)
        else:
            sign = -1.0 if objectives.maximize else 1.0
            ranked = sorted(
                (t for t in done if t.loss is not None),
                key=lambda t: (sign * (t.loss or 0.0), t.id),
            )
        queued: list[Trial] = []
        skipped = 0
        for t in ranked:
            if len(queued) >= k:
                break
            try:
                queued.append(self.enqueue(t.params))
            except ConfigError:  # a point this experiment's space cannot hold
                skipped += 1
        if skipped:
            log.warning(
                "warm start of %r from %r: skipped %d point(s) outside this space",
                self.name, source.name, skipped,
            )  # fmt: skip
        return queued

    # -- running ------------------------------------------------------------------------
    def run(
        self,
        workers: int = 1,
        *,
        progress: bool = False,
        results: str | os.PathLike[str] = "results",
        heartbeat: float = 5.0,
        env: Mapping[str, str] | None = None,
    ) -> Experiment:
        """Run the experiment's target on local workers until it is over (what
        ``hyperdock run`` does): a supervisor and ``workers`` trial slots in this
        process.

        Args:
            workers: Trials run at once.
            progress: Draw the progress line on standard error.
            results: Folder for the trial folders.
            heartbeat: Seconds between worker heartbeats.
            env: Extra environment for the targets of this run.

        Returns:
            The experiment (read :attr:`best`, :meth:`trials` …).

        Raises:
            ConfigError: the experiment has no target (it is driven by ask/tell), or a
                setting is invalid.
            HyperdockError: the workers stopped before the experiment ended.
        """
        from hyperdock.supervisor import Supervisor
        from hyperdock.worker import (
            Worker,
            check_results_dir,
            check_worker_settings,
            default_runtime_factory,
        )

        exp = self.record
        if not exp.target.image and not exp.target.command:
            raise ConfigError(
                f"experiment {exp.name!r} has no target (it is driven by ask/tell): "
                "evaluate its trials with ask() and tell()"
            )
        check_worker_settings(workers, heartbeat)
        check_results_dir(os.fspath(results))
        wake = threading.Condition()
        supervisor = Supervisor(self.store, exp, poll_interval=1.0, wake=wake)
        worker = Worker(
            self.store,
            results_dir=os.fspath(results),
            parallelism=workers,
            env=dict(env or {}),
            experiment_id=exp.id,
            heartbeat_interval=heartbeat,
            poll_interval=1.0,
            runtime_factory=default_runtime_factory(),
            wake=wake,
            sweep_orphans=exp.target.kind == "docker",
            on_trial_end=lambda _tid, _state: supervisor.notify(),
        )
        stop = threading.Event()
        failed: list[BaseException] = []

        def work() -> None:
            # The supervisor must not wait for trials that no worker will run.
            try:
                worker.run()
            except BaseException as exc:
                failed.append(exc)
            finally:
                stop.set()
                supervisor.notify()

        thread = threading.Thread(target=work, name="hd-worker")
        display = _progress(supervisor, progress)
        with display:
            thread.start()
            try:
                ended = supervisor.run(stop)
            finally:
                worker.stop()
                thread.join()
        if failed and isinstance(failed[0], HyperdockError):
            raise failed[0]
        if failed:
            raise HyperdockError(f"the worker stopped on an unexpected error: {failed[0]}")
        if ended.state is ExperimentState.RUNNING:
            raise HyperdockError(
                "the workers stopped before the experiment ended (see the log); run it again "
                "to resume"
            )
        self._record = ended
        return self

    # -- reading ------------------------------------------------------------------------
    @property
    def best(self) -> Trial | None:
        """The best completed trial (the first of the Pareto front with several
        objectives); None before any completed."""
        objectives = self.objectives
        if objectives.multi:
            front = self.pareto_front
            return front[0] if front else None
        return self.store.best_trial(self.id, maximize=objectives.maximize)

    @property
    def pareto_front(self) -> list[Trial]:
        """The completed trials no other completed trial dominates, in trial order."""
        from hyperdock.study import pareto_front

        return pareto_front(self.trials(TrialState.COMPLETED), self.objectives)

    def trials(
        self, state: str | TrialState | Iterable[str | TrialState] | None = None
    ) -> list[Trial]:
        """The experiment's trials in creation order, optionally only those in ``state``
        (one state or several)."""
        return self.store.list_trials(self.id, states=_states(state))

    def counts(self) -> dict[str, int]:
        """Trials per state (every state, zeros included)."""
        return {s.value: n for s, n in self.store.count_trials(self.id).items()}

    def importances(self) -> dict[str, float]:
        """Parameter importances for the (first) objective; empty with fewer than two
        completed trials."""
        return dict(summarize(self.store, self.record)["importances"])

    def summary(self) -> dict[str, Any]:
        """State, counts, best trial and importances, as ``hyperdock best --json``."""
        return summarize(self.store, self.record)

    def to_pandas(self) -> Any:
        """The trials as a ``pandas.DataFrame``: one row per trial, parameters in
        ``params.*`` columns, objective values in ``values.*`` columns.

        Raises:
            HyperdockError: pandas is not installed (``pip install 'hyperdock[pandas]'``).
        """
        try:
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise HyperdockError(
                "to_pandas() needs pandas: pip install 'hyperdock[pandas]' (or pandas)"
            ) from None
        names = self.objectives.names
        rows = []
        for t in self.trials():
            row: dict[str, Any] = {
                "id": t.id,
                "number": t.number,
                "state": t.state.value,
                "loss": t.loss,
                "attempt": t.attempt + 1,
                "started_at": t.started_at,
                "finished_at": t.finished_at,
                "duration": t.duration,
                "error": t.error,
            }
            row.update({f"params.{k}": v for k, v in flat_params(t.params).items()})
            values = t.result.get("values")
            if len(names) > 1 and isinstance(values, list):
                row.update({f"values.{n}": v for n, v in zip(names, values, strict=False)})
            rows.append(row)
        return pd.DataFrame(rows)

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write every trial to ``path`` as ``hyperdock export`` does (``csv`` or
        ``json``; by default ``json`` for a ``.json`` path, else ``csv``); returns the
        path."""
        if format is None:
            format = "json" if Path(path).suffix.lower() == ".json" else "csv"
        text = export_text(self.record, self.trials(), format)
        out = Path(path)
        out.write_text(text)
        return out

    def cancel(self) -> bool:
        """Cancel the experiment: queued trials are cancelled, running ones stopped.

        Returns:
            False, changing nothing, when the experiment had ended already (``done``,
            ``failed`` or ``cancelled``: its outcome stays what it was).
        """
        if self.record.state is not ExperimentState.RUNNING:
            return False
        self.store.set_experiment_state(self.id, ExperimentState.CANCELLED)
        return True

    def delete(self) -> None:
        """Delete the experiment and all its trials from the store."""
        self.store.delete_experiment(self.id)


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(supervisor: Supervisor, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from hyperdock.display import ProgressLine

    return ProgressLine(supervisor, True)


def run(
    space: Any,
    *,
    command: Sequence[str] | str | None = None,
    image: str | None = None,
    workers: int = 1,
    progress: bool = False,
    results: str | os.PathLike[str] = "results",
    **settings: Any,
) -> Experiment:
    """Create (or resume, with ``name=``) an experiment and run it on local workers: the
    one-call form of :meth:`Experiment.open` + :meth:`Experiment.run`.

    Args:
        space: As :meth:`Experiment.open`'s ``space``.
        command: A local command target (argv list or a string).
        image: A Docker image target (``command`` then overrides its command).
        workers: Trials run at once.
        progress: Draw the progress line on standard error.
        results: Folder for the trial folders.
        **settings: Any other :meth:`Experiment.open` keyword (``name``, ``store``,
            ``sampler``, ``max_trials`` …).

    Example:
        >>> exp = hyperdock.run("space.py", command=["python", "train.py"], max_trials=20)
        >>> exp.best.params
    """
    if image:
        target = Image(image, command=command)
    elif command:
        target = Command(command)
    else:
        raise ConfigError("hyperdock.run() needs a target: command=[...] or image='name'")
    exp = Experiment.open(space=space, target=target, **settings)
    return exp.run(workers, progress=progress, results=results)


def list_experiments(store: Store | str | None = None) -> list[Experiment]:
    """Every experiment in ``store`` (a Store, a URL, or None for the default), oldest
    first."""
    st = open_store(store) if not isinstance(store, Store) else store
    return [Experiment(st, rec) for rec in st.list_experiments()]
