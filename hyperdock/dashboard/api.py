"""The dashboard's JSON API: what each endpoint returns, built from the store contract only.

Every function takes a :class:`~hyperdock.storage.base.Store` and returns plain JSON data
or raises :class:`ApiError` (HTTP status plus one message for people).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import threading
import time
from pathlib import Path
from typing import Any

from hyperdock import trialfs
from hyperdock.artifacts.settings import DataSettings
from hyperdock.dashboard.artifacts import ArtifactFile, open_stored, stored_files
from hyperdock.errors import ConfigError, ExperimentNotFound, HyperdockError, StoreError
from hyperdock.objectives import Objectives
from hyperdock.samplers import default_sampler
from hyperdock.space import MAX_DEPTH, Space
from hyperdock.storage.base import Store
from hyperdock.supervisor import store_has
from hyperdock.trial import (
    FINISHED_STATES,
    Experiment,
    ExperimentState,
    Target,
    Trial,
    TrialState,
)

log = logging.getLogger("hyperdock.dashboard")

#: Bytes of a trial's log returned by ``GET /api/trials/<id>``.
LOG_TAIL_BYTES = 64 * 1024
#: Files of a trial's ``out/`` folder listed at most.
MAX_OUT_FILES = 500
#: Budget of a created experiment when none is given (grid searches: the whole grid).
DEFAULT_BUDGET = 50
#: Seconds a worker may go without a heartbeat and still be listed.
WORKER_MAX_AGE = 60.0
#: Learning curves sent by ``GET /api/experiments/<name>`` at most.
MAX_CURVES = 200
#: Points of one learning curve sent at most (longer ones are thinned).
MAX_CURVE_POINTS = 100
#: Characters of a trial's error shown in the experiment's trial table.
ERROR_CHARS = 200
#: Newest finished trials read for an experiment's last end time.
LAST_END_WINDOW = 200


class ApiError(Exception):
    """A request the API refuses: an HTTP status and one message.

    Attributes:
        status: HTTP status code.
        message: What went wrong, for people.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- reading ----------------------------------------------------------------------------
def find_experiment(store: Store, name: str) -> Experiment:
    """The experiment named ``name``.

    Raises:
        ApiError: 404 when there is none.
    """
    try:
        return store.get_experiment(name)
    except ExperimentNotFound:
        raise ApiError(404, f"no experiment named {name!r}") from None


def _trial(store: Store, trial_id: int) -> Trial:
    try:
        return store.get_trial(trial_id)
    except ExperimentNotFound:
        raise ApiError(404, f"no trial with id {trial_id}") from None


class _LastEndCache:
    """When each experiment's last trial ended; looked up again only when its counts of
    trials per state change (the list page polls every 2 s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[tuple[Any, ...], float | None]] = {}

    def get(self, store: Store, exp: Experiment, counts: dict[TrialState, int]) -> float | None:
        key = (exp.created_at, *sorted((s.value, n) for s, n in counts.items()))
        with self._lock:
            hit = self._cache.get(exp.id)
        if hit is not None and hit[0] == key:
            return hit[1]
        # the newest finished trials (indexed, bounded): the last to end is among them
        # unless an old trial was retried long after newer ones ended
        newest = store.list_trials_page(exp.id, limit=LAST_END_WINDOW, states=FINISHED_STATES)
        ends = [t.finished_at for t in newest]
        last = max((e for e in ends if e is not None), default=None)
        with self._lock:
            self._cache[exp.id] = (key, last)
        return last


_last_end = _LastEndCache()


def experiment_row(
    store: Store, exp: Experiment, counts: dict[TrialState, int] | None = None
) -> dict[str, Any]:
    """One experiment as listed by ``GET /api/experiments``: counts per state, best
    loss, ``age`` (seconds since it was created) and ``duration`` (seconds from its
    creation to its last trial's end; to now while it runs). ``counts`` is its
    :meth:`~hyperdock.storage.base.Store.count_trials` when the caller has it."""
    objectives = Objectives.from_meta(exp.meta)
    if counts is None:
        counts = store.count_trials(exp.id)
    best = None if objectives.multi else store.best_trial(exp.id, maximize=objectives.maximize)
    done = sum(n for s, n in counts.items() if s.finished)
    now = time.time()
    if exp.state is ExperimentState.RUNNING:
        end: float | None = now
    else:
        end = _last_end.get(store, exp, counts)
    return {
        "id": exp.id,
        "name": exp.name,
        "state": exp.state.value,
        "sampler": exp.sampler,
        "done": done,
        "budget": exp.max_trials,
        "queued": counts[TrialState.QUEUED],
        "running": counts[TrialState.RUNNING],
        "completed": counts[TrialState.COMPLETED],
        "failed": counts[TrialState.FAILED],
        "pruned": counts[TrialState.PRUNED],
        "cancelled": counts[TrialState.CANCELLED],
        "age": max(now - exp.created_at, 0.0),
        "duration": None if end is None else max(end - exp.created_at, 0.0),
        "best_loss": None if best is None else best.loss,
        "best_trial": None if best is None else best.id,
        "objectives": objectives.to_meta(),
        "priority": exp.priority,
        "created_at": exp.created_at,
        "target": exp.target.describe(),
        "artifacts": DataSettings.from_meta(exp.meta).artifacts,
    }


def list_experiments(store: Store) -> list[dict[str, Any]]:
    """``GET /api/experiments``."""
    return [experiment_row(store, exp) for exp in store.list_experiments()]


def _first_line(text: str | None, limit: int = ERROR_CHARS) -> str | None:
    if not text:
        return text
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def trial_brief(
    trial: Trial, objectives: Objectives, last: tuple[int, float] | None = None
) -> dict[str, Any]:
    """One trial as listed in an experiment's detail: only what the table and the plots
    need (``GET /api/trials/<id>`` has the rest). ``values`` is set for multi-objective
    experiments only (single objective: it is the loss). ``attempt`` counts from 1 (the
    first attempt is 1), as everywhere people read it. ``last`` is the last
    intermediate loss ``[step, loss]`` (given for pruned trials: their place in the
    history)."""
    values = (
        objectives.values(trial)
        if objectives.multi and trial.state is TrialState.COMPLETED
        else None
    )
    return {
        "id": trial.id,
        "number": trial.number,
        "state": trial.state.value,
        "loss": trial.loss,
        "values": values,
        "params": trial.params,
        "attempt": trial.attempt + 1,
        "error": _first_line(trial.error),
        "started_at": trial.started_at,
        "finished_at": trial.finished_at,
        "duration": trial.duration,
        "stop_requested": trial.stop_requested,
        "last": None if last is None else [last[0], last[1]],
    }


def thin(points: list[tuple[int, float]], limit: int = MAX_CURVE_POINTS) -> list[list[float]]:
    """At most ``limit`` points of a curve, evenly spread, first and last kept."""
    n = len(points)
    if n <= limit:
        return [[s, v] for s, v in points]
    picks = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [[points[i][0], points[i][1]] for i in picks]


def pick_curves(
    trials: list[Trial],
    progress: dict[int, list[tuple[int, float]]],
    maximize: bool,
    limit: int = MAX_CURVES,
) -> list[int]:
    """Ids of the curves to show: every running trial, then the best completed ones by
    loss and the pruned ones (newest first), up to ``limit``."""
    with_curve = [t for t in trials if t.id in progress]
    running = [t.id for t in with_curve if t.state is TrialState.RUNNING]
    done = [t for t in with_curve if t.state is TrialState.COMPLETED and t.loss is not None]
    done.sort(key=lambda t: (-t.loss if maximize else t.loss, t.id))  # type: ignore[operator]
    pruned = [t.id for t in reversed(with_curve) if t.state is TrialState.PRUNED]
    rest = [t.id for t in with_curve if t.state not in (TrialState.RUNNING, TrialState.PRUNED)]
    picked: list[int] = running[:limit]
    room = limit - len(picked)
    best = [t.id for t in done]
    # half the room for the best, the rest for pruned ones; unused room goes to the best
    pruned_part = pruned[: max(room - min(len(best), room // 2), 0)]
    best_part = best[: room - len(pruned_part)]
    picked += best_part + pruned_part
    if len(picked) < limit:
        chosen = set(picked)
        picked += [i for i in rest if i not in chosen][: limit - len(picked)]
    return sorted(picked)


def _folder_files(folder: Path, limits: trialfs.Limits) -> dict[str, Any]:
    """Log tail, graphs.json and out/ listing of a trial folder on this host.

    The folder is the target's: every file is read through :mod:`hyperdock.trialfs`
    (no symlink followed, regular files only, bounded reads).
    """
    out: dict[str, Any] = {"log": None, "log_file": None, "graphs": None, "files": []}
    for name in ("log.txt", "docker_log.txt"):
        try:
            data = trialfs.read_tail(folder, name, LOG_TAIL_BYTES)
        except FileNotFoundError:
            continue
        except trialfs.TrialFileError as exc:
            out["log"] = f"({exc})"
        except OSError as exc:
            out["log"] = f"(cannot read {name}: {exc.strerror})"
        else:
            out["log"] = data.decode("utf-8", errors="replace")
            out["log_file"] = name
        break
    try:
        raw = trialfs.read_bytes(folder, "graphs.json", limits.graphs_bytes)
        out["graphs"] = json.loads(raw.decode("utf-8", errors="replace"))
    except FileNotFoundError:
        pass
    except trialfs.TrialFileError as exc:
        out["graphs_error"] = str(exc)
    except (OSError, ValueError) as exc:
        out["graphs_error"] = f"graphs.json is unreadable: {exc}"
    out["files"] = [
        {"path": e.path, "size": e.size} for e in trialfs.list_files(folder, "out", MAX_OUT_FILES)
    ]
    return out


def trial_row(trial: Trial, objectives: Objectives) -> dict[str, Any]:
    """One trial in full (``GET /api/trials/<id>``): :func:`trial_brief`'s fields with
    the whole error message, the objective values of any completed trial, the worker
    and the creation time and prune request."""
    row = trial_brief(trial, objectives)
    row.update(
        values=objectives.values(trial) if trial.state is TrialState.COMPLETED else None,
        worker=trial.worker_id,
        error=trial.error,
        created_at=trial.created_at,
        prune_requested=trial.prune_requested,
    )
    return row


def trial_detail(
    store: Store, trial_id: int, limits: trialfs.Limits = trialfs.DEFAULT_LIMITS
) -> dict[str, Any]:
    """``GET /api/trials/<id>``: the trial, and what its folder holds (if on this host)."""
    trial = _trial(store, trial_id)
    try:
        exp: Experiment | None = store.get_experiment(trial.experiment_id)
    except ExperimentNotFound:
        exp = None
    objectives = Objectives.from_meta(exp.meta) if exp is not None else Objectives()
    out = trial_row(trial, objectives)
    out.update(
        {
            "experiment": None if exp is None else exp.name,
            "result": trial.result,
            "data": trial.data,
            # attempts count from 1 for people (the store counts from 0)
            "history": [
                {**h, "attempt": h["attempt"] + 1} if isinstance(h.get("attempt"), int) else h
                for h in trial.history
            ],
            "attempts": trial.attempt + (0 if trial.state is TrialState.QUEUED else 1),
            # the step the last attempt resumed from (its loss.json's "resumed_from")
            "resumed_from": trial.resumed_from,
            "heartbeat_at": trial.heartbeat_at,
            "folder": None,
            "folder_here": False,
            "log": None,
            "log_file": None,
            "graphs": None,
            "files": [],
            "progress": [],
        }
    )
    if exp is not None:
        pts = store.list_progress(exp.id, trial_ids=[trial.id]).get(trial.id, [])
        out["progress"] = [[s, v] for s, v in pts]
    folder = trial.folder
    if folder:
        out["folder"] = folder
        path = Path(folder)
        if path.is_dir():
            out["folder_here"] = True
            out.update(_folder_files(path, limits))
    if out["log_file"] is None and out["log"] is None:
        out.update(_stored_log(store, trial))
    out.update(stored_files(exp, trial.id, out["folder_here"], limits))
    return out


def _stored_log(store: Store, trial: Trial) -> dict[str, Any]:
    """The end of the store's copy of the trial's log (its folder is not on this host):
    the last :data:`LOG_TAIL_BYTES`, read as a range of the stored chunks."""
    if trial.state is TrialState.QUEUED and not trial.history:
        return {}
    stored = store.read_log(trial.id, start=-LOG_TAIL_BYTES)
    if stored.attempt < 0:
        return {}
    start = max(stored.size - LOG_TAIL_BYTES, 0)
    return {
        "log": stored.text(start),
        "log_file": f"the store's copy of attempt {stored.attempt + 1}",
        "log_size": stored.size,
    }


class TrialFile:
    """A file of a trial's ``out/`` folder, open for reading (see :func:`open_trial_file`).

    Attributes:
        name: Its file name.
        size: Its size in bytes.
    """

    CHUNK = 64 * 1024

    def __init__(self, fd: int, name: str, size: int) -> None:
        self._fd: int | None = fd
        self.name = name
        self.size = size

    def __iter__(self) -> Any:
        while self._fd is not None:
            chunk = os.read(self._fd, self.CHUNK)
            if not chunk:
                break
            yield chunk
        self.close()

    def close(self) -> None:
        """Close the file (WSGI servers call this when the reply is sent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _experiment_of(store: Store, trial: Trial) -> Experiment | None:
    try:
        return store.get_experiment(trial.experiment_id)
    except ExperimentNotFound:
        return None


def open_trial_artifact(store: Store, trial_id: int, path: str) -> ArtifactFile:
    """``GET /api/trials/<id>/artifacts/<path>``: a file the trial stored in its
    experiment's artifact store (``path`` as listed: ``2/out/model.pt``), streamed.

    Raises:
        ApiError: 404 when there is no artifact store or no such file (the key is
            checked and kept inside the trial's own prefix).
    """
    trial = _trial(store, trial_id)
    stored = open_stored(_experiment_of(store, trial), trial_id, path)
    if stored is None:
        raise ApiError(404, f"trial {trial_id} has no stored file {path}")
    return stored


def open_trial_file(store: Store, trial_id: int, relative: str) -> TrialFile | ArtifactFile:
    """``GET /api/trials/<id>/files/<path>``: the regular file ``out/<path>`` of the
    trial's folder, opened one path component at a time without following a symlink
    (``O_NOFOLLOW``), so nothing outside the trial folder can be read through it. When
    the folder is not on this host, the last stored attempt's from the artifact store.

    Raises:
        ApiError: 404 when the trial has no folder on this host, or the path is not a
            regular file inside its ``out/`` (a symlink, ``..``, a folder, missing).
    """
    trial = _trial(store, trial_id)
    folder = trial.folder
    parts = relative.split("/")
    missing = ApiError(404, f"trial {trial_id} has no file out/{relative}")
    if "\0" in relative or any(p in ("", ".", "..") for p in parts):
        raise missing
    if not folder or not Path(folder).is_dir():
        # Not on this host: the last stored attempt's out/ file, if there is one.
        stored = open_stored(_experiment_of(store, trial), trial_id, f"out/{relative}")
        if stored is None:
            raise missing
        return stored
    try:
        leaf = trialfs.open_file(Path(folder), f"out/{relative}")
    except trialfs.TrialFileError:
        raise missing from None  # a symlink, a FIFO, a folder: nothing to download
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
            log.debug("cannot open out/%s of trial %s: %s", relative, trial_id, exc)
        raise missing from None
    return TrialFile(leaf, parts[-1], os.fstat(leaf).st_size)


def list_workers(store: Store) -> list[dict[str, Any]]:
    """``GET /api/workers``: live workers (heartbeat within :data:`WORKER_MAX_AGE`)."""
    now = time.time()
    return [w.to_json(now) for w in store.list_workers(max_age=WORKER_MAX_AGE)]


# -- actions ----------------------------------------------------------------------------
def cancel_experiment(store: Store, name: str) -> dict[str, Any]:
    """``POST /api/experiments/<name>/cancel``: 409 for an experiment that has ended."""
    from hyperdock.experiment import Experiment as ApiExperiment

    exp = find_experiment(store, name)
    if not ApiExperiment(store, exp).cancel():
        raise ApiError(409, f"experiment {exp.name!r} is {exp.state.value} already")
    return {"ok": True, "experiment": experiment_row(store, store.get_experiment(exp.id))}


def delete_experiment(store: Store, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/experiments/<name>/delete``: with its stored files too, unless the
    body says ``{"keep_artifacts": true}``; 503 when they cannot be deleted (then
    nothing is)."""
    from hyperdock.artifacts.access import delete_experiment as delete_all
    from hyperdock.artifacts.base import ArtifactStoreError

    exp = find_experiment(store, name)
    try:
        files = delete_all(store, exp, keep_artifacts=body.get("keep_artifacts") is True)
    except ArtifactStoreError as exc:
        raise ApiError(503, str(exc)) from None
    return {"ok": True, "deleted": exp.name, "artifacts_deleted": files}


def _new_name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "give the new experiment a name")
    from hyperdock.supervisor import validate_name

    name = name.strip()
    try:
        validate_name(name)
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    return name


def clone_experiment(store: Store, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/experiments/<name>/clone``: same space, target, sampler and budget."""
    from hyperdock.experiment import Experiment as ApiExperiment

    exp = find_experiment(store, name)
    new = _new_name(body)
    try:
        made = ApiExperiment(store, exp).clone(new).record
    except StoreError as exc:
        raise ApiError(409, str(exc)) from None
    except HyperdockError as exc:
        raise ApiError(400, str(exc)) from None
    return {"ok": True, "experiment": experiment_row(store, made)}


def _contains_hp(data: Any) -> bool:
    if isinstance(data, dict):
        return "$hp" in data or any(_contains_hp(v) for v in data.values())
    if isinstance(data, list):
        return any(_contains_hp(v) for v in data)
    return False


def parse_space(raw: Any) -> Space:
    """A space given as JSON text (or already parsed) or as a Python config.

    JSON: ``Space.to_json`` form when it holds ``{"$hp": ...}`` nodes, else the v0.4
    data format. Text that does not start with ``{`` or ``[`` is a Python config
    (``SPACE = {...}`` with ``hp.*`` calls), read from its syntax tree by
    :func:`hyperdock.config.space_from_python_source`: nothing of it runs here.

    Raises:
        ApiError: 400 when it is not valid JSON, not an allowed Python config, or not
            a valid space.
    """
    from hyperdock.config import space_from_python_source, space_from_v04

    data = raw
    if isinstance(raw, str):
        if not raw.lstrip().startswith(("{", "[")):
            try:
                return space_from_python_source(raw, filename="the Python config")
            except HyperdockError as exc:
                raise ApiError(400, f"invalid space: {exc}") from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ApiError(
                400,
                f"the space is not valid JSON: {exc} (or give a Python config: SPACE = {{...}})",
            ) from None
        except RecursionError:  # the decoder gives up at about a thousand levels
            raise ApiError(
                400, f"invalid space: nested more than {MAX_DEPTH} levels deep"
            ) from None
    try:
        return Space.from_json(data) if _contains_hp(data) else space_from_v04(data)
    except HyperdockError as exc:
        raise ApiError(400, f"invalid space: {exc}") from None


def _target(body: dict[str, Any]) -> Target:
    image = body.get("image") or None
    command = body.get("command") or None
    if image is not None and not isinstance(image, str):
        raise ApiError(400, "image must be a string")
    if isinstance(command, str):
        try:
            argv: tuple[str, ...] | None = tuple(shlex.split(command))
        except ValueError as exc:
            raise ApiError(400, f"cannot split the command: {exc}") from None
    elif isinstance(command, list) and all(isinstance(c, str) for c in command):
        argv = tuple(command)
    elif command is None:
        argv = None
    else:
        raise ApiError(400, "command must be a string or a list of strings")
    if not image and not argv:
        raise ApiError(400, "give the target: an image or a command")
    timeout = body.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise ApiError(400, "timeout must be a positive number of seconds")
    return Target(image=image, command=argv, timeout=timeout)


def create_experiment(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/experiments``: ``{"name", "space", "image" | "command", "max_trials",
    "sampler"?, "timeout"?}``."""
    from hyperdock.experiment import Experiment as ApiExperiment

    name = _new_name(body)
    if "space" not in body:
        raise ApiError(400, "give the space (JSON, or a Python config: SPACE = {...})")
    space = parse_space(body["space"])
    target = _target(body)
    sampler = body.get("sampler") or default_sampler(space)
    if not isinstance(sampler, str):
        raise ApiError(400, "sampler must be a string")
    budget = body.get("max_trials")
    if budget in ("", None):
        budget = None if sampler == "grid" else DEFAULT_BUDGET
    elif isinstance(budget, str) and budget.strip().isdigit():
        budget = int(budget)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise ApiError(400, "max_trials must be a whole number")
    if budget is not None and budget < 1:
        raise ApiError(400, f"max_trials must be at least 1, got {budget}")
    if store_has(store, name):
        raise ApiError(409, f"an experiment named {name!r} exists already")
    try:
        # The one place that turns settings into a stored experiment (as for the CLI).
        exp = ApiExperiment.open(
            name,
            store=store,
            space=space,
            target=target,
            sampler=sampler,
            max_trials=budget,
            retries=5,
        ).record
    except HyperdockError as exc:
        raise ApiError(400, str(exc)) from None
    return {"ok": True, "experiment": experiment_row(store, exp)}


def cancel_trial(store: Store, trial_id: int) -> dict[str, Any]:
    """``POST /api/trials/<id>/cancel``."""
    _trial(store, trial_id)
    state = store.cancel_trial(trial_id)
    return {"ok": True, "id": trial_id, "state": state.value}


# -- ask/tell over HTTP ------------------------------------------------------------------
#: Start of the worker ids the HTTP API leases asked trials to.
HTTP_WORKER_PREFIX = "http-"


def http_worker_id() -> str:
    """A worker id for one dashboard process's HTTP-asked trials."""
    import socket
    import uuid

    return f"{HTTP_WORKER_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _api_experiment(store: Store, exp: Experiment, worker_id: str | None) -> Any:
    from hyperdock.experiment import Experiment as ApiExperiment

    # Leases are renewed by the evaluator's calls only (report), never by the dashboard:
    # an evaluator that goes silent loses its trial to the reaper.
    return ApiExperiment(store, exp, worker_id=worker_id, renew=False)


def _http_trial(store: Store, trial_id: int) -> tuple[Trial, str]:
    """The trial and the HTTP lease holding it; 409 when it is not running under one."""
    trial = _trial(store, trial_id)
    holder = trial.worker_id or ""
    if trial.state is not TrialState.RUNNING or not holder.startswith(HTTP_WORKER_PREFIX):
        raise ApiError(
            409,
            f"trial {trial_id} is {trial.state.value}"
            + (f" under worker {holder}" if trial.state is TrialState.RUNNING else "")
            + ", not running under an HTTP ask; POST /api/experiments/<name>/ask for a trial",
        )
    return trial, holder


def ask_trial(store: Store, name: str, worker_id: str) -> dict[str, Any]:
    """``POST /api/experiments/<name>/ask`` → ``{"trial": id, "number": n, "params": {...}}``.

    The trial is leased to ``worker_id``; it must be told (or reported on) within the
    experiment's lease timeout, else it is reaped and asked again.
    """
    import socket

    exp = find_experiment(store, name)
    store.register_worker(
        worker_id, host=socket.gethostname(), pid=os.getpid(), parallelism=1, meta={"http": True}
    )
    try:
        trial = _api_experiment(store, exp, worker_id).ask()
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    except StoreError:
        raise
    except HyperdockError as exc:  # not running, budget spent, space exhausted
        raise ApiError(409, str(exc)) from None
    return {
        "trial": trial.id,
        "number": trial.number,
        "params": trial.params,
        "lease_timeout": exp.lease_timeout,
    }


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"{key} must be a number, got {json.dumps(value)}")
    return float(value)


def tell_trial(store: Store, trial_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/trials/<id>/tell`` with ``{"loss": x}`` (or ``values``, ``state``,
    ``error``, ``data``). 409 (nothing changed) when the trial is not running under an
    HTTP ask."""
    from hyperdock.experiment import TrialNotRunning

    trial, holder = _http_trial(store, trial_id)
    exp = store.get_experiment(trial.experiment_id)
    values = body.get("values")
    if values is not None and not isinstance(values, list | dict):
        raise ApiError(400, "values must be a list of numbers or an object of them by name")
    state = body.get("state", "completed")
    error = body.get("error")
    data = body.get("data")
    if not isinstance(state, str) or not isinstance(error, str | None):
        raise ApiError(400, "state and error must be strings")
    if data is not None and not isinstance(data, dict):
        raise ApiError(400, "data must be a JSON object")
    try:
        told = _api_experiment(store, exp, holder).tell(
            trial_id, _number(body, "loss"), values=values, state=state, error=error, data=data
        )
    except TrialNotRunning as exc:
        raise ApiError(409, str(exc)) from None
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    return {"ok": True, "id": trial_id, "state": told.state.value, "loss": told.loss}


def report_trial(store: Store, trial_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/trials/<id>/report`` with ``{"step": n, "loss": x}`` → ``{"stop": bool}``
    (the pruner's decision; then tell it with ``"state": "pruned"``). Renews the lease."""
    from hyperdock.experiment import TrialNotRunning

    trial, holder = _http_trial(store, trial_id)
    step, loss = body.get("step"), _number(body, "loss")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0 or loss is None:
        raise ApiError(400, 'give {"step": a whole number >= 0, "loss": a number}')
    exp = store.get_experiment(trial.experiment_id)
    try:
        stop = _api_experiment(store, exp, holder).report(trial_id, step, loss)
    except TrialNotRunning as exc:
        raise ApiError(409, str(exc)) from None
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    return {"stop": bool(stop)}
