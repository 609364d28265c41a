"""The dashboard's experiment API against the number of trials: cold, and polled while
trials complete.

For each size (default 1k, 10k, 50k, 100k trials, written straight into the store by
:mod:`hyperdock.testing.bulk`) on SQLite and PostgreSQL (a scratch database on
``--postgres-url``; default HYPERDOCK_TEST_POSTGRES_URL, else the local test server), the
dashboard is served on 127.0.0.1 and ``GET /api/experiments/<name>`` measured over HTTP
(gzip accepted, as browsers do):

* cold: the first request of a fresh dashboard process state (no cache), median of
  ``--cold`` fresh dashboards (goal <= 1 s at 100k);
* poll: a worker completes one trial, then the page's poll (with the ETag it last got)
  is timed, ``--polls`` times; median and p90 (goal <= 200 ms at 100k). Every poll
  rebuilds the reply (the trial counts changed). Importances are computed meanwhile in
  the dashboard's background thread, on the same 2 cores.

Usage: ``python bench/dashboard_scale.py [--sizes 1000,10000] [--no-postgres]``.
Prints a table and writes ``bench/out/dashboard_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from hyperdock.dashboard import make_dashboard_server
from hyperdock.storage import Store, open_store
from hyperdock.testing.bulk import fill_experiment
from hyperdock.trial import TrialState

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from claims import DEFAULT_POSTGRES_URL, Scratch  # noqa: E402

COLD_GOAL_MS = 1000.0
POLL_GOAL_MS = 200.0
NAME = "scale"


def _get(url: str, etag: str | None = None) -> tuple[float, str | None, int]:
    headers = {"Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as r:
            body = r.read()
            tag = r.headers.get("ETag")
    except urllib.error.HTTPError as exc:  # 304: unchanged
        body, tag = b"", etag
        if exc.code != 304:
            raise
    return (time.perf_counter() - start) * 1000, tag, len(body)


def _serve(store: Store) -> tuple[Any, str]:
    server = make_dashboard_server(store, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/api/experiments/{NAME}"


def measure(store: Store, cold_runs: int, polls: int) -> dict[str, Any]:
    """Cold and poll latencies of the experiment API over ``store``."""
    exp = store.get_experiment(NAME)
    cold, size = [], 0
    for _ in range(cold_runs):
        server, url = _serve(store)
        ms, _, size = _get(url)
        cold.append(ms)
        server.shutdown()
        server.server_close()
    if store.count_trials(exp.id)[TrialState.QUEUED] < polls:
        store.add_trials(exp.id, [{"x": 0.5, "layers": 2, "optimizer": "adam"}] * polls)
    server, url = _serve(store)
    _, etag, _ = _get(url)
    times = []
    for i in range(polls):
        trial = store.claim("bench-worker", experiment_id=exp.id)
        assert trial is not None
        store.finish(trial.id, "bench-worker", state=TrialState.COMPLETED, loss=1.0 + i)
        ms, etag, _ = _get(url, etag)
        times.append(ms)
    server.shutdown()
    server.server_close()
    times.sort()
    return {
        "cold_ms": round(statistics.median(cold), 1),
        "poll_median_ms": round(statistics.median(times), 1),
        "poll_p90_ms": round(times[int(0.9 * (len(times) - 1))], 1),
        "gzip_bytes": size,
    }


def run_backend(
    backend: str, sizes: list[int], url_for: Any, cold: int, polls: int
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        url, done = url_for(n)
        try:
            with open_store(url) as store:
                start = time.perf_counter()
                fill_experiment(store, NAME, n)
                filled = time.perf_counter() - start
                row = {"backend": backend, "trials": n, "fill_s": round(filled, 1)}
                row.update(measure(store, cold, polls))
        finally:
            done()
        print(
            f"{backend:10} {n:>7} trials: cold {row['cold_ms']:7.1f} ms, poll median "
            f"{row['poll_median_ms']:6.1f} ms (p90 {row['poll_p90_ms']:6.1f}), "
            f"{row['gzip_bytes'] / 1024:.0f} KiB gzip",
            flush=True,
        )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000,100000")
    parser.add_argument("--cold", type=int, default=3, help="fresh dashboards per size")
    parser.add_argument("--polls", type=int, default=20, help="polls per size")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("HYPERDOCK_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:

        def sqlite_url(n: int) -> tuple[str, Any]:
            return f"sqlite:///{tmp}/scale{n}.db", lambda: None

        rows += run_backend("sqlite", sizes, sqlite_url, args.cold, args.polls)
    if not args.no_postgres:

        def pg_url(n: int) -> tuple[str, Any]:
            db = Scratch(args.postgres_url, "hd_bench_dscale").__enter__()
            return db.url, lambda: db.__exit__(None, None, None)

        rows += run_backend("postgresql", sizes, pg_url, args.cold, args.polls)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    result = {"goals_ms": {"cold": COLD_GOAL_MS, "poll": POLL_GOAL_MS}, "rows": rows}
    (out / "dashboard_scale.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
