"""The gateway's answers: what each means for the action (delivered, retried, dead), Retry-After, backoff.

Every door (hooks POST, WebSocket RPC `send`, `/tools/invoke`) returns an `Answer`; `classify`
turns it into a verdict, and the statuses that point at the gateway's configuration or policy
are retried (pausing the circuit) rather than dead-lettered.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

from relay.protocol import policy

Verdict = Literal["delivered", "retry", "dead"]

# The gateway's answers, per OPENCLAW_CONTRACT.md: these never succeed by being sent again.
PERMANENT = frozenset({400, 405, 413, 422})
# Wrong token or hooks disabled/wrong path: a configuration problem. The events are kept and
# retried with backoff until it is fixed, never dead-lettered for it. So are the gateway's hook
# policy refusals (a 400 naming a setting: `relay.protocol.policy`).
CONFIGURATION = frozenset({401, 403, 404})


def is_configuration(answer: Answer) -> bool:
    return answer.status in CONFIGURATION or policy.refusal_hint(answer.status, answer.text) is not None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    text: str
    retry_after: float | None = None
    run_id: str | None = None


def classify(answer: Answer) -> Verdict:
    if answer.status is not None and 200 <= answer.status < 300:
        return "delivered"
    if answer.status in PERMANENT and not is_configuration(answer):
        return "dead"
    return "retry"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


def backoff(attempt: int, base: float, cap: float, retry_after: float | None = None) -> int:
    """Exponential backoff with full jitter, never sooner than the gateway's Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))
    if retry_after is not None:
        # RQ stores a retry's time in whole seconds, rounded down: one second more keeps the next
        # attempt from arriving before Retry-After (it was up to 1 s early).
        return math.ceil(max(delay, retry_after)) + 1
    return max(1, math.ceil(delay))
