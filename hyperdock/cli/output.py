"""What the commands print: tables, times and durations, the best result, status lines."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from hyperdock.display import fmt_loss
from hyperdock.experiment import ExperimentSettings
from hyperdock.objectives import Objectives, flat_params
from hyperdock.results import summarize
from hyperdock.storage import Store
from hyperdock.trial import Experiment, ExperimentState, Trial, TrialState, Worker


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    """``0.8s``, ``42s``, ``3m05s``, ``2h04m``, ``3d05h``; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    n = round(seconds)
    if n < 60:
        return f"{n}s"
    if n < 3600:
        return f"{n // 60}m{n % 60:02d}s"
    if n < 86400:
        return f"{n // 3600}h{n % 3600 // 60:02d}m"
    return f"{n // 86400}d{n % 86400 // 3600:02d}h"


def fmt_ago(ts: float | None, now: float | None = None) -> str:
    """How long ago ``ts`` was (``12s ago``, ``3m05s ago``); a date beyond a week."""
    if ts is None:
        return "-"
    age = (time.time() if now is None else now) - ts
    if age > 7 * 86400:
        return fmt_time(ts)
    return f"{fmt_duration(age)} ago"


def printable(text: str) -> str:
    """``text`` with control and format characters shown as escapes: stored strings
    (names, parameters, errors a target wrote) must not move the cursor, recolour or
    retitle the user's terminal."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """An aligned text table; the columns numbered in ``right`` are right-aligned. Cells
    are shown with escapes for control characters (see :func:`printable`)."""
    cells = [[printable(str(c)) for c in headers]] + [[printable(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    lines = [line(r) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def params_line(best: dict[str, Any]) -> str:
    return short(json.dumps(best["params"], sort_keys=True), 60)


def print_best(
    store: Store, exp: Experiment, as_json: bool, summary: dict[str, Any] | None = None
) -> bool:
    if summary is None:
        summary = summarize(store, exp)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return summary["best"] is not None
    counts = ", ".join(f"{n} {s}" for s, n in summary["trials"].items() if n)
    click.echo(f"Experiment {exp.name}: {exp.state.value} ({counts or 'no trials'})")
    if exp.state is ExperimentState.FAILED:
        print_stop(summary)
    best = summary["best"]
    if best is None and exp.state is ExperimentState.FAILED:
        return False
    if best is None:
        click.echo("No trial completed, so there is no best result yet.")
        failed = store.list_trials(exp.id, states=[TrialState.FAILED], limit=1)
        if failed:
            click.echo(f"First failure (trial {failed[0].id}): {failed[0].error}")
        return False
    front = summary.get("pareto_front")
    if front is not None:
        names = [o["name"] for o in summary["objectives"]]
        directions = ", ".join(f"{o['name']} ({o['direction']})" for o in summary["objectives"])
        click.echo(f"Pareto front: {len(front)} trial(s) no other trial beats on {directions}")
        rows = [
            [t["trial"], *(fmt_loss(t["values"].get(n)) for n in names), params_line(t)]
            for t in front
        ]
        click.echo(table(["trial", *names, "params"], rows))
    else:
        click.echo(f"Best loss: {fmt_loss(best['loss'])} (trial {best['trial']})")
        click.echo("Best parameters:")
        click.echo(json.dumps(best["params"], indent=2, sort_keys=True))
        if best["folder"]:
            click.echo(f"Results: {best['folder']}")
    if summary["importances"]:
        click.echo("Parameter importances:")
        for name, value in summary["importances"].items():
            click.echo(f"  {name:<24} {value:6.3f}  {'#' * round(value * 30)}")
    return True


def print_stop(summary: dict[str, Any]) -> None:
    """Why a failed experiment stopped, and its first error (a few lines)."""
    click.echo(f"Stopped: {summary.get('stop_reason') or 'failed'}")
    first = summary.get("first_error")
    if not first:
        return
    code = first.get("exit_code")
    where = f"trial {first.get('trial')}" + (f", exit code {code}" if code is not None else "")
    lines = str(first.get("error") or "").splitlines() or ["(no error message)"]
    click.echo(f"First error ({where}): {lines[0]}")
    for line in lines[1:]:
        click.echo(f"  {line}")


def opened_line(store: Store, supervisor: Any, created: bool) -> str:
    """``Created experiment X (…)`` or ``Resuming experiment X: 2/6 done (…)``."""
    exp = supervisor.experiment
    about = (
        f"{exp.target.describe()}, sampler {exp.sampler}, seed {exp.seed}, store {store.describe()}"
    )
    budget = supervisor.budget
    if created:
        return f"Created experiment {exp.name} ({_budget(budget)}, {about})"
    done = supervisor.progress().finished
    return f"Resuming experiment {exp.name}: {done}/{budget if budget else '?'} done ({about})"


def _budget(budget: int | None) -> str:
    if budget is None:
        return "no trial limit"
    return f"{budget} trial{'s' if budget != 1 else ''}"


def legacy_budget_line(sup: Any, created: bool, opts: ExperimentSettings) -> str:
    """The original `--trials N` meant retries, so say what the budget is instead."""
    size = _budget(sup.budget)
    if opts.max_trials is not None:
        why = "--max-trials"
    elif not created:
        why = "stored with the experiment"
    elif sup.experiment.sampler == "grid":
        why = "the whole grid"
    else:
        why = "the default"
    retries = sup.experiment.max_retries
    return (
        f"Budget: {size} ({why}; change it with --max-trials N). "
        f"--trials {retries} is the retries of a failing trial, as in the original Hyperdock."
    )


#: Widest PARAMS column of the ``trials`` table, and how narrow it may get to fit.
_PARAMS_WIDTH = 60
_MIN_PARAMS_WIDTH = 20


def trials_table(
    rows: Sequence[Trial],
    best_ids: set[int],
    keys: Sequence[str],
    split: bool,
    params_width: int = _PARAMS_WIDTH,
) -> str:
    """The ``trials`` table with parameters ``keys``: a column each (``split``) or one
    PARAMS column of at most ``params_width`` characters."""
    now = time.time()
    headers = ["", "ID", "#", "STATE", "LOSS", "TRY", "STARTED", "DURATION"]
    # A cluster launcher's job of each trial's last attempt (Slurm job id, Job name).
    jobs = [str((t.result or {}).get("launcher", {}).get("job_id", "")) for t in rows]
    if any(jobs):
        headers.append("JOB")
    headers += list(keys) if split else ["PARAMS"]
    body = []
    for t, job in zip(rows, jobs, strict=True):
        flat = flat_params(t.params)
        if split:
            params = [fmt_value(flat[k]) if k in flat else "" for k in keys]
        else:
            shown = ", ".join(f"{k}={fmt_value(flat[k])}" for k in keys if k in flat)
            params = [short(shown, params_width)]
        body.append(
            [
                "*" if t.id in best_ids else "",
                t.id,
                t.number,
                t.state.value,
                fmt_loss(t.loss),
                fmt_attempt(t),
                fmt_time(t.started_at),
                trial_duration(t, now),
                *([job] if any(jobs) else []),
                *params,
                short((t.error or "").splitlines()[0] if t.error else "", 50),
            ]
        )
    headers.append("ERROR")
    if not any(r[-1] for r in body):  # no errors: no empty column taking width
        headers, body = headers[:-1], [r[:-1] for r in body]
    if not any(r[0] for r in body):  # no best trial among these rows: no marker column
        return table(headers[1:], [r[1:] for r in body], right=(0, 1, 3, 4, 6))
    return table(headers, body, right=(1, 2, 4, 5, 7))


def fmt_attempt(trial: Trial) -> str:
    """The last attempt's number, and the step it resumed from (a checkpoint) if any."""
    step = trial.resumed_from
    return f"{trial.attempt + 1}" + ("" if step is None else f" (resumed from step {step})")


def trial_duration(trial: Trial, now: float) -> str:
    """The last attempt's duration; for a running trial the time so far (``12s+``)."""
    if trial.state is TrialState.RUNNING and trial.started_at is not None:
        return fmt_duration(now - trial.started_at) + "+"
    if trial.state is TrialState.QUEUED:
        return "-"
    return fmt_duration(trial.duration)


def fitted_trials_table(rows: Sequence[Trial], best_ids: set[int], keys: Sequence[str]) -> str:
    """The ``trials`` table with a column per parameter in ``keys`` when it fits the
    terminal, else with them together in one PARAMS column, shortened to fit when it can
    be (down to 20 characters)."""
    columns = shutil.get_terminal_size().columns
    split = trials_table(rows, best_ids, keys, split=True)
    if _width(split) <= columns:
        return split
    joined = trials_table(rows, best_ids, keys, split=False)
    if _width(joined) > columns:  # shorten the PARAMS column by what does not fit
        fit = max(_MIN_PARAMS_WIDTH, _PARAMS_WIDTH - (_width(joined) - columns))
        joined = trials_table(rows, best_ids, keys, split=False, params_width=fit)
    return joined


def _width(text: str) -> int:
    return max(map(len, text.splitlines()), default=0)


def best_marker_legend(objectives: Objectives) -> str:
    """What the ``*`` of the ``trials`` table means."""
    if objectives.multi:
        return "* on the Pareto front (no other trial is better on every objective)"
    low = "highest" if objectives.maximize else "lowest"
    return f"* best trial ({low} loss)"


def status_table(data: Sequence[dict[str, Any]], now: float) -> str:
    """The ``status`` table of experiments as :func:`~hyperdock.results.status_json`
    gives them."""
    rows = []
    for d in data:
        t = d["trials"]
        done = sum(n for s, n in t.items() if s not in ("queued", "running"))
        rows.append(
            [
                d["experiment"],
                d["state"],
                f"{done}/{d['budget'] if d['budget'] else '?'}",
                t["running"],
                t["failed"],
                t["pruned"],
                fmt_loss(d["best"]["loss"]) if d["best"] else "-",
                d["sampler"],
                fmt_ago(d["created_at"], now),
                fmt_duration(d["duration"]),
                short(d["target"], 50),
            ]
        )
    headers = ["EXPERIMENT", "STATE", "DONE", "RUNNING", "FAILED", "PRUNED", "BEST", "SAMPLER"]
    return table([*headers, "CREATED", "DURATION", "TARGET"], rows, right=(2, 3, 4, 5, 6, 9))


def workers_table(found: Sequence[Worker], now: float) -> str:
    """The ``workers`` table."""
    return table(
        ["WORKER", "HOST", "PID", "SLOTS", "UP", "HEARTBEAT", "RUNNING", "STATUS"],
        [
            [
                w.id,
                w.host,
                w.pid,
                w.parallelism,
                fmt_duration(now - w.started_at),
                fmt_ago(w.heartbeat_at, now),
                ",".join(map(str, w.running)) or "-",
                w.status or "ok",
            ]
            for w in found
        ],
        right=(2, 3, 4),
    )


def log_json(
    trial: Trial, path: Path | None, text: str, attempt: int | None = None
) -> dict[str, Any]:
    """A trial's log as ``logs --json`` prints it (``attempt`` 1-based; ``path`` None:
    the store's copy of ``attempt``'s log)."""
    return {
        "trial": trial.id,
        "attempt": (trial.attempt if attempt is None else attempt) + 1,
        "state": trial.state.value,
        "file": None if path is None else str(path),
        "log": text,
    }
