"""What an experiment says about its trials' data: the artifact store, how often the
checkpoint folder is synced, which checkpoints are kept when it ends.

Stored in the experiment's ``meta["data"]`` (never with credentials), so every worker,
the CLI and the dashboard find the same artifact store. A worker's own ``--artifacts``
wins over the experiment's (the same shared folder may be mounted elsewhere there).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hyperdock.errors import ConfigError

if TYPE_CHECKING:
    from hyperdock.storage.base import Store
    from hyperdock.trial import Experiment

__all__ = ["KEEP_CHECKPOINTS", "DataSettings", "check_artifacts_url", "save_data_settings"]

#: ``--keep-checkpoints`` values.
KEEP_CHECKPOINTS = ("best", "all", "none")
#: Default seconds between two syncs of a running trial's checkpoint folder.
DEFAULT_CHECKPOINT_SYNC = 60.0


def check_artifacts_url(url: str) -> str:
    """``url`` if it is a usable ``--artifacts`` URL: ``file:///path`` or
    ``s3://bucket[/prefix]``, without credentials.

    Raises:
        ConfigError: another scheme, a missing bucket or path, or credentials in it.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(
                f"--artifacts {url!r}: a file URL names an absolute folder: file:///shared/path"
            )
        return url
    if parts.scheme == "s3":
        if "@" in parts.netloc or parts.password or parts.username:
            raise ConfigError(
                "--artifacts: credentials do not go in the URL (it is stored with the "
                "experiment); give them the AWS way (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, or a role)"
            )
        if not parts.netloc:
            raise ConfigError(f"--artifacts {url!r}: name a bucket: s3://bucket/prefix")
        return url
    raise ConfigError(
        f"--artifacts {url!r}: use file:///shared/path or s3://bucket/prefix "
        "(S3-compatible servers: add --artifacts-endpoint URL)"
    )


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """An experiment's trial-data settings.

    Attributes:
        artifacts: The artifact store's URL (``file:///…`` or ``s3://bucket/prefix``);
            None for none (files stay in the workers' results folders).
        endpoint: The S3 endpoint URL for S3-compatible servers (MinIO, Ceph, …); None
            for AWS itself or ``AWS_ENDPOINT_URL``.
        checkpoint_sync: Seconds between two uploads of a running trial's checkpoint
            folder (``--checkpoint-sync``).
        keep_checkpoints: Which checkpoints are kept when the experiment ends:
            ``best`` (the best trials'), ``all`` or ``none``.
    """

    artifacts: str | None = None
    endpoint: str | None = None
    checkpoint_sync: float = DEFAULT_CHECKPOINT_SYNC
    keep_checkpoints: str = "best"

    def __post_init__(self) -> None:
        if self.artifacts is not None:
            check_artifacts_url(self.artifacts)
        if self.endpoint is not None and urlsplit(self.endpoint).scheme not in ("http", "https"):
            raise ConfigError(
                f"--artifacts-endpoint {self.endpoint!r}: give the server's URL, "
                "e.g. http://127.0.0.1:9000"
            )
        if not (math.isfinite(self.checkpoint_sync) and self.checkpoint_sync > 0):
            raise ConfigError(
                "--checkpoint-sync must be a positive number of seconds, "
                f"got {self.checkpoint_sync}"
            )
        if self.keep_checkpoints not in KEEP_CHECKPOINTS:
            raise ConfigError(
                f"--keep-checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}, "
                f"not {self.keep_checkpoints!r}"
            )

    def to_meta(self) -> dict[str, Any]:
        """The form stored in ``experiment.meta["data"]``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> DataSettings:
        """The settings an experiment's ``meta`` holds (defaults when it holds none)."""
        data = (meta or {}).get("data")
        if not isinstance(data, dict):
            return cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in fields})
        except (ConfigError, TypeError):
            return cls()

    def with_worker(self, artifacts: str | None, endpoint: str | None) -> DataSettings:
        """These settings as a worker given its own ``--artifacts`` sees them."""
        if artifacts is None:
            return self
        return dataclasses.replace(self, artifacts=artifacts, endpoint=endpoint or self.endpoint)

    @classmethod
    def given(
        cls,
        artifacts: str | None = None,
        endpoint: str | None = None,
        checkpoint_sync: float | None = None,
        keep_checkpoints: str | None = None,
    ) -> dict[str, Any]:
        """The settings a command or call gave (None: not given), checked.

        Raises:
            ConfigError: an invalid value.
        """
        given: dict[str, Any] = {
            "artifacts": artifacts,
            "endpoint": endpoint,
            "checkpoint_sync": checkpoint_sync,
            "keep_checkpoints": keep_checkpoints,
        }
        given = {k: v for k, v in given.items() if v is not None}
        cls(**given)  # refuses bad values now, before anything is stored
        return given


def save_data_settings(store: Store, exp: Experiment, given: dict[str, Any]) -> Experiment:
    """Store the ``given`` settings (see :meth:`DataSettings.given`) with ``exp``, over
    what it holds; return the experiment as stored now.

    Raises:
        ConfigError: an invalid value.
    """
    if not given:
        return exp
    merged = DataSettings(**{**DataSettings.from_meta(exp.meta).to_meta(), **given}).to_meta()
    if merged == exp.meta.get("data"):
        return exp
    return store.update_experiment(exp.id, meta={"data": merged})
