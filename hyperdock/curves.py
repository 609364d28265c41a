"""The learning curves pruners judge: an in-memory optuna study of every trial with its
intermediate losses, kept by :class:`hyperdock.study.StudyMirror` when the experiment has
a pruner.

Samplers do not read it (they work on the compact :class:`hyperdock.history.TrialHistory`);
optuna's pruners read whole trials, so this study holds one optuna trial per store trial
and grows with the experiment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hyperdock.pruners import NUMBER_ATTR, Pruner, horizon
from hyperdock.trial import Trial, TrialState, TrialSummary

if TYPE_CHECKING:
    from hyperdock.objectives import Objectives
    from hyperdock.study import OptunaSpace

_STATES = {
    TrialState.COMPLETED: "COMPLETE",
    TrialState.PRUNED: "PRUNED",
    TrialState.FAILED: "FAIL",
    TrialState.CANCELLED: "FAIL",
}


class CurveStudy:
    """Every trial (running ones with their intermediate losses so far) as optuna trials.

    Args:
        optuna: The optuna module.
        codec: The space in optuna's terms.
        objectives: What is optimised.
    """

    def __init__(self, optuna: Any, codec: OptunaSpace, objectives: Objectives) -> None:
        self.optuna = optuna
        self.codec = codec
        self.objectives = objectives
        self.storage = optuna.storages.InMemoryStorage()
        self.study = optuna.create_study(
            storage=self.storage,
            # A fixed name: Hyperband assigns brackets from a hash of the study name,
            # so a random one would change them on every supervisor (re)start.
            study_name="hyperdock",
            directions=list(objectives.directions),
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
        self._ids: dict[int, int] = {}  # store trial id -> optuna trial id
        self._final: set[int] = set()  # store ids mirrored in a final state
        self._steps: dict[int, int] = {}  # optuna trial id -> intermediate values set

    def sync(
        self,
        trials: Iterable[Trial | TrialSummary],
        progress: Mapping[int, Sequence[tuple[int, float]]],
    ) -> None:
        """Bring the study up to date with ``trials`` and their intermediate losses."""
        opt = self.optuna
        for t in trials:
            if t.id in self._final:
                continue
            oid = self._ids.get(t.id)
            if oid is None:
                internal = self.codec.internal(t.params)
                if internal is None:
                    self._final.add(t.id)
                    continue
                frozen = opt.trial.create_trial(
                    state=opt.trial.TrialState.RUNNING,
                    params=internal,
                    distributions={k: self.codec.distributions[k] for k in internal},
                    system_attrs={NUMBER_ATTR: t.number},
                )
                oid = self.storage.create_new_trial(self.study._study_id, template_trial=frozen)
                self._ids[t.id] = oid
            self._set_progress(oid, progress.get(t.id, ()))
            if t.state.finished:
                self._finish(t, oid)

    def _set_progress(self, oid: int, points: Sequence[tuple[int, float]]) -> None:
        if self.objectives.multi or not points:
            return
        done = self._steps.get(oid, 0)
        for step, loss in points[done:]:
            if math.isfinite(loss):
                self.storage.set_trial_intermediate_value(oid, step, loss)
        self._steps[oid] = len(points)

    def _finish(self, t: Trial | TrialSummary, oid: int) -> None:
        state = _STATES[t.state]
        values = self.objectives.values(t) if state == "COMPLETE" else None
        if state == "COMPLETE" and (values is None or not all(map(math.isfinite, values))):
            state = "FAIL"
        self.storage.set_trial_state_values(
            oid, self.optuna.trial.TrialState[state], values if state == "COMPLETE" else None
        )
        self._final.add(t.id)

    def prune(self, pruner: Pruner, running: Iterable[int]) -> list[int]:
        """Store ids among ``running`` that ``pruner`` would stop now (see
        :meth:`hyperdock.study.StudyMirror.prune`)."""
        out = []
        end = horizon(pruner, self.study)
        for sid in running:
            oid = self._ids.get(sid)
            if oid is None:
                continue
            frozen = self.storage.get_trial(oid)
            if frozen.state != self.optuna.trial.TrialState.RUNNING:
                continue
            if not frozen.intermediate_values:
                continue
            if end is not None and frozen.last_step is not None and frozen.last_step >= end:
                continue
            if pruner.prune(self.study, frozen):
                out.append(sid)
        return out
