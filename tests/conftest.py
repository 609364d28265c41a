"""Shared pytest fixtures.

Sections (add new fixtures to the matching section, or start a new one):

* Environment helpers: :func:`unavailable` skips a test when something it needs is
  missing, but fails it when ``CI=true`` (CI must never silently skip).
* Docker (tests marked ``@pytest.mark.docker``): ``docker_client``, ``busybox_image``,
  ``docker_labels``. Images are built locally (``tests/images/``); nothing is pulled.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

TESTS_DIR = Path(__file__).resolve().parent
IMAGES_DIR = TESTS_DIR / "images"


# -- environment helpers -------------------------------------------------------------


def in_ci() -> bool:
    """True when running in CI (``CI=true``), where missing tools are failures."""
    return os.environ.get("CI") == "true"


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip the current test because ``what`` is unavailable; fail instead in CI."""
    if in_ci():
        pytest.fail(f"{what} is required in CI: {reason}", pytrace=False)
    pytest.skip(f"{what} is not available: {reason}")


@pytest.fixture(autouse=True)
def _kill_leftover_processes() -> Iterator[None]:
    """Processes a test started with ``clihelp.spawn`` never outlive it."""
    yield
    from clihelp import kill_spawned

    kill_spawned()


# -- Docker ---------------------------------------------------------------------------

#: Label put on every container a test creates (value: one uuid per test), so the
#: teardown of ``docker_labels`` finds leaks without touching anybody else's containers.
TEST_LABEL = "hyperdock.test"


def load_image_helper(name: str) -> ModuleType:
    """Import ``tests/images/<name>.py`` (``tests`` need not be a package)."""
    path = IMAGES_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"hyperdock_test_images_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A ``docker.DockerClient`` connected to the local engine.

    Skips the test when the engine cannot be reached (fails when ``CI=true``).
    """
    try:
        import docker.client

        client = docker.client.DockerClient.from_env()
        client.ping()
    except Exception as exc:
        unavailable(
            "Docker",
            f"cannot reach the Docker engine ({exc}); start dockerd or set DOCKER_HOST",
        )
    yield client
    client.close()


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """Tag of a tiny local busybox image (built once with ``docker import``; never pulled).

    Its default command prints ``/hyperdock/params.json`` and writes
    ``{"loss": 0.5, "state": "ok"}`` to ``/hyperdock/loss.json``. See
    ``tests/images/busybox_rootfs.py`` for the applets it holds.
    """
    helper = load_image_helper("busybox_rootfs")
    if not helper.BUSYBOX.exists():
        unavailable(
            "busybox-static",
            f"{helper.BUSYBOX} is missing; install it with 'apt-get install busybox-static'",
        )
    return str(helper.build_image(docker_client))


@pytest.fixture
def docker_labels(docker_client: Any) -> Iterator[dict[str, str]]:
    """Labels to put on every container the test creates.

    After the test, any container still carrying them is removed and the test errors:
    a leaked container is a bug.
    """
    labels = {TEST_LABEL: uuid.uuid4().hex}
    yield labels
    filters = {"label": f"{TEST_LABEL}={labels[TEST_LABEL]}"}
    leaked = docker_client.containers.list(all=True, filters=filters)
    for container in leaked:
        container.remove(force=True, v=True)
    if leaked:
        names = ", ".join(container.name for container in leaked)
        pytest.fail(f"the test left containers behind: {names}", pytrace=False)
