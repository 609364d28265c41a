"""Resuming an experiment keeps what is stored; new experiments get unique names.

Issue 11, items 1, 6 (default names) and 9: a resume without ``--max-trials`` must not
reset the budget (nor retries, timeout …) to the defaults; ``run --name X`` alone
resumes; the interrupt message is a command that resumes exactly; two runs started in
the same second both get a name of their own; ``hyperdock-supervisor --trials`` says
what the budget is.
"""

from __future__ import annotations

import json
import shlex
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, spawn, wait_for, write

from hyperdock import hp
from hyperdock.errors import ConfigError, ExperimentNotFound
from hyperdock.space import Space
from hyperdock.storage import open_store
from hyperdock.supervisor import DEFAULT_MAX_TRIALS, open_experiment
from hyperdock.trial import Target, TrialState

SLOW = """
import json, os, time
p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
time.sleep(0.5)
json.dump({"loss": p["x"] ** 2}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    write(tmp_path / "sp.py", "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', -2, 2)}\n")
    write(tmp_path / "slow.py", SLOW)
    return tmp_path


def _counts(store_url: str, name: str) -> dict[TrialState, int]:
    with open_store(store_url) as st:
        return st.count_trials(st.get_experiment(name).id)


def _completed(store_url: str, name: str) -> int:
    """Completed trials of ``name``; 0 while it does not exist yet."""
    try:
        return _counts(store_url, name)[TrialState.COMPLETED]
    except ExperimentNotFound:
        return 0


def test_an_interrupted_run_resumes_with_its_stored_budget(proj: Path) -> None:
    """The reported case: --max-trials 6, interrupted, resumed with the printed command
    (no --max-trials): 6 trials in all, not the default 50."""
    store = f"sqlite:///{proj}/s.db"
    log = proj / "run.log"
    proc = spawn(
        "run", "sp.py", "--command", f"{PY} slow.py", "--max-trials", "6", "--name", "cc3",
        "--store", store, "--workers", "1", "--timeout", "60", "--retries", "2",
        cwd=proj, log=log,
    )  # fmt: skip
    wait_for(lambda: (proj / "s.db").exists(), 60, "the store")
    wait_for(lambda: _completed(store, "cc3") >= 2, 60, "2 completed")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    text = log.read_text()
    assert "Created experiment cc3 (6 trials" in text
    resume = text.split("Resume with: ", 1)[1].splitlines()[0]
    words = shlex.split(resume)
    assert words[:2] == ["hyperdock", "run"]
    pairs = sorted(zip(words[2::2], words[3::2], strict=True))
    assert pairs == [("--name", "cc3"), ("--store", store), ("--workers", "1")]
    done_before = sum(n for s, n in _counts(store, "cc3").items() if s.finished)
    assert done_before < 6

    out = hd(*words[1:], cwd=proj, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"Resuming experiment cc3: {done_before}/6 done" in out.stderr
    counts = _counts(store, "cc3")
    assert sum(counts.values()) == 6 and counts[TrialState.COMPLETED] == 6
    with open_store(store) as st:
        exp = st.get_experiment("cc3")
    # every stored setting survived the resume, none was reset to a default
    assert (exp.max_trials, exp.max_retries, exp.target.timeout) == (6, 2, 60.0)


def test_the_same_command_minus_max_trials_keeps_the_budget(proj: Path) -> None:
    args = ["run", "sp.py", "--command", f"{PY} slow.py", "--name", "b", "-q"]
    assert (
        hd(*args, "--max-trials", "2", "--timeout", "30", "--retries", "1", cwd=proj).returncode
        == 0
    )
    out = hd(*args, cwd=proj)  # neither --max-trials, --timeout nor --retries
    assert out.returncode == 0, out.stderr
    assert len(json.loads(hd("trials", "b", "--json", cwd=proj).stdout)) == 2
    with open_store(f"sqlite:///{proj}/hyperdock.db") as st:
        exp = st.get_experiment("b")
    assert (exp.max_trials, exp.max_retries, exp.target.timeout) == (2, 1, 30.0)
    # --max-trials given: the budget changes, and the finished experiment runs again
    out = hd(*args, "--max-trials", "3", cwd=proj)
    assert out.returncode == 0, out.stderr
    assert "Resuming experiment b: 2/3 done" in out.stderr
    assert len(json.loads(hd("trials", "b", "--json", cwd=proj).stdout)) == 3
    # an explicit setting other than the stored one is refused, in one line
    for flags, shown in [
        (("--retries", "4"), "--retries 4 (it has 1)"),
        (("--timeout", "5"), "--timeout 5 (it has 30)"),
    ]:
        out = hd(*args, *flags, cwd=proj)
        assert out.returncode == 2 and shown in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def _done_experiment(store_url: str, name: str, n: int) -> None:
    """Experiment ``name`` with a budget of ``n`` and ``n`` completed trials (state
    still running: what a supervisor killed at the very end leaves)."""
    with open_store(store_url) as st:
        exp, _ = open_experiment(
            st, name, space=Space.from_obj({"x": hp.uniform("x", 0, 1)}),
            target=Target(command=(PY, "-c", "pass")), sampler="random", max_trials=n,
        )  # fmt: skip
        st.add_trials(exp.id, [{"x": i / n} for i in range(n)], first_number=0)
        st.register_worker("w", host="h", pid=1, parallelism=1)
        for _ in range(n):
            trial = st.claim("w", experiment_id=exp.id)
            assert trial is not None
            assert st.finish(trial.id, "w", state=TrialState.COMPLETED, loss=0.5)


def test_run_and_supervisor_resume_from_the_name_alone(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/s.db"
    _done_experiment(store, "alone", 3)
    out = hd("supervisor", "--name", "alone", "--store", store, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Resuming experiment alone: 3/3 done" in out.stderr
    with open_store(store) as st:
        exp = st.get_experiment("alone")
        assert exp.max_trials == 3 and exp.state.value == "done"
    out = hd("run", "--name", "alone", "--store", store, "--max-trials", "4", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Resuming experiment alone: 3/4 done" in out.stderr
    assert sum(_counts(store, "alone").values()) == 4
    missing = hd("run", "--name", "nope", "--store", store, cwd=tmp_path)
    assert missing.returncode == 2
    assert "experiment 'nope' does not exist yet" in missing.stderr


def test_default_names_are_unique_when_runs_start_in_the_same_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store decides: concurrent creators of one default name all succeed, each
    with a name of its own (a suffix on conflict), none fails."""
    import hyperdock.supervisor as supervisor_module

    monkeypatch.setattr(supervisor_module, "default_name", lambda base: f"{base}-same-second")
    names: list[str] = []
    errors: list[BaseException] = []
    with open_store(f"sqlite:///{tmp_path}/s.db") as st:

        def create() -> None:
            try:
                exp, created = open_experiment(
                    st, None, name_base="sp", space=Space.from_obj({"x": hp.uniform("x", 0, 1)}),
                    target=Target(command=("true",)),
                )  # fmt: skip
                assert created
                names.append(exp.name)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=create) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(names) == sorted(
            ["sp-same-second"] + [f"sp-same-second-{n}" for n in range(2, 7)]
        )
        assert len(st.list_experiments()) == 6


def test_two_runs_started_together_both_run(proj: Path) -> None:
    """Two `hyperdock run` on one store at the same moment, both without --name."""
    args = ["run", "sp.py", "--command", f"{PY} slow.py", "--max-trials", "1", "-q"]
    procs = [spawn(*args, cwd=proj, log=proj / f"r{i}.log") for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0], [
        (proj / f"r{i}.log").read_text() for i in range(2)
    ]
    with open_store(f"sqlite:///{proj}/hyperdock.db") as st:
        names = [e.name for e in st.list_experiments()]
    assert len(set(names)) == 2 and all(n.startswith("sp-") for n in names)


def test_open_experiment_keeps_stored_settings(tmp_path: Path) -> None:
    space = Space.from_obj({"x": hp.uniform("x", 0, 1)})
    target = Target(command=("true",), timeout=9.0)
    with open_store(f"sqlite:///{tmp_path}/s.db") as st:
        exp, created = open_experiment(
            st, "k", space=space, target=target, sampler="random", seed=4, max_trials=7,
            max_retries=1, meta={"pruner": "median", "max_time": 100.0},
        )  # fmt: skip
        assert created and exp.max_trials == 7
        again, created = open_experiment(st, "k", target=Target(command=("true",)))
        assert not created
        assert (again.max_trials, again.max_retries, again.seed) == (7, 1, 4)
        assert again.target.timeout == 9.0 and again.meta["pruner"] == "median"
        bad: list[dict[str, Any]] = [
            {"max_retries": 3},
            {"lease_timeout": 5.0},
            {"meta": {"max_time": 5.0}},
            {"target": Target(command=("true",), timeout=1.0)},
            {"sampler": "tpe"},
        ]
        for settings in bad:
            with pytest.raises(ConfigError, match="created with other settings"):
                open_experiment(st, "k", **settings)
        fresh, created = open_experiment(st, "new", space=space, target=Target(command=("true",)))
        assert created and fresh.max_trials == DEFAULT_MAX_TRIALS and fresh.sampler == "tpe"


def test_legacy_trials_means_retries_and_the_budget_is_announced(proj: Path) -> None:
    log = proj / "sup.log"
    proc = spawn(
        "--name", "legacy", "--command", f"{PY} slow.py", "--config-module", "sp.py",
        "--trials", "5", "--store", f"sqlite:///{proj}/s.db",
        cwd=proj, log=log, exe="hyperdock-supervisor",
    )  # fmt: skip
    wait_for(lambda: log.exists() and "Budget:" in log.read_text(), 60, "the budget line")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    line = next(ln for ln in log.read_text().splitlines() if ln.startswith("Budget:"))
    assert line == (
        f"Budget: {DEFAULT_MAX_TRIALS} trials (the default; change it with --max-trials N). "
        "--trials 5 is the retries of a failing trial, as in the original Hyperdock."
    )
    with open_store(f"sqlite:///{proj}/s.db") as st:
        exp = st.get_experiment("legacy")
    assert (exp.max_retries, exp.max_trials) == (5, DEFAULT_MAX_TRIALS)
