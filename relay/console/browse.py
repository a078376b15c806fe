"""The console's pages that show: the event list and search, one event, dead letters, parked events,
the system page, the chart and the static files."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from relay.console import data, render
from relay.console.auth import Session
from relay.console.base import HERE, STATIC, ConsoleBase, page_link


class BrowsePages(ConsoleBase):
    """The GET pages: each reads Redis in the thread pool and renders one template."""

    async def events(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        q = request.query_params
        source, state = q.get("source", ""), q.get("state", "")
        state = state if state in data.STATES else ""
        text, since, until = q.get("q", "")[:200], q.get("since", "")[:40], q.get("until", "")[:40]

        def build() -> dict[str, Any]:
            if text or since or until:  # the search box (relay.store.search): bounded, newest first
                from relay.store.search import console_page

                page = console_page(
                    self.redis,
                    source=source,
                    state=state,
                    text=text,
                    since=since,
                    until=until,
                    cursor=q.get("cursor"),
                )
            else:
                page = data.events_page(self.redis, source=source, state=state, cursor=q.get("cursor"))
            return {
                "page": page,
                "system": data.system(self.redis, self.settings.queue),
                "chart": render.chart(data.per_minute(self.redis)),
            }

        context = await self.run(build)
        older = page_link(
            "/console",
            source=source,
            state=state,
            q=text,
            since=since,
            until=until,
            cursor=context["page"].next_cursor,
        )
        return self.html(
            "events.html",
            session=session,
            source=source,
            state=state,
            states=data.STATES,
            q=text,
            since=since,
            until=until,
            sources=sorted(self.settings.sources),
            older=older if context["page"].next_cursor else "",
            newest=bool(q.get("cursor")),
            **context,
        )

    async def chart(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        chart = await self.run(lambda: render.chart(data.per_minute(self.redis)))
        return self.html("chart.html", session=session, chart=chart)

    async def event(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        event = await self.run(data.event_detail, self.redis, request.path_params["event_id"])
        if event is None:
            return self.html(
                "error.html", 404, session, message="No such event (expired, trimmed or never recorded)."
            )
        body, is_json = render.pretty_body(event["body"], event["body_size"])
        return self.html(
            "event.html",
            session=session,
            event=event,
            headers=render.redact(event["headers"]),
            body=body,
            is_json=is_json,
            pretty=render.pretty_json,
            done=request.query_params.get("done", ""),
        )

    async def _listing(self, request: Request, session: Session | None, name: str, fetch: Any) -> Response:
        """A page of dead letters or parked events, filtered by source, paginated by cursor."""
        q = request.query_params
        source = q.get("source", "")
        page = await self.run(fetch, self.redis, source=source, cursor=q.get("cursor"))
        older = (
            page_link(f"/console/{name}", source=source, cursor=page.next_cursor) if page.next_cursor else ""
        )
        return self.html(
            f"{name}.html",
            session=session,
            page=page,
            source=source,
            sources=sorted(self.settings.sources),
            older=older,
            newest=bool(q.get("cursor")),
            done=q.get("done", ""),
        )

    async def dead(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        return await self._listing(request, session, "dead", data.dead_letters)

    async def parked(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        return await self._listing(request, session, "parked", data.parked_events)

    async def system(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        from relay.store import pause

        def build() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            paused = {p.field: p for p in pause.list_paused(self.redis)}
            rows = [
                {"kind": kind, "name": name, "pause": paused.get(pause.field(kind, name))}
                for kind in pause.KINDS
                for name in pause.known_names(self.settings, kind)
            ]
            return data.system(self.redis, self.settings.queue), rows

        status, pauses = await self.run(build)
        return self.html(
            "system.html",
            session=session,
            system=status,
            pauses=pauses,
            done=request.query_params.get("done", ""),
        )

    async def static(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", status_code=404)
        return Response(
            (HERE / "static" / name).read_bytes(),
            media_type=STATIC[name],
            headers={"Cache-Control": "max-age=300"},
        )
