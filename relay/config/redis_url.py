"""The forms of `redis_url` that need parsing: `redis+sentinel://` (and `rediss+sentinel://`).

    redis+sentinel://[[user]:password@]host1:26379,host2:26379,host3:26379/<master-name>/<db>

The settings validate a Sentinel URL with it; relay.store.connection connects through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True, slots=True)
class SentinelURL:
    hosts: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def is_sentinel(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0].lower() in SENTINEL_SCHEMES  # type: ignore[union-attr]


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse a `redis+sentinel://` URL; ValueError names what is wrong (never the password)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SENTINEL_SCHEMES:
        raise ValueError("not a redis+sentinel:// URL")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    hosts = []
    for item in (part.strip() for part in hostlist.split(",")):
        if item.startswith("["):  # [::1]:26379
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        if not host:
            raise ValueError("a Sentinel address is empty")
        if port and not port.isdigit():
            raise ValueError(f"Sentinel {item!r}: the port is not a number")
        hosts.append((host, int(port) if port else 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("the master's name is missing (redis+sentinel://hosts/<master-name>/<db>)")
    if len(path) > 2:
        raise ValueError("the path must be /<master-name>/<db>")
    db = path[1] if len(path) == 2 else parse_qs(parts.query).get("db", ["0"])[0]
    if not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    return SentinelURL(
        tuple(hosts),
        unquote(path[0]),
        int(db),
        username,
        password,
        ssl=parts.scheme.lower() == "rediss+sentinel",
    )
