"""The `relay` command."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import click
import orjson

from .config import Settings, load_settings
from .errors import ConfigError, RelayError

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ContextFilter())


class _ContextFilter(logging.Filter):
    """Appends the ids passed in `extra=` (event_id, action_id, …) to each line as key=value."""

    FIELDS = ("source", "delivery_id", "event_id", "action_id", "status", "attempt", "latency_ms", "actions",
              "reason", "error")  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        parts = [f"{name}={getattr(record, name)}" for name in self.FIELDS if hasattr(record, name)]
        record.context = (" " + " ".join(parts)) if parts else ""
        return True


def _settings(ctx: click.Context) -> Settings:
    try:
        return load_settings(ctx.obj.get("config"))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _redis(settings: Settings) -> Any:
    from redis import Redis

    if not settings.redis_url:
        click.echo(
            "error: no redis_url configured (RELAY_REDIS_URL); `relay up` starts an embedded one", err=True
        )
        sys.exit(EXIT_CONFIG)
    return Redis.from_url(settings.redis_url)


@contextmanager
def _redis_errors() -> Iterator[None]:
    import redis.exceptions

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        click.echo(f"error: cannot reach Redis: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", type=click.Path(dir_okay=False), envvar="RELAY_CONFIG",
              help="Path of relay.yaml (default: ./relay.yaml, or $RELAY_CONFIG).")  # fmt: skip
@click.option("--log-level", default="INFO", show_default=True, envvar="RELAY_LOG_LEVEL")
@click.pass_context
def cli(ctx: click.Context, config: str | None, log_level: str) -> None:
    """openclaw-relay: a durable, verifying webhook relay in front of an OpenClaw gateway."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    setup_logging(log_level.upper())


@cli.command()
def version() -> None:
    """Print the relay's version."""
    click.echo(package_version("openclaw-relay"))


@cli.command()
@click.option("--host", help="Address to listen on (default from config: 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default from config: 8080).")
@click.option("--workers", type=int, default=1, show_default=True, help="Delivery worker processes to start.")
@click.pass_context
def up(ctx: click.Context, host: str | None, port: int | None, workers: int) -> None:
    """Run everything: ingress, delivery worker(s), and an embedded Redis when no redis_url is set."""
    settings = _settings(ctx)
    embedded = None
    if not settings.redis_url:
        from .embedded import start_embedded

        url, embedded = start_embedded(settings.data_dir)
        settings.redis_url = url
        click.echo(f"embedded Redis (AOF on) at {url}", err=True)
    env = {**os.environ, "RELAY_REDIS_URL": settings.redis_url}
    if ctx.obj.get("config"):
        env["RELAY_CONFIG"] = str(Path(ctx.obj["config"]).resolve())
    children = [
        subprocess.Popen([sys.executable, "-m", "relay.cli", "worker"], env=env) for _ in range(workers)
    ]
    try:
        _serve(settings, host, port)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=40)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.shutdown()


def _serve(settings: Settings, host: str | None, port: int | None) -> None:
    import uvicorn

    from .app import create_app

    try:
        app = create_app(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    uvicorn.run(app, host=host or settings.host, port=port or settings.port, log_level="warning",
                access_log=False, server_header=False)  # fmt: skip


@cli.command()
@click.option("--host", help="Address to listen on (default from config: 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default from config: 8080).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the ingress only (needs redis_url)."""
    settings = _settings(ctx)
    if not settings.redis_url:
        click.echo("error: `relay serve` needs redis_url (RELAY_REDIS_URL); `relay up` embeds one", err=True)
        sys.exit(EXIT_CONFIG)
    _serve(settings, host, port)


@cli.command()
@click.option("--burst", is_flag=True, help="Deliver what is queued, then exit.")
@click.option("--name", help="Worker name shown by `rq info` (default: random).")
@click.pass_context
def worker(ctx: click.Context, burst: bool, name: str | None) -> None:
    """Run one delivery worker (an RQ worker; run more processes to scale out)."""
    from .worker import run_worker

    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        run_worker(settings, redis, burst=burst, name=name)


@cli.command("gateway-stub")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=18789, show_default=True)
@click.option(
    "--token", envvar="OPENCLAW_HOOKS_TOKEN", required=True, help="hooks.token [$OPENCLAW_HOOKS_TOKEN]"
)
@click.option("--hooks-path", default="/hooks", show_default=True)
@click.option("--admit-delay", type=float, default=0.0, show_default=True,
              help="Seconds each /hooks/agent request is held, as a gateway does while it admits the run.")  # fmt: skip
@click.option(
    "--record", type=click.Path(dir_okay=False), help="Append every handled request to this JSONL file."
)
def gateway_stub(
    host: str, port: int, token: str, hooks_path: str, admit_delay: float, record: str | None
) -> None:
    """Run a small OpenClaw-compatible gateway that records what it receives."""
    import uvicorn

    from .gateway_stub import StubState, create_stub_app

    state = StubState(token=token, hooks_path=hooks_path, admit_delay=admit_delay, record_path=record)
    uvicorn.run(create_stub_app(state), host=host, port=port, log_level="warning", access_log=False)


@cli.command("try")
@click.argument("source")
@click.argument("payload", type=click.File("rb"))
@click.option(
    "--header", "-H", "headers", multiple=True, help="A request header, as 'Name: value' (repeatable)."
)
@click.pass_context
def try_(ctx: click.Context, source: str, payload: Any, headers: Sequence[str]) -> None:
    """Show the actions PAYLOAD would become at SOURCE; sends nothing, skips signature checks."""
    from .event import Event
    from .ingress import build_mapper, build_sources

    settings = _settings(ctx)
    try:
        sources = build_sources(settings)
        mapper = build_mapper(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if source not in sources:
        click.echo(
            f"error: no source {source!r} in the configuration (have: {', '.join(sorted(sources))})", err=True
        )
        sys.exit(EXIT_CONFIG)
    src = sources[source]
    hdrs = {}
    for item in headers:
        name, _, value = item.partition(":")
        hdrs[name.strip().lower()] = value.strip()
    body = payload.read()
    try:
        parsed = src.preset.parse(hdrs, body)
        skip = src.preset.skip(hdrs, parsed, src.config)
        if skip:
            click.echo(f"skipped: {skip}")
            return
        event = Event(source=source, payload=parsed, headers=hdrs, path=source, delivery_id="try")
        actions = mapper.map(event, src.preset.transform)
    except RelayError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except Exception:
        import traceback

        click.echo(traceback.format_exc(), err=True)
        sys.exit(1)
    if not actions:
        click.echo("no actions")
    for action in actions:
        click.echo(f"POST {settings.gateway.hooks_path.rstrip('/')}/{action.kind}")
        click.echo(orjson.dumps(action.body(), option=orjson.OPT_INDENT_2).decode())


@cli.command()
@click.option("--limit", "-n", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def events(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List recent events, newest first, with their actions' states."""
    from . import keys
    from .queue import load_action, load_event

    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        for raw_id in redis.zrevrange(keys.EVENTS, 0, limit - 1):
            event = load_event(redis, raw_id.decode())
            if event is None:
                continue
            actions = [{"id": a["id"], "kind": a["kind"], **_action_state(load_action(redis, a["id"]))}
                       for a in event["actions"]]  # fmt: skip
            row = {k: event.get(k) for k in ("id", "source", "delivery_id", "state", "received_at")}
            row["actions"] = actions
            if as_json:
                click.echo(orjson.dumps(row).decode())
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["received_at"]))
                states = (
                    ", ".join(f"{a['kind']}:{a.get('state', 'queued')}" for a in actions) or event["state"]
                )
                click.echo(f"{when}  {row['id']}  {row['source']:<12} {row['delivery_id'][:40]:<40} {states}")


def _action_state(record: dict[str, str]) -> dict[str, Any]:
    return {k: record[k] for k in ("state", "attempts", "last_status", "run_id") if record.get(k)}


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="relay")


if __name__ == "__main__":
    main()
