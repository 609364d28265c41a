"""Where a worker keeps a trial's files: ``<results>/<experiment slug>-<trial id>/``
holds one timestamped folder per attempt and the trial's ``checkpoint/`` folder."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["slugify", "trial_dir"]


def slugify(name: str) -> str:
    """A folder-safe form of an experiment name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "experiment"


def trial_dir(results: str | Path, experiment: str, trial_id: int) -> Path:
    """The folder of trial ``trial_id``'s attempts (and of its checkpoint folder)."""
    return Path(results).expanduser() / f"{slugify(experiment)}-{trial_id}"
