"""Adaptive samplers at scale: time per suggestion and supervisor memory against the
number of completed trials, with optuna's TPE on an RDB storage as the peer.

A store (SQLite, a file in a temporary folder) holds one experiment per size with
``n`` completed trials of a 5-parameter space (four floats in [-5, 5], a 3-way choice;
loss = the sphere function plus the choice's index), written through the store API
(``add_trials``, then the trials set completed in one batched UPDATE per 5,000 instead
of 100,000 claims). For each size and sampler (tpe, gp, cmaes):

* load: a fresh :class:`~hyperdock.supervisor.Supervisor` (what a resumed supervisor
  does) loads the mirror, streamed from the store;
* suggest: the median time of ``--suggestions`` suggestions (each for a new trial
  number; the earlier ones stay pending, as queued trials would);
* RSS (``--rss``): in a subprocess, the peak RSS (VmHWM) of a supervisor that loaded
  the largest experiment and made the suggestions (goal <= 200 MB at 100,000).

Peer (``--optuna N``): optuna's TPESampler (multivariate, constant liar, 64
candidates, as Hyperdock's) on an RDB storage (SQLite, a file) holding the same N
trials; the median time of ``study.ask()`` plus the parameters' suggestions.

Usage: ``python bench/scale_samplers.py [--sizes 1000,10000,50000,100000] [--optuna
50000] [--rss]``. Prints a table and writes ``bench/out/scale_samplers.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
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


def optuna_ask(n: int, k: int, folder: Path) -> dict[str, float]:
    """optuna's TPE on an RDB (SQLite) storage holding ``n`` completed trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    d = optuna.distributions
    dists = {f"x{i}": d.FloatDistribution(-5, 5) for i in range(4)}
    dists["act"] = d.CategoricalDistribution(ACTS)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder}/optuna.db")
    sampler = optuna.samplers.TPESampler(
        seed=0, multivariate=True, constant_liar=True, n_ei_candidates=64
    )
    study = optuna.create_study(storage=storage, sampler=sampler, study_name="peer")
    rng = random.Random(0)
    t0 = time.perf_counter()
    batch = []
    for _ in range(n):
        p = draw(rng)
        batch.append(optuna.trial.create_trial(params=p, distributions=dists, value=loss_of(p)))
        if len(batch) == BATCH:
            study.add_trials(batch)
            batch = []
    study.add_trials(batch)
    fill_s = time.perf_counter() - t0
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        trial = study.ask()
        for name, dist in dists.items():
            if isinstance(dist, d.CategoricalDistribution):
                trial.suggest_categorical(name, ACTS)
            else:
                trial.suggest_float(name, dist.low, dist.high)
        times.append(time.perf_counter() - t0)
    return {"fill_s": fill_s, "ask_ms": 1000 * statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000,100000")
    ap.add_argument("--samplers", default="tpe,gp,cmaes")
    ap.add_argument("--suggestions", type=int, default=5)
    ap.add_argument("--optuna", type=int, default=0, help="peer at this many trials")
    ap.add_argument("--rss", action="store_true", help="supervisor RSS at the largest size")
    ap.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], args.suggestions)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.samplers.split(",")
    out: dict[str, Any] = {"suggest": [], "rss": None, "optuna": None}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/store.db"
        with open_store(url) as store:
            for n in sizes:
                t0 = time.perf_counter()
                fill(store, f"e{n}", n, "tpe")
                fill_s = time.perf_counter() - t0
                for kind in kinds:
                    # The sampler is read from the record the supervisor is given.
                    exp = dataclasses.replace(store.get_experiment(f"e{n}"), sampler=kind)
                    row = {"trials": n, "sampler": kind, "fill_s": fill_s}
                    row.update(suggest_times(store, exp, args.suggestions))
                    out["suggest"].append(row)
                    print(
                        f"{n:>7} {kind:<6} load {row['load_s']:6.2f} s  "
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
            print(f"supervisor RSS at {sizes[-1]}: {out['rss']}", flush=True)
        if args.optuna:
            out["optuna"] = {"trials": args.optuna, **optuna_ask(args.optuna, 5, Path(tmp))}
            print(f"optuna TPE ask at {args.optuna}: {out['optuna']}", flush=True)
    dest = Path(__file__).parent / "out" / "scale_samplers.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
