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

from hyperdock import trialfs

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

    The file is the target's: it is read only while it is a regular file inside the
    trial folder (see :mod:`hyperdock.trialfs`), at most ``limits.progress_read_bytes``
    per call, and lines longer than ``limits.progress_line_bytes`` are skipped.

    Attributes:
        path: The file.
        limits: How much is read.
        offset: Bytes consumed so far.
        bad: Lines that were not ``{"step": int, "loss": finite number}`` (skipped).
        last: The last good ``(step, loss)``.
        refused: Why the file was refused (a symlink, a named pipe …); it is not read
            again once refused.
        more: The last :meth:`peek` stopped at its read limit: more may be waiting.
    """

    path: Path
    limits: trialfs.Limits = trialfs.DEFAULT_LIMITS
    offset: int = 0
    bad: list[str] = field(default_factory=list)
    last: tuple[int, float] | None = None
    refused: trialfs.TrialFileError | None = None
    more: bool = False
    # Inside a line longer than the limit: skip up to its newline.
    _skipping: bool = field(default=False, init=False, repr=False)
    _next_skipping: bool = field(default=False, init=False, repr=False)

    def peek(self, *, final: bool = False) -> tuple[list[tuple[int, float]], int]:
        """New points and the offset after them (call :meth:`commit` once they are
        saved). Only complete lines count, unless ``final`` (the target has ended)."""
        self.more = False
        if self.refused is not None:
            return [], self.offset
        limit = self.limits.progress_read_bytes
        try:
            data = trialfs.read_from(self.path.parent, self.path.name, self.offset, limit)
        except trialfs.TrialFileError as exc:
            self.refused = exc
            return [], self.offset
        except OSError:  # not written yet
            return [], self.offset
        self.more = len(data) >= limit
        cap = self.limits.progress_line_bytes
        skipping = self._skipping
        consumed = 0
        points: list[tuple[int, float]] = []
        *lines, rest = data.split(b"\n")
        for raw in lines:
            consumed += len(raw) + 1
            if skipping:  # the end of a line too long to read
                skipping = False
                continue
            self._take(raw, cap, points)
        if rest:
            if skipping or len(rest) > cap:
                if not skipping:
                    self._note_bad(f"(a line longer than {cap} bytes)")
                consumed += len(rest)
                skipping = True
            elif final and not self.more:
                self._take(rest, cap, points)
                consumed += len(rest)
        self._next_skipping = skipping
        return points, self.offset + consumed

    def _take(self, raw: bytes, cap: int, points: list[tuple[int, float]]) -> None:
        if len(raw) > cap:
            self._note_bad(f"(a line longer than {cap} bytes)")
            return
        line = raw.decode("utf-8", "replace")
        if not line.strip():
            return
        point = parse_line(line)
        if point is None:
            self._note_bad(line[:200])
            return
        points.append(point)

    def _note_bad(self, line: str) -> None:
        if len(self.bad) < 5:
            self.bad.append(line)

    def commit(self, points: list[tuple[int, float]], offset: int) -> None:
        """Mark what :meth:`peek` returned as saved."""
        self.offset = offset
        self._skipping = self._next_skipping
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
