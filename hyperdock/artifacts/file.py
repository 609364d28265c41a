"""``file:///shared/path``: an artifact store in a folder every host mounts (NFS, a
cluster file system, or one machine's disk)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from hyperdock.artifacts.base import ArtifactInfo, ArtifactStore, ArtifactStoreError, check_key


class FileArtifactStore(ArtifactStore):
    """Objects are files under ``root`` (keys are their relative paths).

    Writes go to a temporary file in the same folder, then are renamed into place, so
    a reader never sees part of an object. Symlinks under ``root`` are never followed
    when listing (only regular files are objects).
    """

    scheme = "file"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, fd: int) -> int:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            size = 0
            try:
                while chunk := os.read(fd, 1024 * 1024):
                    os.write(tmp_fd, chunk)
                    size += len(chunk)
                os.fsync(tmp_fd)
            finally:
                os.close(tmp_fd)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)
            raise ArtifactStoreError(
                f"could not write {key} to {self.describe()}: {exc.strerror or exc}"
            ) from None
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                os.write(tmp_fd, data)
                os.fsync(tmp_fd)
            finally:
                os.close(tmp_fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise ArtifactStoreError(
                f"could not write {key} to {self.describe()}: {exc.strerror or exc}"
            ) from None

    def iter_bytes(self, key: str, chunk: int = 1024 * 1024) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ArtifactStoreError(
                f"no artifact {key} in {self.describe()}", retryable=False
            ) from None
        except OSError as exc:
            raise ArtifactStoreError(
                f"could not read {key} from {self.describe()}: {exc.strerror or exc}"
            ) from None
        return self._chunks(fd, chunk)

    @staticmethod
    def _chunks(fd: int, chunk: int) -> Iterator[bytes]:
        try:
            while data := os.read(fd, chunk):
                yield data
        finally:
            os.close(fd)

    def list(self, prefix: str = "") -> list[ArtifactInfo]:
        check_key(prefix, prefix=True)
        base, _, _ = prefix.rpartition("/")
        top = self.root / base if base else self.root
        found: list[ArtifactInfo] = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = rel_dir + name
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if os.path.isfile(os.path.join(dirpath, name)) and not os.path.islink(
                    os.path.join(dirpath, name)
                ):
                    found.append(ArtifactInfo(key, st.st_size, st.st_mtime))
        return sorted(found, key=lambda info: info.key)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ArtifactStoreError(
                    f"could not delete {key} from {self.describe()}: {exc.strerror or exc}"
                ) from None
            # Empty folders left behind are removed, up to the root.
            parent = path.parent
            while parent != self.root and self.root in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise ArtifactStoreError(
                f"the artifact folder {self.root} cannot be written ({exc.strerror or exc}): "
                "mount it on this host or give --artifacts another URL"
            ) from None

    def describe(self) -> str:
        return f"file://{self.root}"
