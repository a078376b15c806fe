"""Several gateways: each source or mapping names its gateway; one gateway down pauses only its own."""

from __future__ import annotations

import time

import redis

from relay.store import keys
from tests.conftest import (
    GENERIC_TOKEN,
    STUB_ALLOWING,
    Relay,
    Stub,
    _http_ok,
    dump,
    free_port,
    github_fixture,
    wait_until,
)

PUSH = github_fixture("push.default")


def start_second_stub(relay: Relay, port: int) -> Stub:
    proc = relay._start(
        ["gateway-stub", "--port", str(port), "--token", "staging-token", *STUB_ALLOWING], f"stub-{port}"
    )
    stub = Stub(port, proc)
    wait_until(lambda: _http_ok(f"{stub.url}/readyz"), timeout=15)
    return stub


def test_sources_and_mappings_route_to_their_gateway_and_pause_alone(
    relay_factory, redis_client: redis.Redis
) -> None:
    staging_port = free_port()
    relay = relay_factory(
        gateways={"staging": {"url": f"http://127.0.0.1:{staging_port}", "token": "env:STAGING_TOKEN"}},
        sources={
            "github": {"preset": "github", "secret": "env:GITHUB_WEBHOOK_SECRET"},
            "ci": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN", "gateway": "staging"},
            "deploys": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN"},
        },
        mappings=[
            {"match": {"path": "ci"}, "messageTemplate": "CI {{payload.n}}"},
            {"match": {"path": "deploys"}, "messageTemplate": "deploy {{payload.n}}", "gateway": "staging"},
        ],
    )
    relay.env["STAGING_TOKEN"] = "staging-token"
    production = relay.start_stub()
    staging = start_second_stub(relay, staging_port)
    relay.start_ingress()
    relay.start_worker()
    auth = {"Authorization": f"Bearer {GENERIC_TOKEN}"}

    assert relay.post_github(PUSH, "gw-1").status_code == 202
    assert relay.post("/hooks/ci", dump({"n": 1}), auth).status_code == 202
    assert relay.post("/hooks/deploys", dump({"n": 1}), auth).status_code == 202
    wait_until(lambda: len(production.runs()) == 1 and len(staging.runs()) == 2)
    assert "Codertocat" in production.runs()[0]["body"]["message"]
    assert sorted(r["body"]["message"] for r in staging.runs()) == ["CI 1", "deploy 1"]

    # Staging goes down: its events wait behind its own circuit; production's keep flowing.
    staging.proc.stop()
    assert relay.post("/hooks/ci", dump({"n": 2}), auth).status_code == 202
    wait_until(lambda: redis_client.exists(keys.circuit("staging")[0]), timeout=15)
    assert not redis_client.exists(keys.CIRCUIT)
    assert relay.post_github(PUSH, "gw-2").status_code == 202
    wait_until(lambda: len(production.runs()) == 2, timeout=15)

    staging = start_second_stub(relay, staging_port)
    wait_until(lambda: [r["body"]["message"] for r in staging.runs()] == ["CI 2"], timeout=90)
    time.sleep(0.5)  # nothing more arrives: a staging turn sent to production would show here
    assert len(production.runs()) == 2  # the staging token (the stub refuses any other) went to staging only


def test_an_unknown_gateway_name_fails_at_start_up(tmp_path) -> None:
    import pytest

    from relay.config import load_settings
    from relay.errors import ConfigError

    config = tmp_path / "relay.yaml"
    config.write_text("sources:\n  ci: {preset: generic, token: t, gateway: prod}\n")
    with pytest.raises(ConfigError, match="sources.ci.gateway: no gateway 'prod'"):
        load_settings(config)
