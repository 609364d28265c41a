"""The checkpoint folder every attempt of a trial shares: a target that saved its step
resumes there after a crash (process, Docker, Slurm), on another worker through the
artifact store too; ``resumed_from`` is shown with the attempt; links out of the folder
are never uploaded; ``keep_checkpoints`` prunes them when the experiment is done."""

from __future__ import annotations

import json
import os
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, wait_for, write

import hyperdock
from hyperdock._running import run_locally
from hyperdock.artifacts import checkpoint_key
from hyperdock.artifacts.file import FileArtifactStore
from hyperdock.artifacts.settings import DataSettings
from hyperdock.config import space_from_v04
from hyperdock.dashboard.api import trial_detail
from hyperdock.storage import Store, open_store
from hyperdock.supervisor import open_experiment
from hyperdock.trial import Target, Trial, TrialState
from hyperdock.worker import Worker

#: Saves its step into the checkpoint folder after each of 10 steps; the first attempt
#: (no checkpoint found) crashes at step 5. Reports the step it resumed from.
RESUMING = """
import json, os, sys, time
import hyperdock
ckpt = hyperdock.checkpoint_dir()
state = ckpt / "step"
start = int(state.read_text()) if state.exists() else 0
print(f"starting at step {start}", flush=True)
for step in range(start, 10):
    if step == 5 and start == 0:
        if len(sys.argv) > 1:  # wait to be stopped, the checkpoint saved
            open(sys.argv[1], "w").close()
            time.sleep(600)
        os._exit(3)
    (ckpt / "step.tmp").write_text(str(step + 1))
    os.replace(ckpt / "step.tmp", state)
json.dump({"loss": 0.5, "resumed_from": start}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""

#: The same for a busybox container, in sh (its folder from HYPERDOCK_CHECKPOINT_DIR).
SH_RESUMING = (
    'C="$HYPERDOCK_CHECKPOINT_DIR"; s=0; [ -f "$C/step" ] && s=$(cat "$C/step"); start=$s; '
    'echo "starting at step $start"; '
    'while [ "$s" -lt 10 ]; do '
    '[ "$s" -eq 5 ] && [ "$start" -eq 0 ] && exit 3; '
    's=$((s+1)); echo "$s" > "$C/step"; done; '
    'echo "{\\"loss\\": 0.5, \\"resumed_from\\": $start}" > /hyperdock/loss.json'
)


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    write(tmp_path / "resume.py", RESUMING)
    (tmp_path / "space.json").write_text(json.dumps({"x": [1]}))
    return tmp_path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/hd.db") as st:
        yield st


def _trials(cwd: Path, name: str) -> list[dict[str, Any]]:
    out = hd("trials", name, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def _resumed_at_5(cwd: Path, name: str) -> dict[str, Any]:
    [trial] = _trials(cwd, name)
    assert trial["state"] == "completed", trial["error"]
    assert trial["attempt"] == 2 and trial["resumed_from"] == 5
    assert [h["state"] for h in trial["history"]] == ["requeued", "completed"]
    table = hd("trials", name, cwd=cwd, env={"COLUMNS": "200"}).stdout
    assert "2 (resumed from step 5)" in table
    return trial


def _data_followed(proj: Path, name: str, log_name: str) -> None:
    """Both attempts' logs are in the database store, and their files in the artifact
    store (``--artifacts file://<proj>/art``), whatever the launcher."""
    with open_store(f"sqlite:///{proj / 'hyperdock.db'}") as st:
        [trial] = st.list_trials(st.get_experiment(name).id)
        assert st.log_attempts(trial.id) == [0, 1]
        assert "starting at step 0" in st.read_log(trial.id, 0).text()
        assert "starting at step 5" in st.read_log(trial.id, 1).text()
    # the layout spelled out (not the key helpers), so a change to it shows here
    keys = {i.key for i in FileArtifactStore(proj / "art").list(f"{name}/{trial.id}/")}
    for attempt in ("1", "2"):
        for file in ("params.json", log_name):
            assert f"{name}/{trial.id}/{attempt}/{file}" in keys, sorted(keys)
    assert f"{name}/{trial.id}/2/loss.json" in keys
    assert f"{name}/{trial.id}/checkpoint/step" in keys


def _stored(root: Path, name: str, trial_id: int) -> dict[str, bytes]:
    prefix = checkpoint_key(name, trial_id)
    store = FileArtifactStore(root)
    return {i.key[len(prefix) :]: store.read_bytes(i.key, 1 << 20) for i in store.list(prefix)}


# -- one host -----------------------------------------------------------------------------
def test_a_command_resumes_from_its_checkpoint_after_a_crash(proj: Path) -> None:
    out = hd(
        "run", "space.json", "--command", f"{PY} resume.py", "--name", "proc",
        "--retries", "1", "--artifacts", f"file://{proj / 'art'}", "-q", cwd=proj,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    trial = _resumed_at_5(proj, "proc")
    _data_followed(proj, "proc", "log.txt")
    folder = Path(trial["result"]["folder"])
    assert (folder.parent / "checkpoint" / "step").read_text() == "10"
    assert not (folder / "checkpoint").exists()  # beside the attempts, not in one


@pytest.mark.docker
def test_a_container_resumes_from_its_checkpoint_after_a_crash(
    proj: Path, busybox_image: str
) -> None:
    out = hd(
        "run", "space.json", "--image", busybox_image, "--command",
        f"sh -c {shlex.quote(SH_RESUMING)}", "--name", "box", "--retries", "1",
        "--pull", "never", "--network", "none", "--artifacts", f"file://{proj / 'art'}",
        "-q", cwd=proj,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    trial = _resumed_at_5(proj, "box")
    _data_followed(proj, "box", "docker_log.txt")
    ckpt = Path(trial["result"]["folder"]).parent / "checkpoint"
    assert (ckpt / "step").read_text().strip() == "10"


@pytest.mark.slow
def test_a_slurm_job_resumes_from_its_checkpoint_after_a_crash(proj: Path, slurm_conf: str) -> None:
    out = hd(
        "run", "space.json", "--command", f"{PY} {proj / 'resume.py'}", "--name", "job",
        "--retries", "1", "--launcher", "slurm", "--artifacts", f"file://{proj / 'art'}",
        "-q", cwd=proj, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    trial = _resumed_at_5(proj, "job")
    _data_followed(proj, "job", "log.txt")
    assert trial["result"]["launcher"]["kind"] == "slurm"


@pytest.mark.slow
@pytest.mark.docker
def test_a_container_in_a_slurm_job_resumes_from_its_checkpoint(
    proj: Path, slurm_conf: str, busybox_image: str
) -> None:
    out = hd(
        "run", "space.json", "--image", busybox_image, "--command",
        f"sh -c {shlex.quote(SH_RESUMING)}", "--name", "jobbox", "--retries", "1",
        "--launcher", "slurm", "--pull", "never", "-q", cwd=proj, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    _resumed_at_5(proj, "jobbox")


@pytest.mark.slow
@pytest.mark.docker
def test_a_kubernetes_job_resumes_from_its_checkpoint_after_a_crash(
    proj: Path, k8s_cluster: Any, k8s_busybox_image: str
) -> None:
    ns = str(k8s_cluster.new_namespace("hd-ckpt"))
    (proj / "results").mkdir()
    out = hd(
        "run", "space.json", "--image", k8s_busybox_image, "--command",
        f"sh -c {shlex.quote(SH_RESUMING)}", "--name", "pod", "--retries", "1",
        "--launcher", "kubernetes", "--namespace", ns,
        "--k8s-volume", f"hostPath:{proj / 'results'}", "--k8s-pull-policy", "Never",
        "--artifacts", f"file://{proj / 'art'}", "-q",
        cwd=proj, env={"KUBECONFIG": k8s_cluster.kubeconfig}, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    _resumed_at_5(proj, "pod")
    _data_followed(proj, "pod", "docker_log.txt")


# -- two hosts, one artifact store ----------------------------------------------------------
class _ClaimsOnce:
    """A store through which a worker claims one trial only (then finds none)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.claimed = 0

    def claim(self, *args: Any, **kwargs: Any) -> Trial | None:
        if self.claimed:
            return None
        trial: Trial | None = self._store.claim(*args, **kwargs)
        self.claimed += trial is not None
        return trial

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _experiment(store: Store, proj: Path, name: str, data: DataSettings, *argv: str) -> Any:
    exp, _ = open_experiment(
        store, name, space=space_from_v04({"x": [1]}),
        target=Target(command=(PY, str(proj / "resume.py"), *argv)), sampler="grid",
        seed=1, max_trials=None, max_retries=1, meta={"data": data.to_meta()},
    )  # fmt: skip
    store.add_trials(exp.id, [{"x": 1}])  # queued by hand: no supervisor here
    return exp


def _worker(store: Any, results: Path, exp_id: int) -> Worker:
    return Worker(
        store, results_dir=results, experiment_id=exp_id, heartbeat_interval=0.5,
        poll_interval=0.1, sweep_orphans=False, burst=True,
    )  # fmt: skip


def test_another_worker_restores_the_checkpoint_before_it_starts(proj: Path, store: Store) -> None:
    shared = proj / "artifacts"
    data = DataSettings(artifacts=shared.as_uri(), checkpoint_sync=0.2)
    exp = _experiment(store, proj, "two", data)
    [queued] = store.list_trials(exp.id)
    # Left by a trial of the same id in another store: not this trial's checkpoint.
    stale = FileArtifactStore(shared)
    stale.put_bytes(checkpoint_key("two", queued.id) + "step", b"7")
    stale.put_bytes(checkpoint_key("two", queued.id) + "old/model", b"stale")
    first = _ClaimsOnce(store)
    _worker(first, proj / "a", exp.id).run()  # attempt 1 crashes at step 5
    [trial] = store.list_trials(exp.id)
    assert first.claimed == 1 and trial.state is TrialState.QUEUED
    assert _stored(shared, "two", trial.id) == {"step": b"5"}
    _worker(store, proj / "b", exp.id).run()  # another results folder: another host
    done = store.get_trial(trial.id)
    assert done.state is TrialState.COMPLETED, done.error
    assert done.resumed_from == 5 and done.folder and done.folder.startswith(str(proj / "b"))
    assert trial_detail(store, trial.id)["resumed_from"] == 5  # the dashboard's trial page
    assert _stored(shared, "two", trial.id) == {"step": b"10"}


def test_a_stopped_worker_uploads_the_checkpoint_before_it_exits(proj: Path, store: Store) -> None:
    shared = proj / "artifacts"
    # No periodic sync during the test: only the sync at the end uploads.
    data = DataSettings(artifacts=shared.as_uri(), checkpoint_sync=3600)
    ready = proj / "at-step-5"
    exp = _experiment(store, proj, "stop", data, str(ready))
    worker = _worker(store, proj / "a", exp.id)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(ready.exists, timeout=60, what="the target at step 5")
    finally:
        worker.stop()
        thread.join(timeout=120)
    assert not thread.is_alive()
    [trial] = store.list_trials(exp.id)
    assert trial.state is TrialState.QUEUED and trial.attempt == 0  # no retry used
    assert _stored(shared, "stop", trial.id) == {"step": b"5"}
    _worker(store, proj / "b", exp.id).run()
    assert store.get_trial(trial.id).resumed_from == 5


def test_links_out_of_the_checkpoint_folder_are_never_uploaded(
    tmp_path: Path, store: Store
) -> None:
    secret = write(tmp_path / "secret" / "key.txt", "do not upload\n")
    script = write(
        tmp_path / "links.py",
        f"""
        import json, os
        ckpt = os.environ["HYPERDOCK_CHECKPOINT_DIR"]
        os.symlink({str(secret)!r}, os.path.join(ckpt, "key.txt"))
        os.symlink({str(secret.parent)!r}, os.path.join(ckpt, "secrets"))
        open(os.path.join(ckpt, "model.txt"), "w").write("weights")
        json.dump({{"loss": 1.0}}, open(os.environ["HYPERDOCK_LOSS"], "w"))
        """,
    )
    shared = tmp_path / "artifacts"
    exp, _ = open_experiment(
        store, "links", space=space_from_v04({"x": [1]}), target=Target(command=(PY, str(script))),
        sampler="grid", seed=1, max_trials=None, max_retries=0,
        meta={"data": DataSettings(artifacts=shared.as_uri(), keep_checkpoints="all").to_meta()},
    )  # fmt: skip
    store.add_trials(exp.id, [{"x": 1}])
    _worker(store, tmp_path / "results", exp.id).run()
    [trial] = store.list_trials(exp.id)
    assert trial.state is TrialState.COMPLETED, trial.error
    assert _stored(shared, "links", trial.id) == {"model.txt": b"weights"}
    every = b"".join(p.read_bytes() for p in shared.rglob("*") if p.is_file())
    assert b"do not upload" not in every


# -- retention ----------------------------------------------------------------------------
#: Saves its x as its checkpoint; the loss is best (lowest) for x = 1.
SAVES_X = """
import json, os
p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
open(os.path.join(os.environ["HYPERDOCK_CHECKPOINT_DIR"], "model"), "w").write(str(p["x"]))
json.dump({"loss": (p["x"] - 1) ** 2}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


@pytest.mark.parametrize(("keep", "kept"), [("best", {1}), ("none", set()), ("all", {0, 1, 2})])
def test_keep_checkpoints_prunes_them_when_the_experiment_is_done(
    tmp_path: Path, store: Store, keep: str, kept: set[int]
) -> None:
    script = write(tmp_path / "saves.py", SAVES_X)
    shared = tmp_path / "artifacts"
    data = DataSettings(artifacts=shared.as_uri(), keep_checkpoints=keep)
    exp, _ = open_experiment(
        store, "keep", space=space_from_v04({"x": [0, 1, 2]}),
        target=Target(command=(PY, str(script))), sampler="grid", seed=1, max_trials=None,
        meta={"data": data.to_meta()},
    )  # fmt: skip
    results = tmp_path / "results"
    ended = run_locally(
        store, exp, workers=2, progress=False, results=results, heartbeat=1.0, env=None
    )
    assert ended.state.value == "done"
    trials = store.list_trials(exp.id)
    assert [t.state for t in trials] == [TrialState.COMPLETED] * 3
    remote = {t.params["x"] for t in trials if _stored(shared, "keep", t.id)}
    local = {t.params["x"] for t in trials if (Path(t.folder or "").parent / "checkpoint").exists()}
    assert remote == kept and local == kept
    for t in trials:
        if t.params["x"] in kept:
            assert _stored(shared, "keep", t.id) == {"model": str(t.params["x"]).encode()}


# -- the target's side ----------------------------------------------------------------------
def test_checkpoint_dir_is_the_variable_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERDOCK_CHECKPOINT_DIR", "/somewhere/checkpoint")
    assert hyperdock.checkpoint_dir() == Path("/somewhere/checkpoint")
    monkeypatch.delenv("HYPERDOCK_CHECKPOINT_DIR")
    if not os.path.isdir("/hyperdock/checkpoint"):  # not in a Hyperdock container
        assert hyperdock.checkpoint_dir() is None


def test_the_checkpoint_folder_is_not_taken_for_an_attempt_folder(
    tmp_path: Path, store: Store
) -> None:
    """The trial's folder holds its attempts' folders and ``checkpoint/``: the log of a
    running trial is found in the newest attempt folder (``checkpoint`` sorts after the
    timestamps and was taken for the newest, so `hyperdock logs` found no log)."""
    from hyperdock.logs import log_file

    exp = store.create_experiment(
        "ck", space={}, target=Target(command=("true",)), sampler="random", seed=0,
        max_trials=1,
    )  # fmt: skip
    store.add_trials(exp.id, [{}])
    trial = store.claim("w")
    assert trial is not None
    attempt = tmp_path / "results" / f"ck-{trial.id}" / "2026-12-07T06-00-00.000000Z"
    attempt.mkdir(parents=True)
    (attempt / "log.txt").write_text("hello\n")
    (attempt.parent / "checkpoint").mkdir()
    assert log_file(store, store.get_trial(trial.id), str(tmp_path / "results")) == (
        attempt / "log.txt"
    )
