"""The gateway's hook policy refusals: configuration problems, not bad actions.

A gateway in its default configuration refuses every `/hooks/agent` or `/hooks/wake` request that
carries a `sessionKey` (all presets set one) with a 400. So do its other policies. These messages
come from the gateway's source (openclaw 2026.9.6, `dist/hooks-*.mjs`) and were checked against
the real gateway (tests/contract). Delivery pauses on them, as for a wrong token, showing the
message and the one setting to change; it resumes by itself once the gateway accepts.
"""

from __future__ import annotations

# The lines to add to the OpenClaw config so the relay's session keys are accepted: the pairing
# the gateway's own security audit recommends (allow request keys, but only under "hook:").
SESSION_KEY_SETTING = 'hooks.allowRequestSessionKey: true\nhooks.allowedSessionKeyPrefixes: ["hook:"]'
SESSION_KEY_PREFIX = "hook:"

# (the start of the gateway's message, the setting that resolves it)
_REFUSALS: tuple[tuple[str, str], ...] = (
    (
        "sessionKey is disabled for externally supplied hook payload values",
        "in the OpenClaw config set " + SESSION_KEY_SETTING.replace("\n", " and "),
    ),
    (
        "sessionKey must start with one of:",
        f'in the OpenClaw config add "{SESSION_KEY_PREFIX}" to hooks.allowedSessionKeyPrefixes '
        "(the relay's session keys start with it)",
    ),
    (
        "agentId is not allowed by hooks.allowedAgentIds",
        "in the OpenClaw config add the mapping's agentId to hooks.allowedAgentIds",
    ),
    (
        "agentId is required when multiple agents are configured",
        "set agentId on the relay mapping (the gateway has several agents and will not pick one)",
    ),
)


def refusal_hint(status: int | None, text: str) -> str | None:
    """The setting to change when `text` (a 400 from a hooks endpoint) is a policy refusal."""
    if status != 400:
        return None
    for message, hint in _REFUSALS:
        if message in text:
            return hint
    return None


def gateway_message(text: str) -> str:
    """The `error` of a `{"ok": false, "error": "..."}` answer, else the text itself."""
    import orjson

    try:
        body = orjson.loads(text)
    except ValueError:
        return text
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else text


def probe_body() -> dict[str, object]:
    """A `/hooks/agent` request that shows the session-key policy without starting a run.

    The gateway (2026.9.6) checks, in order: message, agentId, then the request's sessionKey
    (allowed at all? under an allowed prefix?), then "a persistent sessionMode needs
    hooks.allowedSessionKeyPrefixes". This key starts with no prefix a config would list, so:
    default config → "sessionKey is disabled…"; prefixes set → "sessionKey must start with one of:
    <the list>"; keys allowed without prefixes → the persistent-mode refusal. Each is a 400 before
    any run exists. Only a prefix list that admits "relay-probe:" would start a run.
    """
    return {
        "message": "relay check: session-key policy probe (refused before any run)",
        "name": "relay-check",
        "sessionKey": "relay-probe:policy",
        "sessionMode": "persistent",
    }


PERSISTENT_NEEDS_PREFIXES = (
    "hooks.allowedSessionKeyPrefixes is required when direct hook sessionMode is persistent"
)
PREFIX_REFUSAL = "sessionKey must start with one of:"
DISABLED_REFUSAL = "sessionKey is disabled for externally supplied hook payload values"


def read_probe(status: int, text: str) -> tuple[bool | None, str]:
    """What the probe's answer says: (relay session keys accepted?, explanation).
    None: the answer does not tell (an older gateway, another refusal)."""
    message = gateway_message(text)
    if status == 400 and DISABLED_REFUSAL in message:
        return False, "the gateway refuses request session keys (its default)"
    if status == 400 and PREFIX_REFUSAL in message:
        prefixes = [p.strip().lower() for p in message.split(PREFIX_REFUSAL, 1)[1].split(",") if p.strip()]
        if SESSION_KEY_PREFIX in prefixes or any(SESSION_KEY_PREFIX.startswith(p) for p in prefixes):
            return True, f"session keys under {SESSION_KEY_PREFIX!r} are allowed ({message})"
        return False, f"the gateway allows only these session-key prefixes: {', '.join(prefixes)}"
    if status == 400 and PERSISTENT_NEEDS_PREFIXES in message:
        return (
            True,
            "request session keys are allowed (with any prefix; the gateway's audit recommends a list)",
        )
    if 200 <= status < 300:
        return True, "request session keys are allowed (the probe was accepted)"
    return None, f"{status}: {message[:200]}"
