"""A hostile target: what it plants in its trial folder never reaches outside it.

Targets here are real local commands (and one Docker container) that replace the files
Hyperdock reads or writes with symlinks to host files, named pipes and devices, write
huge files, or put Hyperdock's own field names into loss.json. Each test reproduces
one attack of issue 12 end to end.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import resource
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, wait_for, write

from hyperdock import trialfs
from hyperdock.dashboard import api
from hyperdock.runtimes.base import RunContext
from hyperdock.runtimes.docker import DockerRuntime
from hyperdock.storage import Store, open_store
from hyperdock.trial import Target, TrialState
from hyperdock.worker import Worker

#: What the host file the target points its links at holds: never shown anywhere.
SECRET = "TOPSECRET-root:$6$hash"

#: A target that does what its "attack" parameter says to the file named "file", then
#: writes a valid loss (unless the attack is on loss.json, or "noloss") and exits with
#: "exit".
ATTACKER = """
import json, os, sys
p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
d = os.environ["HYPERDOCK_DIR"]
target = os.path.join(d, p["file"])
print("hello from the target", flush=True)
if p["attack"] == "link":
    if os.path.lexists(target):
        os.remove(target)
    os.symlink(p["to"], target)
elif p["attack"] == "fifo":
    os.mkfifo(target)
elif p["attack"] == "big":  # valid JSON, after 2 MB of blanks
    open(target, "w").write(" " * (2 << 20) + '{"loss": 0.5}')
elif p["attack"] == "device":
    os.mknod(target, 0o600 | 0o020000, os.makedev(1, 5))  # a /dev/zero of its own
if p["file"] != "loss.json" and not p.get("noloss"):
    json.dump({"loss": 0.5, "state": "ok"}, open(os.environ["HYPERDOCK_LOSS"], "w"))
sys.exit(p.get("exit", 0))
"""


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret.txt"
    path.write_text(SECRET + "\n")
    return path


def _run(
    tmp_path: Path,
    name: str,
    points: list[dict[str, Any]],
    *,
    timeout: float = 120,
    limit_memory: bool = False,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``hyperdock run`` of ATTACKER over ``points`` (one trial each, no retries)."""
    write(tmp_path / "attacker.py", ATTACKER)
    space = tmp_path / f"{name}.json"
    space.write_text(json.dumps([{k: [v] for k, v in p.items()} for p in points]))
    args = [
        "run", str(space), "--name", name, "--command", f"{PY} {tmp_path / 'attacker.py'}",
        "--retries", "0", "--max-failures", "0", "--sampler", "grid", *extra,
    ]  # fmt: skip
    preexec = None
    if limit_memory:
        # Reading /dev/zero whole would take the machine's memory: 1.5 GB at most here.
        def preexec() -> None:
            cap = 1536 * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {k: v for k, v in os.environ.items() if k != "HYPERDOCK_STORE"}
    return subprocess.run(
        [PY, "-m", "hyperdock", *args],
        cwd=tmp_path,
        env={**env, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
    )


def _trials(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    out = hd("trials", name, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return sorted(rows, key=lambda r: r["number"])


def test_links_planted_in_the_trial_folder_are_refused_and_never_quoted(
    tmp_path: Path, secret: Path
) -> None:
    points = [
        {"attack": "link", "file": "loss.json", "to": str(secret)},
        {"attack": "link", "file": "progress.jsonl", "to": str(secret)},
        # log.txt linked to the secret and no loss: the error quotes the log's tail.
        {"attack": "link", "file": "log.txt", "to": str(secret), "exit": 3, "noloss": 1},
    ]
    done = _run(tmp_path, "links", points)
    assert SECRET not in done.stdout + done.stderr
    rows = _trials(tmp_path, "links")
    assert [r["state"] for r in rows] == ["failed"] * 3
    assert rows[0]["error"].startswith("loss.json is a symlink: refused")
    assert rows[1]["error"].startswith("progress.jsonl is a symlink: refused")
    assert rows[2]["error"].startswith("the target exited with code 3; the target wrote no")
    assert "(log.txt is a symlink: refused)" in rows[2]["error"]
    assert SECRET not in json.dumps(rows)
    # Nor do the read commands follow them.
    logs = hd("logs", str(rows[2]["id"]), cwd=tmp_path)
    assert logs.returncode == 1
    assert logs.stderr.strip() == "error: log.txt is a symlink: refused"
    assert SECRET not in logs.stdout
    assert secret.read_text() == SECRET + "\n"


def test_a_named_pipe_as_loss_json_or_progress_jsonl_never_blocks_the_worker(
    tmp_path: Path,
) -> None:
    points = [
        {"attack": "fifo", "file": "loss.json"},
        {"attack": "fifo", "file": "progress.jsonl"},
    ]
    done = _run(tmp_path, "pipes", points, timeout=120)  # it used to hang for ever
    assert "Traceback" not in done.stderr, done.stderr
    rows = _trials(tmp_path, "pipes")
    assert [r["state"] for r in rows] == ["failed", "failed"]
    assert rows[0]["error"].startswith("loss.json is a named pipe: refused")
    assert rows[1]["error"].startswith("progress.jsonl is a named pipe: refused")


def test_a_loss_json_larger_than_1_mb_is_refused(tmp_path: Path) -> None:
    _run(tmp_path, "big", [{"attack": "big", "file": "loss.json"}])
    [row] = _trials(tmp_path, "big")
    assert row["state"] == "failed"
    assert row["error"].startswith("loss.json is larger than 1 MB: refused")


def test_file_limits_are_configurable(tmp_path: Path) -> None:
    """--file-limits (or HYPERDOCK_FILE_LIMITS) sets how much is read: a 2 MB loss.json
    passes with loss=4MB; a bad spec is one line, exit 2."""
    done = _run(tmp_path, "roomy", [{"attack": "big", "file": "loss.json"}],
                extra=("--file-limits", "loss=4MB"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    [row] = _trials(tmp_path, "roomy")
    assert row["state"] == "completed", row["error"]
    bad = hd("worker", "--file-limits", "loss=lots", "--burst", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: --file-limits: loss='lots' is not a size from 1 byte to 1GB (e.g. 512KB, 2MB)"
    )


def test_dev_zero_as_progress_jsonl_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    points = [
        {"attack": "link", "file": "progress.jsonl", "to": "/dev/zero"},
        {"attack": "device", "file": "progress.jsonl"},
    ]
    done = _run(tmp_path, "zeros", points, limit_memory=True)
    assert "Error" not in done.stderr, done.stderr  # no MemoryError, no traceback
    rows = _trials(tmp_path, "zeros")
    assert rows[0]["error"].startswith("progress.jsonl is a symlink: refused")
    assert rows[1]["error"].startswith("progress.jsonl is a device: refused")


#: Writes an endless line to progress.jsonl (no newline for 300 MB), then good lines,
#: then waits for "release" so the test sees its progress arrive while it runs.
LONG_LINES = """
import json, os, time
d = os.environ["HYPERDOCK_DIR"]
with open(os.environ["HYPERDOCK_PROGRESS"], "wb") as fh:
    block = b"x" * (1 << 20)
    for _ in range(300):
        fh.write(block)
    fh.write(b'\\n{"step": 1, "loss": 0.5}\\n')
    fh.flush()
    while not os.path.exists(os.path.join(os.path.dirname(d), "..", "..", "release")):
        time.sleep(0.05)
    fh.write(b'{"step": 2, "loss": 0.25}\\n')
json.dump({"loss": 0.25}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


class _FlakyProgress:
    """The real store, except that saving progress fails once with an unexpected error
    (a bug, a driver surprise): the worker's progress reader must survive it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.failed = False

    def add_progress(self, *args: Any, **kwargs: Any) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("unexpected failure while saving progress")
        self._store.add_progress(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/hd.db") as st:
        yield st


def test_the_progress_reader_survives_long_lines_and_errors(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    script = write(tmp_path / "long.py", LONG_LINES)
    exp = store.create_experiment(
        "long", space={}, target=Target(command=(PY, str(script))),
        sampler="grid", seed=0, max_trials=1, max_retries=0,
    )  # fmt: skip
    [trial] = store.add_trials(exp.id, [{}])
    flaky = _FlakyProgress(store)
    worker = Worker(
        flaky, results_dir=tmp_path / "results", experiment_id=exp.id,  # type: ignore[arg-type]
        progress_interval=0.05, poll_interval=0.05, sweep_orphans=False, burst=True,
    )  # fmt: skip
    thread = threading.Thread(target=worker.run)
    caplog.set_level(logging.WARNING, logger="hyperdock.worker")
    thread.start()
    try:
        # The first save fails; the reader goes on and saves step 1 while the target
        # still runs (the 300 MB line before it is skipped, not held in memory).
        def saved() -> list[tuple[int, float]]:
            return store.list_progress(exp.id).get(trial.id, [])

        wait_for(lambda: flaky.failed and saved() == [(1, 0.5)], 120, "step 1 in the store")
        (tmp_path / "release").write_text("")
        thread.join(timeout=120)
        assert not thread.is_alive()
    finally:
        worker.stop()
        thread.join(timeout=60)
    done = store.get_trial(trial.id)
    assert done.state is TrialState.COMPLETED, done.error
    assert saved() == [(1, 0.5), (2, 0.25)]
    messages = [r.getMessage() for r in caplog.records]
    errors = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert "unexpected failure while saving progress" in errors
    assert any("line skipped" in m and "longer than 65536 bytes" in m for m in messages)


def test_loss_json_extras_never_replace_hyperdocks_fields(tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    (evil / "out").mkdir(parents=True)
    (evil / "log.txt").write_text("a log the target chose\n")
    script = write(
        tmp_path / "liar.py",
        f"""
        import json, os, sys
        print("the real log")
        json.dump({{"loss": 0.5, "folder": {str(evil)!r}, "exit_code": 0, "worker": "me",
                   "duration": 1e9, "failure": "x", "acc": 0.9}},
                  open(os.environ["HYPERDOCK_LOSS"], "w"))
        sys.exit(3)
        """,
    )
    space = write(tmp_path / "space.json", '{"x": [1]}')
    done = hd("run", str(space), "--name", "liar", "--command", f"{PY} {script}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [row] = _trials(tmp_path, "liar")
    assert row["state"] == "completed"
    result = row["result"]
    assert result["exit_code"] == 3
    assert result["folder"].startswith(str(tmp_path / "results" / "liar-"))
    assert result["worker"] != "me" and result["duration"] < 1e9
    assert "failure" not in result
    data = {"folder": str(evil), "exit_code": 0, "worker": "me", "duration": 1e9}
    assert result["data"] == row["data"] == {**data, "failure": "x", "acc": 0.9}
    logs = hd("logs", str(row["id"]), cwd=tmp_path)
    assert logs.stdout == "the real log\n"
    best = json.loads(hd("best", "liar", "--json", cwd=tmp_path).stdout)["best"]
    assert best["folder"] == result["folder"]
    exported = hd("export", "liar", cwd=tmp_path).stdout
    [csv_row] = list(csv.DictReader(io.StringIO(exported)))
    assert csv_row["data.acc"] == "0.9" and csv_row["data.folder"] == str(evil)
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        detail = api.trial_detail(st, row["id"])
    assert detail["folder"] == result["folder"] and detail["log"] == "the real log\n"


def test_old_trials_with_extras_beside_hyperdocks_fields_stay_readable(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        exp = st.create_experiment(
            "old", space={"x": [1]}, target=Target(command=("true",)),
            sampler="grid", seed=0, max_trials=1,
        )  # fmt: skip
        st.add_trials(exp.id, [{"x": 1}])
        trial = st.claim("w")
        assert trial is not None
        old = {"folder": "/r/old-1/t", "exit_code": 0, "worker": "w", "acc": 0.9}
        st.finish(trial.id, "w", state=TrialState.COMPLETED, loss=0.5, result=old)
    [row] = _trials(tmp_path, "old")
    assert row["data"] == {"acc": 0.9}
    [csv_row] = list(csv.DictReader(io.StringIO(hd("export", "old", cwd=tmp_path).stdout)))
    assert csv_row["data.acc"] == "0.9"


def test_the_dashboard_never_follows_links_out_of_the_trial_folder(
    tmp_path: Path, secret: Path
) -> None:
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "shadow").write_text(SECRET)
    folder = tmp_path / "results" / "dash-1" / "2026-01-01T00-00-00.000000Z"
    (folder / "out" / "sub").mkdir(parents=True)
    (folder / "out" / "sub" / "model.txt").write_text("weights")
    os.symlink(host, folder / "out" / "root")  # out/root -> a host folder
    os.symlink(secret, folder / "out" / "key")  # out/key -> a host file
    os.mkfifo(folder / "out" / "pipe")
    os.symlink(secret, folder / "log.txt")
    os.symlink(secret, folder / "graphs.json")
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        exp = st.create_experiment(
            "dash", space={"x": [1]}, target=Target(command=("true",)),
            sampler="grid", seed=0, max_trials=1,
        )  # fmt: skip
        st.add_trials(exp.id, [{"x": 1}])
        trial = st.claim("w")
        assert trial is not None
        st.finish(
            trial.id, "w", state=TrialState.COMPLETED, loss=0.5, result={"folder": str(folder)}
        )
        detail = api.trial_detail(st, trial.id)
    assert SECRET not in json.dumps(detail)
    assert detail["files"] == [{"path": "sub/model.txt", "size": 7}]
    assert detail["log"] == "(log.txt is a symlink: refused)"
    assert detail["graphs"] is None
    assert detail["graphs_error"] == "graphs.json is a symlink: refused"
    # An out/ that is itself a link to / is not walked at all.
    os.rename(folder / "out", folder / "out-was")
    os.symlink("/", folder / "out")
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        assert api.trial_detail(st, trial.id)["files"] == []


def test_logs_n_reads_only_the_end_of_a_huge_log(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "huge-1" / "2026-01-01T00-00-00.000000Z"
    folder.mkdir(parents=True)
    with open(folder / "log.txt", "wb") as fh:
        fh.truncate(8 << 30)  # 8 GB (sparse): far more than the memory the command gets
        fh.seek(0, os.SEEK_END)
        fh.write(b"line 1\nline 2\nline 3\n")
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        exp = st.create_experiment(
            "huge", space={"x": [1]}, target=Target(command=("true",)),
            sampler="grid", seed=0, max_trials=1,
        )  # fmt: skip
        st.add_trials(exp.id, [{"x": 1}])
        trial = st.claim("w")
        assert trial is not None
        st.finish(
            trial.id, "w", state=TrialState.COMPLETED, loss=0.5, result={"folder": str(folder)}
        )

    def small() -> None:
        cap = 1024 * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    for args in (["-n", "2"], ["-n", "2", "--json"]):
        out = subprocess.run(
            [PY, "-m", "hyperdock", "logs", str(trial.id), *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=small,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        text = json.loads(out.stdout)["log"] if "--json" in args else out.stdout
        assert text == "line 2\nline 3\n"


@pytest.mark.docker
def test_a_container_cannot_write_a_host_file_through_a_symlinked_docker_log(
    tmp_path: Path, busybox_image: str, docker_labels: dict[str, str]
) -> None:
    victim = tmp_path / "victim.txt"  # say, a cron file
    victim.write_text("original\n")
    created = tmp_path / "created-by-the-worker"
    folder = tmp_path / "trial"
    (folder / "out").mkdir(parents=True)
    (folder / "params.json").write_text("{}")
    # The container replaces docker_log.txt by links to host paths (the paths mean
    # nothing inside it), prints, and exits: the worker must write neither host file.
    script = (
        f"rm -f /hyperdock/docker_log.txt; busybox ln -s {victim} /hyperdock/docker_log.txt; "
        "echo '* * * * * root evil' ; sleep 0.5; "
        f"rm -f /hyperdock/docker_log.txt; busybox ln -s {created} /hyperdock/docker_log.txt; "
        "echo more; echo 0.5 > /hyperdock/loss.json"
    )
    runtime = DockerRuntime(network="none", pull="never", stop_grace=1)
    try:
        ctx = RunContext(
            trial_id=4242, experiment="hostile", folder=folder, image=busybox_image,
            command=["sh", "-c", script], labels=docker_labels,
        )  # fmt: skip
        outcome = runtime.start(ctx).wait()
    finally:
        runtime.close()
    assert outcome.exit_code == 0
    assert victim.read_text() == "original\n"
    assert not created.exists() and not created.is_symlink()
    with pytest.raises(trialfs.TrialFileError, match=r"^docker_log\.txt is a symlink: refused$"):
        trialfs.read_bytes(folder, "docker_log.txt", 1000)
