"""The compiled inverse of a space walk (:mod:`hyperdock.inverse`): the optuna values
that give a trial's parameters, or None when they do not fit the space."""

from __future__ import annotations

import random
from typing import Any

import pytest

from hyperdock import hp
from hyperdock.space import Space
from hyperdock.study import OptunaSpace

SPACE = Space.from_obj(
    {
        "lr": hp.loguniform("lr", -9.0, -1.0),
        "units": hp.quniform("units", 16, 256, 16),
        "layers": hp.randint("layers", 1, 6),
        "opt": hp.choice(
            "opt",
            [
                {"name": "sgd", "momentum": hp.uniform("momentum", 0.0, 0.99)},
                {"name": "adam", "betas": [0.9, hp.uniform("beta2", 0.9, 0.9999)]},
                "none",
            ],
        ),
        "act": hp.choice("act", ["relu", "tanh", 3]),
        "flag": hp.choice("flag", [1, True, None, 1.5]),
        "fixed": {"seed": 7, "tags": ["a", "b"]},
    }
)


def _random_params(codec: OptunaSpace, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    picks: dict[str, Any] = {}

    def pick(label: str, dist: Any) -> Any:
        if hasattr(dist, "choices"):
            value: Any = rng.randrange(len(dist.choices))
        elif dist.__class__.__name__ == "IntDistribution":
            value = rng.randint(dist.low, dist.high)
        else:
            value = rng.uniform(dist.low, dist.high)
        picks[label] = value
        return value

    return codec.build(pick), picks


def test_every_walk_inverts_to_its_picks() -> None:
    codec = OptunaSpace(SPACE)
    rng = random.Random(0)
    for _ in range(300):
        params, picks = _random_params(codec, rng)
        internal = codec.internal(params)
        assert internal is not None and internal.keys() == picks.keys()
        for label, value in picks.items():
            assert internal[label] == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(
    ("flag", "index"), [(1, 0), (True, 1), (None, 2), (1.5, 3), (1.0, None), (False, None)]
)
def test_options_match_by_json_value_and_type(flag: Any, index: int | None) -> None:
    codec = OptunaSpace(SPACE)
    params, _ = _random_params(codec, random.Random(1))
    params["flag"] = flag
    internal = codec.internal(params)
    assert (internal or {}).get("flag") == index
    assert (internal is None) == (index is None)


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.pop("units"),
        lambda p: p.update(extra=1),
        lambda p: p.update(act="gelu"),
        lambda p: p.update(act=["relu"]),
        lambda p: p.update(lr="0.1"),
        lambda p: p.update(layers=True),
        lambda p: p["fixed"].update(seed=8),
        lambda p: p["fixed"].update(tags=["a"]),
        lambda p: p.update(opt={"name": "rmsprop"}),
    ],
)
def test_parameters_that_do_not_fit_give_none(change: Any) -> None:
    codec = OptunaSpace(SPACE)
    params, _ = _random_params(codec, random.Random(2))
    assert codec.internal(params) is not None
    change(params)
    assert codec.internal(params) is None


def test_values_outside_a_range_are_clipped_and_quantised_rounded() -> None:
    codec = OptunaSpace(SPACE)
    params, _ = _random_params(codec, random.Random(3))
    params.update(units=1000.0, layers=0)
    internal = codec.internal(params)
    assert internal is not None
    assert internal["units"] == 16 and isinstance(internal["units"], int)  # 256 / 16
    assert internal["layers"] == 1
