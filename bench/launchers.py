"""Per-trial overhead of a cluster launcher against the engine's own bare submission loop,
measured in the same run, and the worker's CPU while many jobs are in flight.

Slurm (a running cluster: ``bash .ci/slurm/up.sh``, ``SLURM_CONF`` exported):
    * bare:      a loop of ``sbatch --wait`` of the same one-line script, one at a time;
    * hyperdock: ``hyperdock run space.json --command … --launcher slurm`` (one trial at a
                 time, the random sampler, a durable SQLite store), end to end.
    * in flight: ``hyperdock worker --launcher slurm --parallelism 50`` holding 50 jobs
                 that sleep; the worker's CPU time over their run, as a share of one core.

Kubernetes (a running cluster: ``.ci/k8s/up.sh``; ``KUBECONFIG``; an image in its
containerd, e.g. the tests' busybox imported by ``.ci/k8s/import-image.sh``):
    * bare:      create a Job of the same image and script, poll until it completed,
                 delete it, one at a time;
    * hyperdock: ``hyperdock run … --launcher kubernetes --k8s-volume hostPath:…``.

Usage: ``python bench/launchers.py [--trials 30] [--in-flight 50] [--sleep 20]
[--no-slurm] [--k8s-image IMAGE --k8s-namespace NS]``.
Prints a table with the ratio and writes ``bench/out/launchers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = 'echo 0.5 > "$HYPERDOCK_LOSS"'


def bare_slurm(n: int, work: Path) -> float:
    """``sbatch --wait`` of the same script, n times in a row."""
    script = work / "bare.sh"
    script.write_text(f"#!/bin/sh\nHYPERDOCK_LOSS={work}/bare-loss.json\n{SCRIPT}\n")
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(
            ["sbatch", "--wait", "--quiet", f"--output={work}/bare.out", str(script)],
            check=True,
        )
        json.loads((work / "bare-loss.json").read_text())
    return time.perf_counter() - start


def hyperdock_slurm(n: int, work: Path) -> float:
    (work / "space.json").write_text(json.dumps({"x": list(range(n))}))
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperdock",
            "run",
            "space.json",
            "--command",
            f"sh -c '{SCRIPT}'",
            "--launcher",
            "slurm",
            "--sampler",
            "random",
            "--max-trials",
            str(n),
            "--store",
            f"sqlite:///{work}/hd.db",
            "-q",
            "--name",
            "bench",
        ],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def in_flight(jobs: int, sleep: float, work: Path) -> dict[str, float]:
    """CPU of one worker holding ``jobs`` Slurm jobs that each sleep ``sleep`` s."""
    (work / "wide.json").write_text(json.dumps({"x": list(range(jobs))}))
    store = f"sqlite:///{work}/wide.db"
    sup = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hyperdock",
            "supervisor",
            "wide.json",
            "--command",
            f"sh -c 'sleep {sleep}; {SCRIPT}'",
            "--name",
            "wide",
            "--store",
            store,
            "--max-trials",
            str(jobs),
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The worker exits once the queue is empty (--burst): start it when all are queued.
    from hyperdock.storage import open_store
    from hyperdock.trial import TrialState

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open_store(store, create=False) as st:
                counts = st.count_trials(st.get_experiment("wide").id)
            if counts[TrialState.QUEUED] >= jobs:
                break
        except Exception:  # not created yet
            pass
        time.sleep(0.2)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hyperdock",
            "worker",
            "--launcher",
            "slurm",
            "--parallelism",
            str(jobs),
            "--store",
            store,
            "--burst",
            "--loglevel",
            "warning",
        ],
        cwd=work,
    )
    start = time.perf_counter()
    _, status, usage = os.wait4(worker.pid, 0)  # the worker's own CPU time
    wall = time.perf_counter() - start
    worker.returncode = os.waitstatus_to_exitcode(status)
    sup.wait(timeout=120)
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


def bare_k8s(n: int, image: str, namespace: str) -> float:
    """Create a Job, wait for it, delete it; n times in a row."""
    from kubernetes import client, config

    api = config.new_client_from_config()
    batch = client.BatchV1Api(api)
    start = time.perf_counter()
    for i in range(n):
        name = f"bare-{os.getpid()}-{i}"
        pod = {
            "restartPolicy": "Never",
            "containers": [{"name": "t", "image": image, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", "echo 0.5"]}],
        }  # fmt: skip
        body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                "spec": {"backoffLimit": 0, "template": {"spec": pod}}}  # fmt: skip
        batch.create_namespaced_job(namespace, body)
        while not (batch.read_namespaced_job_status(name, namespace).status.succeeded or 0):
            time.sleep(0.1)
        batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    return time.perf_counter() - start


def hyperdock_k8s(n: int, image: str, namespace: str, work: Path) -> float:
    (work / "space.json").write_text(json.dumps({"x": list(range(n))}))
    (work / "results").mkdir()
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperdock",
            "run",
            "space.json",
            "--image",
            image,
            "--command",
            f"sh -c '{SCRIPT}'",
            "--launcher",
            "kubernetes",
            "--namespace",
            namespace,
            "--k8s-volume",
            f"hostPath:{work / 'results'}",
            "--k8s-pull-policy",
            "Never",
            "--sampler",
            "random",
            "--max-trials",
            str(n),
            "--store",
            f"sqlite:///{work}/hd.db",
            "-q",
            "--name",
            "bench",
        ],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--sleep", type=float, default=20.0)
    parser.add_argument("--no-slurm", action="store_true")
    parser.add_argument("--k8s-image", default=None)
    parser.add_argument("--k8s-namespace", default="default")
    args = parser.parse_args()
    results: dict[str, object] = {}
    if args.k8s_image:
        with tempfile.TemporaryDirectory() as tmp:
            bare = bare_k8s(args.trials, args.k8s_image, args.k8s_namespace)
            hd = hyperdock_k8s(args.trials, args.k8s_image, args.k8s_namespace, Path(tmp))
        results["kubernetes"] = {
            "trials": args.trials,
            "bare_s_per_trial": bare / args.trials,
            "hyperdock_s_per_trial": hd / args.trials,
            "ratio": hd / bare,
        }
        print(f"Kubernetes, {args.trials} trials one at a time (per trial):")
        print(f"  create Job + wait    {bare / args.trials:7.3f} s")
        print(f"  hyperdock kubernetes {hd / args.trials:7.3f} s   ratio {hd / bare:.3f}x")
    if args.no_slurm:
        _write(results)
        return
    if not os.environ.get("SLURM_CONF"):
        sys.exit("export SLURM_CONF (bash .ci/slurm/up.sh prints it), or give --no-slurm")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bare = bare_slurm(args.trials, work)
        hd = hyperdock_slurm(args.trials, work)
        results["slurm"] = {
            "trials": args.trials,
            "bare_s_per_trial": bare / args.trials,
            "hyperdock_s_per_trial": hd / args.trials,
            "ratio": hd / bare,
        }
        print(f"Slurm, {args.trials} trials one at a time (per trial):")
        print(f"  sbatch --wait loop   {bare / args.trials:7.3f} s")
        print(f"  hyperdock slurm      {hd / args.trials:7.3f} s   ratio {hd / bare:.3f}x")
    with tempfile.TemporaryDirectory() as tmp:
        flight = in_flight(args.in_flight, args.sleep, Path(tmp))
        share = flight["cpu_s"] / flight["wall_s"]
        results["in_flight"] = {"jobs": args.in_flight, **flight, "core_share": share}
        print(
            f"{args.in_flight} jobs in flight for {flight['wall_s']:.1f} s: the worker "
            f"used {flight['cpu_s']:.2f} s of CPU = {share:.1%} of one core"
        )
    _write(results)


def _write(results: dict[str, object]) -> None:
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "launchers.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
