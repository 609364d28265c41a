"""The checkpoint folder a target shares with its other attempts (target side).

Every attempt of a trial sees the same folder: ``/hyperdock/checkpoint`` in a container,
the path in ``HYPERDOCK_CHECKPOINT_DIR`` for a command. A target that saves its state
there, and looks for it when it starts, resumes where a failed, preempted or stopped
attempt left off. Kept free of other imports: targets import it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CHECKPOINT_ENV", "CONTAINER_CHECKPOINT", "checkpoint_dir"]

#: The variable holding the checkpoint folder's path.
CHECKPOINT_ENV = "HYPERDOCK_CHECKPOINT_DIR"
#: Where a container (Docker, Kubernetes, Apptainer) sees the checkpoint folder.
CONTAINER_CHECKPOINT = "/hyperdock/checkpoint"


def checkpoint_dir() -> Path | None:
    """The checkpoint folder of this trial, shared by all its attempts.

    ``HYPERDOCK_CHECKPOINT_DIR`` when set, else ``/hyperdock/checkpoint`` when it exists
    (a container). Nothing is created.

    Returns:
        Its path; None when the target does not run under Hyperdock.
    """
    given = os.environ.get(CHECKPOINT_ENV)
    if given:
        return Path(given)
    container = Path(CONTAINER_CHECKPOINT)
    return container if container.is_dir() else None
