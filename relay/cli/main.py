"""The `relay` command group: its global options and `version`; each command group lives in its own module.

relay.cli.run (up, serve, worker, gateway-stub), relay.cli.events (events, dlq, replay),
relay.cli.config (check, init, import-openclaw, try), relay.cli.submit (agent, wake, send, tool),
relay.cli.schedules and relay.cli.ops (pause, resume, reload) are registered on it here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import version as package_version

import click

from relay.cli import config, events, run, schedules, submit
from relay.cli.common import EXIT_CONFIG, _redis, _redis_errors, _settings
from relay.cli.ops import register as _register_ops
from relay.errors import ConfigError
from relay.logs import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    envvar="RELAY_CONFIG",
    help="Path of relay.yaml (default: ./relay.yaml, or $RELAY_CONFIG).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    envvar="RELAY_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    envvar="RELAY_LOG_FORMAT",
    help="auto: JSON lines unless stderr is a terminal.",
)
@click.pass_context
def cli(ctx: click.Context, config: str | None, log_level: str, log_format: str) -> None:
    """openclaw-relay: a durable, verifying webhook relay in front of an OpenClaw gateway."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    setup_logging(log_level.upper(), json=None if log_format == "auto" else log_format == "json")


@cli.command()
def version() -> None:
    """Print the relay's version."""
    click.echo(package_version("openclaw-relay"))


for _group in (run, events, config, submit, schedules):
    for _command in _group.COMMANDS:
        cli.add_command(_command)
_register_ops(cli, _settings, _redis, _redis_errors)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="relay")
    except ConfigError as exc:  # e.g. a command used a secret whose env: variable is not set
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


if __name__ == "__main__":
    main()
