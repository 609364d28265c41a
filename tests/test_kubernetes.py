"""The Kubernetes launcher on a real one-node cluster (``.ci/k8s/up.sh``): image targets
as Jobs with the trial folder on a hostPath volume, GPU limits against the node's
capacity, cancel deletes the Job, an image that does not exist fails with the engine's
reason, and a new worker adopts the Jobs of a worker killed with kill -9."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from clihelp import hd, spawn, stop_all, wait_for

from hyperdock.storage import open_store
from hyperdock.trial import TrialState

pytestmark = [pytest.mark.slow, pytest.mark.docker]

#: Writes its own marker and its loss from params.json (x), after SLEEP seconds.
TARGET = (
    "sh -c 'echo trial $HYPERDOCK_TRIAL_ID started; echo $HYPERDOCK_TRIAL_ID "
    ">> /hyperdock/started; date +%s > /hyperdock/span; sleep SLEEP; "
    "date +%s >> /hyperdock/span; "
    "sed -e s/[^0-9]//g /hyperdock/params.json > /hyperdock/loss.json'"
)


@pytest.fixture
def ns(k8s_cluster: Any) -> str:
    """A namespace of this test's own: its Jobs and pods are the only ones there."""
    return str(k8s_cluster.new_namespace("hd-launch"))


@pytest.fixture
def proj(tmp_path: Path, k8s_cluster: Any, k8s_busybox_image: str) -> Path:
    (tmp_path / "space.json").write_text(json.dumps({"x": [1, 2, 3, 4]}))
    (tmp_path / "results").mkdir()
    return tmp_path


def _k8s_args(proj: Path, ns: str) -> list[str]:
    return [
        "--launcher", "kubernetes", "--namespace", ns,
        "--k8s-volume", f"hostPath:{proj / 'results'}", "--k8s-pull-policy", "Never",
    ]  # fmt: skip


def _env(cluster: Any) -> dict[str, str]:
    return {"KUBECONFIG": cluster.kubeconfig}


def _trials(cwd: Path, name: str) -> list[dict[str, Any]]:
    out = hd("trials", name, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def _jobs(cluster: Any, ns: str) -> list[Any]:
    return list(cluster.batch.list_namespaced_job(ns).items)


def test_image_targets_run_as_jobs(
    proj: Path, ns: str, k8s_cluster: Any, k8s_busybox_image: str
) -> None:
    out = hd(
        "run", "space.json", "--image", k8s_busybox_image, "--command",
        TARGET.replace("SLEEP", "0"), "--name", "jobs", "--workers", "4", "-q",
        *_k8s_args(proj, ns), cwd=proj, env=_env(k8s_cluster), timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    trials = _trials(proj, "jobs")
    assert sorted(t["loss"] for t in trials) == [1, 2, 3, 4]
    for t in trials:
        assert t["result"]["launcher"]["kind"] == "kubernetes"
        log = (Path(t["result"]["folder"]) / "docker_log.txt").read_text()
        assert f"trial {t['id']} started" in log
    wait_for(lambda: _jobs(k8s_cluster, ns) == [], 60, "ended Jobs to be deleted")


def test_a_trial_waits_for_a_gpu_then_runs(
    proj: Path, ns: str, k8s_cluster: Any, k8s_busybox_image: str
) -> None:
    k8s_cluster.set_gpu_capacity(0)
    url = f"sqlite:///{proj / 'hyperdock.db'}"
    run = spawn(
        "run", "space.json", "--image", k8s_busybox_image, "--command",
        TARGET.replace("SLEEP", "1"), "--name", "gpu", "--max-trials", "2",
        "--gpus-per-trial", "1", "--workers", "2", "--store", url, "-q",
        *_k8s_args(proj, ns), cwd=proj, env=_env(k8s_cluster),
        log=proj / "run.log",
    )  # fmt: skip
    try:

        def unschedulable() -> bool:
            pods = k8s_cluster.core.list_namespaced_pod(ns).items
            conditions = [c for p in pods for c in (p.status.conditions or [])]
            return sum("Insufficient nvidia.com/gpu" in (c.message or "") for c in conditions) == 2

        wait_for(unschedulable, 120, "the pods to wait for a GPU")
        pods = k8s_cluster.core.list_namespaced_pod(ns).items
        limits = [p.spec.containers[0].resources.limits for p in pods]
        assert all(lim["nvidia.com/gpu"] == "1" for lim in limits)
        k8s_cluster.set_gpu_capacity(1)
        assert run.wait(timeout=300) == 0, (proj / "run.log").read_text()
    finally:
        k8s_cluster.set_gpu_capacity(None)
        stop_all([run])
    trials = _trials(proj, "gpu")
    assert [t["state"] for t in trials] == ["completed", "completed"]
    # One GPU: the two pods ran one after the other.
    spans = sorted(
        [int(x) for x in (Path(t["result"]["folder"]) / "span").read_text().split()] for t in trials
    )
    assert spans[0][1] <= spans[1][0], spans


def test_cancel_deletes_the_job(
    proj: Path, ns: str, k8s_cluster: Any, k8s_busybox_image: str
) -> None:
    url = f"sqlite:///{proj / 'hyperdock.db'}"
    run = spawn(
        "run", "space.json", "--image", k8s_busybox_image, "--command",
        TARGET.replace("SLEEP", "300"), "--name", "long", "--max-trials", "1",
        "--store", url, "-q", *_k8s_args(proj, ns), cwd=proj,
        env=_env(k8s_cluster), log=proj / "run.log",
    )  # fmt: skip
    try:
        wait_for(lambda: any(proj.glob("results/*/*/started")), 120, "the pod to start")
        assert _jobs(k8s_cluster, ns)
        assert hd("cancel", "long", "--store", url, cwd=proj).returncode == 0
        wait_for(lambda: _jobs(k8s_cluster, ns) == [], 60, "the Job to be deleted")
        run.wait(timeout=60)
    finally:
        stop_all([run])
    (trial,) = _trials(proj, "long")
    assert trial["state"] == "cancelled"


def test_an_image_that_does_not_exist_fails_with_the_engines_reason(
    proj: Path, ns: str, k8s_cluster: Any
) -> None:
    out = hd(
        "run", "space.json", "--image", "hyperdock-no-such-image:1", "--name", "noimg",
        "--max-trials", "1", "--retries", "0", "-q", *_k8s_args(proj, ns),
        cwd=proj, env=_env(k8s_cluster), timeout=300,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    (trial,) = _trials(proj, "noimg")
    assert trial["state"] == "failed"
    assert "the image cannot be pulled (ErrImageNeverPull)" in trial["error"]
    wait_for(lambda: _jobs(k8s_cluster, ns) == [], 60, "the Job to be deleted")


def test_a_command_target_is_refused(proj: Path, ns: str, k8s_cluster: Any) -> None:
    out = hd(
        "run", "space.json", "--command", "true", "--name", "cmd", "--max-trials", "1",
        "--retries", "0", "-q", *_k8s_args(proj, ns), cwd=proj,
        env=_env(k8s_cluster), timeout=120,
    )  # fmt: skip
    assert out.returncode == 1
    (trial,) = _trials(proj, "cmd")
    assert "the Kubernetes launcher runs image targets" in trial["error"]


def test_a_new_worker_adopts_the_jobs_of_a_killed_worker(
    proj: Path, ns: str, k8s_cluster: Any, k8s_busybox_image: str
) -> None:
    url = f"sqlite:///{proj / 'hyperdock.db'}"
    sup = spawn(
        "supervisor", "space.json", "--image", k8s_busybox_image, "--command",
        TARGET.replace("SLEEP", "8"), "--name", "adopt", "--lease-timeout", "4",
        "--store", url, cwd=proj, log=proj / "sup.log",
    )  # fmt: skip
    args = ["worker", "--parallelism", "4", "--store", url, "--heartbeat", "0.5"]
    first = spawn(*args, *_k8s_args(proj, ns), cwd=proj, env=_env(k8s_cluster),
                  log=proj / "worker1.log")  # fmt: skip
    second = None
    try:
        wait_for(lambda: len(list(proj.glob("results/*/*/started"))) >= 2, 120, "two pods")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = spawn(*args, *_k8s_args(proj, ns), cwd=proj,
                       env=_env(k8s_cluster), log=proj / "worker2.log")  # fmt: skip
        assert sup.wait(timeout=300) == 0, (proj / "sup.log").read_text()
    finally:
        stop_all([p for p in (sup, first, second) if p is not None])
    with open_store(url) as st:
        trials = st.list_trials(st.get_experiment("adopt").id)
    assert all(t.state is TrialState.COMPLETED for t in trials)
    runs = Counter(line for f in proj.glob("results/*/*/started") for line in f.read_text().split())
    assert set(runs.values()) == {1}, runs
    assert "adopting Kubernetes Job" in (proj / "worker2.log").read_text()
