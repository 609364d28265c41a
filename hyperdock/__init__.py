"""Hyperdock: hyperparameter search for anything that runs in a Docker image or as a
local command.

Command line: ``hyperdock run space.py --command 'python train.py'``. Python::

    import hyperdock
    from hyperdock import hp

    exp = hyperdock.Experiment.open("quad", space={"x": hp.uniform("x", -5, 5)})
    trial = exp.ask()
    exp.tell(trial, loss=(trial.params["x"] - 1) ** 2)

:func:`report` in a target reports intermediate losses (early stopping);
:func:`checkpoint_dir` is where it saves what a later attempt resumes from. Everything but
these is imported on first use, so ``import hyperdock`` in a target stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hyperdock.checkpoint import checkpoint_dir
from hyperdock.progress import report

if TYPE_CHECKING:
    from hyperdock import hp
    from hyperdock.experiment import Experiment, list_experiments, run
    from hyperdock.storage import open_store
    from hyperdock.targets import Command, Image

__version__ = "1.0.0.dev0"

__all__ = [
    "Command",
    "Experiment",
    "Image",
    "__version__",
    "checkpoint_dir",
    "hp",
    "list_experiments",
    "open_store",
    "report",
    "run",
]

#: Lazily imported names and the module each comes from.
_LAZY = {
    "Command": "hyperdock.targets",
    "Experiment": "hyperdock.experiment",
    "Image": "hyperdock.targets",
    "list_experiments": "hyperdock.experiment",
    "run": "hyperdock.experiment",
    "open_store": "hyperdock.storage",
}


def __getattr__(name: str) -> Any:
    if name == "hp":
        return importlib.import_module("hyperdock.hp")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hyperdock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
