"""`relay agent`, `wake`, `send` and `tool`: queue one action for the gateway, durably, without the ingress.

What they (and `relay schedules run`) print, and how they wait: without `--json`, stdout carries
only the action id (so `id=$(relay agent ...)` works) and progress goes to stderr; with `--json`,
one JSON object on stdout. The exit code is the answer: 0 queued (or, with --wait, delivered),
1 dead-lettered or still not delivered at the timeout, 2 config or flags, 3 Redis.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click
import orjson

from relay.cli.common import EXIT_CONFIG, _redis, _redis_errors, _settings

if TYPE_CHECKING:  # imported when used: the other commands start without the client
    from relay.client import ActionStatus, RelayClient, Submitted

EXIT_FAILED = 1


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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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
    an attempt whose answer was lost can run the tool again (docs/gateways.md).
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


COMMANDS = (agent, wake, send, tool)


def report(
    client: RelayClient, submitted: Submitted, *, as_json: bool, wait: bool, wait_timeout: float
) -> int:
    """Print the submission (and, with `wait`, its outcome); returns the exit code."""
    from relay.client import DeliveryFailed, WaitTimeout

    out: dict[str, Any] = {
        "ok": True,
        "actionId": submitted.action_id,
        "eventId": submitted.event_id,
        "duplicate": submitted.duplicate,
        "state": "queued",
    }
    if submitted.duplicate:
        click.echo(
            f"note: this idempotency key was already used (event {submitted.event_id}); "
            "nothing new was queued",
            err=True,
        )
    if not as_json:
        click.echo(submitted.action_id)
    code = 0
    if wait:
        try:
            status = client.wait(submitted.action_id, timeout=wait_timeout or None)
            out.update(_fields(status))
            if not as_json:
                run = f" (runId {status.run_id})" if status.run_id else ""
                click.echo(f"delivered{run}", err=True)
        except DeliveryFailed as exc:
            out.update(_fields(exc.status), ok=False)
            code = EXIT_FAILED
            if not as_json:
                status = exc.status
                answer = f"gateway answered {status.last_status}: " if status.last_status else ""
                click.echo(f"error: dead-lettered: {answer}{status.last_error}", err=True)
        except WaitTimeout as exc:
            out.update(_fields(exc.status), ok=False, timedOut=True)
            code = EXIT_FAILED
            if not as_json:
                detail = (
                    f"; last answer {exc.status.last_status}: {exc.status.last_error}"
                    if exc.status.last_status
                    else ""
                )
                click.echo(
                    f"error: not delivered within {wait_timeout:g}s (still {exc.status.state}{detail}); "
                    "it stays queued",
                    err=True,
                )
    else:
        out["state"] = client.status(submitted.action_id).state
    if as_json:
        click.echo(orjson.dumps(out).decode())
    return code


def _fields(status: ActionStatus) -> dict[str, Any]:
    fields: dict[str, Any] = {"state": status.state, "attempts": status.attempts}
    if status.run_id:
        fields["runId"] = status.run_id
    if status.last_status:
        fields["status"] = int(status.last_status) if status.last_status.isdigit() else status.last_status
    if status.last_error and status.state != "delivered":
        fields["error"] = status.last_error
    return fields
