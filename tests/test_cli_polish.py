"""The read commands through the command line: tables, `logs`, --json, completion."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from clihelp import PY, QUADRATIC, hd, spawn, wait_for, write

#: A target that prints, then waits until the file ``release`` exists before finishing.
SLOW = """
import json, os, sys, time
print("first line", flush=True)
while not os.path.exists("release"):
    time.sleep(0.1)
print("last line", flush=True)
json.dump({"loss": 1.0}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a finished experiment ``q`` of 3 trials."""
    proj = tmp_path_factory.mktemp("polish")
    write(proj / "train.py", QUADRATIC)
    write(
        proj / "space.py",
        """
        from hyperdock import hp
        SPACE = {"x": hp.uniform("x", -3, 3), "y": hp.choice("y", [0, 1])}
    """,
    )
    out = hd(
        "run", "space.py", "--command", f"{PY} train.py", "--name", "q", "--max-trials", "3",
        "--seed", "2", "-q", cwd=proj,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return proj


def trial_ids(cwd: Path, name: str) -> list[int]:
    out = hd("trials", name, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return [t["id"] for t in json.loads(out.stdout)]


def assert_aligned(table: str) -> None:
    """Every row has a blank where the header's separator line has a gap."""
    lines = table.splitlines()
    gaps = [i for i, c in enumerate(lines[1]) if c == " "]
    assert gaps, table
    for line in [lines[0], *lines[2:]]:
        assert all(i >= len(line) or line[i] == " " for i in gaps), table


# -- logs -------------------------------------------------------------------------------
def test_logs_of_a_finished_trial(done: Path) -> None:
    first = trial_ids(done, "q")[0]
    out = hd("logs", str(first), cwd=done)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("training with {")
    as_json = json.loads(hd("logs", str(first), "--json", cwd=done).stdout)
    assert as_json["trial"] == first
    assert as_json["state"] == "completed"
    assert as_json["log"] == out.stdout
    assert as_json["file"].endswith("log.txt")


def test_logs_lines(tmp_path: Path) -> None:
    write(
        tmp_path / "chatty.py",
        """
        import json, os
        for i in range(10):
            print("line", i)
        json.dump({"loss": 0.5}, open(os.environ["HYPERDOCK_LOSS"], "w"))
        """,
    )
    write(tmp_path / "space.json", '{"x": [1]}')
    out = hd("run", "space.json", "--command", f"{PY} chatty.py", "--name", "c", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    [trial] = trial_ids(tmp_path, "c")
    out = hd("logs", str(trial), "--lines", "2", cwd=tmp_path)
    assert out.stdout == "line 8\nline 9\n"


def test_logs_unknown_trial_exits_2_in_one_line(done: Path) -> None:
    out = hd("logs", "9999", cwd=done)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: no trial with id 9999 in sqlite:///./hyperdock.db"
    assert "Traceback" not in out.stderr


def test_logs_not_on_this_host(tmp_path: Path) -> None:
    write(tmp_path / "train.py", QUADRATIC)
    write(tmp_path / "space.json", '{"x": [1]}')
    out = hd("run", "space.json", "--command", f"{PY} train.py", "--name", "g", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    shutil.rmtree(tmp_path / "results")  # as seen from another host
    [trial] = trial_ids(tmp_path, "g")
    assert hd("logs", str(trial), cwd=tmp_path).stdout.startswith("training with")  # stored
    with sqlite3.connect(tmp_path / "hyperdock.db") as db:  # as a worker sending none left it
        db.execute("DELETE FROM hd_logs")
    db.close()
    out = hd("logs", str(trial), cwd=tmp_path)
    assert out.returncode == 2
    assert "not on this host" in out.stderr and "the store holds no copy" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_logs_follow_a_running_trial_until_it_finishes(tmp_path: Path) -> None:
    write(tmp_path / "slow.py", SLOW)
    write(tmp_path / "space.json", '{"x": [1]}')
    run = spawn(
        "run", "space.json", "--command", f"{PY} slow.py", "--name", "s", "-q",
        cwd=tmp_path, log=tmp_path / "run.log",
    )  # fmt: skip

    def running() -> bool:
        out = hd("trials", "s", "--state", "running", "--json", cwd=tmp_path)
        return out.returncode == 0 and bool(json.loads(out.stdout))

    wait_for(running, 120, "the trial to run")
    [trial] = trial_ids(tmp_path, "s")
    followed = tmp_path / "follow.log"
    follow = spawn("logs", str(trial), "--follow", cwd=tmp_path, log=followed)
    wait_for(lambda: "first line" in followed.read_text(), 60, "the first line")
    assert follow.poll() is None  # still following
    (tmp_path / "release").write_text("")
    assert follow.wait(timeout=60) == 0, followed.read_text()
    assert followed.read_text() == "first line\nlast line\n"
    assert run.wait(timeout=60) == 0, (tmp_path / "run.log").read_text()


# -- tables and --json ------------------------------------------------------------------
def test_status_and_trials_tables_are_aligned(done: Path) -> None:
    status = hd("status", cwd=done)
    assert status.returncode == 0, status.stderr
    assert status.stdout.split()[:10] == [
        "EXPERIMENT", "STATE", "DONE", "RUNNING", "FAILED", "PRUNED", "BEST", "SAMPLER",
        "CREATED", "DURATION",
    ]  # fmt: skip
    assert " ago" in status.stdout
    assert_aligned(status.stdout)
    trials = hd("trials", "q", cwd=done)
    assert trials.returncode == 0, trials.stderr
    assert "STARTED" in trials.stdout and "DURATION" in trials.stdout
    *table, legend = trials.stdout.splitlines()
    assert len(table) == 2 + 3 and legend == "* best trial (lowest loss)"
    assert_aligned("\n".join(table))


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("trials", "q"),
        ("best", "q"),
        ("workers", "--all"),
        ("export", "q"),
        ("logs", "1"),
    ],
)
def test_every_read_command_has_json(done: Path, args: tuple[str, ...]) -> None:
    out = hd(*args, "--json", cwd=done)
    assert out.returncode == 0, out.stderr
    json.loads(out.stdout)


# -- completion -------------------------------------------------------------------------
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(tmp_path: Path, shell: str) -> None:
    out = hd("completion", shell, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert "_HYPERDOCK_COMPLETE" in out.stdout


def test_completion_completes_commands(tmp_path: Path) -> None:
    env = {"_HYPERDOCK_COMPLETE": "bash_complete", "COMP_WORDS": "hyperdock lo", "COMP_CWORD": "1"}
    out = hd(cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "logs" in out.stdout


def test_readme_documents_the_new_commands() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert 'eval "$(hyperdock completion bash)"' in readme
    assert "hyperdock logs TRIAL_ID" in readme
    assert "--notify URL" in readme


def test_control_characters_in_stored_strings_are_shown_escaped(tmp_path: Path) -> None:
    """Issue 12 (low): an error a target printed, or a parameter value, that holds ANSI
    escapes must not reach the terminal raw from a table."""
    from hyperdock.storage import open_store
    from hyperdock.trial import Target, TrialState

    evil = "\x1b]0;pwned\x07\x1b[2J"
    url = f"sqlite:///{tmp_path / 'hd.db'}"
    with open_store(url) as st:
        exp = st.create_experiment(
            "esc", space={"tag": {"$hp": "choice", "label": "tag", "options": [evil, "b"]}},
            target=Target(command=("true",)), sampler="random", seed=1, max_trials=2,
        )  # fmt: skip
        st.add_trials(exp.id, [{"tag": evil}, {"tag": "b"}])
        st.register_worker("w", host="h", pid=1, parallelism=1)
        trial = st.claim("w", experiment_id=exp.id)
        assert trial is not None
        st.finish(trial.id, "w", state=TrialState.FAILED, error="boom " + evil)
    for args in (["trials", "esc", "--wide"], ["status"]):
        out = hd(*args, "--store", url, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "\x1b" not in out.stdout and "\x07" not in out.stdout, out.stdout
    shown = hd("trials", "esc", "--wide", "--store", url, cwd=tmp_path).stdout
    assert "\\x1b]0;pwned\\x07" in shown


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["run", "sp.py", "--seed", "1e20"], "'--seed': '1e20' is not a valid integer"),
        (["dashboard", "--port", "70000"], "'--port': 70000 is not in the range"),
        (["dashboard", "--port", "-1"], "'--port': -1 is not in the range"),
        (["run", "--bogus"], "No such option '--bogus'"),
    ],
)
def test_bad_options_are_one_line(tmp_path: Path, args: list[str], shown: str) -> None:
    """Issue 12 (low): a bad option value is one line on stderr, exit 2, no usage block."""
    out = hd(*args, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and shown in lines[0], out.stderr
    assert "Traceback" not in out.stderr and not any(tmp_path.iterdir())
