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


class LossFileError(TargetError):
    """``loss.json`` is missing, empty or does not hold a usable loss."""
