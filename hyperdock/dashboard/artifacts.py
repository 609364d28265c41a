"""The dashboard's view of a trial's artifact store: the list of its stored files,
``graphs.json`` and ``out/`` when its folder is not on this host, and downloads
streamed through the server (``GET /api/trials/<id>/artifacts/<path>``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from hyperdock import trialfs
from hyperdock.artifacts.access import list_artifacts, open_artifact, store_of
from hyperdock.artifacts.base import ArtifactStore, ArtifactStoreError
from hyperdock.errors import ConfigError
from hyperdock.trial import Experiment

log = logging.getLogger("hyperdock.dashboard")

#: Stored files of one trial listed at most.
MAX_ARTIFACTS = 1000


class ArtifactFile:
    """A stored file, streamed in chunks (the interface of the dashboard's file
    downloads: ``name``, ``size``, iteration, ``close``)."""

    def __init__(self, name: str, size: int, chunks: Iterator[bytes]) -> None:
        self.name = name
        self.size = size
        self._chunks: Iterator[bytes] | None = chunks

    def __iter__(self) -> Iterator[bytes]:
        if self._chunks is not None:
            yield from self._chunks
        self.close()

    def close(self) -> None:
        """Release the connection (WSGI servers call this when the reply is sent)."""
        chunks, self._chunks = self._chunks, None
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _store(exp: Experiment | None) -> ArtifactStore | None:
    if exp is None:
        return None
    try:
        return store_of(exp)
    except ConfigError as exc:  # e.g. boto3 missing on the dashboard's host
        log.warning("dashboard: artifact store of %s: %s", exp.name, exc)
        return None


def stored_files(
    exp: Experiment | None,
    trial_id: int,
    folder_here: bool,
    limits: trialfs.Limits,
) -> dict[str, Any]:
    """What ``GET /api/trials/<id>`` adds from the artifact store: ``artifacts`` (the
    stored files), and when the folder is not here ``graphs`` and ``files`` (``out/``)
    of the last attempt stored."""
    store = _store(exp)
    if store is None or exp is None:
        return {"artifacts": None}
    out: dict[str, Any] = {"artifacts_store": store.describe()}
    try:
        rows = list_artifacts(store, exp.name, trial_id)[:MAX_ARTIFACTS]
    except ArtifactStoreError as exc:
        return {"artifacts": [], "artifacts_error": str(exc)}
    out["artifacts"] = [{"path": r.path, "attempt": r.attempt, "size": r.size} for r in rows]
    attempts = [r.attempt for r in rows if r.attempt]
    if folder_here or not attempts:
        return out
    last = f"{max(attempts)}/"
    out["files"] = [
        {"path": r.path[len(last) + 4 :], "size": r.size}
        for r in rows
        if r.path.startswith(f"{last}out/")
    ]
    if any(r.path == f"{last}graphs.json" for r in rows):
        try:
            raw = store.read_bytes(
                f"{rows_key(exp, trial_id)}{last}graphs.json", limits.graphs_bytes
            )
            out["graphs"] = json.loads(raw.decode("utf-8", errors="replace"))
        except (ArtifactStoreError, ValueError) as exc:
            out["graphs_error"] = f"graphs.json is unreadable: {exc}"
    return out


def rows_key(exp: Experiment, trial_id: int) -> str:
    """The key prefix of a trial's stored files."""
    from hyperdock.artifacts.base import trial_key

    return trial_key(exp.name, trial_id)


def open_stored(exp: Experiment | None, trial_id: int, path: str) -> ArtifactFile | None:
    """The stored file ``path`` (relative to the trial; see
    :func:`~hyperdock.artifacts.access.open_artifact`); None when there is no artifact
    store or no such file. Keys are checked and kept inside the trial's prefix."""
    store = _store(exp)
    if store is None or exp is None:
        return None
    try:
        key, size, chunks = open_artifact(store, exp.name, trial_id, path)
    except (ConfigError, ArtifactStoreError) as exc:
        log.debug("dashboard: no stored %s of trial %d: %s", path, trial_id, exc)
        return None
    return ArtifactFile(key.rsplit("/", 1)[-1], size, chunks)
