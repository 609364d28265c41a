"""Shared pytest fixtures.

Sections (add new fixtures to the matching section, or start a new one):

* Environment helpers: :func:`unavailable` skips a test when something it needs is
  missing, but fails it when ``CI=true`` (CI must never silently skip).
* Docker (tests marked ``@pytest.mark.docker``): ``docker_client``, ``busybox_image``,
  ``docker_labels``. Images are built locally (``tests/images/``); nothing is pulled.
* PostgreSQL: ``postgres_admin_url`` (HYPERDOCK_TEST_POSTGRES_URL), ``postgres_url``
  (a factory of fresh, empty databases), ``postgres_cluster`` (restart the local server).
* Slurm: ``slurm_conf`` (the one-node cluster ``.ci/slurm/up.sh`` starts; SLURM_CONF).
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


# -- PostgreSQL -----------------------------------------------------------------------

#: The server the PostgreSQL tests use unless HYPERDOCK_TEST_POSTGRES_URL names another:
#: the local Debian cluster that .ci/run starts on 127.0.0.1:5432, user ``postgres`` with
#: password ``postgres``. The role must be allowed to create databases.
DEFAULT_POSTGRES_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"


def _postgres_url_for(url: str, database: str) -> str:
    """``url`` with its database replaced by ``database``."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of the test server's admin database (HYPERDOCK_TEST_POSTGRES_URL).

    Skips the test when psycopg is missing or the server cannot be reached (fails when
    ``CI=true``).
    """
    from hyperdock.storage import redact_url

    url = os.environ.get("HYPERDOCK_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    try:
        import psycopg
    except ImportError as exc:
        unavailable("psycopg", f"{exc}; pip install -e '.[test]'")
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        cause = " ".join(str(exc).split())
        unavailable(
            "PostgreSQL",
            f"cannot connect to {redact_url(url)} ({cause}); start the server (.ci/run "
            "does) or set HYPERDOCK_TEST_POSTGRES_URL",
        )
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[Any]:
    """Factory of fresh, empty databases: each call creates one (``hd_test_<random>``)
    and returns its URL. They are dropped (``WITH (FORCE)``) after the test."""
    import time

    import psycopg

    made: list[str] = []

    def make() -> str:
        name = f"hd_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(postgres_admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return _postgres_url_for(postgres_admin_url, name)

    yield make
    if not made:
        return
    for attempt in range(30):  # the server may still be coming back from a restart test
        try:
            with psycopg.connect(postgres_admin_url, autocommit=True, connect_timeout=5) as conn:
                for name in made:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.OperationalError:
            if attempt == 29:
                raise
            time.sleep(1)


class PostgresCluster:
    """A local Debian PostgreSQL cluster (``pg_lsclusters``) that a test may restart."""

    def __init__(self, version: str, name: str, port: int) -> None:
        self.version, self.name, self.port = version, name, port

    def ctl(self, action: str) -> None:
        """Run ``pg_ctlcluster VERSION NAME ACTION`` (start, stop, restart); it waits."""
        import subprocess

        out = subprocess.run(
            ["pg_ctlcluster", self.version, self.name, action],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pg_ctlcluster {action} failed: {out.stderr.strip()}")

    def online(self) -> bool:
        """True when the cluster is running."""
        import subprocess

        out = subprocess.run(
            ["pg_lsclusters", "-h", self.version, self.name], capture_output=True, text=True
        )
        return "online" in out.stdout


@pytest.fixture
def postgres_cluster(postgres_admin_url: str) -> Iterator[PostgresCluster]:
    """The Debian cluster that serves ``postgres_admin_url``, for tests that restart it.

    Needs a server on this machine, ``pg_ctlcluster`` and root (or the cluster owner);
    skips otherwise (fails when ``CI=true``). Afterwards the cluster is running again.
    """
    import pwd
    import shutil
    import subprocess
    import urllib.parse

    parts = urllib.parse.urlsplit(postgres_admin_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1", None):
        unavailable("a local PostgreSQL cluster", f"the test server is {parts.hostname}")
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        unavailable("pg_ctlcluster", "install postgresql-common (apt-get install postgresql)")
    port = parts.port or 5432
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    found = [line.split() for line in listing.splitlines() if line.split()[2:3] == [str(port)]]
    if not found:
        unavailable("a local PostgreSQL cluster", f"pg_lsclusters lists none on port {port}")
    version, name, _port, _status, owner = found[0][:5]
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != owner:
        unavailable("pg_ctlcluster", f"restarting the cluster needs root or user {owner}")
    cluster = PostgresCluster(version, name, port)
    yield cluster
    if not cluster.online():
        cluster.ctl("start")


# -- Hyperdock images ---------------------------------------------------------------
# The deployment images of docker/ (tests/test_images.py), built FROM a local Debian
# Python base: no registry is reachable, so python:3.12-slim cannot be pulled.

#: The build context of the images in docker/.
REPO_ROOT = TESTS_DIR.parent


def _image_build_args() -> dict[str, str]:
    """Build arguments of the test builds, which install from PyPI (``--network host``).

    This machine's network intercepts TLS with a certificate authority that the Debian
    base image does not know, so pip in the test builds trusts PyPI's hosts without
    verifying them (test builds only; the Dockerfiles verify by default).
    ``HYPERDOCK_TEST_PIP_INDEX_URL`` points the builds at a mirror instead.
    """
    index = os.environ.get("HYPERDOCK_TEST_PIP_INDEX_URL")
    if index:
        return {"PIP_INDEX_URL": index}
    return {"PIP_TRUSTED_HOST": "pypi.org files.pythonhosted.org"}


@pytest.fixture(scope="session")
def python_base_image(docker_client: Any) -> str:
    """Tag of the local Debian bookworm Python base (``hyperdock-test-python:bookworm``).

    Made once with debootstrap and ``docker import`` (about 2 minutes), then reused while
    the tag exists. Skips when debootstrap or root is missing (fails when ``CI=true``).
    """
    helper = load_image_helper("python_base")
    reason = helper.missing_tools()
    if reason:
        unavailable("debootstrap", reason)
    try:
        return str(helper.build_base_image(docker_client))
    except helper.BuildError as exc:
        pytest.fail(f"cannot build the Python base image: {exc}", pytrace=False)


def _hyperdock_image(client: Any, base: str, kind: str) -> str:
    helper = load_image_helper("python_base")
    try:
        return str(
            helper.build_image(
                client,
                REPO_ROOT,
                f"docker/Dockerfile.{kind}",
                f"hyperdock-test-{kind}:dev",
                {"BASE": base, **_image_build_args()},
            )
        )
    except helper.BuildError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def worker_image(docker_client: Any, python_base_image: str) -> str:
    """``hyperdock-test-worker:dev``, built from docker/Dockerfile.worker (cached layers:
    about a minute when the dependencies change, a second when nothing did)."""
    return _hyperdock_image(docker_client, python_base_image, "worker")


@pytest.fixture(scope="session")
def supervisor_image(docker_client: Any, python_base_image: str) -> str:
    """``hyperdock-test-supervisor:dev``, from docker/Dockerfile.supervisor (it shares
    the worker image's dependency layers)."""
    return _hyperdock_image(docker_client, python_base_image, "supervisor")


@pytest.fixture(scope="session")
def dashboard_image(docker_client: Any, python_base_image: str) -> str:
    """``hyperdock-test-dashboard:dev``, from docker/Dockerfile.dashboard (the shared
    dependency layers, then plotly)."""
    return _hyperdock_image(docker_client, python_base_image, "dashboard")


@pytest.fixture(scope="session")
def template_image(docker_client: Any, python_base_image: str) -> str:
    """``hyperdock-test-template:dev``, the target template of docker/Dockerfile.template."""
    return _hyperdock_image(docker_client, python_base_image, "template")


# -- Slurm ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_conf() -> str:
    """The ``slurm.conf`` of a running one-node cluster with two (fake) GPUs, exported as
    ``SLURM_CONF`` for this process and the ones it starts."""
    import subprocess

    conf = os.environ.get("SLURM_CONF") or "/tmp/hyperdock-slurm/slurm.conf"
    hint = "start it with 'bash .ci/slurm/up.sh' (.ci/run does) or set SLURM_CONF"
    if not Path(conf).exists():
        unavailable("Slurm", f"no {conf}; {hint}")
    os.environ["SLURM_CONF"] = conf
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable("Slurm", f"scontrol ping failed ({exc}); {hint}")
    if "UP" not in out.stdout:
        unavailable("Slurm", f"the controller is down ({out.stdout.strip()}); {hint}")
    return conf
