"""Shared pytest fixtures.

Sections (add new fixtures to the matching section, or start a new one):

* Environment helpers: :func:`unavailable` skips a test when something it needs is
  missing, but fails it when ``CI=true`` (CI must never silently skip).
* Docker (tests marked ``@pytest.mark.docker``): ``docker_client``, ``busybox_image``,
  ``docker_labels``. Images are built locally (``tests/images/``); nothing is pulled.
* PostgreSQL: ``postgres_admin_url`` (HYPERDOCK_TEST_POSTGRES_URL), ``postgres_url``
  (a factory of fresh, empty databases), ``postgres_cluster`` (restart the local server).
* Slurm: ``slurm_conf`` (the one-node cluster ``.ci/slurm/up.sh`` starts; SLURM_CONF).
* Kubernetes: ``k8s_cluster`` (the one-node cluster of ``.ci/k8s/up.sh``, found through
  HYPERDOCK_K8S_DIR), ``k8s_busybox_image`` (``busybox_image`` imported into it).
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


# -- Kubernetes ---------------------------------------------------------------------
# A real one-node cluster (v1.20.2 built from Debian's source package), started by
# .ci/k8s/up.sh inside its own network namespace; its API server is forwarded to
# 127.0.0.1 of the host. Nothing can be pulled: images are imported from the host's
# Docker engine into the cluster's containerd, and pods use imagePullPolicy: Never.

#: Where up.sh writes the cluster's state unless HYPERDOCK_K8S_DIR names another place.
DEFAULT_K8S_DIR = "/tmp/hyperdock-k8s"

#: The extended resource ``K8sCluster.set_gpu_capacity`` advertises on the node.
GPU_RESOURCE = "nvidia.com/gpu"


class K8sCluster:
    """The test cluster, as the ``k8s_cluster`` fixture yields it.

    Attributes:
        kubeconfig: Path of an admin kubeconfig (server ``https://127.0.0.1:PORT``).
        namespace: A namespace made for this test session (deleted afterwards).
        node: Name of the one node.
        containerd: Unix socket of the cluster's containerd (for ``import_image``).
    """

    def __init__(self, kubeconfig: str, node: str, containerd: str) -> None:
        from kubernetes import client, config

        self.kubeconfig, self.node, self.containerd = kubeconfig, node, containerd
        self.namespace = ""
        self.api_client: Any = config.new_client_from_config(config_file=kubeconfig)
        self.core: Any = client.CoreV1Api(self.api_client)
        self.batch: Any = client.BatchV1Api(self.api_client)
        self._imported: set[str] = set()
        self._namespaces: list[str] = []

    def new_namespace(self, prefix: str = "hd-test") -> str:
        """Create a fresh namespace (``PREFIX-<random>``), deleted when the session ends."""
        from kubernetes import client

        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        self._namespaces.append(name)
        return name

    def import_image(self, name: str) -> str:
        """Copy image ``name`` from the host's Docker engine into the cluster's containerd
        (``docker save NAME | ctr -n k8s.io images import -``); once per session.

        Returns ``name``, usable as a pod's ``image`` with ``imagePullPolicy: Never``
        (``NAME:TAG`` means ``docker.io/library/NAME:TAG`` to both).
        """
        import subprocess

        import docker.client

        if name in self._imported:
            return name
        docker_client = docker.client.DockerClient.from_env()
        try:
            import_command = ["images", "import", "-"]
            ctr = subprocess.Popen(
                ["ctr", "--address", self.containerd, "--namespace", "k8s.io", *import_command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            assert ctr.stdin is not None
            try:
                for chunk in docker_client.api.get_image(name):
                    ctr.stdin.write(chunk)
            finally:
                ctr.stdin.close()
            output = ctr.stdout.read().decode(errors="replace") if ctr.stdout else ""
            if ctr.wait(timeout=120) != 0:
                raise RuntimeError(f"ctr images import of {name} failed: {output.strip()}")
        finally:
            docker_client.close()
        self._imported.add(name)
        return name

    def set_gpu_capacity(self, count: int | None) -> None:
        """Advertise ``count`` ``nvidia.com/gpu`` on the node (capacity and allocatable),
        as a device plugin would; ``None`` removes the resource.

        The scheduler then counts them: pods asking for more stay Pending with
        "Insufficient nvidia.com/gpu". Nothing is attached to the containers.
        """
        value = None if count is None else str(count)
        body = {"status": {"capacity": {GPU_RESOURCE: value}, "allocatable": {GPU_RESOURCE: value}}}
        self.core.patch_node_status(self.node, body)

    def close(self) -> None:
        """Delete the session's namespaces, take the GPUs away, close the client."""
        from kubernetes.client.exceptions import ApiException

        for name in self._namespaces:
            try:
                self.core.delete_namespace(name, propagation_policy="Background")
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self.set_gpu_capacity(None)
        self.api_client.close()


def _read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``path`` (the ``cluster.env`` that up.sh writes)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[K8sCluster]:
    """The one-node Kubernetes cluster of ``.ci/k8s/up.sh`` (HYPERDOCK_K8S_DIR, default
    /tmp/hyperdock-k8s), with a fresh namespace for the session.

    Skips the test when the cluster is not running or the ``kubernetes`` client is missing
    (fails when ``CI=true``).
    """
    directory = Path(os.environ.get("HYPERDOCK_K8S_DIR") or DEFAULT_K8S_DIR)
    start = "run .ci/k8s/build.sh and .ci/k8s/up.sh as root (.ci/run does)"
    try:
        import kubernetes  # noqa: F401
    except ImportError as exc:
        unavailable("the kubernetes client", f"{exc}; pip install -e '.[test]'")
    env_file = directory / "cluster.env"
    if not env_file.exists():
        unavailable("the Kubernetes test cluster", f"{env_file} does not exist; {start}")
    env = _read_env_file(env_file)
    try:
        cluster = K8sCluster(
            env["HYPERDOCK_K8S_KUBECONFIG"],
            env["HYPERDOCK_K8S_NODE"],
            env["HYPERDOCK_K8S_CONTAINERD"],
        )
        cluster.core.read_node(cluster.node, _request_timeout=10)
    except Exception as exc:
        cause = " ".join(str(exc).split())[:300]
        unavailable("the Kubernetes test cluster", f"cannot reach it ({cause}); {start}")
    cluster.namespace = cluster.new_namespace()
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def k8s_busybox_image(k8s_cluster: K8sCluster, busybox_image: str) -> str:
    """``busybox_image`` imported into the cluster (use it with imagePullPolicy: Never)."""
    try:
        return k8s_cluster.import_image(busybox_image)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


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


# -- S3 (moto in server mode) ----------------------------------------------------------


class S3Server:
    """A real S3-compatible HTTP server (``moto`` in server mode) on 127.0.0.1.

    Attributes:
        endpoint: Its URL, for ``--artifacts-endpoint``.
        log: Its request log of the current run (one line per request).
    """

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.folder = folder
        self.proc: Any = None
        self.runs = 0
        self.log = folder / "moto-0.log"

    def start(self) -> None:
        """Start it (again, on the same port: it starts empty)."""
        import subprocess
        import sys
        import time
        import urllib.request

        self.runs += 1
        self.log = self.folder / f"moto-{self.runs}.log"
        out = open(self.log, "wb")  # noqa: SIM115 - the server holds it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                return
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto server did not start: {self.log.read_text()}"
                    ) from exc
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop it (its state goes with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def new_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique one by default); return its name."""
        name = name or f"hd-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def puts(self, key_part: str) -> int:
        """Successful PUT requests whose path holds ``key_part`` in the current run's
        log (a PUT refused while the bucket was being created again does not count)."""
        return sum(
            1
            for line in self.log.read_text(errors="replace").splitlines()
            if '"PUT ' in line and key_part in line and '" 200 ' in line
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """``moto_server`` on a free port, with fake AWS credentials in the environment
    (the code under test uses plain boto3 with the endpoint URL)."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("boto3") is None:
        unavailable("moto[server] and boto3", "pip install 'moto[server]>=5' boto3")
    import socket

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[key] = value
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = S3Server(port, tmp_path_factory.mktemp("moto"))
    try:
        server.start()
    except RuntimeError as exc:
        unavailable("moto server", str(exc))
    yield server
    server.stop()
