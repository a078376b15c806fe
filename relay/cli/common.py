"""What every `relay` command module shares: the settings, the Redis connection, exit codes.

The helpers keep the names they had when every command lived in relay/cli/main.py, so the command
bodies moved into their group modules unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import orjson

from relay.config import Settings, load_settings
from relay.errors import ConfigError

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def _settings(ctx: click.Context, *, lenient: bool = True) -> Settings:
    """The settings, or exit 2 with the error. Lenient: an `env:`/`file:` secret that cannot be
    resolved fails only when the command uses it (naming the variable); the processes that serve
    and deliver (`up`, `serve`, `worker`) resolve every secret at start."""
    try:
        return load_settings(ctx.obj.get("config"), lenient_secrets=lenient)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _redis(settings: Settings) -> Any:
    """Redis for every command but `relay up`: redis_url, else the running `relay up`'s embedded one."""
    from relay.store.connection import connect
    from relay.store.embedded import NoRedis, resolve_redis_url

    try:
        return connect(resolve_redis_url(settings), settings)
    except NoRedis as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)


@contextmanager
def _redis_errors() -> Iterator[None]:
    import redis.exceptions

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        click.echo(f"error: cannot reach Redis: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)


def _echo_actions(settings: Settings, actions: Sequence[Any]) -> None:
    """Each action's door at the gateway and its body, as `relay try` and `replay --dry-run` show them."""
    for action in actions:
        door = {"send": "RPC send (WebSocket)", "tool": "POST /tools/invoke"}.get(action.kind)
        click.echo(door or f"POST {settings.gateway.hooks_path.rstrip('/')}/{action.kind}")
        click.echo(orjson.dumps(action.body(), option=orjson.OPT_INDENT_2).decode())


def _echo_durability(client: Any, settings: Settings, err: bool = False) -> None:
    """What survives a Redis restart (relay.store.durability); warnings go to stderr."""
    from relay.store.durability import report

    for line in report(client, settings.redis_url, settings.durability.min_replicas, settings):
        click.echo(line, err=err or line.startswith("warning"))


def _check_transforms(settings: Settings) -> None:
    """Import every mapping's transform now; exit 2 naming the mapping and module if one fails."""
    from relay.protocol.pipeline import build_mapper

    try:
        build_mapper(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
