"""`relay up`'s start-up line and `relay check` in front of a default-config gateway (the stub;
tests/contract runs the same against the real gateway)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from relay.cli.banner import report_gateways
from relay.config import load_settings
from tests.conftest import HOOKS_TOKEN, Relay


def test_start_up_line_names_the_session_key_setting(
    relay_factory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    relay: Relay = relay_factory()
    stub = relay.start_stub(default_policy=True)
    for name in ("OPENCLAW_HOOKS_TOKEN", "GITHUB_WEBHOOK_SECRET", "GENERIC_WEBHOOK_TOKEN"):
        monkeypatch.setenv(name, relay.env[name])
    settings = load_settings(str(relay.config_path))
    report_gateways(settings, human=True)
    err = capsys.readouterr().err
    assert "warning: gateway default: the gateway will refuse the relay's session keys" in err
    assert '  hooks.allowRequestSessionKey: true\n  hooks.allowedSessionKeyPrefixes: ["hook:"]' in err
    assert HOOKS_TOKEN not in err
    # The probe started nothing: the stub refused it at the session-key check.
    assert [r.get("refused", "")[:26] for r in stub.requests()] == ["sessionKey is disabled for"]

    stub.control(session_policy={"allowRequestSessionKey": True, "allowedSessionKeyPrefixes": ["hook:"]})
    report_gateways(settings, human=True)
    assert (
        "gateway default: session keys ok: session keys under 'hook:' are allowed" in capsys.readouterr().err
    )
    check = subprocess.run(
        [sys.executable, "-m", "relay.cli", "check"],
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert not stub.runs("agent")
