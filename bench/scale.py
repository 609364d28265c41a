"""Scale: what reading a large experiment costs, against optuna 5 on the same engine.

For each size (``--sizes``, default 1k, 10k, 50k, 100k trials) and each store (SQLite, a
file in a temporary folder; PostgreSQL, a scratch database on ``--postgres-url``,
default HYPERDOCK_TEST_POSTGRES_URL, else the local test server) one experiment is
written straight into the store (``hyperdock.testing.bulk``: 90 % completed, the rest
failed, pruned, cancelled, queued or running) and the same trials into optuna's RDB
storage on the same engine (an SQLite file / a scratch PostgreSQL database), through
``study.add_trials`` in batches. The build times are reported too.

Measurements (one function each; ``--only NAME[,NAME]`` runs some):

* ``reads``: each read command as a subprocess (``python -m hyperdock …``, output to
  /dev/null): ``status``, ``best``, ``trials`` (one page), ``trials --all --json``,
  ``export`` csv / jsonl / json; wall time and the child's peak RSS (``os.wait4``).
* ``optuna``: optuna's reads in a subprocess each: ``study.trials`` and
  ``study.best_trial`` after ``optuna.load_study``; the ratio of each Hyperdock read to
  the optuna read that answers the same question (``trials --all``/``export`` against
  ``study.trials``, ``best``/``status`` against ``best_trial``).
* ``dashboard``, ``samplers``, ``workers``: run their own scripts in the same run, with
  the same sizes and stores: ``bench/dashboard_scale.py`` (the dashboard's experiment
  API cold and while trials complete), ``bench/scale_samplers.py`` (TPE, GP and CMA-ES
  per suggestion, the supervisor's RSS, optuna's TPE ``ask`` at 50k trials) and
  ``bench/workers500.py`` (500 simulated workers on PostgreSQL: claim percentiles, the
  server's CPU).

Usage: ``python bench/scale.py [--sizes 1000,10000,50000,100000] [--no-postgres]
[--only reads,optuna,dashboard,samplers,workers]``. Prints a table, writes
``bench/out/scale.json`` and the plot ``docs/scale.png`` (time of each read against
trials).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hyperdock.storage import open_store
from hyperdock.testing.bulk import fill_experiment, synthetic_rows

ROOT = Path(__file__).resolve().parent.parent
NAME = "scale"

#: The read commands measured: label -> hyperdock arguments (the store is appended).
READS: dict[str, list[str]] = {
    "status": ["status"],
    "best": ["best", NAME],
    "trials page": ["trials", NAME, "--limit", "50"],
    "trials --all": ["trials", NAME, "--all", "--json"],
    "export csv": ["export", NAME],
    "export jsonl": ["export", NAME, "--format", "jsonl"],
    "export json": ["export", NAME, "--format", "json"],
}
#: The optuna read each Hyperdock read is compared with.
PEER = {
    "status": "best_trial",
    "best": "best_trial",
    "trials page": "trials",
    "trials --all": "trials",
    "export csv": "trials",
    "export jsonl": "trials",
    "export json": "trials",
}
OPTUNA_READS = {
    "trials": "len(study.trials)",
    "best_trial": "study.best_trial.number",
}


def run_measured(argv: list[str]) -> dict[str, float]:
    """Run ``argv`` (output discarded) under ``/usr/bin/time``; its wall time (s) and
    peak RSS (MB). (``os.wait4`` would count the forking parent's memory too.)"""
    with tempfile.NamedTemporaryFile("r") as report:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", report.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode not in (0, 1):  # best exits 1 without a completed trial
            raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stderr[-500:]}")
        seconds, kb = report.read().split()[-2:]
    return {"seconds": float(seconds), "rss_mb": int(kb) / 1024}


@contextmanager
def stores(kind: str, args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(Hyperdock store URL, optuna storage URL) on a fresh engine of ``kind``."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/hd.db", f"sqlite:///{tmp}/optuna.db"
        return
    import psycopg

    names = [f"hd_scale_{uuid.uuid4().hex[:10]}", f"optuna_scale_{uuid.uuid4().hex[:10]}"]
    with psycopg.connect(args.postgres_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    base = args.postgres_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        with psycopg.connect(args.postgres_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_optuna(url: str, n: int) -> float:
    """The synthetic trials in optuna's RDB storage; returns the seconds it took.

    The first 100 go through ``study.add_trials`` (optuna's own path, checking the rows
    are what optuna writes); the rest are inserted into optuna's tables (its SQLAlchemy
    models) in batches of 5000 rows: ``add_trials`` costs ~60 ms a trial here, so
    100,000 would take hours.
    """
    import datetime as dt

    import optuna
    import sqlalchemy as sa
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
        distribution_to_json,
    )
    from optuna.storages._rdb import models
    from optuna.trial import TrialState as OS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    states = {"completed": OS.COMPLETE, "failed": OS.FAIL, "pruned": OS.PRUNED}
    dists: dict[str, Any] = {
        "x": FloatDistribution(0, 1),
        "layers": IntDistribution(1, 4),
        "optimizer": CategoricalDistribution(["adam", "sgd"]),
    }
    start = time.perf_counter()
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name=NAME)
    rows = list(synthetic_rows(n, seed=3))
    first = min(100, n)
    frozen = []
    for row in rows[:first]:
        state = states.get(row["state"], OS.FAIL)  # optuna adds no running/waiting trial
        frozen.append(
            optuna.trial.create_trial(
                state=state,
                value=row["loss"] if state is OS.COMPLETE else None,
                params={k: row["params"][k] for k in dists},
                distributions=dists,
                user_attrs=row["result"].get("data", {}),
            )
        )
    study.add_trials(frozen)
    engine = storage.engine
    with engine.begin() as conn:
        next_id = int(conn.execute(sa.select(sa.func.max(models.TrialModel.trial_id))).scalar())
    dist_json = {k: distribution_to_json(d) for k, d in dists.items()}
    when = dt.datetime(2026, 1, 1)
    for lo in range(first, n, 5000):
        trials, params, values, attrs = [], [], [], []
        for number, row in enumerate(rows[lo : lo + 5000], start=lo):
            next_id += 1
            state = states.get(row["state"], OS.FAIL)
            trials.append(
                {
                    "trial_id": next_id,
                    "number": number,
                    "study_id": study._study_id,
                    "state": state.name,
                    "datetime_start": when,
                    "datetime_complete": when,
                }
            )
            params += [
                {
                    "trial_id": next_id,
                    "param_name": k,
                    "param_value": d.to_internal_repr(row["params"][k]),
                    "distribution_json": dist_json[k],
                }
                for k, d in dists.items()
            ]
            if state is OS.COMPLETE:
                values.append(
                    {"trial_id": next_id, "objective": 0, "value": row["loss"],
                     "value_type": "FINITE"}
                )  # fmt: skip
            attrs += [
                {"trial_id": next_id, "key": k, "value_json": json.dumps(v)}
                for k, v in row["result"].get("data", {}).items()
            ]
        with engine.begin() as conn:
            conn.execute(sa.insert(models.TrialModel.__table__), trials)
            conn.execute(sa.insert(models.TrialParamModel.__table__), params)
            if values:
                conn.execute(sa.insert(models.TrialValueModel.__table__), values)
            if attrs:
                conn.execute(sa.insert(models.TrialUserAttributeModel.__table__), attrs)
    engine.dispose()
    loaded = optuna.load_study(study_name=NAME, storage=url)
    assert len(loaded.get_trials(deepcopy=False)) == n, "optuna does not see every trial"
    return time.perf_counter() - start


# -- measurements: one function each, (kind, size, urls) -> figures ----------------------
def measure_reads(kind: str, size: int, hd_url: str, optuna_url: str) -> dict[str, Any]:
    py = [sys.executable, "-m", "hyperdock"]
    return {label: run_measured([*py, *argv, "--store", hd_url]) for label, argv in READS.items()}


def measure_optuna(kind: str, size: int, hd_url: str, optuna_url: str) -> dict[str, Any]:
    out = {}
    for label, expr in OPTUNA_READS.items():
        code = (
            "import optuna; optuna.logging.set_verbosity(optuna.logging.WARNING); "
            f"study = optuna.load_study(study_name={NAME!r}, storage={optuna_url!r}); {expr}"
        )
        out[label] = run_measured([sys.executable, "-c", code])
    return out


Measure = Callable[[str, int, str, str], dict[str, Any]]
MEASUREMENTS: dict[str, Measure] = {
    "reads": measure_reads,
    "optuna": measure_optuna,
}

#: Measurements with a script of their own, run by this driver in the same run with the
#: same sizes and stores; each prints its table and writes ``bench/out/<script>.json``,
#: folded into ``scale.json``.
COMPANIONS: dict[str, list[str]] = {
    # The dashboard's experiment API, cold and while trials complete.
    "dashboard": ["dashboard_scale.py"],
    # TPE/GP/CMA-ES per suggestion, the supervisor's RSS, optuna's TPE ask at 50k.
    "samplers": ["scale_samplers.py", "--rss", "--optuna", "50000"],
    # 500 simulated workers on one PostgreSQL: claim percentiles, the server's CPU.
    "workers": ["workers500.py"],
}


def run_companion(name: str, args: argparse.Namespace) -> Any:
    """Run the script of measurement ``name``; return what it wrote."""
    script, *extra = COMPANIONS[name]
    argv = [sys.executable, str(ROOT / "bench" / script), *extra]
    if name == "dashboard":
        argv += ["--sizes", ",".join(map(str, args.sizes))]
        argv += ["--no-postgres"] if "postgresql" not in args.kinds else []
    elif name == "samplers":
        argv += ["--sizes", ",".join(map(str, args.sizes)), "--engines", ",".join(args.kinds)]
    elif "postgresql" not in args.kinds:
        print("workers: needs PostgreSQL; skipped with --no-postgres", flush=True)
        return None
    print(f"== {name}: {' '.join(argv[1:])}", flush=True)
    subprocess.run(argv, check=True)
    return json.loads((ROOT / "bench" / "out" / f"{Path(script).stem}.json").read_text())


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    if not any(name in MEASUREMENTS for name in args.only):
        return results
    for kind in args.kinds:
        for size in args.sizes:
            with stores(kind, args) as (hd_url, optuna_url):
                entry: dict[str, Any] = {"store": kind, "trials": size}
                start = time.perf_counter()
                with open_store(hd_url) as store:
                    fill_experiment(store, NAME, size, seed=3)
                entry["build_hyperdock_s"] = time.perf_counter() - start
                if "optuna" in args.only:
                    entry["build_optuna_s"] = build_optuna(optuna_url, size)
                for name in args.only:
                    if name in MEASUREMENTS:
                        entry[name] = MEASUREMENTS[name](kind, size, hd_url, optuna_url)
                print_entry(entry)
                results.append(entry)
    return results


def ratios(entry: dict[str, Any]) -> dict[str, float]:
    """Each Hyperdock read's time over its optuna peer's."""
    reads, peer = entry.get("reads", {}), entry.get("optuna", {})
    return {
        label: reads[label]["seconds"] / peer[PEER[label]]["seconds"]
        for label in reads
        if PEER[label] in peer
    }


def print_entry(entry: dict[str, Any]) -> None:
    head = f"{entry['store']}, {entry['trials']} trials: build {entry['build_hyperdock_s']:.1f} s"
    if "build_optuna_s" in entry:
        head += f" (optuna {entry['build_optuna_s']:.1f} s)"
    print(head, flush=True)
    ratio = ratios(entry)
    for label, fig in {**entry.get("reads", {}), **{
        f"optuna {k}": v for k, v in entry.get("optuna", {}).items()
    }}.items():  # fmt: skip
        extra = f"  {ratio[label]:.2f}x optuna" if label in ratio else ""
        print(f"  {label:<20} {fig['seconds']:7.2f} s {fig['rss_mb']:7.0f} MB{extra}", flush=True)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r["store"] for r in results})
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        rows = sorted((r for r in results if r["store"] == kind), key=lambda r: r["trials"])
        sizes = [r["trials"] for r in rows]
        series = {label: [r["reads"][label]["seconds"] for r in rows] for label in READS}
        if all("optuna" in r for r in rows):
            for label in OPTUNA_READS:
                series[f"optuna {label}"] = [r["optuna"][label]["seconds"] for r in rows]
        for label, ys in series.items():
            ax.plot(sizes, ys, marker="o", ls="--" if label.startswith("optuna") else "-",
                    label=label)  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="trials", ylabel="seconds", title=kind)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000,100000")
    parser.add_argument("--no-postgres", action="store_true")
    every = [*MEASUREMENTS, *COMPANIONS]
    parser.add_argument("--only", default=",".join(every), help=f"of {', '.join(every)}")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("HYPERDOCK_TEST_POSTGRES_URL")
        or "postgresql://postgres:postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "scale.png")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(every)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    args.kinds = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    results = run(args)
    companions = {name: run_companion(name, args) for name in args.only if name in COMPANIONS}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps({"reads": results, **companions}, indent=2))
    if "reads" in args.only:
        plot(results, args.plot)
    print(
        f"wrote {args.out / 'scale.json'}" + (f" and {args.plot}" if "reads" in args.only else "")
    )


if __name__ == "__main__":
    main()
