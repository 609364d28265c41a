"""Build the Hyperdock images for the tests without any registry.

The Dockerfiles in ``docker/`` start ``FROM ${BASE}`` (``python:3.12-slim`` for users).
No registry is reachable here, so the tests build their own base: a minimal Debian
bookworm root file system with ``python3`` and ``python3-venv``, made with
``debootstrap`` (packages from the Debian mirror) and imported with ``docker import``.
By hand::

    debootstrap --variant=minbase --include=python3,python3-venv bookworm rootfs
    tar -C rootfs -c . | docker import --change 'ENV PATH=...' --change 'CMD ["python3"]' \\
        - hyperdock-test-python:bookworm
    docker build --network host --build-arg BASE=hyperdock-test-python:bookworm \\
        -f docker/Dockerfile.worker -t hyperdock-test-worker:dev .

(the exact ``--change`` values are :data:`CHANGES`). ``python tests/images/python_base.py``
builds the base image and prints its tag.

The fixtures ``python_base_image``, ``worker_image``, ``supervisor_image`` and
``template_image`` (``tests/conftest.py``) call :func:`build_base_image` and
:func:`build_image`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Tag of the base image; bump it when :data:`PACKAGES` or :data:`CHANGES` change.
IMAGE_TAG = "hyperdock-test-python:bookworm"
SUITE = "bookworm"
#: Debian mirror for debootstrap; ``HYPERDOCK_TEST_DEBIAN_MIRROR`` overrides it.
MIRROR = "http://deb.debian.org/debian"
#: Packages on top of ``minbase``: Debian's python3 is 3.11 (Hyperdock needs >= 3.11),
#: python3-venv brings ensurepip, so ``python3 -m venv`` gives a venv with pip.
PACKAGES = ("python3", "python3-venv")
#: Dockerfile instructions applied on import (python:3.12-slim sets the same kind).
CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]
#: Trimmed from the root file system before import (package caches, docs).
TRIM = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
#: Label on every image :func:`build_image` makes, so stale ones can be pruned.
IMAGE_LABEL = "hyperdock.test.image"


class BuildError(RuntimeError):
    """An image could not be built; the message holds the end of the build log."""


def missing_tools() -> str | None:
    """Why :func:`build_base_image` cannot run here, or None when it can."""
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "debootstrap needs root"
    return None


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (deepest first)."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            point = line.split()[1].encode().decode("unicode_escape")
            if point == str(root) or point.startswith(prefix):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _remove_rootfs(root: Path) -> None:
    """Delete a debootstrap tree, but never through a mount left inside it."""
    if not root.exists():
        return
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    left = _mounts_under(root)
    if left:
        raise BuildError(f"not deleting {root}: still mounted there: {', '.join(left)}")
    shutil.rmtree(root)


def _image_exists(client: Any, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_base_image(
    client: Any,
    tag: str = IMAGE_TAG,
    mirror: str | None = None,
    log: Any = sys.stderr,
) -> str:
    """Make the Debian Python base image unless ``tag`` already exists.

    The debootstrap tree and the tar archive live in a temporary folder that is deleted
    afterwards (about 280 MB while it runs; the image is about 130 MB).

    Args:
        client: A ``docker.DockerClient``.
        tag: ``repository:tag`` to create.
        mirror: Debian mirror (default ``HYPERDOCK_TEST_DEBIAN_MIRROR`` or :data:`MIRROR`).
        log: Where to write progress lines.

    Returns:
        ``tag``.

    Raises:
        BuildError: debootstrap or the import failed.
    """
    if _image_exists(client, tag):
        return tag
    mirror = mirror or os.environ.get("HYPERDOCK_TEST_DEBIAN_MIRROR") or MIRROR
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="hyperdock-python-base-"))
    rootfs = tmp / "rootfs"
    try:
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            mirror,
        ]
        print(f"building {tag}: {' '.join(cmd)}", file=log, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise BuildError(f"debootstrap failed (exit {done.returncode}):\n{tail}")
        for rel in TRIM:
            path = rootfs / rel
            if path.is_dir():
                shutil.rmtree(path)
                path.mkdir()
        archive = tmp / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(archive), "."],
            check=True,
            capture_output=True,
        )
        _remove_rootfs(rootfs)
        repository, _, version = tag.rpartition(":")
        client.api.import_image_from_file(
            str(archive), repository=repository, tag=version, changes=CHANGES
        )
    finally:
        _remove_rootfs(rootfs)  # raises, keeping everything, if a mount is left inside
        shutil.rmtree(tmp, ignore_errors=True)
    if not _image_exists(client, tag):
        raise BuildError(f"docker import did not produce {tag}")
    print(f"built {tag} in {time.monotonic() - started:.0f} s", file=log, flush=True)
    return tag


def build_image(
    client: Any,
    context: Path,
    dockerfile: str,
    tag: str,
    buildargs: Mapping[str, str] | None = None,
) -> str:
    """``docker build --network host -f DOCKERFILE -t TAG [--build-arg …] CONTEXT``.

    Layers are cached by Docker, so an unchanged image rebuilds in about a second. The
    image replaced under ``tag`` by a rebuild is pruned.

    Raises:
        BuildError: the build failed (the message ends with the build log's last lines).
    """
    lines: list[str] = []
    error = None
    for chunk in client.api.build(
        path=str(context),
        dockerfile=dockerfile,
        tag=tag,
        buildargs=dict(buildargs or {}),
        network_mode="host",
        labels={IMAGE_LABEL: tag},
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "stream" in chunk:
            lines.extend(chunk["stream"].splitlines())
        if "error" in chunk:
            error = chunk["error"]
    if error is not None or not _image_exists(client, tag):
        tail = "\n".join(lines[-40:])
        raise BuildError(f"docker build of {dockerfile} failed: {error}\n{tail}")
    client.images.prune(filters={"dangling": True, "label": f"{IMAGE_LABEL}={tag}"})
    return tag


if __name__ == "__main__":
    import docker

    print(build_base_image(docker.from_env()))
