"""The delivery console: server-rendered pages under /console, mounted in the ingress app.

`console_routes(settings)` returns the routes (none when `console.enabled` is false). Every page
is gated (relay.console.auth): loopback clients only unless `console.allow_remote`, then the
console token's session cookie, then a CSRF token on every POST. Redis reads (relay.console.data)
and template rendering run in Starlette's thread pool with a plain Redis client, like /metrics.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from relay.config import Settings
from relay.console.actions import ActionPages
from relay.console.browse import BrowsePages


class Console(BrowsePages, ActionPages):
    """Every page of the console, and the routes that lead to them."""

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


def console_routes(settings: Settings) -> list[BaseRoute]:
    """The console's routes for the ingress app; none unless `console.enabled`."""
    if not settings.console.enabled:
        return []
    return Console(settings).routes()
