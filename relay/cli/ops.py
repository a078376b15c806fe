"""Operators' commands of `relay`: pause and resume (relay.store.pause).

Registered on the `relay` group by relay.cli.main, which passes the helpers of relay.cli.common
(settings, Redis, Redis errors).
"""

from __future__ import annotations

import getpass
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from relay.store import pause as pauses

EXIT_CONFIG = 2


def who() -> str:
    """Who runs this command, for the records of pauses and replays: `cli:user@host`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def register(
    cli: click.Group,
    settings_of: Callable[[click.Context], Any],
    redis_of: Callable[[Any], Any],
    redis_errors: Callable[[], Any],
) -> None:
    def _named(ctx: click.Context, kind: str, name: str) -> tuple[Any, Any]:
        settings = settings_of(ctx)
        known = pauses.known_names(settings, kind)  # type: ignore[arg-type]
        if name not in known:
            click.echo(
                f"error: no {kind} {name!r} in the configuration (have: {', '.join(known) or 'none'})",
                err=True,
            )
            sys.exit(EXIT_CONFIG)
        return settings, redis_of(settings)

    @cli.command("pause")
    @click.argument("kind", type=click.Choice(pauses.KINDS), required=False)
    @click.argument("name", required=False)
    @click.option("--reason", default="", help="Why, shown with the pause.")
    @click.option("--json", "as_json", is_flag=True, help="With no arguments: one JSON object per pause.")
    @click.pass_context
    def pause_cmd(ctx: click.Context, kind: str | None, name: str | None, reason: str, as_json: bool) -> None:
        """Hold deliveries of a source or gateway until `relay resume` (no arguments: list pauses).

        A paused source still verifies, accepts and stores its webhooks; a paused gateway gets
        nothing. Every worker obeys at its next delivery; the pause survives restarts.
        """
        if kind is None or name is None:
            if kind is not None:
                click.echo("error: give a kind and a name: relay pause source NAME", err=True)
                sys.exit(EXIT_CONFIG)
            settings = settings_of(ctx)
            with redis_errors():
                paused = pauses.list_paused(redis_of(settings))
            for p in paused:
                row = {
                    "kind": p.kind,
                    "name": p.name,
                    "by": p.by,
                    "at": p.at,
                    "reason": p.reason,
                    "held": p.held,
                }
                click.echo(orjson.dumps(row).decode() if as_json else pauses.describe(p))
            if not paused and not as_json:
                click.echo("nothing paused")
            return
        _, redis = _named(ctx, kind, name)
        with redis_errors():
            fresh = pauses.pause(redis, kind, name, by=who(), reason=reason)  # type: ignore[arg-type]
        click.echo(f"{kind} {name} paused" if fresh else f"{kind} {name} was paused already")

    @cli.command("reload")
    @click.option(
        "--wait", type=float, default=10.0, show_default=True, help="Seconds to wait for the answers."
    )
    @click.pass_context
    def reload_cmd(ctx: click.Context, wait: float) -> None:
        """Re-read relay.yaml and re-import the transforms in every running ingress and worker.

        The config is checked here first, as `relay check --offline` does; an invalid one is
        refused (exit 2) and nothing is signalled. Exits 1 if a process refused it.
        """
        from relay.errors import ConfigError
        from relay.protocol.pipeline import build_mapper, build_sources
        from relay.reload import answers, request

        settings = settings_of(ctx)  # a config error exits 2 with `relay check`'s message
        try:
            build_sources(settings)
            build_mapper(settings)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        redis = redis_of(settings)
        with redis_errors():
            generation = request(redis)
            live = answers(redis, generation, wait)
        refused = 0
        for name, entry in sorted(live.items()):
            if entry["generation"] < generation:
                click.echo(f"{name}: no answer within {wait:g}s")
                refused += 1
            elif entry["ok"]:
                click.echo(f"{name}: reloaded")
            else:
                click.echo(f"{name}: refused, running config kept: {entry['error']}")
                refused += 1
        if not live:
            click.echo("no running ingress or worker answered")
        sys.exit(1 if refused or not live else 0)

    @cli.command("resume")
    @click.argument("kind", type=click.Choice(pauses.KINDS))
    @click.argument("name")
    @click.pass_context
    def resume_cmd(ctx: click.Context, kind: str, name: str) -> None:
        """Resume a paused source or gateway; its held actions are queued, oldest first."""
        settings, redis = _named(ctx, kind, name)
        with redis_errors():
            was, released = pauses.resume(redis, settings, kind, name)  # type: ignore[arg-type]
        state = "resumed" if was else "was not paused"
        click.echo(f"{kind} {name} {state}; {released} held action(s) queued")


@dataclass(frozen=True, slots=True)
class Selection:
    ids: list[str]
    note: str  # "stopped early ..." when the search did not look at every event of its window


def select_events(
    redis: Any,
    limit: int,
    *,
    source: str | None,
    state: str | None,
    since: str | None,
    until: str | None,
    grep: str | None,
    ignore_case: bool,
    max_examined: int,
) -> Selection | None:
    """The events `relay events` lists when it is given filters (None without filters)."""
    if not (source or state or since or until or grep):
        return None  # the plain listing: no search, and no import of the console's modules
    from relay.console.data import STATES
    from relay.store.search import Query, search

    if state and state not in STATES:
        raise click.BadParameter(f"one of {', '.join(STATES)}", param_hint="--state")
    try:
        query = Query(
            source=source or "",
            state=state or "",
            grep=grep or "",
            ignore_case=ignore_case,
            since=parse_when(since),
            until=parse_when(until),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not query.filtered:
        return None
    result = search(redis, query, limit=limit, max_examined=max_examined)
    note = ""
    if result.stopped_early and result.next_cursor:
        from relay.store.search import cursor_time

        resume_at = cursor_time(result.next_cursor)
        stamp = datetime.fromtimestamp(resume_at, UTC).isoformat() if resume_at else ""
        note = (
            f"stopped early: examined {result.examined} events (--max-examined {max_examined}) and found "
            f"{len(result.rows)} of --limit {limit}; older events in the window were not searched. "
            f"Continue with --until {stamp}, or narrow --since/--until."
        )
    return Selection([row.id for row in result.rows], note)


def parse_when(text: str | None) -> float | None:
    from relay.store.search import parse_time

    return None if text is None else parse_time(text)


def replay_selection(
    settings: Any,
    redis: Any,
    source: str | None,
    *,
    since: str,
    until: str | None,
    state: str | None,
    dry_run: bool,
    new_key: bool,
    as_json: bool,
) -> int:
    """`relay replay --since ...`: the exit status (1 when something could not be replayed)."""
    from relay.store import selection

    try:
        start, end = parse_when(since), parse_when(until)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_CONFIG
    assert start is not None
    chosen = selection.plan(redis, since=start, until=end, source=source or "", state=state or "")
    counts = chosen.counts()
    delivered_note = "" if new_key else " (delivered already; --new-key sends them again)"
    if dry_run or as_json:
        preview = {
            "examined": chosen.examined,
            "stopped_early": chosen.stopped_early,
            **counts,
            "dead_ids": list(chosen.dead),
            "parked_ids": chosen.parked,
            "delivered_ids": list(chosen.delivered),
        }
    if dry_run:
        if as_json:
            click.echo(orjson.dumps({"dry_run": True, **preview}).decode())
        else:
            click.echo(
                f"would replay {counts['dead']} dead and {counts['parked']} parked event(s)"
                + (f" and {counts['delivered']} delivered event(s) under a new key" if new_key else "")
            )
            if counts["delivered"] and not new_key:
                click.echo(f"{counts['delivered']} delivered event(s) would not be sent{delivered_note}")
            for name, ids in (
                ("dead", chosen.dead),
                ("parked", chosen.parked),
                ("delivered", chosen.delivered),
            ):
                for event_id in ids:
                    click.echo(f"  {name:<9} {event_id}")
        _warn_early(chosen)
        return 0
    done = selection.execute(redis, settings, chosen, by=who(), new_key=new_key)
    r = done.replayed
    if as_json:
        click.echo(
            orjson.dumps(
                {**preview, "replayed": r, "refused": done.refused, "parked_again": done.parked_again}
            ).decode()
        )
    else:
        click.echo(f"replayed {r['dead']} dead, {r['parked']} parked and {r['delivered']} delivered event(s)")
        if counts["delivered"] and not new_key:
            click.echo(f"{counts['delivered']} delivered event(s) not sent{delivered_note}")
        for event_id in done.parked_again:
            click.echo(f"{event_id}: the transform failed again; it stays parked", err=True)
        for event_id in done.refused:
            click.echo(f"{event_id}: not replayed (its state changed meanwhile)", err=True)
    _warn_early(chosen)
    return 1 if done.refused or done.parked_again else 0


def _warn_early(chosen: Any) -> None:
    if chosen.stopped_early:
        click.echo(
            f"stopped early: looked at {chosen.examined} events of the window (the bound); "
            "narrow --since/--until for the rest",
            err=True,
        )
