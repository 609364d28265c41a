"""Dashboard speed with a large experiment: the experiment API and the experiment page.

One experiment with ``--trials`` (default 10,000) finished trials of a 4-parameter space,
and a learning curve of ``--curve-steps`` steps for every tenth trial, is written to a
store: SQLite (a file in a temporary folder) and PostgreSQL (a scratch database on the
server ``--postgres-url`` names; default HYPERDOCK_TEST_POSTGRES_URL, else the local test
server). For each store the dashboard is served on 127.0.0.1 and measured:

* API: ``GET /api/experiments/<name>`` over HTTP, ``--requests`` times after one warm-up
  request; the median latency (goal <= 200 ms);
* page (SQLite store only; the page's work is in the browser): Chromium (Debian's
  ``/usr/bin/chromium`` through playwright) opens ``/experiments/<name>``; the time from
  navigation to every plot holding its points (history, parallel coordinates,
  importances, curves, slices; a painted plot's image included) and the browser having
  painted the frame after that, median of ``--page-runs`` (goal <= 2 s), twice:
  - first visit: a fresh browser profile each time (nothing cached; plotly.js, 4.8 MB,
    is downloaded and compiled);
  - returning visit: one browser profile kept across visits, as a user's browser is
    (plotly.js comes from the HTTP cache, and V8 keeps its compiled code from the
    earlier visits); three visits warm it first.
  Headless Chromium has no GPU here: WebGL runs on the CPU (SwiftShader), which the
  page detects: it then paints the history's and the slices' points into images and
  draws parallel coordinates with SVG lines, instead of Plotly's WebGL traces.

Usage: ``python bench/dashboard.py [--trials 10000] [--no-postgres] [--no-browser]``.
Prints a table and writes ``bench/out/dashboard.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from hyperdock import hp
from hyperdock.dashboard import make_dashboard_server
from hyperdock.objectives import Objectives
from hyperdock.space import Space
from hyperdock.storage import Store, open_store
from hyperdock.trial import Target, TrialState

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from claims import DEFAULT_POSTGRES_URL, Scratch  # noqa: E402

API_GOAL_MS = 200.0
PAGE_GOAL_S = 2.0
NAME = "big"
PLOTS = ("history", "parallel", "importances", "intermediate", "slices-plot")


def fill(store: Store, trials: int, curve_steps: int, seed: int = 0) -> None:
    """One experiment with ``trials`` completed trials (every tenth with a curve)."""
    rng = random.Random(seed)
    space = Space.from_obj(
        {
            "lr": hp.loguniform("lr", -9, -2),
            "dropout": hp.uniform("dropout", 0, 0.5),
            "units": hp.quniform("units", 16, 256, 16),
            "layers": hp.randint("layers", 1, 6),
        }
    ).to_json()
    exp = store.create_experiment(
        NAME,
        space=space,
        target=Target(command=("true",)),
        sampler="random",
        seed=seed,
        max_trials=trials,
        meta={"objectives": Objectives().to_meta(), "pruner": "none"},
    )
    for start in range(0, trials, 1000):
        batch = []
        for _ in range(min(1000, trials - start)):
            batch.append(
                {
                    "lr": 10 ** rng.uniform(-4, -1),
                    "dropout": rng.uniform(0, 0.5),
                    "units": float(rng.randrange(16, 257, 16)),
                    "layers": rng.randrange(1, 6),
                }
            )
        store.add_trials(exp.id, batch)
    while (trial := store.claim("bench", experiment_id=exp.id)) is not None:
        p = trial.params
        loss = (p["dropout"] - 0.2) ** 2 + abs(p["layers"] - 3) * 0.05 + rng.gauss(0, 0.01)
        if trial.number % 10 == 0:
            curve = [(s, loss + 1.0 / (s + 1)) for s in range(curve_steps)]
            store.add_progress(trial.id, "bench", curve)
        store.finish(trial.id, "bench", state=TrialState.COMPLETED, loss=loss)


def serve(store: Store) -> tuple[Any, str]:
    server = make_dashboard_server(store, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def api_latency(url: str, requests: int) -> dict[str, Any]:
    target = f"{url}/api/experiments/{NAME}"
    size = len(urllib.request.urlopen(target, timeout=60).read())  # warm-up
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        urllib.request.urlopen(target, timeout=60).read()
        times.append((time.perf_counter() - start) * 1000)
    return {
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
        "bytes": size,
    }


def page_time(url: str, runs: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    # every plot holds its points (a painted plot: its image is in too)
    ready = (
        "() => ["
        + ", ".join(f"'{p}'" for p in PLOTS)
        + "].every(id => { const el = document.getElementById(id);"
        " return el && el.data && el.data.length > 0 &&"
        " el.data.some(t => (t.x && t.x.length) || (t.dimensions && t.dimensions.length)) &&"
        " (el.dataset.view !== 'painted' || (el.layout.images || []).length > 0); })"
    )
    # ... and the browser has painted the frame after that
    painted = "() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"

    def visit(context: Any) -> float:
        page = context.new_page()
        try:
            start = time.perf_counter()
            page.goto(f"{url}/experiments/{NAME}")
            page.wait_for_function(ready, timeout=60_000, polling=20)
            page.evaluate(painted)
            return time.perf_counter() - start
        finally:
            page.close()

    def summary(times: list[float]) -> dict[str, Any]:
        return {
            "median_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times],
        }

    args = ["--no-sandbox"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            cold = []
            for _ in range(runs + 1):  # the first run warms the server and the OS: dropped
                context = browser.new_context()
                cold.append(visit(context))
                context.close()
        finally:
            browser.close()
        with tempfile.TemporaryDirectory() as profile:
            context = p.chromium.launch_persistent_context(
                profile, executable_path="/usr/bin/chromium", args=args
            )
            try:
                for _ in range(3):
                    visit(context)
                warm = [visit(context) for _ in range(runs)]
            finally:
                context.close()
    return {"first_visit": summary(cold[1:]), "returning_visit": summary(warm)}


def measure(url: str, args: argparse.Namespace, browser: bool) -> dict[str, Any]:
    with open_store(url) as store:
        start = time.perf_counter()
        fill(store, args.trials, args.curve_steps)
        filled = time.perf_counter() - start
        server, base = serve(store)
        try:
            out: dict[str, Any] = {"fill_s": round(filled, 1)}
            out["api"] = api_latency(base, args.requests)
            if browser:
                out["page"] = page_time(base, args.page_runs)
        finally:
            server.shutdown()
            server.server_close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--curve-steps", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--page-runs", type=int, default=3)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("HYPERDOCK_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"trials": args.trials, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(f"sqlite:///{tmp}/dash.db", args, not args.no_browser)
    if not args.no_postgres:
        with Scratch(args.postgres_url, "hd_bench_dash") as db:
            results["postgresql"] = measure(db.url, args, False)
    print(f"Dashboard, one experiment of {args.trials} trials, {os.cpu_count()} cores:")
    for backend in ("sqlite", "postgresql"):
        if backend not in results:
            continue
        api = results[backend]["api"]
        ok = "meets" if api["median_ms"] <= API_GOAL_MS else "MISSES"
        print(
            f"  {backend:<10} GET /api/experiments/{NAME}: median {api['median_ms']} ms "
            f"({api['bytes'] / 1e6:.1f} MB; {ok} the {API_GOAL_MS:g} ms goal)"
        )
    page = results["sqlite"].get("page")
    for visit in ("first_visit", "returning_visit") if page else ():
        got = page[visit]
        ok = "meets" if got["median_s"] <= PAGE_GOAL_S else "MISSES"
        print(
            f"  chromium   experiment page, all plots drawn, {visit.replace('_', ' ')}: "
            f"median {got['median_s']} s {got['runs_s']} ({ok} the {PAGE_GOAL_S:g} s goal)"
        )
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
