"""Does a standalone supervisor keep up with its workers? Refilled against pre-filled.

Eight simulated worker processes (``--workers``) loop ``claim`` → ``finish(completed)``
on PostgreSQL with no-op trials (a real store client each, a cycle is what a worker
costs the store per trial); when a claim finds the queue empty, a worker waits
``--worker-poll`` seconds (``hyperdock worker``'s default: 1 s) as a real one does. Two
runs of ``--trials`` trials each, alternated ``--repeat`` times in one invocation:

* **pre-filled**: every trial is queued before the workers start; they drain it;
* **refilled**: an experiment with the random sampler and the same budget, a standalone
  supervisor (:class:`~hyperdock.supervisor.Supervisor` in a process of its own, as
  ``hyperdock supervisor --poll 1`` runs it) queuing the trials as the workers go.

Reported: trials per second of each (from the moment every worker is connected to the
last finish), their ratio (goal: refilled >= 0.8x pre-filled), the times a worker found
the queue empty, and the largest margin the supervisor queued ahead.

Usage: ``python bench/refill.py [--trials 4000] [--workers 8] [--repeat 3]``. Prints a
table and writes ``bench/out/refill.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from claims import DEFAULT_POSTGRES_URL, Scratch

from hyperdock import hp
from hyperdock.space import Space
from hyperdock.storage import open_store
from hyperdock.supervisor import Supervisor
from hyperdock.trial import ExperimentState, Target, TrialState

HERE = Path(__file__).resolve().parent
GOAL = 0.8
SPACE = Space.from_obj({"x": hp.uniform("x", 0.0, 1.0)})


def worker(url: str, exp_id: int, name: str, poll: float, ready: Any, out: Any) -> None:
    """Claim and finish trials until the experiment is over (refilled) or the queue is
    empty (pre-filled, ``poll`` 0); report ids, the last finish and empty claims."""
    try:
        store = open_store(url)
        ready.wait()
        claimed: list[int] = []
        empty = 0
        end = time.monotonic()
        while True:
            trial = store.claim(name, experiment_id=exp_id)
            if trial is None:
                if poll <= 0 or store.get_experiment(exp_id).state is not ExperimentState.RUNNING:
                    break
                empty += 1
                time.sleep(poll)
                continue
            claimed.append(trial.id)
            loss = float(trial.params.get("x", 0.0))
            if not store.finish(trial.id, name, state=TrialState.COMPLETED, loss=loss):
                raise RuntimeError(f"{name} lost the lease on trial {trial.id}")
            end = time.monotonic()
        store.close()
        out.put((claimed, end, empty))
    except Exception as exc:
        ready.abort()
        out.put(f"{name}: {type(exc).__name__}: {exc}")


def supervise(url: str, exp_id: int, poll: float, ready: Any, out: Any) -> None:
    """A standalone supervisor: drive the experiment to its end; report the largest
    margin it queued ahead."""
    try:
        store = open_store(url)
        sup = Supervisor(store, store.get_experiment(exp_id), poll_interval=poll)
        sup.step()  # running before the workers come, as a standalone one is
        ready.wait()
        most = 0
        stop = threading.Event()

        def watch() -> None:
            nonlocal most
            while not stop.wait(0.05):
                most = max(most, sup.queue_ahead)

        threading.Thread(target=watch, daemon=True).start()
        sup.run()
        stop.set()
        store.close()
        out.put(("supervisor", max(most, sup.queue_ahead)))
    except Exception as exc:
        ready.abort()
        out.put(f"supervisor: {type(exc).__name__}: {exc}")


def run(
    url: str, trials: int, workers: int, *, refill: bool, poll: float, worker_poll: float
) -> dict[str, Any]:
    """One run on a fresh database; returns its figures."""
    with open_store(url) as store:
        exp = store.create_experiment(
            "bench",
            space=SPACE.to_json(),
            target=Target(command=("true",)),
            sampler="random",
            seed=0,
            max_trials=trials,
        )
        if not refill:
            params = [{"x": i / trials} for i in range(trials)]
            for start in range(0, trials, 1000):
                store.add_trials(exp.id, params[start : start + 1000])
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(workers + 1 + int(refill))
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=worker,
            args=(url, exp.id, f"w{i}", worker_poll if refill else 0.0, ready, out),
        )
        for i in range(workers)
    ]
    if refill:
        procs.append(ctx.Process(target=supervise, args=(url, exp.id, poll, ready, out)))
    for p in procs:
        p.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a process failed: see below
        ready.wait(timeout=300)
    start = time.monotonic()
    results = []
    for _ in procs:
        results.append(out.get(timeout=900))
        if isinstance(results[-1], str):  # the others may wait for it forever
            for p in procs:
                p.terminate()
            raise SystemExit(f"a process failed: {results[-1]}")
    for p in procs:
        p.join(timeout=60)
    done = [r for r in results if r[0] != "supervisor"]
    margin = next((r[1] for r in results if r[0] == "supervisor"), None)
    took = max(end for _, end, _ in done) - start
    ids = Counter(tid for claimed, _, _ in done for tid in claimed)
    with open_store(url) as store:
        counts = store.count_trials(exp.id)
    return {
        "trials_per_s": round(sum(ids.values()) / took, 1),
        "seconds": round(took, 3),
        "completed": counts[TrialState.COMPLETED],
        "created": sum(counts.values()),
        "duplicates": sum(n - 1 for n in ids.values()),
        "empty_claims": sum(e for _, _, e in done),
        "largest_margin": margin,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs (median)")
    parser.add_argument("--poll", type=float, default=1.0, help="the supervisor's --poll")
    parser.add_argument("--worker-poll", type=float, default=1.0, help="the workers' --poll")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("HYPERDOCK_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help="a role that may create databases (scratch ones are made and dropped)",
    )
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"prefilled": [], "refilled": []}
    for _ in range(args.repeat):  # alternated: both see the same machine
        for key in runs:
            with Scratch(args.postgres_url, "hd_bench_refill") as db:
                runs[key].append(
                    run(
                        db.url,
                        args.trials,
                        args.workers,
                        refill=key == "refilled",
                        poll=args.poll,
                        worker_poll=args.worker_poll,
                    )
                )
    med = {k: sorted(v, key=lambda r: r["trials_per_s"])[len(v) // 2] for k, v in runs.items()}
    ratio = med["refilled"]["trials_per_s"] / med["prefilled"]["trials_per_s"]
    results = {
        "cores": os.cpu_count(),
        "trials": args.trials,
        "workers": args.workers,
        "supervisor_poll": args.poll,
        "worker_poll": args.worker_poll,
        "runs": runs,
        "median": med,
        "ratio": round(ratio, 3),
    }
    print(
        f"{args.workers} simulated workers (claim + finish), {args.trials} no-op trials, "
        f"PostgreSQL, {os.cpu_count()} cores, supervisor --poll {args.poll:g}:"
    )
    for key, label in (("prefilled", "pre-filled queue"), ("refilled", "supervisor refilling")):
        rates = [r["trials_per_s"] for r in runs[key]]
        print(f"  {label:<22} {med[key]['trials_per_s']:8.1f} trials/s  runs {rates}")
    r = med["refilled"]
    print(f"  refilled: {r['empty_claims']} empty claims, largest margin {r['largest_margin']}")
    print(f"  refilled / pre-filled = {ratio:.3f} (goal >= {GOAL})")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "refill.json").write_text(json.dumps(results, indent=2) + "\n")
    bad = [
        r
        for v in runs.values()
        for r in v
        if r["duplicates"] or r["completed"] != args.trials or r["created"] != args.trials
    ]
    if bad:
        raise SystemExit(f"duplicate, lost or extra trials: {bad}")


if __name__ == "__main__":
    main()
