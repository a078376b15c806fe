"""`relay events`, `dlq` and `replay`: what the relay stored, what died, and mapping it again."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import click
import orjson

from relay.cli.common import EXIT_CONFIG, _echo_actions, _redis, _redis_errors, _settings
from relay.cli.ops import replay_selection, select_events, who
from relay.errors import ConfigError


@click.command()
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
@click.argument("event_ids", nargs=-1, metavar="[EVENT_ID]...")
@click.pass_context
def events(ctx: click.Context, limit: int, as_json: bool, event_ids: tuple[str, ...], **filters: Any) -> None:
    """List recent events, newest first, with their actions' states; filter and search them.

    EVENT_ID (the `eventId` of the ingress's answer): only these events, whatever the filters.
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
        found = None if event_ids else select_events(redis, limit, **filters)  # relay.store.search
        ids = (
            list(event_ids)
            if event_ids
            else found.ids
            if found is not None
            else [r.decode() for r in redis.zrevrange(keys.EVENTS, 0, limit - 1)]
        )
        for event_id in ids:
            event = load_event(redis, event_id)
            if event is None:
                if event_ids:
                    click.echo(f"{event_id}: no such event (expired or never recorded)", err=True)
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
                states = ", ".join(f"{a['kind']}:{_state_text(a)}" for a in actions) or event["state"]
                if actions and row["state"] != event["state"]:
                    states = f"{row['state']} ({states})"
                noted = (
                    "held",
                    "skipped",
                    "batched",
                    "delayed",
                    "cancelled",
                )  # relay.hold.windows, relay.hold.delayed
                if event["state"] in noted and event.get("reason"):
                    states = f"{event['state']}: {event['reason']}"  # feedback-loop guard, cooldown
                elif event["state"] == "parked" and event.get("error"):
                    states = f"parked: {str(event['error']).splitlines()[-1]}"  # relay replay, once fixed
                delivery_id = str(row["delivery_id"] or "")[:40]
                click.echo(shown(f"{when}  {row['id']}  {row['source']:<12} {delivery_id:<40} {states}"))
                if event_ids:  # asked for by id: each action's attempts and the gateway's last answer
                    for a in actions:
                        click.echo(shown(f"  {_action_detail(a)}"))
    if found is not None and found.note:
        click.echo(found.note, err=True)


def shown(text: str) -> str:
    """`text` for a terminal: control characters (ESC sequences from a sender's ids) escaped."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text)


@click.group()
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
    if not rows and not as_json:
        click.echo("no dead letters", err=True)
    for row in rows:
        if as_json:
            click.echo(orjson.dumps({k: v for k, v in row.items() if k != "body"}).decode())
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(row.get("dead_at", 0))))
            error = row.get("last_error", "").replace("\n", " ")[:60]
            source, status = row.get("source", ""), row.get("last_status") or "-"
            click.echo(shown(f"{when}  {row['id']}  {source:<12} {status:>4}  {error}"))


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
    states = {a.get("state", "queued") for a in actions}
    if not actions or state not in ("queued", "routed"):
        return state
    if "dead" in states:
        return "dead"
    if states == {"delivered"}:
        return "delivered"
    return "retrying" if states & {"retrying", "paused"} else "pending"


def _action_detail(action: dict[str, Any]) -> str:
    parts = [action["id"], action["kind"], _state_text(action), f"attempts {action.get('attempts', 0)}"]
    if action.get("last_status"):
        parts.append(f"last status {action['last_status']}")
    if action.get("run_id"):
        parts.append(f"runId {action['run_id']}")
    if action.get("last_error") and action.get("state") != "delivered":
        parts.append(f"error: {str(action['last_error']).strip().splitlines()[-1][:200]}")
    return "  ".join(parts)


def _state_text(action: dict[str, Any]) -> str:
    state = str(action.get("state", "queued"))
    if state == "held" and action.get("held_by"):  # an operator's pause, not the circuit
        return f"held ({str(action['held_by']).replace(':', ' ')} paused by operator)"
    return state


@click.command()
@click.argument("event_ids", nargs=-1)
@click.option("--parked", is_flag=True, help="Replay every parked event (oldest first).")
@click.option("--source", help="With --parked: only the events of this source.")
@click.option("--limit", "-n", type=int, help="With --parked: at most this many events.")
@click.option("--force", is_flag=True, help="Also map events that are not parked (already queued/delivered).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.option("--since", help="Replay a selection: events received at or after (ISO-8601, or 15m, 2h ago).")
@click.option("--until", help="With --since: received at or before.")
@click.option("--state", type=click.Choice(["dead", "parked", "delivered"]), help="With --since: only these.")
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
            if outcome.state == "parked":
                click.echo(outcome.detail, err=True)
            _echo_actions(settings, outcome.planned)
        if parked and not as_json:
            done = "would replay" if dry_run else "replayed"
            click.echo(f"{len(ids) - failed} of {len(ids)} parked event(s) {done}", err=True)
    sys.exit(1 if failed else 0)


COMMANDS = (events, dlq, replay)
