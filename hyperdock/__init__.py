"""Hyperdock: hyperparameter search for anything that runs in a Docker image or as a
local command.

Command line: ``hyperdock run space.py --command 'python train.py'``. Library:
:mod:`hyperdock.hp` to write spaces, :func:`hyperdock.storage.open_store` to read results,
:func:`report` in a target to report intermediate losses (early stopping).
"""

from __future__ import annotations

from hyperdock.progress import report

__version__ = "1.0.0.dev0"

__all__ = ["__version__", "report"]
