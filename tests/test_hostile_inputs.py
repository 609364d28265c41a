"""Hostile inputs through the command line (issue 12, item 6 and "Low"): a huge grid,
numbers no store or loop can use, names no folder can hold. Each is refused in one line
(exit 2, no traceback) before anything is stored, or handled without hanging."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from clihelp import PY, QUADRATIC, hd, spawn, wait_for, write


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "train.py", QUADRATIC)
    (tmp_path / "space.json").write_text(json.dumps({"x": [1, 2, 3]}))
    # 10**9 points: 9 axes of 10 values.
    (tmp_path / "huge.json").write_text(
        json.dumps({"x": list(range(10)), **{f"p{i}": list(range(10)) for i in range(8)}})
    )
    return tmp_path


def stored_experiments(cwd: Path) -> list[str]:
    if not (cwd / "hyperdock.db").exists():
        return []
    out = hd("status", "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return [e["experiment"] for e in json.loads(out.stdout)]


def test_supervisor_on_a_billion_point_grid_starts_and_honours_sigterm(project: Path) -> None:
    log = project / "supervisor.log"
    proc = spawn(
        "supervisor", "huge.json", "--command", f"{PY} train.py", "--name", "huge",
        "--max-trials", "3", cwd=project, log=log,
    )  # fmt: skip

    def queued() -> bool:
        if "Created experiment huge (3 trials" not in log.read_text():
            return False
        out = hd("trials", "huge", "--json", cwd=project)
        return out.returncode == 0 and len(json.loads(out.stdout)) == 3

    wait_for(queued, 60, "the supervisor to queue 3 trials of the 10**9-point grid")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130, log.read_text()
    text = log.read_text()
    assert "Supervisor stopped. Resume with: " in text and "Traceback" not in text


BAD_RUN_OPTIONS = [
    (["--max-trials", "99999999999"], "--max-trials must be a whole number from 1 to 2147483647"),
    (["--retries", "3000000000"], "--retries must be a whole number from 0 to 2147483647"),
    (["--seed", "100000000000000000000"], "--seed must be a whole number from"),
    (["--lease-timeout", "nan"], "--lease-timeout must be a positive number of seconds, got nan"),
    (["--timeout", "nan"], "--timeout must be a positive number of seconds, got nan"),
    (["--max-time", "nan"], "--max-time must be a positive number of seconds, got nan"),
    (["--target-loss", "nan"], "--target-loss must be a finite number, got nan"),
    (["--heartbeat", "0"], "--heartbeat must be a positive number of seconds, got 0.0"),
    (["--heartbeat", "-1"], "--heartbeat must be a positive number of seconds"),
    (["--heartbeat", "1e300"], "--heartbeat must be at most 3600 seconds, got 1e+300"),
    (["--workers", "5000"], "(--workers / --parallelism) must be from 1 to 1024, got 5000"),
    (["--name", "a/b"], "names may not contain '/' or control characters"),
    (["--name", "red\x1b[31m"], "holds '\\x1b'; names may not contain"),
]


@pytest.mark.parametrize(("args", "message"), BAD_RUN_OPTIONS, ids=lambda v: str(v)[:30])
def test_run_refuses_unusable_settings_in_one_line(
    project: Path, args: list[str], message: str
) -> None:
    out = hd("run", "space.json", "--command", f"{PY} train.py", "-q", *args, cwd=project)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert stored_experiments(project) == []


def test_names_of_up_to_100_characters(project: Path) -> None:
    command = ["run", "space.json", "--command", f"{PY} train.py", "-q", "--name"]
    out = hd(*command, "n" * 101, cwd=project)
    assert out.returncode == 2, out.stderr
    assert "has 101 characters; use at most 100" in out.stderr
    assert stored_experiments(project) == []
    out = hd(*command, "n" * 100, cwd=project)
    assert out.returncode == 0, out.stderr
    assert stored_experiments(project) == ["n" * 100]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["supervisor", "space.json", "--command", "true", "--poll", "0"], "--poll must be a"),
        (["worker", "--burst", "--poll", "-1"], "--poll must be a positive number of seconds"),
        (["worker", "--burst", "--heartbeat", "0"], "--heartbeat must be a positive number"),
        (["worker", "--burst", "--parallelism", "1025"], "must be from 1 to 1024, got 1025"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_supervisor_and_worker_refuse_busy_loops_and_huge_parallelism(
    project: Path, args: list[str], message: str
) -> None:
    out = hd(*args, cwd=project, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert stored_experiments(project) == []


SLOW = """
import os, time
with open("ran.txt", "a") as fh:
    fh.write(os.environ["HYPERDOCK_TRIAL_ID"] + "\\n")
time.sleep(4)
open(os.environ["HYPERDOCK_LOSS"], "w").write("1.0")
"""


def test_a_heartbeat_slower_than_the_lease_does_not_lose_live_trials(project: Path) -> None:
    """--heartbeat 10 with --lease-timeout 1.5: the worker beats often enough for the
    lease (a third of it), so no live trial is reaped and run again."""
    write(project / "slow.py", SLOW)
    out = hd(
        "run", "space.json", "--command", f"{PY} slow.py", "--max-trials", "2",
        "--heartbeat", "10", "--lease-timeout", "1.5", "-q", cwd=project, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    runs = (project / "ran.txt").read_text().split()
    assert sorted(runs) == sorted(set(runs)) and len(runs) == 2, runs
    assert "lost its worker" not in out.stderr, out.stderr
