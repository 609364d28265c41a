"""Fill a store with many finished trials fast, for scale tests and benchmarks.

The trials are written straight into the store's tables (SQL: one multi-row insert per
batch; MongoDB: ``add_trials`` then one bulk update per batch), not run through
claims: 100,000 trials take seconds. They look like trials a worker ran: parameters,
a loss (rounded, so that some tie), a result with extra data, a history entry, and a
mix of states (mostly completed; some failed, pruned, cancelled, queued, running).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from hyperdock.jsonutil import dumps
from hyperdock.storage.base import Store
from hyperdock.targets import Command
from hyperdock.trial import Experiment

__all__ = ["SPACE", "fill_experiment", "synthetic_rows"]

#: The space of the synthetic trials (its JSON form, as an experiment stores it).
SPACE: dict[str, Any] = {
    "x": {"$hp": "uniform", "label": "x", "low": 0, "high": 1},
    "layers": {"$hp": "choice", "label": "layers", "options": [1, 2, 3, 4]},
    "optimizer": {"$hp": "choice", "label": "optimizer", "options": ["adam", "sgd"]},
}

#: (state, share) of the synthetic trials; the rest is completed.
_MIX = (
    ("failed", 0.04),
    ("pruned", 0.03),
    ("cancelled", 0.01),
    ("queued", 0.01),
    ("running", 0.01),
)


def synthetic_rows(n: int, seed: int = 0, start: float = 1.7e9) -> Iterator[dict[str, Any]]:
    """``n`` trials' fields in number order: state, params, loss, result, times, error."""
    rng = random.Random(seed)
    for number in range(n):
        draw = rng.random()
        state = "completed"
        for name, share in _MIX:
            if draw < share:
                state = name
                break
            draw -= share
        params = {
            "x": rng.random(),
            "layers": rng.randint(1, 4),
            "optimizer": rng.choice(["adam", "sgd"]),
        }
        created = start + number * 0.5
        started = None if state == "queued" else created + 1.0
        finished = None if state in ("queued", "running") else created + 1.0 + rng.random() * 30
        loss = round(rng.random() * 10, 3) if state in ("completed", "pruned") else None
        error = "exit code 1: boom" if state == "failed" else None
        note = "a" * rng.randint(0, 40)
        result = {"loss": loss, "data": {"accuracy": rng.random(), "epochs": 3, "note": note}}
        history = (
            [
                {
                    "attempt": 0,
                    "worker": "w1",
                    "started_at": started,
                    "ended_at": finished,
                    "state": state,
                    "message": error,
                }
            ]
            if finished is not None
            else []
        )
        yield {
            "number": number,
            "state": state,
            "params": params,
            "loss": loss,
            "result": result if finished is not None else {},
            "error": error,
            "history": history,
            "created_at": created,
            "started_at": started,
            "finished_at": finished,
            "worker_id": "w1" if started is not None else None,
        }


def fill_experiment(
    store: Store, name: str, n: int, *, seed: int = 0, batch: int = 5000
) -> Experiment:
    """Create experiment ``name`` holding ``n`` synthetic trials (see the module)."""
    exp = store.create_experiment(
        name,
        space=SPACE,
        target=Command(["true"]),
        sampler="random",
        seed=seed,
        max_trials=n,
    )
    rows = synthetic_rows(n, seed)
    while True:
        chunk = [row for _, row in zip(range(batch), rows, strict=False)]
        if not chunk:
            break
        if store.backend == "mongodb":
            _mongo_batch(store, exp, chunk)
        else:
            _sql_batch(store, exp, chunk)
    if store.backend == "postgresql":
        with store._tx(write=False) as cur:  # type: ignore[attr-defined]
            cur.execute("ANALYZE hd_trials")
    return exp


_SQL_COLUMNS = (
    "experiment_id, number, params, state, worker_id, loss, result, error, history, "
    "created_at, started_at, finished_at, heartbeat_at"
)


def _sql_batch(store: Any, exp: Experiment, chunk: list[dict[str, Any]]) -> None:
    values = [
        (
            exp.id,
            r["number"],
            dumps(r["params"]),
            r["state"],
            r["worker_id"],
            r["loss"],
            dumps(r["result"]),
            r["error"],
            dumps(r["history"]),
            r["created_at"],
            r["started_at"],
            r["finished_at"],
            r["started_at"],
        )
        for r in chunk
    ]
    marks = "(" + ", ".join("?" * 13) + ")"
    with store._tx() as cur:
        for start in range(0, len(values), 500):  # within SQLite's variable limit
            part = values[start : start + 500]
            many = ", ".join([marks] * len(part))
            cur.execute(
                store._q(f"INSERT INTO hd_trials ({_SQL_COLUMNS}) VALUES {many}"),
                [v for row in part for v in row],
            )
        cur.execute(
            store._q("UPDATE hd_experiments SET next_number = ? WHERE id = ?"),
            (chunk[-1]["number"] + 1, exp.id),
        )


def _mongo_batch(store: Any, exp: Experiment, chunk: list[dict[str, Any]]) -> None:
    from hyperdock.storage.mongo_base import pack

    made = store.add_trials(exp.id, [r["params"] for r in chunk])
    for trial, r in zip(made, chunk, strict=True):
        # One update each: mongomock's bulk_write does not take pymongo 4.9's operations.
        fields = {k: r[k] for k in ("state", "loss", "error", "history", "worker_id")}
        fields |= {k: r[k] for k in ("created_at", "started_at", "finished_at")}
        store._trials.update_one({"_id": trial.id}, {"$set": fields | pack("result", r["result"])})
