"""The console's plumbing: settings, Redis and templates, the gate around every page, login and logout.

Every page handler is a method of a ConsoleBase subclass (relay.console.browse, relay.console.actions)
taking the request, its session and the parsed form; `guarded` wraps it in the checks of
relay.console.auth.
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

from relay.config import Settings
from relay.console import render
from relay.console.auth import COOKIE, SECURITY_HEADERS, SESSION_SECONDS, Gate, Session, is_loopback
from relay.errors import ConfigError, RelayError
from relay.ingress.body import read_body
from relay.store import keys
from relay.store.connection import connect

log = logging.getLogger("relay.console")
HERE = Path(__file__).parent
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
MAX_FORM = 256 * 1024
# Wrong console tokens per client address and window before logins are refused (429) for the window.
LOGIN_FAILURES_MAX = 10
LOGIN_WINDOW_SECONDS = 60

Handler = Callable[[Request, Session | None, dict[str, list[str]]], Awaitable[Response]]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    env.globals.update(age=render.age, clock=render.clock)
    return env


class ConsoleBase:
    """What every page shares: settings, the gate, Redis, the templates; `guarded` and `html`."""

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
            elif (
                login
                and request.method == "POST"
                and session is not None  # always, past the branch above: for the type checker
                and not self.gate.csrf_ok(session, form_field(form, "csrf"))
            ):
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

    # -- login and logout ------------------------------------------------------------------------

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
        if not self.gate.token_ok(form_field(form, "token")):
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


def form_field(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


def page_link(path: str, **params: str | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{path}?{query}" if query else path
