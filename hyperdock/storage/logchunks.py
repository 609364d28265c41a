"""A trial attempt's log as the store keeps it: chunks of its bytes, the first ``head``
bytes and the last ``tail`` bytes of the log (see :meth:`Store.add_log`), and how to
show them with a marker where bytes were cut.

Workers write the chunks (:mod:`hyperdock.logship`); ``hyperdock logs`` and the
dashboard read them when the trial's folder is not on their host.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["LogChunk", "StoredLog", "StoredLogReader", "cut_marker", "human_size"]


@dataclass(frozen=True)
class LogChunk:
    """Bytes ``offset`` to ``offset + len(data)`` of an attempt's log."""

    offset: int
    data: bytes

    @property
    def end(self) -> int:
        """The offset just past the chunk."""
        return self.offset + len(self.data)


@dataclass(frozen=True)
class StoredLog:
    """What the store holds of one attempt's log.

    Attributes:
        trial_id: The trial.
        attempt: The attempt (0-based, as :attr:`Trial.attempt`).
        chunks: The stored chunks, in offset order (those asked for).
        size: Bytes the attempt has written so far (stored or cut).
    """

    trial_id: int
    attempt: int
    chunks: tuple[LogChunk, ...]
    size: int

    @property
    def stored(self) -> int:
        """Bytes of the chunks held."""
        return sum(len(c.data) for c in self.chunks)

    def text(self, start: int = 0) -> str:
        """The log from byte ``start`` on, decoded as UTF-8, with a :func:`cut_marker`
        line where bytes were cut."""
        out: list[str] = []
        StoredLogReader(self.trial_id, self.attempt, start).feed(self, out.append, final=True)
        return "".join(out)


class StoredLogReader:
    """Passes on a stored log piece by piece as it grows (``logs -f``, polling): text
    decoded across chunks, a marker where bytes were cut.

    Args:
        trial_id: The trial.
        attempt: Its attempt.
        pos: The byte to start from.
    """

    def __init__(self, trial_id: int, attempt: int, pos: int = 0) -> None:
        self.trial_id = trial_id
        self.attempt = attempt
        #: Bytes of the log passed on (or skipped) so far.
        self.pos = pos
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        #: Bytes the store keeps from the log's start (for the cut marker).
        self.head = 0
        self._line_ended = True

    def learn(self, log: StoredLog) -> None:
        """Learn how much of the log's start the store keeps from a read holding it."""
        if log.chunks and log.chunks[0].offset == 0:
            self.head = _first_gap(log.chunks)

    def feed(self, log: StoredLog, write: Callable[[str], None], *, final: bool = False) -> bool:
        """Write what ``log`` holds past :attr:`pos`; return whether there was anything.

        Args:
            log: A read of the store (its chunks from :attr:`pos` on, or all of them).
            write: Called with each piece of text.
            final: The log is complete: flush a partial UTF-8 sequence at its end.
        """
        wrote = False
        self.learn(log)
        for chunk in log.chunks:
            if chunk.end <= self.pos:
                continue
            if chunk.offset > self.pos:
                self._write(write, self._decoder.decode(b"", final=True))
                self._decoder.reset()
                if not self._line_ended:
                    self._write(write, "\n")
                marker = cut_marker(chunk.offset - self.pos, self.head, log.size - chunk.offset)
                self._write(write, marker + "\n")
                self.pos = chunk.offset
            piece = chunk.data[self.pos - chunk.offset :]
            self.pos = chunk.end
            self._write(write, self._decoder.decode(piece))
            wrote = wrote or bool(piece)
        if final:
            self._write(write, self._decoder.decode(b"", final=True))
        return wrote

    def _write(self, write: Callable[[str], None], text: str) -> None:
        if text:
            write(text)
            self._line_ended = text.endswith("\n")


def _first_gap(chunks: Sequence[LogChunk]) -> int:
    """Bytes from the log's start up to its first cut (the kept head)."""
    end = 0
    for chunk in chunks:
        if chunk.offset > end:
            break
        end = max(end, chunk.end)
    return end


def human_size(n: int) -> str:
    """``n`` bytes for people: ``512 bytes``, ``64 KB``, ``198.9 MB``."""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def cut_marker(cut: int, head: int, tail: int) -> str:
    """The line standing for ``cut`` bytes the store did not keep.

    Args:
        cut: Bytes left out here.
        head: Bytes kept from the log's start.
        tail: Bytes kept to its end (from here on).
    """
    return (
        f"[... {human_size(cut)} cut: the store keeps the first {human_size(head)} and the "
        f"last {human_size(tail)}; the full log is in the trial folder on the worker's host "
        "(and in the artifact store when the experiment has one) ...]"
    )
