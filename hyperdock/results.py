"""Reading an experiment: the JSON shapes, summaries and exports that the command line
(``status``, ``trials``, ``best``, ``export``), the dashboard and
:class:`~hyperdock.experiment.Experiment`'s reading methods share.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from collections.abc import Sequence
from typing import Any

from hyperdock.errors import ConfigError, HyperdockError
from hyperdock.objectives import Objectives, flat_params
from hyperdock.space import Space
from hyperdock.storage import Store
from hyperdock.trial import Experiment as ExperimentRecord
from hyperdock.trial import ExperimentState, Trial, TrialState

log = logging.getLogger("hyperdock.experiment")

__all__ = [
    "IMPORTANCE_SAMPLE",
    "best_json",
    "best_trial_ids",
    "csv_fields",
    "experiment_duration",
    "export_text",
    "frame_rows",
    "importance_sample",
    "status_json",
    "summarize",
    "trial_json",
]


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
        "resumed_from": trial.resumed_from,
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
    from hyperdock.objectives import pareto_front

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
        if trials is None or len(trials) > IMPORTANCE_SAMPLE:
            trials = importance_sample(store, exp, counts)
        try:
            from hyperdock.study import importances  # numpy and optuna: only when asked

            summary["importances"] = importances(Space.from_json(exp.space), objectives, trials)
        except HyperdockError as exc:
            log.debug("no importances: %s", exc)
    return summary


#: Most completed trials that importances are computed on.
IMPORTANCE_SAMPLE = 2000


def importance_sample(
    store: Store, exp: ExperimentRecord, counts: dict[TrialState, int]
) -> list[Trial]:
    """The completed trials importances are computed on: all of them up to
    :data:`IMPORTANCE_SAMPLE`; beyond, the best quarter of that many plus a uniform
    sample of the others (seeded by the experiment's seed: the same trials each time,
    until more complete), so the cost does not grow with the experiment."""
    import random

    done = counts[TrialState.COMPLETED]
    if done <= IMPORTANCE_SAMPLE:
        return store.list_trials(exp.id, states=[TrialState.COMPLETED])
    maximize = Objectives.from_meta(exp.meta).maximize
    picked = {t.id: t for t in store.best_trials(exp.id, IMPORTANCE_SAMPLE // 4, maximize=maximize)}
    # Numbers run from 0 to the count of trials: draw among them, keep the completed.
    total = sum(counts.values())
    share = done / total
    draw = min(total, round((IMPORTANCE_SAMPLE - len(picked)) / share))
    numbers = random.Random(exp.seed).sample(range(total), draw)
    for t in store.trials_by_number(exp.id, numbers):
        if t.state is TrialState.COMPLETED and len(picked) < IMPORTANCE_SAMPLE:
            picked.setdefault(t.id, t)
    return sorted(picked.values(), key=lambda t: t.id)


def experiment_duration(store: Store, exp: ExperimentRecord, now: float) -> float:
    """Seconds from the experiment's creation to its last trial's end (to ``now`` while
    it runs)."""
    if exp.state is ExperimentState.RUNNING:
        return now - exp.created_at
    end = store.last_finished_at(exp.id)
    return (exp.created_at if end is None else end) - exp.created_at


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


def best_trial_ids(
    store: Store, exp: ExperimentRecord, trials: Sequence[Trial] | None = None
) -> set[int]:
    """Ids of the best trial (several objectives: the Pareto front among ``trials``, by
    default among every completed trial)."""
    from hyperdock.objectives import pareto_front

    objectives = Objectives.from_meta(exp.meta)
    if objectives.multi:
        if trials is None:
            trials = store.list_trials(exp.id, states=[TrialState.COMPLETED])
        return {t.id for t in pareto_front(trials, objectives)}
    best = store.best_trial(exp.id, maximize=objectives.maximize)
    return set() if best is None else {best.id}


def _iso(ts: float | None) -> str:
    """``2026-12-02T05:45:30Z`` (UTC, whole seconds); empty for None."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_fields(t: Trial) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A trial's CSV cells: its own fields (times in ISO 8601 UTC, attempt 1-based), its
    flattened parameters and the target's extra loss.json keys, each by column name
    (without the ``params.`` / ``data.`` prefix)."""
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
    return base, params, data


def export_text(exp: ExperimentRecord, rows: Sequence[Trial], fmt: str = "csv") -> str:
    """``rows`` (trials of ``exp``) as ``hyperdock export`` writes them, in one string.
    :func:`hyperdock.export.write_export` streams a whole experiment instead.

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
    flat = [csv_fields(t) for t in rows]
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


def frame_rows(trials: Sequence[Trial], names: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of :meth:`~hyperdock.experiment.Experiment.to_pandas`: one per trial,
    parameters in ``params.*`` columns and, with several objectives (``names``), their
    values in ``values.*`` columns."""
    rows: list[dict[str, Any]] = []
    for t in trials:
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
    return rows
