"""loss.json: every accepted form, and a clear error for every rejected one."""

from __future__ import annotations

import pytest

from hyperdock.errors import LossFileError
from hyperdock.trial import parse_loss


@pytest.mark.parametrize(
    ("text", "ok", "loss", "extra"),
    [
        ('{"loss": 0.12, "state": "ok"}', True, 0.12, {}),
        ('{"loss": 0.12, "status": "ok"}', True, 0.12, {}),
        ('{"loss": 3}', True, 3.0, {}),
        ("0.25", True, 0.25, {}),
        ("  -1e3\n", True, -1000.0, {}),
        (
            '{"loss": 0.5, "state": "ok", "accuracy": 0.9, "epochs": [1, 2]}',
            True,
            0.5,
            {"accuracy": 0.9, "epochs": [1, 2]},
        ),
        ('{"state": "fail"}', False, None, {}),
        ('{"status": "fail", "reason": "diverged"}', False, None, {"reason": "diverged"}),
        ('{"loss": 1.5, "state": "fail"}', False, 1.5, {}),
        ('{"loss": NaN, "state": "fail"}', False, None, {}),
    ],
)
def test_accepted_forms(text: str, ok: bool, loss: float | None, extra: dict[str, object]) -> None:
    report = parse_loss(text)
    assert (report.ok, report.loss, report.extra) == (ok, loss, extra)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("{loss: 1}", "not valid JSON"),
        ('{"loss": 0.1', "not valid JSON"),
        ("NaN", "not a finite number"),
        ('{"loss": NaN}', "not a finite number"),
        ('{"loss": Infinity, "state": "ok"}', "not a finite number"),
        ('{"loss": "0.1"}', "not a number"),
        ('{"loss": null}', "not a number"),
        ('{"loss": true}', "not a number"),
        ('{"loss": ["a", 2]}', "not a number"),
        ('{"losses": [1, 2]}', "map objective names"),
        ('{"loss": []}', "empty list"),
        ('{"accuracy": 0.9}', 'no "loss"'),
        ('{"loss": 1, "state": "maybe"}', '"state"'),
        ('"0.5"', "object or a number"),
        ("[0.5]", "object or a number"),
        ("true", "object or a number"),
    ],
)
def test_rejected_forms_say_what_the_file_held(text: str, says: str) -> None:
    with pytest.raises(LossFileError) as info:
        parse_loss(text)
    message = str(info.value)
    assert says in message
    if text.strip():
        assert text.strip()[:10] in message
