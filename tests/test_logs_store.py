"""Logs in the store: a worker sends each attempt's log to the store as it is written,
so ``hyperdock logs`` (and ``logs -f``) and the dashboard show it from a machine with no
access to the worker's results folder; the store keeps a bounded copy of a huge log and
says what it cut; every launcher's log gets there."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, spawn, write

from hyperdock.dashboard.api import trial_detail
from hyperdock.errors import StoreConnectionError
from hyperdock.logship import CHUNK, LogShipper
from hyperdock.storage import Store, open_store
from hyperdock.testing.conformance import make_experiment
from hyperdock.trial import TrialState
from hyperdock.trialfs import DEFAULT_LIMITS

TALKER = """
import json, os
for i in range(5):
    print("line", i, flush=True)
json.dump({"loss": 0.5}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""

#: Prints "begin", waits for the file ``go`` next to the store, prints "end".
WAITER = """
import json, os, sys, time
print("begin", flush=True)
go = os.path.join(sys.argv[1], "go")
while not os.path.exists(go):
    time.sleep(0.1)
print("end", flush=True)
json.dump({"loss": 0.5}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""

#: 200 MB of output, in big blocks, between a first and a last line.
FLOOD = """
import json, os, sys
out = sys.stdout.buffer
out.write(b"FIRST LINE\\n")
block = (b"x" * 1023 + b"\\n") * 1024
for _ in range(200):
    out.write(block)
out.write(b"LAST LINE\\n")
out.flush()
json.dump({"loss": 0.5}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


@pytest.fixture
def sites(tmp_path: Path) -> tuple[Path, Path, str]:
    """Folder A (the worker's), folder B (a reader's elsewhere) and the store's URL."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "space.json").write_text(json.dumps({"x": [1]}))
    return a, b, f"sqlite:///{tmp_path}/store/hd.db"


def _run(a: Path, url: str, *args: str) -> None:
    out = hd(
        "run", "space.json", "--name", "exp", "--max-trials", "1", "--store", url,
        "--results", str(a / "results"), "-q", *args, cwd=a, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def _read_elsewhere(b: Path, url: str, *args: str) -> str:
    """``hyperdock logs ARGS`` from folder B, whose results folder holds nothing."""
    out = hd("logs", *args, "--store", url, "--results", str(b / "results"), cwd=b)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_logs_of_a_trial_whose_folder_is_gone_come_from_the_store(
    sites: tuple[Path, Path, str],
) -> None:
    a, b, url = sites
    write(a / "t.py", TALKER)
    _run(a, url, "--command", f"{PY} t.py")
    shutil.rmtree(a / "results")  # the worker's disk is lost
    expected = "".join(f"line {i}\n" for i in range(5))
    assert _read_elsewhere(b, url, "exp") == expected
    assert _read_elsewhere(b, url, "exp", "--lines", "2") == "line 3\nline 4\n"
    assert _read_elsewhere(b, url, "exp", "-f") == expected  # finished: prints and ends
    assert _read_elsewhere(b, url, "exp", "-f", "-n", "1") == "line 4\n"
    as_json = json.loads(_read_elsewhere(b, url, "exp", "--json"))
    assert as_json["file"] is None and as_json["log"] == expected and as_json["attempt"] == 1
    with open_store(url) as st:
        (trial,) = st.list_trials(st.get_experiment("exp").id)
        detail = trial_detail(st, trial.id)
    assert detail["log"] == expected and "store" in detail["log_file"]


def test_logs_follow_a_running_trial_from_the_store(sites: tuple[Path, Path, str]) -> None:
    a, b, url = sites
    write(a / "t.py", WAITER)
    run = spawn(
        "run", "space.json", "--name", "exp", "--max-trials", "1", "--store", url,
        "--results", str(a / "results"), "-q", "--command", f"{PY} t.py {b}", cwd=a,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    trial = None
    while trial is None or trial.state is not TrialState.RUNNING:
        assert time.monotonic() < deadline, "the trial never started"
        time.sleep(0.2)
        if (Path(url[len("sqlite:///") :])).exists():
            with open_store(url) as st:
                exps = st.list_experiments()
                trials = st.list_trials(exps[0].id) if exps else []
                trial = trials[0] if trials else None
    followed = b / "followed.txt"
    follower = spawn(
        "logs", "-f", str(trial.id), "--store", url, "--results", str(b / "results"),
        cwd=b, log=followed,
    )  # fmt: skip
    while "begin" not in (followed.read_text() if followed.exists() else ""):
        assert time.monotonic() < deadline and follower.poll() is None, followed.read_text()
        time.sleep(0.2)
    (b / "go").touch()
    assert follower.wait(timeout=120) == 0, followed.read_text()
    assert run.wait(timeout=120) == 0
    assert followed.read_text() == "begin\nend\n"


def test_a_200_mb_log_is_kept_bounded_and_says_what_was_cut(
    sites: tuple[Path, Path, str],
) -> None:
    a, b, url = sites
    write(a / "t.py", FLOOD)
    _run(a, url, "--command", f"{PY} t.py")
    size = 11 + 200 * 1024 * 1024 + 10
    with open_store(url) as st:
        (trial,) = st.list_trials(st.get_experiment("exp").id)
        stored = st.read_log(trial.id)
    assert stored.size == size
    limits = DEFAULT_LIMITS
    assert stored.stored <= limits.log_head_bytes + limits.log_tail_bytes + CHUNK
    shutil.rmtree(a / "results")
    text = _read_elsewhere(b, url, str(trial.id))
    assert text.startswith("FIRST LINE\nxxx") and text.endswith("xxx\nLAST LINE\n")
    cut = size - limits.log_head_bytes - (stored.size - stored.chunks[-1].offset)
    markers = [line for line in text.splitlines() if line.startswith("[...")]
    assert len(markers) == 1, markers
    assert markers[0].startswith("[... 198.9 MB cut: the store keeps the first 64 KB and ")
    assert stored.size - sum(len(c.data) for c in stored.chunks) <= cut + CHUNK


def test_smaller_bounds_from_file_limits(sites: tuple[Path, Path, str]) -> None:
    a, _, url = sites
    write(a / "t.py", FLOOD.replace("range(200)", "range(3)"))
    _run(a, url, "--command", f"{PY} t.py", "--file-limits", "log-head=1KB,log-tail=2KB")
    with open_store(url) as st:
        (trial,) = st.list_trials(st.get_experiment("exp").id)
        stored = st.read_log(trial.id)
    assert stored.size == 11 + 3 * 1024 * 1024 + 10
    assert stored.stored <= 1024 + 2048 + CHUNK
    assert stored.text().endswith("LAST LINE\n")


def test_a_log_replaced_by_a_symlink_is_not_sent(
    sites: tuple[Path, Path, str], tmp_path: Path
) -> None:
    a, _, url = sites
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET\n")
    write(
        a / "t.py",
        f"""
        import json, os, time
        d = os.environ["HYPERDOCK_DIR"]
        os.remove(os.path.join(d, "log.txt"))
        os.symlink({str(secret)!r}, os.path.join(d, "log.txt"))
        time.sleep(1.5)
        json.dump({{"loss": 0.5}}, open(os.environ["HYPERDOCK_LOSS"], "w"))
        """,
    )
    _run(a, url, "--command", f"{PY} t.py")
    with open_store(url) as st:
        (trial,) = st.list_trials(st.get_experiment("exp").id)
        assert trial.state is TrialState.COMPLETED
        assert b"SECRET" not in b"".join(c.data for c in st.read_log(trial.id).chunks)


@pytest.mark.docker
def test_a_docker_trials_log_comes_from_the_store(
    sites: tuple[Path, Path, str], busybox_image: str
) -> None:
    a, b, url = sites
    target = "sh -c 'echo hello from docker; echo 0.5 > /hyperdock/loss.json'"
    _run(a, url, "--image", busybox_image, "--command", target, "--pull", "never")
    shutil.rmtree(a / "results")
    assert _read_elsewhere(b, url, "exp") == "hello from docker\n"


@pytest.mark.slow
def test_a_slurm_trials_log_comes_from_the_store(
    sites: tuple[Path, Path, str], slurm_conf: str
) -> None:
    a, b, url = sites
    write(a / "t.py", TALKER)
    _run(a, url, "--command", f"{PY} {a / 't.py'}", "--launcher", "slurm")
    shutil.rmtree(a / "results")
    assert _read_elsewhere(b, url, "exp") == "".join(f"line {i}\n" for i in range(5))


class _FlakyStore:
    """Wraps a store; while ``down`` is set every call raises StoreConnectionError."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down.is_set():
                raise StoreConnectionError("connection refused (test outage)")
            return attr(*args, **kwargs)

        return call


def test_a_store_outage_delays_the_log_not_the_trial(tmp_path: Path) -> None:
    inner = open_store(f"sqlite:///{tmp_path}/hd.db")
    exp = make_experiment(inner)
    (trial,) = inner.add_trials(exp.id, [{"n": 0}])
    store: Any = _FlakyStore(inner)
    folder = tmp_path / "attempt"
    folder.mkdir()
    (folder / "log.txt").write_bytes(b"before\n")
    shipper = LogShipper(store, head=1024, tail=1024, interval=0.1, final_wait=0.5)
    store.down.set()
    shipper.start(trial.id, 0, folder)
    with (folder / "log.txt").open("ab") as fh:
        fh.write(b"after\n")
    shipper.end(trial.id, 0)  # gives up waiting: the store is away
    assert inner.log_attempts(trial.id) == []
    store.down.clear()  # back: the rest goes out in the background
    deadline = time.monotonic() + 60
    while inner.read_log(trial.id).text() != "before\nafter\n":
        assert time.monotonic() < deadline, inner.read_log(trial.id)
        time.sleep(0.1)
    shipper.close()
    inner.close()
