"""The artifact store contract: where a trial's files go so they outlive the host that
ran it (``--artifacts URL``).

Layout under the store's prefix (the URL's path)::

    <experiment>/<trial id>/<attempt>/params.json, loss.json, progress.jsonl,
                                      graphs.json, <log>, out/...
    <experiment>/<trial id>/checkpoint/...

``<experiment>`` is :func:`experiment_key` of the experiment's name, ``<attempt>`` the
attempt's number as people count it (1 for the first), see :func:`attempt_key`.

Rules every backend keeps:
    * Keys are relative ``/``-separated paths under the store's prefix: no leading
      ``/``, no empty, ``.`` or ``..`` part (:func:`check_key` refuses them, so a name
      read from anywhere can never address an object outside the prefix).
    * :meth:`ArtifactStore.put_file` and :meth:`ArtifactStore.put_bytes` are atomic per
      object: a reader sees the whole new object or the old one (or none), never part.
      Putting a key that exists replaces it.
    * :meth:`ArtifactStore.list` lists every object under a key prefix, recursively,
      sorted by key, with keys relative to the store's prefix.
    * Failures raise :class:`ArtifactStoreError`; ``retryable`` says whether trying
      again later may work (server down, timeout, 5xx) or not (no such bucket, access
      denied, bad URL).
    * Credentials are never part of the URL, of :meth:`describe`, of a log line or of
      anything stored: they come from the backend's standard chain (for S3 the AWS
      chain: environment, shared files, instance roles).
    * Backends are thread-safe.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Iterable, Iterator

from hyperdock.errors import ConfigError, HyperdockError

__all__ = [
    "ArtifactInfo",
    "ArtifactStore",
    "ArtifactStoreError",
    "attempt_key",
    "check_key",
    "checkpoint_key",
    "experiment_key",
    "trial_key",
]


class ArtifactStoreError(HyperdockError):
    """The artifact store failed (unreachable, refused, missing object).

    Attributes:
        retryable: Whether trying again later may work.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclasses.dataclass(frozen=True)
class ArtifactInfo:
    """One stored object.

    Attributes:
        key: Its key, relative to the store's prefix.
        size: Its size in bytes.
        modified: When it was stored (Unix seconds).
    """

    key: str
    size: int
    modified: float


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def experiment_key(name: str) -> str:
    """The key part of an experiment: its name when that is a safe file name, else a
    slug of it with a short hash (so two different names never share a part)."""
    if _SAFE_NAME.match(name) and ".." not in name:
        return name
    import hashlib

    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:150] or "experiment"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def trial_key(experiment: str, trial_id: int) -> str:
    """``<experiment>/<trial id>/``: everything of one trial."""
    return f"{experiment_key(experiment)}/{trial_id}/"


def attempt_key(experiment: str, trial_id: int, attempt: int) -> str:
    """``<experiment>/<trial id>/<attempt>/`` for the 0-based ``attempt`` of the store
    (the key holds the 1-based number people see: ``attempt 1`` is the first)."""
    return f"{trial_key(experiment, trial_id)}{attempt + 1}/"


def checkpoint_key(experiment: str, trial_id: int) -> str:
    """``<experiment>/<trial id>/checkpoint/``: the checkpoint all attempts share."""
    return f"{trial_key(experiment, trial_id)}checkpoint/"


def check_key(key: str, *, prefix: bool = False) -> str:
    """``key`` if it is a valid relative key (see the module rules); with ``prefix`` an
    empty key or one ending in ``/`` is valid too.

    Raises:
        ConfigError: it is not.
    """
    parts = key.split("/")
    if prefix and parts and parts[-1] == "":
        parts = parts[:-1]
    if (not parts and not prefix) or any(p in ("", ".", "..") for p in parts) or "\x00" in key:
        raise ConfigError(f"{key!r} is not a valid artifact path (no '..', no empty parts)")
    return key


class ArtifactStore(abc.ABC):
    """Abstract artifact store. See the module docstring for the rules."""

    #: Short name of the backend ("file", "s3").
    scheme: str = ""

    @abc.abstractmethod
    def put_file(self, key: str, fd: int) -> int:
        """Store the contents of the open file ``fd`` (read from its current offset to
        its end) under ``key``; return the bytes stored. The caller opened ``fd`` (a
        target's file is opened through :mod:`hyperdock.trialfs`) and closes it."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``."""

    @abc.abstractmethod
    def iter_bytes(self, key: str, chunk: int = 1024 * 1024) -> Iterator[bytes]:
        """The contents of ``key`` in chunks (a large object never sits in memory).

        Raises:
            ArtifactStoreError: no such object (``retryable=False``), or a failure.
        """

    def read_bytes(self, key: str, limit: int) -> bytes:
        """The contents of ``key``, at most ``limit`` bytes.

        Raises:
            ArtifactStoreError: no such object, larger than ``limit``, or a failure.
        """
        data = bytearray()
        for piece in self.iter_bytes(key):
            data += piece
            if len(data) > limit:
                raise ArtifactStoreError(f"{key} is larger than {limit} bytes", retryable=False)
        return bytes(data)

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[ArtifactInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete these objects (missing ones are no error)."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; return how many there were."""
        keys = [info.key for info in self.list(check_key(prefix, prefix=True))]
        self.delete(keys)
        return len(keys)

    def check(self) -> None:  # noqa: B027 - optional hook
        """Check that the store answers and can be written now.

        Raises:
            ArtifactStoreError: it cannot; the message says why and what to do.
        """

    @abc.abstractmethod
    def describe(self) -> str:
        """The store's URL (never with credentials)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
