"""Build the tiny busybox test image without any registry access.

The image is a root file system holding only a statically linked busybox
(``apt-get install busybox-static``) and symlinks for the applets the tests use, imported
with ``docker import``. The test fixture ``busybox_image`` (``tests/conftest.py``) calls
:func:`build_image`; by hand the same image is made with::

    python tests/images/busybox_rootfs.py > rootfs.tar
    docker import --change 'ENV PATH=/bin' \\
        --change 'CMD ["sh", "-c", "..."]' rootfs.tar hyperdock-test-busybox:1

(the exact ``--change`` values are :data:`CHANGES`).
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

#: Tag of the test image; bump the version when the image's content changes.
IMAGE_TAG = "hyperdock-test-busybox:1"

#: Where busybox-static installs its binary.
BUSYBOX = Path("/bin/busybox")

#: Applets linked into /bin (``trap`` is a shell builtin).
APPLETS = (
    "sh",
    "cat",
    "echo",
    "sleep",
    "sed",
    "ls",
    "mkdir",
    "printf",
    "test",
    "[",
    "env",
    "hostname",
    "touch",
    "grep",
    "cut",
    "tr",
    "kill",
    "true",
    "false",
    "rm",
    "id",
    "head",
    "wc",
)

#: The image's default command: a minimal target that echoes its parameters and writes
#: a fixed loss (tests override it with ``RunContext.command``).
DEFAULT_CMD = [
    "sh",
    "-c",
    'cat /hyperdock/params.json; echo \'{"loss": 0.5, "state": "ok"}\' > /hyperdock/loss.json',
]

#: Dockerfile instructions applied on import.
CHANGES = ["ENV PATH=/bin", f"CMD {json.dumps(DEFAULT_CMD)}"]


def rootfs_tar(busybox: Path = BUSYBOX) -> bytes:
    """Return an uncompressed tar archive of the image's root file system.

    Args:
        busybox: Path of a statically linked busybox binary.

    Raises:
        FileNotFoundError: ``busybox`` does not exist.
    """
    data = busybox.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)

        add_dir("bin", 0o755)
        add_dir("etc", 0o755)
        add_dir("tmp", 0o1777)
        binary = tarfile.TarInfo("bin/busybox")
        binary.mode = 0o755
        binary.size = len(data)
        tar.addfile(binary, io.BytesIO(data))
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ):
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def build_image(client: Any, tag: str = IMAGE_TAG, busybox: Path = BUSYBOX) -> str:
    """Import the test image into Docker unless ``tag`` already exists.

    Args:
        client: A ``docker.DockerClient``.
        tag: ``repository:tag`` to create.
        busybox: Path of a statically linked busybox binary.

    Returns:
        ``tag``.
    """
    import docker.errors

    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    repository, _, version = tag.rpartition(":")
    client.api.import_image_from_data(
        rootfs_tar(busybox), repository=repository, tag=version, changes=CHANGES
    )
    client.images.get(tag)  # raises if the import did not produce the tag
    return tag


if __name__ == "__main__":
    sys.stdout.buffer.write(rootfs_tar())
