"""Helpers for tests that drive Hyperdock as a user does: through its command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PY = sys.executable

#: A target that computes a loss from its params: (x - 1)^2 + y (y optional).
QUADRATIC = textwrap.dedent(
    """
    import json, os, sys
    p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
    loss = (p["x"] - 1) ** 2 + p.get("y", 0)
    os.makedirs(os.path.join(os.environ["HYPERDOCK_DIR"], "out"), exist_ok=True)
    open(os.path.join(os.environ["HYPERDOCK_DIR"], "out", "model.txt"), "w").write(str(p))
    print("training with", p)
    json.dump({"loss": loss, "state": "ok", "extra": 1}, open(os.environ["HYPERDOCK_LOSS"], "w"))
    """
)


def hd(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    exe: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``hyperdock ARGS`` (or another entry point) and capture its output."""
    cmd = [exe] if exe else [PY, "-m", "hyperdock"]
    full_env = _env(env)
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def spawn(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    exe: str | None = None,
    log: Path | None = None,
) -> subprocess.Popen[Any]:
    """Start ``hyperdock ARGS`` in the background (output to ``log``)."""
    cmd = [exe] if exe else [PY, "-m", "hyperdock"]
    full_env = _env(env)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [*cmd, *args], cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT
    )
    SPAWNED.append(proc)
    return proc


def stop_all(procs: list[subprocess.Popen[Any]]) -> None:
    """SIGTERM each process that still runs, wait for all (kill after 30 s)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


#: Every process :func:`spawn` started; conftest kills the survivors after each test.
SPAWNED: list[subprocess.Popen[Any]] = []


def kill_spawned() -> None:
    """Kill whatever :func:`spawn` started and is still running (a failed test's leftovers)."""
    while SPAWNED:
        proc = SPAWNED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str = "condition",
    logs: tuple[Path, ...] = (),
) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds, with the
    last lines of ``logs`` (the processes' own account of what they did) in the message."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tails = "".join(
                f"\n--- {p.name}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
                for p in logs
                if p.exists()
            )
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{tails}")
        time.sleep(0.1)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HYPERDOCK_STORE", "MONGO_URL", "HYPERDOCK_ENV")
    }
    return {**env, "PYTHONUNBUFFERED": "1", **(extra or {})}
