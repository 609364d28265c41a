"""A small discrete space: every sampler evaluates each point once, then the search ends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, write

#: The original Hyperdock's example config module (seed README): 3 points.
EXAMPLE = """
from hyperopt import hp
SPACE = {
    'max_epochs': 50,
    'dropout': hp.quniform('dropout', 0, 0.5, 0.25),
}
"""

#: Conditional and integer parameters: svm (2 kernels) + tree (depth 1..3) = 5 points.
CONDITIONAL = """
from hyperdock import hp
SPACE = {"model": hp.choice("model", [
    {"kind": "svm", "kernel": hp.choice("kernel", ["rbf", "linear"])},
    {"kind": "tree", "depth": hp.uniformint("depth", 1, 3)},
])}
"""

TARGET = """
import json, os
p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
loss = abs(p.get("dropout", 0) - 0.25) + len(json.dumps(p)) / 1000
json.dump({"loss": loss}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


def _params(cwd: Path, name: str) -> list[Any]:
    out = hd("trials", name, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return [t["params"] for t in json.loads(out.stdout)]


def test_tpe_on_the_original_3_point_example_runs_3_trials(tmp_path: Path) -> None:
    write(tmp_path / "example.py", EXAMPLE)
    write(tmp_path / "t.py", TARGET)
    orders = []
    for name in ("a", "b"):
        out = hd(
            "run", "example.py", "--command", f"{PY} t.py", "--sampler", "tpe", "--seed", "7",
            "--name", name, "--loglevel", "info", "-q", cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"Experiment {name}: done (3 completed)")
        assert f"experiment {name}: all 3 points of the space evaluated" in out.stderr
        assert f"Created experiment {name} (3 trials," in out.stderr  # not 50
        status = json.loads(hd("status", "--json", cwd=tmp_path).stdout)
        assert {d["experiment"]: d["budget"] for d in status}[name] == 3
        params = _params(tmp_path, name)
        assert sorted(p["dropout"] for p in params) == [0.0, 0.25, 0.5]
        orders.append(params)
    assert orders[0] == orders[1]  # the seed decides which point replaces a duplicate


@pytest.mark.parametrize("sampler", ["tpe", "gp", "random"])
def test_every_point_of_a_conditional_space_once(tmp_path: Path, sampler: str) -> None:
    write(tmp_path / "space.py", CONDITIONAL)
    write(tmp_path / "t.py", TARGET)
    out = hd(
        "run", "space.py", "--command", f"{PY} t.py", "--sampler", sampler, "--workers", "2",
        "--name", "c", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["state"] == "done"
    assert summary["trials"]["completed"] == 5
    points = sorted(json.dumps(p, sort_keys=True) for p in _params(tmp_path, "c"))
    assert len(set(points)) == len(points) == 5


def test_tpe_on_a_finite_space_of_over_10000_points_repeats_no_point() -> None:
    """Large finite spaces are never listed (points are decoded by index), but still get
    a distinct point per trial."""
    import hyperdock
    from hyperdock import hp

    space = {"a": hp.quniform("a", 0, 100, 1), "b": hp.choice("b", list(range(100)))}
    with hyperdock.Experiment.open(
        "big", store="sqlite://:memory:", space=space, sampler="tpe", seed=1, max_trials=60
    ) as exp:
        for _ in range(60):
            t = exp.ask()
            exp.tell(t, loss=abs(t.params["a"] - 50) + abs(t.params["b"] - 49))
        points = [json.dumps(t.params, sort_keys=True) for t in exp.trials()]
    assert len(points) == 60 and len(set(points)) == 60


def test_a_large_finite_space_ends_when_every_point_was_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same path as a space too large to list, on a space small enough to exhaust."""
    import hyperdock
    from hyperdock import finite
    from hyperdock.space import Space

    monkeypatch.setattr(finite, "LISTED_POINTS", 2)
    space = Space.from_obj(__import__("hyperdock").hp.choice("m", [
        {"kind": "svm", "kernel": hyperdock.hp.choice("kernel", ["rbf", "linear"])},
        {"kind": "tree", "depth": hyperdock.hp.uniformint("depth", 1, 3)},
    ]))  # fmt: skip
    assert finite.FinitePoints.of(space).size == 5  # type: ignore[union-attr]
    with hyperdock.Experiment.open(
        "small", store="sqlite://:memory:", space=space, sampler="tpe", seed=2, max_trials=50
    ) as exp:
        asked = []
        while exp.state.value == "running":
            try:
                t = exp.ask()
            except hyperdock.HyperdockError:
                break
            asked.append(json.dumps(t.params, sort_keys=True))
            exp.tell(t, loss=float(len(asked)))
        assert len(asked) == 5 and len(set(asked)) == 5
        assert exp.counts()["completed"] == 5
