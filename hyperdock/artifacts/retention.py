"""Which trials' checkpoints an experiment keeps once it has ended
(``--keep-checkpoints best|all|none``).

``best`` (the default) keeps the best trial's checkpoint (several objectives: those of
the Pareto front), so a search of a thousand trials does not keep a thousand
checkpoints; ``none`` keeps none, ``all`` every one. The others are deleted from the
artifact store and from the results folder of the process that ended the experiment
(``hyperdock run``: its workers' folder), when it holds them.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

from hyperdock.artifacts import checkpoint_key, experiment_key
from hyperdock.artifacts.settings import DataSettings
from hyperdock.errors import HyperdockError
from hyperdock.objectives import Objectives, pareto_front
from hyperdock.runtimes.base import CHECKPOINT_NAME
from hyperdock.storage.base import Store
from hyperdock.trial import Experiment

__all__ = ["prune_checkpoints"]

log = logging.getLogger("hyperdock.checkpoints")


def prune_checkpoints(
    store: Store, exp: Experiment, *, results_dir: Path | None = None
) -> list[int]:
    """Delete the checkpoints ``exp``'s ``keep_checkpoints`` setting does not keep, in
    its artifact store and under ``results_dir``; return the ids of the trials whose
    checkpoints are kept. Failures are logged: they never fail the caller.
    """
    settings = DataSettings.from_meta(exp.meta)
    trials = store.list_trials(exp.id)
    if settings.keep_checkpoints == "all":
        return [t.id for t in trials]
    keep: set[int] = set()
    if settings.keep_checkpoints == "best":
        objectives = Objectives.from_meta(exp.meta)
        if objectives.multi:
            keep = {t.id for t in pareto_front(trials, objectives)}
        elif (best := store.best_trial(exp.id, maximize=objectives.maximize)) is not None:
            keep = {best.id}
    drop = {t.id for t in trials} - keep
    if settings.artifacts is not None and drop:
        _prune_stored(exp, settings, drop)
    if results_dir is not None:
        from hyperdock.layout import slugify

        for trial_id in sorted(drop):
            _remove_folder(results_dir / f"{slugify(exp.name)}-{trial_id}" / CHECKPOINT_NAME)
    if drop:
        log.info(
            "experiment %s: checkpoints kept for trial(s) %s (--keep-checkpoints %s)",
            exp.name,
            ", ".join(map(str, sorted(keep))) or "none",
            settings.keep_checkpoints,
        )
    return sorted(keep)


def _prune_stored(exp: Experiment, settings: DataSettings, drop: set[int]) -> None:
    from hyperdock.artifacts import open_artifacts

    assert settings.artifacts is not None
    try:
        artifacts = open_artifacts(settings.artifacts, endpoint=settings.endpoint)
        try:
            # One listing of the experiment, not one per trial.
            prefixes = tuple(checkpoint_key(exp.name, trial_id) for trial_id in drop)
            keys = [
                info.key
                for info in artifacts.list(f"{experiment_key(exp.name)}/")
                if info.key.startswith(prefixes)
            ]
            artifacts.delete(keys)
        finally:
            artifacts.close()
    except HyperdockError as exc:
        log.warning(
            "experiment %s: the checkpoints of trials it does not keep could not be "
            "deleted from %s: %s",
            exp.name,
            settings.artifacts,
            exc,
        )


def _remove_folder(folder: Path) -> None:
    """Remove ``folder`` and what it holds (a link in its place is removed, never
    followed)."""
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("could not remove %s: %s", folder, exc.strerror or exc)
        return
    try:
        if stat.S_ISDIR(mode):
            shutil.rmtree(folder)
        else:
            folder.unlink()
    except OSError as exc:
        log.warning("could not remove %s: %s", folder, exc.strerror or exc)
