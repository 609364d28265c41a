"""The exceptions Hyperdock raises.

Every error Hyperdock raises on purpose derives from :class:`HyperdockError`. Messages
say what was wrong and what to do about it, so the command line prints them as they are,
without a traceback.
"""

from __future__ import annotations


class HyperdockError(Exception):
    """Root of every error Hyperdock raises on purpose."""


class ConfigError(HyperdockError):
    """A search space, config module, command line option or setting is invalid."""


class SpaceError(ConfigError):
    """A search space is invalid; the message names the parameter and the problem."""


class StoreError(HyperdockError):
    """The store (database) refused an operation or holds unexpected data."""


class StoreConnectionError(StoreError):
    """The store cannot be reached, or the URL or credentials are wrong."""


class ExperimentExists(StoreError):
    """An experiment with that name exists already (another process may have just
    created it)."""


class StoreNotFound(ConfigError):
    """A reader was pointed at an SQLite store file that does not exist."""


class ExperimentNotFound(StoreError):
    """No experiment (or trial) with the given name (or id) exists in the store."""


class TargetError(HyperdockError):
    """The target could not be started, or broke the target contract.

    Attributes:
        retryable: False when running the trial again cannot help (image missing,
            command not found), so the trial fails at once instead of using up retries.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class HostError(TargetError):
    """The worker's own host cannot run trials now: the Docker engine is unreachable,
    the results folder cannot be written, the disk is full.

    Not the trial's fault: the worker puts the trial back in the queue without using a
    retry, and waits until its host works again.

    Attributes:
        summary: One short line for ``hyperdock workers`` (the message says more).
    """

    def __init__(self, message: str, *, summary: str | None = None) -> None:
        super().__init__(message, retryable=True)
        self.summary = summary or message.split("\n", 1)[0]


class LossFileError(TargetError):
    """``loss.json`` is missing, empty or does not hold a usable loss."""
