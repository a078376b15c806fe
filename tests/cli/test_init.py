"""`relay init`: relay.yaml + a 0600 .env of fresh secrets, and the instructions work as printed."""

from __future__ import annotations

import hashlib
import hmac
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from relay.config import load_settings, read_dotenv
from tests.conftest import Proc, free_port, github_fixture, wait_until

BARE = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}  # nothing exported


def relay(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        cwd=cwd,
        env=BARE,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_writes_config_and_private_secrets_that_a_sender_can_use(tmp_path: Path) -> None:
    port, stub_port = free_port(), free_port()
    done = relay(
        "init",
        "--source",
        "github",
        "--source",
        "alertmanager",
        "--public-url",
        f"http://127.0.0.1:{port}",
        "--gateway-url",
        f"http://127.0.0.1:{stub_port}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    dotenv = tmp_path / ".env"
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    values = read_dotenv(dotenv)
    assert set(values) == {"OPENCLAW_HOOKS_TOKEN", "GITHUB_WEBHOOK_SECRET", "ALERTMANAGER_WEBHOOK_TOKEN"}
    assert len(set(values.values())) == 3 and all(len(v) >= 40 for v in values.values())
    # What to paste, per source: URL, secret, content type, events.
    out = done.stdout
    assert f"URL:           http://127.0.0.1:{port}/hooks/github" in out
    assert f"Secret:        {values['GITHUB_WEBHOOK_SECRET']}" in out
    assert "Content type:  application/json" in out and "Events:        push, pull_request" in out
    assert f"credentials: {values['ALERTMANAGER_WEBHOOK_TOKEN']}" in out
    assert not any(
        v in (tmp_path / "relay.yaml").read_text() for v in values.values()
    )  # secrets only in .env
    settings = load_settings(tmp_path / "relay.yaml")  # strict: every secret resolves from .env
    assert settings.sources["github"].secret[0].get_secret_value() == values["GITHUB_WEBHOOK_SECRET"]
    again = relay("init", "--source", "github", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr  # never overwrites secrets silently
    assert read_dotenv(dotenv) == values

    # The printed instructions work: `relay up` with nothing exported, a push signed with the printed secret.
    stub = Proc(
        [
            "gateway-stub",
            "--port",
            str(stub_port),
            "--token",
            values["OPENCLAW_HOOKS_TOKEN"],
            "--allow-request-session-key",
            "--session-key-prefix",
            "hook:",
        ],
        BARE,
        tmp_path / "stub.log",
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "relay.cli", "up", "--port", str(port)],
        cwd=tmp_path,
        env=BARE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: _ok(f"http://127.0.0.1:{port}/readyz?workers=1"), timeout=30)
        body = github_fixture("push.default")
        secret = re.search(r"Secret:\s+(\S+)", out).group(1).encode()  # type: ignore[union-attr]
        answer = httpx.post(
            f"http://127.0.0.1:{port}/hooks/github",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": "init-1",
                "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
            },
        )
        assert answer.status_code == 202, answer.text
        wait_until(
            lambda: [
                r
                for r in httpx.get(f"http://127.0.0.1:{stub_port}/_stub/requests").json()
                if r["path"] == "agent" and r["status"] == 200
            ],
            timeout=15,
        )
    finally:
        up.terminate()
        up.wait(timeout=60)
        stub.stop()


def test_init_refuses_an_unknown_source(tmp_path: Path) -> None:
    done = relay("init", "--source", "githib", cwd=tmp_path)
    assert done.returncode == 2 and "githib" in done.stderr and "github" in done.stderr
    assert not (tmp_path / ".env").exists()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
