"""What `hyperdock run` and `Experiment.run(progress=True)` show people while a search
runs: the live progress line, and how losses are written."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from hyperdock.errors import HyperdockError
from hyperdock.trial import TrialState


def fmt_loss(value: float | None) -> str:
    """A loss for people: six significant digits, ``-`` for none."""
    return "-" if value is None else f"{value:.6g}"


class ProgressLine:
    """A live one-line progress display of a supervisor on stderr (redrawn in place on a
    tty, a line every few seconds otherwise); a context manager.

    Args:
        supervisor: What to show (its :meth:`~hyperdock.supervisor.Supervisor.progress`).
        enabled: False shows nothing.
    """

    def __init__(self, supervisor: Any, enabled: bool) -> None:
        self._supervisor = supervisor
        self._enabled = enabled
        self._tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hd-progress", daemon=True)
        self._started = time.monotonic()
        self._last_line = ""

    def __enter__(self) -> ProgressLine:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._enabled:
            self._thread.join()
            self._draw(final=True)

    def _line(self) -> str:
        p = self._supervisor.progress()
        done, total = p.finished, p.budget
        width = 24
        frac = done / total if total else 0.0
        bar = "#" * int(width * min(frac, 1.0))
        elapsed = int(time.monotonic() - self._started)
        parts = [f"[{bar:<{width}}] {done}/{total if total is not None else '?'} trials"]
        running = p.counts[TrialState.RUNNING]
        failed = p.counts[TrialState.FAILED]
        if running:
            parts.append(f"{running} running")
        if failed:
            parts.append(f"{failed} failed")
        if p.best is not None:
            parts.append(f"best {fmt_loss(p.best.loss)} (trial {p.best.id})")
        parts.append(f"{elapsed // 60:02d}:{elapsed % 60:02d}")
        return " · ".join(parts)

    def _draw(self, final: bool = False) -> None:
        try:
            line = self._line()
        except HyperdockError:
            return
        if self._tty:
            sys.stderr.write("\r\x1b[2K" + line + ("\n" if final else ""))
            sys.stderr.flush()
        elif final or line != self._last_line:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        self._last_line = line

    def _loop(self) -> None:
        interval = 0.2 if self._tty else 5.0
        while not self._stop.wait(interval):
            self._draw()
