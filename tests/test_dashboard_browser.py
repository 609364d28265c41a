"""The dashboard in a real browser: Chromium (the Debian package at /usr/bin/chromium)
driven by Python playwright. Nothing is downloaded (never ``playwright install``).

Outside CI a missing Chromium or playwright skips these tests; with ``CI=true`` it fails
them (see ``conftest.unavailable``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import wait_for
from conftest import unavailable
from test_dashboard_api import TOKEN, XSS, fill_store

from hyperdock.dashboard import make_dashboard_server
from hyperdock.storage import Store, open_store
from hyperdock.study import Objectives
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
    assert "(1000 of " + str(done) in page.evaluate(
        "document.querySelector('#parallel').layout.title.text"
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


def test_slices_of_log_scaled_parameters_get_a_log_axis(dash: Dashboard, page: Any) -> None:
    exp = dash.store.create_experiment(
        "logs",
        space=dash.store.get_experiment("exp").space,
        target=Target(command=("true",)),
        sampler="random",
        seed=0,
        max_trials=40,
        meta={"objectives": Objectives().to_meta(), "pruner": "none"},
    )
    # lr log-uniform over 1e-5..1e-1; width uniform over 1..400 (also over two decades)
    params = [{"lr": 10 ** (-5 + 4 * i / 39), "width": 1 + 399 * i / 39} for i in range(40)]
    dash.store.add_trials(exp.id, params)
    while (trial := dash.store.claim("w-logs", experiment_id=exp.id)) is not None:
        dash.store.finish(trial.id, "w-logs", state=TrialState.COMPLETED, loss=trial.params["lr"])
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
