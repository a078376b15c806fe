"""The relay's own /hooks/agent and /hooks/wake read JSON as the gateway does, whatever the
Content-Type: the `curl -d '{...}'` examples of the OpenClaw docs (no -H Content-Type, so curl
sends application/x-www-form-urlencoded) work against the relay too. Other declared types stay 415."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from tests.conftest import GENERIC_TOKEN, HOOKS_TOKEN, Relay, dump, wait_until

AUTH = {"Authorization": f"Bearer {HOOKS_TOKEN}"}


def _post(relay: Relay, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    # httpx sends no Content-Type for raw `content=` unless one is given.
    return httpx.post(f"{relay.url}{path}", content=body, headers=headers, timeout=10)


def test_no_content_type_is_json_on_agent_and_wake(relay: Relay) -> None:
    agent = _post(relay, "/hooks/agent", dump({"message": "no content type", "name": "Bare"}), AUTH)
    assert agent.status_code == 202, agent.text
    wake = _post(relay, "/hooks/wake", dump({"text": "bare wake", "mode": "now"}), AUTH)
    assert wake.status_code == 202, wake.text
    assert relay.stub is not None
    wait_until(lambda: relay.stub.runs("agent") and relay.stub.runs("wake"), timeout=15)
    assert [r["body"]["message"] for r in relay.stub.runs("agent")] == ["no content type"]
    assert [r["body"]["text"] for r in relay.stub.runs("wake")] == ["bare wake"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_d_as_pasted_from_the_openclaw_docs(relay: Relay) -> None:
    # Exactly the docs' shape: -H Authorization, -d JSON, no -H Content-Type.
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            f"{relay.url}/hooks/agent",
            "-H",
            f"Authorization: Bearer {HOOKS_TOKEN}",
            "-d",
            '{"message":"Summarize inbox","name":"Email"}',
            "--trace-ascii",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "Content-Type: application/x-www-form-urlencoded" in out.stdout  # what curl -d declares
    assert out.stdout.rstrip().endswith("202"), out.stdout
    assert relay.stub is not None
    [run] = wait_until(lambda: relay.stub.runs("agent"), timeout=15)
    assert run["body"]["message"] == "Summarize inbox" and run["body"]["name"] == "Email"


def test_other_declared_types_are_still_refused(relay: Relay) -> None:
    body = dump({"message": "x"})
    for ctype in ("text/plain", "application/xml", "multipart/form-data; boundary=x"):
        refused = _post(relay, "/hooks/agent", body, {**AUTH, "Content-Type": ctype})
        assert refused.status_code == 415, (ctype, refused.text)
    # A real form body under curl's default type is not JSON: 400, as the gateway answers.
    form = _post(
        relay, "/hooks/agent", b"message=x", {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 400 and "not valid JSON" in form.json()["error"], form.text
    # Webhook sources keep their own rules: a generic JSON source refuses the form type.
    generic = _post(
        relay,
        "/hooks/generic",
        body,
        {"Authorization": f"Bearer {GENERIC_TOKEN}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert generic.status_code == 415, generic.text
    assert relay.stub is not None and relay.stub.runs("agent") == []
