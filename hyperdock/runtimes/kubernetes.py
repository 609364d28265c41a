"""The Kubernetes launcher: each attempt of an image target is one ``batch/v1`` Job.

The Job runs the target's image once (``backoffLimit: 0``, ``restartPolicy: Never``) in
``namespace``, labelled with the experiment, trial, attempt and worker (annotations keep
what labels cannot: the trial folder). The trial folder reaches the pod at
``/hyperdock`` through a volume the user names: ``pvc:CLAIM`` (the claim holds the
worker's results folder; the attempt's folder is mounted with ``subPath``) or
``hostPath:DIR`` (one-node clusters: DIR is the results folder on the node). The data
folder is mounted at ``/data`` the same way, read-only.

The experiment's resources become requests and limits (``nvidia.com/gpu`` for GPUs) and
``/dev/shm`` an in-memory ``emptyDir``. A pod template (``--k8s-pod-template FILE``, a
YAML pod or pod spec) is merged under Hyperdock's fields: node selectors, tolerations,
service accounts, image pull secrets.

One watcher thread follows the pods of every tracked Job through a single watch.
The pod's output is streamed into ``docker_log.txt`` while it runs. Stop, cancel and
prune delete the Job with foreground propagation (the pod gets SIGTERM and its grace
period). A pod that cannot be scheduled fails the attempt with the scheduler's reason
after ``pending_timeout``; one whose image cannot be pulled, after ``pull_timeout``.
Command targets are refused: a command has no image to run in a pod.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from hyperdock import trialfs
from hyperdock.errors import ConfigError, HostError, TargetError
from hyperdock.runtimes.base import (
    Execution,
    RunContext,
    RunOutcome,
    Runtime,
    container_checkpoint,
    trial_env,
)

__all__ = ["KubernetesExecution", "KubernetesRuntime"]

log = logging.getLogger(__name__)

#: The pod's output, in the trial folder (as for local Docker targets).
LOG_NAME = "docker_log.txt"
#: Labels and annotations Hyperdock puts on its Jobs.
MANAGED = "hyperdock.io/managed"
TRIAL = "hyperdock.io/trial"
ATTEMPT = "hyperdock.io/attempt"
WORKER = "hyperdock.io/worker"
EXPERIMENT = "hyperdock.io/experiment"
FOLDER = "hyperdock.io/folder"
#: Container waiting reasons that mean the image will not come.
_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
#: ... and those that will not get better by waiting at all.
_FINAL_PULL_FAILURES = {"ErrImageNeverPull", "InvalidImageName"}


def _label(value: str) -> str:
    """A valid label value (63 characters of ``[A-Za-z0-9_.-]``, alphanumeric ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.") or "x"


def parse_volume(spec: str | None, option: str) -> tuple[str, str] | None:
    """``pvc:CLAIM`` or ``hostPath:DIR`` → ``(kind, name)``.

    Raises:
        ConfigError: any other form.
    """
    if not spec:
        return None
    kind, _, name = spec.partition(":")
    kind = {"pvc": "pvc", "hostpath": "hostPath"}.get(kind.lower(), "")
    if not kind or not name:
        raise ConfigError(f"{option} must be pvc:CLAIM or hostPath:DIR, not {spec!r}")
    return kind, name


class _PodState:
    """What the watcher saw of one Job's pod."""

    __slots__ = ("exit_code", "message", "phase", "pod", "running", "since", "waiting")

    def __init__(self) -> None:
        self.phase = "Pending"
        self.pod = ""  # the pod's name, once seen
        self.running = threading.Event()  # set once the pod has left Pending
        self.exit_code: int | None = None
        self.waiting = ""  # the container's waiting reason, or "Unschedulable"
        self.message = ""
        self.since = time.monotonic()


class _Watcher:
    """Follows the pods of every tracked Job through one watch of the namespace's
    Hyperdock pods (no polling: a pod's end is seen as it happens); after a broken or
    expired watch it lists them once and watches again."""

    def __init__(self, runtime: KubernetesRuntime) -> None:
        self._runtime = runtime
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._states: dict[str, _PodState] = {}
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def track(self, job: str) -> threading.Event:
        with self._lock:
            event = self._events.setdefault(job, threading.Event())
            self._states.setdefault(job, _PodState())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="hd-k8s-watch", daemon=True)
                self._thread.start()
        return event

    def state(self, job: str) -> _PodState:
        with self._lock:
            return self._states.get(job) or _PodState()

    def forget(self, job: str) -> None:
        with self._lock:
            self._events.pop(job, None)
            self._states.pop(job, None)

    def close(self) -> None:
        self._closed.set()

    def _see(self, pod: Any) -> None:
        job = (pod.metadata.labels or {}).get("job-name")
        with self._lock:
            state = self._states.get(job or "")
            if state is not None and _observe(state, pod):
                self._events[job or ""].set()

    def _loop(self) -> None:
        from kubernetes import watch

        rt = self._runtime
        selector = f"{MANAGED}=1"
        while not self._closed.is_set():
            try:
                listed = rt.core.list_namespaced_pod(
                    rt.namespace, label_selector=selector, _request_timeout=30
                )
                for pod in listed.items:
                    self._see(pod)
                version = listed.metadata.resource_version
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    rt.core.list_namespaced_pod, rt.namespace, label_selector=selector,
                    resource_version=version, timeout_seconds=60, _request_timeout=90,
                )  # fmt: skip
                for event in stream:
                    self._see(event["object"])
                    if self._closed.is_set():
                        return
            except Exception as exc:  # never let the watcher die: every wait depends on it
                log.warning("watching the pods of namespace %s: %s", rt.namespace, exc)
                self._closed.wait(rt.poll_interval)


def _observe(state: _PodState, pod: Any) -> bool:
    """Update ``state`` from ``pod``; True once the pod has ended."""
    status = pod.status
    state.pod = pod.metadata.name
    state.phase = status.phase or "Pending"
    if state.phase != "Pending":
        state.running.set()
    for cs in status.container_statuses or []:
        if cs.state.terminated is not None:
            state.exit_code = int(cs.state.terminated.exit_code)
            state.message = cs.state.terminated.reason or ""
        elif cs.state.waiting is not None:
            reason = cs.state.waiting.reason or ""
            if reason != state.waiting:
                state.waiting, state.since = reason, time.monotonic()
            state.message = cs.state.waiting.message or reason
    if state.phase == "Pending" and not status.container_statuses:
        for cond in status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False":
                if state.waiting != "Unschedulable":
                    state.waiting, state.since = "Unschedulable", time.monotonic()
                state.message = cond.message or cond.reason or "unschedulable"
    return state.phase in ("Succeeded", "Failed")


class KubernetesExecution(Execution):
    """One Job, created or adopted."""

    def __init__(
        self,
        runtime: KubernetesRuntime,
        name: str,
        folder: Path,
        timeout: float | None,
        log_fd: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.folder: Path = folder
        self.job = {"kind": "kubernetes", "job": name, "namespace": runtime.namespace}
        self._timeout = timeout
        self._started = time.monotonic()
        self._ended = runtime.poller.track(name)
        self._stop_requested = threading.Event()
        self._log_fd = log_fd
        self._log_thread = threading.Thread(
            target=self._stream_log, name=f"hd-k8s-log-{name}", daemon=True
        )
        self._log_thread.start()

    def _stream_log(self) -> None:
        """Copy the pod's output into the trial folder while it runs."""
        if self._log_fd is None:
            return
        core, namespace = self.runtime.core, self.runtime.namespace
        state = self.runtime.poller.state(self.name)
        with open(self._log_fd, "ab", buffering=0) as out:
            while not self._ended.is_set():
                if not state.running.wait(1.0):
                    continue
                try:
                    stream = core.read_namespaced_pod_log(
                        state.pod, namespace, follow=True, _preload_content=False
                    )
                    for chunk in stream.stream(4096):
                        out.write(chunk)
                    return
                except Exception as exc:  # the pod went away: what was read is kept
                    log.debug("log of job %s: %s", self.name, exc)
                    self._ended.wait(self.runtime.poll_interval)
            # It ended before its output could be followed (a short target): read it all.
            if state.pod:
                with contextlib.suppress(Exception):
                    data = core.read_namespaced_pod_log(
                        state.pod, namespace, _preload_content=False
                    ).data
                    out.write(data)

    def wait(self) -> RunOutcome:
        rt = self.runtime
        deadline = None if self._timeout is None else self._started + self._timeout
        timed_out = False
        failure = ""
        while not self._ended.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                break
            state = rt.poller.state(self.name)
            waited = time.monotonic() - state.since
            if state.waiting == "Unschedulable" and waited > rt.pending_timeout:
                failure = f"the pod could not be scheduled for {rt.pending_timeout:g} s: "
                failure += state.message
                break
            if state.waiting in _PULL_FAILURES and (
                state.waiting in _FINAL_PULL_FAILURES or waited > rt.pull_timeout
            ):
                failure = f"the image cannot be pulled ({state.waiting}): {state.message}"
                break
            self._ended.wait(rt.poll_interval)
        if timed_out or failure:
            rt.delete(self.name, grace=0)
        state = rt.poller.state(self.name)
        rt.poller.forget(self.name)
        self._log_thread.join(timeout=10)
        stopped = self._stop_requested.is_set() and state.exit_code is None
        if failure:
            raise TargetError(f"Kubernetes: {failure}", retryable=False)
        if not stopped and not timed_out:
            rt.delete(self.name, grace=0)  # ended: the Job and its pod are not needed
        return RunOutcome(
            exit_code=state.exit_code,
            log_file=self.folder / LOG_NAME,
            timed_out=timed_out,
            stopped=stopped,
            duration=time.monotonic() - self._started,
        )

    def stop(self, grace: float = 10.0) -> None:
        if self._stop_requested.is_set() or self._ended.is_set():
            return
        self._stop_requested.set()
        self.runtime.delete(self.name, grace=grace)
        self._ended.set()


class KubernetesRuntime(Runtime):
    """Runs each attempt of an image target as a Kubernetes Job.

    Args:
        namespace: Where Jobs go (the worker's service account needs jobs and pods
            there).
        volume: ``pvc:CLAIM`` or ``hostPath:DIR`` holding the worker's results folder.
        data_volume: ``pvc:CLAIM`` or ``hostPath:DIR`` for ``/data`` (read-only).
        pod_template: A pod (or pod spec) as a dict, merged under Hyperdock's fields.
        image_pull_policy: The containers' ``imagePullPolicy`` (None: the cluster's).
        kubeconfig: A kubeconfig file; None: ``KUBECONFIG``, ``~/.kube/config``, or the
            in-cluster service account.
        pending_timeout: Seconds a pod may wait to be scheduled before the attempt fails.
        pull_timeout: Seconds a pod may fail to pull its image before the attempt fails.
        env: Extra environment for every target.

    Raises:
        ConfigError: no volume, a bad volume spec, or no way to reach the cluster.
    """

    kind = "kubernetes"

    def __init__(
        self,
        *,
        namespace: str = "default",
        volume: str | None = None,
        data_volume: str | None = None,
        pod_template: Mapping[str, Any] | None = None,
        image_pull_policy: str | None = None,
        kubeconfig: str | None = None,
        pending_timeout: float = 600.0,
        pull_timeout: float = 120.0,
        poll_interval: float = 1.0,
        env: Mapping[str, str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.volume = parse_volume(volume, "--k8s-volume")
        if self.volume is None:
            raise ConfigError(
                "the Kubernetes launcher needs --k8s-volume pvc:CLAIM (a claim holding "
                "--results) or hostPath:DIR (one-node clusters) to give pods their trial "
                "folders"
            )
        self.data_volume = parse_volume(data_volume, "--k8s-data-volume")
        self.namespace = namespace
        template = dict(pod_template or {})
        self.pod_template: dict[str, Any] = dict(template.get("spec", template))
        self.pod_meta: dict[str, Any] = dict(template.get("metadata") or {})
        self.image_pull_policy = image_pull_policy
        self.pending_timeout = pending_timeout
        self.pull_timeout = pull_timeout
        self.poll_interval = poll_interval
        self.env = dict(env or {})
        self._kubeconfig = kubeconfig
        self._api: Any = None
        self._lock = threading.Lock()
        self.poller = _Watcher(self)

    def describe(self) -> str:
        assert self.volume is not None
        return f"kubernetes (namespace {self.namespace}, volume {':'.join(self.volume)})"

    # -- the API ----------------------------------------------------------------------
    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                try:
                    from kubernetes import client, config
                except ImportError:
                    raise ConfigError(
                        "the Kubernetes launcher needs the kubernetes package: "
                        "pip install 'hyperdock[kubernetes]'"
                    ) from None
                try:
                    if self._kubeconfig or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                            config_file=self._kubeconfig
                        )
                    else:
                        config.load_incluster_config()  # type: ignore[no-untyped-call]
                        api_client = client.ApiClient()
                except Exception as exc:
                    raise ConfigError(f"cannot reach the Kubernetes cluster: {exc}") from None
                self._api = (client.CoreV1Api(api_client), client.BatchV1Api(api_client))
            return self._api

    @property
    def core(self) -> Any:
        """The ``CoreV1Api`` (pods, logs)."""
        return self._client()[0]

    @property
    def batch(self) -> Any:
        """The ``BatchV1Api`` (Jobs)."""
        return self._client()[1]

    def check(self) -> None:
        try:
            self.batch.list_namespaced_job(self.namespace, limit=1, _request_timeout=15)
        except ConfigError:
            raise
        except Exception as exc:
            raise HostError(
                f"cannot reach the Kubernetes API ({exc})", summary="Kubernetes unreachable"
            ) from None

    def delete(self, job: str, *, grace: float) -> None:
        """Delete Job ``job`` and its pod (foreground): SIGTERM, then ``grace`` s."""
        try:
            self.batch.delete_namespaced_job(
                job, self.namespace, propagation_policy="Foreground",
                grace_period_seconds=max(0, math.ceil(grace)), _request_timeout=30,
            )  # fmt: skip
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                log.warning("could not delete Job %s: %s", job, exc)

    def _jobs(self, selector: str) -> list[Any]:
        try:
            return list(
                self.batch.list_namespaced_job(
                    self.namespace, label_selector=selector, _request_timeout=30
                ).items
            )
        except Exception as exc:
            raise HostError(
                f"cannot list the Jobs of namespace {self.namespace}: {exc}",
                summary="Kubernetes unreachable",
            ) from None

    # -- runs -------------------------------------------------------------------------
    def start(self, ctx: RunContext) -> Execution:
        if not ctx.image:
            raise TargetError(
                "the Kubernetes launcher runs image targets (a Job per attempt): give the "
                "experiment an --image, or use --launcher local or slurm for a command",
                retryable=False,
            )
        folder = ctx.folder.absolute()
        # Created before the pod starts, written through this descriptor only.
        log_fd = trialfs.create(folder, LOG_NAME, replace=True)
        name = f"hd-{ctx.trial_id}-{ctx.attempt}-{secrets.token_hex(3)}"
        try:
            self.batch.create_namespaced_job(
                self.namespace, self.manifest(ctx, name, folder), _request_timeout=30
            )
        except ConfigError:
            os.close(log_fd)
            raise
        except Exception as exc:
            os.close(log_fd)
            status = getattr(exc, "status", None)
            reason = getattr(exc, "reason", None) or exc
            if status is not None and 400 <= int(status) < 500:
                raise TargetError(
                    f"Kubernetes refused the Job: {reason}", retryable=False
                ) from None
            raise HostError(
                f"cannot create a Job in namespace {self.namespace}: {reason}",
                summary="Kubernetes unreachable",
            ) from None
        log.debug("trial %s: created Job %s", ctx.trial_id, name)
        return KubernetesExecution(self, name, folder, ctx.timeout, log_fd)

    def adopt(
        self, trial_id: int, attempt: int, workers: Collection[str] = ()
    ) -> KubernetesExecution | None:
        jobs = [
            job
            for job in self._jobs(f"{MANAGED}=1,{TRIAL}={trial_id}")
            if (job.metadata.annotations or {}).get(WORKER) in workers
        ]
        if not jobs:
            return None
        latest = max(jobs, key=lambda j: int((j.metadata.labels or {}).get(ATTEMPT, -1)))
        if int((latest.metadata.labels or {}).get(ATTEMPT, -1)) >= attempt:
            return None
        folder = (latest.metadata.annotations or {}).get(FOLDER)
        if not folder:
            return None
        name = latest.metadata.name
        log.info("trial %d: adopting Kubernetes Job %s", trial_id, name)
        log_fd = None
        with contextlib.suppress(OSError):
            log_fd = trialfs.create(Path(folder), LOG_NAME, replace=True)
        return KubernetesExecution(self, name, Path(folder), None, log_fd)

    def stop_unwanted(self, wanted: Callable[[int, str], bool | None]) -> list[str]:
        stopped = []
        for job in self._jobs(f"{MANAGED}=1"):
            labels = job.metadata.labels or {}
            annotations = job.metadata.annotations or {}
            done = (job.status.succeeded or 0) + (job.status.failed or 0)
            trial = labels.get(TRIAL, "")
            if done or not trial.isdigit():
                continue
            if wanted(int(trial), annotations.get(WORKER, "")) is False:
                self.delete(job.metadata.name, grace=10)
                stopped.append(f"Kubernetes Job {job.metadata.name} (trial {trial})")
        return stopped

    def _mount(
        self, volume: tuple[str, str], folder: str, name: str
    ) -> tuple[dict[str, Any], str | None]:
        """The volume for ``folder`` (a path relative to the volume's root), and the
        ``subPath`` to mount it with."""
        kind, source = volume
        if kind == "hostPath":
            return {"name": name, "hostPath": {"path": f"{source.rstrip('/')}/{folder}"}}, None
        return {"name": name, "persistentVolumeClaim": {"claimName": source}}, folder

    def manifest(self, ctx: RunContext, name: str, folder: Path) -> dict[str, Any]:
        """The Job for ``ctx`` (the trial folder mounted at ``/hyperdock``)."""
        assert self.volume is not None
        # The attempt's folder relative to the results folder: <experiment-trial>/<stamp>.
        relative = f"{folder.parent.name}/{folder.name}"
        checkpoint = container_checkpoint(ctx)
        env = {**self.env, **ctx.env, **trial_env("/hyperdock", ctx.trial_id, checkpoint)}
        volume, sub = self._mount(self.volume, relative, "hyperdock")
        mounts: list[dict[str, Any]] = [{"name": "hyperdock", "mountPath": "/hyperdock"}]
        if sub:
            mounts[0]["subPath"] = sub
        volumes = [volume]
        if checkpoint is not None and ctx.checkpoint is not None:
            # The trial's checkpoint folder (beside its attempts' folders) over the
            # attempt's: the same for every attempt of the trial.
            shared = f"{ctx.checkpoint.parent.name}/{ctx.checkpoint.name}"
            ckpt_volume, ckpt_sub = self._mount(self.volume, shared, "checkpoint")
            if ckpt_sub:
                mounts.append({"name": "hyperdock", "mountPath": checkpoint, "subPath": ckpt_sub})
            else:
                volumes.append(ckpt_volume)
                mounts.append({"name": "checkpoint", "mountPath": checkpoint})
        if self.data_volume is not None:
            data, _ = self._mount(self.data_volume, "", "data")
            if "hostPath" in data:
                data["hostPath"]["path"] = self.data_volume[1]
            volumes.append(data)
            mounts.append({"name": "data", "mountPath": "/data", "readOnly": True})
        res = ctx.resources
        limits: dict[str, str] = {}
        if res.cpus:
            limits["cpu"] = f"{res.cpus:g}"
        if res.memory:
            limits["memory"] = str(res.memory)
        if res.gpus:
            limits["nvidia.com/gpu"] = str(res.gpus)
        if res.shm_size:
            volumes.append(
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": str(res.shm_size)}}
            )
            mounts.append({"name": "shm", "mountPath": "/dev/shm"})
        container: dict[str, Any] = {
            "name": "trial",
            "image": ctx.image,
            "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
            "volumeMounts": mounts,
            "resources": {"limits": limits, "requests": dict(limits)} if limits else {},
        }
        if ctx.command:
            container["command"] = list(ctx.command)
        if self.image_pull_policy:
            container["imagePullPolicy"] = self.image_pull_policy
        spec = dict(self.pod_template)
        base = dict((spec.get("containers") or [{}])[0])
        ours = {e["name"] for e in container["env"]}
        kept = [e for e in base.get("env") or [] if e.get("name") not in ours]
        base.update(container, env=[*kept, *container["env"]])
        spec.update(
            containers=[base, *(spec.get("containers") or [])[1:]],
            volumes=[*(spec.get("volumes") or []), *volumes],
            restartPolicy="Never",
        )
        spec.setdefault("automountServiceAccountToken", False)
        spec.setdefault("terminationGracePeriodSeconds", 10)
        labels = {
            MANAGED: "1",
            TRIAL: str(ctx.trial_id),
            ATTEMPT: str(ctx.attempt),
            EXPERIMENT: _label(ctx.experiment),
            WORKER: _label(ctx.labels.get("hyperdock.worker", "")),
        }
        annotations = {FOLDER: str(folder), WORKER: ctx.labels.get("hyperdock.worker", "")}
        pod_meta = dict(self.pod_meta)
        pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
        job_spec: dict[str, Any] = {
            "backoffLimit": 0,
            "template": {"metadata": pod_meta, "spec": spec},
        }
        if ctx.timeout is not None:
            job_spec["activeDeadlineSeconds"] = math.ceil(ctx.timeout) + 60
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": job_spec,
        }

    def close(self) -> None:
        self.poller.close()
