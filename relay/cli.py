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

from .config import Settings, load_settings
from .errors import ConfigError, RelayError
from .logs import setup_logging

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def _settings(ctx: click.Context) -> Settings:
    try:
        return load_settings(ctx.obj.get("config"))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _redis(settings: Settings) -> Any:
    if not settings.redis_url:
        click.echo(
            "error: no redis_url configured (RELAY_REDIS_URL); `relay up` starts an embedded one", err=True
        )
        sys.exit(EXIT_CONFIG)
    from .redisconn import connect

    return connect(settings.redis_url, settings)


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
    """Run everything: ingress, delivery worker(s), and an embedded Redis when no redis_url is set."""
    settings = _settings(ctx)
    _check_transforms(settings)
    embedded = None
    if not settings.redis_url:
        from .embedded import start_embedded

        url, embedded = start_embedded(settings.data_dir)
        settings.redis_url = url
        click.echo(f"embedded Redis at {url}", err=True)
        _echo_durability(embedded, settings, err=True)
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
    from .http import protocol

    # Request heads are limited like bodies: size, header count and time (relay.http).
    http = protocol(max_headers=settings.max_headers, head_timeout=settings.body_timeout_seconds)
    uvicorn.run(app, host=host or settings.host, port=port or settings.port, log_level="warning",
                access_log=False, server_header=False, http=http)  # fmt: skip


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
    from .ingress import build_budget, build_mapper, build_sources

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
    except Exception:
        import traceback

        click.echo(traceback.format_exc(), err=True)
        sys.exit(1)
    if not actions:
        click.echo("no actions")
    for action in actions:
        door = {"send": "RPC send (WebSocket)", "tool": "POST /tools/invoke"}.get(action.kind)
        click.echo(door or f"POST {settings.gateway.hooks_path.rstrip('/')}/{action.kind}")
        click.echo(orjson.dumps(action.body(), option=orjson.OPT_INDENT_2).decode())


@cli.command()
@click.option("--limit", "-n", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def events(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List recent events, newest first, with their actions' states."""
    from . import keys
    from .health import circuit_state
    from .queue import load_action, load_event

    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        circuit = circuit_state(redis)
        if circuit.open and not as_json:
            click.echo(f"delivery paused for {circuit.remaining:.0f}s more: gateway {circuit.reason}")
        for raw_id in redis.zrevrange(keys.EVENTS, 0, limit - 1):
            event = load_event(redis, raw_id.decode())
            if event is None:
                continue
            actions = [{"id": a["id"], "kind": a["kind"], **_action_state(load_action(redis, a["id"]))}
                       for a in event["actions"]]  # fmt: skip
            row = {k: event.get(k) for k in ("id", "source", "delivery_id", "state", "received_at", "reason")}
            row["actions"] = actions
            if as_json:
                click.echo(orjson.dumps(row).decode())
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["received_at"]))
                states = (
                    ", ".join(f"{a['kind']}:{a.get('state', 'queued')}" for a in actions) or event["state"]
                )
                noted = ("held", "skipped", "batched", "delayed", "cancelled")  # relay.held, relay.delayed
                if event["state"] in noted and event.get("reason"):
                    states = f"{event['state']}: {event['reason']}"  # feedback-loop guard, cooldown
                click.echo(
                    f"{when}  {row['id']}  {row['source']:<12} {str(row['delivery_id'] or '')[:40]:<40} {states}"
                )


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
    from .deadletters import list_dead

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
                f"{when}  {row['id']}  {row.get('source', ''):<12} {row.get('last_status') or '-':>4}  {error}"
            )


@dlq.command("show")
@click.argument("action_id")
@click.pass_context
def dlq_show(ctx: click.Context, action_id: str) -> None:
    """Show one dead letter: the action, its attempts and the gateway's last answer."""
    from .queue import load_action

    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        record = load_action(redis, action_id)
    if not record:
        click.echo(f"error: no action {action_id}", err=True)
        sys.exit(1)
    record["body"] = orjson.loads(record.get("body", "{}"))
    click.echo(orjson.dumps({"id": action_id, **record}, option=orjson.OPT_INDENT_2).decode())


@dlq.command("replay")
@click.argument("action_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--source", "-s", help="Replay every dead letter of this source.")
@click.option(
    "--new-key", is_flag=True, help="Send with a new Idempotency-Key (the gateway treats it as new)."
)
@click.pass_context
def dlq_replay(ctx: click.Context, action_ids: tuple[str, ...], replay_all: bool, source: str | None,
               new_key: bool) -> None:  # fmt: skip
    """Queue dead letters for delivery again (same Idempotency-Key unless --new-key)."""
    from .deadletters import list_dead, replay

    if not action_ids and not replay_all and not source:
        click.echo("error: name action ids, or use --all or --source", err=True)
        sys.exit(1)
    settings = _settings(ctx)
    redis = _redis(settings)
    with _redis_errors():
        ids = list(action_ids) or [row["id"] for row in list_dead(redis, source=source, limit=10**9)]
        done = [aid for aid in ids if replay(redis, settings, aid, new_key=new_key)]
    for aid in sorted(set(ids) - set(done)):
        click.echo(f"not a dead letter: {aid}", err=True)
    click.echo(f"replayed {len(done)} dead letter(s)")
    sys.exit(0 if len(done) == len(ids) else 1)


def _action_state(record: dict[str, str]) -> dict[str, Any]:
    return {
        k: record[k] for k in ("state", "attempts", "last_status", "run_id", "last_error") if record.get(k)
    }


def _echo_durability(client: Any, settings: Settings, err: bool = False) -> None:
    """What survives a Redis restart (relay.durability); warnings go to stderr."""
    from .durability import report

    for line in report(client, settings.redis_url, settings.durability.min_replicas, settings):
        click.echo(line, err=err or line.startswith("warning"))


def _check_transforms(settings: Settings) -> None:
    """Import every mapping's transform now; exit 2 naming the mapping and module if one fails."""
    from .ingress import build_mapper

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

    Exits 2 on a config or transform error, 3 when Redis or the gateway cannot be reached.
    """
    import httpx

    from .ingress import build_sources

    settings = _settings(ctx)
    try:
        build_sources(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    _check_transforms(settings)
    click.echo(f"config ok: {len(settings.sources)} source(s), {len(settings.mappings)} mapping(s)")
    if offline:
        return
    with _redis_errors():
        client = _redis(settings)
        client.ping()
        click.echo("redis ok")
        _echo_durability(client, settings)
    # POST to the bare hooks path: the gateway checks the token first (401 when wrong) and then
    # answers 404 for the empty hook name, so this proves the token without starting anything.
    gateway = settings.gateway
    probe = f"{gateway.url}/{gateway.hooks_path.strip('/')}/"
    headers = {"Authorization": f"Bearer {gateway.token.get_secret_value()}"} if gateway.token else {}
    try:
        answer = httpx.post(probe, headers=headers, content=b"{}", timeout=5)
    except httpx.HTTPError as exc:
        click.echo(f"error: cannot reach the gateway at {gateway.url}: {type(exc).__name__}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    if answer.status_code == 401:
        what = "gateway.token is not set" if not gateway.token else "the gateway refuses gateway.token"
        click.echo(f"error: {what} (401 at {probe}); it must equal the gateway's hooks.token", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    if answer.status_code == 429:
        click.echo(f"error: the gateway is rate-limiting failed token attempts (429 at {probe})", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    click.echo(f"gateway ok at {gateway.url}: hook token accepted")


@cli.command()
@click.argument("event_ids", nargs=-1)
@click.option("--parked", is_flag=True, help="Replay every parked event (oldest first).")
@click.option("--source", help="With --parked: only the events of this source.")
@click.option("--limit", "-n", type=int, help="With --parked: at most this many events.")
@click.option("--force", is_flag=True, help="Also map events that are not parked (already queued/delivered).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.pass_context
def replay(ctx: click.Context, event_ids: Sequence[str], parked: bool, source: str | None,
           limit: int | None, force: bool, as_json: bool) -> None:  # fmt: skip
    """Map stored events again with the current config and transforms, and queue their actions.

    Exits 1 if any event still fails (it stays parked, with the new error).
    """
    from .replay import Replayer, describe, outcome_json, parked_ids

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
        for event_id in ids:
            outcome = replayer.replay(event_id, force=force)
            failed += not outcome.ok
            click.echo(outcome_json(outcome).decode() if as_json else describe(outcome))
            if outcome.state == "parked" and not as_json:
                click.echo(outcome.detail, err=True)
        if parked and not as_json:
            click.echo(f"{len(ids) - failed} of {len(ids)} parked event(s) replayed", err=True)
    sys.exit(1 if failed else 0)


@cli.command("import-openclaw")
@click.argument("openclaw_config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("relay.yaml"),
              show_default=True, help="The relay.yaml to write; transform stubs go next to it.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite the output file and existing stubs.")
def import_openclaw(openclaw_config: Path, output: Path, force: bool) -> None:
    """Write relay.yaml sources and mappings from an OpenClaw config's `hooks` (JSON or JSON5)."""
    import yaml

    from .importer import convert, read_openclaw

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
    output.write_text("\n".join(header) + "\n" + yaml.safe_dump(imported.config, sort_keys=False,
                                                                allow_unicode=True, width=100))  # fmt: skip
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


def _submit_options(fn: Any) -> Any:
    """Options shared by `relay agent` and `relay wake`."""
    for option in reversed([
        click.option("--idempotency-key", help="Delivery id: the same key again queues nothing new "
                     "(default: a fresh UUID)."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the action id."),
        click.option("--wait", is_flag=True, help="Block until delivered (exit 0) or dead-lettered (exit 1)."),
        click.option("--wait-timeout", type=click.FloatRange(min=0), default=600.0, show_default=True,
                     help="With --wait: give up (exit 1) after this many seconds; 0: no limit."),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


def _submit(ctx: click.Context, action: Any, idempotency_key: str | None, as_json: bool, wait: bool,
            wait_timeout: float, source: str = "cli") -> None:  # fmt: skip
    from .cli_submit import report
    from .client import RelayClient

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
def agent(ctx: click.Context, message: str | None, message_file: Any, idempotency_key: str | None,
          as_json: bool, wait: bool, wait_timeout: float, **fields: Any) -> None:  # fmt: skip
    """Queue an agent turn for the gateway, durably (`openclaw agent`'s flags; no ingress needed).

    Prints the action id; with --wait, exits 0 once delivered and 1 if the gateway refuses it for
    good (with its error). Exit codes: 0 queued/delivered, 1 dead or timed out, 2 config, 3 Redis.
    """
    from .client import agent_action

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
def wake(ctx: click.Context, text: str, mode: str, idempotency_key: str | None, as_json: bool, wait: bool,
         wait_timeout: float) -> None:  # fmt: skip
    """Queue a wake (a system event for the main session), durably; sent once, never twice."""
    from .actions import WakeAction

    action = _build(lambda: WakeAction.model_validate({"text": text, "mode": mode}))
    _submit(ctx, action, idempotency_key, as_json, wait, wait_timeout)


@cli.group()
def schedules() -> None:
    """The `schedules:` of relay.yaml (fired by the workers, once per tick)."""


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def schedules_list(ctx: click.Context, as_json: bool) -> None:
    """List schedules: spec, next tick, last tick fired (times in UTC)."""
    from .scheduler import describe

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
def schedules_run(ctx: click.Context, name: str, idempotency_key: str | None, as_json: bool, wait: bool,
                  wait_timeout: float) -> None:  # fmt: skip
    """Fire schedule NAME now (its regular ticks are unchanged); prints the action id."""
    from .cli_submit import report
    from .client import RelayClient
    from .schedules import build_action, source_name

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


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="relay")


if __name__ == "__main__":
    main()
