"""Adaptive search end to end: optuna-backed samplers, restarts, early stopping,
several objectives, directions and stop conditions."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, spawn, stop_all, wait_for, write

from hyperdock.objectives import Objectives, pareto_front
from hyperdock.progress import ProgressReader, parse_line, report
from hyperdock.samplers import make_sampler
from hyperdock.space import Space
from hyperdock.storage import open_store
from hyperdock.supervisor import Supervisor
from hyperdock.trial import TrialState

STORE = "sqlite:///./hyperdock.db"

#: Every space type: continuous, log, quantised, integer, categorical, conditional.
SPACES: dict[str, str] = {
    "continuous": """
        from hyperdock import hp
        SPACE = {"x": hp.uniform("x", -2, 4), "y": hp.normal("y", 0, 1), "k": 3}
    """,
    "mixed": """
        from hyperdock import hp
        SPACE = {
            "x": hp.uniform("x", -2, 4),
            "lr": hp.loguniform("lr", -7, 0),
            "units": hp.quniform("units", 8, 64, 8),
            "layers": hp.randint("layers", 1, 4),
            "act": hp.choice("act", ["relu", "tanh"]),
        }
    """,
    "conditional": """
        from hyperdock import hp
        SPACE = {
            "x": hp.uniform("x", -2, 4),
            "model": hp.choice("model", [
                {"kind": "svm", "c": hp.loguniform("c", -3, 3)},
                {"kind": "tree", "depth": hp.randint("depth", 1, 8),
                 "leaf": hp.choice("leaf", [1, 5])},
            ]),
        }
    """,
}

#: loss = (x - 1)^2, plus small terms from the other parameters when present.
TARGET = """
import json, os
p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
loss = (p["x"] - 1) ** 2 + 0.01 * abs(p.get("y", 0))
json.dump({"loss": loss}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


def _valid(space: str, params: dict[str, Any]) -> bool:
    """The params are a point of the named test space."""
    ok = -2 <= params["x"] <= 4
    if space == "continuous":
        return ok and params["k"] == 3 and isinstance(params["y"], float)
    if space == "mixed":
        return (
            ok
            and math.exp(-7) <= params["lr"] <= 1
            and params["units"] in {8.0 * i for i in range(1, 9)}
            and params["layers"] in (1, 2, 3)
            and params["act"] in ("relu", "tanh")
        )
    model = params["model"]
    if model["kind"] == "svm":
        return ok and set(model) == {"kind", "c"} and math.exp(-3) <= model["c"] <= math.exp(3)
    return ok and set(model) == {"kind", "depth", "leaf"} and model["leaf"] in (1, 5)


def _trials(cwd: Path, name: str) -> list[dict[str, Any]]:
    out = hd("export", name, "--format", "json", "--store", STORE, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout)["trials"])


# -- every sampler on every space type -----------------------------------------------------
@pytest.mark.parametrize("sampler", ["tpe", "gp", "cmaes", "nsga2", "qmc"])
def test_each_sampler_runs_every_space_type(tmp_path: Path, sampler: str) -> None:
    write(tmp_path / "t.py", TARGET)
    for space, text in SPACES.items():
        write(tmp_path / f"{space}.py", text)
        name = f"{sampler}-{space}"
        out = hd(
            "run", f"{space}.py", "--command", f"{PY} t.py", "--sampler", sampler,
            "--max-trials", "14", "--workers", "2", "--seed", "3", "--name", name,
            "--store", STORE, "--json", cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        summary = json.loads(out.stdout)
        assert summary["trials"]["completed"] == 14, summary
        rows = _trials(tmp_path, name)
        assert len(rows) == 14 and all(r["state"] == "completed" for r in rows)
        bad = [r["params"] for r in rows if not _valid(space, r["params"])]
        assert not bad, f"{sampler} on {space}: invalid points {bad}"
        if space == "conditional":  # both branches get explored
            assert {r["params"]["model"]["kind"] for r in rows} == {"svm", "tree"}


def test_seeded_tpe_runs_are_reproducible(tmp_path: Path) -> None:
    write(tmp_path / "t.py", TARGET)
    write(tmp_path / "space.py", SPACES["mixed"])
    params = []
    for name in ("a", "b"):
        out = hd(
            "run", "space.py", "--command", f"{PY} t.py", "--max-trials", "15",
            "--seed", "11", "--name", name, "--store", STORE, "-q", cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        params.append([r["params"] for r in sorted(_trials(tmp_path, name), key=_number)])
    assert params[0] == params[1]


def _number(row: dict[str, Any]) -> int:
    return int(row["number"])


def test_tpe_is_the_default_and_beats_its_random_start(tmp_path: Path) -> None:
    write(tmp_path / "t.py", TARGET)
    write(tmp_path / "space.py", SPACES["continuous"])
    out = hd(
        "run", "space.py", "--command", f"{PY} t.py", "--max-trials", "40", "--seed", "5",
        "--name", "d", "--store", STORE, "--json", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as store:
        exp = store.get_experiment("d")
        assert exp.sampler == "tpe"
        losses = [t.loss for t in store.list_trials(exp.id)]
    startup, guided = losses[:10], losses[10:]
    assert min(guided) < min(startup)  # it learnt something beyond its random start
    summary = json.loads(out.stdout)
    assert set(summary["importances"]) == {"x", "y"}
    assert summary["importances"]["x"] > summary["importances"]["y"]


# -- parallel workers ------------------------------------------------------------------------
def test_parallel_tpe_workers_never_get_duplicate_points(tmp_path: Path) -> None:
    write(tmp_path / "space.py", SPACES["mixed"])
    # Each trial records which other trials were running when it started.
    write(
        tmp_path / "t.py",
        TARGET.replace(
            "loss =",
            "import time, random\ntime.sleep(random.uniform(0.05, 0.3))\nloss =",
        ),
    )
    out = hd(
        "run", "space.py", "--command", f"{PY} t.py", "--max-trials", "40", "--workers", "4",
        "--seed", "2", "--name", "par", "--store", STORE, "-q", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = _trials(tmp_path, "par")
    points = [json.dumps(r["params"], sort_keys=True) for r in rows]
    assert len(rows) == 40 and len(set(points)) == 40
    # Trials that overlapped in time (pending together) are not near-identical either.
    for a in rows:
        for b in rows:
            if (
                a["id"] < b["id"]
                and a["started_at"] < b["finished_at"]
                and b["started_at"] < a["finished_at"]
            ):
                assert abs(a["params"]["x"] - b["params"]["x"]) > 1e-6


# -- restarts --------------------------------------------------------------------------------
def test_restarted_tpe_supervisor_restores_its_history(tmp_path: Path) -> None:
    write(tmp_path / "space.py", SPACES["continuous"])
    write(tmp_path / "t.py", TARGET.replace("loss =", "import time; time.sleep(0.15)\nloss ="))
    url = f"sqlite:///{tmp_path}/hyperdock.db"
    sup_args = (
        "supervisor", "space.py", "--command", f"{PY} t.py", "--name", "rs", "--max-trials",
        "24", "--seed", "4", "--store", url, "--poll", "0.2",
    )  # fmt: skip
    sup = spawn(*sup_args, cwd=tmp_path, log=tmp_path / "sup1.log")
    worker = spawn(
        "worker", "--store", url, "--parallelism", "2", "--heartbeat", "0.5",
        cwd=tmp_path, log=tmp_path / "worker.log",
    )  # fmt: skip
    try:
        with open_store(url) as store:

            def completed() -> int:
                try:
                    exp = store.get_experiment("rs")
                except Exception:
                    return 0
                return store.count_trials(exp.id)[TrialState.COMPLETED]

            wait_for(lambda: completed() >= 8, 60, "8 completed trials")
            os.kill(sup.pid, signal.SIGKILL)
            sup.wait()
            # What a new supervisor sees: every finished trial, in its sampler's study.
            exp = store.get_experiment("rs")
            fresh = Supervisor(store, exp)
            fresh.sync_mirror()
            assert fresh.mirror is not None
            finished = store.list_trials(exp.id, states=[TrialState.COMPLETED])
            history = fresh.mirror.history
            complete = history.best(history.n)
            assert len(complete) == len(finished) >= 8
            assert sorted(history.values[complete, 0]) == sorted(t.loss for t in finished)
            sup = spawn(*sup_args, cwd=tmp_path, log=tmp_path / "sup2.log")
            assert sup.wait(timeout=120) == 0, (tmp_path / "sup2.log").read_text()
            rows = store.list_trials(exp.id)
        assert sorted(t.number for t in rows) == list(range(24))  # the budget, no more
        assert all(t.state is TrialState.COMPLETED for t in rows)
        assert len({json.dumps(t.params, sort_keys=True) for t in rows}) == 24
    finally:
        stop_all([sup, worker])


# -- early stopping --------------------------------------------------------------------------
# Every trial has 300 steps (epochs): quick ones for the good trials (x < 5), slow
# ones for the bad one, which would take 30 s unless pruned.
CURVE = """
import json, os, sys, time
import hyperdock
p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
open(os.path.join(os.environ["HYPERDOCK_DIR"], "pid"), "w").write(str(os.getpid()))
bad = p["x"] > 5
for step in range(300):
    hyperdock.report(step, p["x"] + 1.0 / (step + 1))
    time.sleep(0.1 if bad else 0.002)
json.dump({"loss": p["x"]}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_bad_process_trial_is_pruned_and_its_target_stops(tmp_path: Path) -> None:
    write(tmp_path / "space.json", json.dumps({"x": [1.0, 1.1, 1.2, 1.3, 9.0]}))
    write(tmp_path / "curve.py", CURVE)
    started = time.monotonic()
    out = hd(
        "run", "space.json", "--command", f"{PY} curve.py", "--pruner", "median",
        "--name", "es", "--store", STORE, "--heartbeat", "1", "--json", cwd=tmp_path,
    )  # fmt: skip
    took = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    rows = sorted(_trials(tmp_path, "es"), key=_number)
    assert [r["state"] for r in rows] == ["completed"] * 4 + ["pruned"]
    pruned = rows[-1]
    assert pruned["result"]["step"] < 299 and pruned["loss"] == pytest.approx(
        9 + 1 / (pruned["result"]["step"] + 1)
    )
    assert "pruned" in pruned["error"]
    pid = int((Path(pruned["result"]["folder"]) / "pid").read_text())
    assert not _pid_alive(pid)
    assert took < 30  # 300 steps of 0.1 s would take 30 s: it was stopped early
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as store:
        exp = store.get_experiment("es")
        curves = store.list_progress(exp.id)
    assert [len(curves[r["id"]]) for r in rows[:4]] == [300] * 4  # complete curves kept
    assert len(curves[pruned["id"]]) == pruned["result"]["step"] + 1


# A busybox target: 300 steps, quick for good trials, slow (30 s) for the bad one.
CURVE_SH = r"""
trap 'exit 143' TERM
x=$(sed 's/.*"x":\([0-9.]*\).*/\1/' /hyperdock/params.json)
n=300; pause=0; case $x in 9*) pause=0.1;; esac
i=0
while [ $i -lt $n ]; do
  echo "{\"step\": $i, \"loss\": $x.$i}" >> /hyperdock/progress.jsonl
  sleep $pause
  i=$((i+1))
done
echo "{\"loss\": $x}" > /hyperdock/loss.json
"""


@pytest.mark.docker
def test_a_bad_docker_trial_is_pruned_and_its_container_goes(
    tmp_path: Path, busybox_image: str, docker_client: Any
) -> None:
    write(tmp_path / "space.json", json.dumps({"x": [1, 2, 3, 4, 9]}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "curve.sh").write_text(CURVE_SH)
    out = hd(
        "run", "space.json", "--image", busybox_image, "--command", "sh /data/curve.sh",
        "--data", "data", "--network", "none", "--pull", "never", "--pruner", "median",
        "--name", "des", "--store", STORE, "--heartbeat", "1", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    rows = sorted(_trials(tmp_path, "des"), key=_number)
    assert [r["state"] for r in rows] == ["completed"] * 4 + ["pruned"]
    assert rows[-1]["result"]["step"] < 299
    # This run's containers (its trial folders are mounted from tmp_path; other
    # Hyperdock containers on the engine are none of this test's business).
    left = [
        c
        for c in docker_client.containers.list(all=True, filters={"label": "hyperdock.worker"})
        if any(str(m.get("Source", "")).startswith(str(tmp_path)) for m in c.attrs["Mounts"])
    ]
    assert left == []  # the pruned trial's container was stopped and removed


def test_progress_lines_and_the_report_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv("HYPERDOCK_PROGRESS", str(path))
    report(1, 0.5)
    report(2.0, 0.25)
    with pytest.raises(ValueError, match="finite"):
        report(3, float("nan"))
    with path.open("a") as fh:
        fh.write('{"step": "x", "loss": 1}\nnot json\n{"step": 4, "loss": 0.1}')  # unfinished
    reader = ProgressReader(path)
    points, offset = reader.peek()
    assert points == [(1, 0.5), (2, 0.25)] and len(reader.bad) == 2
    reader.commit(points, offset)
    assert reader.peek()[0] == []  # the unfinished line waits for its newline
    assert reader.peek(final=True)[0] == [(4, 0.1)]  # unless the target has ended
    assert parse_line('{"step": 1, "loss": true}') is None


# -- objectives, directions, stop conditions -------------------------------------------------
MULTI = """
import json, os
p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
x, y = p["x"], p["y"]
json.dump({"losses": {"err": x ** 2 + y ** 2, "cost": (x - 2) ** 2 + y ** 2}},
          open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_several_objectives_give_a_non_dominated_front(tmp_path: Path, sampler: str) -> None:
    write(
        tmp_path / "space.py",
        """
        from hyperdock import hp
        SPACE = {"x": hp.uniform("x", -1, 3), "y": hp.uniform("y", -1, 1)}
        OBJECTIVES = {"err": "minimize", "cost": "minimize"}
        """,
    )
    write(tmp_path / "t.py", MULTI)
    out = hd(
        "run", "space.py", "--command", f"{PY} t.py", "--sampler", sampler, "--max-trials",
        "24", "--workers", "2", "--seed", "1", "--name", "mo", "--store", STORE, "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    front = json.loads(out.stdout)["pareto_front"]
    values = {t["trial"]: (t["values"]["err"], t["values"]["cost"]) for t in front}
    everyone = {
        r["id"]: tuple(r["result"]["values"]) for r in _trials(tmp_path, "mo")
    }  # [err, cost] in the config's order
    assert len(everyone) == 24 and front

    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    for tid, v in values.items():
        assert everyone[tid] == v
        assert not any(dominates(w, v) for w in everyone.values())
    for tid, v in everyone.items():  # whoever is not on the front is beaten by it
        if tid not in values:
            assert any(dominates(w, v) for w in values.values())
    shown = hd("best", "mo", "--store", STORE, cwd=tmp_path)
    assert "Pareto front" in shown.stdout and "err" in shown.stdout


def test_pareto_front_function() -> None:
    from hyperdock.trial import Trial

    objectives = Objectives.build(["minimize", "maximize"])

    def t(i: int, a: float, b: float) -> Trial:
        return Trial(i, 1, i, {}, TrialState.COMPLETED, loss=a, result={"values": [a, b]})

    trials = [t(0, 1, 1), t(1, 2, 3), t(2, 2, 2), t(3, 0.5, 0.5), t(4, 3, 3)]
    assert [x.id for x in pareto_front(trials, objectives)] == [0, 1, 3]


def test_maximize_and_target_loss(tmp_path: Path) -> None:
    write(tmp_path / "space.py", SPACES["continuous"])
    write(
        tmp_path / "t.py",
        TARGET.replace('{"loss": loss}', '{"loss": -loss}'),  # accuracy-like: higher is better
    )
    out = hd(
        "run", "space.py", "--command", f"{PY} t.py", "--direction", "maximize",
        "--target-loss", "-0.05", "--max-trials", "200", "--seed", "1", "--name", "mx",
        "--store", STORE, "--json", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    rows = _trials(tmp_path, "mx")
    done = [r for r in rows if r["state"] == "completed"]
    assert summary["best"]["loss"] == max(r["loss"] for r in done) >= -0.05
    assert len(done) < 200  # stopped once the target was reached


def test_max_time_stops_new_trials(tmp_path: Path) -> None:
    write(tmp_path / "space.py", SPACES["continuous"])
    write(tmp_path / "t.py", TARGET.replace("loss =", "import time; time.sleep(0.2)\nloss ="))
    started = time.monotonic()
    out = hd(
        "run", "space.py", "--command", f"{PY} t.py", "--max-time", "2", "--max-trials",
        "500", "--name", "mt", "--store", STORE, "-q", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 60
    rows = _trials(tmp_path, "mt")
    assert 1 <= sum(r["state"] == "completed" for r in rows) < 500


def test_bad_combinations_are_refused_clearly(tmp_path: Path) -> None:
    write(tmp_path / "space.py", SPACES["continuous"])
    two = ["--direction", "minimize", "--direction", "maximize"]
    for args, says in [
        (["--sampler", "gp", *two], "one objective"),
        (["--pruner", "median", *two], "one objective"),
        (["--max-time", "-1"], "--max-time"),
    ]:
        out = hd("run", "space.py", "--command", "true", *args, "--store", STORE, cwd=tmp_path)
        assert out.returncode != 0 and says in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_samplers_fall_back_with_a_warning_on_parts_they_cannot_model(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hyperdock import hp

    space = Space.from_obj({"x": hp.uniform("x", 0, 1), "c": hp.choice("c", ["a", "b"])})
    sampler = make_sampler("cmaes", space, 1)
    trials: list[Any] = []
    from hyperdock.trial import Trial

    for n in range(6):
        params = sampler.suggest(n, trials)
        assert params is not None and params["c"] in ("a", "b") and 0 <= params["x"] <= 1
        trials.append(
            Trial(n + 1, 1, n, params, TrialState.COMPLETED, loss=(params["x"] - 0.3) ** 2)
        )
    fallbacks = [r for r in caplog.records if "sampled independently" in r.getMessage()]
    assert len(fallbacks) == 1 and "`c`" in fallbacks[0].getMessage()  # said once


@pytest.mark.parametrize("pruner", ["median", "asha", "hyperband"])
def test_each_pruner_stops_poor_curves(tmp_path: Path, pruner: str) -> None:
    """Simulated workers report curves step by step; the supervisor prunes poor ones."""
    from hyperdock import hp
    from hyperdock.supervisor import open_experiment
    from hyperdock.trial import Target

    with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        exp, _ = open_experiment(
            store, "p", space=Space.from_obj({"x": hp.uniform("x", 0, 1)}),
            target=Target(command=("true",)), sampler="random", seed=3, max_trials=30,
            max_retries=0, meta={"objectives": Objectives().to_meta(), "pruner": pruner},
        )  # fmt: skip
        sup = Supervisor(store, exp, reap_interval=3600)
        store.register_worker("w", host="sim", pid=0, parallelism=1)
        steps_run = 0
        while not sup.step():
            trial = store.claim("w", experiment_id=exp.id)
            if trial is None:
                continue
            x = trial.params["x"]
            for step in range(27):
                loss = x + 1.0 / (step + 1)
                store.add_progress(trial.id, "w", [(step, loss)])
                steps_run += 1
                sup.step()
                if trial.id in store.heartbeat("w", [trial.id]):
                    assert store.get_trial(trial.id).prune_requested
                    store.finish(trial.id, "w", state=TrialState.PRUNED, loss=loss)
                    break
            else:
                store.finish(trial.id, "w", state=TrialState.COMPLETED, loss=x)
        trials = store.list_trials(exp.id)
    pruned = [t for t in trials if t.state is TrialState.PRUNED]
    done = [t for t in trials if t.state is TrialState.COMPLETED]
    assert len(trials) == 30 and pruned and done
    assert steps_run < 30 * 27  # work was saved
    best_x = min(t.params["x"] for t in done)
    assert best_x <= min(t.params["x"] for t in pruned)  # the best trial was never pruned


def test_supervisors_sharing_workers_queue_only_what_the_slots_take(tmp_path: Path) -> None:
    """Two adaptive experiments, one worker of 4 slots: the second supervisor counts the
    first one's queued trials as taking those slots; a higher-priority experiment does
    not defer to a lower one."""
    from hyperdock import hp
    from hyperdock.supervisor import open_experiment
    from hyperdock.trial import Target

    def experiment(store: Any, name: str, priority: int) -> Supervisor:
        exp, _ = open_experiment(
            store, name, space=Space.from_obj({"x": hp.uniform("x", 0, 1)}),
            target=Target(command=("true",)), sampler="tpe", seed=1, max_trials=50,
            max_retries=0, priority=priority,
            meta={"objectives": Objectives().to_meta(), "pruner": "none"},
        )  # fmt: skip
        return Supervisor(store, exp, reap_interval=3600)

    with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        store.register_worker("w", host="sim", pid=0, parallelism=4)
        a, b = experiment(store, "a", 0), experiment(store, "b", 0)

        def queued(sup: Supervisor) -> int:
            return store.count_trials(sup.experiment.id)[TrialState.QUEUED]

        a.step()
        b.step()
        assert (queued(a), queued(b)) == (4, 1)  # b: at least one, never starved
        # the worker takes two of a's: b may add nothing while it has one waiting
        assert store.claim("w") is not None and store.claim("w") is not None
        b.step()
        assert (queued(a), queued(b)) == (2, 1)
        # a higher priority goes first whatever the others have queued
        c = experiment(store, "c", 5)
        c.step()
        assert queued(c) == 2  # 4 slots - 2 running


@pytest.mark.parametrize("directions", [["minimize"], ["maximize"], ["maximize", "minimize"]])
def test_importances_find_the_parameter_that_matters_even_where_the_search_narrowed_it(
    directions: list[str],
) -> None:
    """x decides the (first) objective, y is noise. Most trials sit near the best x, as an
    adaptive sampler leaves them: x must still come out as the one that matters, for
    either direction, and for the first of several objectives."""
    import random

    from hyperdock import hp
    from hyperdock.study import importances
    from hyperdock.trial import Trial

    space = Space.from_obj({"x": hp.uniform("x", -2, 4), "y": hp.normal("y", 0, 1)})
    objectives = Objectives.build(directions)
    rng = random.Random(0)
    trials = []
    for i in range(80):
        x = rng.uniform(-2, 4) if i < 10 else 1 + rng.gauss(0, 0.05)  # narrowed after 10
        y = rng.gauss(0, 1)
        loss = (x - 1) ** 2 + 0.01 * abs(y)
        value = -loss if directions[0] == "maximize" else loss
        values = [value, rng.random()] if len(directions) > 1 else None
        result = {"values": values} if values else {}
        trials.append(
            Trial(i, 1, i, {"x": x, "y": y}, TrialState.COMPLETED, loss=value, result=result)
        )
    found = importances(space, objectives, trials)
    assert set(found) == {"x", "y"}
    assert found["x"] > found["y"]
