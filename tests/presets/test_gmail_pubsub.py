"""Gmail through a real Pub/Sub push: the secret in the push endpoint's `?token=` (a push without
OIDC can carry a secret only in its URL), answered with a status Pub/Sub acks (200).

Google's Pub/Sub emulator, where it is installed, pushes to a real relay end to end; everywhere
else the documented push envelope (Google's published example) goes through the same HTTP path.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis

import presets
from presets import gmail
from relay.config import SourceConfig
from relay.errors import Unauthorized
from relay.store import keys
from tests.conftest import Relay, free_port, wait_until
from tests.paths import FIXTURES
from tests.presets.presets_support import run

PUSH_TOKEN = "pubsub-push-secret-3f9c1e"
ENVELOPE = (FIXTURES / "gmail" / "pubsub-push-envelope.gmail-docs.json").read_bytes()
EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
JSON = {"Content-Type": "application/json"}


def query_cfg(**extra: object) -> SourceConfig:
    return SourceConfig(preset="gmail", token=PUSH_TOKEN, allow_query_token=True, **extra)  # type: ignore[arg-type]


# --- pure: the query token check --------------------------------------------------------------


def test_query_token_is_checked_like_the_header_token() -> None:
    cfg = query_cfg()
    gmail.verify_query(JSON, {"token": PUSH_TOKEN}, ENVELOPE, cfg)
    with pytest.raises(Unauthorized, match="^invalid token$"):
        gmail.verify_query(JSON, {"token": PUSH_TOKEN + "x"}, ENVELOPE, cfg)
    with pytest.raises(Unauthorized, match=r"missing Authorization: Bearer token or \?token="):
        gmail.verify_query(JSON, {}, ENVELOPE, cfg)
    # A header credential wins: a wrong bearer is refused even with the right ?token=.
    with pytest.raises(Unauthorized, match="invalid token"):
        gmail.verify_query({"authorization": "Bearer nope"}, {"token": PUSH_TOKEN}, ENVELOPE, cfg)
    gmail.verify_query({"authorization": f"Bearer {PUSH_TOKEN}"}, {}, ENVELOPE, cfg)
    # The preset's own verify (used when allow_query_token is off) never reads the query.
    with pytest.raises(Unauthorized, match="missing Authorization"):
        gmail.verify(JSON, ENVELOPE, cfg)


def test_allow_query_token_config_checks() -> None:
    assert presets.check_config(query_cfg()) is None
    assert presets.check_config(
        SourceConfig(preset="gmail", audience="https://a", allow_query_token=True)
    ) == ("token", "allow_query_token compares ?token= with the source's token: set one")
    assert presets.check_config(SourceConfig(preset="generic", token="t", allow_query_token=True)) == (
        "allow_query_token",
        "the generic preset does not take a token from the URL",
    )
    assert SourceConfig(preset="gmail", token="t").allow_query_token is False  # off by default


def test_documented_envelope_renders_the_mailbox_and_history_id() -> None:
    result = run(
        SourceConfig(preset="gmail", token=PUSH_TOKEN), {"Authorization": f"Bearer {PUSH_TOKEN}"}, ENVELOPE
    )
    assert result.delivery_id == "pubsub:2070443601311540"
    [action] = result.actions
    assert action.message.startswith("New Gmail activity for user@example.com (historyId 1234567890).")


# --- over HTTP: a relay with a gmail source that takes ?token= ---------------------------------


@pytest.fixture
def relay(relay_factory: Callable[..., Relay]) -> Relay:
    r = relay_factory(
        sources={
            "gmail": {"preset": "gmail", "token": "env:GMAIL_PUSH_TOKEN", "allow_query_token": True},
            "gmailheader": {"preset": "gmail", "token": "env:GMAIL_PUSH_TOKEN"},
        }
    )
    r.env["GMAIL_PUSH_TOKEN"] = PUSH_TOKEN
    r.start_stub()
    r.start_ingress()
    r.start_worker()
    return r


def _gmail_runs(relay: Relay) -> list[dict]:
    assert relay.stub is not None
    return [r for r in relay.stub.runs() if r["body"].get("name") == "Gmail"]


def _stats(client: redis.Redis, source: str) -> dict[str, int]:
    raw = client.hgetall(keys.STATS)
    out = {}
    for k, v in raw.items():
        kind, _, rest = k.decode().partition("|")
        outcome, _, name = rest.partition("|")
        if kind == "event" and name == source:
            out[outcome] = int(v)
    return out


def test_documented_push_envelope_with_query_token_is_acked_with_200(
    relay: Relay, redis_client: redis.Redis
) -> None:
    url = f"{relay.url}/hooks/gmail?token={PUSH_TOKEN}"
    response = httpx.post(url, content=ENVELOPE, headers=JSON, timeout=10)
    assert response.status_code == 200, response.text  # 202 would be redelivered by the emulator
    assert relay.outcome(response)["actions"] == 1
    [turn] = wait_until(lambda: _gmail_runs(relay), timeout=15)
    assert turn["body"]["sessionKey"] == "hook:gmail:user@example.com"
    assert "historyId 1234567890" in turn["body"]["message"]
    # Pub/Sub redelivers at least once: the same messageId is a duplicate, still acked.
    again = httpx.post(url, content=ENVELOPE, headers=JSON, timeout=10)
    assert again.status_code == 200 and again.json()["duplicate"] is True

    wrong = httpx.post(f"{relay.url}/hooks/gmail?token=guess", content=ENVELOPE, headers=JSON, timeout=10)
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid token")
    # Off by default: a source without allow_query_token does not read the URL.
    header_only = httpx.post(
        f"{relay.url}/hooks/gmailheader?token={PUSH_TOKEN}", content=ENVELOPE, headers=JSON, timeout=10
    )
    assert header_only.status_code == 401, header_only.text
    # Received once (the ingress) and mapped into its action once (the mapping stage).
    assert _stats(redis_client, "gmail") == {"received": 1, "accepted": 1, "duplicate": 1}

    # The URL's token is a credential: it is in no log and in no stored record.
    for proc in relay.procs:
        assert PUSH_TOKEN not in proc.output(), proc.log
    stored = [v for k in redis_client.scan_iter(count=1000) for v in (k, *_values(redis_client, k))]
    assert len(stored) > 10 and not [v for v in stored if PUSH_TOKEN.encode() in v]


def _values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"hash":
        return [b for pair in client.hgetall(key).items() for b in pair]
    if kind == b"list":
        return list(client.lrange(key, 0, -1))
    if kind == b"zset":
        return list(client.zrange(key, 0, -1))
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"stream":
        return [b for _, fields in client.xrange(key) for pair in fields.items() for b in pair]
    return []


# --- Google's Pub/Sub emulator pushing to the relay ---------------------------------------------


class PubSubEmulator:
    """The emulator (Java) in its own process group, driven through its REST API."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/projects/relay-test"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "emulator.log"
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [str(EMULATOR), "--host=127.0.0.1", f"--port={self.port}", f"--dir={workdir / 'data'}"]
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.http = httpx.Client(timeout=10)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the emulator exited with {self.proc.returncode}:\n{self.output()}")
        try:
            return self.http.get(f"http://127.0.0.1:{self.port}/").status_code == 200
        except httpx.HTTPError:
            return False

    def call(self, method: str, path: str, body: dict) -> dict:
        response = self.http.request(method, f"{self.url}/{path}", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()


def _emulator_missing() -> str | None:
    if not EMULATOR.exists():
        debian = Path("/etc/debian_version")
        release = debian.read_text().strip() if debian.exists() else "not Debian"
        return f"Google's Pub/Sub emulator is not installed at {EMULATOR} (Debian {release})"
    if shutil.which("java") is None:
        return "the Pub/Sub emulator needs Java (java is not on PATH)"
    return None


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[PubSubEmulator]:
    missing = _emulator_missing()
    if missing:
        pytest.skip(missing)
    emu = PubSubEmulator(tmp_path / "pubsub")
    try:
        wait_until(emu.ready, timeout=60, interval=0.2)  # a JVM start: ~5-12 s on a busy machine
        yield emu
    finally:
        emu.stop()


@pytest.mark.timeout(180)
def test_pubsub_emulator_push_with_query_token_is_acked_once_and_reaches_the_gateway(
    relay: Relay, emulator: PubSubEmulator, redis_client: redis.Redis
) -> None:
    emulator.call("PUT", "topics/gmail-watch", {})
    endpoint = f"{relay.url}/hooks/gmail?token={PUSH_TOKEN}"
    sub = emulator.call(
        "PUT",
        "subscriptions/gmail-relay",
        {
            "topic": "projects/relay-test/topics/gmail-watch",
            "pushConfig": {"pushEndpoint": endpoint},
            "ackDeadlineSeconds": 10,
        },
    )
    assert sub["pushConfig"]["pushEndpoint"] == endpoint
    notification = orjson.dumps({"emailAddress": "inbox@example.com", "historyId": "987654"})
    published = emulator.call(
        "POST",
        "topics/gmail-watch:publish",
        {"messages": [{"data": base64.b64encode(notification).decode()}]},
    )
    [message_id] = published["messageIds"]

    [turn] = wait_until(lambda: _gmail_runs(relay), timeout=30, interval=0.1)
    body = turn["body"]
    assert body["message"].startswith("New Gmail activity for inbox@example.com (historyId 987654).")
    assert "projects/relay-test/subscriptions/gmail-relay" in body["message"]
    assert body["sessionKey"] == "hook:gmail:inbox@example.com"

    # Acked: an unacked push is redelivered about every second (as it was when the relay answered
    # 202), so a quiet window of 4 s with no second push shows the 200 was taken as an ack.
    time.sleep(4)
    # One push received (no redelivery, so no duplicate) and mapped into its action once.
    assert _stats(redis_client, "gmail") == {"received": 1, "accepted": 1}, _stats(redis_client, "gmail")
    assert len(_gmail_runs(relay)) == 1
    events = subprocess.run(
        [sys.executable, "-m", "relay.cli", "events", "--json", "-n", "10"],
        env=relay.env,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.splitlines()
    [event] = [orjson.loads(e) for e in events if orjson.loads(e)["source"] == "gmail"]
    assert event["delivery_id"] == f"pubsub:{message_id}"
    for proc in relay.procs:
        assert PUSH_TOKEN not in proc.output(), proc.log
