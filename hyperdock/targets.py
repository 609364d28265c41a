"""Targets: what a trial runs, turned from user input into a stored
:class:`~hyperdock.trial.Target`.

:func:`Command` and :func:`Image` build one in Python; :func:`target_from` and
:func:`parse_env` read what the command line's ``--image`` / ``--command`` /
``--target-env`` (and ``HYPERDOCK_ENV``) gave. :data:`ASK_TELL_TARGET` is the target of
an experiment driven only by ask/tell.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from hyperdock.errors import ConfigError
from hyperdock.trial import Target

__all__ = ["ASK_TELL_TARGET", "Command", "Image", "parse_env", "target_from"]


def Command(
    argv: Sequence[str] | str,
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """A local command as the target: it runs once per trial (see the target contract).

    Args:
        argv: The command and its arguments (a string is split like a shell would).
        timeout: Seconds one attempt may run (None: no limit).
        env: Extra environment for the command.

    Example:
        >>> hyperdock.Command(["python", "train.py"], timeout=600)
    """
    import shlex

    args = tuple(shlex.split(argv)) if isinstance(argv, str) else tuple(str(a) for a in argv)
    if not args:
        raise ConfigError("Command() needs a program to run, e.g. Command(['python', 'train.py'])")
    return Target(command=args, timeout=timeout, env=_env(env))


def Image(
    name: str,
    *,
    command: Sequence[str] | str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """A Docker image as the target.

    Args:
        name: The image, e.g. ``"erikgartner/hyperdock-test"``.
        command: Overrides the image's command (a string is split like a shell would).
        timeout: Seconds one attempt may run (None: no limit).
        env: Extra environment for the container.
    """
    import shlex

    if not name:
        raise ConfigError("Image() needs an image name, e.g. Image('erikgartner/hyperdock-test')")
    argv = None
    if command is not None:
        argv = tuple(shlex.split(command)) if isinstance(command, str) else tuple(command)
    return Target(image=name, command=argv, timeout=timeout, env=_env(env))


def _env(env: Mapping[str, str] | None) -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in (env or {}).items())


#: The stored target of an experiment driven only by ask/tell (no command, no image).
ASK_TELL_TARGET = Target()


def target_from(
    image: str | None,
    command: str | None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """The target ``--image`` / ``--command`` describe: a Docker image (``command``
    then overrides its command) or a local command, split like a shell would.

    Args:
        image: The Docker image, or None.
        command: The command line, e.g. ``"python train.py --fast"`` (no shell runs it).
        timeout: Seconds one attempt may run (None: no limit).
        env: Extra environment for the target.

    Raises:
        ConfigError: neither is given, the command is empty, or the timeout is not
            positive.
    """
    import shlex

    if not image and not command:
        raise ConfigError("give the target: --image IMAGE (Docker) or --command 'CMD ARGS'")
    argv = tuple(shlex.split(command)) if command else None
    if command is not None and not argv:
        raise ConfigError("--command is empty")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout}")
    return Target(image=image or None, command=argv, timeout=timeout, env=_env(env))


def parse_env(values: Sequence[str]) -> dict[str, str]:
    """Environment entries as ``--env``, ``--target-env`` and ``HYPERDOCK_ENV`` give them.

    Args:
        values: ``KEY=VALUE`` items, each given alone or as a JSON list
            (``'["A=1", "B=2"]'``, the original ``HYPERDOCK_ENV``); blank ones are
            skipped.

    Returns:
        The variables, a later entry winning over an earlier one.

    Raises:
        ConfigError: a malformed JSON list, or an entry that is not ``KEY=VALUE``.
    """
    items: list[str] = []
    for value in values:
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"--env / HYPERDOCK_ENV is not a JSON list: {exc}") from None
            if not isinstance(parsed, list) or not all(isinstance(i, str) for i in parsed):
                raise ConfigError('--env / HYPERDOCK_ENV must be a JSON list of "KEY=VALUE"')
            items += parsed
        elif text:
            items.append(text)
    env = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"environment entry {item!r} is not KEY=VALUE")
        env[key] = val
    return env
