"""Hyperdock from Python: ask/tell on a Python function, then a run of a command target.

Run it from any folder (it writes ./hyperdock.db and ./results there):

    python examples/python_api.py
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import hyperdock
from hyperdock import hp

SPACE = {"x1": hp.uniform("x1", -5, 10), "x2": hp.uniform("x2", 0, 15)}


def branin(x1: float, x2: float) -> float:
    """A classic test function; its minimum is 0.397887."""
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


# 1. Ask/tell: Hyperdock suggests, this process evaluates. A known good point goes first.
with hyperdock.Experiment.open(space=SPACE, sampler="tpe", seed=1, max_trials=30) as exp:
    exp.enqueue({"x1": math.pi, "x2": 2.275})
    while exp.state.value == "running":
        trial = exp.ask()
        exp.tell(trial, loss=branin(**trial.params))
    best = exp.best
    assert best is not None
    print(f"best of ask/tell: loss {best.loss:.4f} at {best.params}")

# 2. A command target on local workers (what `hyperdock run` does).
target = Path("quadratic.py")
target.write_text(
    textwrap.dedent(
        """
        import json, os
        params = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
        loss = (params["lr"] - 0.1) ** 2 + params["layers"] / 100
        json.dump({"loss": loss}, open(os.environ["HYPERDOCK_LOSS"], "w"))
        """
    )
)
space = {
    "lr": hp.loguniform("lr", math.log(1e-3), math.log(1)),
    "layers": hp.choice("layers", [1, 2, 3]),
}
with hyperdock.run(
    space, command=[sys.executable, str(target)], sampler="random", max_trials=6, workers=2
) as run:
    best = run.best
    assert best is not None
    print(f"best of the command run: loss {best.loss:.4f} at {best.params}")
    print(json.dumps(run.counts()))
