"""Finding events: by source, delivery state, time window and text in the stored payload or headers.

Used by `relay events --grep ...` and the console's search box. Every search is bounded: it walks
the event index (all events, or one source's) newest first inside the time window, in chunks, and
looks at no more than `max_examined` events (default `MAX_EXAMINED`) per call. The text is matched
inside Redis by a script given one chunk's event keys, so payloads never cross the network; only
the matches do. A search that reaches its bound says so and returns a cursor to continue from.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import Redis

from relay.console.data import Row, load_rows, parse_cursor, walk
from relay.store import keys, scripts

MAX_EXAMINED = 100_000  # events looked at per search (per console page)
CHUNK = 1000  # events per script call: each call holds Redis for a few milliseconds at most

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """A moment as epoch seconds, from ISO-8601 (`2026-03-01T14:00`, `...Z`, `...+02:00`; no zone:
    local time) or relative to now (`15m`, `2h`, `90s`, `1d`, `1w`: that long ago)."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        return (time.time() if now is None else now) - float(relative[1]) * _UNIT[relative[2]]
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (ISO-8601 such as 2026-03-01T14:00Z, or 15m, 2h, 1d ago)"
        ) from None
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class Query:
    source: str = ""
    state: str = ""  # a summarised delivery state (relay.console.data.STATES); "" for any
    since: float | None = None
    until: float | None = None
    grep: str = ""
    ignore_case: bool = False

    @property
    def filtered(self) -> bool:
        return bool(
            self.source or self.state or self.since is not None or self.until is not None or self.grep
        )


@dataclass(slots=True)
class Result:
    rows: list[Row]
    examined: int
    next_cursor: str | None  # where to continue (more events remain in the window), else None
    stopped_early: bool = False  # the bound on events examined was reached
    notes: list[str] = field(default_factory=list)


def search(
    redis: Redis,
    query: Query,
    *,
    limit: int = 50,
    cursor: str | None = None,
    max_examined: int = MAX_EXAMINED,
) -> Result:
    """Up to `limit` matching events, newest first, looking at no more than `max_examined` events."""
    index = keys.events_by_source(query.source) if query.source else keys.EVENTS
    grep = redis.register_script(scripts.SEARCH_GREP)
    needle = query.grep.lower() if query.ignore_case else query.grep
    if cursor is None and query.until is not None:
        cursor = f"{query.until!r}~\uffff"  # start at the window's end: scores up to `until`
    floor = query.since if query.since is not None else float("-inf")
    rows: list[Row] = []
    examined, last, exhausted = 0, cursor, False
    while len(rows) < limit and examined < max_examined:
        chunk = walk(redis, index, last, min(CHUNK, max_examined - examined))
        inside = [(member, score) for member, score in chunk if score >= floor]
        if len(inside) < len(chunk) or not chunk:
            exhausted = True  # past the window's start, or the index's end
        if not inside:
            break
        examined += len(inside)
        ids = [member for member, _ in inside]
        if needle:
            positions = grep(
                keys=[keys.event(eid) for eid in ids], args=[needle, "1" if query.ignore_case else "0"]
            )
            picked = [inside[int(p) - 1] for p in positions]
        else:
            picked = inside
        loaded = load_rows(redis, [m for m, _ in picked]) if picked else []
        stop_at: tuple[str, float] | None = None
        for (member, score), row in zip(picked, loaded, strict=True):
            if row is None or (query.state and row.state != query.state):
                continue
            rows.append(row)
            if len(rows) >= limit:
                stop_at = (member, score)
                break
        member, score = stop_at or inside[-1]
        last = f"{score!r}~{member}"
        if exhausted:
            break
    full = len(rows) >= limit
    more = (
        not exhausted and last is not None and bool([m for m, s in walk(redis, index, last, 1) if s >= floor])
    )
    result = Result(rows, examined, last if more else None, stopped_early=more and not full)
    if result.stopped_early:
        result.notes.append(
            f"Stopped early: examined {examined} events (the bound per search is {max_examined}) without "
            f"finding {limit} matches; older events in the window were not searched. Narrow the window "
            "(--since/--until) or continue from the cursor."
        )
    return result


def cursor_time(cursor: str) -> float | None:
    """The received time a cursor points at (for "continue with --until ...")."""
    top, _ = parse_cursor(cursor)
    return None if top == "+inf" else float(top)


def console_page(
    redis: Redis,
    *,
    source: str,
    state: str,
    text: str,
    since: str,
    until: str,
    cursor: str | None,
    page_size: int = 50,
) -> Any:
    """The console's event list for a search: a `relay.console.data.Page`, with the same bound."""
    from relay.console.data import Page

    try:
        query = Query(
            source=source,
            state=state,
            grep=text,
            ignore_case=True,
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
        )
    except ValueError as exc:
        return Page([], None, notes=[str(exc)])
    result = search(redis, query, limit=page_size, cursor=cursor)
    page = Page(result.rows, result.next_cursor, result.examined, windowed=True)
    page.notes.append(
        f"Searched {result.examined} events (at most {MAX_EXAMINED} per page); text is matched "
        "in the payload and headers, ignoring case."
    )
    if result.stopped_early:
        page.notes.append(
            f"Stopped early at the bound: “older” continues the search past {result.examined} events."
        )
    return page
