"""S3 over real HTTP (moto server): a server that is down during the upload. The
trial completes; the upload happens once the server is back, exactly once; a worker
stopped before that leaves a journal the next worker on the results folder uploads."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from clihelp import wait_for

import hyperdock
from hyperdock.artifacts import open_artifacts
from hyperdock.artifacts.uploader import JOURNAL_DIR
from hyperdock.storage import open_store
from hyperdock.trial import TrialState
from hyperdock.worker import Worker

TARGET = """\
import json, os
d = os.environ["HYPERDOCK_DIR"]
with open(os.path.join(d, "out", "weights.bin"), "wb") as fh:
    fh.write(b"w" * 5000)
json.dump({"loss": 1.0}, open(os.path.join(d, "loss.json"), "w"))
"""


def _experiment(tmp_path: Path, url: str) -> tuple[Any, str]:
    (tmp_path / "t.py").write_text(TARGET)
    db = f"sqlite:///{tmp_path / 'h.db'}"
    exp = hyperdock.Experiment.open(
        "down",
        store=db,
        space={"x": hyperdock.hp.uniform("x", 0, 1)},
        target=hyperdock.Command([sys.executable, str(tmp_path / "t.py")]),
        max_trials=1,
    )
    exp.enqueue({"x": 0.5})
    from hyperdock.artifacts.settings import save_data_settings

    save_data_settings(exp.store, exp.record, {"artifacts": url})
    exp.close()
    return exp, db


def _down(tmp_path: Path, s3_server: Any) -> tuple[str, str, str]:
    """A bucket, an experiment storing its files there, and the server stopped."""
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/p"
    _, db = _experiment(tmp_path, url)
    s3_server.stop()
    return bucket, url, db


def test_server_down_then_back_uploads_once(tmp_path: Path, s3_server: Any) -> None:
    bucket, url, db = _down(tmp_path, s3_server)
    try:
        with open_store(db) as st:
            worker = Worker(
                st,
                results_dir=tmp_path / "results",
                artifacts_endpoint=s3_server.endpoint,
                artifacts=url,
                poll_interval=0.2,
            )
            thread = threading.Thread(target=worker.run)
            thread.start()
            try:
                wait_for(
                    lambda: st.get_trial(1).state is TrialState.COMPLETED, 60, "trial completed"
                )
                # The result is saved while the server is down; the upload waits.
                journals = tmp_path / "results" / JOURNAL_DIR
                wait_for(lambda: any(journals.glob("*.json")), 10, "a pending upload")
            finally:
                s3_server.start()  # same port, empty: the bucket is created again
                s3_server.new_bucket(bucket)
            store = open_artifacts(url, endpoint=s3_server.endpoint)
            wait_for(lambda: not any(journals.glob("*.json")), 90, "the upload after the outage")
            keys = {i.key for i in store.list("down/1/1/")}
            assert {
                "down/1/1/params.json",
                "down/1/1/loss.json",
                "down/1/1/out/weights.bin",
            } <= keys
            assert b"".join(store.iter_bytes("down/1/1/out/weights.bin")) == b"w" * 5000
            worker.stop()
            thread.join(60)
    finally:
        if s3_server.proc.poll() is not None:
            s3_server.start()
    # Each file went up once, not once per try.
    for name in ("params.json", "loss.json", "out/weights.bin"):
        assert s3_server.puts(f"/{bucket}/p/down/1/1/{name}") == 1, name


def test_journal_resumed_by_the_next_worker(tmp_path: Path, s3_server: Any) -> None:
    bucket, url, db = _down(tmp_path, s3_server)
    try:
        with open_store(db) as st:
            worker = Worker(
                st, results_dir=tmp_path / "results", burst=True, artifacts=url,
                artifacts_endpoint=s3_server.endpoint,
            )  # fmt: skip
            worker.upload_drain = 1.0
            worker.run()  # burst: ends with the queue; the upload stays in the journal
            assert st.get_trial(1).state is TrialState.COMPLETED
    finally:
        s3_server.start()
    s3_server.new_bucket(bucket)
    journals = tmp_path / "results" / JOURNAL_DIR
    assert len(list(journals.glob("*.json"))) == 1
    with open_store(db) as st:
        Worker(
            st, results_dir=tmp_path / "results", burst=True, artifacts=url,
            artifacts_endpoint=s3_server.endpoint,
        ).run()  # fmt: skip
    assert not list(journals.glob("*.json"))
    store = open_artifacts(url, endpoint=s3_server.endpoint)
    assert "down/1/1/out/weights.bin" in {i.key for i in store.list("down/")}
    assert s3_server.puts(f"/{bucket}/p/down/1/1/out/weights.bin") == 1
