"""What `relay agent`, `relay wake` and `relay schedules run` print, and how they wait.

Without `--json`, stdout carries only the action id (so `id=$(relay agent ...)` works) and
progress goes to stderr; with `--json`, one JSON object on stdout. The exit code is the answer:
0 queued (or, with --wait, delivered), 1 dead-lettered or still not delivered at the timeout.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from relay.client import ActionStatus, DeliveryFailed, RelayClient, Submitted, WaitTimeout
from relay.store import states

EXIT_FAILED = 1


def report(
    client: RelayClient, submitted: Submitted, *, as_json: bool, wait: bool, wait_timeout: float
) -> int:
    """Print the submission (and, with `wait`, its outcome); returns the exit code."""
    out: dict[str, Any] = {
        "ok": True,
        "actionId": submitted.action_id,
        "eventId": submitted.event_id,
        "duplicate": submitted.duplicate,
        "state": states.QUEUED,
    }
    if submitted.duplicate:
        click.echo(
            f"note: this idempotency key was already used (event {submitted.event_id}); "
            "nothing new was queued",
            err=True,
        )
    if not as_json:
        click.echo(submitted.action_id)
    code = 0
    if wait:
        try:
            status = client.wait(submitted.action_id, timeout=wait_timeout or None)
            out.update(_fields(status))
            if not as_json:
                run = f" (runId {status.run_id})" if status.run_id else ""
                click.echo(f"delivered{run}", err=True)
        except DeliveryFailed as exc:
            out.update(_fields(exc.status), ok=False)
            code = EXIT_FAILED
            if not as_json:
                status = exc.status
                answer = f"gateway answered {status.last_status}: " if status.last_status else ""
                click.echo(f"error: dead-lettered: {answer}{status.last_error}", err=True)
        except WaitTimeout as exc:
            out.update(_fields(exc.status), ok=False, timedOut=True)
            code = EXIT_FAILED
            if not as_json:
                detail = (
                    f"; last answer {exc.status.last_status}: {exc.status.last_error}"
                    if exc.status.last_status
                    else ""
                )
                click.echo(
                    f"error: not delivered within {wait_timeout:g}s (still {exc.status.state}{detail}); "
                    "it stays queued",
                    err=True,
                )
    else:
        out["state"] = client.status(submitted.action_id).state
    if as_json:
        click.echo(orjson.dumps(out).decode())
    return code


def _fields(status: ActionStatus) -> dict[str, Any]:
    fields: dict[str, Any] = {"state": status.state, "attempts": status.attempts}
    if status.run_id:
        fields["runId"] = status.run_id
    if status.last_status:
        fields["status"] = int(status.last_status) if status.last_status.isdigit() else status.last_status
    if status.last_error and status.state != states.DELIVERED:
        fields["error"] = status.last_error
    return fields
