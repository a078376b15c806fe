"""Structured logs: JSON lines when stderr is not a terminal, readable key=value lines when it is.

The relay's modules log through the standard `logging` module with the ids of the event or
action as `extra=` fields (source, delivery_id, event_id, action_id, status, ...); structlog's
ProcessorFormatter renders those, and the lines of uvicorn and RQ, the same way. A redaction step
masks anything that looks like a credential, whatever logged it.
"""

from __future__ import annotations

import faulthandler
import logging
import re
import signal
import sys
from typing import Any

import structlog

# Keys whose values are credentials: masked wherever they appear in a log event.
SENSITIVE = re.compile(r"(authorization|signature|token|secret|password|cookie|api[-_]?key)", re.I)
REDACTED = "[redacted]"


def redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if SENSITIVE.search(key):
            event[key] = REDACTED
        elif isinstance(value, dict):
            event[key] = {k: (REDACTED if SENSITIVE.search(str(k)) else v) for k, v in value.items()}
    return event


def setup_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Route every log record (the relay's, uvicorn's, RQ's) through one structlog formatter.

    Also: `kill -USR1 <pid>` writes every thread's stack to stderr, so a process that will not stop
    shows where it waits (docs/operations.md)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # Per-request and per-job chatter of the libraries: the relay logs its own line per outcome.
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("httpx", "httpcore", "rq.worker", "rq.job", "rq.queue", "rq.scheduler"):
        logging.getLogger(name).setLevel(quiet)
