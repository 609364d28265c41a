"""optuna, imported when an adaptive sampler, a pruner or importances first need it.

Kept apart from :mod:`hyperdock.study` so that :mod:`hyperdock.pruners`, which the study
imports, can load optuna without importing the study back.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

from hyperdock.errors import ConfigError

__all__ = ["import_optuna"]

# optuna's warnings are logged under the study's name, where they were before.
log = logging.getLogger("hyperdock.study")


class _Forward(logging.Handler):
    """Passes optuna's warnings to our log, each once per process whatever trial it
    names (a fallback warning would otherwise repeat for every trial)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        key = re.sub(r"Trial#?\s*\d+", "Trial", message)
        if key not in self.seen:
            self.seen.add(key)
            log.log(record.levelno, "optuna: %s", message)


_configured = False


def import_optuna() -> Any:
    """optuna, imported on first use (it is slow to import) and set up once per process.

    Raises:
        ConfigError: optuna is not installed.
    """
    global _configured
    try:
        import optuna
    except ImportError:  # pragma: no cover - a dependency
        raise ConfigError("adaptive samplers need optuna: pip install optuna") from None
    if not _configured:
        # optuna's warnings go through our logging (once each), not its own handler.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.logging.disable_default_handler()
        optuna.logging.disable_propagation()
        logging.getLogger("optuna").addHandler(_Forward())
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        _configured = True
    return optuna
