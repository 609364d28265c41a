"""The experiment page's data: its detail (aggregates, the plot sample, curves, the
last importances), the key that says when it changed, and the trial table's pages.

Every read here is bounded: at 100,000 trials a reply costs what it costs at 2,000 (see
:mod:`hyperdock.dashboard.sampling`), and importances are never computed on the request
path (see :mod:`hyperdock.dashboard.importances`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hyperdock.dashboard.api import (
    MAX_CURVES,
    ApiError,
    experiment_row,
    find_experiment,
    pick_curves,
    thin,
    trial_brief,
)
from hyperdock.dashboard.importances import MAX_SAMPLE as IMPORTANCE_SAMPLE
from hyperdock.dashboard.importances import ImportanceService, spread
from hyperdock.dashboard.sampling import PlotCache, PlotSample, plot_sample
from hyperdock.errors import HyperdockError
from hyperdock.objectives import Objectives, pareto_front
from hyperdock.space import Space
from hyperdock.storage.base import Store
from hyperdock.trial import Experiment, Trial, TrialState

#: Running trials whose intermediate losses the fingerprint follows at most.
LIVE_CURVES = 50
#: Rows of the trial table a request may ask for at most.
MAX_PAGE = 500
#: Orders of the trial table.
TABLE_ORDERS = ("newest", "oldest", "best")


def _curve_candidates(sample: PlotSample, maximize: bool) -> list[int] | None:
    """Ids whose learning curves a sampled reply reads (None: every trial's): the
    running ones, the best completed ones and the newest pruned ones of the sample."""
    if not sample.sampled:
        return None
    trials = sample.trials
    running = [t.id for t in trials if t.state is TrialState.RUNNING]
    done = [t for t in trials if t.state is TrialState.COMPLETED and t.loss is not None]
    done.sort(key=lambda t: (-t.loss if maximize else t.loss, t.id))  # type: ignore[operator]
    pruned = [t.id for t in reversed(trials) if t.state is TrialState.PRUNED]
    return running[:MAX_CURVES] + [t.id for t in done[:MAX_CURVES]] + pruned[:MAX_CURVES]


def importance_sample(store: Store, exp: Experiment, plots: PlotCache | None) -> list[Trial]:
    """The completed trials importances are computed on: at most
    :data:`~hyperdock.dashboard.importances.MAX_SAMPLE`, from the plot sample (the best
    ones first, then an even spread)."""
    maximize = Objectives.from_meta(exp.meta).maximize
    sample = plot_sample(store, exp, store.count_trials(exp.id), maximize=maximize, cache=plots)
    done = [t for t in sample.trials if t.state is TrialState.COMPLETED]
    return spread(done, IMPORTANCE_SAMPLE, set(sample.best_ids))


def importances_state(
    store: Store,
    exp: Experiment,
    counts: dict[TrialState, int],
    service: ImportanceService,
    plots: PlotCache | None = None,
) -> dict[str, Any]:
    """The last importances of ``exp`` (see :meth:`ImportanceService.state`); queues a
    background computation when they are out of date and old enough."""
    completed = counts[TrialState.COMPLETED]
    service.maybe_refresh(exp, completed, lambda: importance_sample(store, exp, plots))
    return service.state(exp, completed)


def request_importances(
    store: Store, name: str, service: ImportanceService, plots: PlotCache | None = None
) -> dict[str, Any]:
    """``POST /api/experiments/<name>/importances``: compute them now, in the
    background; replies at once with the last ones (status ``pending``)."""
    exp = find_experiment(store, name)
    completed = store.count_trials(exp.id)[TrialState.COMPLETED]
    service.request(exp, completed, lambda: importance_sample(store, exp, plots))
    return service.state(exp, completed)


def get_importances(
    store: Store, name: str, service: ImportanceService, plots: PlotCache | None = None
) -> dict[str, Any]:
    """``GET /api/experiments/<name>/importances``: the last ones computed, their status
    and age (never computed here)."""
    exp = find_experiment(store, name)
    return importances_state(store, exp, store.count_trials(exp.id), service, plots)


#: Importances of callers that bring no service of their own.
_default_importances = ImportanceService()


def experiment_detail(
    store: Store,
    name: str,
    *,
    plots: PlotCache | None = None,
    importance_service: ImportanceService | None = None,
    snap: Snapshot | None = None,
) -> dict[str, Any]:
    """``GET /api/experiments/<name>``: summary, trials (brief rows: every trial up to
    :data:`~hyperdock.dashboard.sampling.MAX_PLOT_TRIALS`, else a sample; ``trials_total``
    and ``sampled`` say which), curves (the :data:`MAX_CURVES` most telling, thinned),
    the last importances computed (``importances``, and ``importances_state``), Pareto
    front (of the trials sent).

    Args:
        store: The store.
        name: The experiment's name.
        plots: Keeps finished sampled trials between calls (see
            :class:`~hyperdock.dashboard.sampling.PlotCache`).
        importance_service: Computes importances in the background.
        snap: The experiment's :class:`Snapshot` when the caller read it already.
    """
    snap = snap or snapshot(store, name)
    exp, counts = snap.exp, snap.counts
    objectives = Objectives.from_meta(exp.meta)
    sample = plot_sample(
        store, exp, counts, maximize=objectives.maximize, cache=plots, running=snap.running
    )
    trials = sample.trials
    completed = [t for t in trials if t.state is TrialState.COMPLETED]
    summary = experiment_row(store, exp, counts)
    parameters: list[dict[str, Any]] = []
    constants: list[str] = []
    try:
        space = Space.from_json(exp.space)
        space_text = space.explain()
        parameters = [v.to_json() for v in space.views()]
        constants = sorted(space.constants())
    except HyperdockError:
        space_text = json.dumps(exp.space)
    summary.update(
        {
            "seed": exp.seed,
            "max_retries": exp.max_retries,
            "lease_timeout": exp.lease_timeout,
            "space": exp.space,
            "space_text": space_text,
            "parameters": parameters,
            "constants": constants,
            "meta": exp.meta,
        }
    )
    progress = store.list_progress(exp.id, trial_ids=_curve_candidates(sample, objectives.maximize))
    curves = pick_curves(trials, progress, objectives.maximize)
    service = importance_service or _default_importances
    imp = importances_state(store, exp, counts, service, plots)
    out: dict[str, Any] = {
        "experiment": summary,
        "trials": [
            trial_brief(
                t,
                objectives,
                progress[t.id][-1] if t.state is TrialState.PRUNED and progress.get(t.id) else None,
            )
            for t in trials
        ],
        "trials_total": sample.total,
        "sampled": sample.sampled,
        "best_ids": list(sample.best_ids),
        "progress": {str(tid): thin(progress[tid]) for tid in curves},
        "progress_total": len(progress),
        "importances": imp.pop("values"),
        "importances_state": imp,
        "pareto_front": None,
    }
    if objectives.multi:
        front = pareto_front(completed, objectives)
        out["pareto_front"] = [
            {"id": t.id, "number": t.number, "values": objectives.values(t)} for t in front
        ]
    return out


@dataclass(frozen=True)
class Snapshot:
    """What a poll reads first, shared by the fingerprint and the reply it keys.

    Attributes:
        exp: The experiment.
        counts: Its trials per state.
        running: Its running trials.
        live: Intermediate losses of the running trials, when at most
            :data:`LIVE_CURVES` run (else None: their curves are refreshed by the
            counts changing or the detail cache's time to live).
    """

    exp: Experiment
    counts: dict[TrialState, int]
    running: list[Trial]
    live: dict[int, list[tuple[int, float]]] | None


def snapshot(store: Store, name: str) -> Snapshot:
    """Read experiment ``name``'s :class:`Snapshot`."""
    exp = find_experiment(store, name)
    counts = store.count_trials(exp.id)
    running = (
        store.list_trials(exp.id, states=[TrialState.RUNNING]) if counts[TrialState.RUNNING] else []
    )
    live = None
    if len(running) <= LIVE_CURVES:
        live = store.list_progress(exp.id, trial_ids=[t.id for t in running]) if running else {}
    return Snapshot(exp, counts, running, live)


def detail_fingerprint(
    store: Store,
    name: str,
    importance_service: ImportanceService | None = None,
    snap: Snapshot | None = None,
) -> tuple[Any, ...]:
    """A cheap key that changes whenever :func:`experiment_detail` would: the
    experiment's record, its trial counts per state, its running trials (stop
    requests, attempts, intermediate losses while few run) and its importances'
    state. Finished trials never change."""
    snap = snap or snapshot(store, name)
    exp, counts = snap.exp, snap.counts
    pts = snap.live or {}
    live = tuple(
        (t.id, t.attempt, t.stop_requested, t.prune_requested, tuple(pts.get(t.id, ())))
        for t in snap.running
    )
    imp = importances_state(store, exp, counts, importance_service or _default_importances)
    return (
        exp.id,
        exp.name,
        exp.created_at,
        exp.state.value,
        exp.max_trials,
        exp.priority,
        exp.max_retries,
        tuple(sorted((s.value, n) for s, n in counts.items())),
        live,
        (imp["version"], imp["status"], imp["computed_at"]),
    )


def trial_page(store: Store, name: str, query: dict[str, list[str]]) -> dict[str, Any]:
    """``GET /api/experiments/<name>/trials?limit=&offset=&order=&state=``: one page of
    the trial table, read from the store by an indexed query. ``order`` is ``newest``
    (default), ``oldest`` or ``best`` (completed trials by loss); ``state`` keeps the
    trials in that state. Replies ``{"total", "offset", "limit", "order", "state",
    "trials"}`` (``total``: rows in the whole table so ordered and filtered)."""
    exp = find_experiment(store, name)
    objectives = Objectives.from_meta(exp.meta)

    def one(key: str, default: str) -> str:
        return (query.get(key) or [default])[-1]

    try:
        limit = int(one("limit", "100"))
        offset = int(one("offset", "0"))
    except ValueError:
        raise ApiError(400, "limit and offset must be whole numbers") from None
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise ApiError(400, f"limit must be 1 to {MAX_PAGE} and offset 0 or more")
    order = one("order", "newest")
    if order not in TABLE_ORDERS:
        raise ApiError(400, f"order must be one of {', '.join(TABLE_ORDERS)}, got {order!r}")
    state_name = one("state", "")
    try:
        state = TrialState(state_name) if state_name else None
    except ValueError:
        known = ", ".join(s.value for s in TrialState)
        raise ApiError(400, f"state must be one of {known}, got {state_name!r}") from None
    counts = store.count_trials(exp.id)
    if order == "best":
        if state not in (None, TrialState.COMPLETED):
            raise ApiError(400, "order=best lists completed trials only")
        rows = store.best_trials(exp.id, offset + limit, maximize=objectives.maximize)[offset:]
        total = counts[TrialState.COMPLETED]
    else:
        states = None if state is None else [state]
        rows = store.list_trials_page(
            exp.id, limit=limit, offset=offset, newest_first=order == "newest", states=states
        )
        total = sum(counts.values()) if state is None else counts[state]
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "order": order,
        "state": state_name or None,
        "trials": [trial_brief(t, objectives) for t in rows],
    }
