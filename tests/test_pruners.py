"""Early-stopping rules: ``--pruner`` specs, defaults scaled to the curve length, and
the same decisions from a restarted supervisor."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, write

from hyperdock import hp
from hyperdock.errors import ConfigError
from hyperdock.objectives import Objectives
from hyperdock.pruners import AshaRule, HyperbandRule, MedianRule, PrunerSpec, Steps, make_pruner
from hyperdock.space import Space
from hyperdock.storage import Store, open_store
from hyperdock.study import StudyMirror
from hyperdock.supervisor import Supervisor, open_experiment
from hyperdock.trial import Experiment, Target, Trial, TrialState


# -- specs --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "normalised", "settings"),
    [
        ("median", "median", {"warmup": Steps(20, True), "startup": 4}),
        ("none", "none", {}),
        (None, "none", {}),
        (
            " Median : startup=5 , warmup=10 ",
            "median:startup=5,warmup=10",
            {"warmup": Steps(10, False), "startup": 5},
        ),
        (
            "asha:min_resource=5,reduction_factor=2",
            "asha:min_resource=5,reduction_factor=2",
            {"min_resource": Steps(5, False), "reduction_factor": 2},
        ),
        (
            "asha:min_resource=12.5%",
            "asha:min_resource=12.5%",
            {"min_resource": Steps(12.5, True), "reduction_factor": 3},
        ),
        (
            "hyperband:max_resource=auto,min_resource=3",
            "hyperband:max_resource=auto,min_resource=3",
            {"min_resource": Steps(3, False), "max_resource": None, "reduction_factor": 3},
        ),
        (
            "hyperband:max_resource=81,reduction_factor=4",
            "hyperband:max_resource=81,reduction_factor=4",
            {
                "min_resource": Steps(10, True),
                "max_resource": Steps(81, False),
                "reduction_factor": 4,
            },
        ),
    ],
)
def test_specs_parse_with_defaults_filled_in(
    text: str | None, normalised: str, settings: dict[str, Any]
) -> None:
    spec = PrunerSpec.parse(text)
    assert str(spec) == normalised
    assert spec.settings() == settings
    assert PrunerSpec.parse(str(spec)) == spec  # what is stored reads back the same


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("bogus", "choose one of none, median, asha, hyperband"),
        ("asha:warmup=3", "'warmup'; asha takes: min_resource, reduction_factor"),
        ("median:min_resource=3", "median takes: warmup, startup"),
        ("none:warmup=3", "none takes no settings"),
        ("asha:min_resource", "give min_resource=VALUE"),
        ("asha:min_resource=", "give min_resource=VALUE"),
        ("asha:min_resource=0", "min_resource=0: must be at least 1"),
        ("asha:min_resource=-1", "whole number of steps or a percentage"),
        ("asha:min_resource=ten", "whole number of steps or a percentage"),
        ("asha:min_resource=0%", "above 0%"),
        ("median:warmup=120%", "at most 100%"),
        ("asha:reduction_factor=1", "reduction_factor=1: must be at least 2"),
        ("asha:reduction_factor=2.5", "must be a whole number"),
        ("median:startup=2,startup=3", "startup is given twice"),
        ("hyperband:min_resource=9,max_resource=3", "max_resource (3) is below min_resource"),
    ],
)
def test_bad_specs_say_what_is_allowed(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match="--pruner") as info:
        PrunerSpec.parse(text)
    assert says in str(info.value)


def test_make_pruner_builds_the_named_rule() -> None:
    assert make_pruner("none") is None and make_pruner(None) is None
    assert isinstance(make_pruner("median:warmup=3"), MedianRule)
    assert isinstance(make_pruner("asha"), AshaRule)
    assert isinstance(make_pruner("hyperband"), HyperbandRule)


# -- defaults scale with the curve length -------------------------------------------------
SPACE = Space.from_obj({"x": hp.uniform("x", 0, 1)})


class Curves:
    """An in-memory study of trials with curves ``loss(step) = level + 1 / step``."""

    def __init__(self) -> None:
        self.mirror = StudyMirror(SPACE, Objectives())
        self.mirror.track_curves()
        self.trials: list[Trial] = []
        self.progress: dict[int, list[tuple[int, float]]] = {}

    def add(self, level: float, steps: int, state: TrialState) -> Trial:
        n = len(self.trials)
        points = [(s, level + 1.0 / s) for s in range(1, steps + 1)]
        loss = points[-1][1] if state is TrialState.COMPLETED else None
        trial = Trial(n + 1, 1, n, {"x": 0.5}, state, loss=loss)
        self.trials.append(trial)
        self.progress[trial.id] = points
        return trial

    def pruned(self, spec: str) -> set[int]:
        """Store ids of the running trials a fresh pruner from ``spec`` stops now."""
        self.mirror.sync(self.trials, self.progress)
        pruner = make_pruner(spec)
        assert pruner is not None
        return set(self.mirror.prune(pruner))


DEFAULTS = ["median", "asha", "hyperband"]


@pytest.mark.parametrize("spec", DEFAULTS)
def test_defaults_prune_nothing_before_a_trial_has_completed(spec: str) -> None:
    c = Curves()
    for level in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        c.add(level, 39, TrialState.RUNNING)
    c.add(9.0, 39, TrialState.RUNNING)  # hopeless, but nothing says how long curves are
    assert c.pruned(spec) == set()


def test_absolute_settings_do_not_wait_for_a_completed_trial() -> None:
    c = Curves()
    best = c.add(0.1, 10, TrialState.RUNNING)
    for level in (0.2, 0.3):
        c.add(level, 10, TrialState.RUNNING)
    bad = c.add(9.0, 10, TrialState.RUNNING)
    pruned = c.pruned("asha:min_resource=4")  # the worse half at the rung at step 8
    assert bad.id in pruned and best.id not in pruned


@pytest.mark.parametrize("spec", DEFAULTS)
def test_defaults_prune_a_clearly_bad_curve_once_one_has_completed(spec: str) -> None:
    c = Curves()
    for i in range(20):
        c.add(0.1 + 0.01 * i, 40, TrialState.COMPLETED)
    good = c.add(0.0, 39, TrialState.RUNNING)
    bad = [c.add(9.0 + i, 39, TrialState.RUNNING) for i in range(5)]
    assert c.pruned(spec) == {t.id for t in bad}
    assert good.id not in c.pruned(spec)


@pytest.mark.parametrize("spec", [*DEFAULTS, "hyperband:max_resource=30"])
def test_a_trial_that_reached_the_curve_length_is_never_pruned(spec: str) -> None:
    """Its work is done (it is writing its loss): pruning it now would throw that away."""
    length = 30 if spec.endswith("=30") else 40

    def pruned(steps: int) -> bool:
        c = Curves()
        for i in range(20):
            c.add(0.1 + 0.01 * i, 40, TrialState.COMPLETED)
        bad = [c.add(9.0 + i, steps, TrialState.RUNNING) for i in range(5)]
        return bool(c.pruned(spec) & {t.id for t in bad})

    assert pruned(length - 1)  # just before the end it is judged as before
    assert not pruned(length)
    assert not pruned(length + 5)


@pytest.mark.parametrize(
    ("spec", "length", "early", "late"),
    [
        # 10% of the curve: the first rung is at step 4 of 40, at step 20 of 200.
        ("asha", 40, 5, 5),
        ("asha", 200, 15, 25),
        # 20% of the curve: the warm-up ends at step 8 of 40, at step 40 of 200.
        ("median", 40, 10, 10),
        ("median", 200, 30, 45),
    ],
)
def test_relative_defaults_scale_with_the_longest_completed_curve(
    spec: str, length: int, early: int, late: int
) -> None:
    def bad_at(step: int) -> bool:
        c = Curves()
        for i in range(6):
            c.add(0.1 + 0.01 * i, length, TrialState.COMPLETED)
        bad = c.add(9.0, step, TrialState.RUNNING)
        return bad.id in c.pruned(spec)

    assert bad_at(late)
    assert bad_at(early) == (early == late)  # early enough only for long curves


def test_median_waits_for_startup_trials() -> None:
    c = Curves()
    for i in range(3):
        c.add(0.1 + 0.01 * i, 40, TrialState.COMPLETED)
    bad = c.add(9.0, 30, TrialState.RUNNING)
    assert c.pruned("median:startup=4") == set()
    assert c.pruned("median:startup=3") == {bad.id}


def test_maximised_losses_prune_the_low_curve() -> None:
    mirror = StudyMirror(SPACE, Objectives.build(["maximize"]))
    mirror.track_curves()
    trials, progress = [], {}
    for n, level in enumerate([1.0, 1.1, 1.2, 1.3, -5.0]):
        state = TrialState.COMPLETED if n < 4 else TrialState.RUNNING
        trials.append(Trial(n + 1, 1, n, {"x": 0.5}, state, loss=level if n < 4 else None))
        progress[n + 1] = [(s, level - 1.0 / s) for s in range(1, 21 if n < 4 else 19)]
    mirror.sync(trials, progress)
    pruner = make_pruner("asha")
    assert pruner is not None
    assert mirror.prune(pruner) == [5]


# -- restarts -----------------------------------------------------------------------------
STEPS = 20


def _open(store: Store, spec: str) -> Experiment:
    exp, _ = open_experiment(
        store, "p", space=SPACE, target=Target(command=("true",)), sampler="random", seed=3,
        max_trials=200, max_retries=0,
        meta={"objectives": Objectives().to_meta(), "pruner": spec},
    )  # fmt: skip
    return exp


def _run(store: Store, sup: Supervisor, exp: Experiment, n: int) -> None:
    """``n`` trials one after the other, the supervisor stepping after every step."""
    for _ in range(n):
        sup.step()
        trial = store.claim("w1", experiment_id=exp.id)
        assert trial is not None
        x = trial.params["x"]
        for step in range(1, STEPS + 1):
            store.add_progress(trial.id, "w1", [(step, x + 1.0 / step)])
            sup.step()
            if trial.id in store.heartbeat("w1", [trial.id]):
                store.finish(trial.id, "w1", state=TrialState.PRUNED, loss=x + 1.0 / step)
                break
        else:
            store.finish(trial.id, "w1", state=TrialState.COMPLETED, loss=x)


def _start(
    store: Store, exp: Experiment, worker: str, loss: Callable[[int], float], upto: int
) -> int:
    trial = store.claim(worker, experiment_id=exp.id)
    assert trial is not None
    store.add_progress(trial.id, worker, [(s, loss(s)) for s in range(1, upto + 1)])
    return trial.id


def _decisions(sup: Supervisor) -> set[int]:
    sup.sync_mirror()
    assert sup.mirror is not None and sup.pruner is not None
    return set(sup.mirror.prune(sup.pruner))


@pytest.mark.parametrize("spec", ["asha", "hyperband", "median"])
def test_a_restarted_supervisor_prunes_like_the_one_that_saw_everything(
    tmp_path: Path, spec: str
) -> None:
    """The competition at each rung comes from the stored curves, not from records the
    old supervisor kept in memory (optuna's successive halving lost them on restart and
    then promoted every running trial)."""
    with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        exp = _open(store, spec)
        for w in ("w1", "w2", "w3"):
            store.register_worker(w, host="sim", pid=0, parallelism=1)
        first = Supervisor(store, exp, reap_interval=3600)
        _run(store, first, exp, 30)
        # While nobody checks, a hopeless and a promising trial report most of a curve.
        bad = _start(store, exp, "w2", lambda s: 5.0 + 1.0 / s, STEPS - 1)
        good = _start(store, exp, "w3", lambda s: -1.0 + 1.0 / s, STEPS - 1)
        assert _decisions(first) == {bad}
        restarted = Supervisor(store, store.get_experiment(exp.id), reap_interval=3600)
        restarted.step()
        assert store.get_trial(bad).prune_requested
        assert not store.get_trial(good).prune_requested


def test_the_spec_is_stored_normalised_and_used_by_the_supervisor(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        exp = _open(store, " asha : reduction_factor=3,min_resource=5% ")
        assert exp.meta["pruner"] == "asha:min_resource=5%,reduction_factor=3"
        pruner = Supervisor(store, exp).pruner
        assert isinstance(pruner, AshaRule)
        assert pruner.halving.min_resource == Steps(5, True)
        assert pruner.halving.reduction_factor == 3


LOSS_TARGET = """
import json, os
json.dump({"loss": 1.0}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


def test_the_command_line_refuses_a_bad_spec_in_one_line_and_stores_a_good_one(
    tmp_path: Path,
) -> None:
    write(tmp_path / "space.json", json.dumps({"x": [1.0]}))
    store = "sqlite:///./hyperdock.db"
    out = hd(
        "run", "space.json", "--command", "true", "--pruner", "asha:warmup=3",
        "--store", store, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "min_resource, reduction_factor" in lines[0], out.stderr
    write(tmp_path / "t.py", LOSS_TARGET)
    out = hd(
        "run", "space.json", "--command", f"{PY} t.py", "--pruner", "median:warmup=10%",
        "--name", "ok", "--store", store, "-q", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    with open_store(f"sqlite:///{tmp_path}/hyperdock.db") as st:
        assert st.get_experiment("ok").meta["pruner"] == "median:warmup=10%"


def test_the_mirror_knows_up_to_which_store_id_everything_is_settled() -> None:
    mirror = StudyMirror(SPACE, Objectives())
    assert mirror.settled_below() is None  # nothing mirrored: read everything
    done, running, later = (
        Trial(1, 1, 0, {"x": 0.1}, TrialState.COMPLETED, loss=0.1),
        Trial(2, 1, 1, {"x": 0.2}, TrialState.RUNNING),
        Trial(3, 1, 2, {"x": 0.3}, TrialState.PRUNED),
    )
    mirror.sync([done, running, later])
    assert mirror.settled_below() == 1  # trial 2 may still change
    mirror.sync([Trial(2, 1, 1, {"x": 0.2}, TrialState.COMPLETED, loss=0.2)])
    assert mirror.settled_below() == 3
