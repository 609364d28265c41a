"""Hyperdock's own overhead per trial, measured side by side with named peers.

Part 1 — a no-op local target (a shell command that writes loss.json), N trials on a
durable SQLite file, one trial at a time:
    * bare:      a Python loop spawning the same command (the floor);
    * optuna:    optuna's ``study.optimize`` with ``sqlite:///`` storage and its
                 RandomSampler (the same sampler as Hyperdock's here), the objective
                 running the same command and reading loss.json;
    * hyperdock: ``hyperdock run space.py --command … --sampler random`` end to end, as
                 a user runs it (interpreter start-up and imports included);
    * hyperdock with TPE (the default sampler), for information: every trial then
      waits for a suggestion that has seen all earlier results.

Part 2 — a tiny Docker image (busybox, built locally), M trials:
    * bare:      a loop of ``docker run --rm`` of the same image and command;
    * hyperdock: ``hyperdock run --image …``.

Part 3 — ask/tell cycle time, no target at all (``--asktell-only`` runs just this):
    * optuna:    ``study.ask()`` / ``study.tell()`` on ``sqlite:///`` with RandomSampler;
    * hyperdock: ``Experiment.ask()`` / ``tell()`` with the random sampler on a durable
                 SQLite file (each claim and finish committed).

Part 4 — log streaming (``--logs-only`` runs just this): one trial whose target prints
50 MB/s for 10 s, run by ``hyperdock worker`` (SQLite file store); reported: the worker
process's CPU while the trial runs (% of one core, from /proc, the target's own CPU not
included) against the same worker running a silent target as long, and the bytes the
store holds of that attempt's log.


Part 5 — artifact store (``--artifacts-only`` runs just this; needs ``moto[server]``
and boto3): the no-op target with ``--artifacts s3://…`` (a moto server on 127.0.0.1,
plain boto3 over HTTP) against the same run without, per trial (goal <= 1.3x: uploads
overlap the next trial).

Usage: ``python bench/overhead.py [--trials 300] [--docker-trials 50] [--no-docker]
[--asktell-only] [--logs-only] [--log-seconds 10] [--artifacts-only]``.
Prints a table with ratios and writes ``bench/out/overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOOP = 'echo 0.5 > "$HYPERDOCK_LOSS"'
IMAGE = "hyperdock-bench-busybox:1"


def bare_loop(n: int, work: Path) -> float:
    env = {**os.environ, "HYPERDOCK_LOSS": str(work / "loss.json")}
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(["sh", "-c", NOOP], env=env, check=True)
        json.loads((work / "loss.json").read_text())
    return time.perf_counter() - start


def optuna_loop(n: int, work: Path) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    loss_file = work / "loss.json"
    env = {**os.environ, "HYPERDOCK_LOSS": str(loss_file)}

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        (work / "params.json").write_text(json.dumps({"x": x}))
        subprocess.run(["sh", "-c", NOOP], env=env, check=True)
        return float(json.loads(loss_file.read_text()))

    start = time.perf_counter()
    study = optuna.create_study(
        storage=f"sqlite:///{work}/optuna.db", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(objective, n_trials=n)
    return time.perf_counter() - start


def hyperdock_run(n: int, work: Path, *target: str, sampler: str = "random") -> float:
    (work / "space.py").write_text(
        "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', 0, 1)}\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "hyperdock",
        "run",
        "space.py",
        "--max-trials",
        str(n),
        "--sampler",
        sampler,
        "--store",
        f"sqlite:///{work}/hd.db",
        "--results",
        str(work / "results"),
        "-q",
        "--json",
        *target,
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"hyperdock run failed:\n{out.stderr}")
    done = json.loads(out.stdout)["trials"]["completed"]
    if done != n:
        raise SystemExit(f"hyperdock completed {done} of {n} trials")
    return took


def optuna_asktell(n: int, work: Path) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{work / 'optuna.db'}", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    start = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        study.tell(trial, (x - 0.5) ** 2)
    return time.perf_counter() - start


def hyperdock_asktell(n: int, work: Path) -> float:
    sys.path.insert(0, str(HERE.parent))
    import hyperdock
    from hyperdock import hp

    with hyperdock.Experiment.open(
        "asktell",
        store=f"sqlite:///{work / 'hd.db'}",
        space={"x": hp.uniform("x", 0, 1)},
        sampler="random",
        seed=0,
        max_trials=n,
    ) as exp:
        start = time.perf_counter()
        for _ in range(n):
            trial = exp.ask()
            exp.tell(trial, loss=(trial.params["x"] - 0.5) ** 2)
        return time.perf_counter() - start


def asktell(n: int, results: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        opt = optuna_asktell(n, work)
        hd = hyperdock_asktell(n, work)
    print(f"Ask/tell cycle, {n} trials, random sampler, SQLite file store:")
    results["asktell"] = [
        row("optuna 5 study.ask/tell (sqlite)", opt, n, None, ""),
        row("hyperdock Experiment.ask/tell", hd, n, opt, "optuna"),
    ]
    print(f"  hyperdock / optuna = {hd / opt:.3f} (goal <= 0.2)")
    results["asktell_vs_optuna"] = hd / opt


def build_image() -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as root:
        Path(root, "bin").mkdir()
        shutil.copy(busybox, Path(root, "bin", "busybox"))
        for applet in ("sh", "echo", "cat"):
            os.symlink("busybox", Path(root, "bin", applet))
        tar = subprocess.run(["tar", "-C", root, "-c", "."], capture_output=True, check=True)
        subprocess.run(
            ["docker", "import", "-", IMAGE], input=tar.stdout, check=True, capture_output=True
        )


def docker_bare(n: int, work: Path) -> float:
    folder = work / "bare"
    folder.mkdir()
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                f"{folder}:/hyperdock",
                IMAGE,
                "sh",
                "-c",
                "echo 0.5 > /hyperdock/loss.json",
            ],
            check=True,
            capture_output=True,
        )
        json.loads((folder / "loss.json").read_text())
    return time.perf_counter() - start


#: A target printing ``rate`` MB/s for ``seconds`` s (argv), in 512 KB writes.
PRINTER = """
import json, os, sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
block = (b"x" * 1023 + b"\\n") * 512
out = sys.stdout.buffer
start = time.monotonic()
sent = 0
while time.monotonic() - start < seconds:
    if sent < rate * 1024 * 1024 * (time.monotonic() - start):
        out.write(block)
        sent += len(block)
    else:
        time.sleep(0.005)
out.flush()
json.dump({"loss": 0.5}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_cpu(work: Path, rate: float, seconds: float) -> tuple[float, int, int]:
    """Run one trial printing ``rate`` MB/s for ``seconds`` s through ``hyperdock
    worker``; return the worker's CPU (% of one core) while it ran, the log's size and
    the bytes the store holds of it."""
    sys.path.insert(0, str(HERE.parent))
    from hyperdock.storage import open_store
    from hyperdock.trial import Target, TrialState

    (work / "printer.py").write_text(PRINTER)
    url = f"sqlite:///{work}/hd.db"
    with open_store(url) as st:
        target = Target(command=(sys.executable, str(work / "printer.py"), str(rate), str(seconds)))
        exp = st.create_experiment(
            "logs", space={}, target=target, sampler="random", seed=0, max_trials=1
        )
        (trial,) = st.add_trials(exp.id, [{}])
        worker = subprocess.Popen(
            [sys.executable, "-m", "hyperdock", "worker", "--store", url, "--burst",
             "--results", str(work / "results")],
            cwd=work,
        )  # fmt: skip
        while st.get_trial(trial.id).state is TrialState.QUEUED:
            time.sleep(0.02)
        cpu0, t0 = _cpu_seconds(worker.pid), time.monotonic()
        while not st.get_trial(trial.id).state.finished:
            time.sleep(0.05)
            if worker.poll() is None:
                cpu1, t1 = _cpu_seconds(worker.pid), time.monotonic()
        worker.wait(timeout=60)
        stored = st.read_log(trial.id)
    return 100 * (cpu1 - cpu0) / (t1 - t0), stored.size, stored.stored


def log_streaming(seconds: float, results: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "quiet").mkdir()
        (Path(tmp) / "loud").mkdir()
        quiet, _, _ = worker_cpu(Path(tmp) / "quiet", 0.0, seconds)
        loud, size, stored = worker_cpu(Path(tmp) / "loud", 50.0, seconds)
    print(f"Log streaming, a target printing 50 MB/s for {seconds:.0f} s (SQLite file store):")
    print(f"  worker CPU, silent target:       {quiet:5.1f} % of one core")
    print(f"  worker CPU, 50 MB/s target:      {loud:5.1f} % of one core (goal <= 10)")
    print(
        f"  log {size / 2**20:.1f} MB; the store holds {stored / 2**20:.3f} MB of it "
        "(first 64 KB + last 1 MB + at most one 64 KB chunk; the goal of 1 MB is below the "
        "default bounds)"
    )
    results["log_streaming"] = {
        "seconds": seconds,
        "worker_cpu_percent_silent": round(quiet, 2),
        "worker_cpu_percent_50mb_s": round(loud, 2),
        "log_bytes": size,
        "stored_bytes": stored,
    }


def artifacts(n: int, results: dict[str, object]) -> None:
    """Part 5: the same no-op run with and without an S3 artifact store."""
    import socket
    import urllib.request

    try:
        import boto3
    except ImportError:
        print("artifacts: skipped (pip install boto3 'moto[server]')")
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    os.environ.update({**env, "AWS_DEFAULT_REGION": "us-east-1"})
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "plain").mkdir()
            (work / "s3").mkdir()
            target = ("--command", f"sh -c '{NOOP}'")
            plain = hyperdock_run(n, work / "plain", *target)
            s3 = hyperdock_run(
                n, work / "s3", *target, "--artifacts", "s3://bench/runs",
                "--artifacts-endpoint", endpoint,
            )  # fmt: skip
            stored = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(
                Bucket="bench", Prefix="runs/"
            )["KeyCount"]
    finally:
        server.terminate()
        server.wait()
    print(f"No-op local target, {n} trials, artifact store (moto S3 server over HTTP):")
    results["artifacts"] = [
        row("hyperdock run --command", plain, n, None, ""),
        row("  with --artifacts s3://…", s3, n, plain, "without"),
    ]
    print(f"  with / without = {s3 / plain:.3f} (goal <= 1.3); {stored} objects stored")
    results["artifacts_ratio"] = s3 / plain


def row(name: str, total: float, n: int, ref: float | None, ref_name: str) -> dict[str, object]:
    per = total / n * 1000
    ratio = None if ref is None else total / ref
    text = f"  {name:<34} {per:9.2f} ms/trial"
    if ratio is not None:
        text += f"   {ratio:6.2f}x {ref_name}"
    print(text)
    return {"name": name, "ms_per_trial": round(per, 3), "ratio": ratio, "vs": ref_name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--docker-trials", type=int, default=50)
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--asktell-only", action="store_true", help="Only part 3.")
    parser.add_argument("--logs-only", action="store_true", help="Only part 4.")
    parser.add_argument("--log-seconds", type=float, default=10.0)
    parser.add_argument("--artifacts-only", action="store_true", help="Only part 5.")
    args = parser.parse_args()
    results: dict[str, object] = {"cores": os.cpu_count()}
    n = args.trials
    if args.asktell_only:
        asktell(n, results)
        return
    if args.logs_only:
        log_streaming(args.log_seconds, results)
        return
    if args.artifacts_only:
        artifacts(n, results)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for sub in ("bare", "optuna", "hd", "tpe"):
            (work / sub).mkdir()
        bare = bare_loop(n, work / "bare")
        opt = optuna_loop(n, work / "optuna")
        hd = hyperdock_run(n, work / "hd", "--command", f"sh -c '{NOOP}'")
        # The default sampler, for information: each trial waits for a TPE suggestion
        # that has seen every earlier result.
        tpe = hyperdock_run(n, work / "tpe", "--command", f"sh -c '{NOOP}'", sampler="tpe")
    print(f"No-op local target, {n} trials, SQLite file store, 1 trial at a time:")
    results["process"] = [
        row("bare spawn loop", bare, n, None, ""),
        row("optuna 5 study.optimize (sqlite)", opt, n, bare, "bare"),
        row("hyperdock run --command", hd, n, bare, "bare"),
        row("hyperdock run --command --sampler tpe", tpe, n, bare, "bare"),
    ]
    print(
        f"  hyperdock / optuna = {hd / opt:.3f} (goal <= 0.2); "
        f"hyperdock / bare = {hd / bare:.2f} (goal <= 3)"
    )
    results["hyperdock_vs_optuna"] = hd / opt
    results["hyperdock_vs_bare"] = hd / bare
    if not args.no_docker:
        m = args.docker_trials
        build_image()
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            dbare = docker_bare(m, work)
            (work / "hd").mkdir()
            dhd = hyperdock_run(
                m,
                work / "hd",
                "--image",
                IMAGE,
                "--network",
                "none",
                "--pull",
                "never",
                "--command",
                "sh -c 'echo 0.5 > /hyperdock/loss.json'",
            )
        print(f"Tiny image, {m} trials, 1 at a time:")
        results["docker"] = [
            row("docker run --rm loop", dbare, m, None, ""),
            row("hyperdock run --image", dhd, m, dbare, "docker run"),
        ]
        print(f"  hyperdock / docker run = {dhd / dbare:.3f} (goal <= 1.10)")
        results["hyperdock_vs_docker_run"] = dhd / dbare
    asktell(n, results)
    log_streaming(args.log_seconds, results)
    artifacts(n, results)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "overhead.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
