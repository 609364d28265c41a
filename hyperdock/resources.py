"""What one trial may use (CPUs, memory, shared memory, GPUs), and how a worker shares
its GPUs between the trials it runs at once.

Resources are a setting of the experiment (``--cpus-per-trial``, ``--memory-per-trial``,
``--shm-size``, ``--gpus-per-trial``, ``--trials-per-gpu``), stored in its meta, so every
worker honours them: local Docker turns them into container limits, Slurm into
``sbatch`` options, Kubernetes into requests and limits. A worker's GPUs (``--gpus
0,1,2,3``) are handed out by a :class:`GpuPool`: with ``--gpus-per-trial 2`` two trials
run at once, each on its own two GPUs; with ``--trials-per-gpu 2`` two trials share each
GPU.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hyperdock.errors import ConfigError

__all__ = ["GpuPool", "Resources", "parse_bytes"]

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str | int, option: str) -> int:
    """``"8g"``, ``"512m"``, ``"1.5G"``, ``"64MiB"`` or a number of bytes.

    Raises:
        ConfigError: naming ``option``, when it is not a positive size.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtb]?)(?:i?b)?\s*", str(text).lower())
        value = float(m.group(1)) * _UNITS[m.group(2)] if m else -1.0
    if not 1 <= value < 2**63:
        raise ConfigError(f"{option} must be a size such as 512m or 8g, got {text!r}")
    return int(value)


@dataclass(frozen=True)
class Resources:
    """What one trial may use.

    Attributes:
        cpus: CPUs (fractions allowed), None for no limit.
        memory: Bytes of memory, None for no limit.
        shm_size: Bytes of ``/dev/shm`` for containers, None for the engine's default.
        gpus: GPUs each trial gets (0: none).
        trials_per_gpu: Trials that share one GPU (with ``gpus`` 1).
    """

    cpus: float | None = None
    memory: int | None = None
    shm_size: int | None = None
    gpus: int = 0
    trials_per_gpu: int = 1

    def __post_init__(self) -> None:
        if self.cpus is not None and not (math.isfinite(self.cpus) and 0 < self.cpus <= 4096):
            raise ConfigError(f"--cpus-per-trial must be from 0 to 4096, got {self.cpus}")
        if not 0 <= self.gpus <= 1024:
            raise ConfigError(f"--gpus-per-trial must be from 0 to 1024, got {self.gpus}")
        if not 1 <= self.trials_per_gpu <= 1024:
            raise ConfigError(f"--trials-per-gpu must be from 1 to 1024, got {self.trials_per_gpu}")
        if self.trials_per_gpu > 1 and self.gpus > 1:
            raise ConfigError(
                "--trials-per-gpu shares one GPU between trials: use it with --gpus-per-trial 1"
            )

    @classmethod
    def build(
        cls,
        *,
        cpus: float | None = None,
        memory: str | int | None = None,
        shm_size: str | int | None = None,
        gpus: int | None = None,
        trials_per_gpu: int | None = None,
    ) -> Resources:
        """From the command line's values (sizes as ``8g``)."""
        return cls(
            cpus=cpus,
            memory=None if memory is None else parse_bytes(memory, "--memory-per-trial"),
            shm_size=None if shm_size is None else parse_bytes(shm_size, "--shm-size"),
            gpus=gpus or 0,
            trials_per_gpu=trials_per_gpu or 1,
        )

    @property
    def given(self) -> bool:
        """Whether any limit is set."""
        return self != Resources()

    def to_meta(self) -> dict[str, Any]:
        """As stored in ``experiment.meta["resources"]`` (only what is set)."""
        out: dict[str, Any] = {}
        for key in ("cpus", "memory", "shm_size"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.gpus:
            out["gpus"] = self.gpus
        if self.trials_per_gpu != 1:
            out["trials_per_gpu"] = self.trials_per_gpu
        return out

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Resources:
        """The resources an experiment was stored with (none: no limits)."""
        data = meta.get("resources") or {}
        return cls(
            cpus=data.get("cpus"),
            memory=data.get("memory"),
            shm_size=data.get("shm_size"),
            gpus=int(data.get("gpus", 0)),
            trials_per_gpu=int(data.get("trials_per_gpu", 1)),
        )

    def describe(self) -> str:
        """``2 CPUs, 8 GiB, 1 GPU`` (empty when nothing is set)."""
        parts = []
        if self.cpus is not None:
            parts.append(f"{self.cpus:g} CPU{'s' if self.cpus != 1 else ''}")
        if self.memory is not None:
            parts.append(f"{self.memory / 2**30:.3g} GiB")
        if self.gpus:
            share = f" (shared by {self.trials_per_gpu})" if self.trials_per_gpu > 1 else ""
            parts.append(f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}{share}")
        if self.shm_size is not None:
            parts.append(f"shm {self.shm_size / 2**20:.4g} MiB")
        return ", ".join(parts)


class GpuPool:
    """A worker's GPUs, handed to trials (thread-safe).

    Args:
        ids: The worker's GPU ids (``--gpus 0,1,2,3``).
    """

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self._use = dict.fromkeys(self.ids, 0)
        self._cond = threading.Condition()

    @classmethod
    def parse(cls, gpus: str | None) -> GpuPool | None:
        """The pool of ``--gpus 0,1,…`` (None for no GPUs or ``all``)."""
        if not gpus or gpus.strip() == "all":
            return None
        return cls([g.strip() for g in gpus.split(",") if g.strip()])

    def capacity(self, res: Resources) -> int:
        """How many trials with ``res`` fit at once."""
        if not res.gpus:
            return 1 << 30
        return (len(self.ids) * res.trials_per_gpu) // res.gpus

    def acquire(self, res: Resources, stop: threading.Event) -> list[str] | None:
        """GPUs for one trial: the least used ones, waiting until enough are free;
        None when ``stop`` is set first.

        Raises:
            ConfigError: the worker has fewer GPUs than one trial needs.
        """
        if res.gpus > len(self.ids):
            raise ConfigError(
                f"a trial needs {res.gpus} GPUs (--gpus-per-trial) but this worker has "
                f"{len(self.ids)} (--gpus {','.join(self.ids)})"
            )
        with self._cond:
            while not stop.is_set():
                free = [g for g in self.ids if self._use[g] < res.trials_per_gpu]
                if len(free) >= res.gpus:
                    chosen = sorted(free, key=lambda g: (self._use[g], self.ids.index(g)))
                    chosen = sorted(chosen[: res.gpus], key=self.ids.index)
                    for g in chosen:
                        self._use[g] += 1
                    return chosen
                self._cond.wait(0.5)
        return None

    def release(self, ids: Sequence[str]) -> None:
        with self._cond:
            for g in ids:
                self._use[g] = max(0, self._use[g] - 1)
            self._cond.notify_all()
