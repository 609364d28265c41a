"""The commands that act on a store (``cancel``, ``enqueue``), serve it (``dashboard``),
and ``completion``."""

from __future__ import annotations

import contextlib

import click

from hyperdock.cli.common import opened_store
from hyperdock.cli.options import NAME_HELP, file_limits_option, store_option
from hyperdock.errors import ConfigError, StoreNotFound
from hyperdock.experiment import Experiment as ApiExperiment
from hyperdock.points import read_points
from hyperdock.storage import resolve_experiment
from hyperdock.trial import TrialState
from hyperdock.trialfs import Limits


@click.command(epilog="NAME is an experiment's name, a unique start of it, or latest (the newest).")
@click.argument("name", required=False)
@click.option("--trial", "trial_ids", type=int, multiple=True, help="Cancel only this trial.")
@store_option
def cancel(name: str | None, trial_ids: tuple[int, ...], store: str | None) -> None:
    """Cancel experiment NAME (queued trials are dropped, running ones stopped), or single
    trials with --trial ID. Running targets stop within one worker heartbeat."""
    if not name and not trial_ids:
        raise ConfigError("name an experiment, or give --trial ID")
    with opened_store(store, create=False) as st:
        if name:
            exp = resolve_experiment(st, name)
            if not ApiExperiment(st, exp).cancel():
                click.echo(
                    f"Experiment {exp.name} is {exp.state.value} already; nothing to cancel."
                )
            else:
                running = st.count_trials(exp.id)[TrialState.RUNNING]
                click.echo(
                    f"Cancelled experiment {exp.name}; {running} running trial(s) are being "
                    "stopped."
                )
        for trial_id in trial_ids:
            state = st.cancel_trial(trial_id)
            verb = "is being stopped" if state is TrialState.RUNNING else f"is {state.value}"
            click.echo(f"Trial {trial_id} {verb}.")


@click.command(epilog="NAME is an experiment's name, a unique start of it, or latest.")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for a confirmation.")
@click.option(
    "--keep-artifacts",
    is_flag=True,
    help="Keep the trials' files in the artifact store (only the store's records go).",
)
@store_option
def delete(name: str, yes: bool, keep_artifacts: bool, store: str | None) -> None:
    """Delete experiment NAME, its trials and the files they stored in its artifact
    store (--artifacts). The trial folders in the results folders stay."""
    from hyperdock.artifacts.access import delete_experiment, store_of

    with opened_store(store, create=False) as st:
        exp = resolve_experiment(st, name)
        trials = sum(st.count_trials(exp.id).values())
        artifacts = None if keep_artifacts else store_of(exp)
        also = f" and its stored files in {artifacts.describe()}" if artifacts else ""
        if not yes:
            click.confirm(
                f"Delete experiment {exp.name} ({trials} trial(s)){also}?", abort=True, err=True
            )
        deleted = delete_experiment(st, exp, keep_artifacts=keep_artifacts)
    files = f"; {deleted} stored file(s) deleted" if deleted is not None else ""
    click.echo(f"Deleted experiment {exp.name} ({trials} trial(s)){files}.")


@click.command(epilog=NAME_HELP)
@click.argument("name", required=False)
@click.option(
    "--params",
    "source",
    required=True,
    metavar="JSON|FILE",
    help="A JSON object or list of them, or a file: JSON, or CSV with one column per parameter.",
)
@click.option(
    "--front",
    is_flag=True,
    help="Before the trials queued already (suggestions waiting for a worker), too.",
)
@store_option
def enqueue(name: str | None, source: str, front: bool, store: str | None) -> None:
    """Queue known points for experiment NAME: they run before its later trials. Missing
    parameters are drawn from the space; unknown ones and values the space cannot hold
    are refused."""
    points = read_points(source)
    with opened_store(store, create=False) as st:
        exp = ApiExperiment(st, resolve_experiment(st, name))
        queued = exp.enqueue_many(points, front=front)
    ids = ", ".join(str(t.id) for t in queued)
    click.echo(f"Queued {len(queued)} trial(s) of experiment {exp.name}: {ids}")


@click.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free one).",
)
@click.option(
    "--token",
    envvar="HYPERDOCK_TOKEN",
    default=None,
    help="Needed by every API request (at least 16 characters; default: a random one, "
    "printed in the URL). [env HYPERDOCK_TOKEN]",
)
@click.option(
    "--no-token",
    is_flag=True,
    help="No token: any local account may read and act (single-user machines; 127.0.0.1 only).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests for this host name (a proxy's, this machine's DNS "
    "name); others get 403. Repeatable.",
)
@click.option(
    "--create",
    is_flag=True,
    help="Start on a new, empty SQLite store when the file does not exist "
    "(to create experiments from the dashboard).",
)
@file_limits_option
def dashboard(
    store: str | None,
    host: str,
    port: int,
    token: str | None,
    no_token: bool,
    allow_hosts: tuple[str, ...],
    create: bool,
    file_limits: str | None,
) -> None:
    """Serve the web dashboard: experiments, trials, plots, workers, actions."""
    from hyperdock.dashboard import check_bind, check_token, new_token, plotly_js, serve

    if no_token and token:
        raise ConfigError("give either --token (or HYPERDOCK_TOKEN) or --no-token, not both")
    check_token(token)
    check_bind(host, token)  # beyond loopback only with a token the user chose
    limits = Limits.parse(file_limits)
    generated = token is None and not no_token
    token = new_token() if generated else token
    plotly_js()  # refuses at once (ConfigError) when plotly is missing
    try:
        opened = opened_store(store, create=create)
    except StoreNotFound as exc:
        raise StoreNotFound(f"{exc}; or give --create to start on an empty one") from None
    with opened as st:

        def ready(url: str) -> None:
            # A token made here is shown (as Jupyter does); the user's own is not echoed.
            shown = f"{url}?token={token}" if generated else url
            click.echo(f"Dashboard on {shown} (store {st.describe()}); Ctrl-C stops it.")
            if token and not generated:
                click.echo(f"It needs its token: open {url}?token=… (the --token value).")

        with contextlib.suppress(KeyboardInterrupt):
            serve(st, host, port, token, ready=ready, allow_hosts=allow_hosts, limits=limits)


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    Enable it with: eval "$(hyperdock completion bash)" (zsh: the same with zsh; fish:
    hyperdock completion fish | source).
    """
    from click.shell_completion import BashComplete, FishComplete, ShellComplete, ZshComplete

    classes: dict[str, type[ShellComplete]] = {
        "bash": BashComplete,
        "zsh": ZshComplete,
        "fish": FishComplete,
    }
    root = click.get_current_context().find_root().command  # the hyperdock group
    script = classes[shell](root, {}, "hyperdock", "_HYPERDOCK_COMPLETE").source()
    click.echo(script)
