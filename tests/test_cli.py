"""End to end through the command line, with local-command targets."""

from __future__ import annotations

import csv
import io
import itertools
import json
import shutil
import sys
from pathlib import Path

import pytest
from clihelp import PY, QUADRATIC, hd, spawn, wait_for, write

from hyperdock.errors import HyperdockError
from hyperdock.storage import open_store
from hyperdock.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    write(tmp_path / "train.py", QUADRATIC)
    write(
        tmp_path / "space.py",
        """
        from hyperdock import hp
        SPACE = {"x": hp.uniform("x", -3, 3), "y": hp.choice("y", [0, 1]), "tag": "t"}
    """,
    )
    return tmp_path


def trials_of(cwd: Path, name: str, store: str = "sqlite:///./hyperdock.db") -> list[dict]:
    out = hd("export", name, "--format", "json", "--store", store, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout)["trials"])


def test_quickstart_example_runs(tmp_path: Path) -> None:
    """The README's quickstart, verbatim: examples/quickstart on the embedded store."""
    example = tmp_path / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", example)
    readme = (ROOT / "README.md").read_text()
    assert "hyperdock run space.py --command 'python train.py'" in readme
    out = hd(
        "run",
        "space.py",
        "--command",
        f"{PY} train.py",
        "--max-trials",
        "30",
        "--workers",
        "2",
        cwd=example,
    )
    assert out.returncode == 0, out.stderr
    assert "Best parameters" in out.stdout and "Best loss" in out.stdout
    assert (example / "hyperdock.db").exists()
    assert "30/30 trials" in out.stderr  # the progress display's final line


def test_run_creates_trial_folders_and_reports_best(proj: Path) -> None:
    out = hd(
        "run",
        "space.py",
        "--command",
        f"{PY} train.py",
        "--name",
        "q",
        "--max-trials",
        "12",
        "--seed",
        "3",
        "--json",
        cwd=proj,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["trials"]["completed"] == 12
    rows = trials_of(proj, "q")
    assert len(rows) == 12 and all(r["state"] == "completed" for r in rows)
    best = min(rows, key=lambda r: r["loss"])
    assert summary["best"]["loss"] == best["loss"] and summary["best"]["params"] == best["params"]
    assert all(r["params"]["tag"] == "t" and -3 <= r["params"]["x"] <= 3 for r in rows)
    assert len({r["params"]["x"] for r in rows}) == 12  # random draws differ
    folder = Path(best["result"]["folder"])
    assert folder.parent.name == f"q-{best['id']}"
    assert folder.parent.parent == proj / "results"
    assert json.loads((folder / "params.json").read_text()) == best["params"]
    assert json.loads((folder / "loss.json").read_text())["loss"] == best["loss"]
    assert (folder / "out" / "model.txt").exists()
    assert "training with" in (folder / "log.txt").read_text()
    # The target's extra keys are kept apart from Hyperdock's fields.
    assert best["result"]["data"] == {"extra": 1} and best["data"] == {"extra": 1}
    assert best["result"]["exit_code"] == 0


def test_grid_search_visits_every_point_once(tmp_path: Path) -> None:
    write(tmp_path / "train.py", QUADRATIC)
    write(
        tmp_path / "grid.py",
        """
        from hyperdock import hp
        SPACE = {"x": hp.quniform("x", 0, 2, 0.5), "y": hp.choice("y", [0, 10, 20]),
                 "z": hp.randint("z", 2)}
    """,
    )
    out = hd(
        "run",
        "grid.py",
        "--command",
        f"{PY} train.py",
        "--sampler",
        "grid",
        "--name",
        "g",
        "--workers",
        "3",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    seen = [
        (r["params"]["x"], r["params"]["y"], r["params"]["z"]) for r in trials_of(tmp_path, "g")
    ]
    expected = set(itertools.product([0.0, 0.5, 1.0, 1.5, 2.0], [0, 10, 20], [0, 1]))
    assert sorted(seen) == sorted(expected)  # each point exactly once


def test_v04_json_space_expands_to_four_trials(tmp_path: Path) -> None:
    write(tmp_path / "train.py", "import os; open(os.environ['HYPERDOCK_LOSS'], 'w').write('1')")
    (tmp_path / "space.json").write_text(
        json.dumps(
            {
                "a": [1, 2],
                "b": 1,
                "c": {
                    "hdock_distr": "expon",
                    "hdock_samples": 2,
                    "hdock_seed": 1,
                    "hdock_distr_kwargs": {"scale": 5},
                },
            }
        )
    )
    out = hd(
        "run",
        "space.json",
        "--command",
        f"{PY} train.py",
        "--sampler",
        "grid",
        "--name",
        "v04",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    rows = trials_of(tmp_path, "v04")
    assert len(rows) == 4
    assert {r["params"]["a"] for r in rows} == {1, 2} and {r["params"]["b"] for r in rows} == {1}
    assert len({r["params"]["c"] for r in rows}) == 2


def test_seeded_random_runs_are_reproducible(proj: Path) -> None:
    for name in ("r1", "r2"):
        out = hd(
            "run",
            "space.py",
            "--command",
            f"{PY} train.py",
            "--name",
            name,
            "--max-trials",
            "5",
            "--seed",
            "42",
            "-q",
            cwd=proj,
        )
        assert out.returncode == 0, out.stderr
    assert [r["params"] for r in trials_of(proj, "r1")] == [
        r["params"] for r in trials_of(proj, "r2")
    ]


def test_resume_by_name_extends_the_budget(proj: Path) -> None:
    args = ["run", "space.py", "--command", f"{PY} train.py", "--name", "ext", "-q"]
    assert hd(*args, "--max-trials", "3", cwd=proj).returncode == 0
    out = hd(*args, "--max-trials", "5", cwd=proj)
    assert out.returncode == 0, out.stderr
    assert "Resuming" in out.stderr
    assert [r["number"] for r in trials_of(proj, "ext")] == [0, 1, 2, 3, 4]
    other = hd("run", "space.py", "--command", f"{PY} other.py", "--name", "ext", cwd=proj)
    assert other.returncode != 0 and "another target" in other.stderr


def test_resume_refuses_settings_the_experiment_was_not_created_with(proj: Path) -> None:
    """Sampler, pruner, objectives and seed are fixed at creation: a resume that names
    other ones is refused (exit 2, one line) rather than silently ignored."""
    args = ["run", "space.py", "--command", f"{PY} train.py", "--name", "fix", "-q"]
    created = ("--sampler", "random", "--seed", "7", "--pruner", "median")
    assert hd(*args, *created, "--max-trials", "2", cwd=proj).returncode == 0
    for other, shown in [
        (("--sampler", "tpe"), "--sampler tpe (it has random)"),
        (("--pruner", "asha"), "--pruner asha"),
        (("--seed", "8"), "--seed 8 (it has 7)"),
        (("--direction", "maximize"), "objectives loss maximize (it has loss minimize)"),
    ]:
        out = hd(*args, *other, "--max-trials", "3", cwd=proj)
        assert out.returncode == 2, out.stderr
        assert shown in out.stderr and "pick a new --name" in out.stderr
        assert "Traceback" not in out.stderr
    assert len(trials_of(proj, "fix")) == 2  # nothing ran
    # the same settings, or none of them, resume it
    assert hd(*args, *created, "--max-trials", "3", cwd=proj).returncode == 0
    assert hd(*args, "--max-trials", "4", cwd=proj).returncode == 0
    assert len(trials_of(proj, "fix")) == 4


def test_failing_targets_are_retried_then_failed_with_the_reason(tmp_path: Path) -> None:
    write(tmp_path / "space.py", "SPACE = {'x': 1}")
    write(
        tmp_path / "bad.py",
        """
        import os, sys
        print("about to write garbage")
        open(os.environ["HYPERDOCK_LOSS"], "w").write("not json at all")
    """,
    )
    out = hd(
        "run",
        "space.py",
        "--command",
        f"{PY} bad.py",
        "--name",
        "bad",
        "--max-trials",
        "2",
        "--retries",
        "1",
        "-q",
        cwd=tmp_path,
    )
    assert out.returncode == 1  # finished, but nothing completed
    assert "No trial completed" in out.stdout and "not valid JSON" in out.stdout
    rows = trials_of(tmp_path, "bad")
    assert [r["state"] for r in rows] == ["failed", "failed"]
    assert all(len(r["history"]) == 2 for r in rows)  # 1 + 1 retry
    assert "about to write garbage" in rows[0]["error"]  # last output shown


def test_exit_code_and_missing_loss_and_timeout(tmp_path: Path) -> None:
    write(
        tmp_path / "space.py",
        "from hyperdock import hp\n"
        "SPACE = {'mode': hp.choice('mode', ['crash', 'silent', 'hang', 'ok'])}",
    )
    write(
        tmp_path / "t.py",
        """
        import json, os, sys, time
        mode = json.load(open(os.environ["HYPERDOCK_PARAMS"]))["mode"]
        if mode == "crash":
            sys.exit(3)
        if mode == "hang":
            time.sleep(60)
        if mode == "ok":
            open(os.environ["HYPERDOCK_LOSS"], "w").write('{"loss": 1}')
    """,
    )
    out = hd(
        "run",
        "space.py",
        "--command",
        f"{PY} t.py",
        "--name",
        "modes",
        "--sampler",
        "grid",
        "--retries",
        "0",
        "--timeout",
        "2",
        "-q",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    by_mode = {r["params"]["mode"]: r for r in trials_of(tmp_path, "modes")}
    assert by_mode["ok"]["state"] == "completed"
    assert "exited with code 3" in by_mode["crash"]["error"]
    assert "wrote no loss.json" in by_mode["silent"]["error"]
    assert "timed out after 2 s" in by_mode["hang"]["error"]
    assert by_mode["hang"]["finished_at"] - by_mode["hang"]["started_at"] < 30


def test_target_reported_failure_is_final(tmp_path: Path) -> None:
    write(tmp_path / "space.py", "SPACE = {'x': 1}")
    write(
        tmp_path / "t.py",
        "import os; open(os.environ['HYPERDOCK_LOSS'], 'w').write('{\"status\": \"fail\"}')",
    )
    assert (
        hd(
            "run",
            "space.py",
            "--command",
            f"{PY} t.py",
            "--name",
            "f",
            "--max-trials",
            "1",
            "-q",
            cwd=tmp_path,
        ).returncode
        == 1
    )
    (row,) = trials_of(tmp_path, "f")
    assert (
        row["state"] == "failed" and len(row["history"]) == 1 and "reported failure" in row["error"]
    )


def test_missing_command_fails_at_once(tmp_path: Path) -> None:
    write(tmp_path / "space.py", "SPACE = {'x': 1}")
    out = hd(
        "run",
        "space.py",
        "--command",
        "no-such-program-xyz",
        "--name",
        "m",
        "--max-trials",
        "2",
        "-q",
        cwd=tmp_path,
    )
    assert out.returncode == 1
    rows = trials_of(tmp_path, "m")
    assert all(r["state"] == "failed" and len(r["history"]) == 1 for r in rows)
    assert "was not found" in rows[0]["error"]


def test_read_commands(proj: Path) -> None:
    assert (
        hd(
            "run",
            "space.py",
            "--command",
            f"{PY} train.py",
            "--name",
            "rc",
            "--max-trials",
            "4",
            "-q",
            cwd=proj,
        ).returncode
        == 0
    )
    status = hd("status", cwd=proj)
    assert status.returncode == 0 and "rc" in status.stdout and "done" in status.stdout
    assert json.loads(hd("status", "--json", cwd=proj).stdout)[0]["trials"]["completed"] == 4
    listing = hd("trials", "rc", cwd=proj)
    assert listing.returncode == 0 and listing.stdout.count("completed") == 4
    best = hd("best", "rc", "--json", cwd=proj)
    assert json.loads(best.stdout)["best"]["loss"] is not None
    table = list(csv.DictReader(io.StringIO(hd("export", "rc", cwd=proj).stdout)))
    assert len(table) == 4 and {"params.x", "params.y", "params.tag", "loss"} <= set(table[0])
    missing = hd("best", "nope", cwd=proj)
    assert missing.returncode != 0 and "no experiment 'nope'" in missing.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "missing.py", "--command", "true"], "missing.py"),
        (["run", "space.py"], "--image IMAGE"),
        (["run", "bad_space.py", "--command", "true"], "'lr'"),
        (["run", "space.py", "--command", "true", "--sampler", "grid"], "'x'"),
        (["run", "space.py", "--command", "true", "--store", "redis://x"], "unknown store URL"),
    ],
)
def test_bad_input_gets_one_clear_line(proj: Path, args: list[str], says: str) -> None:
    write(
        proj / "bad_space.py", "from hyperdock import hp\nSPACE = {'lr': hp.loguniform('lr', 1, 0)}"
    )
    out = hd(*args, cwd=proj)
    assert out.returncode == 2  # bad input, not a failed search
    assert says in out.stderr
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout


def test_legacy_supervisor_and_worker(tmp_path: Path) -> None:
    """The seed README's flags: --name --config_module --trials, plus the worker env vars."""
    config = tmp_path / "config"
    write(
        config / "example.py",
        """
        from hyperdock import hp
        SPACE = {"max_epochs": 50, "x": hp.quniform("x", 0, 2, 1)}
    """,
    )
    write(tmp_path / "train.py", QUADRATIC)
    store = f"sqlite:///{tmp_path}/legacy.db"
    env = {
        "HYPERDOCK_STORE": store,
        "HYPERDOCK_RESULT_DIR": str(tmp_path / "res"),
        "HYPERDOCK_ENV": '["FOO=bar"]',
    }
    sup_proc = spawn(
        "--name",
        "trial1",
        "--command",
        f"{PY} train.py",
        "--config_module",
        "example",
        "--trials",
        "5",
        "--sampler",
        "grid",
        "--config-dir",
        str(config),
        "--json",
        cwd=tmp_path,
        env=env,
        exe=_script("hyperdock-supervisor"),
        log=tmp_path / "sup.log",
    )
    wait_for(lambda: _queued(store, "trial1") == 3, timeout=60)
    worker = hd(
        "--burst",
        "--poll",
        "0.2",
        cwd=tmp_path,
        env=env,
        exe=_script("hyperdock-worker"),
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    assert sup_proc.wait(timeout=60) == 0, (tmp_path / "sup.log").read_text()
    out = (tmp_path / "sup.log").read_text()
    summary = json.loads(out[out.index("{") :])
    assert summary["trials"]["completed"] == 3
    assert summary["best"]["params"] == {"max_epochs": 50, "x": 1.0}
    with open_store(store) as st:
        exp = st.get_experiment("trial1")
        assert exp.max_retries == 5
        folders = [Path(t.result["folder"]) for t in st.list_trials(exp.id)]
        assert all(t.state is TrialState.COMPLETED for t in st.list_trials(exp.id))
    assert all(str(f).startswith(str(tmp_path / "res")) for f in folders)


#: A MongoDB URL nobody listens on, with a short server-selection timeout.
UNREACHABLE_MONGO = "mongo://127.0.0.1:1/hyperdock{}?serverSelectionTimeoutMS=500"


def test_unreachable_mongo_store_gets_one_clear_line(proj: Path) -> None:
    """An unreachable MongoDB (any entry point, old or new URL style) is one line, exit 1."""
    runs = [
        hd(
            "run",
            "space.py",
            "--command",
            "true",
            "--store",
            UNREACHABLE_MONGO.format("/jobs"),
            cwd=proj,
        ),
        hd(
            "--name",
            "x",
            "--image",
            "img",
            "--config_module",
            "example",
            "--mongo",
            UNREACHABLE_MONGO.format("/jobs"),
            cwd=proj,
            exe=_script("hyperdock-supervisor"),
        ),
        hd(
            cwd=proj,
            exe=_script("hyperdock-worker"),
            env={"MONGO_URL": UNREACHABLE_MONGO.format("")},
        ),
    ]
    for out in runs:
        assert out.returncode != 0
        assert out.stderr.strip().count("\n") == 0, out.stderr
        assert "cannot reach MongoDB at 127.0.0.1:1" in out.stderr
        assert "Traceback" not in out.stderr and "Traceback" not in out.stdout


def _script(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"console script {name} is not installed (pip install -e .)"
    return found


def _queued(url: str, name: str) -> int:
    try:
        with open_store(url) as st:
            return sum(st.count_trials(st.get_experiment(name).id).values())
    except HyperdockError:
        return 0


def test_a_budget_of_one_trial_reads_1_trial(tmp_path: Path) -> None:
    write(tmp_path / "one.json", '{"x": [1]}')
    write(tmp_path / "t.py", "import os\nopen(os.environ['HYPERDOCK_LOSS'], 'w').write('1')\n")
    out = hd("run", "one.json", "--command", f"{PY} t.py", "--name", "one", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Created experiment one (1 trial, command" in out.stderr
