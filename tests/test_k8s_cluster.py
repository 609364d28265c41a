"""The Kubernetes test cluster itself (``.ci/k8s/up.sh``, fixture ``k8s_cluster``): what
a Kubernetes launcher relies on works against a real API server running real pods.

Jobs (batch/v1, backoffLimit 0, restartPolicy Never) run the busybox test image, write
into a hostPath directory the host reads, report their exit code in the container status
and their output through the pod log; the scheduler counts ``nvidia.com/gpu``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

#: Where the trial folder is mounted in the pods.
MOUNT = "/trial"


def _job(
    cluster: Any,
    image: str,
    script: str,
    host_dir: Path | None = None,
    gpus: int = 0,
) -> str:
    """Create a one-pod Job running ``sh -c script``; return its name."""
    from kubernetes import client

    name = f"smoke-{uuid.uuid4().hex[:8]}"
    mounts, volumes = None, None
    if host_dir is not None:
        mounts = [client.V1VolumeMount(name="trial", mount_path=MOUNT)]
        volumes = [
            client.V1Volume(
                name="trial",
                host_path=client.V1HostPathVolumeSource(path=str(host_dir), type="Directory"),
            )
        ]
    resources = (
        client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}) if gpus else None
    )
    container = client.V1Container(
        name="trial",
        image=image,
        image_pull_policy="Never",
        command=["sh", "-c", script],
        volume_mounts=mounts,
        resources=resources,
    )
    pod_spec = client.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        volumes=volumes,
        automount_service_account_token=False,
        termination_grace_period_seconds=5,
    )
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name=name, labels={"hyperdock/test": "smoke"}),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"hyperdock/test": "smoke"}), spec=pod_spec
            ),
        ),
    )
    cluster.batch.create_namespaced_job(cluster.namespace, job)
    return name


def _pods(cluster: Any, job: str) -> list[Any]:
    return list(
        cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"job-name={job}").items
    )


def _wait_finished(cluster: Any, job: str, timeout: float = 120) -> tuple[Any, Any]:
    """Wait until the Job succeeded or failed; return (job status, its pod)."""
    deadline = time.monotonic() + timeout
    while True:
        status = cluster.batch.read_namespaced_job_status(job, cluster.namespace).status
        if (status.succeeded or 0) + (status.failed or 0) > 0:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"job {job} did not finish in {timeout}s: {_pods(cluster, job)}")
        time.sleep(0.2)
    pods = _pods(cluster, job)
    assert len(pods) == 1, pods
    return status, pods[0]


def _wait_terminated(cluster: Any, pod: Any, timeout: float = 30) -> Any:
    """The terminated state of the pod's container (the Job may report before the pod)."""
    deadline = time.monotonic() + timeout
    while True:
        pod = cluster.core.read_namespaced_pod(pod.metadata.name, cluster.namespace)
        statuses = pod.status.container_statuses or []
        if statuses and statuses[0].state.terminated is not None:
            return statuses[0].state.terminated
        if time.monotonic() > deadline:
            pytest.fail(f"pod {pod.metadata.name} has no terminated container: {pod.status}")
        time.sleep(0.2)


@pytest.mark.parametrize("exit_code", [0, 7])
def test_job_exit_code_log_and_host_path(
    k8s_cluster: Any, k8s_busybox_image: str, tmp_path: Path, exit_code: int
) -> None:
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "params.json").write_text('{"x": 1}')
    started = time.monotonic()
    job = _job(
        k8s_cluster,
        k8s_busybox_image,
        f"echo hello from the pod; cat {MOUNT}/params.json; echo; "
        f"echo '{{\"loss\": 0.25}}' > {MOUNT}/loss.json; exit {exit_code}",
        host_dir=trial,
    )
    status, pod = _wait_finished(k8s_cluster, job)
    elapsed = time.monotonic() - started
    if exit_code == 0:
        assert status.succeeded == 1 and not status.failed
    else:
        assert status.failed == 1 and not status.succeeded
    terminated = _wait_terminated(k8s_cluster, pod)
    assert terminated.exit_code == exit_code
    log = k8s_cluster.core.read_namespaced_pod_log(pod.metadata.name, k8s_cluster.namespace)
    assert log.splitlines()[:2] == ["hello from the pod", '{"x": 1}'], log
    assert (trial / "loss.json").read_text().strip() == '{"loss": 0.25}'
    print(f"job {job}: exit {terminated.exit_code} in {elapsed:.1f}s")


def _scheduling_message(pod: Any) -> str:
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return str(condition.message or "")
    return ""


def test_gpu_requests_wait_for_capacity(k8s_cluster: Any, k8s_busybox_image: str) -> None:
    k8s_cluster.set_gpu_capacity(1)
    try:
        job = _job(k8s_cluster, k8s_busybox_image, "echo got my gpus", gpus=2)
        deadline = time.monotonic() + 60
        while True:
            pods = _pods(k8s_cluster, job)
            message = _scheduling_message(pods[0]) if pods else ""
            if "Insufficient nvidia.com/gpu" in message:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"pod of {job} not reported unschedulable: {pods}")
            time.sleep(0.2)
        assert pods[0].status.phase == "Pending"
        time.sleep(2)  # still Pending: nothing else frees the capacity
        assert _pods(k8s_cluster, job)[0].status.phase == "Pending"

        k8s_cluster.set_gpu_capacity(2)
        status, pod = _wait_finished(k8s_cluster, job, timeout=120)
        assert status.succeeded == 1
        log = k8s_cluster.core.read_namespaced_pod_log(pod.metadata.name, k8s_cluster.namespace)
        assert log.strip() == "got my gpus"
    finally:
        k8s_cluster.set_gpu_capacity(None)
