"""The dashboard in a real browser: Chromium (the Debian package at /usr/bin/chromium)
driven by Python playwright. Nothing is downloaded (never ``playwright install``).

Outside CI a missing Chromium or playwright skips these tests; with ``CI=true`` it fails
them (see ``conftest.unavailable``).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import wait_for
from conftest import unavailable
from test_dashboard_api import TOKEN, XSS, fill_store

from hyperdock.dashboard import make_dashboard_server
from hyperdock.objectives import Objectives
from hyperdock.storage import Store, open_store
from hyperdock.trial import Target, TrialState

CHROMIUM = os.environ.get("HYPERDOCK_TEST_CHROMIUM", "/usr/bin/chromium")
#: Milliseconds a page may take to show what a test waits for (polling is every 2 s).
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium, launched once per module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable("playwright", f"{exc}; pip install playwright")
    if not Path(CHROMIUM).exists():
        unavailable("Chromium", f"{CHROMIUM} is missing; apt-get install chromium")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as exc:
            unavailable("Chromium", f"cannot launch {CHROMIUM}: {exc}")
        yield b
        b.close()


class Dashboard:
    """A dashboard served on 127.0.0.1 (ephemeral port) over a filled SQLite store."""

    def __init__(self, store: Store, ids: dict[str, Any], url: str) -> None:
        self.store, self.ids, self.url = store, ids, url


def _serve(tmp_path: Path, token: str | None) -> Iterator[Dashboard]:
    store = open_store(f"sqlite:///{tmp_path / 'browser.db'}")
    ids = fill_store(store, tmp_path / "results")
    server = make_dashboard_server(store, "127.0.0.1", 0, token=token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Dashboard(store, ids, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        store.close()


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dashboard]:
    """Without a token."""
    yield from _serve(tmp_path, None)


@pytest.fixture
def dash_token(tmp_path: Path) -> Iterator[Dashboard]:
    """With the token ``TOKEN``."""
    yield from _serve(tmp_path, TOKEN)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; JavaScript errors and dialogs fail the test."""
    context = browser.new_context()
    pg = context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.set_default_timeout(WAIT_MS)
    pg.hd_dialogs = dialogs
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"
    assert dialogs == [], f"dialogs opened: {dialogs}"


def _plot_points(page: Any, selector: str) -> int:
    return int(
        page.evaluate(
            """(sel) => { const d = document.querySelector(sel);
                return d && d.data && d.data.length ? (d.data[0].x || d.data[0].dimensions
                || []).length : 0; }""",
            selector,
        )
    )


def test_pages_load(dash: Dashboard, page: Any) -> None:
    page.goto(dash.url + "/")
    page.wait_for_selector("#experiments tr[data-name='exp']")
    row = page.locator("#experiments tr[data-name='exp']")
    assert "2 / 10" in row.inner_text()
    assert page.locator("#experiments tr[data-name='multi']").count() == 1
    assert page.locator("#create-form").count() == 1

    page.goto(dash.url + "/workers")
    page.locator("#workers td.id", has_text="w1").wait_for()
    assert "host-a" in page.locator("#workers").inner_text()

    page.goto(f"{dash.url}/experiments/exp")
    page.wait_for_selector(f"#trials tr[data-trial-id='{dash.ids['queued']}']")
    assert page.locator("#trials tbody tr").count() == 4

    page.goto(f"{dash.url}/trials/{dash.ids['completed']}")
    page.wait_for_function("document.querySelector('#log').textContent.includes('epoch 2')")
    assert "model.txt" in page.locator("#files").inner_text()
    assert page.locator("#params").inner_text().count("0.5") >= 1


def test_plots_render(dash: Dashboard, page: Any) -> None:
    page.goto(f"{dash.url}/experiments/exp")
    page.wait_for_function(
        "() => { const d = document.querySelector('#history');"
        " return d && d.data && d.data[0].x.length > 0; }"
    )
    assert page.evaluate("document.querySelector('#history').data[0].x.length") == 2
    assert page.evaluate("document.querySelector('#history').data[1].y") == [0.25, 0.25]
    # Headless Chromium runs WebGL on the CPU: parallel coordinates come as SVG lines
    # (x, name, loss axes; one line per completed trial), and the button switches to
    # Plotly's interactive WebGL parcoords.
    par = page.locator("#parallel")
    assert par.get_attribute("data-view") == "svg"
    assert par.get_attribute("data-dimensions") == "3"
    lines = page.evaluate(
        "document.querySelector('#parallel').data.filter((t) => t.name === 'trials')"
        ".reduce((n, t) => n + t.x.filter((v) => v === null).length, 0)"
    )
    assert lines == 2
    page.click("#parallel-switch")
    page.wait_for_function("document.querySelector('#parallel').dataset.view === 'webgl'")
    assert _plot_points(page, "#parallel") == 3  # x, name, loss
    assert _plot_points(page, "#intermediate") > 0
    assert page.evaluate("document.querySelector('#importances').data.length") == 1
    page.wait_for_function(
        "() => { const d = document.querySelector('#slices-plot');"
        " return d && d.data && d.data.length === 2; }"
    )
    slices = page.evaluate(
        "[...document.querySelector('#slices-plot').data].map((t) => [t.name, t.x.length])"
    )
    assert sorted(slices) == [["name", 2], ["x", 2]]  # one subplot per parameter
    assert page.locator("#pareto").is_hidden()
    page.locator("#trials th[data-key='loss']").click()  # sortable
    first = page.locator("#trials tbody tr").first.get_attribute("data-trial-id")
    assert first == str(dash.ids["completed"])
    page.fill("#trials-filter", "queued")  # filterable
    assert page.locator("#trials tbody tr").count() == 1

    page.goto(f"{dash.url}/experiments/multi")
    page.wait_for_function(
        "() => { const d = document.querySelector('#pareto');"
        " return d && d.data && d.data[1].x.length === 2; }"
    )

    page.goto(f"{dash.url}/trials/{dash.ids['completed']}")
    page.wait_for_function(
        "() => { const d = document.querySelector('#graph-0');"
        " return d && d.data && d.data[0].x.length === 3; }"
    )


def test_page_updates_by_itself(dash: Dashboard, page: Any) -> None:
    running = dash.ids["running"]
    page.goto(f"{dash.url}/experiments/exp")
    page.wait_for_selector(f"#trials tr[data-trial-id='{running}'][data-state='running']")
    page.evaluate("window.hdMarker = 42")  # survives only if the page is not reloaded
    assert dash.store.finish(running, "w1", state=TrialState.COMPLETED, loss=0.125)
    page.wait_for_selector(f"#trials tr[data-trial-id='{running}'][data-state='completed']")
    assert page.evaluate("window.hdMarker") == 42
    page.wait_for_function("document.querySelector('#history').data[0].x.length === 3")


def test_trial_table_pages_and_keeps_still(dash: Dashboard, page: Any) -> None:
    exp = dash.store.get_experiment("exp")
    dash.store.add_trials(exp.id, [{"x": 2.0, "name": "c"}] * 150)  # 154 trials in all
    page.goto(f"{dash.url}/experiments/exp")
    page.wait_for_selector("#trials-pager:not([hidden])")
    assert page.locator("#trials tbody tr").count() == 100
    assert "of 154" in page.locator("#trials-pager").inner_text()
    page.locator("#trials-pager button.pager-next").click()
    assert page.locator("#trials tbody tr").count() == 54
    page.fill("#trials-filter", "running")  # filters every page, back to the first
    assert page.locator("#trials tbody tr").count() == 1
    assert page.locator("#trials-pager").is_hidden()
    # an unchanged poll leaves the table and the plots alone
    page.evaluate("document.querySelector('#trials tbody tr').hdMark = 7")
    page.wait_for_timeout(2500)
    assert page.evaluate("document.querySelector('#trials tbody tr').hdMark") == 7
    assert page.evaluate("document.querySelector('#history').data[0].x.length") == 2
    # a reply that changed elsewhere (importances computed again in the background)
    # but brings the same rows leaves the table alone too
    page.evaluate("document.querySelector('#summary').firstChild.hdMark = 8")
    page.locator("#importances-refresh").click()
    page.wait_for_function("!document.querySelector('#summary').firstChild.hdMark", timeout=WAIT_MS)
    page.wait_for_timeout(2500)
    assert page.evaluate("document.querySelector('#trials tbody tr').hdMark") == 7
    assert page.locator("#trials tbody tr").count() == 1


#: Pixels of a painted plot's image that hold a point (alpha > 0).
_PAINTED_PIXELS = """(id) => new Promise((resolve) => {
    const src = document.getElementById(id).layout.images.map((i) => i.source);
    let left = src.length, total = 0;
    for (const url of src) {
      const img = new Image();
      img.onload = () => {
        const c = document.createElement("canvas");
        c.width = img.width; c.height = img.height;
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        const px = g.getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) total++;
        if (--left === 0) resolve(total);
      };
      img.src = url;
    }
})"""


def test_many_trials_are_painted_without_a_gpu_and_switch_to_webgl(
    dash: Dashboard, page: Any
) -> None:
    """Over 1000 completed trials, without a GPU (headless Chromium emulates WebGL on the
    CPU): the history's and the slices' points are painted into images (every point),
    the best ones kept as hoverable markers, repainted on zoom; the switches turn them
    into Plotly's WebGL traces (slices coloured by quarter of the run, four traces per
    parameter holding every point). Parallel coordinates show the best 1000."""
    exp = dash.store.get_experiment("exp")
    dash.store.add_trials(exp.id, [{"x": 0.25 * (i % 8), "name": "b"} for i in range(1200)])
    n = 0
    while (trial := dash.store.claim("w-many", experiment_id=exp.id)) is not None:
        dash.store.finish(trial.id, "w-many", state=TrialState.COMPLETED, loss=0.001 * n)
        n += 1
    done = dash.store.count_trials(exp.id)[TrialState.COMPLETED]
    assert done >= 1200
    page.goto(f"{dash.url}/experiments/exp")
    page.wait_for_function(
        "() => { const d = document.querySelector('#slices-plot');"
        " return d && d.layout && (d.layout.images || []).length === 2; }"
    )
    history = page.locator("#history")
    assert history.get_attribute("data-view") == "painted"
    assert history.get_attribute("data-points") == str(done)
    traces = page.evaluate(
        "document.querySelector('#history').data.map((t) => [t.type, t.name || '', t.x.length])"
    )
    assert ["scatter", "loss (best 300 hoverable)", 300] in traces
    assert any(name == "best so far" for _, name, _ in traces)
    assert page.evaluate("document.querySelector('#history').layout.images[0].source").startswith(
        "data:image/png;base64,"
    )
    assert page.evaluate(_PAINTED_PIXELS, "history") > 2000  # points, not a blank image
    slices = page.locator("#slices-plot")
    assert slices.get_attribute("data-view") == "painted"
    assert slices.get_attribute("data-points") == str(2 * done)  # x and name, every trial
    assert page.evaluate(_PAINTED_PIXELS, "slices-plot") > 2000
    assert "1000 of " + str(done) in page.evaluate(  # the detail line (not an axis label)
        "document.querySelector('#parallel').layout.annotations"
        ".filter((a) => a.xref === 'paper').map((a) => a.text).join()"
    )

    # zooming repaints the image for the new axes
    page.evaluate("Plotly.relayout('history', {'xaxis.range': [0, 100]})")
    page.wait_for_function(
        "() => { const i = document.querySelector('#history').layout.images[0];"
        " return i.x === 0 && i.sizex === 100; }"
    )

    page.click("#history-switch")
    page.wait_for_function("document.querySelector('#history').dataset.view === 'webgl'")
    assert page.evaluate("document.querySelector('#history').data[0].type") == "scattergl"
    assert page.evaluate("document.querySelector('#history').data[0].x.length") == done
    assert page.evaluate("(document.querySelector('#history').layout.images || []).length") == 0

    page.click("#slices-switch")
    page.wait_for_function("document.querySelector('#slices-plot').dataset.view === 'webgl'")
    traces = page.evaluate(
        "[...document.querySelector('#slices-plot').data].map((t) => [t.xaxis, t.type, t.x.length])"
    )
    by_axis: dict[str, int] = {}
    for axis, kind, points in traces:
        assert kind == "scattergl"
        by_axis[axis] = by_axis.get(axis, 0) + points
    assert by_axis == {"x": done, "x2": done}
    assert len(traces) == 8  # 2 parameters x 4 quarters
    assert page.evaluate("(document.querySelector('#slices-plot').layout.images || []).length") == 0


def _experiment(
    store: Store, name: str, space: Any, trials: list[tuple[dict[str, Any], Any]]
) -> Any:
    """Experiment ``name`` over ``space`` (hp nodes) whose trials end as given: a loss
    (completed) or ``("pruned", [(step, loss), ...])``."""
    from hyperdock.space import Space

    exp = store.create_experiment(
        name,
        space=Space.from_obj(space).to_json(),
        target=Target(command=("true",)),
        sampler="random",
        seed=0,
        max_trials=len(trials),
        meta={"objectives": Objectives().to_meta(), "pruner": "median"},
    )
    store.add_trials(exp.id, [p for p, _ in trials])
    for _, end in trials:
        trial = store.claim("w-" + name, experiment_id=exp.id)
        assert trial is not None
        if isinstance(end, tuple):
            store.add_progress(trial.id, "w-" + name, end[1])
            store.finish(trial.id, "w-" + name, state=TrialState.PRUNED)
        else:
            store.finish(trial.id, "w-" + name, state=TrialState.COMPLETED, loss=end)
    return exp


def test_slice_axes_are_logarithmic_when_the_space_says_so(dash: Dashboard, page: Any) -> None:
    """lr is loguniform (its values here span less than a decade); width is uniform (its
    values happen to spread over three decades): the space decides, not the values."""
    from hyperdock import hp

    params = [{"lr": 0.01 + 0.04 * i / 19, "width": 10 ** (3 * i / 19)} for i in range(20)]
    space = {"lr": hp.loguniform("lr", -4.6, 0), "width": hp.uniform("width", 1, 1000)}
    _experiment(dash.store, "logs", space, [(p, p["lr"]) for p in params])
    page.goto(f"{dash.url}/experiments/logs")
    page.wait_for_function(
        "() => { const d = document.querySelector('#slices-plot');"
        " return d && d.data && d.data.length === 2; }"
    )
    axes = page.evaluate(
        "(() => { const l = document.querySelector('#slices-plot').layout;"
        " return [l.xaxis, l.xaxis2].map((a) => [a.title.text, a.type]); })()"
    )
    assert sorted(axes) == [["lr", "log"], ["width", "linear"]]
    # the space box shows the real range, not loguniform(-4.6, 0)
    summary = page.locator("#summary").inner_text()
    assert "lr: log-uniform 0.01\u20131" in summary
    assert "loguniform(" not in summary


def test_constants_get_no_column_axis_or_slice(dash: Dashboard, page: Any, tmp_path: Path) -> None:
    from hyperdock import hp

    space = {
        "learning_rate_of_the_encoder": hp.uniform("learning_rate_of_the_encoder", 0, 1),
        "dropout_probability_between_layers": hp.uniform(
            "dropout_probability_between_layers", 0, 1
        ),
        "optimizer": hp.choice("optimizer", ["sgd", "adam"]),
        "epochs": 50,
    }
    runs = [
        ({"learning_rate_of_the_encoder": i / 9, "dropout_probability_between_layers": 1 - i / 9,
          "optimizer": ["sgd", "adam"][i % 2], "epochs": 50}, i / 10)
        for i in range(10)
    ]  # fmt: skip
    _experiment(dash.store, "consts", space, runs)
    page.set_viewport_size({"width": 1280, "height": 1400})
    page.goto(f"{dash.url}/experiments/consts")
    page.wait_for_function(
        "() => { const d = document.querySelector('#slices-plot');"
        " return d && d.data && d.data.length === 3; }"
    )
    shown = page.locator("#slices-plot").get_attribute("data-parameters")
    assert sorted(shown.split(",")) == sorted(k for k in space if k != "epochs")
    headers = page.locator("#trials th").all_inner_texts()
    assert "optimizer" in headers and "epochs" not in headers
    labels = page.evaluate(
        "document.querySelector('#parallel').layout.annotations"
        ".filter((a) => a.xref === 'x').map((a) => a.text)"
    )
    assert len(labels) == 4  # three parameters and the loss, no epochs
    assert all(len(label) <= 14 for label in labels)
    assert "epochs" not in labels
    page.locator("#parallel").screenshot(path=str(tmp_path / "parallel.png"))
    page.locator("#history").screenshot(path=str(tmp_path / "history.png"))
    shots = os.environ.get("HYPERDOCK_TEST_SCREENSHOTS")
    if shots:  # for a person to look at
        page.screenshot(path=str(Path(shots) / "experiment.png"), full_page=True)


def test_pruned_trials_in_the_history_and_log_y(dash: Dashboard, page: Any) -> None:
    """Losses over three decades: the history starts with a log y axis; the pruned trial
    appears at its last reported loss, marked; the box switches to linear and back."""
    from hyperdock import hp

    runs: list[tuple[dict[str, Any], Any]] = [
        ({"x": 0.1}, 100.0),
        ({"x": 0.2}, ("pruned", [(1, 80.0), (2, 50.0)])),
        ({"x": 0.3}, 1.0),
        ({"x": 0.4}, 0.05),
    ]
    exp = _experiment(dash.store, "prunes", {"x": hp.uniform("x", 0, 1)}, runs)
    numbers = [t.number for t in dash.store.list_trials(exp.id)]
    page.goto(f"{dash.url}/experiments/prunes")
    page.wait_for_function(
        "() => { const d = document.querySelector('#history');"
        " return d && d.data && d.data.length === 3; }"
    )
    pruned = page.evaluate(
        "(() => { const t = document.querySelector('#history').data[2];"
        " return [t.name, t.x, t.y, t.marker.symbol]; })()"
    )
    assert pruned == ["pruned (last reported loss)", [numbers[1]], [50.0], "x"]
    loss_x = page.evaluate("document.querySelector('#history').data[0].x")
    assert loss_x == [numbers[0], numbers[2], numbers[3]]
    y_type = "document.querySelector('#history').layout.yaxis.type"
    assert page.evaluate(y_type) == "log"
    assert page.is_checked("#history-logy")
    assert page.evaluate("document.querySelector('#intermediate').layout.yaxis.type") == "linear"
    page.uncheck("#history-logy")
    page.wait_for_function(f"{y_type} === 'linear'")
    page.check("#history-logy")
    page.wait_for_function(f"{y_type} === 'log'")

    page.goto(dash.url + "/")
    row = page.locator("#experiments tr[data-name='prunes']")
    row.wait_for()
    cells = {key: row.locator(f"td.{key}").inner_text() for key in ("pruned", "age", "duration")}
    assert cells["pruned"] == "1"
    assert re.fullmatch(r"\d+ s", cells["age"]), cells
    assert re.fullmatch(r"\d+ s \(running\)", cells["duration"]), cells


def test_out_files_download_and_symlinks_out_are_refused(
    dash: Dashboard, page: Any, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (Path(dash.ids["folder"]) / "out" / "escape.txt").symlink_to(secret)
    trial = dash.ids["completed"]
    page.goto(f"{dash.url}/trials/{trial}")
    link = page.locator("#files a.download[data-path='model.txt']")
    link.wait_for()
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "model.txt"
    assert Path(download.path()).read_text() == "weights"
    assert page.locator("#files a[data-path='escape.txt']").count() == 0
    status = page.evaluate(
        "(url) => fetch(url).then((r) => r.status)", f"/api/trials/{trial}/files/escape.txt"
    )
    assert status == 404
    # the History table: attempts from 1, and when each ended
    cells = page.locator("#history-attempts tr").nth(1).locator("td").all_inner_texts()
    assert cells[0] == "1"
    assert page.locator("#history-attempts td.end").first.inner_text() != "-"


def test_out_files_download_with_the_token(dash_token: Dashboard, page: Any) -> None:
    trial = dash_token.ids["completed"]
    page.goto(f"{dash_token.url}/trials/{trial}?token={TOKEN}")
    link = page.locator("#files a.download[data-path='sub/more.bin']")
    link.wait_for()
    with page.expect_download() as info:
        link.click()
    assert Path(info.value.path()).read_bytes() == b"\0" * 10


def test_create_from_a_python_config(dash: Dashboard, page: Any) -> None:
    page.goto(dash.url + "/")
    page.wait_for_selector("#experiments tr[data-name='exp']")
    page.fill("#create-name", "from-py")
    page.fill("#create-space", "from hyperdock import hp\nimport os\nSPACE = {}")
    page.fill("#create-command", "python train.py")
    page.click("#create-form button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "line 2: `import os` is not allowed" in page.locator("#error").inner_text()
    page.fill(
        "#create-space", "from hyperdock import hp\nSPACE = {'lr': hp.loguniform('lr', -9, -2)}"
    )
    page.click("#create-form button[type=submit]")
    page.wait_for_selector("#experiments tr[data-name='from-py']")
    assert dash.store.get_experiment("from-py").space["lr"]["$hp"] == "loguniform"


def test_cancel_from_the_browser(dash_token: Dashboard, page: Any) -> None:
    running = dash_token.ids["running"]
    page.goto(f"{dash_token.url}/experiments/exp?token={TOKEN}")
    assert "token" not in page.url  # taken off the address bar
    button = page.locator(f"#trials button.cancel-trial[data-trial-id='{running}']")
    button.click()
    wait_for(lambda: dash_token.store.get_trial(running).stop_requested, 10, "the stop request")
    state_cell = page.locator(f"#trials tr[data-trial-id='{running}'] td.state")
    state_cell.filter(has_text="stopping").wait_for()
    assert page.locator("#error").is_hidden()
    # the worker obeys the stop: the trial ends cancelled, and the page shows it
    dash_token.store.finish(running, "w1", state=TrialState.CANCELLED)
    page.wait_for_selector(f"#trials tr[data-trial-id='{running}'][data-state='cancelled']")

    # the trial page's button too (the token is kept for the tab)
    queued = dash_token.ids["queued"]
    page.goto(f"{dash_token.url}/trials/{queued}")
    page.locator("#trial-actions button.cancel-trial").click()
    wait_for(lambda: dash_token.store.get_trial(queued).state is TrialState.CANCELLED, 10, "cancel")


def test_actions_without_token_are_refused(dash_token: Dashboard, page: Any) -> None:
    running = dash_token.ids["running"]
    # Without the token the page shows nothing of the store, and says why.
    page.goto(f"{dash_token.url}/experiments/exp")
    page.wait_for_selector("#error:not([hidden])")
    assert "needs its token" in page.locator("#error").inner_text()
    assert page.locator("#trials tbody tr").count() == 0
    # A tab holding the token, which is then withdrawn: its actions are refused.
    page.goto(f"{dash_token.url}/experiments/exp?token={TOKEN}")
    button = page.locator(f"#trials button.cancel-trial[data-trial-id='{running}']")
    button.wait_for()
    page.evaluate("sessionStorage.setItem('hyperdock-token', 'wrong')")
    button.click()
    page.wait_for_selector("#error:not([hidden])")
    assert "wrong dashboard token" in page.locator("#error").inner_text()
    assert not dash_token.store.get_trial(running).stop_requested

    page.goto(f"{dash_token.url}/?token=wrong")
    page.fill("#create-name", "new-one")
    page.fill("#create-space", '{"a": [1, 2]}')
    page.fill("#create-command", "python train.py")
    page.click("#create-form button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "wrong dashboard token" in page.locator("#error").inner_text()
    assert [e.name for e in dash_token.store.list_experiments()] == ["exp", "multi"]


def test_create_from_the_browser(dash: Dashboard, page: Any) -> None:
    page.goto(dash.url + "/")
    page.wait_for_selector("#experiments tr[data-name='exp']")
    page.fill("#create-name", "from-ui")
    page.fill("#create-space", '{"a": [1, 2], "b": 3}')
    page.fill("#create-command", "python train.py")
    page.click("#create-form button[type=submit]")
    page.wait_for_selector("#experiments tr[data-name='from-ui']")
    assert dash.store.get_experiment("from-ui").sampler == "grid"


def test_script_in_a_parameter_is_shown_as_text(dash: Dashboard, page: Any) -> None:
    xss_trial = dash.ids["completed"]
    page.goto(f"{dash.url}/experiments/exp")
    cell = page.locator(f"#trials tr[data-trial-id='{xss_trial}'] td", has_text=XSS)
    cell.first.wait_for(state="visible")
    assert page.locator("#main script").count() == 0
    page.goto(f"{dash.url}/trials/{xss_trial}")
    page.get_by_text(XSS, exact=True).first.wait_for(state="visible")
    page.wait_for_function("(x) => document.querySelector('#log').textContent.includes(x)", arg=XSS)
    assert page.locator("#main script").count() == 0
    page.wait_for_timeout(2500)  # one more poll: still nothing ran
    assert page.hd_dialogs == []


def test_graph_titles_from_the_target_are_plain_text(dash: Dashboard, page: Any) -> None:
    """Issue 12 (low): graphs.json axis titles were rendered as live links."""
    link = '<a href="http://evil.example/">click</a>'
    graphs = [{"name": "acc " + link, "x_axis": link, "y_axis": "<b>y</b>",
               "series": [{"label": link, "x": [1, 2], "y": [3, 4]}]}]  # fmt: skip
    (Path(dash.ids["folder"]) / "graphs.json").write_text(json.dumps(graphs))
    page.goto(f"{dash.url}/trials/{dash.ids['completed']}")
    page.wait_for_function(
        "() => { const d = document.querySelector('#graph-0'); return d && d.data"
        " && d.data[0].x.length === 2 && d.querySelector('.xtitle'); }"
    )
    graph = page.locator("#graph-0")
    assert graph.locator("a").count() == 0  # no link anywhere in the plot
    assert link in graph.locator(".xtitle").text_content()
    assert "<b>y</b>" in graph.locator(".ytitle").text_content()


def test_graph_values_from_the_target_are_plain_text(dash: Dashboard, page: Any) -> None:
    """graphs.json category values (x or y strings) become tick labels and hover text:
    Plotly renders <a href>, <b> … in them unless they are escaped."""
    link = '<a href="http://evil.example/">click</a>'
    graphs = [
        {"name": "cats", "series": [{"label": "s", "x": [link, "<b>bold</b>", "a &amp; b"],
                                     "y": [1, 2, 3]}]},
        {"name": "ys", "series": [{"label": "t", "x": [1, 2], "y": ["<i>low</i>", link]}]},
    ]  # fmt: skip
    (Path(dash.ids["folder"]) / "graphs.json").write_text(json.dumps(graphs))
    page.goto(f"{dash.url}/trials/{dash.ids['completed']}")
    page.wait_for_function(
        "() => ['#graph-0 .xtick text', '#graph-1 .ytick text']"
        ".every((sel) => document.querySelector(sel))"
    )
    plots = page.locator("#graphs")
    assert plots.locator("a").count() == 0  # no link anywhere in the plots
    assert page.evaluate("document.querySelectorAll('#graphs [*|href]').length") == 0
    assert plots.locator("b, i").count() == 0
    xticks = page.locator("#graph-0 .xtick text").all_text_contents()
    assert xticks == [link, "<b>bold</b>", "a &amp; b"]  # as written, markup and all
    yticks = page.locator("#graph-1 .ytick text").all_text_contents()
    assert yticks == ["<i>low</i>", link]


def _boxes_overlap(a: dict[str, float], b: dict[str, float], slack: float = 0.5) -> bool:
    """Whether two client rectangles intersect (by more than ``slack`` pixels)."""
    return (
        min(a["right"], b["right"]) - max(a["left"], b["left"]) > slack
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > slack
    )


_RECT = "(e) => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width}; }"  # noqa: E501


@pytest.mark.parametrize("width", [1280, 640])
def test_the_toolbar_does_not_cover_the_titles(dash: Dashboard, page: Any, width: int) -> None:
    """Every plot of the experiment pages: Plotly's toolbar (modebar, top right) and the
    title (and the detail line under it) do not intersect, wide or narrow."""
    page.set_viewport_size({"width": width, "height": 900})
    for name, plots in (
        ("exp", ["history", "parallel", "importances", "intermediate", "slices-plot"]),
        ("multi", ["pareto"]),
    ):
        page.goto(f"{dash.url}/experiments/{name}")
        page.wait_for_function(
            "(ids) => ids.every((id) => { const d = document.getElementById(id);"
            " return d && d.querySelector('.modebar') && d.querySelector('.gtitle'); })",
            arg=plots,
        )
        for plot in plots:
            div = page.locator("#" + plot)
            div.hover()  # the toolbar shows
            bar = div.locator(".modebar").evaluate(_RECT)
            assert bar["width"] > 0, plot
            titles = div.locator(".gtitle, .annotation-text")
            assert titles.count() >= 1
            for k in range(titles.count()):
                box = titles.nth(k).evaluate(_RECT)
                text = titles.nth(k).text_content()
                assert not _boxes_overlap(bar, box), (plot, text, bar, box)


def _parallel_labels(page: Any, labels: list[str]) -> list[dict[str, Any]]:
    """The client rectangles of the SVG texts in #parallel that read one of ``labels``."""
    return list(
        page.evaluate(
            """(labels) => [...document.querySelectorAll('#parallel text')]
                .filter((t) => labels.includes(t.textContent))
                .map((t) => { const r = t.getBoundingClientRect();
                  return {text: t.textContent, left: r.left, right: r.right,
                          top: r.top, bottom: r.bottom}; })""",
            labels,
        )
    )


def test_parallel_coordinate_labels_do_not_overlap(dash: Dashboard, page: Any) -> None:
    """Eight parameters with long-ish names: the axis labels, in the SVG view and in
    Plotly's WebGL parcoords, do not overlap one another (nor the toolbar)."""
    from hyperdock import hp

    names = ["learning_rate", "weight_decay", "dropout_rate", "batch_size_log",
             "hidden_units", "warmup_steps", "momentum_beta", "label_smooth"]  # fmt: skip
    space = {n: hp.uniform(n, 0, 1) for n in names}
    runs = [
        ({n: ((i * (k + 3)) % 11) / 10 for k, n in enumerate(names)}, i / 12) for i in range(12)
    ]
    _experiment(dash.store, "wide", space, runs)
    page.goto(f"{dash.url}/experiments/wide")
    page.wait_for_function(
        "() => { const d = document.querySelector('#parallel');"
        " return d && d.data && d.dataset.dimensions; }"
    )
    shown = int(page.locator("#parallel").get_attribute("data-dimensions"))
    assert shown >= 6
    for view in ("svg", "webgl"):
        if view == "webgl":
            page.click("#parallel-switch")
            page.wait_for_function(
                "() => document.querySelector('#parallel').dataset.view === 'webgl'"
                " && document.querySelectorAll('#parallel .axis-title').length > 0"
            )
        boxes = _parallel_labels(page, [*names, "loss"])
        assert len(boxes) == shown, (view, boxes)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not _boxes_overlap(a, b), (view, a, b)
        bar = page.locator("#parallel .modebar").evaluate(_RECT)
        for box in boxes:
            assert not _boxes_overlap(bar, box), (view, box, bar)
        # the detail line under the axes ("the 7 most important of 8 parameters") is
        # clear of the axes' numbers
        texts = page.evaluate(
            f"[...document.querySelectorAll('#parallel text')]"
            f".map((t) => [t.textContent, ({_RECT})(t)])"
        )
        detail = [box for text, box in texts if text.startswith(f"the {shown - 1} most important")]
        assert len(detail) == 1, texts
        for text, box in texts:
            if box is not detail[0] and box["width"] > 0:
                assert not _boxes_overlap(detail[0], box), (view, text)


def test_intermediate_curves_use_log_y_over_two_decades(dash: Dashboard, page: Any) -> None:
    """Curves from 1000 down to 0.1 start on a log y axis (the box ticked); curves within
    a narrow span on a linear one."""
    from hyperdock import hp

    space = {"x": hp.uniform("x", 0, 1)}
    wide: list[tuple[dict[str, Any], Any]] = [
        ({"x": 0.1}, ("pruned", [(1, 1000.0), (2, 30.0), (3, 0.1)])),
        ({"x": 0.2}, ("pruned", [(1, 500.0), (2, 5.0)])),
        ({"x": 0.3}, 0.5),
    ]
    narrow: list[tuple[dict[str, Any], Any]] = [
        ({"x": 0.1}, ("pruned", [(1, 3.0), (2, 2.0)])),
        ({"x": 0.2}, ("pruned", [(1, 2.5), (2, 1.2)])),
        ({"x": 0.3}, 1.0),
    ]
    _experiment(dash.store, "curves-wide", space, wide)
    _experiment(dash.store, "curves-narrow", space, narrow)
    y_type = "document.querySelector('#intermediate').layout.yaxis.type"
    for name, expected in (("curves-wide", "log"), ("curves-narrow", "linear")):
        page.goto(f"{dash.url}/experiments/{name}")
        page.wait_for_function(
            "() => { const d = document.querySelector('#intermediate');"
            " return d && d.data && d.data.length === 2; }"
        )
        assert page.evaluate(y_type) == expected, name
        assert page.is_checked("#intermediate-logy") == (expected == "log")
        title = page.evaluate("document.querySelector('#intermediate').layout.yaxis.title.text")
        assert title == ("loss (log)" if expected == "log" else "loss")
    # the box switches the wide one to linear
    page.goto(f"{dash.url}/experiments/curves-wide")
    page.wait_for_function(
        f"() => document.querySelector('#intermediate').layout && {y_type} === 'log'"
    )
    page.uncheck("#intermediate-logy")
    page.wait_for_function(f"{y_type} === 'linear'")


def test_markup_in_parameter_values_is_plain_text_in_the_plots(dash: Dashboard, page: Any) -> None:
    """A choice value holding markup: the slices' ticks and the parallel coordinates'
    ticks (both views) read it literally, with no link in any plot."""
    from hyperdock import hp

    link = '<a href="http://evil.example/">x</a>'
    space = {"opt": hp.choice("opt", ["sgd", link]), "lr": hp.uniform("lr", 0, 1)}
    runs = [({"opt": ["sgd", link][i % 2], "lr": i / 6}, i / 6) for i in range(6)]
    _experiment(dash.store, "marked", space, runs)
    page.goto(f"{dash.url}/experiments/marked")
    page.wait_for_function(
        "() => { const d = document.querySelector('#slices-plot');"
        " return d && d.data && d.data.length === 2 && d.querySelector('.xtick text'); }"
    )
    assert page.locator("#main .plots a").count() == 0
    assert page.evaluate("document.querySelectorAll('#main .plots [*|href]').length") == 0
    ticks = page.locator("#slices-plot .xtick text, #slices-plot .x2tick text").all_text_contents()
    assert link in ticks
    assert link in page.locator("#parallel").text_content()
    page.click("#parallel-switch")
    page.wait_for_function("document.querySelectorAll('#parallel .axis-title').length > 0")
    assert page.locator("#parallel a").count() == 0
    assert link in page.locator("#parallel").text_content()


def test_the_trial_page_names_the_cluster_job(dash: Dashboard, page: Any) -> None:
    exp = dash.store.create_experiment(
        "slurmed", space={"x": [1]}, target=Target(command=("true",)), sampler="grid",
        seed=0, max_trials=1,
    )  # fmt: skip
    (trial,) = dash.store.add_trials(exp.id, [{"x": 1}])
    assert dash.store.claim("w-slurm", experiment_id=exp.id) is not None
    dash.store.finish(
        trial.id, "w-slurm", state=TrialState.COMPLETED, loss=1.0,
        result={"launcher": {"kind": "slurm", "job_id": "4242"}},
    )  # fmt: skip
    page.goto(f"{dash.url}/trials/{trial.id}")
    row = page.locator("table.kv tr", has_text="job")
    row.first.wait_for(state="visible")
    assert row.first.inner_text().split() == ["job", "slurm", "4242"]
