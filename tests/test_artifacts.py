"""The artifact store, the same cases for both backends (``file://`` and ``s3://`` on a
real S3 server over HTTP, see ``s3_server`` in conftest): every attempt's files with the
layout, fetching them (``hyperdock artifacts --get``, the dashboard), a symlink out of
the trial folder never uploaded nor served, and delete."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clihelp import hd
from test_dashboard_api import call, post

import hyperdock
from hyperdock.artifacts import open_artifacts
from hyperdock.dashboard import create_app
from hyperdock.storage import open_store

#: A target whose first attempt fails (another last line each time, so it is retried)
#: and whose second completes; both write out/ files and plant a symlink to a secret.
TARGET = """\
import json, os, sys
d = os.environ["HYPERDOCK_DIR"]
mark = os.path.join(os.environ["MARKS"], os.path.basename(os.path.dirname(d)))
attempt = "1" if os.path.exists(mark) else "0"
open(mark, "w").close()
os.makedirs(os.path.join(d, "out", "sub"), exist_ok=True)
with open(os.path.join(d, "out", "model.bin"), "wb") as fh:
    fh.write(os.urandom(300_000))
with open(os.path.join(d, "out", "sub", "note.txt"), "w") as fh:
    fh.write("attempt " + attempt)
os.symlink(os.environ["SECRET"], os.path.join(d, "out", "secret.txt"))
with open(os.path.join(d, "graphs.json"), "w") as fh:
    json.dump([{"data": [{"y": [1, 2, 3]}]}], fh)
print("attempt", attempt)
if attempt == "0":
    sys.exit(3)
json.dump({"loss": 0.5}, open(os.path.join(d, "loss.json"), "w"))
"""


@pytest.fixture(params=["file", "s3"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(``--artifacts`` URL, endpoint) for each backend."""
    if request.param == "file":
        return f"file://{tmp_path / 'shared'}", None
    server = request.getfixturevalue("s3_server")
    return f"s3://{server.new_bucket()}/runs", server.endpoint


def _run(tmp_path: Path, url: str, endpoint: str | None, name: str = "arts") -> Path:
    """Run experiment ``name`` (one trial, two attempts) with this artifact store."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    (tmp_path / "target.py").write_text(TARGET)
    db = tmp_path / "h.db"
    _run_api(tmp_path, url, endpoint, name, secret, db)
    return db


def _run_api(
    tmp_path: Path, url: str, endpoint: str | None, name: str, secret: Path, db: Path
) -> None:
    exp = hyperdock.Experiment.open(
        name,
        store=f"sqlite:///{db}",
        space={"x": hyperdock.hp.choice("x", [1])},
        target=hyperdock.Command([sys.executable, str(tmp_path / "target.py")]),
        max_trials=1,
        retries=2,
    )
    with exp:
        exp.run(
            results=tmp_path / "results",
            env={"SECRET": str(secret), "MARKS": str(tmp_path)},
            artifacts=url,
            artifacts_endpoint=endpoint,
        )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_attempt_stored_fetched_and_served(
    tmp_path: Path, artifacts: tuple[str, str | None]
) -> None:
    url, endpoint = artifacts
    db = _run(tmp_path, url, endpoint)
    store = open_artifacts(url, endpoint=endpoint)
    keys = {info.key for info in store.list("arts/")}
    for attempt in (1, 2):
        for name in ("params.json", "log.txt", "graphs.json", "out/model.bin", "out/sub/note.txt"):
            assert f"arts/1/{attempt}/{name}" in keys, sorted(keys)
    assert "arts/1/2/loss.json" in keys and "arts/1/1/loss.json" not in keys
    # The symlink to a file outside the trial folder is never uploaded.
    assert not [k for k in keys if "secret" in k], sorted(keys)
    assert b"attempt 1" in b"".join(store.iter_bytes("arts/1/2/out/sub/note.txt"))

    # hyperdock artifacts lists and fetches, byte for byte.
    local = next((tmp_path / "results").glob("arts-1/*/loss.json")).parent / "out" / "model.bin"
    original = local.read_bytes()
    env = {"HYPERDOCK_STORE": ""}
    listed = hd("artifacts", "arts", "--store", f"sqlite:///{db}", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "2/out/model.bin" in listed.stdout and "secret" not in listed.stdout
    got = hd(
        "artifacts", "arts", "1", "--get", "out/model.bin", "-o", str(tmp_path / "m.bin"),
        "--store", f"sqlite:///{db}", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert _sha((tmp_path / "m.bin").read_bytes()) == _sha(original)
    refused = hd(
        "artifacts", "arts", "1", "--get", "../../x", "--store", f"sqlite:///{db}",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert refused.returncode != 0 and "Traceback" not in refused.stderr

    # The dashboard: listed, downloaded through the server; nothing outside the trial.
    with open_store(f"sqlite:///{db}") as st:
        app = create_app(st)
        detail = call(app, "/api/trials/1").data
        paths = {a["path"] for a in detail["artifacts"]}
        assert "2/out/model.bin" in paths and not [p for p in paths if "secret" in p]
        reply = call(app, "/api/trials/1/artifacts/2/out/model.bin")
        assert reply.status == 200 and _sha(reply.body) == _sha(original)
        assert reply.headers["Content-Disposition"].startswith("attachment")
        for bad in ("2/out/secret.txt", "../2/out/model.bin", "2/../../x", "%2e%2e/1/2/log.txt"):
            assert call(app, f"/api/trials/1/artifacts/{bad}").status == 404, bad

        # Its folder gone from this host: out/ and graphs.json come from the store.
        import shutil

        shutil.rmtree(tmp_path / "results")
        detail = call(app, "/api/trials/1").data
        assert detail["folder_here"] is False
        assert {f["path"] for f in detail["files"]} == {"model.bin", "sub/note.txt"}
        assert detail["graphs"] == [{"data": [{"y": [1, 2, 3]}]}]
        reply = call(app, "/api/trials/1/files/model.bin")
        assert reply.status == 200 and _sha(reply.body) == _sha(original)


def test_delete_removes_artifacts_unless_kept(
    tmp_path: Path, artifacts: tuple[str, str | None]
) -> None:
    url, endpoint = artifacts
    db = _run(tmp_path, url, endpoint, name="gone")
    _run_api(tmp_path, url, endpoint, "kept", tmp_path / "secret.txt", db)
    store = open_artifacts(url, endpoint=endpoint)
    count: Callable[[str], int] = lambda prefix: len(store.list(prefix))  # noqa: E731
    before = count("gone/")
    assert before > 0 and count("kept/") > 0
    env = {"HYPERDOCK_STORE": ""}
    asked = hd("delete", "gone", "--store", f"sqlite:///{db}", cwd=tmp_path, env=env)
    assert asked.returncode != 0 and count("gone/") == before  # no confirmation: nothing
    done = hd("delete", "gone", "--yes", "--store", f"sqlite:///{db}", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert f"{before} stored file(s) deleted" in done.stdout
    assert count("gone/") == 0 and count("kept/") > 0
    kept = hd(
        "delete", "kept", "--yes", "--keep-artifacts", "--store", f"sqlite:///{db}",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    assert count("kept/") > 0


def test_dashboard_delete_removes_artifacts(
    tmp_path: Path, artifacts: tuple[str, str | None]
) -> None:
    url, endpoint = artifacts
    db = _run(tmp_path, url, endpoint, name="dash")
    store = open_artifacts(url, endpoint=endpoint)
    assert store.list("dash/")
    with open_store(f"sqlite:///{db}") as st:
        reply = post(
            create_app(st), "/api/experiments/dash/delete", {}, {"X-Requested-With": "hyperdock"}
        )
        data: Any = reply.data
    assert reply.status == 200, data
    assert data["artifacts_deleted"] > 0
    assert store.list("dash/") == []


def test_no_artifact_store_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    hyperdock.Experiment.open(
        "plain", store=f"sqlite:///{db}", space={"x": hyperdock.hp.choice("x", [1])}
    ).close()
    env = {"HYPERDOCK_STORE": ""}
    out = hd("artifacts", "plain", "--store", f"sqlite:///{db}", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert "has no artifact store" in out.stderr and "Traceback" not in out.stderr
