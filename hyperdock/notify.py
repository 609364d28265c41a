"""Notifications: POST an experiment's summary to webhooks when it ends.

``hyperdock run`` and ``hyperdock supervisor`` take ``--notify URL`` (repeatable). When the
experiment finishes, is cancelled or fails, each URL gets the JSON summary of
``hyperdock best --json`` plus an ``"event"`` key. A Slack incoming webhook (host
``hooks.slack.com``) gets a Slack message (``text`` and ``blocks``) instead.

A notification never fails the run: a URL that cannot be reached is tried again twice,
then one warning is logged. Webhook URLs carry secrets in their path (Slack's do), so
logs name only the scheme and host.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from hyperdock import __version__
from hyperdock.jsonutil import to_jsonable

log = logging.getLogger("hyperdock.notify")

#: Seconds one POST may take.
TIMEOUT = 10.0
#: Attempts after the first one fails.
RETRIES = 2
#: Seconds before the first retry; doubled for each further one.
BACKOFF = 1.0
#: Host of Slack incoming webhooks.
SLACK_HOST = "hooks.slack.com"
#: Events a summary can announce.
EVENTS = ("finished", "failed", "cancelled")


def safe_url(url: str) -> str:
    """The part of ``url`` that is safe to log: scheme and host (no path, query or user).

    Args:
        url: A webhook URL.

    Returns:
        ``scheme://host[:port]``, or ``"<invalid URL>"`` when it cannot be parsed.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        return "<invalid URL>"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def is_slack(url: str) -> bool:
    """True for a Slack incoming-webhook URL (host ``hooks.slack.com``)."""
    try:
        return (urlsplit(url).hostname or "").lower() == SLACK_HOST
    except ValueError:
        return False


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be used as a webhook, or None when it can.

    Args:
        url: What was given to ``--notify``.

    Returns:
        A one-line problem (without the URL's secret parts), or None.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "--notify needs an http:// or https:// URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--notify needs an http:// or https:// URL, got {safe_url(url)}"
    return None


def event_of(summary: dict[str, Any], *, error: bool = False) -> str:
    """The event a summary announces.

    Args:
        summary: The experiment summary (``state``, ``trials`` …).
        error: The run ended with an error.

    Returns:
        ``"cancelled"`` for a cancelled experiment, ``"failed"`` for a failed one
        (``--max-failures``), after an error or when no trial completed, else
        ``"finished"``.
    """
    if summary.get("state") == "cancelled":
        return "cancelled"
    if error or summary.get("state") == "failed" or not summary.get("trials", {}).get("completed"):
        return "failed"
    return "finished"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def slack_message(summary: dict[str, Any]) -> dict[str, Any]:
    """Slack's message format for a summary: a ``text`` fallback and mrkdwn ``blocks``.

    Args:
        summary: The experiment summary, with its ``event``.

    Returns:
        A JSON object for a Slack incoming webhook.
    """
    name = summary.get("experiment", "?")
    event = summary.get("event", "finished")
    state = summary.get("state", "?")
    icon = {"finished": ":white_check_mark:", "cancelled": ":no_entry_sign:"}.get(event, ":x:")
    counts = ", ".join(f"{n} {s}" for s, n in summary.get("trials", {}).items() if n)
    best = summary.get("best")
    headline = f"Hyperdock experiment *{name}* {event} (state {state})"
    lines = [f"{icon} {headline}", f"*Trials:* {counts or 'none'}"]
    text = f"Hyperdock experiment {name} {event}: {counts or 'no trials'}"
    if best:
        if best.get("values"):
            values = ", ".join(f"{k} {_fmt(v)}" for k, v in best["values"].items())
            lines.append(f"*Best:* {values} (trial {best.get('trial')})")
        else:
            lines.append(f"*Best loss:* {_fmt(best.get('loss'))} (trial {best.get('trial')})")
        text += f"; best loss {_fmt(best.get('loss'))}"
        params = _short(json.dumps(best.get("params"), sort_keys=True), 2000)
        lines.append(f"*Best parameters:*\n```{params}```")
        front = summary.get("pareto_front")
        if front:
            lines.append(f"*Pareto front:* {len(front)} trial(s)")
    else:
        lines.append("No trial completed.")
    if summary.get("error"):
        lines.append(f"*Error:* {_short(str(summary['error']), 500)}")
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}],
    }


def _reason(exc: BaseException, url: str) -> str:
    """A description of ``exc`` that does not repeat the URL."""
    if isinstance(exc, urllib.error.HTTPError):
        text = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        text = str(exc.reason)
    else:
        text = f"{type(exc).__name__}: {exc}"
    path = urlsplit(url).path
    for secret in (url, path if len(path) > 1 else ""):
        if secret:
            text = text.replace(secret, "…")
    return text


def post(
    url: str,
    summary: dict[str, Any],
    *,
    slack: bool | None = None,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
) -> bool:
    """POST ``summary`` (or its Slack message) to ``url``; never raises.

    Args:
        url: The webhook.
        summary: The experiment summary, with its ``event``.
        slack: Send Slack's message format; None decides by the host (``hooks.slack.com``).
        timeout: Seconds per attempt.
        retries: Attempts after a failed one; waits ``backoff``, ``2 * backoff`` … between.
        backoff: Seconds before the first retry.

    Returns:
        True when the server answered with a 2xx status. On failure one warning is logged,
        naming only the URL's scheme and host.
    """
    problem = check_url(url)
    if problem:
        log.warning("notification not sent: %s", problem)
        return False
    if slack is None:
        slack = is_slack(url)
    body = json.dumps(to_jsonable(slack_message(summary) if slack else summary)).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": f"hyperdock/{__version__}",
        },
    )
    where = safe_url(url)
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            log.debug("notification sent to %s", where)
            return True
        except Exception as exc:  # a notification never fails the run
            reason = _reason(exc, url)
            log.debug("notification to %s, attempt %d: %s", where, attempt + 1, reason)
    log.warning("notification to %s failed after %d attempt(s): %s", where, retries + 1, reason)
    return False


def notify_all(urls: Iterable[str], summary: dict[str, Any]) -> int:
    """POST ``summary`` to every URL (see :func:`post`).

    Args:
        urls: Webhook URLs.
        summary: The experiment summary, with its ``event``.

    Returns:
        How many notifications were delivered.
    """
    return sum(post(url, summary) for url in urls)


__all__ = [
    "EVENTS",
    "check_url",
    "event_of",
    "is_slack",
    "notify_all",
    "post",
    "safe_url",
    "slack_message",
]
