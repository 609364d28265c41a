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

The rest of the API lives by concept, and is importable from here as well:
:mod:`hyperdock.targets` (:func:`Command`, :func:`Image` and the command line's targets),
:mod:`hyperdock.results` (the JSON shapes, summaries and exports the command line and the
dashboard print) and :func:`hyperdock.points.read_points` (``--params``).
:meth:`Experiment.run` runs on :mod:`hyperdock._running`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperdock._asktell import (
    Lease,
    claim_next,
    close_if_done,
    not_running,
    parse_states,
    tell_result,
)
from hyperdock._running import run_locally
from hyperdock.errors import ConfigError, ExperimentExists, HyperdockError
from hyperdock.objectives import Objectives
from hyperdock.points import complete_points, read_points
from hyperdock.resources import Resources
from hyperdock.results import (
    best_json,
    best_trial_ids,
    experiment_duration,
    export_text,
    frame_rows,
    status_json,
    summarize,
    trial_json,
)
from hyperdock.space import Space
from hyperdock.storage import Store, open_store
from hyperdock.targets import ASK_TELL_TARGET, Command, Image, parse_env, target_from
from hyperdock.trial import Experiment as ExperimentRecord
from hyperdock.trial import ExperimentState, Target, Trial, TrialState

if TYPE_CHECKING:
    from hyperdock.supervisor import Supervisor

log = logging.getLogger("hyperdock.experiment")

#: Settings an experiment keeps in its meta (what a clone copies; the rest is its run).
_SETTINGS = ("objectives", "pruner", "max_time", "target_loss", "max_failures", "resources")

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
    #: ``--cpus-per-trial`` and the other per-trial resources (None: not given).
    resources: Resources | None = None
    #: ``KEY=VALUE`` items (see :func:`~hyperdock.targets.parse_env`), stored with the target.
    target_env: Sequence[str] = ()
    config_dirs: Sequence[str] = ()


# -- the experiment -----------------------------------------------------------------------
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
        self._lease = Lease(store, worker_id, renew)
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
        resources: Resources | None = None,
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
            resources: What each trial may use (:class:`~hyperdock.resources.Resources`:
                CPUs, memory, shared memory, GPUs), honoured by every worker.
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
                    "resources": resources.to_meta() if resources is not None else None,
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
                    "resources": s.resources.to_meta() if s.resources is not None else None,
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
        self._lease.close()
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

        lease = self._lease
        with lease.lock:
            wid = lease.ensure_worker(self._record.lease_timeout)
            sup = self._supervisor()
            reap_unless_recovering(self.store)
            trial = claim_next(self.store, wid, sup, lambda: self.record)
            lease.held.add(trial.id)
            return trial

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
        st, loss, result = tell_result(self.objectives, state, loss, values, data)
        lease = self._lease
        with lease.lock:
            wid = lease.worker_id
            ok = wid is not None and self.store.finish(
                tid, wid, state=st, loss=loss, result=result, error=error
            )
            if not ok:
                raise TrialNotRunning(not_running(self.store, tid))
            lease.held.discard(tid)
            lease.stops.discard(tid)
            exp = self.record
            close_if_done(self.store, self._supervisor(), exp)
        return self.store.get_trial(tid)

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
        lease = self._lease
        with lease.lock:
            wid = lease.worker_id
            if wid is not None and not lease.renew:
                lease.stops.update(self.store.heartbeat(wid, [tid]))
            if wid is None or not self.store.add_progress(tid, wid, [(int(step), value)]):
                raise TrialNotRunning(not_running(self.store, tid))
            if tid in lease.stops:
                return True
            sup = self._supervisor()
            if sup.pruner is not None:
                sup._prune()
            return self.store.get_trial(tid).stop_requested

    def enqueue(self, params: Mapping[str, Any], *, front: bool = False) -> Trial:
        """Queue a known point: it is claimed (by :meth:`ask` or the workers of
        :meth:`run`) after the trials queued before it and before every later one, so
        enqueued before a run, or under ask/tell, it is evaluated first. With ``front``
        it goes before the trials queued already too (a sampler's suggestions waiting
        for a free worker).

        Example::

            exp.enqueue({"lr": 0.003, "layers": 4}, front=True)  # a point you trust

        Args:
            params: Values of some or all parameters (top-level keys of the space's
                points); the missing ones are drawn from the space (the sampler's prior).
            front: Put it at the front of the experiment's queue.

        Returns:
            The queued trial.

        Raises:
            ConfigError: a key the space does not have.
            SpaceError: a value the space cannot hold (out of range, not a multiple of
                its step, not one of a choice's options).
        """
        return self.enqueue_many([params], front=front)[0]

    def enqueue_many(
        self, points: Sequence[Mapping[str, Any]], *, front: bool = False
    ) -> list[Trial]:
        """Queue several known points at once (all or none), in their order: see
        :meth:`enqueue`.

        Raises:
            ConfigError: a point has a key the space does not have, or a value it cannot
                hold (nothing is queued).
        """
        exp = self.record
        filled = complete_points(Space.from_json(exp.space), exp, points)
        added = self.store.add_trials(exp.id, filled, front=front)
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
        from hyperdock.objectives import pareto_front

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
        launcher: str = "local",
        launcher_options: Mapping[str, Any] | None = None,
        gpus: str | None = None,
        artifacts: str | None = None,
        artifacts_endpoint: str | None = None,
        checkpoint_sync: float | None = None,
        keep_checkpoints: str | None = None,
    ) -> Experiment:
        """Run the experiment's target until it is over (what ``hyperdock run``
        does): a supervisor and a worker with ``workers`` trial slots in this process,
        the trials running here or, with ``launcher``, as cluster jobs.

        Example::

            exp.run(workers=50, launcher="slurm",
                    launcher_options={"sbatch_args": ["--partition=gpu"]})

        Args:
            workers: Trials run at once.
            progress: Draw the progress line on standard error.
            results: Folder for the trial folders.
            heartbeat: Seconds between worker heartbeats.
            env: Extra environment for the targets of this run.
            launcher: ``local`` (a process or container here), ``slurm`` (an sbatch job
                per attempt) or ``kubernetes`` (a Job per attempt of an image target).
            launcher_options: Keyword arguments of the launcher's runtime
                (:class:`~hyperdock.runtimes.slurm.SlurmRuntime`: ``sbatch_args``,
                ``template``, ``container_engine``;
                :class:`~hyperdock.runtimes.kubernetes.KubernetesRuntime`:
                ``namespace``, ``volume``, ``pod_template`` …).
            gpus: This machine's GPUs for local Docker targets (``"0,1,2,3"``), shared
                out by the experiment's ``gpus`` per trial.
            artifacts: Artifact store for the trials' files (``file:///shared/path``,
                ``s3://bucket/prefix``), stored with the experiment (``--artifacts``).
            artifacts_endpoint: Its S3-compatible server's URL (``--artifacts-endpoint``).
            checkpoint_sync: Seconds between uploads of a running trial's checkpoint
                folder (``--checkpoint-sync``; stored).
            keep_checkpoints: ``best``, ``all`` or ``none`` (``--keep-checkpoints``; stored).

        Returns:
            The experiment (read :attr:`best`, :meth:`trials` …).

        Raises:
            ConfigError: the experiment has no target (it is driven by ask/tell), or a
                setting is invalid.
            HyperdockError: the workers stopped before the experiment ended.
        """
        from hyperdock.artifacts.settings import DataSettings, save_data_settings

        given = DataSettings.given(artifacts, artifacts_endpoint, checkpoint_sync, keep_checkpoints)
        self._record = save_data_settings(self.store, self.record, given)
        self._record = run_locally(
            self.store,
            self.record,
            workers=workers,
            progress=progress,
            results=results,
            heartbeat=heartbeat,
            env=env,
            launcher=launcher,
            launcher_options=launcher_options,
            gpus=gpus,
            artifacts=artifacts,
            artifacts_endpoint=artifacts_endpoint,
        )
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
        from hyperdock.objectives import pareto_front

        return pareto_front(self.trials(TrialState.COMPLETED), self.objectives)

    def trials(
        self,
        state: str | TrialState | Iterable[str | TrialState] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Trial]:
        """The experiment's trials in creation order, optionally only those in ``state``
        (one state or several); with ``limit``, one page of them, newest first, after
        skipping ``offset``. :meth:`iter_trials` streams every trial."""
        if limit is not None:
            return self.store.list_trials_page(
                self.id, limit=limit, offset=offset, states=parse_states(state)
            )
        return self.store.list_trials(self.id, states=parse_states(state))

    def iter_trials(
        self, state: str | TrialState | Iterable[str | TrialState] | None = None
    ) -> Iterator[Trial]:
        """Every trial (optionally only those in ``state``) in creation order, read from
        the store a batch at a time: memory stays constant however many there are."""
        return self.store.iter_trials(self.id, states=parse_states(state))

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
        return pd.DataFrame(frame_rows(self.trials(), names))

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write every trial to ``path`` as ``hyperdock export`` does (``csv`` or
        ``json``; by default ``json`` for a ``.json`` path, else ``csv``); returns the
        path."""
        from hyperdock.export import write_export

        if format is None:
            format = "json" if Path(path).suffix.lower() == ".json" else "csv"
        out = Path(path)
        with out.open("w", encoding="utf-8", newline="") as f:  # streamed: constant memory
            write_export(self.store, self.record, format, f.write)
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


def run(
    space: Any,
    *,
    command: Sequence[str] | str | None = None,
    image: str | None = None,
    workers: int = 1,
    progress: bool = False,
    results: str | os.PathLike[str] = "results",
    launcher: str = "local",
    launcher_options: Mapping[str, Any] | None = None,
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
        launcher, launcher_options: Where trials run (see :meth:`Experiment.run`).
        **settings: Any other :meth:`Experiment.open` keyword (``name``, ``store``,
            ``sampler``, ``max_trials`` …), or of :meth:`Experiment.run`'s trial data
            (``artifacts``, ``artifacts_endpoint``, ``checkpoint_sync``,
            ``keep_checkpoints``).

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
    data_keys = ("artifacts", "artifacts_endpoint", "checkpoint_sync", "keep_checkpoints")
    data = {key: settings.pop(key) for key in data_keys if key in settings}
    exp = Experiment.open(space=space, target=target, **settings)
    return exp.run(
        workers,
        progress=progress,
        results=results,
        launcher=launcher,
        launcher_options=launcher_options,
        **data,
    )


def list_experiments(store: Store | str | None = None) -> list[Experiment]:
    """Every experiment in ``store`` (a Store, a URL, or None for the default), oldest
    first."""
    st = open_store(store) if not isinstance(store, Store) else store
    return [Experiment(st, rec) for rec in st.list_experiments()]
