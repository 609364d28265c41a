"""Claim throughput of the stores, with pgbench on the same server as the anchor.

Eight worker processes (``--workers``) share one queue of no-op trials (``--trials``).
Each loops ``claim`` → ``finish(completed)`` until the queue is empty; a cycle is one
claim plus one finish. Reported: cycles per second over the whole run (from the moment
every worker is connected until the last one sees the queue empty) and duplicates (a
trial claimed twice; must be 0).

Stores: SQLite (a file in a temporary folder) and PostgreSQL (a scratch database on the
server that ``--postgres-url`` names; default HYPERDOCK_TEST_POSTGRES_URL, else the local
test server). Anchor, measured in the same run on the same server: ``pgbench -n -b
simple-update -c 8 -j 2 -T 10`` in another scratch database (``pgbench -i``). The goal is
Hyperdock PostgreSQL cycles/s ÷ pgbench TPS >= 0.5.

Usage: ``python bench/claims.py [--trials 4000] [--workers 8] [--no-sqlite]``. Prints a
table and writes ``bench/out/claims.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from hyperdock.storage import open_store, redact_url
from hyperdock.trial import Target, TrialState

HERE = Path(__file__).resolve().parent

DEFAULT_POSTGRES_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
GOAL = 0.5


def worker(url: str, name: str, ready: Any, out: Any) -> None:
    """Claim and finish trials until none is left; report ids and the end time (or
    what went wrong)."""
    try:
        store = open_store(url)
        ready.wait()
        claimed = []
        while (trial := store.claim(name)) is not None:
            claimed.append(trial.id)
            if not store.finish(trial.id, name, state=TrialState.COMPLETED, loss=0.0):
                raise RuntimeError(f"{name} lost the lease on trial {trial.id}")
        end = time.monotonic()
        store.close()
        out.put((claimed, end))
    except Exception as exc:
        ready.abort()
        out.put(f"{name}: {type(exc).__name__}: {exc}")


def hyperdock_run(url: str, trials: int, workers: int) -> dict[str, Any]:
    """Fill a queue with ``trials`` no-op trials and empty it with ``workers`` processes."""
    with open_store(url) as store:
        exp = store.create_experiment(
            "bench",
            space={},
            target=Target(command=("true",)),
            sampler="random",
            seed=0,
            max_trials=trials,
        )
        for start in range(0, trials, 500):
            store.add_trials(exp.id, [{"n": i} for i in range(start, min(trials, start + 500))])
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(workers + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, f"w{i}", ready, out)) for i in range(workers)]
    for p in procs:
        p.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed: see below
        ready.wait(timeout=300)
    start = time.monotonic()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    failures = [r for r in results if isinstance(r, str)]
    if failures:
        raise SystemExit("a worker failed: " + "; ".join(failures))
    took = max(end for _, end in results) - start
    ids = Counter(tid for claimed, _ in results for tid in claimed)
    with open_store(url) as store:
        completed = store.count_trials(exp.id)[TrialState.COMPLETED]
    return {
        "cycles": sum(ids.values()),
        "completed": completed,
        "duplicates": sum(n - 1 for n in ids.values()),
        "seconds": round(took, 3),
        "cycles_per_s": round(sum(ids.values()) / took, 1),
        "per_worker": sorted(len(c) for c, _ in results),
    }


class Scratch:
    """A scratch PostgreSQL database, dropped on exit."""

    def __init__(self, admin_url: str, prefix: str) -> None:
        self.admin_url = admin_url
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        parts = urllib.parse.urlsplit(admin_url)
        self.url = urllib.parse.urlunsplit(parts._replace(path=f"/{self.name}"))

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def __enter__(self) -> Scratch:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def pgbench(admin_url: str, clients: int, seconds: int) -> dict[str, Any]:
    """``pgbench -n -b simple-update`` in a scratch database; returns its TPS."""
    exe = shutil.which("pgbench") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None
    )
    if exe is None:
        raise SystemExit("pgbench is missing: apt-get install postgresql-contrib")
    with Scratch(admin_url, "hd_bench_pgbench") as db:
        subprocess.run([str(exe), "-i", "-q", db.url], check=True, capture_output=True)
        cmd = ["-n", "-b", "simple-update", "-c", str(clients), "-j", "2", "-T", str(seconds)]
        out = subprocess.run(
            [str(exe), *cmd, db.url], check=True, capture_output=True, text=True
        ).stdout
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if match is None:
        raise SystemExit(f"cannot read pgbench's TPS from:\n{out}")
    return {"command": "pgbench " + " ".join(cmd), "tps": float(match.group(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="PostgreSQL runs (median)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("HYPERDOCK_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help="a role that may create databases (scratch ones are made and dropped)",
    )
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "cores": os.cpu_count(),
        "trials": args.trials,
        "workers": args.workers,
    }
    rows: list[tuple[str, float, str]] = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = hyperdock_run(f"sqlite:///{tmp}/bench.db", args.trials, args.workers)
        results["sqlite"] = sqlite
        rows.append(("hyperdock sqlite (file)", sqlite["cycles_per_s"], "cycles/s"))
    if not args.no_postgres:
        # Alternate the two, so that both see the same machine (other load comes and
        # goes); report the median of each.
        runs, anchors = [], []
        for _ in range(args.repeat):
            with Scratch(args.postgres_url, "hd_bench") as db:
                runs.append(hyperdock_run(db.url, args.trials, args.workers))
            anchors.append(pgbench(args.postgres_url, args.workers, args.pgbench_seconds))
        pg = sorted(runs, key=lambda r: r["cycles_per_s"])[len(runs) // 2]
        anchor = sorted(anchors, key=lambda r: r["tps"])[len(anchors) // 2]
        pg["duplicates"] = sum(r["duplicates"] for r in runs)
        pg["runs_cycles_per_s"] = [r["cycles_per_s"] for r in runs]
        anchor["runs_tps"] = [a["tps"] for a in anchors]
        pg["vs_pgbench"] = round(pg["cycles_per_s"] / anchor["tps"], 3)
        results["postgresql"] = pg
        results["pgbench"] = anchor
        results["server"] = redact_url(args.postgres_url)
        rows.append(
            (f"hyperdock postgresql (median of {args.repeat})", pg["cycles_per_s"], "cycles/s")
        )
        rows.append((f"{anchor['command']} (median)", anchor["tps"], "TPS"))
    print(
        f"Claim + finish cycles, {args.workers} worker processes, {args.trials} no-op trials, "
        f"{os.cpu_count()} cores:"
    )
    for name, value, unit in rows:
        print(f"  {name:<54} {value:9.1f} {unit}")
    for key in ("sqlite", "postgresql"):
        if key in results:
            r = results[key]
            print(f"  {key}: {r['cycles']} cycles, {r['duplicates']} duplicates")
    if "postgresql" in results:
        pg, anchor = results["postgresql"], results["pgbench"]
        print(f"  runs: hyperdock {pg['runs_cycles_per_s']} cycles/s")
        print(f"        pgbench   {anchor['runs_tps']} TPS")
        print(f"  hyperdock postgresql / pgbench = {pg['vs_pgbench']:.3f} (goal >= {GOAL})")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "claims.json").write_text(json.dumps(results, indent=2) + "\n")
    bad = [
        k
        for k in ("sqlite", "postgresql")
        if k in results
        and (results[k]["duplicates"] or results[k]["completed"] != results[k]["cycles"])
    ]
    if bad:
        raise SystemExit(f"duplicate or lost claims in {', '.join(bad)}")


if __name__ == "__main__":
    main()
