"""Intermediate losses: what a target writes to ``progress.jsonl`` and how it is read.

A target reports its learning curve by appending one JSON object per line to
``progress.jsonl`` in its trial folder (``/hyperdock/progress.jsonl`` in a container;
the path is also in ``HYPERDOCK_PROGRESS``)::

    {"step": 1, "loss": 0.93}
    {"step": 2, "loss": 0.71}

Python targets may call :func:`report` instead. Workers stream new lines to the store
while the target runs; the supervisor's pruner may then stop a trial whose curve is
poor (it ends ``pruned``, with its last step and loss).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

#: The file's name in the trial folder.
PROGRESS_FILE = "progress.jsonl"


def progress_path() -> Path:
    """Where this target's progress goes: ``HYPERDOCK_PROGRESS``, else
    ``$HYPERDOCK_DIR/progress.jsonl``, else ``/hyperdock/progress.jsonl``."""
    explicit = os.environ.get("HYPERDOCK_PROGRESS")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("HYPERDOCK_DIR") or "/hyperdock") / PROGRESS_FILE


def report(step: int, loss: float) -> None:
    """Record the loss a target reached at ``step`` (for early stopping).

    Call it from a target, e.g. once per epoch: ``hyperdock.report(epoch, val_loss)``.

    Raises:
        ValueError: ``step`` is not a whole number or ``loss`` is not finite.
    """
    if isinstance(step, bool) or int(step) != step:
        raise ValueError(f"step must be a whole number, got {step!r}")
    loss = float(loss)
    if not math.isfinite(loss):
        raise ValueError(f"loss must be a finite number, got {loss!r}")
    line = json.dumps({"step": int(step), "loss": loss}) + "\n"
    with open(progress_path(), "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()


@dataclass
class ProgressReader:
    """Reads the lines added to one trial's ``progress.jsonl`` since the last call.

    Attributes:
        path: The file.
        offset: Bytes consumed so far.
        bad: Lines that were not ``{"step": int, "loss": finite number}`` (skipped).
        last: The last good ``(step, loss)``.
    """

    path: Path
    offset: int = 0
    bad: list[str] = field(default_factory=list)
    last: tuple[int, float] | None = None

    def peek(self, *, final: bool = False) -> tuple[list[tuple[int, float]], int]:
        """New points and the offset after them (call :meth:`commit` once they are
        saved). Only complete lines count, unless ``final`` (the target has ended)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return [], self.offset
        if not final:
            end = data.rfind(b"\n")
            data = data[: end + 1] if end >= 0 else b""
        points: list[tuple[int, float]] = []
        for raw in data.decode("utf-8", "replace").splitlines():
            if not raw.strip():
                continue
            point = parse_line(raw)
            if point is None:
                if len(self.bad) < 5:
                    self.bad.append(raw[:200])
                continue
            points.append(point)
        return points, self.offset + len(data)

    def commit(self, points: list[tuple[int, float]], offset: int) -> None:
        """Mark what :meth:`peek` returned as saved."""
        self.offset = offset
        if points:
            self.last = points[-1]


def parse_line(line: str) -> tuple[int, float] | None:
    """``(step, loss)`` from one line, or None when it is not a valid progress line."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    step, loss = data.get("step"), data.get("loss")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or int(step) != step:
        return None
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return None
    return int(step), float(loss)
