"""500 workers on one PostgreSQL: claim latency and the server's CPU.

``--processes`` (5) processes simulate ``--workers`` (100) workers each. A simulated
worker is what ``hyperdock worker --parallelism 2`` does to the store, without targets:
it registers, claims a trial for each free slot, "runs" it for ``--trial-seconds``
(uniform between half and one and a half times that), finishes it, claims again (an empty
queue: it waits 1 s, the worker's ``--poll``), and every ``--heartbeat`` seconds (its
own phase) renews all its leases in one heartbeat call and looks for lost trials
(``reap``), as :meth:`hyperdock.worker.Worker.beat` does.

Connections: the server allows 100 (``max_connections``), so one connection per worker
is impossible here (500 workers need a pooler such as PgBouncer in front, or a larger
``max_connections``). Each process holds one :class:`PostgresStore` with a pool of
``--pool`` connections, driven by as many threads that take the workers' due actions
(claim, finish, heartbeat) from one schedule; a call's latency is measured around the
store call only (a late action is reported separately as lateness).

The queue is filled before the run, so the supervisor plays no part. Reported: claim,
finish and heartbeat latency percentiles, throughput, lateness, and the CPU time of the
server's processes over the run, from ``/proc`` (the server runs on this machine): the
backends serving this run's database, and every postgres process (other users of the
server included), as a percentage of one core. Goals: claim p99 <= 50 ms, server < 100%.

Usage: ``python bench/workers500.py [--seconds 60] [--processes 5] [--workers 100]``.
Prints a table and writes ``bench/out/workers500.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import multiprocessing
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from claims import DEFAULT_POSTGRES_URL, Scratch

from hyperdock.storage.postgres import PostgresStore
from hyperdock.trial import Target, TrialState

HERE = Path(__file__).resolve().parent
GOAL_P99_MS = 50.0
GOAL_CPU = 100.0


class Sim:
    """The simulated workers of one process and their schedule of due actions."""

    def __init__(self, store: PostgresStore, names: list[str], args: dict[str, Any]) -> None:
        self.store = store
        self.args = args
        self.rng = random.Random(args["seed"])
        self.heap: list[tuple[float, int, str, str, int]] = []
        self.seq = 0
        self.cond = threading.Condition()
        self.stop_at = float("inf")
        self.leases: dict[str, set[int]] = {name: set() for name in names}
        self.lat: dict[str, list[float]] = {"claim": [], "finish": [], "heartbeat": []}
        self.late: list[float] = []
        self.empty = 0
        self.errors: list[str] = []
        self.claimed: list[int] = []

    def at(self, when: float, kind: str, name: str, arg: int = 0) -> None:
        with self.cond:
            self.seq += 1
            heapq.heappush(self.heap, (when, self.seq, kind, name, arg))
            self.cond.notify()

    def start(self, t0: float) -> None:
        a = self.args
        for name in self.leases:
            for _ in range(a["parallelism"]):  # slots start spread over one trial
                self.at(t0 + self.rng.uniform(0, a["trial_seconds"]), "claim", name)
            self.at(t0 + self.rng.uniform(0, a["heartbeat"]), "beat", name)

    def drive(self) -> None:
        """One driver thread: take due actions until the run ends."""
        while True:
            with self.cond:
                while True:
                    now = time.monotonic()
                    if now >= self.stop_at:
                        return
                    if self.heap and self.heap[0][0] <= now:
                        when, _, kind, name, arg = heapq.heappop(self.heap)
                        break
                    wait = (self.heap[0][0] - now) if self.heap else 0.1
                    self.cond.wait(min(wait, self.stop_at - now, 0.1))
            self.late.append(now - when)
            try:
                self.act(kind, name, arg)
            except Exception as exc:  # reported, the run goes on
                self.errors.append(f"{kind} {name}: {type(exc).__name__}: {exc}")

    def act(self, kind: str, name: str, arg: int) -> None:
        a, store = self.args, self.store
        start = time.perf_counter()
        if kind == "claim":
            trial = store.claim(name)
            self.lat["claim"].append(time.perf_counter() - start)
            if trial is None:
                self.empty += 1
                self.at(time.monotonic() + 1.0, "claim", name)
                return
            self.claimed.append(trial.id)
            self.leases[name].add(trial.id)
            took = a["trial_seconds"] * self.rng.uniform(0.5, 1.5)
            self.at(time.monotonic() + took, "finish", name, trial.id)
        elif kind == "finish":
            self.leases[name].discard(arg)
            ok = store.finish(arg, name, state=TrialState.COMPLETED, loss=self.rng.random())
            self.lat["finish"].append(time.perf_counter() - start)
            if not ok:
                self.errors.append(f"{name} lost the lease on trial {arg}")
            self.at(time.monotonic(), "claim", name)
        else:
            held = set(self.leases[name])
            stop = store.heartbeat(name, held)
            lost = store.reap()
            self.lat["heartbeat"].append(time.perf_counter() - start)
            if stop & self.leases[name]:  # finished meanwhile: no longer held, fine
                self.errors.append(f"{name}: heartbeat says stop {sorted(stop)}")
            if lost:
                self.errors.append(f"{name}: reaped {[t.id for t in lost]}")
            self.at(time.monotonic() + a["heartbeat"], "beat", name)


def process(url: str, index: int, args: dict[str, Any], ready: Any, closing: Any, out: Any) -> None:
    """One process of simulated workers (see the module docstring)."""
    try:
        store = PostgresStore(url, pool_size=args["pool"])
        names = [f"p{index}w{i}" for i in range(args["workers"])]
        for name in names:
            store.register_worker(name, host="bench", pid=os.getpid(), parallelism=2)
        sim = Sim(store, names, {**args, "seed": index})
        # Every pooled connection open (and its statements prepared) before the start.
        warm = [threading.Thread(target=store.heartbeat, args=(n, ())) for n in names[:20]]
        for t in warm:
            t.start()
        for t in warm:
            t.join()
        ready.wait()
        t0 = time.monotonic()
        sim.stop_at = t0 + args["seconds"]
        sim.start(t0)
        threads = [threading.Thread(target=sim.drive) for _ in range(args["pool"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.put(
            {
                "lat": sim.lat,
                "late": sim.late,
                "empty": sim.empty,
                "errors": sim.errors[:20],
                "error_count": len(sim.errors),
                "claimed": sim.claimed,
            }
        )
        closing.wait(timeout=300)  # the server's CPU is read while the backends live
        store.close()
    except Exception as exc:
        ready.abort()
        out.put(f"process {index}: {type(exc).__name__}: {exc}")


def _ticks(pids: set[int] | None) -> int:
    """utime + stime of the postgres processes (``pids``: only those), in clock ticks."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (pids is not None and int(entry.name) not in pids):
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=100, help="per process")
    parser.add_argument("--pool", type=int, default=8, help="connections per process")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--trial-seconds", type=float, default=10.0)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("HYPERDOCK_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help="a role that may create databases (a scratch one is made and dropped)",
    )
    a = parser.parse_args()
    args = {
        k: getattr(a, k)
        for k in ("workers", "pool", "parallelism", "trial_seconds", "heartbeat", "seconds")
    }
    total = a.processes * a.workers
    rate = total * a.parallelism / a.trial_seconds
    import psycopg

    with Scratch(a.postgres_url, "hd_bench_w500") as db:
        with PostgresStore(db.url) as store:
            exp = store.create_experiment(
                "w500",
                space={},
                target=Target(command=("true",)),
                sampler="random",
                seed=0,
                max_trials=None,
                lease_timeout=30.0,
            )
            need = int(rate * (a.seconds + a.trial_seconds) * 1.5) + 1000
            for start in range(0, need, 2000):
                store.add_trials(exp.id, [{"n": i} for i in range(start, min(need, start + 2000))])
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Barrier(a.processes + 1)
        out = ctx.Queue()
        closing = ctx.Event()
        procs = [
            ctx.Process(target=process, args=(db.url, i, args, ready, closing, out))
            for i in range(a.processes)
        ]
        for p in procs:
            p.start()
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait(timeout=300)
        with psycopg.connect(db.url, autocommit=True) as conn:
            ours = {
                int(r[0])
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            }
        t0, own0, all0 = time.monotonic(), _ticks(ours), _ticks(None)
        results = [out.get(timeout=a.seconds + 300) for _ in procs]
        wall = time.monotonic() - t0
        own1, all1 = _ticks(ours), _ticks(None)
        closing.set()
        for p in procs:
            p.join(timeout=60)
    failures = [r for r in results if isinstance(r, str)]
    if failures:
        raise SystemExit("a process failed: " + "; ".join(failures))
    tick = os.sysconf("SC_CLK_TCK")
    lat = {k: [x * 1000 for r in results for x in r["lat"][k]] for k in results[0]["lat"]}
    claimed = [tid for r in results for tid in r["claimed"]]
    late = [x * 1000 for r in results for x in r["late"]]
    summary: dict[str, Any] = {
        "cores": os.cpu_count(),
        "workers": total,
        "processes": a.processes,
        "pool_per_process": a.pool,
        **{k: v for k, v in args.items() if k not in ("workers", "pool")},
        "connections": len(ours),
        "seconds": round(wall, 1),
        "claims_per_s": round(len(claimed) / wall, 1),
        "empty_claims": sum(r["empty"] for r in results),
        "duplicates": len(claimed) - len(set(claimed)),
        "latency_ms": {
            k: {f"p{q}": round(_pct(v, q), 2) for q in (50, 95, 99)} | {"n": len(v)}
            for k, v in lat.items()
        },
        "lateness_ms": {f"p{q}": round(_pct(late, q), 1) for q in (50, 99)},
        "server_cpu_pct": {
            "this_database_backends": round(100 * (own1 - own0) / tick / wall, 1),
            "all_postgres_processes": round(100 * (all1 - all0) / tick / wall, 1),
        },
        "errors": sum(r["error_count"] for r in results),
        "first_errors": [e for r in results for e in r["errors"]][:10],
    }
    print(
        f"{total} simulated workers ({a.processes} processes x {a.workers}, a pool of "
        f"{a.pool} connections each), parallelism {a.parallelism}, trials of ~"
        f"{a.trial_seconds:g} s, heartbeat {a.heartbeat:g} s, {wall:.0f} s, "
        f"{os.cpu_count()} cores:"
    )
    for kind, row in summary["latency_ms"].items():
        print(
            f"  {kind:<10} p50 {row['p50']:7.2f} ms  p95 {row['p95']:7.2f} ms  "
            f"p99 {row['p99']:7.2f} ms  ({row['n']} calls)"
        )
    cpu = summary["server_cpu_pct"]
    print(
        f"  {summary['claims_per_s']} claims/s, {summary['empty_claims']} empty, "
        f"{summary['duplicates']} duplicates, {summary['errors']} errors; lateness p99 "
        f"{summary['lateness_ms']['p99']} ms"
    )
    print(
        f"  server CPU: {cpu['this_database_backends']}% of one core (this run's "
        f"backends), {cpu['all_postgres_processes']}% (all postgres processes)"
    )
    p99 = summary["latency_ms"]["claim"]["p99"]
    print(f"  claim p99 {p99} ms (goal <= {GOAL_P99_MS:g}); server < {GOAL_CPU:g}% of a core")
    outdir = HERE / "out"
    outdir.mkdir(exist_ok=True)
    (outdir / "workers500.json").write_text(json.dumps(summary, indent=2) + "\n")
    if summary["duplicates"] or summary["errors"]:
        raise SystemExit(f"duplicates or errors: {summary['first_errors']}")


if __name__ == "__main__":
    main()
