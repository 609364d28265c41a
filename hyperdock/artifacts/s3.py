"""``s3://bucket/prefix``: an artifact store in S3 or any S3-compatible server (MinIO,
Ceph, …), with plain ``boto3`` (``pip install 'hyperdock[s3]'``).

The endpoint is ``--artifacts-endpoint`` when given, else ``AWS_ENDPOINT_URL`` (boto3
reads it), else AWS itself. Credentials come from the standard AWS chain only
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, a role): they are never
part of the URL, of a message or of anything stored.

boto3's own retries are kept few and its timeouts short: the uploader
(:mod:`hyperdock.artifacts.uploader`) retries with its own backoff, for as long as the
worker lives.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hyperdock.artifacts.base import ArtifactInfo, ArtifactStore, ArtifactStoreError, check_key
from hyperdock.errors import ConfigError

__all__ = ["S3ArtifactStore"]

#: Seconds to wait for a connection to the server.
CONNECT_TIMEOUT = 5.0
#: Seconds to wait for an answer once connected.
READ_TIMEOUT = 60.0
#: Attempts boto3 makes itself per call (the uploader retries further).
BOTO_ATTEMPTS = 2
#: Files larger than this are uploaded in parts.
MULTIPART_THRESHOLD = 64 * 1024 * 1024

_NOT_RETRYABLE = {
    "NoSuchBucket",
    "NoSuchKey",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidBucketName",
    "AllAccessDisabled",
    "404",
    "403",
    "400",
}


def _plain_endpoint(url: str | None) -> str | None:
    """``url`` without any user:password part (never shown)."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


#: Files smaller than this are sent in one PUT from memory.
SMALL_FILE = 8 * 1024 * 1024


class S3ArtifactStore(ArtifactStore):
    """Objects in ``bucket`` under ``prefix`` (keys are relative to it).

    Args:
        bucket: The bucket; it must exist (Hyperdock never creates buckets).
        prefix: Path of every key in the bucket ("" for none).
        endpoint: An S3-compatible server's URL (``http://127.0.0.1:9000``); None for
            ``AWS_ENDPOINT_URL`` or AWS.

    Raises:
        ConfigError: boto3 is not installed.
    """

    scheme = "s3"

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigError(
                "s3:// artifact stores need boto3: pip install 'hyperdock[s3]'"
            ) from None
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        config = Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"max_attempts": BOTO_ATTEMPTS, "mode": "standard"},
            # Self-hosted servers (MinIO, Ceph, moto) mostly only know path-style URLs.
            s3={"addressing_style": "path"} if endpoint else {},
        )
        # A session per store: boto3's default session is not thread-safe to build.
        session = boto3.session.Session()
        self._client: Any = session.client("s3", endpoint_url=endpoint, config=config)
        self._lock = threading.Lock()

    # -- keys -----------------------------------------------------------------------
    def _key(self, key: str, *, prefix: bool = False) -> str:
        check_key(key, prefix=prefix)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    # -- errors ---------------------------------------------------------------------
    def _error(self, exc: Exception, doing: str) -> ArtifactStoreError:
        """One :class:`ArtifactStoreError` for a boto3/botocore failure."""
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        where = self.describe()
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ArtifactStoreError(
                f"{doing} {where}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials, a profile, a role)",
                retryable=False,
            )
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code == "NoSuchBucket":
                return ArtifactStoreError(
                    f"{doing} {where}: the bucket {self.bucket} does not exist; create it "
                    "(Hyperdock never creates buckets) or fix --artifacts",
                    retryable=False,
                )
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return ArtifactStoreError(
                    f"{doing} {where}: access denied ({code}); check the AWS credentials of "
                    "this host and the bucket's policy",
                    retryable=False,
                )
            if code in ("NoSuchKey", "404"):
                return ArtifactStoreError(f"{doing} {where}: no such object", retryable=False)
            retryable = code not in _NOT_RETRYABLE and (status >= 500 or status in (0, 408, 429))
            return ArtifactStoreError(
                f"{doing} {where}: the server answered {code or status}"
                + ("" if retryable else f": {error.get('Message', '')}".rstrip(": ")),
                retryable=retryable,
            )
        # Connection refused, timeouts, a dropped connection, a bad endpoint host.
        return ArtifactStoreError(
            f"{doing} {where}: the server cannot be reached ({type(exc).__name__}); "
            "check --artifacts-endpoint / AWS_ENDPOINT_URL and the network",
            retryable=True,
        )

    def _call(self, doing: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, method)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, doing) from None

    # -- the contract ----------------------------------------------------------------
    def put_file(self, key: str, fd: int) -> int:
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(key)
        start = os.lseek(fd, 0, os.SEEK_CUR)
        size = max(os.fstat(fd).st_size - start, 0)
        if size < SMALL_FILE:
            # One PUT: the transfer manager costs more than a small file's upload.
            data = bytearray()
            while chunk := os.read(fd, SMALL_FILE):
                data += chunk
            self.put_bytes(key, bytes(data))
            return len(data)
        transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_THRESHOLD,
            use_threads=False,  # the uploader's thread is the only one per upload
        )
        # A duplicate: boto3 may seek and read the file object as it likes, and closing
        # it leaves the caller's descriptor open.
        with open(os.dup(fd), "rb") as fh:
            fh.seek(start)
            try:
                self._client.upload_fileobj(fh, self.bucket, full, Config=transfer)
            except (BotoCoreError, ClientError) as exc:
                raise self._error(exc, f"could not upload {key} to") from None
            except S3UploadFailedError as exc:  # wraps the ClientError
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, BotoCoreError | ClientError):
                    raise self._error(cause, f"could not upload {key} to") from None
                raise ArtifactStoreError(
                    f"could not upload {key} to {self.describe()}: {exc}"
                ) from None
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(
            f"could not upload {key} to",
            "put_object",
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
        )

    def iter_bytes(self, key: str, chunk: int = 1024 * 1024) -> Iterator[bytes]:
        answer = self._call(
            f"could not read {key} from", "get_object", Bucket=self.bucket, Key=self._key(key)
        )
        return self._chunks(answer["Body"], key, chunk)

    def _chunks(self, body: Any, key: str, chunk: int) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError

        try:
            yield from body.iter_chunks(chunk)
        except BotoCoreError as exc:
            raise self._error(exc, f"could not read {key} from") from None
        finally:
            body.close()

    def list(self, prefix: str = "") -> list[ArtifactInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = (
            self._key(prefix, prefix=True) if prefix else (f"{self.prefix}/" if self.prefix else "")
        )
        found: list[ArtifactInfo] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    found.append(
                        ArtifactInfo(
                            self._relative(item["Key"]),
                            int(item["Size"]),
                            item["LastModified"].timestamp(),
                        )
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "could not list") from None
        return sorted(found, key=lambda info: info.key)

    def delete(self, keys: Iterable[str]) -> None:
        batch: list[dict[str, str]] = []
        for key in keys:
            batch.append({"Key": self._key(key)})
            if len(batch) == 1000:  # the most one request takes
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, batch: Sequence[dict[str, str]]) -> None:
        answer = self._call(
            "could not delete from",
            "delete_objects",
            Bucket=self.bucket,
            Delete={"Objects": batch, "Quiet": True},
        )
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise ArtifactStoreError(
                f"could not delete {len(errors)} object(s) from {self.describe()}: "
                f"{first.get('Code')} {first.get('Message', '')}".rstrip()
            )

    def check(self) -> None:
        try:
            self._call("cannot use", "head_bucket", Bucket=self.bucket)
        except ArtifactStoreError as exc:
            if "no such object" in str(exc):  # HEAD has no body: a bare 404
                raise ArtifactStoreError(
                    f"the bucket {self.bucket} does not exist at {self.describe()}: create "
                    "it (Hyperdock never creates buckets) or fix --artifacts",
                    retryable=False,
                ) from None
            raise

    def describe(self) -> str:
        url = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        endpoint = _plain_endpoint(self.endpoint)
        return f"{url} at {endpoint}" if endpoint else url

    def close(self) -> None:
        self._client.close()
