"""Artifact stores: a trial's files (and its checkpoint) kept off the worker's host.

See :mod:`hyperdock.artifacts.base` for the contract and the layout.
"""

from __future__ import annotations

from hyperdock.artifacts.base import (
    ArtifactInfo,
    ArtifactStore,
    ArtifactStoreError,
    attempt_key,
    check_key,
    checkpoint_key,
    experiment_key,
    trial_key,
)

__all__ = [
    "ArtifactInfo",
    "ArtifactStore",
    "ArtifactStoreError",
    "attempt_key",
    "check_key",
    "checkpoint_key",
    "experiment_key",
    "open_artifacts",
    "trial_key",
]


def open_artifacts(url: str, *, endpoint: str | None = None) -> ArtifactStore:
    """The artifact store at ``url``: ``file:///shared/path`` or ``s3://bucket/prefix``
    (``endpoint``: an S3-compatible server's URL; else ``AWS_ENDPOINT_URL`` or AWS).

    Raises:
        ConfigError: a bad URL, or the extra its backend needs is not installed.
    """
    from urllib.parse import unquote, urlsplit

    from hyperdock.artifacts.settings import check_artifacts_url

    parts = urlsplit(check_artifacts_url(url))
    if parts.scheme == "file":
        from hyperdock.artifacts.file import FileArtifactStore

        return FileArtifactStore(unquote(parts.path))
    from hyperdock.artifacts.s3 import S3ArtifactStore  # type: ignore[import-not-found,unused-ignore]

    store: ArtifactStore = S3ArtifactStore(
        parts.netloc, unquote(parts.path).strip("/"), endpoint=endpoint
    )
    return store
