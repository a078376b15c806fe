"""What the gateway stub remembers: its settings, the requests it handled and what it was told to fail."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StubState:
    token: str
    hooks_path: str = "/hooks"
    admit_delay: float = 0.0
    fail: deque[int] = field(default_factory=deque)
    retry_after: int | None = None
    refuse_all: bool = False  # answer 503 to every hook request (a gateway shutting down)
    hang: int = 0  # the next `hang` agent runs are admitted but answered only after hang_seconds
    hang_seconds: float = 20.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (body digest, runId)
    auth_failures: dict[str, deque[float]] = field(default_factory=dict)
    record_path: str | None = None
    auth_token: str | None = None  # gateway.auth.token (WebSocket RPC, /tools/invoke); None: `token`
    ws_drop: int = 0  # the next `ws_drop` send RPCs are handled, then the socket closes unanswered
    send_dedupe: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotencyKey -> payload
    allow_request_session_key: bool = False  # hooks.allowRequestSessionKey (the gateway's default: false)
    session_key_prefixes: list[str] | None = None  # hooks.allowedSessionKeyPrefixes
    channels: frozenset[str] = frozenset()  # configured channels; "any": every channel delivers
    block_tools: set[str] = field(default_factory=set)
    throw_tools: set[str] = field(default_factory=set)

    @property
    def gateway_token(self) -> str:
        return self.auth_token or self.token

    def record(self, entry: dict[str, Any]) -> None:
        entry["at"] = time.time()
        self.requests.append(entry)
        if self.record_path:
            with open(self.record_path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")
