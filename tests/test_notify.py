"""--notify: webhooks get a JSON summary (or a Slack message) when an experiment ends."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, QUADRATIC, hd, spawn, wait_for, write

from hyperdock import notify


@dataclass
class Hook:
    """A local webhook receiver: every POST is recorded; ``status`` is the answer."""

    url: str
    posts: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    status: int = 200

    def bodies(self, path: str | None = None) -> list[Any]:
        return [body for p, _, body in self.posts if path is None or p == path]


@pytest.fixture
def hook() -> Iterator[Hook]:
    box: dict[str, Hook] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            box["hook"].posts.append((self.path, dict(self.headers), json.loads(raw)))
            self.send_response(box["hook"].status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["hook"] = Hook(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box["hook"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    write(tmp_path / "train.py", QUADRATIC)
    write(
        tmp_path / "space.py",
        """
        from hyperdock import hp
        SPACE = {"x": hp.uniform("x", -3, 3)}
    """,
    )
    write(tmp_path / "fail.py", "import sys\nprint('broken')\nsys.exit(3)\n")
    return tmp_path


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SUMMARY: dict[str, Any] = {
    "experiment": "demo",
    "state": "done",
    "event": "finished",
    "trials": {"completed": 9, "failed": 1, "queued": 0},
    "best": {"trial": 4, "number": 3, "loss": 0.125, "params": {"lr": 0.01, "opt": "adam"}},
}


# -- end to end -------------------------------------------------------------------------
def test_run_posts_the_summary_to_every_url(proj: Path, hook: Hook) -> None:
    out = hd(
        "run", "space.py", "--command", f"{PY} train.py", "--name", "q", "--max-trials", "4",
        "--seed", "1", "-q", "--notify", f"{hook.url}/hook", "--notify", f"{hook.url}/other",
        cwd=proj,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert sorted(p for p, _, _ in hook.posts) == ["/hook", "/other"]
    _, headers, body = hook.posts[0]
    assert headers["Content-Type"] == "application/json"
    assert body["experiment"] == "q"
    assert body["event"] == "finished"
    assert body["state"] == "done"
    assert body["trials"]["completed"] == 4
    assert isinstance(body["best"]["loss"], float)
    assert set(body["best"]["params"]) == {"x"}
    # The same summary `hyperdock best --json` prints, plus the event.
    best = json.loads(hd("best", "q", "--json", cwd=proj).stdout)
    assert set(body) == {*best, "event"}
    assert body["best"] == best["best"] and body["trials"] == best["trials"]


def test_a_run_without_completed_trial_notifies_failed(proj: Path, hook: Hook) -> None:
    out = hd(
        "run", "space.py", "--command", f"{PY} fail.py", "--name", "bad", "--max-trials", "2",
        "--retries", "0", "-q", "--notify", f"{hook.url}/hook", cwd=proj,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    [body] = hook.bodies()
    assert body["event"] == "failed"
    assert body["best"] is None
    assert body["trials"]["failed"] == 2


def test_cancelled_supervisor_notifies_cancelled(proj: Path, hook: Hook) -> None:
    log = proj / "supervisor.log"
    sup = spawn(
        "supervisor", "space.py", "--command", f"{PY} train.py", "--name", "c",
        "--max-trials", "5", "--poll", "0.2", "--notify", f"{hook.url}/sup",
        cwd=proj, log=log,
    )  # fmt: skip
    wait_for(lambda: hd("status", "--json", cwd=proj).stdout.count('"c"') > 0, 60, "experiment")
    assert hd("cancel", "c", cwd=proj).returncode == 0
    assert sup.wait(timeout=60) == 1, log.read_text()  # no trial completed
    [body] = hook.bodies("/sup")
    assert body["event"] == "cancelled"
    assert body["state"] == "cancelled"
    assert body["experiment"] == "c"


def test_an_unreachable_url_does_not_fail_the_run(proj: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/SECRETPATH?token=SECRETQ"
    out = hd(
        "run", "space.py", "--command", f"{PY} train.py", "--name", "u", "--max-trials", "2",
        "-q", "--notify", url, cwd=proj,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, out.stderr
    assert "notification to http://127.0.0.1:" in warnings[0]
    assert "SECRET" not in out.stderr and "/services" not in out.stderr
    assert "Best loss" in out.stdout


def test_a_bad_notify_url_is_refused_before_the_run(proj: Path) -> None:
    out = hd(
        "run", "space.py", "--command", f"{PY} train.py", "--notify", "ftp://example.org/x",
        cwd=proj,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--notify needs an http:// or https:// URL" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (proj / "results").exists()


# -- the module -------------------------------------------------------------------------
def test_slack_message_format() -> None:
    msg = notify.slack_message(SUMMARY)
    assert set(msg) == {"text", "blocks"}
    assert "demo" in msg["text"] and "0.125" in msg["text"]
    [block] = msg["blocks"]
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    text = block["text"]["text"]
    assert "*demo*" in text and "finished" in text
    assert "9 completed, 1 failed" in text  # zero counts left out
    assert "0.125" in text and "(trial 4)" in text
    assert '{"lr": 0.01, "opt": "adam"}' in text


def test_slack_message_without_best_and_with_error() -> None:
    summary = SUMMARY | {"best": None, "event": "failed", "error": "store gone"}
    text = notify.slack_message(summary)["blocks"][0]["text"]["text"]
    assert "No trial completed" in text and "store gone" in text and ":x:" in text


def test_post_in_slack_format(hook: Hook) -> None:
    assert notify.post(f"{hook.url}/services/T000/B000/XXX", SUMMARY, slack=True)
    [(path, _, body)] = hook.posts
    assert path == "/services/T000/B000/XXX"
    assert body == notify.slack_message(SUMMARY)


def test_post_plain_json_by_default(hook: Hook) -> None:
    assert notify.post(f"{hook.url}/x", SUMMARY)
    assert hook.bodies() == [SUMMARY]


def test_post_retries_then_warns_once_without_the_path(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    hook.status = 500
    with caplog.at_level(logging.DEBUG, logger="hyperdock.notify"):
        ok = notify.post(f"{hook.url}/services/T1/B2/SECRET", SUMMARY, backoff=0.01)
    assert not ok
    assert len(hook.posts) == 3  # the first attempt and 2 retries
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "HTTP 500" in warnings[0].getMessage()
    assert "SECRET" not in caplog.text and "/services" not in caplog.text


def test_slack_detection_and_safe_url() -> None:
    assert notify.is_slack("https://hooks.slack.com/services/T/B/X")
    assert notify.is_slack("https://HOOKS.slack.com/services/T/B/X")
    assert not notify.is_slack("https://example.org/hooks.slack.com")
    assert notify.safe_url("https://u:pw@hooks.slack.com/services/T/B/X?q=1") == (
        "https://hooks.slack.com"
    )
    assert notify.safe_url("http://127.0.0.1:8080/a/b") == "http://127.0.0.1:8080"
    assert notify.safe_url("not a url") == "<invalid URL>"
    assert notify.check_url("https://example.org/hook") is None
    assert notify.check_url("example.org/hook") is not None


def test_event_of() -> None:
    assert notify.event_of(SUMMARY) == "finished"
    assert notify.event_of(SUMMARY, error=True) == "failed"
    assert notify.event_of(SUMMARY | {"trials": {"completed": 0}}) == "failed"
    assert notify.event_of(SUMMARY | {"state": "cancelled"}) == "cancelled"


def test_a_supervisor_that_dies_notifies_failed(
    proj: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from hyperdock.cli import cli
    from hyperdock.supervisor import Supervisor

    def boom(self: Supervisor, stop: Any = None) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(Supervisor, "run", boom)
    monkeypatch.chdir(proj)
    monkeypatch.delenv("HYPERDOCK_STORE", raising=False)
    result = CliRunner().invoke(
        cli,
        ["supervisor", "space.py", "--command", f"{PY} train.py", "--name", "d",
         "--notify", f"{hook.url}/err"],
    )  # fmt: skip
    assert isinstance(result.exception, RuntimeError)  # the error is not swallowed
    [body] = hook.bodies("/err")
    assert body["event"] == "failed"
    assert body["error"] == "boom"
    assert body["experiment"] == "d"
