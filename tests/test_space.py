"""Behaviour of the search-space model (hyperdock.space) and its hp constructors."""

from __future__ import annotations

import importlib
import itertools
import json
import math
import random
import re
import statistics
from typing import Any

import pytest

from hyperdock import hp
from hyperdock.errors import ConfigError, SpaceError
from hyperdock.space import UNION_LABEL, Dist, GridAxis, Param, Space, Union


def draws(space: Any, n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    s = Space.from_obj(space)
    return [s.sample(rng) for _ in range(n)]


def values(node: Dist, n: int = 500, seed: int = 0) -> list[Any]:
    return [p["x"] for p in draws({"x": node}, n, seed)]


# -- every constructor: range, type, quantisation ------------------------------------


def test_uniform() -> None:
    xs = values(hp.uniform("x", -2, 3))
    assert all(type(x) is float and -2 <= x <= 3 for x in xs)
    assert min(xs) < -1.5 and max(xs) > 2.5


def test_quniform_is_quantised_float() -> None:
    xs = values(hp.quniform("x", 0, 1, 0.25))
    assert all(type(x) is float for x in xs)
    assert set(xs) == {0.0, 0.25, 0.5, 0.75, 1.0}


def test_loguniform_is_log_distributed() -> None:
    xs = values(hp.loguniform("x", -9, -2), n=2000)
    assert all(type(x) is float and math.exp(-9) <= x <= math.exp(-2) for x in xs)
    median = statistics.median(xs)
    assert math.exp(-5.5 - 0.3) < median < math.exp(-5.5 + 0.3)


def test_qloguniform() -> None:
    xs = values(hp.qloguniform("x", 0, math.log(100), 5))
    assert all(type(x) is float and x % 5 == 0 and 0 <= x <= 100 for x in xs)


def test_normal_and_lognormal() -> None:
    xs = values(hp.normal("x", 10, 2), n=2000)
    assert all(type(x) is float for x in xs)
    assert abs(statistics.mean(xs) - 10) < 0.3 and abs(statistics.stdev(xs) - 2) < 0.3
    ys = values(hp.lognormal("x", 1, 0.5), n=2000)
    assert all(y > 0 for y in ys)
    assert abs(statistics.median(ys) - math.e) < 0.2


def test_qnormal_and_qlognormal() -> None:
    xs = values(hp.qnormal("x", 0, 5, 2))
    assert all(type(x) is float and x % 2 == 0 for x in xs)
    ys = values(hp.qlognormal("x", 2, 1, 0.5))
    assert all(type(y) is float and y >= 0 and (y * 2) == int(y * 2) for y in ys)


def test_randint_upper_and_low_high() -> None:
    xs = values(hp.randint("x", 4))
    assert all(type(x) is int for x in xs) and set(xs) == {0, 1, 2, 3}
    ys = values(hp.randint("x", -2, 2))
    assert set(ys) == {-2, -1, 0, 1}


def test_uniformint() -> None:
    xs = values(hp.uniformint("x", 1, 5))
    assert all(type(x) is int for x in xs) and set(xs) == {1, 2, 3, 4, 5}
    ys = values(hp.uniformint("x", 0, 10, q=5))
    assert set(ys) == {0, 5, 10}


def test_choice_and_constants_pass_through() -> None:
    points = draws({"opt": hp.choice("opt", ["sgd", "adam", None]), "epochs": 50, "t": (1, 2)})
    assert {p["opt"] for p in points} == {"sgd", "adam", None}
    assert all(p["epochs"] == 50 and p["t"] == [1, 2] for p in points)


def test_nested_choice_gives_conditional_params() -> None:
    space = {
        "model": hp.choice(
            "model",
            [
                {"kind": "svm", "C": hp.loguniform("C", -3, 3)},
                {
                    "kind": "tree",
                    "depth": hp.randint("depth", 1, 10),
                    "split": hp.choice("split", ["gini", {"t": hp.uniform("t", 0, 1)}]),
                },
            ],
        )
    }
    points = [p["model"] for p in draws(space, 300)]
    svm = [p for p in points if p["kind"] == "svm"]
    tree = [p for p in points if p["kind"] == "tree"]
    assert svm and tree
    assert all(set(p) == {"kind", "C"} for p in svm)
    assert all(set(p) == {"kind", "depth", "split"} for p in tree)
    assert {type(p["split"]) for p in tree} == {str, dict}
    params = {p.label: p for p in Space.from_obj(space).parameters()}
    assert params["C"].condition == (("model", 0),)
    assert params["t"].condition == (("model", 1), ("split", 1))
    assert params["model"] == Param("model", "choice", {"n_options": 2}, ())


def test_pchoice_respects_probabilities() -> None:
    points = draws({"x": hp.pchoice("x", [(0.1, "a"), (0.6, "b"), (0.3, "c")])}, n=5000)
    counts = {k: sum(p["x"] == k for p in points) / 5000 for k in "abc"}
    assert counts == pytest.approx({"a": 0.1, "b": 0.6, "c": 0.3}, abs=0.03)


def test_top_level_choice_of_dicts_is_allowed() -> None:
    points = draws(hp.choice("m", [{"a": 1}, {"b": hp.uniform("b", 0, 1)}]), 50)
    assert {tuple(p) for p in points} == {("a",), ("b",)}


# -- reproducibility -----------------------------------------------------------------

SPACE: dict[str, Any] = {
    "lr": hp.loguniform("lr", -9, -2),
    "drop": hp.quniform("drop", 0, 0.5, 0.05),
    "layers": hp.randint("layers", 1, 100),
    "act": hp.choice("act", ["relu", "tanh", {"leaky": hp.uniform("slope", 0, 0.3)}]),
    "mom": hp.normal("mom", 0.9, 0.05),
}


def test_seeded_sampling_is_reproducible_and_varies() -> None:
    assert draws(SPACE, 20, seed=7) == draws(SPACE, 20, seed=7)
    assert draws(SPACE, 20, seed=7) != draws(SPACE, 20, seed=8)
    points = draws(SPACE, 20)
    assert len({p["lr"] for p in points}) == 20
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 20


def test_samples_are_fresh_json() -> None:
    space = Space.from_obj({"fixed": {"list": [1, 2]}, "c": hp.choice("c", [[1, 2], [3]])})
    rng = random.Random(0)
    first = space.sample(rng)
    first["fixed"]["list"].append(99)
    first["c"].append(99)
    again = space.sample(random.Random(0))
    assert again["fixed"] == {"list": [1, 2]} and again["c"] in ([1, 2], [3])
    json.dumps(again)


def test_numpy_constants_become_json() -> None:
    np = importlib.import_module("numpy")
    point = Space.from_obj({"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(2)}).sample(
        random.Random(0)
    )
    assert point == {"a": 3, "b": 0.5, "c": [0, 1]}
    assert type(point["a"]) is int and type(point["b"]) is float


# -- grid ------------------------------------------------------------------------------


def test_grid_enumerates_everything() -> None:
    space = Space.from_obj(
        {
            "opt": hp.choice(
                "opt", ["sgd", {"name": "adam", "b": hp.quniform("b", 0.8, 1.0, 0.1)}]
            ),
            "n": hp.randint("n", 2, 4),
            "axis": GridAxis("axis", ("x", "y")),
            "k": hp.uniformint("k", 1, 3),
            "const": 1,
        }
    )
    points = list(space.grid())
    assert space.grid_size() == len(points) == (1 + 3) * 2 * 2 * 3
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)
    assert {p["opt"]["b"] for p in points if isinstance(p["opt"], dict)} == {0.8, 0.9, 1.0}
    assert {p["n"] for p in points} == {2, 3} and {p["k"] for p in points} == {1, 2, 3}
    assert all(type(p["k"]) is int and p["const"] == 1 for p in points)


def test_grid_values_match_sampled_values() -> None:
    node = hp.quniform("x", 0, 1, 0.1)
    grid = {p["x"] for p in Space.from_obj({"x": node}).grid()}
    assert set(values(node, 2000)) <= grid
    assert len(grid) == 11
    qlog = hp.qloguniform("x", 0, math.log(20), 4)
    assert set(values(qlog, 2000)) <= {p["x"] for p in Space.from_obj({"x": qlog}).grid()}


def test_grid_order_first_key_slowest() -> None:
    space = Space.from_obj({"a": GridAxis("a", (1, 2)), "b": GridAxis("b", ("x", "y"))})
    assert list(space.grid()) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]


def test_grid_size_is_arithmetic() -> None:
    space = Space.from_obj({f"p{i}": hp.randint(f"p{i}", 1000) for i in range(10)})
    assert space.grid_size() == 1000**10


def test_empty_axis_is_refused_with_its_name() -> None:
    with pytest.raises(SpaceError, match=r"parameter 'a' has no values \(an empty grid axis\)"):
        Space.from_obj({"a": GridAxis("a", ()), "b": 1})


@pytest.mark.parametrize(
    ("node", "word"),
    [
        (hp.uniform("lr", 0, 1), "continuous (uniform)"),
        (hp.loguniform("lr", 0, 1), "continuous (loguniform)"),
        (hp.normal("lr", 0, 1), "continuous (normal)"),
        (hp.qnormal("lr", 0, 1, 1), "unbounded (qnormal)"),
        (hp.lognormal("lr", 0, 1), "continuous (lognormal)"),
        (hp.qlognormal("lr", 0, 1, 1), "unbounded (qlognormal)"),
    ],
)
def test_grid_of_continuous_parameter_names_it(node: Dist, word: str) -> None:
    space = Space.from_obj({"a": hp.choice("a", [1, {"lr": node}])})
    assert space.grid_size() is None
    with pytest.raises(SpaceError, match=rf"parameter 'lr' is {re.escape(word)}.*--sampler random"):
        space.grid()


def test_union_concatenates_and_weights_by_size() -> None:
    space = Space.from_obj(
        Union(({"a": GridAxis("a", (1, 2, 3)), "b": 0}, {"a": GridAxis("a", (10,))}))
    )
    assert list(space.grid()) == [{"a": 1, "b": 0}, {"a": 2, "b": 0}, {"a": 3, "b": 0}, {"a": 10}]
    assert space.grid_size() == 4
    points = [space.sample(random.Random(i)) for i in range(2000)]
    assert sum(p["a"] == 10 for p in points) / 2000 == pytest.approx(0.25, abs=0.04)
    assert space.labels() == ["a"]
    assert [p.label for p in space.parameters()] == [UNION_LABEL, "a", "a"]
    assert space.parameters()[2].condition == ((UNION_LABEL, 1),)


def test_grid_drops_identical_points() -> None:
    space = Space.from_obj(Union(({"a": GridAxis("a", (1, 2))}, {"a": GridAxis("a", (2, 3))})))
    assert space.grid_size() == 4
    assert list(space.grid()) == [{"a": 1}, {"a": 2}, {"a": 3}]


# -- JSON round trip -------------------------------------------------------------------


def test_json_round_trip_gives_identical_samples() -> None:
    space = Space.from_obj(
        {
            **SPACE,
            "all": [
                hp.qloguniform("ql", 0, 3, 1),
                hp.qnormal("qn", 0, 1, 0.5),
                hp.lognormal("ln", 0, 1),
                hp.qlognormal("qln", 0, 1, 1),
                hp.uniformint("ui", 0, 10, 2),
            ],
            "p": hp.pchoice("p", [(0.5, {"$hp": "not a node"}), (0.5, GridAxis("g", (1, [2])))]),
            "$hp": "literal key",
        }
    )
    data = json.loads(json.dumps(space.to_json()))
    again = Space.from_json(data)
    assert again == space
    assert again.to_json() == space.to_json()
    rng1, rng2 = random.Random(3), random.Random(3)
    assert [space.sample(rng1) for _ in range(50)] == [again.sample(rng2) for _ in range(50)]
    assert any(p["p"] == {"$hp": "not a node"} for p in draws(again, 30))


def test_union_round_trip() -> None:
    space = Space.from_obj(Union(({"a": GridAxis("a", (1,))}, {"b": hp.randint("b", 3)})))
    assert Space.from_json(json.loads(json.dumps(space.to_json()))) == space


def test_from_json_rejects_garbage() -> None:
    with pytest.raises(SpaceError, match="unknown node type 'bogus'"):
        Space.from_json({"x": {"$hp": "bogus", "label": "x"}})
    with pytest.raises(SpaceError, match="uniform"):
        Space.from_json({"x": {"$hp": "uniform", "label": "x", "low": 0}})


# -- validation ------------------------------------------------------------------------


def test_duplicate_label_is_named() -> None:
    with pytest.raises(SpaceError, match="parameter 'lr' is defined twice"):
        Space.from_obj({"a": hp.uniform("lr", 0, 1), "b": {"c": hp.choice("lr", [1, 2])}})
    with pytest.raises(SpaceError, match="'x' is defined twice"):
        Space.from_obj(
            {"m": hp.choice("m", [{"x": hp.uniform("x", 0, 1)}, {"x": hp.uniform("x", 0, 2)}])}
        )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: hp.uniform("lr", 1, 0),
            "parameter 'lr': uniform needs low < high, got low=1, high=0",
        ),
        (lambda: hp.loguniform("lr", 1, 1), "parameter 'lr': loguniform needs low < high"),
        (lambda: hp.quniform("q", 0, 1, 0), "parameter 'q': quniform needs q > 0, got q=0"),
        (lambda: hp.normal("n", 0, -1), "parameter 'n': normal needs sigma > 0"),
        (lambda: hp.uniform("u", 0, math.inf), "parameter 'u': uniform high must be a finite"),
        (lambda: hp.uniform("u", "0", 1), "parameter 'u': uniform low must be a finite number"),
        (lambda: hp.uniform("u", True, 2), "parameter 'u': uniform low must be a finite number"),
        (lambda: hp.randint("r", 2.5), "parameter 'r': randint high must be a whole number"),
        (lambda: hp.randint("r", 3, 3), "parameter 'r': randint needs low < high"),
        (lambda: hp.randint("r", 1, 2, 3), "parameter 'r': randint takes"),
        (lambda: hp.uniformint("k", 0, 5, q=0.5), "parameter 'k': uniformint q must be a whole"),
        (
            lambda: hp.loguniform("lr", 1e-5, 1e5),
            "parameter 'lr': loguniform takes low and high in log",
        ),
        (lambda: hp.choice("c", []), "parameter 'c': choice needs at least one option"),
        (
            lambda: hp.pchoice("p", [(0.5, 1), (0.4, 2)]),
            "parameter 'p': pchoice probabilities must sum to 1",
        ),
        (
            lambda: hp.pchoice("p", [(1.5, 1), (-0.5, 2)]),
            "parameter 'p': pchoice probabilities must be",
        ),
        (lambda: hp.pchoice("p", [1, 2]), "parameter 'p': pchoice takes a list of"),
        (lambda: hp.uniform("", 0, 1), "label must be a non-empty string"),
        (lambda: GridAxis("g", (object(),)), "parameter 'g': grid values must be JSON"),
    ],
)
def test_invalid_nodes_are_named(make: Any, message: str) -> None:
    with pytest.raises(SpaceError) as info:
        make()
    assert message in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_pchoice_tolerance() -> None:
    hp.pchoice("p", [(0.1, 1), (0.2, 2), (0.7000001, 3)])
    hp.pchoice("p", [(1 / 3, 1), (1 / 3, 2), (1 / 3, 3)])


def test_space_level_validation() -> None:
    with pytest.raises(SpaceError, match="JSON object"):
        Space.from_obj([hp.uniform("x", 0, 1)])
    with pytest.raises(SpaceError, match=r"JSON object.*'x'"):
        Space.from_obj(hp.uniform("x", 0, 1))
    with pytest.raises(SpaceError, match=r"space\['f'\].*not a JSON value"):
        Space.from_obj({"f": print})
    with pytest.raises(SpaceError, match="only allowed at the top"):
        Space.from_obj({"u": Union(({"a": 1},))})


# -- introspection ---------------------------------------------------------------------


def test_labels_parameters_describe() -> None:
    space = Space.from_obj(SPACE)
    assert space.labels() == ["lr", "drop", "layers", "act", "slope", "mom"]
    params = space.parameters()
    assert params[0] == Param("lr", "loguniform", {"low": -9, "high": -2})
    assert params[4].condition == (("act", 2),)
    text = space.describe()
    assert "lr: loguniform(-9, -2)" in text
    assert len(text.splitlines()) == 6
    assert "slope: uniform(0, 0.3)" in text and "act=2" in text
    pspace = Space.from_obj({"p": hp.pchoice("p", [(0.25, 1), (0.75, 2)])})
    assert pspace.parameters()[0].args == {"n_options": 2, "p": [0.25, 0.75]}


# -- parameters for people ----------------------------------------------------------------
def test_views_show_real_ranges_log_scales_and_conditions_by_option_name() -> None:
    space = Space.from_obj(
        {
            "lr": hp.loguniform("lr", -4.6, 0),  # log(0.01) written as -4.6
            "epochs": 50,
            "opt": hp.choice(
                "opt",
                [{"name": "sgd", "mom": hp.uniform("mom", 0, 0.99)}, {"name": "adam"}],
            ),
            "act": hp.choice("act", ["relu", "tanh"]),
            "n": hp.randint("n", 1, 5),
            "w": hp.qlognormal("w", 0, 1, 1),
        }
    )
    views = {v.label: v for v in space.views()}
    assert views["lr"].text == "log-uniform 0.01\u20131"
    assert views["lr"].log and views["w"].log
    assert not views["mom"].log and not views["n"].log
    assert views["mom"].condition == "opt = sgd"
    assert views["mom"].paths == ("opt.mom",)
    assert views["n"].text == "integer 1\u20134"  # randint's high is excluded
    assert views["act"].text == "one of relu, tanh"
    assert "mom: uniform 0\u20130.99  (if opt = sgd)" in space.explain()
    assert "loguniform(" not in space.explain()


def test_constants_are_the_paths_every_trial_shares() -> None:
    space = Space.from_obj(
        {
            "epochs": 50,
            "one": GridAxis("one", (3,)),
            "x": hp.uniform("x", 0, 1),
            "opt": hp.choice("opt", [{"name": "sgd", "seed": 1}, {"name": "adam", "seed": 1}]),
            "alt": hp.choice("alt", [{"name": "a", "k": 2}, "b"]),  # alt.k: only sometimes
        }
    )
    assert space.constants() == {"epochs": 50, "one": 3, "opt.seed": 1}


# -- hostile spaces: huge, recursive, deep, NaN ---------------------------------------


@pytest.mark.timeout(60)
def test_a_huge_grid_is_decoded_by_index_not_enumerated() -> None:
    from hyperdock.samplers.grid import GridSampler

    # 10**30 points, and a nested dict of 10**10 (each half listed would not fit).
    axes = {f"p{i}": list(range(10)) for i in range(30)}
    space = Space.from_obj({"nested": {"a": hp.randint("a", 10**5), "b": hp.randint("b", 10**5)}})
    assert space.grid_size() == 10**10
    first = [p["nested"] for p in itertools.islice(space.grid(), 3)]
    assert first == [{"a": 0, "b": 0}, {"a": 0, "b": 1}, {"a": 0, "b": 2}]
    sampler = GridSampler(Space.from_json(axes_space(axes).to_json()), seed=0)
    assert sampler.size() == 10**30
    assert sampler.suggest(0, []) == {f"p{i}": 0 for i in range(30)}
    assert sampler.suggest(12, []) == {**{f"p{i}": 0 for i in range(28)}, "p28": 1, "p29": 2}
    assert GridSampler(axes_space(axes), seed=1).suggest(12, []) == sampler.suggest(12, [])
    # Decoding keeps the grid's order and yields identical points once.
    space = Space.from_obj(
        {
            "c": hp.choice("c", [{"k": 1}, {"k": hp.choice("k", [1, 2])}]),
            "a": GridAxis("a", (1, 1, 2)),
        }
    )
    expected = [
        {"c": {"k": 1}, "a": 1},
        {"c": {"k": 1}, "a": 2},
        {"c": {"k": 2}, "a": 1},
        {"c": {"k": 2}, "a": 2},
    ]
    assert list(space.grid()) == expected
    small = GridSampler(space, seed=0)
    assert small.size() == 4
    assert [small.suggest(n, []) for n in range(5)] == [*expected, None]


def axes_space(axes: dict[str, list[int]]) -> Space:
    from hyperdock.config import space_from_v04

    return space_from_v04(axes)


def test_a_recursive_space_is_refused_in_one_line() -> None:
    space: dict[str, Any] = {"a": hp.uniform("a", 0, 1)}
    space["self"] = space
    with pytest.raises(SpaceError, match=r"space\['self'\] contains itself") as info:
        Space.from_obj(space)
    assert "\n" not in str(info.value)
    inner: list[Any] = [1]
    inner.append(inner)
    with pytest.raises(SpaceError, match="contains itself"):
        Space.from_obj({"c": hp.choice("c", [inner, 2])})


def test_a_deep_space_is_refused() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(SpaceError, match="nested more than 200 levels deep"):
        Space.from_obj({"a": deep})
    with pytest.raises(SpaceError, match="nested more than 200 levels deep"):
        Space.from_json({"a": deep})
    shallow: Any = 1
    for _ in range(150):
        shallow = [shallow]
    assert Space.from_json(Space.from_obj({"a": shallow}).to_json()).grid_size() == 1


def test_shared_parts_count_once_per_place() -> None:
    part: Any = list(range(10))
    for _ in range(8):  # 10**9 values once expanded, a few hundred objects
        part = [part] * 10
    with pytest.raises(SpaceError, match="more than 1,000,000 values"):
        Space.from_obj({"a": part})


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (lambda: {"lr": math.nan}, r"space\['lr'\]: nan is not a finite number"),
        (lambda: {"o": {"beta": [0.9, math.inf]}}, r"space\['o'\]\['beta'\]\[1\]: inf is not"),
        (lambda: {"a": GridAxis("a", (1, math.nan))}, r"parameter 'a': grid value nan is not"),
        (lambda: {"a": GridAxis("a", ({"x": -math.inf},))}, "parameter 'a': grid value"),
        (lambda: {"c": hp.choice("c", [1, math.nan])}, r"\(option 1 of 'c'\): nan is not a"),
    ],
)
def test_nan_and_infinite_constants_are_refused_with_their_name(space: Any, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        Space.from_obj(space())
