"""Safe access to a trial folder, which the target controls.

A target can put anything into its trial folder (bind-mounted into a container, or
its ``HYPERDOCK_DIR``): symlinks to host files, named pipes, device nodes, huge files.
Everything Hyperdock reads from or writes to a trial folder goes through this module:

* Every path component below the folder is opened with ``O_NOFOLLOW`` relative to the
  directory before it (an ``openat`` walk), so no symlink is ever followed and the path
  cannot leave the folder.
* Only regular files are read or written: files are opened with ``O_NONBLOCK`` (a named
  pipe never blocks the open) and checked with ``fstat`` before anything is read.
* Reads are bounded (:class:`Limits`).
* Files Hyperdock writes (``params.json``, ``log.txt``, ``docker_log.txt``) are created
  by Hyperdock before the target starts and written through the descriptor opened
  then, never reopened by path: a symlink the target puts in their place later is
  never written through.

A refused file raises :class:`TrialFileError` with a message such as
``loss.json is a symlink: refused``: it names the file, never what it points to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from hyperdock.errors import ConfigError, TargetError

__all__ = [
    "DEFAULT_LIMITS",
    "Entry",
    "Limits",
    "TrialFileError",
    "create",
    "is_file",
    "list_files",
    "open_file",
    "read_bytes",
    "read_from",
    "read_last_lines",
    "read_tail",
    "write_new",
]

_MB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    """Largest amounts Hyperdock reads from a trial folder.

    Attributes:
        loss_bytes: Size of ``loss.json`` at most.
        progress_line_bytes: Length of one ``progress.jsonl`` line at most (longer
            lines are skipped).
        progress_read_bytes: Bytes of ``progress.jsonl`` read in one go.
        graphs_bytes: Size of ``graphs.json`` at most.
        log_head_bytes: Bytes of an attempt's log the store keeps from its start.
        log_tail_bytes: Bytes of an attempt's log the store keeps to its end (the
            worker reads no more of a fast-growing log than that per second).
    """

    loss_bytes: int = 1 * _MB
    progress_line_bytes: int = 64 * 1024
    progress_read_bytes: int = 1 * _MB
    graphs_bytes: int = 10 * _MB
    log_head_bytes: int = 64 * 1024
    log_tail_bytes: int = 1 * _MB

    @classmethod
    def parse(cls, spec: str | None) -> Limits:
        """Limits from ``--file-limits``: ``loss=2MB,progress-line=128KB,graphs=20MB``
        (any of them; sizes in bytes, or with ``KB``/``MB``/``GB``, powers of 1024);
        the others keep their defaults. None or empty: the defaults.

        Raises:
            ConfigError: an unknown name, or a size that is not a positive whole number
                of bytes up to 1 GB.
        """
        if not spec or not spec.strip():
            return cls()
        fields: dict[str, int] = {}
        for item in spec.split(","):
            name, sep, size = item.strip().partition("=")
            field = _LIMIT_NAMES.get(name.strip().lower())
            if not sep or field is None:
                raise ConfigError(
                    f"--file-limits: {item.strip()!r} is not NAME=SIZE with NAME one of "
                    f"{', '.join(_LIMIT_NAMES)} (e.g. loss=2MB,graphs=20MB)"
                )
            fields[field] = _parse_size(name.strip(), size.strip())
        return dataclasses.replace(cls(), **fields)


#: ``--file-limits`` names of the :class:`Limits` fields.
_LIMIT_NAMES = {
    "loss": "loss_bytes",
    "progress-line": "progress_line_bytes",
    "progress-read": "progress_read_bytes",
    "graphs": "graphs_bytes",
    "log-head": "log_head_bytes",
    "log-tail": "log_tail_bytes",
}
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1024,
    "k": 1024,
    "mb": _MB,
    "m": _MB,
    "gb": 1024 * _MB,
    "g": 1024 * _MB,
}


def _parse_size(name: str, text: str) -> int:
    number = text.rstrip("bBkKmMgG")
    unit = text[len(number) :].strip().lower()
    try:
        value = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        value = -1.0
    if not 1 <= value <= 1024 * _MB:  # NaN fails too
        raise ConfigError(
            f"--file-limits: {name}={text!r} is not a size from 1 byte to 1GB (e.g. 512KB, 2MB)"
        )
    return int(value)


#: The limits used when none are given.
DEFAULT_LIMITS = Limits()


class TrialFileError(TargetError):
    """A file in a trial folder is not a regular file inside the folder, or too large.

    Attributes:
        name: The file's path relative to the trial folder (``loss.json``, ``out/x``).
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}: refused")
        self.name = name


def _kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    if stat.S_ISLNK(mode):
        return "is a symlink"
    if stat.S_ISFIFO(mode):
        return "is a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if stat.S_ISDIR(mode):
        return "is a folder"
    return "is not a regular file"


def _parts(name: str) -> list[str]:
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if not parts or any(p == ".." or "/" in p for p in parts):
        raise TrialFileError(name, "is not a path inside the trial folder")
    return parts


def _refusal(dir_fd: int, part: str, name: str, exc: OSError) -> OSError | TrialFileError:
    """Why opening ``part`` (in ``dir_fd``) failed: a :class:`TrialFileError` for a
    symlink or a file of the wrong kind, else ``exc`` itself (missing, permissions)."""
    if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR, errno.ENXIO, errno.EISDIR):
        try:
            mode = os.lstat(part, dir_fd=dir_fd).st_mode
        except OSError:
            return exc
        return TrialFileError(name, _kind(mode))
    return exc


def _open_dir(folder: Path | int, parts: list[str], name: str) -> int:
    """A descriptor of ``folder/parts...`` (directories only, no symlink followed)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.dup(folder) if isinstance(folder, int) else os.open(folder, flags)
    try:
        for part in parts:
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                raise _refusal(fd, part, name, exc) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(folder: Path | int, name: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open the regular file ``name`` (a path relative to ``folder``) without following
    any symlink; the caller closes the descriptor.

    Args:
        folder: The trial folder (a path, or a directory descriptor).
        name: Path inside the folder, e.g. ``"loss.json"`` or ``"out/model.pt"``.
        flags: ``os.open`` flags (``O_NOFOLLOW`` and ``O_NONBLOCK`` are added).
        mode: Permissions of a file ``flags`` creates.

    Raises:
        TrialFileError: ``name`` or a folder on its way is a symlink, or ``name`` is not
            a regular file.
        FileNotFoundError: it does not exist (and ``flags`` do not create it).
        OSError: any other failure (permissions …).
    """
    parts = _parts(name)
    dir_fd = _open_dir(folder, parts[:-1], name)
    try:
        # Look before opening: a device found here is never opened (opening some has
        # effects). One swapped in between the look and the open is opened non-blocking,
        # without becoming a controlling terminal, never read, and closed at once.
        with contextlib.suppress(FileNotFoundError):
            before = os.lstat(parts[-1], dir_fd=dir_fd).st_mode
            if not stat.S_ISREG(before):
                raise TrialFileError(name, _kind(before))
        all_flags = flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            fd = os.open(parts[-1], all_flags, mode, dir_fd=dir_fd)
        except OSError as exc:
            raise _refusal(dir_fd, parts[-1], name, exc) from None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TrialFileError(name, _kind(st.st_mode))
        os.set_blocking(fd, True)  # a regular file: blocking reads and writes from now on
    except BaseException:
        os.close(fd)
        raise
    return fd


def create(folder: Path | int, name: str, *, replace: bool = False, append: bool = False) -> int:
    """Create the regular file ``name`` in ``folder`` for writing; return its descriptor.

    The file must not exist yet (``O_EXCL``: whatever the target planted there, even a
    dangling symlink, makes it fail) unless ``replace``, which truncates an existing
    regular file (a symlink is still refused). ``append`` opens it with ``O_APPEND``.

    Raises:
        TrialFileError: a symlink or a special file is in the way.
        FileExistsError: the file exists already (without ``replace``).
        OSError: any other failure.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    if append:
        flags |= os.O_APPEND
    try:
        return open_file(folder, name, flags)
    except FileExistsError:
        parts = _parts(name)
        dir_fd = _open_dir(folder, parts[:-1], name)
        try:
            mode = os.lstat(parts[-1], dir_fd=dir_fd).st_mode
        finally:
            os.close(dir_fd)
        if not stat.S_ISREG(mode):
            raise TrialFileError(name, _kind(mode)) from None
        raise


def write_new(folder: Path | int, name: str, data: bytes) -> None:
    """Write ``data`` to the new file ``name`` (see :func:`create`)."""
    fd = create(folder, name)
    with open(fd, "wb", closefd=True) as fh:
        fh.write(data)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, _MB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_bytes(folder: Path | int, name: str, limit: int) -> bytes:
    """The contents of the regular file ``name``, at most ``limit`` bytes.

    Raises:
        TrialFileError: not a regular file inside the folder, or larger than ``limit``.
        FileNotFoundError: it does not exist.
        OSError: any other failure.
    """
    fd = open_file(folder, name)
    try:
        data = _read_at_most(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise TrialFileError(name, f"is larger than {_size(limit)}")
    return data


def read_from(folder: Path | int, name: str, offset: int, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``name`` from ``offset`` on.

    Raises:
        TrialFileError, FileNotFoundError, OSError: as :func:`read_bytes`.
    """
    fd = open_file(folder, name)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        return _read_at_most(fd, limit)
    finally:
        os.close(fd)


def read_tail(folder: Path | int, name: str, size: int) -> bytes:
    """The last ``size`` bytes (at most) of the regular file ``name``: only the end of
    the file is read, however large it is.

    Raises:
        TrialFileError, FileNotFoundError, OSError: as :func:`read_bytes`.
    """
    fd = open_file(folder, name)
    try:
        end = os.fstat(fd).st_size
        os.lseek(fd, max(end - size, 0), os.SEEK_SET)
        return _read_at_most(fd, size)
    finally:
        os.close(fd)


def read_last_lines(
    folder: Path | int, name: str, lines: int, max_bytes: int = 16 * _MB
) -> tuple[bytes, int]:
    """The end of the regular file ``name`` holding at least its last ``lines`` lines,
    and the file's size when it was read.

    Only the end is read (backwards, block by block), never more than ``max_bytes``: a
    first line longer than that comes cut. The caller keeps the last ``lines`` lines.

    Raises:
        TrialFileError, FileNotFoundError, OSError: as :func:`read_bytes`.
    """
    fd = open_file(folder, name)
    try:
        end = os.fstat(fd).st_size
        start = end
        data = b""
        block = 64 * 1024
        # One newline more than lines: the first line kept is then complete.
        while start > 0 and data.count(b"\n") <= lines and end - start < max_bytes:
            step = min(block, start, max_bytes - (end - start))
            start -= step
            os.lseek(fd, start, os.SEEK_SET)
            data = _read_at_most(fd, step) + data
            block = min(block * 2, 4 * _MB)
        return data, end
    finally:
        os.close(fd)


def is_file(folder: Path | int, name: str) -> bool:
    """Whether ``name`` is a regular file inside ``folder`` (no symlink on the way)."""
    try:
        os.close(open_file(folder, name))
    except (TrialFileError, OSError):
        return False
    return True


@dataclasses.dataclass(frozen=True)
class Entry:
    """A regular file found by :func:`list_files`.

    Attributes:
        path: Its path relative to the listed folder, with ``/``.
        size: Its size in bytes.
    """

    path: str
    size: int


def list_files(folder: Path | int, sub: str, limit: int, max_depth: int = 32) -> list[Entry]:
    """The regular files under ``folder/sub`` (sorted, at most ``limit``).

    Symlinks (to files or folders) and special files are left out and never followed;
    the walk never leaves ``folder/sub``. Returns an empty list when ``sub`` is missing
    or is not a folder.
    """
    try:
        top = _open_dir(folder, _parts(sub), sub)
    except (TrialFileError, OSError):
        return []
    found: list[Entry] = []
    try:
        for entry in _walk(top, "", max_depth):
            found.append(entry)
            if len(found) >= limit:
                break
    finally:
        os.close(top)
    return found


def _walk(dir_fd: int, prefix: str, depth: int) -> Iterator[Entry]:
    try:
        with os.scandir(dir_fd) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        rel = f"{prefix}{entry.name}"
        if stat.S_ISREG(st.st_mode):
            yield Entry(rel, st.st_size)
        elif stat.S_ISDIR(st.st_mode) and depth > 0:
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                child = os.open(entry.name, flags, dir_fd=dir_fd)
            except OSError:
                continue  # replaced by a symlink meanwhile, or unreadable
            try:
                yield from _walk(child, f"{rel}/", depth - 1)
            finally:
                os.close(child)


def _size(n: int) -> str:
    if n % _MB == 0:
        return f"{n // _MB} MB"
    if n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"
