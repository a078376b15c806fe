"""`relay schedules list` and `run`: the `schedules:` of relay.yaml, shown and fired by hand."""

from __future__ import annotations

import os
import sys
import time

import click
import orjson

from relay.cli.common import EXIT_CONFIG, _redis, _redis_errors, _settings
from relay.cli.submit import _submit_options


@click.group()
def schedules() -> None:
    """The `schedules:` of relay.yaml (fired by the workers, once per tick)."""


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def schedules_list(ctx: click.Context, as_json: bool) -> None:
    """List schedules: spec, next tick, last tick fired (times in UTC)."""
    from relay.worker.ticker import describe

    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        rows = describe(redis, settings)
    if not rows and not as_json:
        click.echo("no schedules in the configuration", err=True)
    for row in rows:
        if as_json:
            click.echo(orjson.dumps(row).decode())
            continue
        last = row["last_tick"] or "never"
        if row["last_outcome"] == "skipped":
            last += " (missed, skipped)"
        nxt = row["next"] if row["enabled"] else "disabled"
        click.echo(f"{row['name']:<20} {row['spec']:<36} next {nxt or '-':<22} last {last}")


@schedules.command("run")
@click.argument("name")
@_submit_options
@click.pass_context
def schedules_run(
    ctx: click.Context, name: str, idempotency_key: str | None, as_json: bool, wait: bool, wait_timeout: float
) -> None:
    """Fire schedule NAME now (its regular ticks are unchanged); prints the action id."""
    from relay.cli.submit import report
    from relay.client import RelayClient
    from relay.protocol.schedules import build_action, source_name

    settings = _settings(ctx)
    if name not in settings.schedules:
        have = ", ".join(sorted(settings.schedules)) or "none"
        click.echo(f"error: no schedule {name!r} in the configuration (have: {have})", err=True)
        sys.exit(EXIT_CONFIG)
    action = build_action(name, settings.schedules[name], settings.max_message_bytes)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    key = idempotency_key or f"{name}@run:{stamp}:{os.urandom(4).hex()}"  # like the ticks', but unique
    redis = _redis(settings)
    with _redis_errors():
        client = RelayClient(settings, source=source_name(name), redis=redis)
        submitted = client.submit(action, idempotency_key=key)
        sys.exit(report(client, submitted, as_json=as_json, wait=wait, wait_timeout=wait_timeout))


COMMANDS = (schedules,)
