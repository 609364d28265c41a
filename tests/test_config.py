"""Loading spaces: v0.1 config modules (hyperopt or hyperdock hp), v0.4 JSON/YAML."""

from __future__ import annotations

import importlib
import json
import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hyperdock import hp
from hyperdock.config import from_hyperopt, load_space, space_from_v04
from hyperdock.errors import ConfigError, SpaceError
from hyperdock.space import Choice, Dist, Space

DATA = Path(__file__).parent / "data"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def samples(space: Space, n: int = 300, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


# -- v0.1 config modules ---------------------------------------------------------------

HYPEROPT_MODULE = """
    import math
    from hyperopt import hp

    SPACE = {
        'max_epochs': 50,
        'name': 'run',
        'pair': (1, 2),
        'dropout': hp.quniform('dropout', 0, 0.5, 0.25),
        'u': hp.uniform('u', -1, 1),
        'lr': hp.loguniform('lr', math.log(1e-4), math.log(1e-1)),
        'ql': hp.qloguniform('ql', 0, math.log(100), 10),
        'n': hp.normal('n', 0, 1),
        'qn': hp.qnormal('qn', 0, 10, 2),
        'ln': hp.lognormal('ln', 0, 0.5),
        'qln': hp.qlognormal('qln', 1, 0.5, 1),
        'r': hp.randint('r', 5),
        'r2': hp.randint('r2', 10, 20),
        'ui': hp.uniformint('ui', 1, 9),
        'opt': hp.choice('opt', [
            {'type': 'sgd', 'momentum': hp.uniform('momentum', 0, 0.99)},
            {'type': 'adam', 'beta': hp.choice('beta', [0.9, {'b': hp.randint('b', 3)}])},
            'none',
        ]),
        'act': hp.pchoice('act', [(0.2, 'relu'), (0.8, 'tanh')]),
    }
"""


def test_hyperopt_module_is_translated(tmp_path: Path) -> None:
    importlib.import_module("hyperopt")
    space = load_space(write(tmp_path, "legacy.py", HYPEROPT_MODULE))
    kinds = {p.label: p.kind for p in space.parameters()}
    assert kinds == {
        "dropout": "quniform",
        "u": "uniform",
        "lr": "loguniform",
        "ql": "qloguniform",
        "n": "normal",
        "qn": "qnormal",
        "ln": "lognormal",
        "qln": "qlognormal",
        "r": "randint",
        "r2": "randint",
        "ui": "uniformint",
        "opt": "choice",
        "momentum": "uniform",
        "beta": "choice",
        "b": "randint",
        "act": "pchoice",
    }
    params = {p.label: p for p in space.parameters()}
    assert params["b"].condition == (("opt", 1), ("beta", 1))
    assert params["r"].args == {"low": 0, "high": 5}
    assert params["act"].args["p"] == [0.2, 0.8]
    points = samples(space)
    for p in points:
        assert (p["max_epochs"], p["name"], p["pair"]) == (50, "run", [1, 2])
        assert p["dropout"] in (0.0, 0.25, 0.5)
        assert -1 <= p["u"] <= 1 and 1e-4 <= p["lr"] <= 1e-1
        assert p["ql"] % 10 == 0 and 0 <= p["ql"] <= 100
        assert p["qn"] % 2 == 0 and p["ln"] > 0 and p["qln"] >= 0
        assert p["r"] in range(5) and p["r2"] in range(10, 20) and p["ui"] in range(1, 10)
        assert type(p["r"]) is int and type(p["ui"]) is int and type(p["dropout"]) is float
        assert p["act"] in ("relu", "tanh")
    opts = [p["opt"] for p in points]
    assert {o if isinstance(o, str) else o["type"] for o in opts} == {"sgd", "adam", "none"}
    assert all(set(o) == {"type", "momentum"} for o in opts if o != "none" and o["type"] == "sgd")
    betas = [o["beta"] for o in opts if o != "none" and o["type"] == "adam"]
    assert 0.9 in betas and {b["b"] for b in betas if isinstance(b, dict)} == {0, 1, 2}
    assert sum(p["act"] == "relu" for p in points) / len(points) == pytest.approx(0.2, abs=0.07)


def test_hyperopt_translation_matches_hyperopt_values() -> None:
    hyperopt = importlib.import_module("hyperopt")
    from hyperopt.pyll import scope, stochastic

    H = hyperopt.hp
    space = {
        "q": H.quniform("q", 0.1, 1.1, 0.2),
        "r": H.randint("r", 3, 7),
        "ui": H.uniformint("ui", 2, 6),
        "si": scope.int(H.quniform("si", 1, 10, 3)),
        "c": H.choice("c", ["x", {"y": H.randint("y", 2)}]),
    }

    def key(point: dict[str, object]) -> str:  # equal up to float noise (0.6 vs 0.6000…01)
        clean = {k: round(float(v), 9) if isinstance(v, float) else v for k, v in point.items()}
        return json.dumps(clean, sort_keys=True, default=int)

    grid = {key(p) for p in Space.from_obj(space).grid()}
    rng = importlib.import_module("numpy").random.default_rng(0)
    for _ in range(200):
        assert key(stochastic.sample(space, rng=rng)) in grid


def test_hyperdock_hp_module(tmp_path: Path) -> None:
    write(
        tmp_path,
        "native.py",
        """
        from hyperdock import hp
        SPACE = {"lr": hp.loguniform("lr", -9, -2), "epochs": 10}
        """,
    )
    space = load_space("native", config_dirs=[tmp_path])
    assert space.labels() == ["lr"]
    assert all(p["epochs"] == 10 for p in samples(space, 20))


def test_module_not_using_hyperopt_does_not_import_it(tmp_path: Path) -> None:
    path = write(
        tmp_path, "plain.py", "from hyperdock import hp\nSPACE = {'a': hp.randint('a', 3)}\n"
    )
    code = (
        "import sys; from hyperdock.config import load_space; "
        f"load_space({str(path)!r}); assert 'hyperopt' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_module_lookup_order_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, cwd = tmp_path / "first", tmp_path / "second", tmp_path / "cwd"
    for folder, value in ((first, 1), (second, 2), (cwd, 3)):
        folder.mkdir()
        write(folder, "example.py", f"SPACE = {{'which': {value}}}\n")
    write(second, "only_second.py", "SPACE = {'which': 'second'}\n")
    write(cwd, "only_cwd.py", "SPACE = {'which': 'cwd'}\n")
    monkeypatch.chdir(cwd)
    first_point = samples(load_space("example", config_dirs=[first, second]), 1)
    assert first_point == [{"which": 1}]
    assert samples(load_space("only_second", config_dirs=[first, second]), 1) == [
        {"which": "second"}
    ]
    assert samples(load_space("only_cwd", config_dirs=[first]), 1) == [{"which": "cwd"}]
    assert samples(load_space("only_cwd.py"), 1) == [{"which": "cwd"}]


def test_missing_module_lists_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_space("nowhere", config_dirs=[tmp_path / "a", tmp_path / "b"])
    message = str(info.value)
    assert "'nowhere'" in message and "nowhere.py" in message
    assert str(tmp_path / "a") in message and str(tmp_path / "b") in message
    assert str(Path.cwd()) in message


def test_module_without_space(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.py", "X = 1\n")
    with pytest.raises(ConfigError, match=r"empty\.py defines no SPACE"):
        load_space(path)


def test_module_that_fails_to_import(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.py", "import math\n\nSPACE = {'a': 1 / 0}\n")
    with pytest.raises(ConfigError) as info:
        load_space(path)
    message = str(info.value)
    assert str(path) in message and "ZeroDivisionError" in message
    assert "line 3" in message and "SPACE = {'a': 1 / 0}" in message
    assert not any(name.startswith("_hyperdock_config") for name in sys.modules)


def test_module_with_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "syntax.py", "SPACE = {\n  'a': 1,,\n}\n")
    with pytest.raises(ConfigError, match=r"(?s)syntax\.py.*SyntaxError.*line 2"):
        load_space(path)


def test_module_can_import_neighbours(tmp_path: Path) -> None:
    write(tmp_path, "helpers_for_space.py", "EPOCHS = 7\n")
    path = write(
        tmp_path, "uses_helper.py", "from helpers_for_space import EPOCHS\nSPACE = {'e': EPOCHS}\n"
    )
    assert samples(load_space(path), 1) == [{"e": 7}]
    assert str(tmp_path) not in sys.path


def test_bad_space_in_module_names_file_and_parameter(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.py",
        "from hyperdock import hp\nSPACE = {'x': [hp.randint('r', 2)], 'y': hp.randint('r', 3)}\n",
    )
    with pytest.raises(SpaceError, match=r"bad\.py: parameter 'r' is defined twice"):
        load_space(path)


def test_untranslatable_hyperopt_expression_names_label(tmp_path: Path) -> None:
    importlib.import_module("hyperopt")
    path = write(
        tmp_path,
        "arith.py",
        """
        from hyperopt import hp
        SPACE = {'ok': 1, 'double': 2 * hp.uniform('width', 0, 1)}
        """,
    )
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert "'width'" in message and "space['double']" in message
    assert "hp.*" in message


def test_from_hyperopt_and_from_obj_accept_hyperopt() -> None:
    hyperopt = importlib.import_module("hyperopt")
    node = hyperopt.hp.choice("c", [1, (2, hyperopt.hp.uniform("x", 0, 1))])
    translated = from_hyperopt({"c": node})
    assert translated == {"c": Choice("c", (1, [2, Dist("uniform", "x", (0, 1))]))}
    assert Space.from_obj({"c": node}) == Space.from_obj(translated)


# -- v0.4 data files -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["compat_v04.json", "compat_v04.yaml"])
def test_compat_example_gives_four_trials(name: str) -> None:
    space = load_space(DATA / name)
    points = list(space.grid())
    assert len(points) == space.grid_size() == 4
    assert {p["a"] for p in points} == {1, 2} and all(p["b"] == 1 for p in points)
    cs = {p["c"] for p in points}
    assert len(cs) == 2 and all(type(c) is float and c > 0 for c in cs)
    assert list(load_space(DATA / name).grid()) == points
    assert sorted({(p["a"], p["c"]) for p in points}) == sorted((a, c) for a in (1, 2) for c in cs)


def test_json_and_yaml_agree() -> None:
    assert load_space(DATA / "compat_v04.json") == load_space(DATA / "compat_v04.yaml")


def test_v04_list_of_specs_concatenates() -> None:
    space = space_from_v04([{"a": [1, 2], "b": "x"}, {"a": [3], "c": {"fixed": True}}])
    assert list(space.grid()) == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": "x"},
        {"a": 3, "c": {"fixed": True}},
    ]
    assert space.grid_size() == 3
    points = samples(space, 200)
    assert {p["a"] for p in points} == {1, 2, 3}


def test_v04_values() -> None:
    space = space_from_v04(
        {
            "k": {"hdock_distr": "poisson", "hdock_samples": 5, "hdock_distr_kwargs": {"mu": 3}},
            "fixed": {"not": "sampled"},
        }
    )
    assert space.grid_size() == 5
    with pytest.raises(SpaceError, match="parameter 'none' has no values"):
        space_from_v04({"none": {"hdock_distr": "norm", "hdock_samples": 0}})
    with pytest.raises(SpaceError, match="parameter 'a' has no values"):
        space_from_v04({"a": [], "b": [1, 2]})
    ks = (
        space_from_v04(
            {"k": {"hdock_distr": "poisson", "hdock_samples": 5, "hdock_distr_kwargs": {"mu": 3}}}
        )
        .parameters()[0]
        .args["values"]
    )
    assert len(ks) == 5 and all(type(k) is int for k in ks)
    fixed = space_from_v04({"f": {"not": "sampled"}, "g": [[1, 2], [3]]})
    assert list(fixed.grid()) == [
        {"f": {"not": "sampled"}, "g": [1, 2]},
        {"f": {"not": "sampled"}, "g": [3]},
    ]


def test_v04_seed_changes_draws() -> None:
    def draws(seed: int) -> list[Any]:
        spec = {"hdock_distr": "uniform", "hdock_samples": 3, "hdock_seed": seed}
        return space_from_v04({"x": spec}).parameters()[0].args["values"]

    assert draws(1) == draws(1) != draws(2)
    assert all(0 <= x <= 1 for x in draws(0))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"hdock_distr": "nromal", "hdock_samples": 2},
            "parameter 'c': unknown distribution hdock_distr='nromal'",
        ),
        ({"hdock_distr": "norm"}, "parameter 'c': hdock_samples"),
        ({"hdock_distr": "norm", "hdock_samples": -1}, "parameter 'c': hdock_samples"),
        (
            {"hdock_distr": "norm", "hdock_samples": 2, "hdock_sede": 1},
            "parameter 'c': unknown key(s) 'hdock_sede'",
        ),
        ({"hdock_samples": 2}, "parameter 'c': unknown distribution"),
        (
            {"hdock_distr": "norm", "hdock_samples": 2, "hdock_distr_kwargs": {"bogus": 1}},
            "parameter 'c': scipy.stats.norm",
        ),
        (
            {"hdock_distr": "norm", "hdock_samples": 2, "hdock_seed": "x"},
            "parameter 'c': hdock_seed",
        ),
    ],
)
def test_v04_errors_name_parameter(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpaceError) as info:
        space_from_v04({"c": spec})
    assert message in str(info.value)


def test_v04_shape_errors() -> None:
    with pytest.raises(SpaceError, match="must be an object"):
        space_from_v04("nope")
    with pytest.raises(SpaceError, match="item 1 of the space list"):
        space_from_v04([{"a": 1}, 2])
    with pytest.raises(SpaceError, match="empty list"):
        space_from_v04([])


def test_unknown_distribution_in_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"c": {"hdock_distr": "gaussian", "hdock_samples": 2}}))
    with pytest.raises(SpaceError, match=r"space\.json: parameter 'c': unknown distribution"):
        load_space(path)


def test_bad_json_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": [1, 2],\n  "b": ,\n}\n')
    with pytest.raises(ConfigError, match=r"bad\.json, line 3, column \d+: invalid JSON"):
        load_space(path)


def test_bad_yaml_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("a: [1, 2\nb: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yml, line \d+, column \d+: invalid YAML"):
        load_space(path)


def test_missing_files_and_odd_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_space(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="not found"):
        load_space(tmp_path / "missing.py")
    with pytest.raises(ConfigError, match="neither"):
        load_space(tmp_path / "space.txt")


def test_loaded_space_samples_are_reproducible() -> None:
    space = load_space(DATA / "compat_v04.json")
    assert samples(space, 10, seed=4) == samples(space, 10, seed=4)
    assert math.isfinite(samples(space, 1)[0]["c"])


def test_hp_is_importable_from_package() -> None:
    assert hp.uniform("x", 0, 1).kind == "uniform"


def test_invalid_hp_call_in_module_is_a_space_error(tmp_path: Path) -> None:
    path = write(
        tmp_path, "lowhigh.py", "from hyperdock import hp\nSPACE = {'a': hp.uniform('a', 2, 1)}\n"
    )
    with pytest.raises(
        SpaceError, match=r"(?s)lowhigh\.py.*parameter 'a': uniform needs low < high"
    ):
        load_space(path)


# -- a Python config read from its syntax tree (the dashboard's form) ---------------------
def test_python_source_is_read_without_running_it(tmp_path: Path) -> None:
    from hyperdock.config import space_from_python_source

    text = textwrap.dedent(
        """\
        '''My search.'''
        from hyperdock import hp
        import math
        SPACE = {
            "lr": hp.loguniform("lr", math.log(1e-4), math.log(1)),
            "opt": hp.choice("opt", [{"name": "sgd", "m": hp.uniform("m", 0, 0.9)}, "adam"]),
            "shift": -2,
            "epochs": 50,
        }
        """
    )
    space = space_from_python_source(text)
    assert space == Space.from_obj(
        {
            "lr": hp.loguniform("lr", math.log(1e-4), 0.0),
            "opt": hp.choice("opt", [{"name": "sgd", "m": hp.uniform("m", 0, 0.9)}, "adam"]),
            "shift": -2,
            "epochs": 50,
        }
    )
    marker = tmp_path / "ran"
    evil = f"from hyperdock import hp\nSPACE = {{'a': open({str(marker)!r}, 'w')}}\n"
    with pytest.raises(ConfigError, match=r"line 2: `open\(.*` is not allowed"):
        space_from_python_source(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("import os\nSPACE = {}", "line 1: `import os` is not allowed"),
        ("from hyperdock import hp\nx = 1\nSPACE = {}", "line 2: `x = 1` is not allowed"),
        ("SPACE = {'a': hp.uniform('a', 0)}", "line 1: `hp.uniform('a', 0)`: "),
        ("SPACE = {'a': hp.nope('a')}", "line 1: the call `hp.nope('a')` is not allowed"),
        ("SPACE = {'a': [x for x in range(3)]}", "line 1: `[x for x in range(3)]` is not allowed"),
        ("SPACE = {", "line 1: not valid Python"),
        ("from hyperdock import hp\n", "defines no SPACE"),
    ],
)
def test_python_source_says_why_not(text: str, words: str) -> None:
    from hyperdock.config import space_from_python_source

    with pytest.raises(ConfigError) as info:
        space_from_python_source(text)
    assert words in str(info.value)


# -- hostile documents: exponential, deep, recursive -----------------------------------


@pytest.mark.timeout(60)
def test_yaml_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = write(tmp_path, "laughs.yaml", "\n".join(lines) + "\n")
    with pytest.raises(SpaceError, match=r"laughs\.yaml: the YAML document holds more than") as e:
        load_space(path)
    assert "\n" not in str(e.value)


def test_a_flat_axis_of_3_million_values_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """The value count is checked on the parsed document, before any axis is built (a
    6 MB JSON axis took 480 MB more than parsing it before it was refused)."""
    import subprocess
    import sys

    path = tmp_path / "axis.json"
    path.write_text(json.dumps({"x": list(range(3_000_000))}))
    probe = (
        "import json, resource, sys\n"
        "from hyperdock.config import load_space\n"
        "json.loads(open(sys.argv[1]).read())  # what parsing alone costs\n"
        "parsed = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    load_space(sys.argv[1])\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - parsed)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120
    )
    message, extra_kb = out.stdout.strip().splitlines()
    assert message.startswith("SpaceError") and "more than 1,000,000 values" in message
    assert int(extra_kb) < 100_000, f"{int(extra_kb) // 1024} MB beyond parsing"


def test_yaml_that_contains_itself_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.yaml", "a: &x [1, *x]\n")
    with pytest.raises(SpaceError, match="contains itself"):
        load_space(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["deep.json", "deep.yaml"])
def test_a_100000_deep_document_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    text = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write(tmp_path, name, text)
    with pytest.raises(SpaceError, match=r"nested more than 200 levels deep; flatten it") as e:
        load_space(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_a_recursive_space_module_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "rec.py", 'SPACE = {"lr": 0.1}\nSPACE["inner"] = {"again": SPACE}\n')
    with pytest.raises(SpaceError, match=r"rec\.py: space\['inner'\]\['again'\] contains itself"):
        load_space(path)


def test_nan_in_a_json_space_is_refused_with_its_name(tmp_path: Path) -> None:
    path = write(tmp_path, "nan.json", '{"lr": NaN, "x": [1, 2]}')
    with pytest.raises(SpaceError, match=r"space\['lr'\]: nan is not a finite number"):
        load_space(path)
    path = write(tmp_path, "inf.yaml", "x: [1, .inf]\n")
    with pytest.raises(SpaceError, match=r"parameter 'x': grid value inf is not a finite"):
        load_space(path)


def test_a_zero_sample_member_of_a_space_list_is_switched_off() -> None:
    """COMPAT: hdock_samples may be 0. In a v0.4 space list that member then adds no
    points, and the others run; only a space with no points at all is refused."""
    space = space_from_v04(
        [{"a": {"hdock_distr": "norm", "hdock_samples": 0}}, {"b": [1, 2]}, {"c": [3]}]
    )
    assert list(space.grid()) == [{"b": 1}, {"b": 2}, {"c": 3}]
    rng = random.Random(0)
    assert all("a" not in space.sample(rng) for _ in range(50))
    with pytest.raises(SpaceError, match="parameter 'a' has no values"):
        space_from_v04({"a": {"hdock_distr": "norm", "hdock_samples": 0}, "b": [1]})
