"""The delivery console: server-rendered pages under /console, mounted in the ingress app.

`console_routes(settings)` returns the routes (none when `console.enabled` is false). Every page
is gated (relay.console.auth): loopback clients only unless `console.allow_remote`, then the
console token's session cookie, then a CSRF token on every POST. Redis reads (relay.console.data)
and template rendering run in Starlette's thread pool with a plain Redis client, like /metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from redis import Redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.config import Settings
from relay.console import data, render
from relay.console.auth import COOKIE, SECURITY_HEADERS, SESSION_SECONDS, Gate, Session, is_loopback
from relay.errors import ConfigError, RelayError
from relay.ingress.app import read_body
from relay.store import keys, states
from relay.store.connection import connect

log = logging.getLogger("relay.console")
HERE = Path(__file__).parent
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
MAX_FORM = 256 * 1024
MAX_REPLAY_ALL = 5000  # one "replay all of a source" request replays at most this many
# Wrong console tokens per client address and window before logins are refused (429) for the window.
LOGIN_FAILURES_MAX = 10
LOGIN_WINDOW_SECONDS = 60

Handler = Callable[[Request, Session | None, dict[str, list[str]]], Awaitable[Response]]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    env.globals.update(age=render.age, clock=render.clock)
    return env


class Console:
    def __init__(self, settings: Settings) -> None:
        config = settings.console
        if config.token is None:
            raise ConfigError("console.enabled needs console.token (a secret of 16 characters or more)")
        self.settings = settings
        self.gate = Gate(config.token.get_secret_value())
        self.redis: Redis = connect(settings.redis_url or "redis://127.0.0.1:6379/0", settings)
        self.templates = _environment()
        self._replayer: Any = None
        self._replay_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------

    def html(
        self,
        name: str,
        status: int = 200,
        session: Session | None = None,
        response_headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        context.setdefault("csrf", session.csrf if session else "")
        context.setdefault("rq_dashboard_url", self.settings.console.rq_dashboard_url)
        return HTMLResponse(
            self.templates.get_template(name).render(**context), status_code=status, headers=response_headers
        )

    def guarded(self, handler: Handler, *, login: bool = True) -> Callable[[Request], Awaitable[Response]]:
        """Loopback (unless allow_remote), then the session (unless `login` is False), then CSRF on POST."""

        async def endpoint(request: Request) -> Response:
            if not self.settings.console.allow_remote and not is_loopback(request):
                return JSONResponse({"ok": False, "error": "no such hook"}, status_code=404)  # as if absent
            form: dict[str, list[str]] = {}
            if request.method == "POST":
                try:
                    body = await read_body(request, MAX_FORM, self.settings.body_timeout_seconds)
                except RelayError as exc:  # too large (413) or too slow (408)
                    return self._secured(Response(exc.message, status_code=exc.status_code))
                except ClientDisconnect:
                    log.info("console client disconnected before sending the whole form")
                    return Response(status_code=400)
                form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
            session = self.gate.session(request)
            if login and session is None:
                response: Response = self.html("login.html", 401, error="")
            elif login and request.method == "POST" and not self.gate.csrf_ok(session, _one(form, "csrf")):  # type: ignore[arg-type]
                response = self.html(
                    "error.html",
                    403,
                    session,
                    message="Missing or wrong CSRF token: reload the page and try again.",
                )
            else:
                response = await handler(request, session, form)
            return self._secured(response)

        return endpoint

    @staticmethod
    def _secured(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kwargs)

    # -- pages -----------------------------------------------------------------------------------

    async def login(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        if request.method == "GET":
            if session is not None:
                return RedirectResponse("/console", 303)
            return self.html("login.html", error="")
        address = request.client.host if request.client else "unknown"  # relay.ingress.proxies resolved it
        key = keys.auth_failures("console", address)
        failures = int(await self.run(self.redis.get, key) or 0)
        if failures >= LOGIN_FAILURES_MAX:
            ttl = int(await self.run(self.redis.ttl, key))
            return self.html(
                "login.html",
                429,
                error="Too many wrong tokens; wait a minute.",
                response_headers={"Retry-After": str(max(1, ttl))},
            )
        if not self.gate.token_ok(_one(form, "token")):
            await self.run(self._count_failure, key)
            return self.html("login.html", 401, error="Wrong token.")
        response = RedirectResponse("/console", 303)
        response.set_cookie(
            COOKIE,
            self.gate.new_cookie(),
            max_age=SESSION_SECONDS,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def _count_failure(self, key: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.set(key, 0, ex=LOGIN_WINDOW_SECONDS, nx=True)
            pipe.incr(key)
            pipe.execute()

    async def logout(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        response = RedirectResponse("/console/login", 303)
        response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
        return response

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
        older = _link(
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
        older = _link(f"/console/{name}", source=source, cursor=page.next_cursor) if page.next_cursor else ""
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

    async def dead_replay(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        from relay.store.deadletters import replay
        from relay.store.selection import record_action_replay

        source, new_key = _one(form, "source"), _one(form, "new_key") == "1"

        def work() -> tuple[int, int]:
            ids = (
                data.dead_ids_of_source(self.redis, source, MAX_REPLAY_ALL)
                if _one(form, "all")
                else form.get("ids", [])
            )
            done = [aid for aid in ids if replay(self.redis, self.settings, aid, new_key=new_key)]
            for aid in done:  # kept on the event: who (the console) and when
                record_action_replay(self.redis, aid, by="console", new_key=new_key)
            return len(done), len(ids)

        done, asked = await self.run(work)
        back = _one(form, "back")
        target = back if back.startswith("/console/events/") else "/console/dead"
        return RedirectResponse(_link(target, done=f"Replayed {done} of {asked} dead letter(s)."), 303)

    async def parked(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        return await self._listing(request, session, "parked", data.parked_events)

    async def parked_replay(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        from relay.store.replay import Replayer, parked_ids
        from relay.store.selection import record_replay

        source = _one(form, "source")

        def work() -> str:
            with self._replay_lock:  # the Replayer's transform budget is not shared between threads
                if self._replayer is None:
                    self._replayer = Replayer(self.redis, self.settings)
                ids = (
                    parked_ids(self.redis, source, MAX_REPLAY_ALL)
                    if _one(form, "all")
                    else form.get("ids", [])
                )
                outcomes = [self._replayer.replay(eid) for eid in ids]
            for outcome in outcomes:
                if outcome.state not in ("missing", "refused"):
                    record_replay(
                        self.redis, outcome.event_id, by="console", what=f"mapped again: {outcome.state}"
                    )
            ok = sum(1 for o in outcomes if o.ok)
            failed = [o for o in outcomes if not o.ok]
            note = f" {len(failed)} failed again or were refused." if failed else ""
            return f"Replayed {ok} of {len(outcomes)} parked event(s).{note}"

        message = await self.run(work)
        back = _one(form, "back")
        target = back if back.startswith("/console/events/") else "/console/parked"
        return RedirectResponse(_link(target, done=message), 303)

    def _selection(self, params: Any) -> tuple[Any, str]:
        """relay.store.selection's plan for the replay form's fields, or an error to show."""
        from relay.store.search import parse_time
        from relay.store.selection import plan

        state = params.get("state", "")
        try:
            since = parse_time(params.get("since", ""))
            until = parse_time(params["until"]) if params.get("until") else None
        except ValueError as exc:
            return None, str(exc)
        if state not in ("", states.DEAD, states.PARKED, states.DELIVERED):
            return None, "unknown state"
        return plan(self.redis, since=since, until=until, source=params.get("source", ""), state=state), ""

    async def replay_form(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        """Replay by time: the form, and for its fields a count preview with the confirm button."""
        q = request.query_params
        fields = {name: q.get(name, "")[:40] for name in ("source", "since", "until", "state")}
        new_key = q.get("new_key") == "1"
        preview, error = None, ""
        if fields["since"]:
            chosen, error = await self.run(self._selection, fields)
            if chosen is not None:
                counts = chosen.counts()
                total = counts["dead"] + counts["parked"] + (counts["delivered"] if new_key else 0)
                preview = {
                    **counts,
                    "total": total,
                    "examined": chosen.examined,
                    "stopped_early": chosen.stopped_early,
                }
        return self.html(
            "replay.html",
            session=session,
            sources=sorted(self.settings.sources),
            preview=preview,
            error=error,
            new_key=new_key,
            done=q.get("done", ""),
            source=fields["source"],
            since=fields["since"],
            until=fields["until"],
            state=fields["state"],
        )

    async def replay_selection(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        from relay.store.selection import execute

        fields = {name: _one(form, name)[:40] for name in ("source", "since", "until", "state")}
        new_key = _one(form, "new_key") == "1"

        def work() -> str:
            chosen, error = self._selection(fields)
            if chosen is None:
                return error
            done = execute(self.redis, self.settings, chosen, by="console", new_key=new_key)
            r = done.replayed
            return (
                f"Replayed {r['dead']} dead, {r['parked']} parked and {r['delivered']} delivered event(s)"
                f" of {_one(form, 'confirm') or '?'} previewed."
                + (f" {len(done.parked_again)} failed again." if done.parked_again else "")
            )

        message = await self.run(work)
        return RedirectResponse(_link("/console/replay", done=message), 303)

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

    async def pause_resume(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        """The System page's Pause / Resume buttons (relay.store.pause), recorded as by the console."""
        from relay.store import pause

        kind, name, action = _one(form, "kind"), _one(form, "name"), _one(form, "action")
        if (
            kind not in pause.KINDS
            or name not in pause.known_names(self.settings, kind)
            or action not in ("pause", "resume")
        ):
            return self.html("error.html", 400, session, message="No such source or gateway.")

        def work() -> str:
            if action == "pause":
                fresh = pause.pause(self.redis, kind, name, by="console", reason=_one(form, "reason")[:200])  # type: ignore[arg-type]
                return f"{kind} {name} paused." if fresh else f"{kind} {name} was paused already."
            was, released = pause.resume(self.redis, self.settings, kind, name)  # type: ignore[arg-type]
            return (
                f"{kind} {name} resumed; {released} held action(s) queued."
                if was
                else f"{kind} {name} was not paused."
            )

        return RedirectResponse(_link("/console/system", done=await self.run(work)), 303)

    async def static(self, request: Request, session: Session | None, form: dict[str, list[str]]) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", status_code=404)
        return Response(
            (HERE / "static" / name).read_bytes(),
            media_type=STATIC[name],
            headers={"Cache-Control": "max-age=300"},
        )

    def routes(self) -> list[BaseRoute]:
        g = self.guarded
        return [
            Route("/console", g(self.events)),
            Route("/console/", g(self.events)),
            Route("/console/login", g(self.login, login=False), methods=["GET", "POST"]),
            Route("/console/logout", g(self.logout), methods=["POST"]),
            Route("/console/chart", g(self.chart)),
            Route("/console/events/{event_id}", g(self.event)),
            Route("/console/dead", g(self.dead)),
            Route("/console/dead/replay", g(self.dead_replay), methods=["POST"]),
            Route("/console/parked", g(self.parked)),
            Route("/console/parked/replay", g(self.parked_replay), methods=["POST"]),
            Route("/console/system", g(self.system)),
            Route("/console/replay", g(self.replay_form)),
            Route("/console/pause", g(self.pause_resume), methods=["POST"]),
            Route("/console/replay", g(self.replay_selection), methods=["POST"]),
            Route("/console/static/{name}", g(self.static, login=False)),
        ]


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


def _link(path: str, **params: str | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{path}?{query}" if query else path


def console_routes(settings: Settings) -> list[BaseRoute]:
    """The console's routes for the ingress app; none unless `console.enabled`."""
    if not settings.console.enabled:
        return []
    return Console(settings).routes()
