"""Runtimes: how a worker runs a target — a local process or a Docker container."""

from __future__ import annotations

from hyperdock.runtimes.base import Execution, RunContext, RunOutcome, Runtime

__all__ = ["Execution", "RunContext", "RunOutcome", "Runtime"]
