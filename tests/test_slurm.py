"""The Slurm launcher on a real one-node Slurm cluster (``.ci/slurm/up.sh``): each attempt
is an sbatch job; GPUs are Slurm's (two fake ones); timeout, cancel and prune reach the
job; a new worker adopts the jobs of a worker killed with kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, spawn, stop_all, wait_for, write

from hyperdock.storage import open_store
from hyperdock.trial import TrialState

pytestmark = pytest.mark.slow

#: Records when it ran and with which GPU, sleeps, writes its loss.
TARGET = """
import json, os, sys, time
folder = os.environ["HYPERDOCK_DIR"]
log = sys.argv[1]
with open(log, "a") as fh:
    fh.write(json.dumps({"trial": os.environ["HYPERDOCK_TRIAL_ID"], "event": "start",
                         "t": time.time(), "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\\n")
time.sleep(float(sys.argv[2]))
with open(log, "a") as fh:
    fh.write(json.dumps({"trial": os.environ["HYPERDOCK_TRIAL_ID"], "event": "end",
                         "t": time.time()}) + "\\n")
p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
open(os.environ["HYPERDOCK_LOSS"], "w").write(json.dumps({"loss": p["x"]}))
"""

#: The same for a busybox container (no Python), into the trial folder.
SH_TARGET = (
    "sh -c 'echo start $(date +%s) $CUDA_VISIBLE_DEVICES > /hyperdock/events.txt; "
    "sleep 2; echo end $(date +%s) >> /hyperdock/events.txt; echo 0.5 > /hyperdock/loss.json'"
)


@pytest.fixture
def proj(tmp_path: Path, slurm_conf: str) -> Path:
    write(tmp_path / "t.py", TARGET)
    (tmp_path / "space.json").write_text(json.dumps({"x": list(range(8))}))
    return tmp_path


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    now = most = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


def _trials(cwd: Path, name: str) -> list[dict[str, Any]]:
    out = hd("trials", name, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def _queue() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%j %T"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.startswith("hd-")]


def test_a_command_target_runs_as_jobs_on_two_gpus(proj: Path) -> None:
    out = hd(
        "run", "space.json", "--command", f"{PY} {proj / 't.py'} {proj / 'events.jsonl'} 1",
        "--name", "cmd", "--launcher", "slurm", "--workers", "8", "--gpus-per-trial", "1",
        "-q", cwd=proj, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    trials = _trials(proj, "cmd")
    assert len(trials) == 8 and all(t["state"] == "completed" for t in trials)
    jobs = {t["result"]["launcher"]["job_id"] for t in trials}
    assert len(jobs) == 8 and all(t["result"]["launcher"]["kind"] == "slurm" for t in trials)
    table = hd("trials", "cmd", cwd=proj, env={"COLUMNS": "200"}).stdout
    assert "JOB" in table.splitlines()[0] and all(j in table for j in jobs)
    events = _events(proj / "events.jsonl")
    starts = {e["trial"]: e for e in events if e["event"] == "start"}
    ends = {e["trial"]: e for e in events if e["event"] == "end"}
    assert len(starts) == 8 and {e["gpu"] for e in starts.values()} <= {"0", "1"}
    assert _most_at_once([(starts[t]["t"], ends[t]["t"]) for t in starts]) <= 2
    # Trials that overlapped had different GPUs.
    for a in starts:
        for b in starts:
            if a < b and starts[a]["t"] < ends[b]["t"] and starts[b]["t"] < ends[a]["t"]:
                assert starts[a]["gpu"] != starts[b]["gpu"]


@pytest.mark.docker
def test_an_image_target_runs_docker_inside_jobs(proj: Path, busybox_image: str) -> None:
    out = hd(
        "run", "space.json", "--image", busybox_image, "--command", SH_TARGET,
        "--name", "img", "--launcher", "slurm", "--workers", "8", "--gpus-per-trial", "1",
        "--pull", "never", "-q", cwd=proj, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    trials = _trials(proj, "img")
    assert len(trials) == 8 and all(t["state"] == "completed" for t in trials)
    assert all(t["loss"] == 0.5 for t in trials)
    spans, gpus = [], set()
    for t in trials:
        start, end = (Path(t["result"]["folder"]) / "events.txt").read_text().splitlines()
        spans.append((float(start.split()[1]), float(end.split()[1]) - 0.5))
        gpus.add(start.split()[2])
    assert gpus <= {"0", "1"}
    assert _most_at_once(spans) <= 2


def test_timeout_reaches_the_job(proj: Path) -> None:
    out = hd(
        "run", "space.json", "--command", f"{PY} {proj / 't.py'} {proj / 'events.jsonl'} 120",
        "--name", "slow", "--launcher", "slurm", "--max-trials", "1", "--timeout", "3",
        "--retries", "0", "-q", cwd=proj, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    (trial,) = _trials(proj, "slow")
    assert trial["state"] == "failed" and "timed out after 3 s" in trial["error"]
    assert not any(e["event"] == "end" for e in _events(proj / "events.jsonl"))
    wait_for(lambda: not [j for j in _queue() if "RUNNING" in j], 30, "the job to end")


def test_cancel_and_prune_reach_the_job(proj: Path) -> None:
    url = f"sqlite:///{proj / 'hyperdock.db'}"
    sup = spawn(
        "supervisor", "space.json", "--command",
        f"{PY} {proj / 't.py'} {proj / 'events.jsonl'} 120", "--name", "stopme",
        "--max-trials", "2", "--store", url, cwd=proj, log=proj / "sup.log",
    )  # fmt: skip
    worker = spawn(
        "worker", "--launcher", "slurm", "--parallelism", "2", "--store", url,
        "--heartbeat", "0.5", cwd=proj, log=proj / "worker.log",
    )  # fmt: skip
    try:
        wait_for(
            lambda: (proj / "events.jsonl").exists()
            and len(_events(proj / "events.jsonl")) == 2,
            120, "both jobs to start",
        )  # fmt: skip
        with open_store(url) as st:
            exp = st.get_experiment("stopme")
            first, second = st.list_trials(exp.id)
            assert st.prune_trial(first.id)
            assert st.cancel_trial(second.id) is TrialState.RUNNING

            def ended() -> bool:
                states = {t.id: t.state for t in st.list_trials(exp.id)}
                return states == {first.id: TrialState.PRUNED, second.id: TrialState.CANCELLED}

            wait_for(ended, 60, "the prune and the cancel")
        wait_for(lambda: not _queue() or all("RUNNING" not in j for j in _queue()), 30, "jobs gone")
        assert not any(e["event"] == "end" for e in _events(proj / "events.jsonl"))
    finally:
        stop_all([sup, worker])


def test_a_new_worker_adopts_the_jobs_of_a_killed_worker(proj: Path) -> None:
    """kill -9 of the worker mid-run: its jobs keep running on Slurm; the next worker
    takes their trials over and collects their results. Every trial runs once."""
    url = f"sqlite:///{proj / 'hyperdock.db'}"
    cmd = f"{PY} {proj / 't.py'} {proj / 'events.jsonl'} 8"
    sup = spawn(
        "supervisor", "space.json", "--command", cmd, "--name", "adopt", "--max-trials", "4",
        "--lease-timeout", "4", "--store", url, cwd=proj, log=proj / "sup.log",
    )  # fmt: skip
    first = spawn(
        "worker", "--launcher", "slurm", "--parallelism", "4", "--store", url,
        "--heartbeat", "0.5", cwd=proj, log=proj / "worker1.log",
    )  # fmt: skip
    second = None
    try:
        wait_for(
            lambda: (proj / "events.jsonl").exists()
            and len(_events(proj / "events.jsonl")) >= 2,
            120, "two jobs to start",
        )  # fmt: skip
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = spawn(
            "worker", "--launcher", "slurm", "--parallelism", "4", "--store", url,
            "--heartbeat", "0.5", cwd=proj, log=proj / "worker2.log",
        )  # fmt: skip
        assert sup.wait(timeout=300) == 0, (proj / "sup.log").read_text()
    finally:
        stop_all([p for p in (sup, first, second) if p is not None])
    trials = _trials(proj, "adopt")
    assert len(trials) == 4 and all(t["state"] == "completed" for t in trials), trials
    runs = Counter(e["trial"] for e in _events(proj / "events.jsonl") if e["event"] == "start")
    assert set(runs.values()) == {1}, runs  # none started twice
    adopted = [t for t in trials if t["attempt"] > 1]
    assert adopted, "no trial was taken over"
    assert "adopting Slurm job" in (proj / "worker2.log").read_text()
    for t in adopted:
        assert t["result"]["launcher"]["kind"] == "slurm"


def test_a_trial_folder_the_nodes_cannot_see_is_said_clearly(proj: Path) -> None:
    """The job starts where params.json is not (as on a node without the shared file
    system): it ends at once, saying what to do."""
    from hyperdock.resources import Resources
    from hyperdock.runtimes.base import RunContext
    from hyperdock.runtimes.slurm import NOT_SHARED_EXIT, SlurmRuntime

    folder = proj / "results" / "t-1" / "a"
    folder.mkdir(parents=True)
    runtime = SlurmRuntime(poll_interval=0.2)
    try:
        ctx = RunContext(trial_id=1, experiment="x", folder=folder, command=["true"],
                         resources=Resources())  # fmt: skip
        execution = runtime.start(ctx)  # no params.json in the folder
        outcome = execution.wait()
    finally:
        runtime.close()
    assert outcome.exit_code == NOT_SHARED_EXIT
    text = (folder / "log.txt").read_text()
    assert "is not visible on" in text and "file system the worker and every" in text


def test_jobs_of_a_killed_worker_whose_trials_were_cancelled_are_stopped(proj: Path) -> None:
    """Nobody will collect them: the next worker of the store stops them (and leaves
    jobs of workers it does not know alone)."""
    url = f"sqlite:///{proj / 'hyperdock.db'}"
    sup = spawn(
        "supervisor", "space.json", "--command",
        f"{PY} {proj / 't.py'} {proj / 'events.jsonl'} 300", "--name", "gone",
        "--max-trials", "2", "--store", url, cwd=proj, log=proj / "sup.log",
    )  # fmt: skip
    first = spawn("worker", "--launcher", "slurm", "--parallelism", "2", "--store", url,
                  cwd=proj, log=proj / "worker1.log")  # fmt: skip
    stranger = subprocess.run(
        ["sbatch", "--parsable", "--job-name=hd-1", '--comment={"hd":1,"trial":1,"worker":"x"}',
         f"--output={proj / 'stranger.txt'}", "--wrap", "sleep 300"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    second = None
    try:
        wait_for(
            lambda: (proj / "events.jsonl").exists()
            and len(_events(proj / "events.jsonl")) == 2,
            120, "both jobs to start",
        )  # fmt: skip
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert hd("cancel", "gone", "--store", url, cwd=proj).returncode == 0
        second = spawn("worker", "--launcher", "slurm", "--store", url, "--heartbeat", "0.5",
                       cwd=proj, log=proj / "worker2.log")  # fmt: skip
        wait_for(lambda: len([j for j in _queue() if "RUNNING" in j]) == 1, 60,
                 "the cancelled trials' jobs to be stopped")  # fmt: skip
        assert "stopped Slurm job" in (proj / "worker2.log").read_text()
        state = subprocess.run(["squeue", "-h", "-j", stranger, "-o", "%T"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        assert state == "RUNNING"  # not this store's
    finally:
        subprocess.run(["scancel", stranger], check=False)
        stop_all([p for p in (sup, first, second) if p is not None])


def test_the_python_api_runs_trials_as_slurm_jobs(proj: Path) -> None:
    import hyperdock

    exp = hyperdock.run(
        {"x": hyperdock.hp.choice("x", [3, 5])},
        command=[PY, str(proj / "t.py"), str(proj / "events.jsonl"), "0"],
        store=f"sqlite:///{proj / 'api.db'}", name="api", workers=2,
        results=proj / "results", launcher="slurm",
        launcher_options={"sbatch_args": ["--job-name=ignored"]},
    )  # fmt: skip
    trials = exp.trials()
    assert sorted(t.loss for t in trials if t.loss is not None) == [3, 5]
    assert all(t.result["launcher"]["kind"] == "slurm" for t in trials)


def test_a_job_of_another_store_is_never_adopted(proj: Path) -> None:
    """Two stores share the cluster and both have a trial 1: a worker of one takes over
    only the jobs its own store's workers submitted (it once adopted the other's)."""
    from hyperdock.runtimes.base import RunContext
    from hyperdock.runtimes.slurm import SlurmRuntime

    runtime = SlurmRuntime()
    folder = proj / "other-store-trial-1"
    folder.mkdir()
    (folder / "params.json").write_text('{"x": 1}')
    ctx = RunContext(
        trial_id=1, experiment="other", folder=folder, command=["sleep", "30"],
        labels={"hyperdock.worker": "other-store-worker"},
    )  # fmt: skip
    execution = runtime.start(ctx)
    try:
        assert runtime.adopt(1, 1, {"this-store-worker"}) is None
        adopted = runtime.adopt(1, 1, {"this-store-worker", "other-store-worker"})
        assert adopted is not None and adopted.job == execution.job
    finally:
        execution.stop(grace=1)
        execution.wait()
        runtime.close()
