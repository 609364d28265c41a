"""Docker targets end to end through the command line, on a locally built busybox image."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from clihelp import hd, spawn, wait_for

from hyperdock.errors import HyperdockError
from hyperdock.storage import open_store

pytestmark = pytest.mark.docker

# A busybox sh target, shipped in the data folder: loss = x, read from the compact
# params.json Hyperdock writes ({"mode":"docker","x":2}).
TARGET_SH = r"""
x=$(sed 's/.*"x":\([0-9.]*\).*/\1/' /hyperdock/params.json)
echo "$FOO" > /hyperdock/out/foo.txt
hostname > /hyperdock/out/host.txt
cat /data/input.txt > /hyperdock/out/data.txt
(touch /data/new 2>/dev/null && echo writable || echo read-only) > /hyperdock/out/ro.txt
echo "loss is $x"
echo "{\"loss\": $x, \"state\": \"ok\"}" > /hyperdock/loss.json
"""
TARGET = "sh /data/target.sh"


def export(cwd: Path, name: str) -> list[dict[str, Any]]:
    out = hd("export", name, "--format", "json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout)["trials"])


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    (tmp_path / "space.json").write_text(json.dumps({"x": [3, 1, 2], "mode": "docker"}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.txt").write_text("dataset v1\n")
    (tmp_path / "data" / "target.sh").write_text(TARGET_SH)
    return tmp_path


def test_docker_target_params_in_loss_out(proj: Path, busybox_image: str) -> None:
    out = hd(
        "run",
        "space.json",
        "--image",
        busybox_image,
        "--command",
        TARGET,
        "--sampler",
        "grid",
        "--name",
        "dock",
        "--network",
        "none",
        "--pull",
        "never",
        "--data",
        "data",
        "--env",
        "FOO=bar",
        "--workers",
        "2",
        "--json",
        cwd=proj,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["trials"]["completed"] == 3
    assert summary["best"]["params"] == {"x": 1, "mode": "docker"}
    assert summary["best"]["loss"] == 1.0
    for trial in export(proj, "dock"):
        folder = Path(trial["result"]["folder"])
        assert trial["loss"] == trial["params"]["x"]
        assert json.loads((folder / "params.json").read_text()) == trial["params"]
        assert (folder / "out" / "foo.txt").read_text().strip() == "bar"
        assert (folder / "out" / "host.txt").read_text().strip() == str(trial["id"])
        assert (folder / "out" / "data.txt").read_text() == "dataset v1\n"
        assert (folder / "out" / "ro.txt").read_text().strip() == "read-only"
        assert f"loss is {trial['params']['x']}" in (folder / "docker_log.txt").read_text()
    assert sorted(p.name for p in (proj / "data").iterdir()) == ["input.txt", "target.sh"]


def test_docker_garbage_loss_fails_with_what_the_file_held(proj: Path, busybox_image: str) -> None:
    out = hd(
        "run",
        "space.json",
        "--image",
        busybox_image,
        "--command",
        "sh -c 'echo oops-not-json > /hyperdock/loss.json'",
        "--name",
        "garbage",
        "--max-trials",
        "1",
        "--retries",
        "1",
        "--network",
        "none",
        "--pull",
        "never",
        "-q",
        cwd=proj,
    )
    assert out.returncode == 1
    (trial,) = export(proj, "garbage")
    assert trial["state"] == "failed" and len(trial["history"]) == 2
    assert "not valid JSON" in trial["error"] and "oops-not-json" in trial["error"]


def test_docker_nonzero_exit_and_timeout(proj: Path, busybox_image: str) -> None:
    (proj / "modes.json").write_text(json.dumps({"mode": ["crash", "hang"]}))
    script = "grep -q crash /hyperdock/params.json && { echo dying; exit 7; }; sleep 60"
    out = hd(
        "run",
        "modes.json",
        "--image",
        busybox_image,
        "--command",
        f"sh -c '{script}'",
        "--sampler",
        "grid",
        "--name",
        "modes",
        "--retries",
        "0",
        "--timeout",
        "2",
        "--network",
        "none",
        "--pull",
        "never",
        "--workers",
        "2",
        "-q",
        cwd=proj,
    )
    assert out.returncode == 1
    by_mode = {t["params"]["mode"]: t for t in export(proj, "modes")}
    assert "exited with code 7" in by_mode["crash"]["error"]
    assert "dying" in by_mode["crash"]["error"]
    assert "timed out after 2 s" in by_mode["hang"]["error"]
    assert by_mode["hang"]["finished_at"] - by_mode["hang"]["started_at"] < 30


def test_missing_image_fails_at_once_with_a_clear_message(proj: Path, docker_client: Any) -> None:
    out = hd(
        "run",
        "space.json",
        "--image",
        "hyperdock-test-no-such-image:404",
        "--name",
        "noimg",
        "--max-trials",
        "2",
        "--retries",
        "5",
        "--pull",
        "never",
        "--network",
        "none",
        "-q",
        cwd=proj,
    )
    assert out.returncode == 1
    trials = export(proj, "noimg")
    assert [t["state"] for t in trials] == ["failed", "failed"]
    assert all(len(t["history"]) == 1 for t in trials)  # not retried
    assert "hyperdock-test-no-such-image:404" in trials[0]["error"]
    assert "not found" in trials[0]["error"]


def test_original_worker_environment_variables(proj: Path, busybox_image: str) -> None:
    """v0.1's worker: MONGO_URL-style store variable, HYPERDOCK_RESULT_DIR, _DATA_DIR,
    _RUNTIME (empty = Docker's default) and _ENV as a JSON list."""
    store = f"sqlite:///{proj}/legacy.db"
    sup = spawn(
        "supervisor",
        "space.json",
        "--image",
        busybox_image,
        "--command",
        TARGET,
        "--sampler",
        "grid",
        "--name",
        "legacy",
        "--store",
        store,
        "--poll",
        "0.2",
        cwd=proj,
        log=proj / "sup.log",
    )

    def queued() -> bool:
        try:
            with open_store(store) as st:
                return sum(st.count_trials(st.get_experiment("legacy").id).values()) == 3
        except HyperdockError:
            return False

    wait_for(queued, timeout=60, what="the supervisor to queue the grid")
    exe = str(Path(sys.executable).parent / "hyperdock-worker")
    worker = hd(
        "--burst",
        "--poll",
        "0.2",
        "--network",
        "none",
        "--pull",
        "never",
        exe=exe,
        cwd=proj,
        env={
            "HYPERDOCK_STORE": store,
            "HYPERDOCK_RESULT_DIR": str(proj / "res"),
            "HYPERDOCK_DATA_DIR": str(proj / "data"),
            "HYPERDOCK_RUNTIME": "",
            "HYPERDOCK_ENV": '["FOO=from-env"]',
        },
    )
    assert worker.returncode == 0, worker.stderr
    assert sup.wait(timeout=60) == 0, (proj / "sup.log").read_text()
    with open_store(store) as st:
        trials = st.list_trials(st.get_experiment("legacy").id)
    assert len(trials) == 3
    for t in trials:
        folder = Path(t.result["folder"])
        assert folder.is_relative_to(proj / "res")
        assert (folder / "out" / "foo.txt").read_text().strip() == "from-env"
        assert (folder / "out" / "data.txt").read_text() == "dataset v1\n"


# Silent until the test creates /data/speak, then prints a line and waits for
# /data/release: the test reads its log while the container runs.
LIVE_SH = r"""
while [ ! -e /data/speak ]; do sleep 0.05; done
echo "first line"
while [ ! -e /data/release ]; do sleep 0.05; done
echo "last line"
echo '{"loss": 0.5}' > /hyperdock/loss.json
"""


def test_logs_of_a_running_docker_trial_live(proj: Path, busybox_image: str) -> None:
    (proj / "data" / "live.sh").write_text(LIVE_SH)
    (proj / "one.json").write_text(json.dumps({"x": [1]}))
    run = spawn(
        "run", "one.json", "--image", busybox_image, "--command", "sh /data/live.sh",
        "--data", "data", "--network", "none", "--pull", "never", "--name", "live", "-q",
        cwd=proj, log=proj / "run.log",
    )  # fmt: skip

    def log_file() -> Path | None:
        found = sorted(proj.glob("results/live-*/*/docker_log.txt"))
        return found[0] if found else None

    wait_for(lambda: log_file() is not None, 120, "the trial's docker_log.txt")
    path = log_file()
    assert path is not None
    trial = path.parent.parent.name.rsplit("-", 1)[1]
    silent = hd("logs", trial, cwd=proj)
    assert silent.returncode == 0, silent.stderr
    assert silent.stdout == ""
    assert silent.stderr.strip() == f"trial {trial} is running: no output yet"
    followed = proj / "follow.log"
    follow = spawn("logs", trial, "--follow", cwd=proj, log=followed)
    wait_for(lambda: "no output yet" in followed.read_text(), 60, "the follow to start")
    (proj / "data" / "speak").write_text("")
    wait_for(lambda: "first line" in followed.read_text(), 60, "the first line, followed")
    now = hd("logs", trial, cwd=proj)
    assert (now.returncode, now.stdout) == (0, "first line\n"), now.stderr
    assert follow.poll() is None and run.poll() is None  # the container still runs
    (proj / "data" / "release").write_text("")
    assert follow.wait(timeout=60) == 0, followed.read_text()
    assert followed.read_text().endswith("first line\nlast line\n")
    assert run.wait(timeout=60) == 0, (proj / "run.log").read_text()
