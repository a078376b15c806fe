"""The gateway probe `relay check` runs and `relay up` reports: does the gateway take our hook token?"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from .config import GatewayConfig


@dataclass(frozen=True)
class Probe:
    outcome: str  # accepted | refused | unset | rate-limited | unreachable
    detail: str

    @property
    def ok(self) -> bool:
        return self.outcome == "accepted"


def probe_gateway(gateway: GatewayConfig, timeout: float = 5.0) -> Probe:
    """POST to the bare hooks path: the gateway checks the token first (401 when wrong) and then
    answers 404 for the empty hook name, so this proves the token without starting anything."""
    url = f"{gateway.url}/{gateway.hooks_path.strip('/')}/"
    headers = {"Authorization": f"Bearer {gateway.token.get_secret_value()}"} if gateway.token else {}
    try:
        answer = httpx.post(url, headers=headers, content=b"{}", timeout=timeout)
    except httpx.HTTPError as exc:
        return Probe("unreachable", f"cannot reach the gateway at {gateway.url}: {type(exc).__name__}")
    if answer.status_code == 401:
        if not gateway.token:
            return Probe(
                "unset", f"gateway.token is not set (401 at {url}); it must equal the gateway's hooks.token"
            )
        return Probe(
            "refused",
            f"the gateway refuses gateway.token (401 at {url}); it must equal the gateway's hooks.token",
        )
    if answer.status_code == 429:
        return Probe("rate-limited", f"the gateway is rate-limiting failed token attempts (429 at {url})")
    return Probe("accepted", f"gateway ok at {gateway.url}: hook token accepted")
