"""Reading an experiment's artifacts: listing them per trial and attempt, fetching one,
deleting them all (``hyperdock artifacts``, ``hyperdock delete``, the dashboard)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from hyperdock.artifacts.base import (
    ArtifactStore,
    ArtifactStoreError,
    check_key,
    experiment_key,
    trial_key,
)
from hyperdock.artifacts.settings import DataSettings
from hyperdock.artifacts.uploader import StoreCache
from hyperdock.errors import ConfigError
from hyperdock.storage.base import Store
from hyperdock.trial import Experiment

__all__ = [
    "TrialArtifact",
    "artifact_key",
    "delete_artifacts",
    "delete_experiment",
    "experiment_store",
    "latest_attempt",
    "list_artifacts",
    "open_artifact",
    "store_of",
]

#: Stores opened by this process for reading (the CLI, the dashboard).
_STORES = StoreCache()


def store_of(
    exp: Experiment, url: str | None = None, endpoint: str | None = None
) -> ArtifactStore | None:
    """The artifact store of ``exp`` (its stored ``--artifacts``, or ``url`` when
    given); None when it has none."""
    settings = DataSettings.from_meta(exp.meta).with_worker(url, endpoint)
    if settings.artifacts is None:
        return None
    return _STORES.get(settings.artifacts, settings.endpoint)


def experiment_store(
    exp: Experiment, url: str | None = None, endpoint: str | None = None
) -> ArtifactStore:
    """As :func:`store_of`, for commands that need one.

    Raises:
        ConfigError: the experiment has no artifact store.
    """
    store = store_of(exp, url, endpoint)
    if store is None:
        raise ConfigError(
            f"experiment {exp.name!r} has no artifact store (it was run without "
            "--artifacts); its files are in the results folders of the workers' hosts, "
            "or give --artifacts URL if its workers used their own"
        )
    return store


@dataclasses.dataclass(frozen=True)
class TrialArtifact:
    """One stored file of a trial.

    Attributes:
        trial_id: The trial.
        path: Its path relative to the trial: ``<attempt>/out/model.pt``,
            ``checkpoint/step.txt``.
        attempt: The attempt's number (1 for the first); None for the checkpoint.
        size: Bytes.
        modified: When it was stored (Unix seconds).
    """

    trial_id: int
    path: str
    attempt: int | None
    size: int
    modified: float


def list_artifacts(
    store: ArtifactStore, experiment: str, trial_id: int | None = None
) -> list[TrialArtifact]:
    """The stored files of experiment ``experiment`` (or of its trial ``trial_id``),
    by trial, then path."""
    top = f"{experiment_key(experiment)}/"
    prefix = trial_key(experiment, trial_id) if trial_id is not None else top
    found = []
    for info in store.list(prefix):
        rest = info.key[len(top) :]
        trial, _, path = rest.partition("/")
        if not trial.isdigit() or not path:
            continue
        first = path.split("/", 1)[0]
        attempt = int(first) if first.isdigit() else None
        found.append(TrialArtifact(int(trial), path, attempt, info.size, info.modified))
    return sorted(found, key=lambda a: (a.trial_id, a.attempt or 0, a.path))


def latest_attempt(store: ArtifactStore, experiment: str, trial_id: int) -> int | None:
    """The number of the trial's last attempt with stored files; None for none."""
    attempts = [a.attempt for a in list_artifacts(store, experiment, trial_id) if a.attempt]
    return max(attempts) if attempts else None


def artifact_key(experiment: str, trial_id: int, path: str) -> str:
    """The key of ``path`` (relative to the trial, see :class:`TrialArtifact`): always
    inside the trial's prefix.

    Raises:
        ConfigError: ``path`` is not a valid relative path.
    """
    return trial_key(experiment, trial_id) + check_key(path.strip("/") or ".")


def open_artifact(
    store: ArtifactStore, experiment: str, trial_id: int, path: str
) -> tuple[str, int, Iterator[bytes]]:
    """The stored file ``path`` of a trial: its key, its size and its contents in
    chunks. A path without an attempt number (``out/model.pt``) means the last attempt
    that has it.

    Raises:
        ConfigError: a bad path.
        ArtifactStoreError: no such file (``retryable=False``), or the store failed.
    """
    candidates = [path]
    first = path.strip("/").split("/", 1)[0]
    if not first.isdigit() and first != "checkpoint":
        attempts = sorted(
            {a.attempt for a in list_artifacts(store, experiment, trial_id) if a.attempt},
            reverse=True,
        )
        candidates = [f"{n}/{path.strip('/')}" for n in attempts] or [path]
    for candidate in candidates:
        key = artifact_key(experiment, trial_id, candidate)
        found = [i for i in store.list(key) if i.key == key]
        if found:
            return key, found[0].size, store.iter_bytes(key)
    raise ArtifactStoreError(
        f"trial {trial_id} has no stored file {path} (see hyperdock artifacts)",
        retryable=False,
    )


def delete_artifacts(store: ArtifactStore, experiment: str) -> int:
    """Delete every stored file of experiment ``experiment``; return how many."""
    return store.delete_prefix(f"{experiment_key(experiment)}/")


def delete_experiment(store: Store, exp: Experiment, *, keep_artifacts: bool = False) -> int | None:
    """Delete ``exp`` from ``store`` and, unless ``keep_artifacts``, its artifacts first
    (so a failure leaves everything to try again); return how many stored files were
    deleted (None: no artifact store, or kept).

    Raises:
        ArtifactStoreError: the artifacts could not be deleted (the experiment is kept).
    """
    deleted = None
    artifacts = None if keep_artifacts else store_of(exp)
    if artifacts is not None:
        try:
            deleted = delete_artifacts(artifacts, exp.name)
        except ArtifactStoreError as exc:
            raise ArtifactStoreError(
                f"{exc}; nothing was deleted (try again, or keep the artifacts: --keep-artifacts)",
                retryable=exc.retryable,
            ) from None
    store.delete_experiment(exp.id)
    return deleted
