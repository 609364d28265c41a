"""Trials, experiments and what a target reports: the nouns every other module shares."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any, NamedTuple

from hyperdock.errors import LossFileError


class TrialState(enum.StrEnum):
    """Where a trial is in its life.

    ``queued → running → completed | failed | pruned | cancelled``; a running trial whose
    attempt failed (or whose worker vanished) goes back to ``queued`` while retries last.
    """

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PRUNED = "pruned"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the states a trial never leaves."""
        return self not in (TrialState.QUEUED, TrialState.RUNNING)


FINISHED_STATES: tuple[TrialState, ...] = tuple(s for s in TrialState if s.finished)

#: Keys of :attr:`Trial.result` that Hyperdock sets; the target's own are under ``data``.
RESULT_KEYS = frozenset(
    {"folder", "worker", "exit_code", "duration", "failure", "values", "step", "data"}
)


class ExperimentState(enum.StrEnum):
    """``running`` (trials are claimed) → ``done`` (budget spent), ``cancelled`` (by a
    person) or ``failed`` (``--max-failures`` trials in a row failed; the experiment's
    ``meta`` holds ``stop_reason`` and ``first_error``)."""

    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def stops_trials(self) -> bool:
        """True for the states that cancel queued trials and stop running ones."""
        return self in (ExperimentState.CANCELLED, ExperimentState.FAILED)


@dataclasses.dataclass(frozen=True)
class Target:
    """What an experiment runs for each trial.

    Attributes:
        image: Docker image (Docker target). ``None`` for a local command.
        command: argv. For a local command it is the command; for Docker it overrides
            the image's command when given.
        timeout: Seconds one attempt may run; ``None`` for no limit.
        env: Extra ``KEY=VALUE`` environment for the target.
    """

    image: str | None = None
    command: tuple[str, ...] | None = None
    timeout: float | None = None
    env: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """``"docker"`` or ``"process"``."""
        return "docker" if self.image else "process"

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form, as stored."""
        return {
            "image": self.image,
            "command": list(self.command) if self.command is not None else None,
            "timeout": self.timeout,
            "env": list(self.env),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        """Inverse of :meth:`to_json`."""
        command = data.get("command")
        return cls(
            image=data.get("image"),
            command=tuple(command) if command is not None else None,
            timeout=data.get("timeout"),
            env=tuple(data.get("env") or ()),
        )

    def describe(self) -> str:
        """One line for people."""
        if self.image:
            text = f"image {self.image}"
            if self.command:
                text += " " + " ".join(self.command)
        elif self.command:
            text = "command " + " ".join(self.command)
        else:  # an experiment driven by ask/tell (hyperdock.Experiment) runs nothing
            text = "no target (ask/tell)"
        return text


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One named search, as held in the store.

    Attributes:
        id: Store-assigned id.
        name: Unique name (``--name``).
        space: The search space in :meth:`hyperdock.space.Space.to_json` form.
        target: What runs for each trial.
        sampler: Sampler name (``grid``, ``random`` …).
        seed: Seed of the sampler (always set: a random one is drawn when not given).
        max_trials: Budget: how many trials (parameter sets) to evaluate at most.
        max_retries: How many times a trial's attempt may fail before it is ``failed``.
        priority: Higher first when workers claim across experiments.
        lease_timeout: Seconds without a heartbeat after which a running trial is lost.
        state: See :class:`ExperimentState`.
        created_at: Unix time.
        meta: Free-form settings (direction, notes …).
    """

    id: int
    name: str
    space: Any
    target: Target
    sampler: str
    seed: int
    max_trials: int | None
    max_retries: int
    priority: int
    lease_timeout: float
    state: ExperimentState
    created_at: float
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One parameter set of an experiment and what became of it.

    Attributes:
        id: Store-wide id (the container hostname, the folder suffix).
        experiment_id: Owning experiment.
        number: 0-based index within the experiment, in creation order.
        params: Parameter values (a JSON object).
        state: See :class:`TrialState`.
        attempt: How many attempts were started before the current one (0 on the first).
        worker_id: The worker holding the lease while running.
        loss: Final loss of a completed trial.
        result: What Hyperdock recorded of the last attempt (``folder``, ``worker``,
            ``exit_code``, ``duration`` …), with the target's extra keys of loss.json
            under ``data`` (see :attr:`data`).
        error: Why the last attempt failed, for people.
        history: One entry per ended attempt: worker, start, end, state, message.
        created_at: Unix time the trial was queued.
        started_at: Unix time of the current (or last) attempt's start.
        finished_at: Unix time the trial reached a finished state.
        heartbeat_at: Last heartbeat of the running attempt.
        stop_requested: A stop was asked for (cancel, prune); the worker obeys.
        prune_requested: The stop was asked for by the pruner: the trial ends ``pruned``.
    """

    id: int
    experiment_id: int
    number: int
    params: dict[str, Any]
    state: TrialState
    attempt: int = 0
    worker_id: str | None = None
    loss: float | None = None
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    stop_requested: bool = False
    prune_requested: bool = False

    @property
    def duration(self) -> float | None:
        """Seconds of the last attempt, once finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def data(self) -> dict[str, Any]:
        """The extra keys the target wrote into ``loss.json`` (``result["data"]``).

        Trials stored before the target's keys had their own namespace kept them beside
        Hyperdock's fields: for those, every key that is not one of
        :data:`RESULT_KEYS`.
        """
        data = self.result.get("data")
        if isinstance(data, dict):
            return data
        return {k: v for k, v in self.result.items() if k not in RESULT_KEYS}

    @property
    def resumed_from(self) -> int | None:
        """The step the last attempt resumed from, as its ``loss.json`` said
        (``"resumed_from": 5``: it found a checkpoint of step 5); None if it did not."""
        step = self.data.get("resumed_from")
        if isinstance(step, bool) or not isinstance(step, int | float) or step < 0:
            return None
        return int(step) if float(step).is_integer() else None

    @property
    def folder(self) -> str | None:
        """Host path of the last attempt's trial folder, as the worker recorded it."""
        folder = self.result.get("folder")
        return folder if isinstance(folder, str) and folder else None


class TrialSummary(NamedTuple):
    """The part of a :class:`Trial` an adaptive sampler's mirror reads
    (:meth:`hyperdock.storage.base.Store.iter_trial_summaries`): cheaper to read and
    build than a whole trial.

    Attributes:
        id: See :class:`Trial`.
        number: See :class:`Trial`.
        state: See :class:`Trial`.
        params: See :class:`Trial`.
        loss: See :class:`Trial`.
        result: The trial's ``result`` when asked for, else empty.
    """

    id: int
    number: int
    state: TrialState
    params: dict[str, Any]
    loss: float | None
    result: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Worker:
    """A worker process as the registry knows it."""

    id: str
    host: str
    pid: int
    parallelism: int
    started_at: float
    heartbeat_at: float
    running: tuple[int, ...] = ()
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Why the worker runs no trials now (its host is at fault), or None.
    status: str | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        """As ``hyperdock workers --json`` and the dashboard's ``/api/workers`` show it;
        ``now`` (epoch seconds) gives ``heartbeat_age``."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "parallelism": self.parallelism,
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
            "heartbeat_age": max(now - self.heartbeat_at, 0.0),
            "running": list(self.running),
            "status": self.status,
        }


@dataclasses.dataclass(frozen=True)
class LossReport:
    """What a target reported in ``loss.json``.

    Attributes:
        ok: False when the target itself declared the trial failed (``"state": "fail"``).
        loss: The loss (``None`` when the target declared failure without one).
        extra: The other keys of the JSON object, kept as trial data.
        values: Several objectives' values (``{"loss": [a, b]}`` or ``{"losses":
            {"err": a, "latency": b}}``); ``loss`` is then the first.
        names: The objectives' names when they were given (``"losses"``).
    """

    ok: bool
    loss: float | None
    extra: dict[str, Any]
    values: tuple[float, ...] | None = None
    names: tuple[str, ...] | None = None

    def ordered(self, names: tuple[str, ...]) -> list[float]:
        """The objective values in the order of ``names`` (the experiment's objectives).

        Raises:
            LossFileError: the report does not hold exactly those objectives.
        """
        if self.values is None:
            if self.loss is None:
                raise LossFileError("loss.json holds no loss")
            values: tuple[float, ...] = (self.loss,)
        else:
            values = self.values
        if self.names is not None:
            missing = [n for n in names if n not in self.names]
            if missing or len(self.names) != len(names):
                raise LossFileError(
                    f'loss.json "losses" has {list(self.names)}; the experiment optimises '
                    f"{list(names)}. Write one value per objective, by name."
                )
            by_name = dict(zip(self.names, values, strict=True))
            return [by_name[n] for n in names]
        if len(values) != len(names):
            raise LossFileError(
                f"loss.json holds {len(values)} loss value(s); the experiment optimises "
                f"{len(names)} objective(s) ({', '.join(names)})."
            )
        return list(values)


_OK_WORDS = {"ok", "success", "succeeded", "completed", "done"}
_FAIL_WORDS = {"fail", "failed", "failure", "error"}


def _number(value: Any, where: str, text: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LossFileError(
            f"{where} is not a number ({json.dumps(value)[:80]}); loss.json held {_show(text)}. "
            'Write a number, e.g. {"loss": 0.12, "state": "ok"}.'
        )
    if not math.isfinite(value):
        raise LossFileError(
            f"{where} is {value}, not a finite number; loss.json held {_show(text)}. "
            'Write {"state": "fail"} for a diverged run, or a finite loss.'
        )
    return float(value)


def _show(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= 120 else text[:117] + "...")


def _reject_constants(token: str) -> float:
    return float(token)  # NaN/Infinity parse to floats; _number rejects them


def parse_loss(text: str) -> LossReport:
    """Parse the contents of ``loss.json``.

    Accepts ``{"loss": 0.12, "state": "ok"}`` (v0.4+), ``{"loss": 0.12, "status": "ok"}``
    (v0.1, hyperopt style) and a bare number. ``"state"``/``"status"`` of ``"fail"``
    marks a failed trial. Extra keys are kept.

    Raises:
        LossFileError: the text is empty, not JSON, or holds no finite numeric loss;
            the message quotes what the file held.
    """
    if not text.strip():
        raise LossFileError(
            "loss.json is empty: the target must write its loss there, "
            'e.g. {"loss": 0.12, "state": "ok"}.'
        )
    try:
        data = json.loads(text, parse_constant=_reject_constants)
    except ValueError as exc:
        raise LossFileError(
            f"loss.json is not valid JSON ({exc}); it held {_show(text)}. "
            'Write e.g. {"loss": 0.12, "state": "ok"}.'
        ) from None
    if not isinstance(data, dict):
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return LossReport(ok=True, loss=_number(data, "the loss", text), extra={})
        raise LossFileError(
            f"loss.json must hold a JSON object or a number; it held {_show(text)}. "
            'Write e.g. {"loss": 0.12, "state": "ok"}.'
        )
    extra = dict(data)
    state = extra.pop("state", None)
    status = extra.pop("status", None)
    word = state if state is not None else status
    known = _OK_WORDS | _FAIL_WORDS
    if word is not None and (not isinstance(word, str) or word.lower() not in known):
        raise LossFileError(
            f'loss.json has "state" {json.dumps(word)}; use "ok" or "fail". It held {_show(text)}.'
        )
    failed = word is not None and word.lower() in _FAIL_WORDS
    if "losses" in extra and not failed:
        named = extra.pop("losses")
        if not isinstance(named, dict) or not named:
            raise LossFileError(
                f'"losses" must map objective names to numbers; loss.json held {_show(text)}. '
                'Write e.g. {"losses": {"err": 0.1, "latency": 12.5}}.'
            )
        values = tuple(_number(v, f'"losses" {k!r}', text) for k, v in named.items())
        extra.pop("loss", None)
        return LossReport(
            ok=True,
            loss=values[0],
            extra=extra,
            values=values,
            names=tuple(str(k) for k in named),
        )
    if isinstance(extra.get("loss"), list) and not failed:
        raw_list = extra.pop("loss")
        if not raw_list:
            raise LossFileError(f'"loss" is an empty list; loss.json held {_show(text)}.')
        values = tuple(_number(v, f'"loss"[{i}]', text) for i, v in enumerate(raw_list))
        return LossReport(ok=True, loss=values[0], extra=extra, values=values)
    if "loss" not in extra:
        if failed:
            return LossReport(ok=False, loss=None, extra=extra)
        raise LossFileError(
            f'loss.json has no "loss" key; it held {_show(text)}. '
            'Write e.g. {"loss": 0.12, "state": "ok"}.'
        )
    raw = extra.pop("loss")
    if failed:
        loss = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
        if loss is not None and not math.isfinite(loss):
            loss = None
        return LossReport(ok=False, loss=None if loss is None else float(loss), extra=extra)
    return LossReport(ok=True, loss=_number(raw, '"loss"', text), extra=extra)
