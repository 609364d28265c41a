"""Adaptive samplers at scale: time per suggestion and supervisor memory against the
number of completed trials, with optuna's TPE on an RDB storage as the peer.

Per database engine (``--engines sqlite,postgresql``: a file in a temporary folder; fresh
databases on the server of ``--postgres-url``, dropped afterwards), a store holds one
experiment per size with ``n`` completed trials of a 5-parameter space (four floats in
[-5, 5], a 3-way choice; loss = the sphere function plus the choice's index), written
through the store API (``add_trials``, then the trials set completed in one batched
UPDATE per 5,000 instead of 100,000 claims). For each size and sampler (tpe, gp, cmaes):

* load: a fresh :class:`~hyperdock.supervisor.Supervisor` (what a resumed supervisor
  does) loads the mirror, streamed from the store;
* suggest: the median time of ``--suggestions`` suggestions (each for a new trial
  number; the earlier ones stay pending, as queued trials would); with ``--repeat R``,
  the median over R fresh supervisors;
* RSS (``--rss``): in a subprocess, the peak RSS (VmHWM) of a supervisor that loaded
  the largest experiment and made the suggestions (goal <= 200 MB at 100,000).

Peer (``--optuna N``), on the same engine in the same run: optuna's TPESampler
(multivariate, constant liar, 64 candidates, as Hyperdock's) on an RDB storage holding
the same N trials (the same parameters and values, written into optuna's tables in one
transaction, see :func:`optuna_fill`). A freshly loaded study's first ``ask`` (it reads
every trial), the median of the next asks (plus the parameters' suggestions; the asked
trials stay running, as Hyperdock's pending ones), ``study.trials`` and ``best_trial``;
the ratio of Hyperdock's suggestion to optuna's ask at N is printed (goal <= 0.2).

Usage: ``python bench/scale_samplers.py [--sizes 1000,10000,50000,100000] [--engines
sqlite,postgresql] [--optuna 50000] [--repeat 3] [--rss]``. Prints a table (and the load
average) and writes ``bench/out/scale_samplers.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hyperdock import hp
from hyperdock.jsonutil import dumps
from hyperdock.space import Space
from hyperdock.storage import Store, open_store
from hyperdock.supervisor import Supervisor
from hyperdock.targets import Command
from hyperdock.trial import Experiment

SPACE = Space.from_obj(
    {
        **{f"x{i}": hp.uniform(f"x{i}", -5.0, 5.0) for i in range(4)},
        "act": hp.choice("act", ["relu", "tanh", "gelu"]),
    }
)
ACTS = ["relu", "tanh", "gelu"]
BATCH = 5000


def loss_of(params: dict[str, Any]) -> float:
    """The synthetic objective: sphere plus the choice's index."""
    return sum(params[f"x{i}"] ** 2 for i in range(4)) + ACTS.index(params["act"])


def draw(rng: random.Random) -> dict[str, Any]:
    """Random parameters of :data:`SPACE`."""
    return {**{f"x{i}": rng.uniform(-5, 5) for i in range(4)}, "act": rng.choice(ACTS)}


def fill(store: Store, name: str, n: int, sampler: str, seed: int = 0) -> Experiment:
    """Experiment ``name`` with ``n`` completed random trials (see the module)."""
    exp = store.create_experiment(
        name, space=SPACE.to_json(), target=Command(["true"]), sampler=sampler,
        seed=seed, max_trials=None,
    )  # fmt: skip
    rng = random.Random(seed)
    now = time.time()
    for first in range(0, n, BATCH):
        params = [draw(rng) for _ in range(min(BATCH, n - first))]
        trials = store.add_trials(exp.id, params, first_number=first)
        rows = [
            ("completed", (loss := loss_of(t.params)), dumps({"loss": loss}), now, now, t.id)
            for t in trials
        ]
        with store._tx() as cur:  # type: ignore[attr-defined]
            cur.executemany(
                store._q(  # type: ignore[attr-defined]
                    "UPDATE hd_trials SET state = ?, loss = ?, result = ?, started_at = ?, "
                    "finished_at = ? WHERE id = ?"
                ),
                rows,
            )
    return exp


def suggest_times(store: Store, exp: Experiment, k: int) -> dict[str, float]:
    """Load a fresh supervisor's mirror, then ``k`` suggestions: seconds."""
    t0 = time.perf_counter()
    sup = Supervisor(store, exp)
    sup.sync_mirror()
    load = time.perf_counter() - t0
    times = []
    base = sum(store.count_trials(exp.id).values())
    for i in range(k):
        t0 = time.perf_counter()
        params = sup.sampler.suggest(base + i, [])
        times.append(time.perf_counter() - t0)
        assert params is not None
    return {"load_s": load, "suggest_ms": 1000 * statistics.median(times)}


def rss_child(url: str, name: str, k: int) -> None:
    """(Subprocess) a supervisor on ``name``: load, ``k`` suggestions, print VmHWM."""
    with open_store(url) as store:
        exp = store.get_experiment(name)
        before = _vm("VmRSS")
        suggest_times(store, exp, k)
        sup = Supervisor(store, exp)  # a second one shows the mirror alone
        sup.sync_mirror()
        assert sup.mirror is not None
        print(
            json.dumps(
                {
                    "vmhwm_mb": _vm("VmHWM") / 1024,
                    "baseline_mb": before / 1024,
                    "history_mb": sup.mirror.history.nbytes() / 2**20,
                }
            )
        )


def _vm(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def optuna_fill(study: Any, n: int) -> None:
    """``n`` completed trials (the same parameters and values as :func:`fill`) written
    into optuna's RDB schema in one transaction: rows of ``trials``, ``trial_params`` and
    ``trial_values`` as optuna's own ``add_trials`` writes them (which takes about a
    minute per 1,000 trials here, too slow for 50,000)."""
    import datetime

    import optuna
    from optuna.storages._rdb import models

    d = optuna.distributions
    dists: dict[str, Any] = {f"x{i}": d.FloatDistribution(-5, 5) for i in range(4)}
    dists["act"] = d.CategoricalDistribution(ACTS)
    dist_json = {name: d.distribution_to_json(dist) for name, dist in dists.items()}
    storage = study._storage
    storage = getattr(storage, "_backend", storage)  # optuna wraps the RDB in a cache
    trials_t = models.TrialModel.__table__
    params_t = models.TrialParamModel.__table__
    values_t = models.TrialValueModel.__table__
    finite = models.TrialValueModel.TrialValueType.FINITE
    rng = random.Random(0)
    now = datetime.datetime.now()
    with storage.engine.begin() as conn:
        for first in range(0, n, BATCH):
            batch = [draw(rng) for _ in range(min(BATCH, n - first))]
            ids = conn.execute(
                trials_t.insert().returning(trials_t.c.trial_id, sort_by_parameter_order=True),
                [
                    {"number": first + i, "study_id": study._study_id, "state": "COMPLETE",
                     "datetime_start": now, "datetime_complete": now}
                    for i in range(len(batch))
                ],
            ).scalars().all()  # fmt: skip
            conn.execute(
                params_t.insert(),
                [
                    {"trial_id": tid, "param_name": name,
                     "param_value": dists[name].to_internal_repr(p[name]),
                     "distribution_json": dist_json[name]}
                    for tid, p in zip(ids, batch, strict=True) for name in dists
                ],
            )  # fmt: skip
            conn.execute(
                values_t.insert(),
                [
                    {"trial_id": tid, "objective": 0, "value": loss_of(p), "value_type": finite}
                    for tid, p in zip(ids, batch, strict=True)
                ],
            )  # fmt: skip


def optuna_peer(url: str, n: int, k: int) -> dict[str, float]:
    """optuna's TPE on an RDB storage at ``url`` holding ``n`` completed trials: the
    first ``ask`` (optuna reads the trials), the median of ``k`` more, ``study.trials``
    and ``best_trial`` from a fresh storage (seconds or milliseconds)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def tpe() -> Any:
        return optuna.samplers.TPESampler(
            seed=0, multivariate=True, constant_liar=True, n_ei_candidates=64
        )

    study = optuna.create_study(storage=url, sampler=tpe(), study_name=f"peer{n}")
    t0 = time.perf_counter()
    optuna_fill(study, n)
    fill_s = time.perf_counter() - t0
    out: dict[str, float] = {"fill_s": fill_s}
    # A fresh process's view: the first ask reads every trial (optuna caches them after).
    fresh = optuna.load_study(storage=url, study_name=f"peer{n}", sampler=tpe())
    times = []
    for _ in range(k + 1):
        t0 = time.perf_counter()
        trial = fresh.ask()
        for name in [f"x{i}" for i in range(4)]:
            trial.suggest_float(name, -5.0, 5.0)
        trial.suggest_categorical("act", ACTS)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    trials = optuna.load_study(storage=url, study_name=f"peer{n}").trials
    out["trials_s"] = time.perf_counter() - t0
    assert len(trials) == n + k + 1 and trials[7].params == draw_nth(7)
    t0 = time.perf_counter()
    best = optuna.load_study(storage=url, study_name=f"peer{n}").best_trial
    out["best_trial_s"] = time.perf_counter() - t0
    assert best.value == min(t.value for t in trials if t.value is not None)
    out["first_ask_s"] = times[0]
    out["ask_ms"] = 1000 * statistics.median(times[1:])
    return out


def draw_nth(i: int) -> dict[str, Any]:
    """The parameters of trial ``i`` of :func:`fill` (and :func:`optuna_fill`)."""
    rng = random.Random(0)
    for _ in range(i):
        draw(rng)
    return draw(rng)


@contextlib.contextmanager
def engine_urls(engine: str, tmp: str, admin_url: str) -> Iterator[tuple[str, str]]:
    """``(hyperdock store URL, optuna storage URL)`` on a fresh database of ``engine``
    (``sqlite``: files in ``tmp``; ``postgresql``: two databases on the server of
    ``admin_url``, dropped afterwards)."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp}/store.db", f"sqlite:///{tmp}/optuna.db"
        return
    import urllib.parse

    import psycopg

    names = [f"hd_scale_{os.getpid()}_{kind}" for kind in ("hyperdock", "optuna")]
    parts = urllib.parse.urlsplit(admin_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        hd = urllib.parse.urlunsplit(parts._replace(path=f"/{names[0]}"))
        opt = urllib.parse.urlunsplit(
            parts._replace(scheme="postgresql+psycopg", path=f"/{names[1]}")
        )
        yield hd, opt
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _median_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def run_engine(engine: str, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """Hyperdock's samplers and the optuna peer on one database engine."""
    sizes = [int(s) for s in args.sizes.split(",")]
    out: dict[str, Any] = {"engine": engine, "suggest": [], "rss": None, "optuna": None}
    with engine_urls(engine, tmp, args.postgres_url) as (url, optuna_url):
        with open_store(url) as store:
            for n in sizes:
                t0 = time.perf_counter()
                fill(store, f"e{n}", n, "tpe")
                fill_s = time.perf_counter() - t0
                for kind in args.samplers.split(","):
                    # The sampler is read from the record the supervisor is given.
                    exp = dataclasses.replace(store.get_experiment(f"e{n}"), sampler=kind)
                    runs = [suggest_times(store, exp, args.suggestions) for _ in range(args.repeat)]
                    row = {"trials": n, "sampler": kind, "fill_s": fill_s, **_median_rows(runs)}
                    out["suggest"].append(row)
                    print(
                        f"{engine:<10} {n:>7} {kind:<6} load {row['load_s']:6.2f} s  "
                        f"suggest {row['suggest_ms']:7.1f} ms",
                        flush=True,
                    )
        if args.rss:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            res = subprocess.run(
                [sys.executable, __file__, "--rss-child", url, f"e{sizes[-1]}",
                 "--suggestions", str(args.suggestions)],
                capture_output=True, text=True, check=True, env=env,
            )  # fmt: skip
            out["rss"] = {"trials": sizes[-1], **json.loads(res.stdout.strip().splitlines()[-1])}
            print(f"{engine:<10} supervisor RSS at {sizes[-1]}: {out['rss']}", flush=True)
        if args.optuna:
            peer = optuna_peer(optuna_url, args.optuna, args.suggestions * args.repeat)
            out["optuna"] = {"trials": args.optuna, **peer}
            ours = [r for r in out["suggest"] if r["trials"] == args.optuna]
            for r in ours:
                r["vs_optuna_tpe_ask"] = r["suggest_ms"] / peer["ask_ms"]
            print(f"{engine:<10} optuna TPE at {args.optuna}: {out['optuna']}", flush=True)
            for r in ours:
                print(
                    f"{engine:<10} {r['sampler']} suggestion / optuna TPE ask at {args.optuna}: "
                    f"{r['vs_optuna_tpe_ask']:.3f}x",
                    flush=True,
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000,100000")
    ap.add_argument("--samplers", default="tpe,gp,cmaes")
    ap.add_argument("--engines", default="sqlite", help="sqlite and/or postgresql")
    ap.add_argument(
        "--postgres-url",
        default=os.environ.get("HYPERDOCK_TEST_POSTGRES_URL")
        or "postgresql://postgres:postgres@127.0.0.1:5432/postgres",
        help="a server where fresh databases may be created (and dropped)",
    )
    ap.add_argument("--suggestions", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1, help="fresh supervisors per figure")
    ap.add_argument("--optuna", type=int, default=0, help="peer at this many trials")
    ap.add_argument("--rss", action="store_true", help="supervisor RSS at the largest size")
    ap.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], args.suggestions)
        return
    load = os.getloadavg()
    out: dict[str, Any] = {"loadavg_start": load, "engines": []}
    print(f"load average at start: {load[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            out["engines"].append(run_engine(engine, args, tmp))
    out["loadavg_end"] = os.getloadavg()
    print(f"load average at end: {out['loadavg_end'][0]:.1f}", flush=True)
    dest = Path(__file__).parent / "out" / "scale_samplers.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
