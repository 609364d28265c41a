"""The read commands as a user meets them: no store made by reading, experiments named
by prefix or ``latest``, tables that show what varies, one attempt numbering."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from clihelp import PY, QUADRATIC, hd, write

from hyperdock.config import space_from_v04
from hyperdock.storage import open_store
from hyperdock.trial import ExperimentState, Target, TrialState

NO_STORE = "error: no store at ./hyperdock.db (run an experiment first, or give --store)"


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with two finished experiments, ``alpha`` (4 trials) then ``alpine`` (2),
    over a space with a constant (``epochs``), a uniform ``x`` and a choice ``y``."""
    proj = tmp_path_factory.mktemp("reads")
    write(proj / "train.py", QUADRATIC)
    write(
        proj / "space.py",
        """
        from hyperdock import hp
        SPACE = {"x": hp.uniform("x", -3, 3), "y": hp.choice("y", [0, 1]), "epochs": 20}
        """,
    )
    for name, n in (("alpha", "4"), ("alpine", "2")):
        out = hd(
            "run", "space.py", "--command", f"{PY} train.py", "--name", name,
            "--max-trials", n, "--seed", "3", "-q", cwd=proj,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
    return proj


def trials_json(cwd: Path, name: str) -> list[dict[str, object]]:
    out = hd("trials", name, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


# -- item 7: reading never creates a store ----------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--json"),
        ("trials",),
        ("trials", "x"),
        ("best", "x"),
        ("export", "x"),
        ("logs", "1"),
        ("logs", "x"),
        ("workers",),
        ("cancel", "x"),
        ("cancel", "--trial", "1"),
    ],
)
def test_read_commands_in_an_empty_folder_create_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    out = hd(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == NO_STORE
    assert list(tmp_path.iterdir()) == []  # no hyperdock.db, no -wal/-shm files


def test_a_missing_store_path_creates_no_folder(tmp_path: Path) -> None:
    out = hd("status", "--store", "sqlite:///./sub/dir/x.db", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: no store at ./sub/dir/x.db (run an experiment first, or give --store)"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_dashboard_refuses_a_missing_store_unless_told_to_create(tmp_path: Path) -> None:
    out = hd("dashboard", "--port", "0", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == NO_STORE + "; or give --create to start on an empty one"
    assert list(tmp_path.iterdir()) == []


# -- item 6: names, prefixes, latest -----------------------------------------------------
def test_a_unique_prefix_or_latest_names_an_experiment(two: Path) -> None:
    alpha = trials_json(two, "alpha")
    assert len(alpha) == 4
    assert trials_json(two, "alph") == alpha
    assert len(trials_json(two, "alpi")) == 2
    assert trials_json(two, "latest") == trials_json(two, "alpine")
    for command in ("best", "export"):
        by_prefix = hd(command, "alph", "--json", cwd=two)
        assert by_prefix.returncode in (0, 1), by_prefix.stderr
        assert by_prefix.stdout == hd(command, "alpha", "--json", cwd=two).stdout
    best = json.loads(hd("best", "latest", "--json", cwd=two).stdout)
    assert best["experiment"] == "alpine"


@pytest.mark.parametrize("command", ["trials", "best", "export"])
def test_without_a_name_several_experiments_are_listed(two: Path, command: str) -> None:
    out = hd(command, cwd=two)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: sqlite:///./hyperdock.db holds 2 experiments (alpine, alpha); name one "
        "(a unique prefix of its name works, and latest is the newest)"
    )


@pytest.mark.parametrize("command", ["trials", "best", "export", "logs", "cancel"])
def test_an_ambiguous_prefix_lists_the_matches(two: Path, command: str) -> None:
    out = hd(command, "al", cwd=two)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: 'al' is the start of 2 experiment names (alpine, alpha); give more of the name"
    )


@pytest.mark.parametrize("command", ["trials", "best", "export", "logs", "cancel"])
def test_an_unknown_experiment_exits_2_listing_what_exists(two: Path, command: str) -> None:
    out = hd(command, "gamma", cwd=two)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: no experiment 'gamma' in sqlite:///./hyperdock.db; it holds: alpine, alpha "
        "(a unique prefix of a name works, and latest is the newest)"
    )
    assert "Traceback" not in out.stderr


def test_the_only_experiment_needs_no_name(tmp_path: Path) -> None:
    write(tmp_path / "train.py", QUADRATIC)
    write(tmp_path / "space.json", '{"x": [1, 2]}')
    out = hd(
        "run", "space.json", "--command", f"{PY} train.py", "--name", "solo", "-q", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert len(trials_json(tmp_path, "solo")) == 2
    listing = hd("trials", cwd=tmp_path)
    assert listing.returncode == 0 and listing.stdout.count("completed") == 2
    best = hd("best", "--json", cwd=tmp_path)
    assert best.returncode == 0 and json.loads(best.stdout)["experiment"] == "solo"
    export = hd("export", cwd=tmp_path)
    assert export.returncode == 0 and len(list(csv.DictReader(io.StringIO(export.stdout)))) == 2


def test_logs_by_experiment_and_trial_number(two: Path) -> None:
    rows = trials_json(two, "alpha")
    first, last = rows[0], max(rows, key=lambda t: (t["started_at"], t["id"]))
    by_id = hd("logs", str(first["id"]), cwd=two)  # a trial id still works
    assert by_id.returncode == 0 and by_id.stdout.startswith("training with")
    by_number = hd("logs", "alph", str(first["number"]), "--json", cwd=two)
    assert by_number.returncode == 0, by_number.stderr
    assert json.loads(by_number.stdout)["trial"] == first["id"]
    newest = hd("logs", "alpha", "--json", cwd=two)  # the trial started last
    assert json.loads(newest.stdout)["trial"] == last["id"]
    missing = hd("logs", "alpha", "9", cwd=two)
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == "error: experiment alpha has no trial number 9 (its numbers: 0 to 3)"
    )


def test_cancel_by_prefix(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        exp = st.create_experiment(
            "waiting-for-workers", space={"x": [1, 2]}, target=Target(command=("true",)),
            sampler="grid", seed=0, max_trials=2,
        )  # fmt: skip
        st.add_trials(exp.id, [{"x": 1}, {"x": 2}])
    out = hd("cancel", "wait", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Cancelled experiment waiting-for-workers;")
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        assert st.get_experiment(exp.id).state is ExperimentState.CANCELLED


# -- item 8: tables people can read -------------------------------------------------------
def _header(table: str) -> list[str]:
    return table.splitlines()[0].split()


def test_trials_shows_the_varying_parameters_in_columns_and_marks_the_best(two: Path) -> None:
    out = hd("trials", "alpha", cwd=two, env={"COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    header = _header(out.stdout)
    assert "x" in header and "y" in header
    assert "epochs" not in header and "PARAMS" not in header  # a constant is left out
    best_id = json.loads(hd("best", "alpha", "--json", cwd=two).stdout)["best"]["trial"]
    marked = [line for line in out.stdout.splitlines()[2:-1] if line.startswith("*")]
    assert len(marked) == 1 and marked[0].split()[1] == str(best_id)
    assert out.stdout.splitlines()[-1] == "* best trial (lowest loss)"


def test_trials_falls_back_to_one_params_column_on_a_narrow_terminal(two: Path) -> None:
    out = hd("trials", "alpha", cwd=two, env={"COLUMNS": "70"})
    assert out.returncode == 0, out.stderr
    header = _header(out.stdout)
    assert "PARAMS" in header and "x" not in header
    assert "x=" in out.stdout and "epochs" not in out.stdout


def test_the_params_column_is_shortened_to_fit_the_terminal(tmp_path: Path) -> None:
    import hyperdock
    from hyperdock import hp

    space = {f"parameter_{i}": hp.uniform(f"parameter_{i}", 0, 1) for i in range(6)}
    url = f"sqlite:///{tmp_path / 'hyperdock.db'}"
    with hyperdock.Experiment.open("many", store=url, space=space, sampler="random") as exp:
        for _ in range(3):
            exp.tell(exp.ask(), loss=1.0)
    out = hd("trials", "many", cwd=tmp_path, env={"COLUMNS": "100"})
    assert out.returncode == 0, out.stderr
    assert "PARAMS" in _header(out.stdout)
    assert max(len(line) for line in out.stdout.splitlines()) <= 100, out.stdout
    assert "parameter_0=" in out.stdout and "…" in out.stdout


def test_trials_wide_and_columns(two: Path) -> None:
    wide = hd("trials", "alpha", "--wide", cwd=two, env={"COLUMNS": "70"})
    assert wide.returncode == 0, wide.stderr
    assert {"epochs", "x", "y"} <= set(_header(wide.stdout))
    chosen = hd("trials", "alpha", "--columns", "epochs", cwd=two, env={"COLUMNS": "70"})
    assert chosen.returncode == 0, chosen.stderr
    header = _header(chosen.stdout)
    assert "epochs" in header and "x" not in header and "y" not in header
    assert " 20" in chosen.stdout.splitlines()[2]
    bad = hd("trials", "alpha", "--columns", "nope", cwd=two)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: --columns: no parameter nope in experiment alpha; its parameters are: epochs, x, y"
    )


def test_status_shows_pruned_counts_age_and_duration(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        exp = st.create_experiment(
            "curves", space=space_from_v04({"x": [1, 2]}).to_json(),
            target=Target(command=("true",)), sampler="grid", seed=0, max_trials=2,
        )  # fmt: skip
        st.add_trials(exp.id, [{"x": 1}, {"x": 2}])
        for state in (TrialState.PRUNED, TrialState.COMPLETED):
            trial = st.claim("w")
            assert trial is not None
            st.finish(trial.id, "w", state=state, loss=1.0)
        st.set_experiment_state(exp.id, ExperimentState.DONE)
        ends = [t.finished_at for t in st.list_trials(exp.id) if t.finished_at is not None]
    table = hd("status", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    header = _header(table.stdout)
    assert header[:7] == ["EXPERIMENT", "STATE", "DONE", "RUNNING", "FAILED", "PRUNED", "BEST"]
    assert "CREATED" in header and "DURATION" in header
    row = dict(zip(header, table.stdout.splitlines()[2].split(), strict=False))
    assert row["PRUNED"] == "1" and row["DONE"] == "2/2"
    (summary,) = json.loads(hd("status", "--json", cwd=tmp_path).stdout)
    assert summary["trials"]["pruned"] == 1
    assert summary["created_at"] == exp.created_at
    assert summary["duration"] == pytest.approx(max(ends) - exp.created_at)


def test_attempts_are_numbered_from_1_in_json_and_csv(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "t"
    write(folder / "log.txt", "second try\n")
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        exp = st.create_experiment(
            "retried", space={"x": [1]}, target=Target(command=("true",)),
            sampler="grid", seed=0, max_trials=1,
        )  # fmt: skip
        st.add_trials(exp.id, [{"x": 1}])
        trial = st.claim("w")
        assert trial is not None
        st.release(trial.id, "w", error="boom")  # the first attempt failed
        assert st.claim("w") is not None
        st.finish(
            trial.id, "w", state=TrialState.COMPLETED, loss=0.5, result={"folder": str(folder)}
        )
    (row,) = trials_json(tmp_path, "retried")
    assert row["attempt"] == 2
    assert [h["attempt"] for h in row["history"]] == [1, 2]  # type: ignore[union-attr]
    best = json.loads(hd("best", "retried", "--json", cwd=tmp_path).stdout)["best"]
    assert best["attempt"] == 2
    logs = json.loads(hd("logs", str(trial.id), "--json", cwd=tmp_path).stdout)
    assert logs["attempt"] == 2 and logs["log"] == "second try\n"
    (exported,) = csv.DictReader(io.StringIO(hd("export", "retried", cwd=tmp_path).stdout))
    assert exported["attempt"] == "2"
    table = hd("trials", "retried", cwd=tmp_path).stdout
    row_cells = dict(zip(_header(table), table.splitlines()[2].split()[1:], strict=False))
    assert row_cells["TRY"] == "2"


def test_export_csv_times_are_iso_8601_utc(two: Path) -> None:
    rows = {t["id"]: t for t in trials_json(two, "alpha")}
    exported = list(csv.DictReader(io.StringIO(hd("export", "alpha", cwd=two).stdout)))
    assert len(exported) == 4
    for line in exported:
        unix = rows[int(line["id"])]
        for key in ("created_at", "started_at", "finished_at"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line[key]), line[key]
            when = dt.datetime.strptime(line[key], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
            assert abs(when.timestamp() - float(unix[key])) < 1  # type: ignore[arg-type]
