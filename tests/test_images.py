"""The deployment images of docker/: worker, supervisor, target template, compose file.

The images are built FROM a local Debian Python base (fixtures ``python_base_image``,
``worker_image``, ``supervisor_image``, ``template_image`` in conftest.py; nothing is
pulled) and run the way the README tells users to run them: the worker with the Docker
socket and the results folder mounted at the same path, the supervisor with a config
folder at /app/hyperdock/config and the original command line.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from clihelp import hd, spawn, stop_all, wait_for, write

from hyperdock import cli
from hyperdock.errors import HyperdockError
from hyperdock.storage import open_store
from hyperdock.trial import Target, TrialState

ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = ROOT / "docker"
SOCKET = "/var/run/docker.sock"

#: A busybox target (shipped in the data folder): loss = x, read from params.json.
TARGET_SH = r"""
x=$(sed 's/.*"x":\([0-9.]*\).*/\1/' /hyperdock/params.json)
echo "loss is $x"
echo "{\"loss\": $x, \"state\": \"ok\"}" > /hyperdock/loss.json
"""


def _template() -> ModuleType:
    """docker/template_target.py, imported from its file."""
    path = DOCKER_DIR / "template_target.py"
    spec = importlib.util.spec_from_file_location("hyperdock_template_target", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_container(
    client: Any,
    image: str,
    command: list[str] | None = None,
    *,
    labels: dict[str, str],
    timeout: float = 300,
    **options: Any,
) -> tuple[int, str]:
    """Run a container to its end; return its exit code and output. It is removed."""
    options.setdefault("network_mode", "none")
    container = client.containers.run(image, command, detach=True, labels=labels, **options)
    try:
        code = container.wait(timeout=timeout)["StatusCode"]
        return int(code), container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def _mount(path: Path, mode: str = "rw") -> dict[str, dict[str, str]]:
    """A bind mount of ``path`` at the same path inside the container."""
    return {str(path): {"bind": str(path), "mode": mode}}


def _queued(store: str, name: str, n: int) -> bool:
    try:
        with open_store(store) as st:
            return sum(st.count_trials(st.get_experiment(name).id).values()) >= n
    except HyperdockError:
        return False


# -- the template target's expressions (no Docker) ---------------------------------------


@pytest.mark.parametrize(
    ("expression", "params", "expected"),
    [
        ("(x-1)**2", {"x": 3}, 4.0),
        ("(x - 1)**2 + y", {"x": 0, "y": 0.5}, 1.5),
        ("sqrt(abs(x)) + math.log(e) + pi * 0", {"x": -4}, 3.0),
        ('0 if opt == "adam" else 1', {"opt": "adam"}, 0.0),
        (
            'model["depth"] + params["learning-rate"]',
            {"model": {"depth": 3}, "learning-rate": 1},
            4,
        ),
        ("min(x, y) + max([x, y]) + (x > y) * 10", {"x": 2, "y": 1}, 13.0),
    ],
)
def test_template_function_is_evaluated(
    expression: str, params: dict[str, Any], expected: float
) -> None:
    assert _template().evaluate(expression, params) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("(x-1", "not a valid expression"),
        ("__import__('os')", "may only call math functions"),
        ("__import__('os').system('true')", "may only use attributes of math"),
        ("x.__class__", "may only use attributes of math"),
        ("open('/etc/passwd')", "may only call math functions"),
        ("z + 1", "unknown name 'z'"),
        ("[t for t in (1, 2)]", "may not use comprehensions"),
        ("lambda: 1", "may not use lambda"),
        ("'a' * 10**9", "expected a number"),
        ("((10**1000)**1000)**1000", "overflow"),
        ("x / 0", "ZeroDivisionError"),
        ("log(-x)", "math domain error"),
        ("x > 0", "not a number"),
        ("nan", "not a finite number"),
        ("", "empty"),
    ],
)
def test_template_function_errors_are_clear(expression: str, message: str) -> None:
    module = _template()
    with pytest.raises(module.FunctionError, match=re.escape(message)):
        module.evaluate(expression, {"x": 2})


def test_template_target_as_a_local_command(tmp_path: Path) -> None:
    """The same script is a command target: HYPERDOCK_PARAMS in, HYPERDOCK_LOSS out."""
    (tmp_path / "space.json").write_text(json.dumps({"x": [0, 1, 2, 3]}))
    out = hd(
        "run",
        "space.json",
        "--command",
        f"{sys.executable} {DOCKER_DIR / 'template_target.py'}",
        "--env",
        "FUNCTION=(x - 2)**2 + 1",
        "--sampler",
        "grid",
        "--json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    best = json.loads(out.stdout)["best"]
    assert best["params"] == {"x": 2} and best["loss"] == 1.0
    graphs = json.loads((Path(best["folder"]) / "graphs.json").read_text())
    assert graphs[0]["series"][0]["y"] == [1.0]


# -- build context ------------------------------------------------------------------------


def test_build_context_holds_only_what_the_images_copy() -> None:
    """.dockerignore keeps .git, tests, results, databases and caches out of the context."""
    from docker.utils.build import exclude_paths

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sent = exclude_paths(str(ROOT), patterns, dockerfile="docker/Dockerfile.worker")
    top = {p.split("/", 1)[0] for p in sent}
    assert top <= {"pyproject.toml", "README.md", "hyperdock", "docker", ".dockerignore"}, top
    assert {"pyproject.toml", "README.md", "hyperdock/cli/__init__.py"} <= sent
    assert {"docker/requirements.py", "docker/worker-entrypoint.sh"} <= sent
    assert "docker/template_target.py" in sent
    assert not [p for p in sent if "__pycache__" in p or p.endswith((".pyc", ".db"))]


# -- the images -----------------------------------------------------------------------------


@pytest.mark.docker
def test_images_build_and_show_help(
    docker_client: Any,
    docker_labels: dict[str, str],
    worker_image: str,
    supervisor_image: str,
    template_image: str,
    python_base_image: str,
) -> None:
    code, out = run_container(docker_client, worker_image, ["--help"], labels=docker_labels)
    assert code == 0, out
    assert "Usage: hyperdock-worker" in out and "MONGO_URL" in out and "--burst" in out
    code, out = run_container(docker_client, supervisor_image, labels=docker_labels)  # CMD --help
    assert code == 0, out
    assert "Usage: hyperdock-supervisor" in out and "--config_module" in out

    worker = docker_client.images.get(worker_image).attrs
    supervisor = docker_client.images.get(supervisor_image).attrs
    template = docker_client.images.get(template_image).attrs
    assert "MONGO_URL=mongo://localhost:27017/hyperdock" in worker["Config"]["Env"]
    assert worker["Config"]["Entrypoint"] == ["sh", "/opt/hyperdock/worker-entrypoint.sh"]
    assert supervisor["Config"]["Entrypoint"] == ["hyperdock-supervisor"]
    assert template["Config"]["Cmd"] == ["python3", "/opt/hyperdock-template/target.py"]
    # The shared part of the two Dockerfiles is stored once: at least the base and the
    # dependencies (the layers after them change when the code changes between builds).
    base_layers = docker_client.images.get(python_base_image).attrs["RootFS"]["Layers"]
    n = len(base_layers) + 2  # + COPY pyproject.toml requirements.py, RUN pip install -r
    assert worker["RootFS"]["Layers"][:n] == supervisor["RootFS"]["Layers"][:n]
    # Small: no pip cache, no build leftovers, no dependency test suites; the template
    # adds a few kB to its base.
    base_size = docker_client.images.get(python_base_image).attrs["Size"]
    for attrs in (worker, supervisor):
        assert attrs["Size"] - base_size < 300e6, attrs["Size"]
    assert template["Size"] - base_size < 1e6
    check = (
        "import scipy.stats, numpy, hyperopt, pymongo, psycopg, docker, yaml, hyperdock.cli; "
        "import glob, os; "
        "assert not os.path.exists('/root/.cache/pip'), 'pip cache'; "
        "assert not os.path.exists('/tmp/hyperdock-build'), 'build leftovers'; "
        "assert not glob.glob('/opt/hyperdock/lib/*/site-packages/scipy/*/tests'), 'tests'; "
        "assert os.path.isdir('/app/hyperdock/config'); print('ok')"
    )
    code, out = run_container(
        docker_client,
        supervisor_image,
        ["-c", check],
        entrypoint="python",
        labels=docker_labels,
    )
    assert (code, out.strip()) == (0, "ok"), out


@pytest.mark.docker
def test_worker_image_runs_a_trial(
    tmp_path: Path,
    docker_client: Any,
    docker_labels: dict[str, str],
    worker_image: str,
    busybox_image: str,
) -> None:
    """The worker image with the Docker socket, the results folder and the store folder
    mounted at the same paths, as the README says, runs real trials and exits (--burst)."""
    (tmp_path / "space.json").write_text(json.dumps({"x": [2, 1], "mode": "image"}))
    write(tmp_path / "data" / "target.sh", TARGET_SH)
    results, store_dir = tmp_path / "results", tmp_path / "store"
    results.mkdir()
    store_dir.mkdir()
    store = f"sqlite:///{store_dir}/hd.db"
    sup = spawn(
        "supervisor", "space.json", "--image", busybox_image, "--command", "sh /data/target.sh",
        "--sampler", "grid", "--name", "image-trial", "--store", store, "--poll", "0.2",
        cwd=tmp_path, log=tmp_path / "sup.log",
    )  # fmt: skip
    wait_for(lambda: _queued(store, "image-trial", 2), timeout=60, what="the queued grid")
    code, out = run_container(
        docker_client,
        worker_image,
        ["--burst", "--poll", "0.2", "--network", "none", "--pull", "never"],
        labels=docker_labels,
        network_mode="host",
        environment={
            "MONGO_URL": store,  # the original variable; any store URL works
            "HYPERDOCK_RESULT_DIR": str(results),
            "HYPERDOCK_DATA_DIR": str(tmp_path / "data"),
            "HYPERDOCK_RUNTIME": "",
            "HYPERDOCK_ENV": "[]",
        },
        volumes={
            SOCKET: {"bind": SOCKET, "mode": "rw"},
            **_mount(results),
            **_mount(store_dir),
        },
    )
    assert code == 0, out
    assert sup.wait(timeout=60) == 0, (tmp_path / "sup.log").read_text()
    with open_store(store) as st:
        trials = st.list_trials(st.get_experiment("image-trial").id)
    assert sorted((t.params["x"], t.state, t.loss) for t in trials) == [
        (1, TrialState.COMPLETED, 1.0),
        (2, TrialState.COMPLETED, 2.0),
    ]
    for trial in trials:
        folder = Path(trial.result["folder"])
        assert folder.is_relative_to(results)
        assert json.loads((folder / "params.json").read_text()) == trial.params
        assert json.loads((folder / "loss.json").read_text())["loss"] == trial.params["x"]
        assert f"loss is {trial.params['x']}" in (folder / "docker_log.txt").read_text()


@pytest.mark.docker
def test_worker_image_refuses_a_results_folder_the_host_cannot_see(
    tmp_path: Path, docker_client: Any, docker_labels: dict[str, str], worker_image: str
) -> None:
    """The seed README mounted the results at /results; trials would then fail one by
    one. The image says at once how to mount the folder instead."""
    results = tmp_path / "results"
    results.mkdir()
    code, out = run_container(
        docker_client,
        worker_image,
        labels=docker_labels,
        environment={"HYPERDOCK_RESULT_DIR": str(results), "MONGO_URL": "sqlite:////tmp/x.db"},
        volumes={str(results): {"bind": "/results", "mode": "rw"}},
    )
    assert code == 2, out
    assert f"-v {results}:{results}" in out and "/results" in out
    code, out = run_container(docker_client, worker_image, ["--burst"], labels=docker_labels)
    assert code == 2, out
    assert "set HYPERDOCK_RESULT_DIR" in out


@pytest.mark.docker
def test_supervisor_image_runs_the_original_command(
    tmp_path: Path,
    docker_client: Any,
    docker_labels: dict[str, str],
    supervisor_image: str,
    template_image: str,
) -> None:
    """The seed README's supervisor command (config folder at /app/hyperdock/config, a
    v0.1 config module written with hyperopt) plus --store; a worker on the host runs the
    trials on the template image, and the supervisor prints the best parameters."""
    config, store_dir, results = tmp_path / "config", tmp_path / "store", tmp_path / "results"
    write(
        config / "example.py",
        """
        from hyperopt import hp
        SPACE = {"x": hp.quniform("x", -2, 4, 1), "max_epochs": 50}
        """,
    )
    store_dir.mkdir()
    store = f"sqlite:///{store_dir}/hd.db"
    container = docker_client.containers.run(
        supervisor_image,
        ["--name", "trial1", "--image", template_image, "--config_module", "example",
         "--trials", "5", "--max-trials", "4", "--seed", "3", "--store", store],
        detach=True,
        labels=docker_labels,
        network_mode="none",
        volumes={
            str(config): {"bind": "/app/hyperdock/config", "mode": "ro"},
            **_mount(store_dir),
        },
    )  # fmt: skip
    try:
        # TPE (the default, as in v0.1) queues a trial whenever a worker slot is idle.
        wait_for(lambda: _queued(store, "trial1", 1), timeout=120, what="a queued trial")
        worker = spawn(
            "worker", "--store", store, "--poll", "0.2", "--results", str(results),
            "--env", "FUNCTION=(x - 1)**2", "--network", "none", "--pull", "never",
            cwd=tmp_path, log=tmp_path / "worker.log",
        )  # fmt: skip
        try:
            code = container.wait(timeout=180)["StatusCode"]
        finally:
            stop_all([worker])
        stdout = container.logs(stderr=False).decode()
        logs = container.logs().decode()
    finally:
        container.remove(force=True)
    assert code == 0, logs
    with open_store(store) as st:
        exp = st.get_experiment("trial1")
        trials = st.list_trials(exp.id)
        best = st.best_trial(exp.id)
    assert exp.max_retries == 5 and len(trials) == 4
    assert all(t.state is TrialState.COMPLETED for t in trials)
    assert all(t.loss == (t.params["x"] - 1) ** 2 for t in trials)
    assert best is not None and best.loss == min(t.loss for t in trials if t.loss is not None)
    assert "Best parameters:" in stdout
    printed = json.loads(stdout.split("Best parameters:", 1)[1].split("Results:", 1)[0])
    assert printed == best.params and printed["max_epochs"] == 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.docker
def test_dashboard_image_serves_a_store(
    tmp_path: Path,
    docker_client: Any,
    docker_labels: dict[str, str],
    dashboard_image: str,
    worker_image: str,
    python_base_image: str,
) -> None:
    """The dashboard image serves a store's experiments, pages and plotly.js (from the
    image's plotly package), and refuses all interfaces without a token."""
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    store = f"sqlite:///{store_dir}/hd.db"
    with open_store(store) as st:
        st.create_experiment(
            "shown",
            space={},
            target=Target(command=("true",)),
            sampler="random",
            seed=1,
            max_trials=3,
        )
    port = _free_port()
    container = docker_client.containers.run(
        dashboard_image,
        ["--store", store, "--port", str(port)],
        detach=True,
        labels=docker_labels,
        network_mode="host",  # it listens on the host's 127.0.0.1
        volumes=_mount(store_dir),
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def banner() -> bool:
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()
            return "?token=" in container.logs().decode()

        # No token given: it makes one and prints the URL with it.
        wait_for(banner, timeout=60, what="the dashboard container's URL")
        token = container.logs().decode().split("?token=", 1)[1].split()[0]
        request = urllib.request.Request(
            base + "/api/experiments", headers={"X-Hyperdock-Token": token}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert [e["name"] for e in json.load(resp)] == ["shown"]
        with urllib.request.urlopen(base + "/experiments/shown", timeout=10) as resp:
            page = resp.read().decode()
        assert 'id="plotly-js"' in page
        with urllib.request.urlopen(base + "/static/plotly.min.js", timeout=30) as resp:
            assert resp.status == 200 and len(resp.read()) > 1_000_000
    finally:
        container.remove(force=True)
    code, out = run_container(
        docker_client, dashboard_image, ["--store", store, "--host", "0.0.0.0"],
        labels=docker_labels, volumes=_mount(store_dir),
    )  # fmt: skip
    assert code == 2 and "without a token" in out and "Traceback" not in out, out
    # The shared dependency layers are the worker's (stored once).
    layers = docker_client.images.get(dashboard_image).attrs["RootFS"]["Layers"]
    worker = docker_client.images.get(worker_image).attrs["RootFS"]["Layers"]
    n = len(docker_client.images.get(python_base_image).attrs["RootFS"]["Layers"]) + 2
    assert layers[:n] == worker[:n]


@pytest.mark.docker
def test_template_image_computes_function(
    tmp_path: Path, template_image: str, docker_client: Any
) -> None:
    (tmp_path / "space.json").write_text(json.dumps({"x": [-1, 0, 1, 2, 3], "y": 0.5}))
    out = hd(
        "run", "space.json", "--image", template_image, "--env", "FUNCTION=(x-1)**2 + y",
        "--sampler", "grid", "--name", "tpl", "--network", "none", "--pull", "never",
        "--workers", "2", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["trials"]["completed"] == 5
    assert summary["best"]["params"] == {"x": 1, "y": 0.5}
    assert summary["best"]["loss"] == 0.5
    export = hd("export", "tpl", "--format", "json", cwd=tmp_path)
    for trial in json.loads(export.stdout)["trials"]:
        assert trial["loss"] == (trial["params"]["x"] - 1) ** 2 + 0.5
        folder = Path(trial["result"]["folder"])
        assert json.loads((folder / "graphs.json").read_text())[0]["name"] == "Template target"
        assert "FUNCTION=(x-1)**2 + y" in (folder / "docker_log.txt").read_text()


@pytest.mark.docker
def test_template_image_bad_or_missing_function_fails_with_the_error(
    tmp_path: Path, template_image: str, docker_client: Any, docker_labels: dict[str, str]
) -> None:
    (tmp_path / "space.json").write_text(json.dumps({"x": [1]}))
    out = hd(
        "run", "space.json", "--image", template_image, "--env", "FUNCTION=(x-1)**2 +",
        "--sampler", "grid", "--name", "bad", "--retries", "0", "--network", "none",
        "--pull", "never", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "FUNCTION is not a valid expression" in out.stdout
    export = hd("export", "bad", "--format", "json", cwd=tmp_path)
    (trial,) = json.loads(export.stdout)["trials"]
    assert trial["state"] == "failed"
    assert "exited with code 2" in trial["error"]
    assert "FUNCTION is not a valid expression: invalid syntax" in trial["error"]

    trial_dir = tmp_path / "by-hand"
    write(trial_dir / "params.json", '{"x": 1}')
    code, log = run_container(
        docker_client,
        template_image,
        labels=docker_labels,
        volumes={str(trial_dir): {"bind": "/hyperdock", "mode": "rw"}},
    )
    assert code == 2 and "FUNCTION is not set" in log, log
    assert not (trial_dir / "loss.json").exists()


# -- compose ----------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` substitution, for the checks below."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    return value


def _flags(command: Any) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def _used_flags(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


@pytest.mark.parametrize("env", [{}, {"HYPERDOCK_RESULTS": "/data/hd results"}])
def test_compose_file_matches_the_images_and_the_command_line(env: dict[str, str]) -> None:
    raw = yaml.safe_load((DOCKER_DIR / "compose.yaml").read_text())
    compose = _interpolate(raw, env)
    services = compose["services"]
    assert set(services) == {"mongo", "supervisor", "worker", "dashboard"}
    assert services["mongo"]["image"] == "mongo:7"
    for name, dockerfile in (("supervisor",) * 2, ("worker",) * 2, ("dashboard",) * 2):
        build = services[name]["build"]
        assert (DOCKER_DIR / build["context"] / build["dockerfile"]).resolve() == (
            DOCKER_DIR / f"Dockerfile.{dockerfile}"
        )
        assert services[name]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "healthcheck" in services["mongo"]

    # Two workers, with the Docker socket and the results folder at the same path.
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 2
    mounts = [v.split(":") for v in worker["volumes"]]
    assert [SOCKET, SOCKET] in mounts
    results = worker["environment"]["HYPERDOCK_RESULT_DIR"]
    assert results == env.get("HYPERDOCK_RESULTS", "/srv/hyperdock/results")
    assert [results, results] in mounts
    worker_env = set(worker["environment"])
    assert worker_env <= {
        "MONGO_URL", "HYPERDOCK_STORE", "HYPERDOCK_RESULT_DIR", "HYPERDOCK_DATA_DIR",
        "HYPERDOCK_RUNTIME", "HYPERDOCK_ENV", "HYPERDOCK_GPUS",
    }  # fmt: skip
    assert _used_flags(worker["command"]) <= _flags(cli._legacy_worker)
    target_env = cli.parse_env([worker["environment"]["HYPERDOCK_ENV"]])

    # The supervisor: the original command line, the config folder at the image's path.
    supervisor = services["supervisor"]
    command = [str(a) for a in supervisor["command"]]
    assert _used_flags(command) <= _flags(cli._legacy_supervisor)
    assert {"--name", "--image", "--config_module", "--trials", "--mongo"} <= set(command)
    store = command[command.index("--mongo") + 1]
    assert store == worker["environment"]["MONGO_URL"]
    assert store.startswith("mongodb://mongo:27017/")
    (config_mount,) = supervisor["volumes"]
    source, target, mode = config_mount.split(":")
    assert (target, mode) == (cli.LEGACY_CONFIG_DIR, "ro")

    # The dashboard: on the same store, all interfaces in its container (so it needs the
    # token, which the environment passes on), published on the host's loopback only.
    dash = services["dashboard"]
    dash_command = [str(a) for a in dash["command"]]
    assert _used_flags(dash_command) <= _flags(cli.dashboard)
    assert dash_command[dash_command.index("--store") + 1] == store
    assert dash_command[dash_command.index("--host") + 1] == "0.0.0.0"
    port = dash_command[dash_command.index("--port") + 1]
    assert dash["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert set(dash["environment"]) == {"HYPERDOCK_TOKEN"}

    # The default experiment works: its config module loads, and the template target's
    # FUNCTION evaluates over its parameters.
    from hyperdock.config import load_space

    module = command[command.index("--config_module") + 1]
    space = load_space(module, config_dirs=[str(DOCKER_DIR / source)])
    params = {"x": 1.5, "y": 0.25, "note": "compose example"}
    assert space.to_json()  # a valid space
    loss = _template().evaluate(target_env["FUNCTION"], params)
    assert math.isclose(loss, 0.5)
    assert command[command.index("--image") + 1] == "hyperdock-template"

    # Where the compose plugin is installed (not on the CI machine), compose agrees.
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        out = subprocess.run(
            [docker, "compose", "-f", str(DOCKER_DIR / "compose.yaml"), "config", "--quiet"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        assert out.returncode == 0, out.stderr
