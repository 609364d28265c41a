"""The Python API (hyperdock.Experiment, hyperdock.run) end to end, on a real SQLite store."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import hyperdock
from hyperdock import hp
from hyperdock.errors import ConfigError, HyperdockError

ROOT = Path(__file__).resolve().parent.parent
BRANIN_MIN = 0.397887

SPACE = {"x1": hp.uniform("x1", -5, 10), "x2": hp.uniform("x2", 0, 15)}


def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hyperdock.db'}"


def test_run_with_a_command_target(tmp_path: Path, store_url: str) -> None:
    script = tmp_path / "target.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, os
            p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
            json.dump({"loss": (p["x"] - 1) ** 2}, open(os.environ["HYPERDOCK_LOSS"], "w"))
            """
        )
    )
    exp = hyperdock.run(
        {"x": hp.uniform("x", -3, 3)},
        command=[sys.executable, str(script)],
        name="cmd",
        store=store_url,
        sampler="random",
        seed=7,
        max_trials=4,
        workers=2,
        results=tmp_path / "results",
    )
    with exp:
        assert exp.state.value == "done"
        assert exp.counts()["completed"] == 4
        trials = exp.trials("completed")
        for t in trials:
            assert t.loss == pytest.approx((t.params["x"] - 1) ** 2)
        assert exp.best is not None
        assert exp.best.loss == min(t.loss for t in trials if t.loss is not None)
        out = exp.export(tmp_path / "trials.csv")
        assert out.read_text().splitlines()[0].startswith("id,number,state,loss")
        assert len(out.read_text().splitlines()) == 5


def test_ask_tell_drives_a_python_function_with_tpe(store_url: str) -> None:
    with hyperdock.Experiment.open(
        "branin", store=store_url, space=SPACE, sampler="tpe", seed=1, max_trials=40
    ) as exp:
        for _ in range(40):
            trial = exp.ask()
            assert trial.state.value == "running"
            exp.tell(trial, loss=branin(**trial.params))
        best = exp.best
        assert best is not None and best.loss is not None
        assert best.loss - BRANIN_MIN < 2.0
        assert exp.counts()["completed"] == 40
        assert exp.state.value == "done"  # the budget is spent and nothing is pending
        with pytest.raises(HyperdockError, match="larger max_trials"):
            exp.ask()
    # Resumed with a larger budget, it asks again.
    with hyperdock.Experiment.open("branin", store=store_url, max_trials=41) as exp:
        assert not exp.created
        exp.tell(exp.ask(), loss=1.0)
        assert exp.counts()["completed"] == 41


def test_report_returns_the_pruners_decision(store_url: str) -> None:
    with hyperdock.Experiment.open(
        "prune", store=store_url, space=SPACE, sampler="random", pruner="median", seed=2
    ) as exp:
        for _ in range(5):
            trial = exp.ask()
            for step in range(10):
                assert exp.report(trial, step, 0.1 + 0.01 * step) is False
            exp.tell(trial, loss=0.2)
        bad = exp.ask()
        stops = [exp.report(bad, step, 9.0) for step in range(10)]
        assert any(stops)
        told = exp.tell(bad, loss=9.0, state="pruned")
        assert told.state.value == "pruned"
        assert exp.counts()["pruned"] == 1


def test_an_enqueued_point_is_evaluated_first(store_url: str) -> None:
    with hyperdock.Experiment.open(
        "enq", store=store_url, space=SPACE, sampler="tpe", seed=3
    ) as exp:
        exp.tell(exp.ask(), loss=50.0)
        queued = exp.enqueue({"x1": math.pi})
        assert queued.state.value == "queued"
        trial = exp.ask()
        assert trial.id == queued.id
        assert trial.params["x1"] == math.pi
        assert 0 <= trial.params["x2"] <= 15  # filled in from the space
        exp.tell(trial, loss=branin(**trial.params))
        with pytest.raises(ConfigError, match="no parameter 'y'"):
            exp.enqueue({"y": 1})


def test_an_enqueued_point_runs_first_on_local_workers(tmp_path: Path, store_url: str) -> None:
    exp = hyperdock.Experiment.open(
        "enq-run",
        store=store_url,
        space={"x": hp.uniform("x", -3, 3)},
        target=hyperdock.Command(
            [sys.executable, "-c", "import os; open(os.environ['HYPERDOCK_LOSS'],'w').write('1')"]
        ),
        sampler="random",
        max_trials=3,
    )
    with exp:
        exp.enqueue({"x": 2.5})
        exp.run(results=tmp_path / "results")
        first = min(exp.trials("completed"), key=lambda t: t.started_at or 0.0)
        assert first.params == {"x": 2.5}


MIXED = {
    "lr": hp.loguniform("lr", math.log(1e-4), 0),
    "opt": hp.choice("opt", ["adam", "sgd"]),
    "layers": hp.quniform("layers", 1, 8, 1),
    "seed": hp.randint("seed", 0, 3),
    "model": hp.choice(
        "model", [{"kind": "svm", "C": hp.uniform("C", 0, 1)}, {"kind": "tree", "depth": 4}]
    ),
}


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"lr": 3.0}, r"parameter 'lr': 3.0 is outside loguniform"),
        ({"lr": "fast"}, r"'lr': .* holds numbers, got .fast."),
        ({"lr": math.nan}, r"'lr': nan is not a finite number"),
        ({"opt": "rmsprop"}, r"'opt': .rmsprop. is not one of its options \(.adam., .sgd.\)"),
        ({"layers": 2.5}, r"'layers': .* holds multiples of 1, got 2.5"),
        ({"seed": 3}, r"'seed': 3 is outside randint"),
        ({"model": {"kind": "svm", "C": 7}}, r"'C': 7 is outside uniform"),
        ({"model": {"kind": "tree", "depth": 5}}, r"'model.depth' is the constant 4"),
    ],
)
def test_enqueue_refuses_a_value_the_space_cannot_hold(
    store_url: str, point: dict[str, object], message: str
) -> None:
    with hyperdock.Experiment.open("v", store=store_url, space=MIXED, sampler="tpe") as exp:
        good = exp.enqueue({"lr": 0.01, "opt": "sgd", "layers": 8.0, "seed": 2})
        with pytest.raises(ConfigError, match=message):
            exp.enqueue_many([{"lr": 0.5}, point])
        # all or none: only the good point is queued
        assert [t.id for t in exp.trials()] == [good.id]
        assert exp.enqueue({"model": {"kind": "tree", "depth": 4}}).params["model"]["depth"] == 4


def test_warm_start_skips_points_this_space_cannot_hold(store_url: str) -> None:
    wide = {"x1": hp.uniform("x1", -5, 10), "x2": hp.uniform("x2", 0, 30)}
    with hyperdock.Experiment.open("wide", store=store_url, space=wide, sampler="random") as src:
        for x2 in (25.0, 1.0, 20.0, 2.0, 3.0):  # the best two lie outside SPACE's x2
            src.enqueue({"x1": 0.0, "x2": x2})
            t = src.ask()
            src.tell(t, loss=10.0 if x2 < 10 else 1.0)
        with hyperdock.Experiment.open("narrow", store=store_url, space=SPACE) as dest:
            queued = dest.warm_start(src, k=2)
            assert sorted(q.params["x2"] for q in queued) == [1.0, 2.0]


def test_warm_start_queues_the_best_points_of_another_experiment(store_url: str) -> None:
    with hyperdock.Experiment.open(
        "source", store=store_url, space=SPACE, sampler="random", seed=4
    ) as src:
        for _ in range(8):
            t = src.ask()
            src.tell(t, loss=branin(**t.params))
        best3 = sorted(src.trials("completed"), key=lambda t: t.loss or 0.0)[:3]
        with hyperdock.Experiment.open(
            "dest", store=store_url, space=SPACE, sampler="tpe", seed=5
        ) as dest:
            queued = dest.warm_start(src, k=3)
            assert [q.params for q in queued] == [t.params for t in best3]
            asked = [dest.ask() for _ in range(3)]
            assert [a.params for a in asked] == [t.params for t in best3]


def test_resume_follows_the_command_lines_rules(store_url: str) -> None:
    with hyperdock.Experiment.open(
        "res", store=store_url, space=SPACE, sampler="random", seed=9, max_trials=10
    ) as exp:
        assert exp.created
        first = exp.ask()
        exp.tell(first, loss=1.0)
    with hyperdock.Experiment.open("res", store=store_url) as again:
        assert not again.created
        assert again.record.sampler == "random" and again.record.seed == 9
        assert again.counts()["completed"] == 1
    with pytest.raises(ConfigError, match="--sampler tpe"):
        hyperdock.Experiment.open("res", store=store_url, sampler="tpe")
    with pytest.raises(ConfigError, match="does not exist yet"):
        hyperdock.Experiment.open("nope", store=store_url)
    names = [e.name for e in hyperdock.list_experiments(store_url)]
    assert names == ["res"]


def test_settings_from_the_command_line_open_an_experiment(tmp_path: Path, store_url: str) -> None:
    """Experiment.from_settings (what run / supervisor call) creates with a target only,
    then resumes by name keeping what is stored."""
    from hyperdock.experiment import ExperimentSettings

    config = tmp_path / "quad.py"
    config.write_text('from hyperdock import hp\nSPACE = {"x": hp.uniform("x", -5, 5)}\n')
    given = ExperimentSettings(
        config=str(config),
        command="python3 t.py --fast",
        seed=3,
        timeout=60,
        target_env=['["A=1", "B=2"]'],
        directions=("maximize",),
    )
    with hyperdock.Experiment.from_settings(given, store=store_url) as exp:
        assert exp.created and exp.name.startswith("quad-")
        target = exp.record.target
        assert target.command == ("python3", "t.py", "--fast") and target.timeout == 60
        assert target.env == ("A=1", "B=2") and exp.objectives.maximize
        name = exp.name
    again = ExperimentSettings(config=None, name=name, max_trials=7)
    with hyperdock.Experiment.from_settings(again, store=store_url) as exp:
        assert not exp.created and exp.record.seed == 3 and exp.record.max_trials == 7
    with pytest.raises(ConfigError, match="give the target"):
        hyperdock.Experiment.from_settings(ExperimentSettings(config=str(config)), store=store_url)
    with pytest.raises(ConfigError, match="give a CONFIG"):
        hyperdock.Experiment.from_settings(ExperimentSettings(), store=store_url)


def test_a_tell_for_a_trial_not_running_changes_nothing(store_url: str) -> None:
    with hyperdock.Experiment.open("twice", store=store_url, space=SPACE, seed=1) as exp:
        trial = exp.ask()
        told = exp.tell(trial, loss=3.0, data={"note": "first"})
        assert told.data == {"note": "first"}
        with pytest.raises(hyperdock.experiment.TrialNotRunning, match="is completed"):
            exp.tell(trial, loss=1.0)
        assert exp.store.get_trial(trial.id).loss == 3.0


def test_an_asked_trial_never_told_is_reaped_by_its_lease(store_url: str) -> None:
    space = {"x": hp.uniform("x", 0, 1)}
    lost = hyperdock.Experiment.open("lease", store=store_url, space=space, lease_timeout=0.5)
    trial = lost.ask()
    lost.close()  # this process's lease stops: like an evaluator that died
    with hyperdock.Experiment.open("lease", store=store_url) as exp:
        deadline = time.monotonic() + 30
        again = exp.ask()
        while again.id != trial.id and time.monotonic() < deadline:
            exp.tell(again, state="cancelled")
            time.sleep(0.2)
            again = exp.ask()
        assert again.id == trial.id and again.attempt == 1


def test_to_pandas(store_url: str) -> None:
    with hyperdock.Experiment.open("pd", store=store_url, space=SPACE, seed=1) as exp:
        for _ in range(3):
            t = exp.ask()
            exp.tell(t, loss=branin(**t.params))
        try:
            import pandas  # noqa: F401
        except ImportError:
            with pytest.raises(HyperdockError, match=r"hyperdock\[pandas\]"):
                exp.to_pandas()
            return
        df = exp.to_pandas()
        assert len(df) == 3
        assert {"id", "state", "loss", "params.x1", "params.x2"} <= set(df.columns)
        assert df["loss"].min() == exp.best.loss  # type: ignore[union-attr]


def test_the_example_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python_api.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "best of ask/tell" in out.stdout and "best of the command run" in out.stdout
    assert json.loads(out.stdout.splitlines()[-1])["completed"] == 6


def test_import_hyperdock_stays_light() -> None:
    code = "import sys, hyperdock; print('hyperdock.storage' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
    assert callable(hyperdock.Experiment.open) and hyperdock.hp.uniform is hp.uniform


def test_cli_enqueue_takes_json_and_csv(tmp_path: Path, store_url: str) -> None:
    from clihelp import hd

    space = {"x": hp.uniform("x", 0, 1), "n": hp.choice("n", [1, 2])}
    hyperdock.Experiment.open("lab", store=store_url, space=space).close()
    (tmp_path / "points.csv").write_text("x,n\n0.5,2\n0.25,\n")
    out = hd("enqueue", "lab", "--store", store_url, "--params", "points.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Queued 2 trial(s) of experiment lab:")
    out = hd("enqueue", "lab", "--store", store_url, "--params", '[{"x": 0.1}]', cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    bad = hd("enqueue", "lab", "--store", store_url, "--params", '{"y": 1}', cwd=tmp_path)
    assert bad.returncode == 2 and "has no parameter 'y'" in bad.stderr
    with hyperdock.Experiment.load("lab", store=store_url) as exp:
        queued = exp.trials("queued")
        assert [t.params["x"] for t in queued] == [0.5, 0.25, 0.1]
        assert queued[0].params["n"] == 2 and queued[1].params["n"] in (1, 2)
        assert exp.ask().id == queued[0].id


def test_an_ask_tell_experiment_says_it_has_no_target(tmp_path: Path, store_url: str) -> None:
    from clihelp import hd

    hyperdock.Experiment.open("lab", store=store_url, space=SPACE).close()
    out = hd("status", "--store", store_url, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["target"] == "no target (ask/tell)"


def test_clone_copies_the_settings_not_the_run(store_url: str) -> None:
    with hyperdock.Experiment.open(
        "orig", store=store_url, space=SPACE, sampler="random", seed=7, max_trials=3,
        pruner="median", max_failures=2,
    ) as exp:  # fmt: skip
        exp.tell(exp.ask(), state="failed", error="boom")
        exp.cancel()
        copy = exp.clone("orig-2")
        rec, old = copy.record, exp.record
        assert (rec.space, rec.target, rec.sampler, rec.seed, rec.max_trials) == (
            old.space, old.target, old.sampler, old.seed, old.max_trials,
        )  # fmt: skip
        assert rec.meta["pruner"] == old.meta["pruner"] and rec.meta["max_failures"] == 2
        assert copy.state.value == "running" and copy.counts()["failed"] == 0
        assert "stop_reason" not in rec.meta and "first_error" not in rec.meta
        t = copy.ask()
        copy.tell(t, loss=1.0)
        with pytest.raises(HyperdockError, match="exists already"):
            exp.clone("orig-2")
        with pytest.raises(ConfigError, match="at most 100"):
            exp.clone("x" * 101)


def test_cancel_leaves_an_ended_experiment_as_it_ended(tmp_path: Path, store_url: str) -> None:
    with hyperdock.Experiment.open(
        "fin", store=store_url, space={"x": hp.choice("x", [1, 2])}, sampler="random"
    ) as exp:
        for _ in range(2):
            exp.tell(exp.ask(), loss=1.0)
        assert exp.state.value == "done"
        assert exp.cancel() is False and exp.state.value == "done"
        out = subprocess.run(
            [sys.executable, "-m", "hyperdock", "cancel", "fin", "--store", store_url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "Experiment fin is done already; nothing to cancel."
        assert exp.state.value == "done"


def test_export_picks_the_format_from_the_suffix(tmp_path: Path, store_url: str) -> None:
    with hyperdock.Experiment.open("ex", store=store_url, space=SPACE, sampler="random") as exp:
        exp.tell(exp.ask(), loss=2.0)
        data = json.loads(exp.export(tmp_path / "e.json").read_text())
        assert data["experiment"] == "ex" and len(data["trials"]) == 1
        assert (tmp_path / "e.csv").exists() is False
        assert exp.export(tmp_path / "e.csv").read_text().startswith("id,")


def test_enqueue_front_goes_before_the_queued_trials(tmp_path: Path, store_url: str) -> None:
    with hyperdock.Experiment.open("fr", store=store_url, space=SPACE, sampler="random") as exp:
        waiting = exp.enqueue_many([{"x1": 1.0}, {"x1": 2.0}])  # e.g. suggestions queued
        trusted = exp.enqueue({"x1": 3.0}, front=True)
        out = subprocess.run(
            [sys.executable, "-m", "hyperdock", "enqueue", "fr", "--front", "--store", store_url,
             "--params", json.dumps([{"x1": 4.0}, {"x1": 5.0}])],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        asked = [exp.ask().params["x1"] for _ in range(5)]
        assert asked == [4.0, 5.0, 3.0, 1.0, 2.0]
        assert [t.number for t in waiting] == [0, 1] and trusted.number == 2
