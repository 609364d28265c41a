"""Streaming an experiment's trials out (``hyperdock export``, ``trials --all``,
:meth:`~hyperdock.experiment.Experiment.export`) in constant memory, however many there
are: the trials are read from the store a batch at a time
(:meth:`~hyperdock.storage.base.Store.iter_trials`) and written as they come.

Formats: ``csv`` (one row per trial; the header needs every parameter and data key, so
the trials are read twice: once for the keys, once for the rows), ``jsonl`` (one trial
per line, as in ``trials --json``) and ``json`` (the experiment's settings and its
trials, written incrementally, the same text as ``json.dumps(..., indent=2,
sort_keys=True)`` of the whole).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from hyperdock.errors import ConfigError
from hyperdock.results import csv_fields, trial_json
from hyperdock.storage import Store
from hyperdock.trial import Experiment, Trial

__all__ = ["FORMATS", "write_export", "write_json_array"]

#: The formats :func:`write_export` writes.
FORMATS = ("csv", "json", "jsonl")


class _Lines:
    """A file-like ``write`` for the csv module that hands text on."""

    def __init__(self, write: Callable[[str], Any]) -> None:
        self.write = write


def write_json_array(items: Iterable[Any], write: Callable[[str], Any], depth: int = 0) -> int:
    """Write ``items`` as a JSON array indented like ``json.dumps(indent=2,
    sort_keys=True)`` at nesting ``depth``, one item at a time; return how many."""
    pad = "  " * (depth + 1)
    count = 0
    for item in items:
        text = json.dumps(item, indent=2, sort_keys=True).replace("\n", "\n" + pad)
        write(("[\n" if count == 0 else ",\n") + pad + text)
        count += 1
    write("[]" if count == 0 else "\n" + "  " * depth + "]")
    return count


def write_export(
    store: Store, exp: Experiment, fmt: str, write: Callable[[str], Any], *, batch: int = 1000
) -> int:
    """Write every trial of ``exp`` in format ``fmt`` through ``write``; return how
    many trials were written.

    Raises:
        ConfigError: ``fmt`` is not one of :data:`FORMATS`.
    """

    def trials() -> Iterator[Trial]:
        return store.iter_trials(exp.id, batch=batch)

    if fmt == "jsonl":
        count = 0
        for t in trials():
            write(json.dumps(trial_json(t), sort_keys=True) + "\n")
            count += 1
        return count
    if fmt == "json":
        head = json.dumps(
            {
                "experiment": exp.name,
                "sampler": exp.sampler,
                "seed": exp.seed,
                "space": exp.space,
                "target": exp.target.to_json(),
            },
            indent=2,
            sort_keys=True,
        )
        # "trials" sorts last: the head without its closing brace, then the array.
        write(head[: head.rstrip().rfind("}")].rstrip() + ',\n  "trials": ')
        count = write_json_array((trial_json(t) for t in trials()), write, depth=1)
        write("\n}\n")
        return count
    if fmt != "csv":
        raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    keys: dict[str, None] = {}
    data_keys: dict[str, None] = {}
    for t in trials():  # first pass: the columns
        _, params, data = csv_fields(t)
        keys.update(dict.fromkeys(params))
        data_keys.update(dict.fromkeys(data))
    param_cols, data_cols = sorted(keys), sorted(data_keys)
    writer = csv.writer(_Lines(write), lineterminator="\n")
    count = 0
    for t in trials():
        base, params, data = csv_fields(t)
        if count == 0:
            writer.writerow(
                [*base, *(f"params.{k}" for k in param_cols), *(f"data.{k}" for k in data_cols)]
            )
        writer.writerow(
            [
                *base.values(),
                *(params.get(k, "") for k in param_cols),
                *(data.get(k, "") for k in data_cols),
            ]
        )
        count += 1
    if count == 0:
        writer.writerow(["id", "number", "state", "loss"])
    return count
