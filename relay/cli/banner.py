"""What `relay up` says at start: where it listens, each source's URL and auth, the gateway's answer.

Readable lines on a terminal; one structured log line otherwise (then one more with the probe).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

import presets
from relay.config import Settings, SourceConfig

# Imported here, in the main thread: the probe runs in a thread while the main thread imports the
# ingress app, and two threads importing the same modules at once can see one half initialised
# (an ImportError from prometheus_client was seen at start-up).
from relay.delivery import gateway_check

log = logging.getLogger("relay.up")


def auth_mode(cfg: SourceConfig) -> str:
    """How a source's sender authenticates, in words (its preset's `auth`)."""
    preset = presets.REGISTRY.get(cfg.preset)
    auth = preset.auth if preset is not None else None
    if callable(auth):
        return auth(cfg)
    return auth or "the preset's signature check"


def safe_url(url: str) -> str:
    """A Redis URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def describe(settings: Settings, host: str, port: int, workers: int, embedded: bool) -> dict[str, Any]:
    """The banner's facts (pure: no I/O)."""
    base = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0', '::') else host}:{port}"
    hooks = [
        {"url": f"{base}/hooks/{name}", "source": name, "preset": cfg.preset, "auth": auth_mode(cfg)}
        for name, cfg in settings.sources.items()
    ]
    direct = "bearer token (ingress_token)" if settings.ingress_token else "bearer token (gateway.token)"
    if settings.ingress_token or settings.gateway.token:
        hooks += [
            {"url": f"{base}/hooks/{kind}", "source": kind, "preset": kind, "auth": direct}
            for kind in ("agent", "wake")
        ]
    return {
        "listening": f"http://{host}:{port}",
        "hooks": hooks,
        "gateway": settings.gateway.url,
        "console": f"{base}/console" if settings.console.enabled else None,
        "data_dir": str(settings.data_dir.resolve()),
        "redis": ("embedded, " if embedded else "") + safe_url(str(settings.redis_url)),
        "workers": workers,
    }


def announce(settings: Settings, host: str, port: int, workers: int, embedded: bool) -> threading.Thread:
    """Print the banner, then probe the gateway in the background (the start does not wait for it)."""
    facts = describe(settings, host, port, workers, embedded)
    human = sys.stderr.isatty()
    if human:
        lines = [f"relay listening on {facts['listening']}"]
        lines += [f"  POST {h['url']:<44} {h['preset']:<13} {h['auth']}" for h in facts["hooks"]]
        lines.append(f"  gateway   {facts['gateway']} (probing...)")
        if facts["console"]:
            lines.append(f"  console   {facts['console']}")
        lines.append(f"  data dir  {facts['data_dir']}")
        lines.append(f"  redis     {facts['redis']}")
        lines.append(f"  workers   {facts['workers']}")
        click.echo("\n".join(lines), err=True)
    else:
        log.info("relay up", extra=facts)

    thread = threading.Thread(
        target=report_gateways, args=(settings, human), name="gateway-probe", daemon=True
    )
    thread.start()
    return thread


def report_gateways(settings: Settings, human: bool) -> None:
    """The start-up line per gateway: does it take the hooks token and the relay's session keys?
    Informational (events are kept either way); the OpenClaw settings to add are printed when not."""
    for name in settings.gateway_names():
        gw = settings.gateway_config(name)
        found = gateway_check.hooks_token(gw, timeout=3)
        if found.ok:
            found = gateway_check.session_keys(gw, timeout=5)
        label = name or "default"
        if human:
            click.echo(f"{'' if found.ok else 'warning: '}gateway {label}: {found.line}", err=True)
            for line in found.fix:
                click.echo(f"  {line}", err=True)
        else:
            log.log(
                logging.INFO if found.ok else logging.WARNING,
                "gateway probe",
                extra={
                    "gateway": label,
                    "url": gw.url,
                    "ok": found.ok,
                    "detail": found.line,
                    "fix": found.fix,
                },
            )
